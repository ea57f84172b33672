"""Train SPYv4 online with FPTT over the reads of each image, and evaluate its mAP@0.5.

The update (the papers' SPYv4 training, one FPTT step per read)::

    for images, targets in loader:                 # a batch of images
        reset the neuron states                    # images are independent
        for t in range(T):                         # T reads of the same images
            out = model(images)                    # one time step
            loss = yolo_loss(out, targets) + fptt.regularizer()
            loss.backward(); fptt.step(); fptt.zero_grad()
            detach the neuron states               # no graph across reads: memory independent of T

Every read has the full detection loss with weight 1 (the targets are known at every
read, unlike a classification label read out at the end). The optimiser is Adagrad,
lr 1e-3, as in the papers. Mosaic augmentation is used for the first ``mosaic_epochs``.

Writes to ``out_dir``: ``config.json``, ``metrics.jsonl`` (one line per batch and one per
evaluation), ``checkpoint.pt`` (atomic; ``resume=True`` continues exactly where it
stopped), ``model.safetensors``, ``summary.json`` (mAP@0.5 after each read count, time
taken) and ``curves.png``. ``max_minutes`` bounds the training time: the run stops at the
first batch boundary past it, checkpoints and evaluates.

Example (a tiny budget):
    >>> import tempfile
    >>> s = train_detector(dataset="synthetic", model_name="spyv4_tiny", image_size=64, T=2, n_train=4, n_test=2,
    ...                    batch_size=2, out_dir=tempfile.mkdtemp(), progress=False)
    >>> s["batches"], len(s["map50_per_read"])
    (2, 2)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.detection import DETECTION_DATASETS, detection_data
from ..data.synthetic import Mosaic
from ..data.voc import voc_collate
from ..detection import YOLOLoss
from ..detection.evaluate import evaluate_detector
from ..fptt.optimizer import FPTT
from ..fptt.state import StatefulModules
from ..zoo import create_model, list_models, model_card
from ..zoo.spyv4 import spiking_neuron_count
from ._io import atomic_write

__all__ = ["DETECTION_DATASETS", "detection_data", "evaluate_detector", "fptt_reads_update", "load_detector",
           "train_detector"]

LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "adamax": torch.optim.Adamax,
              "sgd": torch.optim.SGD}


def _check_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (SPYv4's strides), got {image_size!r}; e.g. 416")


def fptt_reads_update(model, images: torch.Tensor, targets: list[dict], criterion, fptt: FPTT, T: int,
                      states: StatefulModules | None = None) -> tuple[list[float], dict]:
    """One batch of images read ``T`` times, with one FPTT update per read (see the module docstring).

    Resets the neuron states first and detaches them after every update. Returns the
    detection loss of each read and the last read's loss parts.

    >>> from fptt_ext.data.synthetic import SyntheticShapes
    >>> from fptt_ext.zoo.spyv4 import SPYv4
    >>> net = SPYv4(num_classes=5, width=0.125)
    >>> images, targets = voc_collate([SyntheticShapes(1, image_size=64)[0]])
    >>> fptt = FPTT(net.parameters(), torch.optim.Adagrad(net.parameters(), lr=1e-3))
    >>> losses, parts = fptt_reads_update(net, images, targets, YOLOLoss.for_model(net), fptt, T=2)
    >>> len(losses), sorted(parts), all(v > 0 for v in losses)
    (2, ['box', 'cls', 'obj'], True)
    """
    states = StatefulModules(model) if states is None else states
    states.reset()  # a new batch of images: no memory of the previous ones
    losses, parts = [], {}
    for _t in range(T):
        loss_t, parts = criterion(model(images), targets, images.shape[-2:])
        (loss_t + fptt.regularizer()).backward()
        fptt.step()
        fptt.zero_grad()
        states.detach()  # FPTT: no graph across reads
        losses.append(float(loss_t.detach()))
    return losses, parts


def _save(path: Path, payload: dict) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def train_detector(*, dataset: str = "synthetic", root=None, model_name: str = "spyv4_tiny", neuron: str = "ltc",
                   image_size: int = 128, T: int | None = None, epochs: int = 1, batch_size: int | None = None,
                   optimizer: str | None = None, lr: float | None = None, lr_schedule: str | None = None,
                   alpha: float = 0.1, beta: float = 0.5, mosaic_epochs: int = 0, label_smoothing: float = 0.05, n_train: int | None = None,
                   n_test: int | None = None, seed: int = 0, out_dir: str | os.PathLike = "runs/detect",
                   checkpoint_every: int = 50, resume: bool = False, max_minutes: float | None = None,
                   eval_every: int = 1, device: str = "cpu", workers: int = 0, progress: bool = True,
                   stop_after: int | None = None) -> dict:
    """Train a zoo detector (``spyv4`` / ``spyv4_tiny``) with FPTT over ``T`` reads; returns the summary.

    ``T``, ``batch_size``, ``optimizer``, ``lr`` and ``lr_schedule`` default to the model card's
    recipe (``spyv4``: 4 reads, Adagrad 1e-3, constant, batch 16, the papers'; ``spyv4_tiny``: Adam
    1e-3 with one cosine). ``lr_schedule``: ``"constant"`` or ``"cosine"`` (annealed to 0 over all
    ``epochs``, batch by batch). ``eval_every``: evaluate the test mAP every that many epochs
    (and always at the end). ``device``: where the network runs (e.g. ``"cuda"``);
    ``workers``: data-loading processes (JPEG decoding for VOC). ``stop_after``: stop after that many batches in this call
    (to test resuming), without the final evaluation.

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> s = train_detector(image_size=32, T=1, n_train=2, n_test=1, batch_size=2, out_dir=out, progress=False)
    >>> s["batches"], s["test_n"], sorted(p.name for p in Path(out).iterdir())
    (1, 1, ['checkpoint.pt', 'config.json', 'curves.png', 'metrics.jsonl', 'model.safetensors', 'summary.json'])
    """
    card = model_card(model_name)
    if card["task"] != "detection":
        raise ValueError(f"{model_name} is not a detector (task {card['task']!r}); use spyv4 or spyv4_tiny")
    _check_size(image_size)
    recipe = card.get("recipe") or {}
    T = card["T"] if T is None else T
    batch_size = batch_size or recipe.get("batch_size", 16)
    optimizer = optimizer or recipe.get("optimizer", "adagrad")
    lr = recipe.get("lr", 1e-3) if lr is None else lr
    lr_schedule = lr_schedule or recipe.get("lr_schedule", "constant")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (reads per image) must be a positive integer, got {T!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_set, classes = detection_data(dataset, "train", root=root, image_size=image_size, n=n_train, seed=seed)
    test_set, _ = detection_data(dataset, "test", root=root, image_size=image_size, n=n_test, seed=seed)
    config = {"model": model_name, "model_kwargs": {"neuron": neuron, "num_classes": len(classes)},
              "dataset": dataset, "root": None if root is None else str(root), "classes": list(classes),
              "image_size": image_size, "T": T, "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer,
              "lr": lr, "lr_schedule": lr_schedule, "alpha": alpha, "beta": beta, "mosaic_epochs": mosaic_epochs,
              "label_smoothing": label_smoothing, "n_train": len(train_set), "n_test": len(test_set), "seed": seed}

    torch.manual_seed(seed)
    model = create_model(model_name, **config["model_kwargs"]).to(device)
    counts = {"num_params": sum(p.numel() for p in model.parameters()),
              "spiking_neurons": spiking_neuron_count(model, image_size)}
    if progress:
        print(f"{model_name}: {counts['num_params']:,} parameters, {counts['spiking_neurons']:,} spiking neurons "
              f"at {image_size}x{image_size}; {len(train_set)} training images, {T} reads each")
    criterion = YOLOLoss.for_model(model, label_smoothing=label_smoothing)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    fptt = FPTT(model.parameters(), opt, alpha=alpha, beta=beta)
    n_batches = (len(train_set) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * n_batches) if lr_schedule == "cosine" else None
    states = StatefulModules(model)
    mosaic = Mosaic(train_set, seed=seed)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    epoch, batch, step, history, seconds = 0, 0, 0, [], 0.0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=True, map_location=device)
        if ck["config"] != config:
            raise ValueError(f"cannot resume: {ckpt_path} was written with other settings; use the run's original "
                             f"flags (see {out / 'config.json'}) or another --out")
        model.load_state_dict(ck["model"])
        fptt.load_state_dict(ck["fptt"])
        if sched is not None:
            sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["rng"].cpu())
        epoch, batch, step, seconds = ck["epoch"], ck["batch"], ck["step"], ck["seconds"]
        history = [json.loads(line) for line in metrics_path.read_text().splitlines()][:ck["lines"]]
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    def checkpoint(ep, b):
        _save(ckpt_path, {"model": model.state_dict(), "fptt": fptt.state_dict(), "rng": torch.get_rng_state(),
                          "epoch": ep, "batch": b, "step": step, "seconds": seconds, "lines": len(history),
                          "config": config, **({"sched": sched.state_dict()} if sched is not None else {})})

    def evaluate_now(log):
        r = evaluate_detector(model, test_set, T, batch_size, classes, progress=progress, workers=workers)
        rec = {"step": step, "epoch": epoch, "map50": r["map50"], "map50_per_read": r["map50_per_read"]}
        history.append(rec)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if progress:
            print(f"epoch {epoch}: mAP@0.5 {100 * r['map50']:.2f}% on {r['n']} test images "
                  f"(per read: {', '.join(f'{100 * m:.1f}' for m in r['map50_per_read'])})")
        return r

    done_here, t_start, out_of_time, result = 0, time.perf_counter() - seconds, False, None
    model.train()
    with metrics_path.open("a") as log:
        while epoch < epochs and not out_of_time:
            source = mosaic if epoch < mosaic_epochs else train_set
            mosaic.set_epoch(epoch)
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            bar = tqdm(range(batch, n_batches), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                       initial=batch, total=n_batches, unit="batch")
            loader = DataLoader(source, batch_size=batch_size, sampler=order[batch * batch_size:].tolist(),
                                collate_fn=voc_collate, num_workers=workers)
            for b, (images, targets) in zip(bar, loader):
                images = images.to(device)
                targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
                lr_now = opt.param_groups[0]["lr"]
                losses, parts = fptt_reads_update(model, images, targets, criterion, fptt, T, states)
                if sched is not None:
                    sched.step()
                step += 1
                seconds = time.perf_counter() - t_start
                rec = {"step": step, "epoch": epoch, "batch": b, "loss": sum(losses) / T, "loss_first": losses[0],
                       "loss_last": losses[-1], **{f"{k}_last": v for k, v in parts.items()},
                       "mosaic": source is mosaic, "lr": lr_now, "seconds": round(seconds, 2)}
                history.append(rec)
                log.write(json.dumps(rec) + "\n")
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
                done_here += 1
                out_of_time = max_minutes is not None and seconds > 60 * max_minutes
                if (checkpoint_every and step % checkpoint_every == 0) or out_of_time or (
                        stop_after is not None and done_here >= stop_after):
                    log.flush()
                    checkpoint(epoch, b + 1)
                if stop_after is not None and done_here >= stop_after:
                    return {"stopped_at_step": step}
                if out_of_time:
                    batch = b + 1  # where a resumed run goes on
                    break
            bar.close()
            if out_of_time:
                break
            epoch, batch = epoch + 1, 0
            if epoch % eval_every == 0 or epoch == epochs:
                result = evaluate_now(log)
            checkpoint(epoch, 0)
        if result is None or out_of_time:
            result = evaluate_now(log)
            checkpoint(epoch, batch)

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    _plot(history, out / "curves.png")
    summary = {**config, **counts, "batches": sum("loss" in h for h in history), "epochs_done": epoch,
               "stopped_by_time_limit": out_of_time, "map50": result["map50"],
               "map50_per_read": result["map50_per_read"], "per_class_ap50": result["per_class"],
               "test_n": result["n"], "train_seconds": round(seconds, 1),
               # every evaluation of the run (step, epoch, mAP after each read): the curve, not only its end
               "evaluations": [h for h in history if "map50" in h]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h]
    tests = [h for h in history if "map50" in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([h["step"] for h in train], [h["loss"] for h in train], lw=0.8)
    a.set(xlabel="batch", ylabel="detection loss (mean over reads)", title="training loss", yscale="log")
    if tests:
        b.plot([h["step"] for h in tests], [100 * h["map50"] for h in tests], "o-")
    b.set(xlabel="batch", ylabel="mAP@0.5 (%)", title="test mAP@0.5 after the last read")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_detector(run_dir: str | os.PathLike):
    """``(model, config)`` of a finished ``train_detector`` run (its ``config.json`` and ``model.safetensors``),
    or of a published zoo detector given by name (e.g. ``"spyv4_tiny"``: the checkpoint, hash checked, and
    the configuration of the run that trained it).

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = train_detector(image_size=32, T=1, n_train=2, n_test=1, batch_size=2, out_dir=out, progress=False)
    >>> model, cfg = load_detector(out)
    >>> cfg["model"], cfg["image_size"], model.num_classes, model.training
    ('spyv4_tiny', 32, 5, False)
    """
    from safetensors.torch import load_file

    run = Path(run_dir)
    if not run.is_dir() and str(run_dir) in list_models():
        return _zoo_detector(str(run_dir))
    cfg_path, weights = run / "config.json", run / "model.safetensors"
    for f in (cfg_path, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; expected a run directory written by `fptt-ext train-detector`")
    cfg = json.loads(cfg_path.read_text())
    model = create_model(cfg["model"], **cfg["model_kwargs"])
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights} is unreadable ({type(err).__name__}: {err})") from err
    missing = set(model.state_dict()) - set(state)
    if missing or any(state[k].shape != v.shape for k, v in model.state_dict().items() if k in state):
        raise ValueError(f"{weights} does not match the network described by {cfg_path}")
    model.load_state_dict(state)
    model.eval()
    return model, cfg


def _zoo_detector(name: str):
    card = model_card(name)
    if card["task"] != "detection":
        raise ValueError(f"{name} is a {card['task']} model, not a detector; use spyv4_tiny or a train-detector run")
    model = create_model(name, pretrained=True)  # says how to train one when none is published
    cfg = {**card.get("trained_with", {}), "model": name, "model_kwargs": card.get("model_kwargs", {})}
    model.eval()
    return model, cfg
