"""Subnormal floats: what they cost a matrix product on this CPU, and where a network makes them.

A subnormal float32 is nonzero and below ``torch.finfo(torch.float32).tiny`` (about 1.2e-38).
On x86 CPUs every multiply-add that meets one may take a microcode assist, unless the thread
flushes them to zero (``torch.set_flush_denormal(True)``: :class:`~fptt_ext.fptt.SequenceTrainer`
sets it while it trains, the ``fptt-ext`` program for its whole process; :mod:`fptt_ext.floatmode`).

* :func:`product_table` - ms per matrix product ``[M, K] x [K, N]`` whose left operand has a
  given share of subnormal entries, with them kept and flushed, and with no subnormal entry;
  interleaved rounds on the calling thread.
* :func:`subnormal_census` - trains the speed benchmark's network with subnormals kept (one
  sequence over and over, as ``bench speed`` does), then counts the subnormal entries in every
  operator's output during one more sequence (a ``TorchDispatchMode``), and the matrix products
  that got a subnormal operand.

Example:
    >>> r = product_table(shape=(4, 8, 8), rounds=1, warmup=0)
    >>> sorted(r["ms_per_product"])
    ['flushed', 'kept', 'no subnormals']
"""

from __future__ import annotations

import collections
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..floatmode import flush_subnormals
from .fused import torch_threads

__all__ = ["PRODUCTS", "SubnormalCounter", "product_table", "subnormal_census"]

PRODUCTS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")  # the operators whose operands are counted
# operators whose output holds whatever the memory held: not values a computation made
_ALLOCATIONS = frozenset({"aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided",
                          "aten.new_empty_strided"})


# (integer view, exponent bits, mantissa bits): a subnormal has a zero exponent and a nonzero
# mantissa. Read from the bits, because with the flush mode on the CPU reads subnormals as 0.
_BITS = {torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF), torch.float16: (torch.int16, 0x7C00, 0x03FF),
         torch.bfloat16: (torch.int16, 0x7F80, 0x007F),
         torch.float64: (torch.int64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF)}


def _subnormal_count(t: torch.Tensor) -> int:
    if t.dtype not in _BITS or t.numel() == 0:
        return 0
    as_int, exponent, mantissa = _BITS[t.dtype]
    bits = t.view(as_int)
    return int((((bits & exponent) == 0) & ((bits & mantissa) != 0)).sum())


class SubnormalCounter(TorchDispatchMode):
    """Counts subnormal entries in every operator's floating outputs while active (by operator),
    and the matrix products (:data:`PRODUCTS`) that got at least one subnormal operand. Views,
    detached aliases and fresh allocations are not counted (their entries were made elsewhere,
    or by no one); operators that write in place are.

    >>> with flush_subnormals(False), SubnormalCounter() as c:
    ...     _ = torch.full((2,), 1e-20) * 1e-20
    >>> dict(c.outputs), c.products
    ({'aten.mul': 2}, 0)
    """

    def __init__(self):
        super().__init__()
        self.outputs: collections.Counter = collections.Counter()
        self.products = self.products_with_subnormal_operand = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in PRODUCTS:
            self.products += 1
            if any(isinstance(a, torch.Tensor) and _subnormal_count(a) for a in args):
                self.products_with_subnormal_operand += 1
        # an output in an input's memory that the operator did not write (a view, a detach) was counted there
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        writes = func._schema.is_mutable  # in place or out=
        out = func(*args, **(kwargs or {}))
        if name in _ALLOCATIONS:
            return out
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor) and (writes or o.untyped_storage().data_ptr() not in inputs) \
                    and (n := _subnormal_count(o)):
                self.outputs[name] += n
        return out


def product_table(*, shape=(128, 512, 512), fraction: float = 1 / 35, rounds: int = 21, warmup: int = 2,
                  threads: int = 1, seed: int = 0) -> dict:
    """ms per product ``[M, K] x [K, N]`` (median of ``rounds``, each the mean of 10 products) with
    ``fraction`` of the left operand's entries subnormal (1e-40), kept and flushed, and with none.

    The flush mode is set on the calling thread only, so with ``threads > 1`` torch's worker
    threads keep the mode they started with; ``threads=1`` measures what it says.

    >>> r = product_table(shape=(4, 8, 8), fraction=0.5, rounds=1, warmup=0)
    >>> r["config"]["subnormal_entries"], r["ratios"]["kept / flushed"] > 0
    (16, True)
    """
    m, k, n = shape
    if not 0 < fraction <= 1 or rounds < 1 or warmup < 0 or min(shape) < 1:
        raise ValueError(f"need 0 < fraction <= 1, rounds >= 1, warmup >= 0 and a positive shape, got "
                         f"fraction={fraction}, rounds={rounds}, warmup={warmup}, shape={shape}")
    g = torch.Generator().manual_seed(seed)
    a, w = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    with flush_subnormals(False):  # 1e-40 written while flushing would be stored as 0
        a_sub = a.clone()
        a_sub.view(-1)[torch.randperm(m * k, generator=g)[:max(1, round(fraction * m * k))]] = 1e-40
    entries = _subnormal_count(a_sub)

    def run(x):
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(x, w)
        return (time.perf_counter() - t0) / 10 * 1e3

    times = {"kept": [], "flushed": [], "no subnormals": []}
    with torch_threads(threads), flush_subnormals(False):
        for r in range(warmup + rounds):
            for key, ts in times.items():
                torch.set_flush_denormal(key == "flushed")
                ms = run(a_sub if key != "no subnormals" else a)
                if r >= warmup:
                    ts.append(ms)
    med = {key: statistics.median(v) for key, v in times.items()}
    return {"config": {"shape": list(shape), "fraction": fraction, "subnormal_entries": entries, "rounds": rounds,
                       "warmup": warmup, "threads": threads, "torch": torch.__version__,
                       "cpu_capability": torch.backends.cpu.get_cpu_capability()},
            "ms_per_product": med,
            "ratios": {"kept / flushed": statistics.median(x / y for x, y in zip(times["kept"], times["flushed"])),
                       "flushed / no subnormals": statistics.median(
                           x / y for x, y in zip(times["flushed"], times["no subnormals"]))}}


def subnormal_census(methods=("tbptt", "fptt"), *, T: int = 20, batch_size: int = 128, hidden=(256, 256),
                     train_rounds: int = 12, threads: int = 1) -> dict:
    """Subnormal entries per training step of the R-MNIST benchmark net, by method and operator.

    Each method's network (same initial weights) is trained with subnormals kept on the speed
    benchmark's sequence ``train_rounds`` times, then one more sequence runs under
    :class:`SubnormalCounter`. Methods are those of :mod:`fptt_ext.bench.workloads` that run
    eagerly (a compiled kernel cannot run under a dispatch mode): ``tbptt``, ``fptt``, ``bptt``.

    >>> r = subnormal_census(("tbptt",), T=2, batch_size=2, hidden=(4,), train_rounds=1)
    >>> sorted(r["methods"]["tbptt"])
    ['products', 'products_with_subnormal_operand', 'subnormal_outputs_by_operator', 'subnormal_outputs_per_step']
    """
    from .workloads import make_data, make_workload

    eager = ("tbptt", "fptt", "bptt")
    for method in methods:
        if method not in eager:
            raise ValueError(f"subnormal_census runs {', '.join(eager)} (eagerly); got {method!r}")
    if train_rounds < 0 or T < 1:
        raise ValueError(f"need train_rounds >= 0 and T >= 1, got {train_rounds} and {T}")
    out = {"config": {"network": "rmnist", "T": T, "batch_size": batch_size, "hidden": list(hidden),
                      "train_rounds": train_rounds, "threads": threads, "torch": torch.__version__},
           "methods": {}}
    x, y = make_data("rmnist", T=T, batch_size=batch_size)
    with torch_threads(threads):
        for method in methods:
            w = make_workload(method, "rmnist", hidden=hidden, batch_size=batch_size)
            w.trainer.flush_denormal = False  # the trainer would flush them while it trains
            with flush_subnormals(False):
                for _ in range(train_rounds):
                    w.run(x, y)
                with SubnormalCounter() as counter:
                    w.run(x, y)
            total = sum(counter.outputs.values())
            out["methods"][method] = {
                "subnormal_outputs_per_step": total / T,
                "subnormal_outputs_by_operator": dict(counter.outputs.most_common()),
                "products": counter.products, "products_with_subnormal_operand": counter.products_with_subnormal_operand}
    return out
