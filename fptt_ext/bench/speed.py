"""Training throughput of the methods, measured side by side: rounds of A B C ... A B C ...

Every method gets its own copy of the network (same initial weights), its own optimizer and
the same input sequence. A round trains each method once on the sequence, in a fixed order;
the first ``warmup`` rounds are discarded. Per method the result is the median time per
sequence and ``sample_steps_per_s = T * B / median``. Ratios are medians of the per-round
ratios, so a load change on the machine between rounds cancels out.

Example:
    >>> r = speed_table(["fptt", "tbptt"], T=2, batch_size=2, hidden=(8,), rounds=2, warmup=1)
    >>> sorted(r["methods"]), r["ratios"]["fptt/tbptt time per step"] > 0
    (['fptt', 'tbptt'], True)
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from .workloads import COMPILED, LABELS, METHODS, check_choice, make_data, make_workload

__all__ = ["DEFAULT_METHODS", "plot_speed", "print_speed", "speed_table"]

DEFAULT_METHODS = ("fptt", "fptt-exact", "tbptt", "bptt", "sj-fptt")


def speed_table(methods=DEFAULT_METHODS, *, network: str = "rmnist", T: int = 20, batch_size: int = 64,
                hidden=(256, 256), width: float = 1.0, backend: str = "spikingjelly", rounds: int = 5,
                warmup: int = 1, threads: int | None = 1, progress: bool = False) -> dict:
    """Interleaved timing of ``methods`` on ``network``; ``rounds`` timed rounds after ``warmup``.

    Returns ``{"config", "methods": {m: {...}}, "ratios": {...}}`` with per-round times kept.

    >>> r = speed_table(["tbptt", "fptt"], T=2, batch_size=2, hidden=(8,), rounds=2, warmup=0)
    >>> list(r["methods"]), len(r["methods"]["fptt"]["seconds_per_sequence"]), list(r["ratios"])
    (['tbptt', 'fptt'], 2, ['fptt/tbptt time per step'])
    """
    methods = list(dict.fromkeys(methods))
    for m in methods:
        check_choice("method", m, METHODS)
    if not methods:
        raise ValueError("no methods to time")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        # several compiled instances of one network class in one process: more than Dynamo's
        # default of 8 compiled versions of its forward
        with torch._dynamo.config.patch(recompile_limit=64):
            works = {m: make_workload(m, network, hidden=hidden, width=width, backend=backend, batch_size=batch_size)
                     for m in methods}
            x, y = make_data(network, T, batch_size)
            times = {m: [] for m in methods}
            it = range(warmup + rounds)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, desc=f"speed {network} (rounds incl. {warmup} warm-up)", file=sys.stderr)
            for r in it:
                for m in methods:
                    t0 = time.perf_counter()
                    works[m].run(x, y)
                    if r >= warmup:
                        times[m].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    return {"config": {"network": network, "T": T, "batch_size": batch_size, "hidden": list(hidden), "width": width,
                       "backend": backend, "rounds": rounds, "warmup": warmup, "threads": threads,
                       "optimizer": "Adam(lr=1e-3, fused=True)", "torch": torch.__version__},
            "methods": {m: _summary(times[m], T, batch_size) for m in methods},
            "ratios": _ratios(times)}


def _summary(ts: list[float], T: int, B: int) -> dict:
    med = statistics.median(ts)
    return {"seconds_per_sequence": ts, "median_s": med, "ms_per_step": 1e3 * med / T,
            "sample_steps_per_s": T * B / med}


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def _ratios(times: dict) -> dict:
    # against TBPTT-1 (plain, and with FPTT's state traffic) and SpikingJelly's function, each as
    # run (and, if timed, compiled)
    out = {}
    for m, ts in times.items():
        for ref in ("tbptt", "tbptt" + COMPILED, "tbptt-traffic", "tbptt-traffic" + COMPILED):
            if m != ref and ref in times:
                out[f"{m}/{ref} time per step"] = _ratio(ts, times[ref])
        for ref in ("sj-fptt", "sj-fptt" + COMPILED):
            if m != ref and ref in times:
                out[f"{m} speedup over {ref}"] = _ratio(times[ref], ts)
    return out


def print_speed(result: dict, file=None) -> None:
    """The table: median time, sample-steps/s, time per step relative to TBPTT-1, speedup over SpikingJelly.

    >>> r = speed_table(["tbptt", "fptt"], T=2, batch_size=2, hidden=(8,), rounds=1, warmup=0)
    >>> print_speed(r)  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    method  ms/sequence  ms/step  sample-steps/s  x TBPTT-1  speedup vs SJ
    TBPTT-1 ... 1.000 nan
    FPTT (practical) ... nan
    """
    ms = result["methods"]
    ratios = result["ratios"]
    print(f"{'method':>34} {'ms/sequence':>12} {'ms/step':>9} {'sample-steps/s':>15} {'x TBPTT-1':>10} "
          f"{'speedup vs SJ':>14}", file=file)
    for m, s in ms.items():
        rel = ratios.get(f"{m}/tbptt time per step", 1.0 if m == "tbptt" else float("nan"))
        sp = ratios.get(f"{m} speedup over sj-fptt", 1.0 if m == "sj-fptt" else float("nan"))
        print(f"{LABELS.get(m, m):>34} {1e3 * s['median_s']:>12.1f} {s['ms_per_step']:>9.2f} "
              f"{s['sample_steps_per_s']:>15.0f} {rel:>10.3f} {sp:>14.2f}", file=file)


def plot_speed(result: dict, path) -> None:
    """Bar chart of median sample-steps/s per method, with every timed round as a dot.

    >>> import tempfile, os
    >>> r = speed_table(["tbptt", "fptt"], T=2, batch_size=2, hidden=(8,), rounds=2, warmup=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "speed.png")
    >>> plot_speed(r, path)
    >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, ms = result["config"], result["methods"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(ms)
    ax.barh(range(len(names)), [ms[m]["sample_steps_per_s"] for m in names], color="tab:blue", alpha=0.6)
    for i, m in enumerate(names):
        per_round = [c["T"] * c["batch_size"] / t for t in ms[m]["seconds_per_sequence"]]
        ax.plot(per_round, [i] * len(per_round), "k.", ms=4)
    ax.set_yticks(range(len(names)), [LABELS.get(m, m) for m in names], fontsize=8)
    ax.set_xlabel("sample-steps per second (median of interleaved rounds)")
    ax.set_title(f"{c['network']}: T = {c['T']}, batch {c['batch_size']}, {c['threads']} thread(s)", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")  # keep the long method labels
    plt.close(fig)
