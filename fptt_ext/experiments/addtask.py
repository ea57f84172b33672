"""The Add-task experiment (papers' Fig. 2a/b): FPTT vs BPTT vs TBPTT-1 on LTC-SNN,
ALIF-SNN and LSTM, with resumable checkpoints.

:func:`run_addtask` trains one network on fresh batches (one batch per iteration,
batch ``i`` derived from ``(seed, i)``) and writes to ``out_dir``:

* ``config.json`` - the run's settings;
* ``log.csv`` - per iteration: ``iteration`` (1-based), ``loss`` (the trainer's
  mean task loss over the updates of the batch), ``mse`` (final-step MSE of the
  prediction vs the target), ``time`` (seconds for the iteration) and ``elapsed``;
* ``summary.json`` - ``final_mse`` (mean final-step MSE of the last 100 finite
  iterations), ``diverged`` / ``diverged_at`` and timings;
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
from ..zoo.srnn import ADDTASK_MODELS, addtask_model
from ._io import atomic_write

__all__ = ["LOG_FIELDS", "plot_addtask", "read_log", "run_addtask", "run_label"]

LOG_FIELDS = ("iteration", "loss", "mse", "time", "elapsed")
SUMMARY_WINDOW = 100
_CHECKPOINT_FORMAT = 1
# Settings that must match between a checkpoint and the run resuming it.
_RUN_KEYS = ("T", "method", "model", "hidden", "batch_size", "lr", "K", "k", "alpha", "beta", "seed",
             "max_grad_norm")


def run_label(config: dict) -> str:
    """``"FPTT-LTC"``, ``"TBPTT-1-LTC"``, ``"FPTT-K10-ALIF"``, ``"BPTT-LSTM"`` ...

    >>> run_label({"method": "tbptt", "k": 1, "model": "ltc", "T": 1000})
    'TBPTT-1-LTC'
    """
    method = config["method"].upper()
    if config["method"] == "tbptt":
        method += f"-{config.get('k', 1)}"
    elif config["method"] == "fptt" and config.get("K") not in (None, config.get("T")):
        method += f"-K{config['K']}"
    return f"{method}-{config['model'].upper()}"


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
        ([1, 2, 3], ['elapsed', 'iteration', 'loss', 'mse', 'time'])
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


def _summary(config: dict, rows: list[dict], diverged_at: int | None) -> dict:
    finite = [r for r in rows if math.isfinite(r["mse"]) and math.isfinite(r["loss"])]
    last = finite[-SUMMARY_WINDOW:]
    mse, mse_std = _mean_std([r["mse"] for r in last])
    loss, _ = _mean_std([r["loss"] for r in last])
    total = sum(r["time"] for r in rows)
    return {
        "label": run_label(config), "config": config, "iterations": len(rows),
        "final_mse": mse, "final_mse_std": mse_std, "final_loss": loss, "final_window": len(last),
        "diverged": diverged_at is not None, "diverged_at": diverged_at,
        "seconds_per_iteration": total / len(rows) if rows else None, "total_seconds": total,
    }


def _save_checkpoint(path: Path, config, net, trainer, iteration: int, diverged_at) -> None:
    ckpt = {"format": _CHECKPOINT_FORMAT, "config": config, "iteration": iteration, "diverged_at": diverged_at,
            "model": net.state_dict(), "trainer": trainer.state_dict(), "rng": torch.get_rng_state()}
    atomic_write(path, lambda f: torch.save(ckpt, f))


def run_addtask(T: int = 1000, method: str = "fptt", model: str = "ltc", iterations: int = 3000,
                batch_size: int = 64, lr: float = 3e-3, K: int | None = None, k: int = 1, alpha: float = 0.1,
                beta: float = 0.5, seed: int = 0, out_dir="runs/addtask", checkpoint_every: int = 100,
                resume: bool = False, progress: bool = True, hidden: int = 128,
                max_grad_norm: float | None = None) -> dict:
    """Train ``model`` on the Add-task of length ``T`` with ``method``; returns the summary.

    Args:
        T: sequence length (>= 2).
        method: ``"fptt"`` (``K`` windows, default every step), ``"bptt"`` or
            ``"tbptt"`` (windows of ``k`` steps) - see :class:`fptt_ext.SequenceTrainer`.
        model: ``"ltc"``, ``"alif"`` or ``"lstm"`` (:func:`fptt_ext.zoo.srnn.addtask_model`).
        iterations: number of batches (one fresh batch per iteration).
        batch_size, lr: Adam with ``lr`` (3e-3 as in the paper).
        alpha, beta: FPTT regulariser settings (``method="fptt"`` only).
        seed: model initialisation and the data stream (batch ``i`` depends on
            ``(seed, i)`` only).
        out_dir: where the log, summary, checkpoint and plot go (created).
        checkpoint_every: save ``checkpoint.pt`` every so many iterations (and at the end).
        resume: continue from ``out_dir/checkpoint.pt`` (the settings must match);
            without a checkpoint the run starts from scratch, with a warning.
        progress: show a tqdm bar.
        hidden: recurrent units (128 in the paper).
        max_grad_norm: optional gradient clipping (not used in the paper).

    The global torch RNG of the caller is left untouched (the run forks it), and
    no thread settings are changed.

    Example:
        >>> import tempfile
        >>> s = run_addtask(T=6, method="tbptt", k=2, iterations=2, batch_size=4, hidden=8, out_dir=tempfile.mkdtemp(),
        ...                 progress=False)
        >>> s["iterations"], s["diverged"]
        (2, False)
    """
    _validate(T, method, model, iterations, batch_size, lr, K, k, seed, checkpoint_every)
    config = {"T": T, "method": method, "model": model, "hidden": hidden, "batch_size": batch_size, "lr": lr,
              "K": K, "k": k, "alpha": alpha, "beta": beta, "seed": seed, "max_grad_norm": max_grad_norm}
    out = Path(out_dir)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    data = AddTask(T, batch_size, seed)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net, explicit = addtask_model(model, hidden)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        trainer = SequenceTrainer(net, opt, method=method, K=K, k=k, loss="regression_end", alpha=alpha,
                                  beta=beta, explicit_state=explicit, max_grad_norm=max_grad_norm)

        rows, start, diverged_at = [], 0, None
        if resume and not ckpt_path.is_file():
            warnings.warn(f"resume=True but there is no {ckpt_path}; starting from scratch", RuntimeWarning,
                          stacklevel=2)
            resume = False
        if resume:
            ckpt = torch.load(ckpt_path, weights_only=True)
            saved = {key: ckpt["config"].get(key) for key in _RUN_KEYS}
            diff = [f"{key}={saved[key]!r} (now {config[key]!r})" for key in _RUN_KEYS if saved[key] != config[key]]
            if diff:
                raise ValueError(f"cannot resume {ckpt_path}: it was made with " + ", ".join(diff))
            net.load_state_dict(ckpt["model"])
            trainer.load_state_dict(ckpt["trainer"], T=T)
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
                    loss = result.loss
                    mse = F.mse_loss(result.outputs[-1].reshape(y.shape), y).item()
                except FloatingPointError:
                    loss = mse = math.nan
                dt = time.perf_counter() - t0
                elapsed += dt
                row = {"iteration": i + 1, "loss": float(loss), "mse": float(mse), "time": dt, "elapsed": elapsed}
                rows.append(row)
                log.write(_row_text(row))
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", mse=f"{mse:.4g}", refresh=False)
                if not (math.isfinite(loss) and math.isfinite(mse)):
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
    """Final-step MSE vs iteration (log y) of several runs on one figure, saved as PNG.

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
        mse = _moving_average([r["mse"] for r in rows], smooth)
        diverged = next((r["iteration"] for r in rows if not math.isfinite(r["mse"])), None)
        if diverged is not None:
            label += f" (diverged at {diverged})"
        (line,) = ax.plot(its, mse, label=label, linewidth=1)
        if diverged is not None:
            good = [(i, m) for i, m in zip(its, mse) if math.isfinite(m)]
            if good:
                ax.plot(*good[-1], marker="x", color=line.get_color(), markersize=9, mew=2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("final-step MSE" + (f" (moving average {smooth})" if smooth > 1 else ""))
    ax.set_title(title or "Add-task")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    return out_png
