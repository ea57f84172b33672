"""SpikingJelly multi-step mode: the nodes' own window loop against SpikingJelly's generic one.

:func:`multistep_table` times forward + backward of one window ``[T, B, N]`` through
``Linear -> LTCNode -> Linear -> LTCNode -> Linear -> LINode`` in ``step_mode="m"``, twice
with the same weights:

* ``fast`` - the nodes' ``multi_step_functional_forward``
  (:func:`fptt_ext.neurons.functional.ltc_multi_step`): the gates' share of the input for
  the whole window in one product, the window unbound once;
* ``generic`` - SpikingJelly's default ``MemoryModule.multi_step_functional_forward``, which
  calls the single step T times (the fused elementwise step in both).

Example:
    >>> r = multistep_table(((3, 2, 4),), rounds=1, warmup=0)
    >>> sorted(r["ms_per_window"]["T=3 B=2 N=4"]), r["ratios"]["T=3 B=2 N=4"] > 0
    (['fast', 'generic'], True)
"""

from __future__ import annotations

import statistics

import torch
from spikingjelly.activation_based import base
from spikingjelly.activation_based import functional as sj_functional
from torch import nn

from ..neurons.spikingjelly import LINode, LTCNode
from .fused import _CLOCKS, _interleave, _ratio, torch_threads

__all__ = ["multistep_table"]


class _GenericLTCNode(LTCNode):
    multi_step_functional_forward = base.MemoryModule.multi_step_functional_forward


class _GenericLINode(LINode):
    multi_step_functional_forward = base.MemoryModule.multi_step_functional_forward


def _net(n: int, ltc=LTCNode, li=LINode) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(n, n), ltc(size=n), nn.Linear(n, n), ltc(size=n), nn.Linear(n, 10), li(size=10))
    sj_functional.set_step_mode(net, "m")
    return net


def _window(net, x) -> None:
    sj_functional.reset_net(net)
    net(x).sum().backward()
    net.zero_grad(set_to_none=True)


def multistep_table(shapes=((20, 16, 128), (100, 16, 128), (20, 128, 256), (100, 128, 256)), *, rounds: int = 7,
                    warmup: int = 1, threads: int | None = 1, clock: str = "process") -> dict:
    """ms per window (forward + backward) for each ``(T, B, N)``, fast and generic, and generic / fast.

    >>> r = multistep_table(((2, 1, 3),), rounds=1, warmup=0, clock="wall")
    >>> list(r["ms_per_window"])
    ['T=2 B=1 N=3']
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    tick = _CLOCKS[clock]
    out = {"config": {"shapes": [list(s) for s in shapes], "rounds": rounds, "warmup": warmup, "threads": threads,
                      "clock": clock, "net": "Linear-LTCNode-Linear-LTCNode-Linear(10)-LINode, step_mode='m'",
                      "torch": torch.__version__},
           "ms_per_window": {}, "ratios": {}, "seconds": {}}
    with torch_threads(threads):
        for T, B, n in shapes:
            torch.manual_seed(0)
            fast = _net(n)
            generic = _net(n, _GenericLTCNode, _GenericLINode)
            generic.load_state_dict(fast.state_dict())
            x = torch.rand(T, B, n, generator=torch.Generator().manual_seed(1))
            times = _interleave({"fast": lambda: _window(fast, x),  # noqa: B023 (run at once)
                                 "generic": lambda: _window(generic, x)},  # noqa: B023
                                rounds, warmup, tick)
            key = f"T={T} B={B} N={n}"
            out["seconds"][key] = times
            out["ms_per_window"][key] = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            out["ratios"][key] = _ratio(times["generic"], times["fast"])
    return out
