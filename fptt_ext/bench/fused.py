"""The fused neuron step against the plain one: an LTC-SN layer step against a gated cell with
the same three matrix products, and an Add-task iteration; interleaved rounds, ratios.

* :func:`cell_table` - one layer, ``I = fc(x)`` then the neuron, trained online (forward,
  backward through one step, as FPTT with K = T does): the LTC-SN with the fused step, the
  LTC-SN with the plain step (:func:`fptt_ext.neurons.fused.use_fused`), and a gated cell
  ``h' = h + sigmoid(W_z [I, h]) (tanh(W_c [I, h]) - h)`` with the same three matrix products
  (``fc`` and two ``Linear(2N -> N)``), whose elementwise work is the least such a cell can do,
  written as in PyTorch and with the LTC-SN's own gate modules (like for like: their backward
  skips the detached state's input gradient for both);
  with ``compiled=True`` also both under ``torch.compile``.
* :func:`addtask_table` - one Add-task iteration (the authors' recipe: LTC-SN of 128, FPTT over
  K windows, clipping at 1.0) with the fused and the plain step, the fused step without the
  ``beta_a = 0`` shortcut (:func:`fptt_ext.neurons.functional.inert_adaptation_shortcut`), and the
  same iteration's matrix products alone (the floor of any float32 implementation on this core),
  the fused step trained through ``torch.compile`` (``SequenceTrainer(compile=True)``), and the
  fused step with subnormal floats kept (the trainer flushes them by default).

Times are CPU seconds of this process (``time.process_time``) unless ``clock="wall"``: on a
shared machine they do not count the time other jobs hold the core.

Example:
    >>> r = cell_table(hidden=(8,), batch_size=2, steps=2, rounds=2, warmup=0)
    >>> sorted(r["ratios"]["8"])
    ['ltc fused / gated cell', 'ltc fused / gated cell, dense gates', 'ltc fused / ltc plain', 'ltc plain / gated cell']
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from torch import nn

from ..floatmode import flush_subnormals
from ..fptt.fused import compiler_available
from ..neurons.functional import inert_adaptation_shortcut
from ..neurons.fused import use_fused
from ..neurons.gates import DenseGate

__all__ = ["GatedCell", "addtask_table", "cell_table", "torch_threads"]

_CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: unchanged), then restore.

    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class GatedCell(nn.Module):
    """``I = fc(x)``, ``h' = h + sigmoid(W_z [I, h]) (tanh(W_c [I, h]) - h)``: three matrix products.

    ``dense_gates=True``: ``W_z [I, h]`` and ``W_c [I, h]`` are the LTC-SN's own gate modules
    (:class:`~fptt_ext.neurons.gates.DenseGate`), whose backward skips the input gradient of a
    detached ``h``; otherwise ``nn.Linear`` on one concatenation, as a PyTorch cell is written.

    >>> GatedCell(3, 4)(torch.zeros(2, 3)).shape, GatedCell(3, 4, dense_gates=True)(torch.zeros(2, 3)).shape
    (torch.Size([2, 4]), torch.Size([2, 4]))
    """

    def __init__(self, n_in: int, n: int, dense_gates: bool = False):
        super().__init__()
        self.fc, self.dense_gates = nn.Linear(n_in, n), dense_gates
        self.z, self.c = (DenseGate(n), DenseGate(n)) if dense_gates else (nn.Linear(2 * n, n), nn.Linear(2 * n, n))
        self.h = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur = self.fc(x)
        h = torch.zeros_like(cur) if self.h is None else self.h
        if self.dense_gates:
            z, c = self.z(cur, h), self.c(cur, h)
        else:
            ih = torch.cat((cur, h), dim=-1)
            z, c = self.z(ih), self.c(ih)
        self.h = torch.lerp(h, torch.tanh(c), torch.sigmoid(z))
        return self.h

    def detach(self) -> None:
        self.h = None if self.h is None else self.h.detach()


class _LTCLayer(nn.Module):
    def __init__(self, n_in: int, n: int):
        super().__init__()
        import fptt_ext

        self.fc, self.neuron = nn.Linear(n_in, n), fptt_ext.LTC(size=n, init_hidden=True)

    def forward(self, x):
        return self.neuron(self.fc(x))

    def detach(self) -> None:
        self.neuron.detach_hidden()


def _online(layer, xs, w, fused: bool | None) -> None:
    # one forward and one backward per step, the state detached in between (FPTT, K = T)
    with use_fused(True if fused is None else fused):
        for x in xs:
            (layer(x) * w).sum().backward()
            layer.detach()
    layer.zero_grad(set_to_none=True)


def _interleave(runs: dict, rounds: int, warmup: int, clock) -> dict:
    times = {k: [] for k in runs}
    for r in range(warmup + rounds):
        for k, fn in runs.items():
            t0 = clock()
            fn()
            if r >= warmup:
                times[k].append(clock() - t0)
    return times


def _ratio(a, b) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def cell_table(hidden=(128, 256), *, batch_size: int = 128, steps: int = 20, rounds: int = 7, warmup: int = 1,
               threads: int | None = 1, clock: str = "process", compiled: bool = False) -> dict:
    """ms per step (forward + backward) of the LTC-SN layer, fused and plain, and of the gated cell.

    ``compiled``: also both layers under ``torch.compile`` (compiled in the warm-up rounds, so
    give ``warmup >= 1``; left out without a C++ compiler).

    >>> r = cell_table(hidden=(8,), batch_size=2, steps=2, rounds=1, warmup=0, clock="wall")
    >>> list(r["ms_per_step"]["8"])
    ['ltc fused', 'ltc plain', 'gated cell', 'gated cell, dense gates']
    """
    if rounds < 1 or warmup < 0 or steps < 1:
        raise ValueError(f"need rounds >= 1, warmup >= 0, steps >= 1, got {rounds}, {warmup}, {steps}")
    tick = _CLOCKS[clock]
    out = {"config": {"hidden": list(hidden), "batch_size": batch_size, "steps": steps, "rounds": rounds,
                      "warmup": warmup, "threads": threads, "clock": clock, "compiled": compiled,
                      "torch": torch.__version__},
           "ms_per_step": {}, "ratios": {}, "seconds": {}}
    with torch_threads(threads):
        for n in hidden:
            torch.manual_seed(0)
            ltc, cell, cell_dense = _LTCLayer(n, n), GatedCell(n, n), GatedCell(n, n, dense_gates=True)
            g = torch.Generator().manual_seed(1)
            xs, w = (torch.rand(steps, batch_size, n, generator=g) < 0.2).float(), torch.randn(batch_size, n,
                                                                                             generator=g)
            runs = {"ltc fused": lambda: _online(ltc, xs, w, True),  # noqa: B023 (run at once)
                    "ltc plain": lambda: _online(ltc, xs, w, False),  # noqa: B023
                    "gated cell": lambda: _online(cell, xs, w, None),  # noqa: B023
                    "gated cell, dense gates": lambda: _online(cell_dense, xs, w, None)}  # noqa: B023
            if compiled and compiler_available():
                ltc_c, cell_c = torch.compile(ltc), torch.compile(cell)  # the same modules, compiled
                runs["ltc compiled"] = lambda: _online(ltc_c, xs, w, True)  # noqa: B023
                runs["gated cell compiled"] = lambda: _online(cell_c, xs, w, None)  # noqa: B023
            with torch._dynamo.config.patch(recompile_limit=64):  # two layers per size, compiled
                times = _interleave(runs, rounds, warmup, tick)
            key = str(n)
            out["seconds"][key] = times
            out["ms_per_step"][key] = {k: 1e3 * statistics.median(v) / steps for k, v in times.items()}
            out["ratios"][key] = {"ltc fused / gated cell": _ratio(times["ltc fused"], times["gated cell"]),
                                  "ltc fused / gated cell, dense gates": _ratio(times["ltc fused"],
                                                                                times["gated cell, dense gates"]),
                                  "ltc plain / gated cell": _ratio(times["ltc plain"], times["gated cell"]),
                                  "ltc fused / ltc plain": _ratio(times["ltc fused"], times["ltc plain"])}
            if "ltc compiled" in times:
                out["ratios"][key].update({
                    "ltc compiled / gated cell compiled": _ratio(times["ltc compiled"], times["gated cell compiled"]),
                    "ltc compiled / ltc fused": _ratio(times["ltc compiled"], times["ltc fused"])})
    return out


def addtask_table(*, T: int = 1000, batch_size: int = 128, K_values=(10,), hidden: int = 128, rounds: int = 3,
                  warmup: int = 1, threads: int | None = 1, clock: str = "process") -> dict:
    """Seconds per Add-task iteration (``train_batch`` on one batch), fused and plain, per K.

    >>> r = addtask_table(T=4, batch_size=2, K_values=(2,), hidden=4, rounds=1, warmup=0)
    >>> sorted(set(r["seconds_per_iteration"]["K=2"]) - {"fused, compiled"}), r["ratios"]["K=2"] > 0
    (['fused', 'fused, full graph', 'fused, subnormals kept', 'matrix products alone', 'plain'], True)
    """
    from ..data.addtask import AddTask
    from ..fptt.loop import SequenceTrainer
    from ..fptt.losses import RegressionEndLoss
    from ..zoo.srnn import addtask_model

    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    tick = _CLOCKS[clock]
    out = {"config": {"T": T, "batch_size": batch_size, "K": list(K_values), "hidden": hidden, "rounds": rounds,
                      "warmup": warmup, "threads": threads, "clock": clock, "model": "ltc (the authors' Add-task neuron)",
                      "optimizer": "Adam(lr=3e-3)", "max_grad_norm": 1.0, "torch": torch.__version__},
           "seconds_per_iteration": {}, "ratios": {}, "fused_over_matrix_products": {}, "shortcut_ratios": {},
           "compiled_ratios": {}, "subnormal_ratios": {}, "seconds": {}}
    with torch_threads(threads):
        x, y = AddTask(T, batch_size, 0).batch(0)
        for K in K_values:
            trainers = {}
            # trained through torch.compile only where it compiles (no row that silently is not)
            for variant in ("fused", "plain", "fused, subnormals kept") + (
                    ("fused, compiled",) if compiler_available() else ()):
                torch.manual_seed(0)
                net, _ = addtask_model("ltc", hidden, readout="mem", threshold=0.5, beta_a=0.0,
                                       detach_adaptation=False)
                loss = RegressionEndLoss(T, "window", K=K)
                trainers[variant] = SequenceTrainer(net, torch.optim.Adam(net.parameters(), lr=3e-3), method="fptt",
                                                    K=K, loss=loss, max_grad_norm=1.0,
                                                    compile=variant == "fused, compiled",
                                                    flush_denormal=variant != "fused, subnormals kept")

            trainers["fused, full graph"] = trainers["fused"]  # the same net, without the beta_a = 0 shortcut

            def run(variant, trainers=trainers):
                kept = flush_subnormals(False) if variant == "fused, subnormals kept" else contextlib.nullcontext()
                with use_fused(variant != "plain"), inert_adaptation_shortcut(variant != "fused, full graph"), kept:
                    trainers[variant].train_batch(x, y)

            runs = {v: (lambda v=v: run(v)) for v in trainers}
            runs["matrix products alone"] = lambda: _matmul_floor(T, batch_size, hidden)
            with torch._dynamo.config.patch(recompile_limit=64):  # a compiled net per K
                times = _interleave(runs, rounds, warmup, tick)
            key = f"K={K}"
            out["seconds"][key] = times
            out["seconds_per_iteration"][key] = {k: statistics.median(v) for k, v in times.items()}
            out["ratios"][key] = _ratio(times["fused"], times["plain"])
            out["fused_over_matrix_products"][key] = _ratio(times["fused"], times["matrix products alone"])
            out["shortcut_ratios"][key] = _ratio(times["fused"], times["fused, full graph"])
            out["subnormal_ratios"][key] = _ratio(times["fused"], times["fused, subnormals kept"])
            if "fused, compiled" in times:
                out["compiled_ratios"][key] = _ratio(times["fused, compiled"], times["fused"])
    return out


_FLOOR_OPERANDS: dict = {}


def _matmul_floor(T: int, B: int, N: int) -> None:
    """The matrix products of one Add-task iteration and nothing else, at the same shapes.

    Per step: forward ``s W_rec^T`` ``[B, N] x [N, N]`` and the two gates ``[I, state] W^T``
    ``[B, 2N] x [2N, N]``; backward, the input and weight gradients of the recurrent product and
    of ``gate_m`` (``gate_adp`` has none with ``beta_a = 0``). The input product (2 -> N) and the
    readout (N -> 1) are left out: tiny. What no implementation of this math in float32 can go
    below on this core.
    """
    key = (B, N)
    if key not in _FLOOR_OPERANDS:
        g = torch.Generator().manual_seed(0)
        _FLOOR_OPERANDS[key] = (torch.randn(B, N, generator=g), torch.randn(B, 2 * N, generator=g),
                                torch.randn(N, N, generator=g), torch.randn(N, 2 * N, generator=g))
    s, cat, w_rec, w_gate = _FLOOR_OPERANDS[key]
    with torch.no_grad():
        for _ in range(T):
            out = torch.mm(s, w_rec.t())                       # forward: recurrent product
            gm = torch.mm(cat, w_gate.t())                      # forward: gate_m
            torch.mm(cat, w_gate.t())                           # forward: gate_adp
            torch.mm(out, w_rec)                                # backward: d input of the recurrent product
            torch.mm(out.t(), s)                                # backward: d W_rec
            torch.mm(gm, w_gate)                                # backward: d input of gate_m
            torch.mm(gm.t(), cat)                               # backward: d W_gate_m
