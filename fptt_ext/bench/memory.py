"""Training memory against sequence length (the papers' Fig. 2d/2e), one fresh process per point.

For every (method, T) a new Python process (``python -m fptt_ext.bench.memory --point ...``)
builds the network, its optimizer and one input sequence, records its resident memory
(``baseline``, ``/proc/self/statm``), trains on the sequence once, and records the peak RSS
(``peak``, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``). ``peak - baseline`` is the memory the
training iteration itself needed on top of weights, optimizer state and data. A fresh
process per point means no point inherits another's allocator high-water mark.

The same run counts the bytes autograd saves for backward (``saved_tensors_hooks``), per
update: the largest count between two optimizer steps. That figure is deterministic.

Example (in-process, one point; the CLI runs each point in a subprocess):
    >>> r = measure_point("fptt", 5, hidden=(8,), batch_size=2)
    >>> r["updates"], r["saved_mib_per_update"] > 0, r["baseline_mib"] > 0
    (5, True, True)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from .workloads import LABELS, METHODS, check_choice, make_data, make_workload

__all__ = ["DEFAULT_METHODS", "DEFAULT_TS", "measure_point", "memory_table", "plot_memory", "print_memory"]

DEFAULT_TS = (20, 50, 100, 200, 500, 1000)
DEFAULT_METHODS = ("bptt", "tbptt", "fptt", "sj-fptt")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mib() -> float:
    """Current resident set size (Linux ``/proc/self/statm``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return _max_rss_mib()


def measure_point(method: str, T: int, *, network: str = "rmnist", hidden=(256, 256), width: float = 1.0,
                  batch_size: int = 16, backend: str = "spikingjelly", threads: int = 1, seed: int = 0) -> dict:
    """Train ``method`` on one sequence of length ``T`` in this process; peak RSS and saved bytes.

    Meaningful as a peak only in a fresh process: use :func:`memory_table`.

    >>> r = measure_point("tbptt", 2, hidden=(8,), batch_size=2)
    >>> r["method"], r["T"], r["updates"], r["peak_mib"] >= r["baseline_mib"] > 0
    ('tbptt', 2, 2, True)
    """
    check_choice("method", method, METHODS)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    torch.set_num_threads(threads)
    work = make_workload(method, network, hidden=hidden, width=width, backend=backend, batch_size=batch_size,
                         seed=seed)
    x, y = make_data(network, T, batch_size)
    gc.collect()
    # baseline: what is resident now (weights, optimizer and FPTT state, input, libraries);
    # the peak before training (construction temporaries) is kept to show it stayed below
    baseline, peak_before = _rss_mib(), _max_rss_mib()
    saved, per_update = [0], []

    def pack(t: torch.Tensor):
        saved[0] += t.numel() * t.element_size()
        return t

    def boundary(*_):  # the optimizer steps once per update: close the count
        per_update.append(saved[0])
        saved[0] = 0

    handle = work.torch_optimizer.register_step_pre_hook(boundary)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            work.run(x, y)
    finally:
        handle.remove()
    # ru_maxrss includes the current RSS, but Linux syncs per-thread RSS counters lazily
    # (every 64 page faults), so either figure can lag the other by a fraction of a MiB
    peak = max(_max_rss_mib(), _rss_mib())
    return {"method": method, "T": T, "network": network, "batch_size": batch_size, "updates": work.updates,
            "baseline_mib": round(baseline, 2), "peak_before_training_mib": round(peak_before, 2),
            "peak_mib": round(peak, 2),
            "training_mib": round(peak - baseline, 2), "input_mib": round(x.untyped_storage().nbytes() / 2**20, 2),
            "saved_mib_per_update": round(max(per_update + [saved[0]]) / 2**20, 4)}


def _child_env() -> dict:
    # the child must import this very copy of fptt_ext, whatever the parent's cwd and sys.path
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _point_command(method, T, network, hidden, width, batch_size, backend, threads) -> list[str]:
    return [sys.executable, "-m", "fptt_ext.bench.memory", "--point", method, str(T), "--network", network,
            "--hidden", *map(str, hidden), "--width", str(width), "--batch-size", str(batch_size),
            "--backend", backend, "--threads", str(threads)]


def memory_table(Ts=DEFAULT_TS, methods=DEFAULT_METHODS, *, network: str = "rmnist", hidden=(256, 256),
                 width: float = 1.0, batch_size: int = 16, backend: str = "spikingjelly", threads: int = 1,
                 progress: bool = False) -> dict:
    """:func:`measure_point` for every method and T, each in a fresh subprocess (one at a time).

    Returns ``{"config": {...}, "rows": [...]}``; a point that fails (e.g. out of memory)
    gets a row with ``"error"`` instead of numbers. Each point starts a Python process (a few
    seconds), so the example only shows the argument checks:

    >>> memory_table(Ts=(), methods=("fptt",))
    Traceback (most recent call last):
    ...
    ValueError: sequence lengths must be >= 1, got []
    >>> memory_table(Ts=(2,), methods=("adam",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'adam'; choose from fptt, fptt-fused, fptt-exact, tbptt, ...
    """
    for m in methods:
        check_choice("method", m, METHODS)
    if not Ts or min(Ts) < 1:
        raise ValueError(f"sequence lengths must be >= 1, got {list(Ts)}")
    points = [(m, T) for m in methods for T in Ts]
    if progress:
        from tqdm import tqdm

        points = tqdm(points, desc="memory points", unit="proc", file=sys.stderr)
    rows = []
    for m, T in points:
        cmd = _point_command(m, T, network, hidden, width, batch_size, backend, threads)
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_child_env())
        if proc.returncode == 0:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            err = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            rows.append({"method": m, "T": T, "error": err})
    config = {"network": network, "hidden": list(hidden), "width": width, "batch_size": batch_size,
              "backend": backend, "threads": threads, "Ts": list(Ts), "methods": list(methods),
              "torch": torch.__version__}
    return {"config": config, "rows": rows}


def print_memory(result: dict, file=None) -> None:
    """The table: peak RSS, peak minus baseline, autograd bytes saved per update.

    >>> row = measure_point("fptt", 2, hidden=(8,), batch_size=2)
    >>> print_memory({"rows": [row, {"method": "bptt", "T": 2, "error": "MemoryError"}]})  # doctest: +ELLIPSIS
        method      T   peak MiB   baseline   training  saved/update MiB
          fptt      2 ...
          bptt      2  failed: MemoryError
    """
    print(f"{'method':>10} {'T':>6} {'peak MiB':>10} {'baseline':>10} {'training':>10} {'saved/update MiB':>17}",
          file=file)
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['method']:>10} {r['T']:>6}  failed: {r['error']}", file=file)
            continue
        print(f"{r['method']:>10} {r['T']:>6} {r['peak_mib']:>10.1f} {r['baseline_mib']:>10.1f} "
              f"{r['training_mib']:>10.1f} {r['saved_mib_per_update']:>17.3f}", file=file)


def plot_memory(result: dict, path) -> None:
    """Fig. 2d-style PNG: memory against T per method, log-log; peak RSS, training memory, saved bytes.

    >>> import tempfile
    >>> rows = [measure_point("fptt", T, hidden=(8,), batch_size=2) for T in (2, 3)]
    >>> result = {"config": {"network": "rmnist", "batch_size": 2, "methods": ["fptt"]}, "rows": rows}
    >>> path = Path(tempfile.mkdtemp()) / "memory.png"
    >>> plot_memory(result, path)
    >>> path.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("peak_mib", "peak RSS (MiB)"), ("training_mib", "peak RSS - baseline (MiB)"),
              ("saved_mib_per_update", "autograd saved / update (MiB)"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, title) in zip(axes, panels):
        for m in result["config"]["methods"]:
            pts = [(r["T"], max(r[key], 1e-3)) for r in result["rows"] if r["method"] == m and "error" not in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=LABELS.get(m, m))
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    c = result["config"]
    fig.suptitle(f"{c['network']} net, batch {c['batch_size']}, one training iteration per fresh process")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one memory point (used by memory_table)")
    p.add_argument("--point", nargs=2, metavar=("METHOD", "T"), required=True)
    p.add_argument("--network", default="rmnist")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backend", default="spikingjelly")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    r = measure_point(a.point[0], int(a.point[1]), network=a.network, hidden=tuple(a.hidden), width=a.width,
                      batch_size=a.batch_size, backend=a.backend, threads=a.threads)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
