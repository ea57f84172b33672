"""Train a zoo classifier on event-camera recordings (DVS-Gesture, CIFAR10-DVS) with FPTT.

The recordings are read with :func:`fptt_ext.data.events.event_split` (tonic underneath,
never downloaded) through a ``DataLoader``; each batch ``[B, T, 2, H, W]`` becomes a
sequence ``[T, B, 2, H, W]`` for :class:`fptt_ext.SequenceTrainer`. Like
:func:`~fptt_ext.experiments.classify.train_classifier` it writes ``config.json``,
``metrics.jsonl``, an atomic resumable ``checkpoint.pt`` (every ``checkpoint_every``
batches and at each epoch end; ``resume=True`` continues with the same data order),
``model.safetensors`` (what ``fptt-ext zoo publish`` takes), ``curves.png`` and
``summary.json``. The dataset, encoding, ``T`` and recipe default to the model's card.

Example (a hand-made recording set; real ones come from the datasets' releases)::

    fptt-ext train-events --model srnn_dvsgesture --root /data/dvs --epochs 1 --out runs/gesture
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.events import EVENT_DATASETS, event_split
from ..fptt.loop import SequenceTrainer
from ..zoo import create_model, loader_accuracy, model_card
from .classify import _NO_TIME, OPTIMIZERS, PRECISIONS, _plot, _resume, _save_checkpoint

__all__ = ["train_events"]


def train_events(*, model_name: str, root=None, T: int | None = None, method: str = "fptt", K: int | None = None,
                 k: int = 1, neuron: str = "ltc", epochs: int = 1, batch_size: int | None = None,
                 optimizer: str | None = None, lr: float | None = None, clip: float | None = 1.0,
                 precision: str = "fp32", seed: int = 0,
                 out_dir: str | os.PathLike = "runs/events", checkpoint_every: int = 50, resume: bool = False,
                 limit_train: int | None = None, limit_test: int | None = None, num_workers: int = 0,
                 progress: bool = True) -> dict:
    """Train ``model_name`` (an event-data zoo classifier) and return a summary dict.

    ``clip``: gradient-norm clipping before every update (1.0, as in all of the authors'
    scripts; ``None`` turns it off). ``metrics.jsonl`` logs the training loss per batch and
    the test accuracy per epoch.

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> root, rng = pathlib.Path(tempfile.mkdtemp()), np.random.default_rng(0)   # 2 + 1 random recordings
        >>> for split, sub, label in [("ibmGestureTrain", "user01_led", 0), ("ibmGestureTrain", "user02_led", 5),
        ...                           ("ibmGestureTest", "user24_natural", 5)]:
        ...     folder = root / "DVSGesture" / split / sub
        ...     folder.mkdir(parents=True)
        ...     np.save(folder / f"{label}.npy", np.stack([rng.integers(0, 128, 50), rng.integers(0, 128, 50),
        ...                                                 rng.integers(0, 2, 50), np.arange(50) * 10], axis=1))
        >>> s = train_events(model_name="srnn_dvsgesture", root=root, T=2, batch_size=2, out_dir=tempfile.mkdtemp(),
        ...                  progress=False)
        >>> sorted(k for k in s if k.startswith("test_"))
        ['test_acc', 'test_n']
    """
    card = model_card(model_name)
    if card["dataset"] not in EVENT_DATASETS:
        raise ValueError(f"{model_name} is trained on {card['dataset']}, not event recordings; use `fptt-ext train`")
    recipe = {"batch_size": 16, "optimizer": "adamax", "lr": 1e-3, **(card.get("recipe") or {})}
    T = card["T"] if T is None else T
    batch_size, optimizer = batch_size or recipe["batch_size"], optimizer or recipe["optimizer"]
    lr = recipe["lr"] if lr is None else lr
    if optimizer not in OPTIMIZERS or precision not in PRECISIONS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} and precision one of {PRECISIONS}")
    if clip is not None and not (clip > 0 and clip != float("inf")):
        raise ValueError(f"clip must be a finite norm > 0 or None (no clipping), got {clip!r}")
    train = event_split(card["dataset"], "train", root, T, card["encoding"])
    test = event_split(card["dataset"], "test", root, T, card["encoding"])
    train = Subset(train, range(min(limit_train, len(train)))) if limit_train else train
    test = Subset(test, range(min(limit_test, len(test)))) if limit_test else test
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"no recordings in the train or test split of {card['dataset']} under {root}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model": model_name, "model_kwargs": {"neuron": neuron}, "dataset": card["dataset"],
              "encoding": card["encoding"], "T": T, "method": method, "K": K, "k": k, "epochs": epochs,
              "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "clip": clip, "precision": precision,
              "seed": seed,
              "limit_train": limit_train, "limit_test": limit_test}

    torch.manual_seed(seed)
    model = create_model(model_name, neuron=neuron)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, foreach=True)
    n_classes = int(card["architecture"].split("-")[-1][:-1])  # "...-11I": the readout size
    trainer = SequenceTrainer(model, opt, method=method, K=K, k=k, loss="classification", num_classes=n_classes,
                              max_grad_norm=clip)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    epoch, batch, step, history, seconds = _resume(ckpt_path, metrics_path, model, trainer, None, T) if resume \
        else (0, 0, 0, [], _NO_TIME)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    def checkpoint(ep, b):
        _save_checkpoint(ckpt_path, {"model": model.state_dict(), "trainer": trainer.state_dict(), "scheduler": {},
                                     "rng": torch.get_rng_state(), "epoch": ep, "batch": b, "step": step,
                                     "lines": len(history),
                                     # one clock for data and compute here (the DataLoader's workers overlap them)
                                     "seconds": {"data": 0.0, "compute": time.perf_counter() - started,
                                                 "complete": seconds["complete"]}})

    started = time.perf_counter() - seconds["data"] - seconds["compute"]  # the time before a resume counts
    with metrics_path.open("a") as log:
        while epoch < epochs:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
            loader = DataLoader(Subset(train, order[batch * batch_size:]), batch_size=batch_size,
                                num_workers=num_workers)
            n_batches = (len(train) + batch_size - 1) // batch_size
            for frames, y in tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                                  initial=batch, total=n_batches, unit="batch"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    res = trainer.train_batch(frames.transpose(0, 1), y)
                step, batch = step + 1, batch + 1
                history.append({"step": step, "epoch": epoch, "batch": batch - 1, "loss": res.loss})
                log.write(json.dumps(history[-1]) + "\n")
                if step % checkpoint_every == 0:
                    log.flush()
                    checkpoint(epoch, batch)
            epoch, batch = epoch + 1, 0
            history.append({"step": step, "epoch": epoch,
                            "test_acc": loader_accuracy(model, DataLoader(test, batch_size=batch_size))})
            log.write(json.dumps(history[-1]) + "\n")
            log.flush()
            checkpoint(epoch, 0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    _plot(history, out / "curves.png")
    tests = [h["test_acc"] for h in history if "test_acc" in h]
    summary = {**config, "batches": sum("loss" in h for h in history), "test_acc": tests[-1] if tests else None,
               "test_n": len(test), "seconds": time.perf_counter() - started,
               # False: resumed from a checkpoint that did not keep the time before it
               "time_complete": seconds["complete"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
