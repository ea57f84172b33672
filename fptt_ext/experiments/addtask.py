"""The Add-task experiment (papers' Fig. 2a/b): FPTT vs BPTT vs TBPTT-1 on LTC-SNN,
ALIF-SNN and LSTM, with resumable checkpoints.

:func:`run_addtask` trains one network on fresh batches (one batch per iteration,
batch ``i`` derived from ``(seed, i)``) and writes to ``out_dir``:

* ``config.json`` - the run's settings;
* ``log.csv`` - per iteration: ``iteration`` (1-based), ``loss`` (the trainer's
  mean weighted task loss over the updates of the training batch), ``train_mse``
  (final-step MSE of the training batch, predicted while that batch's earlier windows
  were already updating the weights: a training figure, not a held-out one),
  ``heldout_mse`` (final-step MSE on a fresh batch the model never trains on, in eval
  mode with no update, measured after the iteration's updates: the authors' logged
  figure), ``time`` (seconds for the training updates) and ``elapsed``;
* ``summary.json`` - ``final_mse`` (mean held-out MSE of the last 100 finite
  iterations), ``mse100_by_iteration`` (the same mean up to iteration 100, 200, 300, 500,
  1000, ...), ``best_mse100`` (the lowest mean held-out MSE over 100 consecutive
  iterations, and where it ends), ``max_excursion`` (after that window, the largest
  held-out MSE over the running mean of the 100 before it), ``diverged`` /
  ``diverged_at`` and timings;
* ``checkpoint.pt`` - every ``checkpoint_every`` iterations and at the end
  (tensors and primitive containers only: ``torch.load(..., weights_only=True)``);
* ``loss.png`` - the run's curve (:func:`plot_addtask`).

``resume=True`` continues from ``checkpoint.pt`` and gives the same ``loss`` and
``mse`` columns as an uninterrupted run (wall times differ, of course).

A non-finite loss or gradient (BPTT on LTC-SNN at T = 1000 diverges, as in the
paper) ends the run early: the iteration is logged with NaN, the summary records
``"diverged": true`` and the iteration, and summary and plot are still written.

Example:
    >>> import tempfile, json, os
    >>> d = tempfile.mkdtemp()
    >>> s = run_addtask(T=6, iterations=2, batch_size=4, hidden=8, out_dir=d, progress=False)
    >>> s["iterations"], s["diverged"], sorted(os.listdir(d))
    (2, False, ['checkpoint.pt', 'config.json', 'log.csv', 'loss.png', 'summary.json'])
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.addtask import AddTask
from ..fptt.loop import METHODS, SequenceTrainer, window_ends
from ..fptt.losses import RegressionEndLoss
from ..zoo.srnn import ADDTASK_MODELS, addtask_model, addtask_neuron_defaults
from ._io import atomic_write

__all__ = ["LOG_FIELDS", "plot_addtask", "read_log", "run_addtask", "run_label", "stability_summary"]

LOG_FIELDS = ("iteration", "loss", "train_mse", "heldout_mse", "time", "elapsed")
SUMMARY_WINDOW = 100
MARKS = (100, 200, 300, 500, 1000, 1500, 2000, 2500, 3000)
_CHECKPOINT_FORMAT = 2
# Held-out batch i is AddTask(T, eval_batch_size, seed).batch(HELDOUT_OFFSET + i): a part of
# the seeded stream that training (batches 0, 1, 2, ...) never reaches.
HELDOUT_OFFSET = 10**9
DEFAULT_WINDOWS = 10  # FPTT-K windows of the authors' Add-task script (--parts 10)
# Settings that must match between a checkpoint and the run resuming it.
_RUN_KEYS = ("T", "method", "model", "hidden", "batch_size", "lr", "K", "k", "alpha", "beta", "seed",
             "max_grad_norm", "readout", "threshold", "beta_a", "loss_weighting", "eval_batch_size",
             "detach_adaptation", "lr_milestones", "lr_gamma")
# A checkpoint written before a setting existed was made with its default.
_RUN_DEFAULTS = {"detach_adaptation": False, "lr_milestones": [], "lr_gamma": 0.1}


def run_label(config: dict) -> str:
    """``"FPTT-LTC"``, ``"TBPTT-1-LTC"``, ``"FPTT-K10-ALIF"``, ``"BPTT-LSTM"`` ...

    >>> run_label({"method": "tbptt", "k": 1, "model": "ltc", "T": 1000})
    'TBPTT-1-LTC'
    >>> run_label({"method": "fptt", "K": 10, "model": "ltc", "T": 1000, "threshold": 0.1, "beta_a": 1.8})
    'FPTT-K10-LTC (b0 0.1, beta_a 1.8)'
    >>> run_label({"method": "bptt", "model": "lstm", "T": 1000, "seed": 1})
    'BPTT-LSTM (seed 1)'
    """
    method = config["method"].upper()
    if config["method"] == "tbptt":
        method += f"-{config.get('k', 1)}"
    elif config["method"] == "fptt" and config.get("K") not in (None, config.get("T")):
        method += f"-K{config['K']}"
    notes = []  # what differs from the model's default network
    if config["model"] != "lstm":
        threshold, beta_a = config.get("threshold"), config.get("beta_a", 0.0)
        if threshold is not None and (threshold, beta_a) != addtask_neuron_defaults(config["model"]):
            notes.append(f"threshold {threshold:g}, no adaptation" if beta_a == 0 else
                         f"b0 {threshold:g}, beta_a {beta_a:g}")
        if beta_a != 0 and not config.get("detach_adaptation", True):
            notes.append("exact adaptation gradient")
    if config.get("lr_milestones"):
        notes.append("lr steps at " + ", ".join(map(str, config["lr_milestones"])))
    if config.get("seed", 0) != 0:  # so that two seeds of one recipe tell apart in a plot
        notes.append(f"seed {config['seed']}")
    return f"{method}-{config['model'].upper()}" + (f" ({'; '.join(notes)})" if notes else "")


def _validate(T, method, model, iterations, batch_size, lr, K, k, seed, checkpoint_every) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if model not in ADDTASK_MODELS:
        raise ValueError(f"unknown Add-task model {model!r}; use one of {ADDTASK_MODELS}")
    AddTask(T, batch_size, seed)  # checks T >= 2, batch_size >= 1, seed >= 0
    window_ends(T, method, K, k)  # checks K / k against T
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()))


def _row_text(row: dict) -> str:
    # repr() round-trips floats exactly, so a resumed log matches bit for bit.
    return ",".join(repr(row[k]) if isinstance(row[k], float) else str(row[k]) for k in LOG_FIELDS) + "\n"


def read_log(run_dir) -> list[dict]:
    """The rows of ``run_dir/log.csv`` as dicts (``iteration`` int, the rest float).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = run_addtask(T=6, iterations=3, batch_size=4, hidden=8, out_dir=d, progress=False)
        >>> [row["iteration"] for row in read_log(d)], sorted(read_log(d)[0])
        ([1, 2, 3], ['elapsed', 'heldout_mse', 'iteration', 'loss', 'time', 'train_mse'])
    """
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no Add-task log at {path}; is {run_dir} a run directory of run_addtask?")
    with open(path, newline="") as f:
        return [{k: int(r[k]) if k == "iteration" else float(r[k]) for k in LOG_FIELDS} for r in csv.DictReader(f)]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def _rolling_means(values: list[float], n: int) -> list[float]:
    """Mean of each run of ``n`` consecutive values (``len(values) - n + 1`` of them)."""
    if len(values) < n:
        return []
    t = torch.tensor(values, dtype=torch.float64).unfold(0, n, 1)
    return t.mean(1).tolist()


def stability_summary(mse: list[float], window: int = SUMMARY_WINDOW, converged: float = 0.01) -> dict:
    """Best ``window``-mean, where the run first reaches ``converged`` (as a ``window``-mean),
    and after that the largest ratio of one held-out MSE to the mean of the ``window`` before it.

    ``mse`` is a held-out MSE per iteration (any run's: ``summary.json`` uses it on ``log.csv``).

    Example:
        >>> s = stability_summary([0.2] * 100 + [0.004] * 150 + [0.02] + [0.004] * 10)
        >>> s["converged_at"], round(s["max_excursion"], 6)
        (197, 5.0)
    """
    means = _rolling_means(mse, window)
    if not means:
        return {"best_mse100": None, "best_mse100_at": None, "converged_at": None, "max_excursion": None}
    best = min(range(len(means)), key=means.__getitem__)
    conv = next((i for i, m in enumerate(means) if m <= converged), None)
    excursion = None
    if conv is not None:
        # means[j] covers iterations j+1 .. j+window (1-based); value k (0-based) is compared
        # with the mean of the window values before it, means[k - window].
        ratios = [mse[k] / means[k - window] for k in range(conv + window, len(mse)) if means[k - window] > 0]
        excursion = max(ratios) if ratios else None
    return {"best_mse100": means[best], "best_mse100_at": best + window,
            "converged_at": None if conv is None else conv + window, "max_excursion": excursion}


def _summary(config: dict, rows: list[dict], diverged_at: int | None) -> dict:
    finite = [r for r in rows if math.isfinite(r["heldout_mse"]) and math.isfinite(r["loss"])]
    last = finite[-SUMMARY_WINDOW:]
    mse, mse_std = _mean_std([r["heldout_mse"] for r in last])
    train_mse, _ = _mean_std([r["train_mse"] for r in last])
    loss, _ = _mean_std([r["loss"] for r in last])
    total = sum(r["time"] for r in rows)
    return {
        "label": run_label(config), "config": config, "iterations": len(rows),
        "final_mse": mse, "final_mse_std": mse_std, "final_train_mse": train_mse, "final_loss": loss,
        "final_window": len(last), **stability_summary([r["heldout_mse"] for r in finite]),
        # for runs of different lengths: the mean held-out MSE of the 100 iterations before each mark
        "mse100_by_iteration": {str(n): _mean_std([r["heldout_mse"] for r in rows[n - SUMMARY_WINDOW:n]])[0]
                                for n in MARKS if n <= len(rows)
                                and all(math.isfinite(r["heldout_mse"]) for r in rows[n - SUMMARY_WINDOW:n])},
        "diverged": diverged_at is not None, "diverged_at": diverged_at,
        "seconds_per_iteration": total / len(rows) if rows else None, "total_seconds": total,
    }


def _save_checkpoint(path: Path, config, net, trainer, iteration: int, diverged_at) -> None:
    ckpt = {"format": _CHECKPOINT_FORMAT, "config": config, "iteration": iteration, "diverged_at": diverged_at,
            "model": net.state_dict(), "trainer": trainer.state_dict(), "rng": torch.get_rng_state()}
    atomic_write(path, lambda f: torch.save(ckpt, f))


def run_addtask(T: int = 1000, method: str = "fptt", model: str = "ltc", iterations: int = 3000,
                batch_size: int = 128, lr: float = 3e-3, K: int | None = None, k: int = 1, alpha: float = 0.1,
                beta: float = 0.5, seed: int = 0, out_dir="runs/addtask", checkpoint_every: int = 100,
                resume: bool = False, progress: bool = True, hidden: int = 128,
                max_grad_norm: float | None = 1.0, readout: str = "mem", threshold: float | None = None,
                beta_a: float | None = None, loss_weighting: str | None = None,
                eval_batch_size: int | None = None, detach_adaptation: bool | None = None,
                lr_milestones=(), lr_gamma: float = 0.1, compile: bool = False) -> dict:
    """Train ``model`` on the Add-task of length ``T`` with ``method``; returns the summary.

    The defaults are the authors' released recipe (docs/recipes.md):
    batch 128, Adam 3e-3, FPTT over K = 10 windows, gradient-norm clipping at 1.0,
    their Add-task neuron (a constant threshold of 0.5, no adaptation) with
    ``Linear(128, 1)`` on the membrane potential, the per-window loss weight
    ``p + 1/K``, and after every iteration the MSE on a fresh batch with no update.

    Args:
        T: sequence length (>= 2).
        method: ``"fptt"`` (``K`` windows), ``"bptt"`` or ``"tbptt"`` (windows of ``k``
            steps) - see :class:`fptt_ext.SequenceTrainer`.
        K: FPTT windows; default 10 (the authors'), or ``T`` if ``T < 10``; ``K=T``
            updates at every step.
        model: ``"ltc"``, ``"ltc-minus"`` (``liquid_adp=False``), ``"alif"`` or ``"lstm"``
            (:func:`fptt_ext.zoo.srnn.addtask_model`).
        iterations: number of batches (one fresh batch per iteration).
        batch_size, lr: Adam with ``lr``.
        alpha, beta: FPTT regulariser settings (``method="fptt"`` only).
        seed: model initialisation and the data stream (batch ``i`` depends on
            ``(seed, i)`` only; the held-out batches come from the same stream far
            beyond any training batch).
        out_dir: where the log, summary, checkpoint and plot go (created).
        checkpoint_every: save ``checkpoint.pt`` every so many iterations (and at the end).
        resume: continue from ``out_dir/checkpoint.pt`` (the settings must match, except
            learning-rate milestones still ahead of the checkpoint); without a checkpoint
            the run starts from scratch, with a warning.
        progress: show a tqdm bar.
        hidden: recurrent units (128 in the paper).
        max_grad_norm: gradient-norm clipping before every update (``None``: off).
        readout, threshold, beta_a: the spiking net's readout (``"mem"`` or ``"spk"``),
            baseline threshold and adaptation strength; ``None``:
            :func:`fptt_ext.zoo.srnn.addtask_neuron_defaults` (``ltc``: the authors' Add-task
            neuron, ``threshold=0.5, beta_a=0``; ``ltc-minus``, ``alif``: 0.1 and 1.8).
        detach_adaptation: no gradient through the spike that drives the adaptation
            (:class:`fptt_ext.LTC`); the full LTC-SN needs it over windows of 100 steps
            (docs/recipes.md). Default (``None``): on whenever the threshold adapts
            (``beta_a != 0``).
        loss_weighting: ``"window"`` (``p + 1/K``, the authors') or ``"time"``
            (``t / T``); default ``"window"`` for FPTT, ``"time"`` otherwise (BPTT: weight 1).
        eval_batch_size: held-out batch size (default ``batch_size``).
        lr_milestones, lr_gamma: multiply the learning rate by ``lr_gamma`` after each of
            these iterations (``MultiStepLR``, like the authors' ``--when``); none by default.
        compile: train through ``torch.compile(net)`` (:class:`fptt_ext.SequenceTrainer`
            ``compile=True``); the same recipe, rounded differently, so a run may resume with or
            without it.

    The global torch RNG of the caller is left untouched (the run forks it), and
    no thread settings are changed.

    Example:
        >>> import tempfile
        >>> s = run_addtask(T=6, method="tbptt", k=2, iterations=2, batch_size=4, hidden=8, out_dir=tempfile.mkdtemp(),
        ...                 progress=False)
        >>> s["iterations"], s["diverged"], s["config"]["loss_weighting"]
        (2, False, 'time')
    """
    if method == "fptt" and K is None:
        K = min(DEFAULT_WINDOWS, T) if isinstance(T, int) else K  # a bad T is reported by _validate
    _validate(T, method, model, iterations, batch_size, lr, K, k, seed, checkpoint_every)
    if loss_weighting is None:
        loss_weighting = "window" if method == "fptt" else "time"
    eval_batch_size = eval_batch_size or batch_size
    default_threshold, default_beta_a = addtask_neuron_defaults(model)
    threshold = default_threshold if threshold is None else threshold
    beta_a = default_beta_a if beta_a is None else beta_a
    if detach_adaptation is None:
        detach_adaptation = model != "lstm" and beta_a != 0
    config = {"T": T, "method": method, "model": model, "hidden": hidden, "batch_size": batch_size, "lr": lr,
              "K": K, "k": k, "alpha": alpha, "beta": beta, "seed": seed, "max_grad_norm": max_grad_norm,
              "readout": readout, "threshold": threshold, "beta_a": beta_a, "loss_weighting": loss_weighting,
              "eval_batch_size": eval_batch_size, "detach_adaptation": detach_adaptation,
              "lr_milestones": sorted(int(m) for m in lr_milestones), "lr_gamma": lr_gamma, "compile": compile,
              # what `fptt-ext zoo publish srnn_addtask RUN` builds the network with
              "model_kwargs": {"neuron": model, "hidden": hidden, "readout": readout, "threshold": threshold,
                               "beta_a": beta_a, "detach_adaptation": detach_adaptation} if model != "lstm" else None}
    out = Path(out_dir)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    data, heldout = AddTask(T, batch_size, seed), AddTask(T, eval_batch_size, seed)
    n_windows = len(window_ends(T, method, K, k))
    loss = RegressionEndLoss(T, loss_weighting, K=n_windows if loss_weighting == "window" else None)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = {} if model == "lstm" else {"readout": readout, "threshold": threshold, "beta_a": beta_a,
                                             "detach_adaptation": detach_adaptation}
        net, explicit = addtask_model(model, hidden, **kwargs)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, config["lr_milestones"], lr_gamma)
        trainer = SequenceTrainer(net, opt, method=method, K=K, k=k, loss=loss, alpha=alpha,
                                  beta=beta, explicit_state=explicit, max_grad_norm=max_grad_norm, compile=compile)

        rows, start, diverged_at = [], 0, None
        if resume and not ckpt_path.is_file():
            warnings.warn(f"resume=True but there is no {ckpt_path}; starting from scratch", RuntimeWarning,
                          stacklevel=2)
            resume = False
        if resume:
            ckpt = torch.load(ckpt_path, weights_only=True)
            if ckpt.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError(f"cannot resume {ckpt_path}: it has checkpoint format {ckpt.get('format')}, "
                                 f"this version writes {_CHECKPOINT_FORMAT}; start a new run directory")
            saved = {key: ckpt["config"].get(key, _RUN_DEFAULTS.get(key)) for key in _RUN_KEYS}
            done = int(ckpt["iteration"])
            # Milestones still ahead may be added or moved: the run so far is the same as one
            # started with them (its learning rate only changes after a milestone).
            past = [m for m in saved["lr_milestones"] if m <= done]
            same_past = past == [m for m in config["lr_milestones"] if m <= done]
            schedule_ok = same_past and (not past or saved["lr_gamma"] == config["lr_gamma"])
            diff = [f"{key}={saved[key]!r} (now {config[key]!r})" for key in _RUN_KEYS if saved[key] != config[key]
                    and not (key in ("lr_milestones", "lr_gamma") and schedule_ok)]
            if diff:
                raise ValueError(f"cannot resume {ckpt_path}: it was made with " + ", ".join(diff))
            net.load_state_dict(ckpt["model"])
            trainer.load_state_dict(ckpt["trainer"], T=T)
            sched.last_epoch = done  # the optimizer's lr (restored above) already holds the milestones passed
            torch.set_rng_state(ckpt["rng"])
            start, diverged_at = int(ckpt["iteration"]), ckpt["diverged_at"]
            rows = read_log(out)
            if len(rows) < start:
                raise ValueError(f"cannot resume: {log_path} has {len(rows)} rows but the checkpoint is at "
                                 f"iteration {start}")
            rows = rows[:start]  # drop iterations logged after the last checkpoint
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", config)
        atomic_write(log_path, lambda f: f.write((",".join(LOG_FIELDS) + "\n"
                                                   + "".join(_row_text(r) for r in rows)).encode()))

        from tqdm.auto import tqdm

        elapsed = rows[-1]["elapsed"] if rows else 0.0
        end = start if diverged_at is not None else iterations
        bar = tqdm(total=max(iterations, start), initial=start, desc=f"{run_label(config)} T={T}",
                   unit="it", disable=not progress, dynamic_ncols=True)
        with open(log_path, "a") as log, bar:
            for i in range(start, end):
                x, y = data.batch(i)
                t0 = time.perf_counter()
                try:
                    result = trainer.train_batch(x, y)
                    train_loss = result.loss
                    train_mse = F.mse_loss(result.outputs[-1].reshape(y.shape), y).item()
                except FloatingPointError:
                    train_loss = train_mse = math.nan
                sched.step()
                dt = time.perf_counter() - t0
                heldout_mse = math.nan
                if math.isfinite(train_loss):
                    xh, yh = heldout.batch(HELDOUT_OFFSET + i)
                    heldout_mse = F.mse_loss(trainer.predict(xh)[-1].reshape(yh.shape), yh).item()
                elapsed += time.perf_counter() - t0
                row = {"iteration": i + 1, "loss": float(train_loss), "train_mse": float(train_mse),
                       "heldout_mse": float(heldout_mse), "time": dt, "elapsed": elapsed}
                rows.append(row)
                log.write(_row_text(row))
                log.flush()
                bar.update(1)
                bar.set_postfix(train_loss=f"{train_loss:.4g}", heldout_mse=f"{heldout_mse:.4g}", refresh=False)
                if not all(math.isfinite(row[key]) for key in ("loss", "train_mse", "heldout_mse")):
                    diverged_at = i + 1
                    bar.write(f"{run_label(config)}: non-finite loss at iteration {i + 1}; the run diverged")
                    _save_checkpoint(ckpt_path, config, net, trainer, i + 1, diverged_at)
                    break
                if (i + 1) % checkpoint_every == 0 or i + 1 == iterations:
                    _save_checkpoint(ckpt_path, config, net, trainer, i + 1, diverged_at)

    summary = _summary(config, rows, diverged_at)
    _write_json(out / "summary.json", summary)
    plot_addtask([out], out / "loss.png")
    return summary


def _moving_average(values: list[float], n: int) -> list[float]:
    if n <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    kernel = torch.ones(1, 1, n, dtype=torch.float64) / n
    padded = torch.cat((t[:1].repeat(n - 1), t)).view(1, 1, -1)  # causal window, NaN propagates
    return torch.nn.functional.conv1d(padded, kernel).view(-1).tolist()


def plot_addtask(run_dirs, out_png, smooth: int = 1, title: str | None = None) -> Path:
    """Held-out final-step MSE vs iteration (log y) of several runs on one figure, saved as PNG.

    ``smooth`` > 1 draws a moving average over that many iterations. Runs are
    labelled by method and model (``"FPTT-LTC"``, ``"TBPTT-1-LTC"`` ...); a
    diverged run gets an ``x`` at its last finite point. Uses matplotlib's Agg
    canvas directly (no pyplot, no global backend change).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for method in ("fptt", "bptt"):
        ...     _ = run_addtask(T=6, method=method, iterations=2, batch_size=4, hidden=8, out_dir=f"{d}/{method}",
        ...                     progress=False)
        >>> png = plot_addtask([f"{d}/fptt", f"{d}/bptt"], f"{d}/loss.png", title="Add-task, T = 6")
        >>> os.path.getsize(png) > 0
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("plot_addtask needs at least one run directory")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        rows = read_log(run_dir)
        cfg_path = run_dir / "config.json"
        label = run_label(json.loads(cfg_path.read_text())) if cfg_path.is_file() else run_dir.name
        its = [r["iteration"] for r in rows]
        mse = _moving_average([r["heldout_mse"] for r in rows], smooth)
        diverged = next((r["iteration"] for r in rows if not math.isfinite(r["heldout_mse"])), None)
        if diverged is not None:
            label += f" (diverged at {diverged})"
        (line,) = ax.plot(its, mse, label=label, linewidth=1)
        if diverged is not None:
            good = [(i, m) for i, m in zip(its, mse) if math.isfinite(m)]
            if good:
                ax.plot(*good[-1], marker="x", color=line.get_color(), markersize=9, mew=2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out final-step MSE" + (f" (moving average {smooth})" if smooth > 1 else ""))
    ax.set_title(title or "Add-task")
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: inside, a legend of many runs hides the curves it names
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small", frameon=False)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    return out_png
