"""Where the time of an FPTT step goes, and the step's overhead before/after a code change.

* :func:`profile_fptt_step` runs FPTT steps under ``torch.profiler`` with a labelled range
  around each phase (network forward, network backward, FPTT regulariser gradient,
  finiteness check, optimizer step, FPTT state update, ``zero_grad``) and reports
  milliseconds per step per phase, the rest (the loop: loss, state detach, bookkeeping)
  and the most expensive operators.
* :func:`compare_revisions` times the FPTT and TBPTT-1 steps of this tree against an older
  git revision, side by side: two long-lived worker processes, one per revision, are told
  in turn to train one sequence (A B A B ...), so both see the same machine load.

Example:
    >>> r = profile_fptt_step(steps=2, batch_size=2, hidden=(8,))
    >>> r["ms_per_step"]["network forward"] > 0, "rest (loop)" in r["ms_per_step"]
    (True, True)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from .workloads import check_choice, make_data, make_workload

__all__ = ["compare_revisions", "print_profile", "profile_fptt_step"]

PHASES = ("network forward", "network backward", "FPTT regulariser grad", "finite check", "optimizer step (Adam)",
          "FPTT state update", "zero_grad")


def _labelled(name, fn):
    def wrapped(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return wrapped


@contextlib.contextmanager
def _phase_ranges(work):
    """Wrap the phases of ``work``'s FPTT step in profiler ranges (instance attributes only,
    plus ``torch.autograd.backward``, which ``Tensor.backward`` looks up at call time)."""
    fptt = work.trainer.optimizer
    patched = [(work.model, "forward", "network forward"), (fptt, "add_regularizer_grad_", "FPTT regulariser grad"),
               (fptt, "_finite", "finite check"), (fptt.optimizer, "step", "optimizer step (Adam)"),
               (fptt, "_update_practical", "FPTT state update"), (fptt, "zero_grad", "zero_grad")]
    for obj, attr, name in patched:
        setattr(obj, attr, _labelled(name, getattr(obj, attr)))
    backward = torch.autograd.backward
    torch.autograd.backward = _labelled("network backward", backward)
    try:
        yield
    finally:
        torch.autograd.backward = backward
        for obj, attr, _ in patched:
            delattr(obj, attr)


def profile_fptt_step(*, network: str = "rmnist", steps: int = 20, batch_size: int = 128, hidden=(256, 256),
                      width: float = 1.0, backend: str = "spikingjelly", threads: int | None = 1,
                      top: int = 15) -> dict:
    """Profile ``steps`` FPTT (practical, K = T) steps after one warm-up sequence; ms per step per phase.

    >>> r = profile_fptt_step(steps=2, batch_size=2, hidden=(8,), top=3)
    >>> sorted(r) == ["config", "ms_per_step", "ms_per_step_total", "top_ops"]
    True
    >>> list(r["ms_per_step"]) == list(PHASES) + ["rest (loop)"], len(r["top_ops"]) <= 3, r["ms_per_step_total"] > 0
    (True, True, True)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        work = make_workload("fptt", network, hidden=hidden, width=width, backend=backend, batch_size=batch_size)
        x, y = make_data(network, steps, batch_size)
        work.run(x, y)  # warm-up: allocator, optimizer state
        with _phase_ranges(work), profile(activities=[ProfilerActivity.CPU]) as prof, \
                record_function("FPTT sequence"):
            work.run(x, y)
    finally:
        torch.set_num_threads(old)
    events = prof.key_averages()
    total = {e.key: e.cpu_time_total / 1e3 for e in events}  # ms
    per_step = {p: total.get(p, 0.0) / steps for p in PHASES}
    seq = total["FPTT sequence"] / steps
    per_step["rest (loop)"] = seq - sum(per_step.values())
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:top]
    return {"config": {"network": network, "steps": steps, "batch_size": batch_size, "hidden": list(hidden),
                       "width": width, "backend": backend, "threads": threads},
            "ms_per_step": per_step, "ms_per_step_total": seq,
            "top_ops": [{"op": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": e.self_cpu_time_total
                         / 1e3 / steps} for e in ops]}


def print_profile(result: dict, file=None) -> None:
    """The phases of one FPTT step and the most expensive operators.

    >>> r = profile_fptt_step(steps=2, batch_size=2, hidden=(8,), top=2)
    >>> print_profile(r)  # doctest: +ELLIPSIS
                       phase   ms/step   share
             network forward ...
                       total ...
    <BLANKLINE>
                        operator  calls/step  self ms/step
    ...
    """
    total = result["ms_per_step_total"]
    print(f"{'phase':>24} {'ms/step':>9} {'share':>7}", file=file)
    for p, ms in result["ms_per_step"].items():
        print(f"{p:>24} {ms:>9.3f} {100 * ms / total:>6.1f}%", file=file)
    print(f"{'total':>24} {total:>9.3f}", file=file)
    print(f"\n{'operator':>28} {'calls/step':>11} {'self ms/step':>13}", file=file)
    for o in result["top_ops"]:
        print(f"{o['op']:>28} {o['calls_per_step']:>11.1f} {o['self_ms_per_step']:>13.3f}", file=file)


def _export_revision(ref: str, dest: Path) -> Path:
    root = Path(__file__).resolve().parents[2]
    dest.mkdir(parents=True)
    archive = dest / "src.tar"
    with open(archive, "wb") as f:
        proc = subprocess.run(["git", "-C", str(root), "archive", ref, "fptt_ext"], stdout=f, stderr=subprocess.PIPE,
                              check=False)
    if proc.returncode != 0:
        raise ValueError(f"cannot export git revision {ref!r} of {root}: {proc.stderr.decode().strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "src", filter="data")
    return dest / "src"


def _start_worker(worker: Path, src: Path, method: str, T: int, batch_size: int, K: int, hidden) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(src))
    p = subprocess.Popen([sys.executable, str(worker), method, str(T), str(batch_size), str(K), *map(str, hidden)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(worker.parent))
    if p.stdout.readline().strip() != "ready":
        p.kill()
        raise RuntimeError(f"timing worker for {src} failed to start")
    return p


def _time_one(p: subprocess.Popen) -> float:
    p.stdin.write("run\n")
    p.stdin.flush()
    return float(p.stdout.readline())


def compare_revisions(before: str = "HEAD~1", *, methods=("fptt", "tbptt"), T: int = 20, batch_size: int = 128,
                      hidden=(256, 256), K: int = 10, rounds: int = 7, warmup: int = 1, progress: bool = False) -> dict:
    """Median time per step of ``methods`` with git revision ``before`` and with this tree, interleaved.

    Methods ``fptt``, ``tbptt`` and ``bptt`` train the R-MNIST net (``hidden`` its widths) on one
    sequence; ``addtask`` is one Add-task iteration (T steps of FPTT in windows of ``K``,
    ``hidden[0]`` neurons), as ``fptt-ext bench addtask`` times it, also given per iteration
    (``seconds_per_iteration``). One worker process per (revision, method) stays alive; a round
    asks each in turn for one sequence (the others wait idle), so at most one of them runs at a
    time. Each worker takes seconds to start, so the example only shows the argument checks
    (made before any export):

    >>> compare_revisions("HEAD", methods=("sj-fptt",))
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'sj-fptt'; choose from fptt, tbptt, bptt, addtask
    >>> compare_revisions("HEAD", methods=("addtask", "fptt"))
    Traceback (most recent call last):
    ...
    ValueError: the addtask iteration has its own T, batch size and widths; compare it on its own
    >>> compare_revisions("HEAD", rounds=0)
    Traceback (most recent call last):
    ...
    ValueError: need rounds >= 1 and warmup >= 0, got rounds=0, warmup=1
    """
    for m in methods:
        check_choice("method", m, ("fptt", "tbptt", "bptt", "addtask"))
    if "addtask" in methods and len(methods) > 1:
        raise ValueError("the addtask iteration has its own T, batch size and widths; compare it on its own")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": _export_revision(before, Path(tmp) / "before"),
                 "after": Path(__file__).resolve().parents[2]}
        # run a copy from outside the package: a script's folder goes first on sys.path, and
        # this module's name would shadow the standard library's ``profile`` there
        worker = Path(tmp) / "_timing_worker.py"
        shutil.copyfile(Path(__file__).with_name("_timing_worker.py"), worker)
        workers = {(rev, m): _start_worker(worker, src, m, T, batch_size, K, hidden) for rev, src in trees.items()
                   for m in methods}
        times = {k: [] for k in workers}
        it = range(warmup + rounds)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"before ({before}) / after rounds", file=sys.stderr)
        try:
            for r in it:
                for k, p in workers.items():
                    t = _time_one(p)
                    if r >= warmup:
                        times[k].append(t)
        finally:
            for p in workers.values():
                p.stdin.close()
                p.wait()
    out = {"config": {"before": before, "T": T, "batch_size": batch_size, "hidden": list(hidden), "rounds": rounds,
                      "warmup": warmup, "network": "rmnist", "backend": "spikingjelly", "threads": 1},
           "ms_per_step": {f"{m} {rev}": 1e3 * statistics.median(times[(rev, m)]) / T for rev, m in times},
           "ratios": {}, "seconds": {f"{m} {rev}": ts for (rev, m), ts in times.items()}}
    if "addtask" in methods:
        out["config"].update(K=K, addtask_hidden=hidden[0])
        out["seconds_per_iteration"] = {f"addtask {rev}": statistics.median(times[(rev, "addtask")]) for rev in trees}
    for m in methods:
        out["ratios"][f"{m} after/before"] = statistics.median(
            a / b for a, b in zip(times[("after", m)], times[("before", m)]))
    if "tbptt" in methods:
        for rev in trees:
            for m in methods:
                if m != "tbptt":  # (addtask is timed on its own)
                    out["ratios"][f"{m}/tbptt {rev}"] = statistics.median(
                        a / b for a, b in zip(times[(rev, m)], times[(rev, "tbptt")]))
    return out
