"""Train and evaluate a classifier online over encoded image sequences.

Drives :class:`fptt_ext.SequenceTrainer` over an image dataset with a tqdm
progress bar, writes ``metrics.jsonl``, a resumable ``checkpoint.pt`` every
``checkpoint_every`` batches and at each epoch end (``resume=True`` continues
exactly: the data order, the rate-coding random numbers and all optimizer and
FPTT state are restored), the final ``model.safetensors`` and ``curves.png``.

Example (a tiny budget):
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> s = train_classifier(dataset="mnist5k", T=2, hidden=(16,), batch_size=50, limit_train=100,
    ...                      limit_test=50, out_dir=out, progress=False)
    >>> s["batches"], s["test_n"]
    (2, 50)
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..data.encodings import encode
from ..data.images import IMAGE_DATASETS, image_split
from ..fptt.loop import SequenceTrainer
from ..zoo import accuracy, create_model, model_card
from ..zoo.registry import model_constructor
from ._io import atomic_write

__all__ = ["DATASETS", "OPTIMIZERS", "evaluate_run", "train_classifier"]

DATASETS = IMAGE_DATASETS
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "step", "cosine", "cosine-per-epoch")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "adagrad": torch.optim.Adagrad,
              "sgd": torch.optim.SGD}


def _model_kwargs(name: str, neuron: str, step_shape, hidden) -> dict:
    """Constructor arguments for ``name`` fed one step of shape ``step_shape`` (JSON-ready)."""
    params = inspect.signature(model_constructor(name)).parameters
    kwargs = {"neuron": neuron}
    if "n_in" in params:  # dense and recurrent nets: the flattened step size
        kwargs["n_in"] = int(torch.Size(step_shape).numel())
    if hidden:
        if "hidden" not in params:
            raise ValueError(f"{name} has no hidden sizes to set (its layers are fixed by the paper)")
        kwargs["hidden"] = list(hidden) if params["hidden"].default is None or isinstance(
            params["hidden"].default, (tuple, list)) else int(hidden[0])
    return kwargs


def _check_weights(model: torch.nn.Module, state: dict, what: str) -> None:
    """Raise a one-line ``ValueError`` (not torch's multi-line ``RuntimeError``) if ``state``
    does not fit ``model``: missing or unexpected keys, or tensors of another shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shapes saved vs expected", shapes)) if items]
        raise ValueError(f"{what} ({'; '.join(parts)})")


def _resume(ckpt_path: Path, metrics_path: Path, model, trainer, sched, T: int) -> tuple[int, int, int, list, dict]:
    """Restore a run from ``checkpoint.pt`` (weights, trainer and scheduler state, RNG);
    returns ``(epoch, batch, step, history, seconds)``, a fresh start if there is no checkpoint.

    ``seconds`` is the data and compute time of the run up to the checkpoint; a checkpoint
    written before it was kept gives what is known, ``complete=False``."""
    if not ckpt_path.exists():
        return 0, 0, 0, [], _NO_TIME
    ck = torch.load(ckpt_path, weights_only=True)
    _check_weights(model, ck["model"], f"cannot resume: {ckpt_path} was written by a different network "
                                       f"than the one asked for (use the run's original flags, or another --out)")
    model.load_state_dict(ck["model"])
    trainer.load_state_dict(ck["trainer"], T=T)
    if sched is not None:
        sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"])
    history = [json.loads(line) for line in metrics_path.read_text().splitlines()][:ck["lines"]]
    seconds = ck.get("seconds", {**_NO_TIME, "complete": False})
    return ck["epoch"], ck["batch"], ck["step"], history, seconds


_NO_TIME = {"data": 0.0, "compute": 0.0, "complete": True}


def _save_checkpoint(path: Path, payload: dict) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def train_classifier(*, model_name: str = "ostl_rmnist", dataset: str | None = None, encoding: str | None = None,
                     T: int | None = None, method: str = "fptt", K: int | None = None, k: int = 1, neuron: str = "ltc",
                     hidden: tuple[int, ...] | None = None, epochs: int = 1, batch_size: int | None = None,
                     optimizer: str | None = None, lr: float | None = None, lr_step: int | None = None,
                     lr_gamma: float = 0.5, lr_schedule: str | None = None, alpha: float = 0.1, beta: float = 0.5,
                     clip: float | None = 1.0, divergence: str | None = None, divergence_weight: float | None = None,
                     wbar_at_epoch_end: bool | None = None, precision: str = "fp32",
                     channels_last: bool = False, fused_fptt: bool = False, compile: bool = False,
                     seed: int = 0, out_dir: str | os.PathLike = "runs/classify",
                     checkpoint_every: int = 100, resume: bool = False, limit_train: int | None = None,
                     limit_test: int | None = None, progress: bool = True, stop_after: int | None = None,
                     monitor_every: int = 50, monitor_n: int = 1000) -> dict:
    """Train a zoo classifier (default the R-MNIST network) and return a summary dict (also ``summary.json``).

    ``dataset``, ``encoding``, ``T``, ``K``, ``batch_size``, ``optimizer``, ``lr``, ``lr_schedule``,
    ``divergence``, ``divergence_weight`` and ``wbar_at_epoch_end`` left at ``None`` come from
    the model's card (its dataset and recipe; docs/recipes.md gives their sources). ``hidden`` sets the hidden sizes
    of the dense/recurrent zoo nets. ``lr_schedule``: ``"constant"``, ``"step"`` (multiply
    the learning rate by ``lr_gamma`` every ``lr_step`` epochs; the default when ``lr_step``
    is given), ``"cosine"`` (annealed to 0 over the whole run, batch by batch) or
    ``"cosine-per-epoch"`` (annealed to 0 within every epoch, then restarted: warm restarts). ``clip``:
    gradient-norm clipping before every update (1.0, as in all of the authors' scripts;
    ``None`` turns it off). ``divergence``, ``divergence_weight``: the classification
    loss's divergence term (:class:`fptt_ext.fptt.ClassificationLoss`).
    ``wbar_at_epoch_end``: with FPTT, set the weights to their running estimate
    ``W_bar`` at the end of every epoch, before testing (the authors' scripts do).
    ``monitor_every``: every that many batches, the progress bar and ``metrics.jsonl``
    get the accuracy on the first ``monitor_n`` test images, which the model never trains
    on (0 turns it off). ``precision="bf16"`` runs forward and backward under CPU
    autocast (the weights, optimizer and FPTT state stay float32); ``channels_last``
    stores conv weights and inputs NHWC. ``fused_fptt``: compile FPTT's per-step updates
    into one kernel per parameter (:class:`fptt_ext.fptt.FPTT` ``fused=True``). ``compile``: train through
    ``torch.compile(model)`` (:class:`fptt_ext.SequenceTrainer` ``compile=True``). ``stop_after``: stop after that many batches in
    this call (for tests of resuming).

    Example:
        >>> import tempfile
        >>> s = train_classifier(dataset="mnist5k", T=4, hidden=(16,), batch_size=16, limit_train=32, limit_test=20,
        ...                      out_dir=tempfile.mkdtemp(), progress=False)
        >>> s["batches"], s["test_n"], s["test_acc"] == evaluate_run(s["out_dir"])["test_accuracy"]
        (2, 20, True)
    """
    card = model_card(model_name)
    if card["task"] != "classification":
        raise ValueError(f"{model_name} is not an image classifier; see `fptt-ext zoo list`")
    recipe = {"batch_size": 128, "optimizer": "adam", "lr": 3e-3, **(card.get("recipe") or {})}
    dataset = dataset or card["dataset"]
    encoding = encoding or card["encoding"]
    T = card["T"] if T is None else T
    batch_size = recipe["batch_size"] if batch_size is None else batch_size
    optimizer = optimizer or recipe["optimizer"]
    lr = recipe["lr"] if lr is None else lr
    if method == "fptt" and K is None:
        K = recipe.get("K")
    # an explicit --lr-step means the step schedule, whatever the card's recipe says
    lr_schedule = lr_schedule or ("step" if lr_step else recipe.get("lr_schedule") or "constant")
    divergence = divergence or recipe.get("divergence", "running")
    divergence_weight = recipe.get("divergence_weight", 1.0) if divergence_weight is None else divergence_weight
    wbar_at_epoch_end = recipe.get("wbar_at_epoch_end", False) if wbar_at_epoch_end is None else wbar_at_epoch_end
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(T, int) or T <= 0:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if lr_schedule == "step" and not lr_step:
        raise ValueError("lr_schedule='step' needs lr_step (epochs between decays)")
    if clip is not None and not (clip > 0 and clip != float("inf")):
        raise ValueError(f"clip must be a finite norm > 0 or None (no clipping), got {clip!r}")
    if monitor_every < 0 or monitor_n < 1:
        raise ValueError(f"monitor_every must be >= 0 (0: off) and monitor_n >= 1, got {monitor_every}, {monitor_n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = image_split(dataset, "train", limit_train)
    x_test, y_test = image_split(dataset, "test", limit_test)
    model_kwargs = _model_kwargs(model_name, neuron, encode(encoding, x_train[:1], T).shape[2:], hidden)
    config = {"model": model_name, "model_kwargs": model_kwargs, "dataset": dataset, "encoding": encoding, "T": T,
              "method": method, "K": K, "k": k, "neuron": neuron, "epochs": epochs, "batch_size": batch_size,
              "optimizer": optimizer, "lr": lr, "lr_schedule": lr_schedule, "lr_step": lr_step, "lr_gamma": lr_gamma,
              "alpha": alpha, "beta": beta, "clip": clip, "divergence": divergence,
              "divergence_weight": divergence_weight, "wbar_at_epoch_end": wbar_at_epoch_end,
              "precision": precision, "channels_last": channels_last, "fused_fptt": fused_fptt, "compile": compile,
              "seed": seed,
              "limit_train": limit_train, "limit_test": limit_test}

    torch.manual_seed(seed)
    model = create_model(model_name, **model_kwargs)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=memory_format)
        x_train = x_train.contiguous(memory_format=memory_format)
    # foreach=True: torch.optim only picks the multi-tensor kernels by itself on GPUs
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, foreach=True)
    n_batches = (len(y_train) + batch_size - 1) // batch_size
    sched = (torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_schedule == "step" else
             torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * n_batches) if lr_schedule == "cosine" else
             torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, n_batches) if lr_schedule == "cosine-per-epoch"
             else None)
    trainer = SequenceTrainer(model, opt, method=method, K=K, k=k, loss="classification", num_classes=10,
                              alpha=alpha, beta=beta, max_grad_norm=clip, fused=fused_fptt, compile=compile,
                              loss_options={"divergence": divergence, "divergence_weight": divergence_weight})
    x_monitor, y_monitor = x_test[:monitor_n], y_test[:monitor_n]
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    epoch, batch, step, history, seconds = _resume(ckpt_path, metrics_path, model, trainer, sched, T) if resume \
        else (0, 0, 0, [], _NO_TIME)
    # written after a resumed checkpoint was accepted, so a refused resume leaves the run's config alone
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    def checkpoint(ep, b):
        _save_checkpoint(ckpt_path, {"model": model.state_dict(), "trainer": trainer.state_dict(),
                                     "scheduler": sched.state_dict() if sched else {}, "rng": torch.get_rng_state(),
                                     "epoch": ep, "batch": b, "step": step, "lines": len(history),
                                     # the time of the batches the checkpoint holds, kept across resumes
                                     "seconds": {"data": t_data, "compute": t_compute,
                                                 "complete": seconds["complete"]}})

    t_data, t_compute = seconds["data"], seconds["compute"]
    heldout = next((h["heldout_acc"] for h in reversed(history) if "heldout_acc" in h), None)
    done_here = 0
    with metrics_path.open("a") as log:
        while epoch < epochs:
            order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            bar = tqdm(range(batch, n_batches), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                       initial=batch, total=n_batches, unit="batch")
            for b in bar:
                t0 = time.perf_counter()
                idx = order[b * batch_size:(b + 1) * batch_size]
                xb, yb = encode(encoding, x_train[idx], T), y_train[idx]
                t1 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    res = trainer.train_batch(xb, yb)
                t2 = time.perf_counter()
                t_data, t_compute = t_data + t1 - t0, t_compute + t2 - t1
                step += 1
                rec = {"step": step, "epoch": epoch, "batch": b, "loss": res.loss, "lr": opt.param_groups[0]["lr"]}
                if lr_schedule.startswith("cosine"):
                    sched.step()
                if monitor_every and step % monitor_every == 0:
                    # Accuracy on test images the model never trains on (the training batch's own
                    # outputs are predicted after most of its updates: no held-out figure).
                    heldout = accuracy(model, x_monitor, y_monitor, encoding, T)
                    rec["heldout_acc"] = heldout
                history.append(rec)
                log.write(json.dumps(rec) + "\n")
                post = {"loss": f"{res.loss:.3f}"}
                if heldout is not None:
                    post[f"heldout_acc({len(y_monitor)} test imgs)"] = f"{heldout:.1f}"
                bar.set_postfix(post)
                done_here += 1
                if checkpoint_every and step % checkpoint_every == 0:
                    log.flush()
                    checkpoint(epoch, b + 1)
                if stop_after is not None and done_here >= stop_after:
                    log.flush()
                    checkpoint(epoch, b + 1)
                    return {"stopped_at_step": step}
            bar.close()
            epoch, batch = epoch + 1, 0
            if lr_schedule == "step":
                sched.step()
            if wbar_at_epoch_end and method == "fptt":
                trainer.optimizer.load_running_estimate()
            test_acc = accuracy(model, x_test, y_test, encoding, T)
            rec = {"step": step, "epoch": epoch, "test_acc": test_acc}
            history.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            checkpoint(epoch, 0)
            if progress:
                print(f"epoch {epoch}: test accuracy {test_acc:.2f}% on {len(y_test)} images")

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    _plot(history, out / "curves.png")
    tests = [h["test_acc"] for h in history if "test_acc" in h]
    summary = {**config, "out_dir": str(out), "batches": sum("loss" in h for h in history),
               "test_acc_per_epoch": tests,
               "test_acc": tests[-1] if tests else None, "test_n": len(y_test),
               "data_time_share": t_data / max(t_data + t_compute, 1e-9),
               "seconds_data": t_data, "seconds_compute": t_compute,
               # False: resumed from a checkpoint that did not keep the time before it
               "time_complete": seconds["complete"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _plot(history: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [h for h in history if "loss" in h]
    monitor = [h for h in history if "heldout_acc" in h]
    tests = [h for h in history if "test_acc" in h]
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    a.plot([h["step"] for h in train], [h["loss"] for h in train], lw=0.8)
    a.set(xlabel="batch", ylabel="training loss (mean over the batch's updates)", title="loss")
    if monitor:
        b.plot([h["step"] for h in monitor], [h["heldout_acc"] for h in monitor], lw=0.8,
               label="held-out (first test images, during training)")
    if tests:
        b.plot([h["step"] for h in tests], [h["test_acc"] for h in tests], "o-", label="test set, end of epoch")
    b.set(xlabel="batch", ylabel="accuracy (%)", title="accuracy on images never trained on")
    if monitor or tests:
        b.legend()
    fig.savefig(path, dpi=100)


def evaluate_run(run_dir: str | os.PathLike, limit: int | None = None) -> dict:
    """Re-evaluate a finished ``train_classifier`` run from its ``config.json`` and
    ``model.safetensors``; returns ``{"test_accuracy": percent, "n": samples}``.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = train_classifier(dataset="mnist5k", T=4, hidden=(16,), batch_size=16, limit_train=16, limit_test=10,
        ...                      out_dir=d, progress=False)
        >>> evaluate_run(d)["n"]
        10
    """
    from safetensors.torch import load_file

    run = Path(run_dir)
    cfg_path, weights = run / "config.json", run / "model.safetensors"
    for f in (cfg_path, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; expected a run directory written by `fptt-ext train`")
    cfg = json.loads(cfg_path.read_text())
    x, y = image_split(cfg["dataset"], "test", limit if limit is not None else cfg.get("limit_test"))
    kwargs = cfg.get("model_kwargs") or {"neuron": cfg["neuron"], "hidden": cfg["hidden"],
                                         "n_in": encode(cfg["encoding"], x[:1], cfg["T"]).shape[-1]}
    model = create_model(cfg.get("model", "ostl_rmnist"), **kwargs)
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights} is unreadable ({type(err).__name__}: {err})") from err
    _check_weights(model, state, f"{weights} does not match the network of {cfg_path}")
    model.load_state_dict(state)
    return {"test_accuracy": accuracy(model, x, y, cfg["encoding"], cfg["T"]), "n": len(y)}
