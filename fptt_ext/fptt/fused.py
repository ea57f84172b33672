"""The FPTT updates as one compiled kernel per parameter (``FPTT(..., fused=True)``).

The foreach path (:class:`~fptt_ext.fptt.FPTT`'s default) needs eight in-place passes over
the parameters per step: four for the regulariser's gradient, four for the ``lam`` and
``W_bar`` update. Each pass is memory bound, so what costs is the traffic, not the
arithmetic. ``torch.compile`` turns each update into a single loop per tensor that reads
every operand once and writes each result once:

* regulariser gradient: ``grad += alpha (W - W_bar) - c trace`` (read 4, write 1 instead of
  read 7, write 4);
* practical update: ``lam -= alpha (W - W_bar)``; ``W_bar <- lerp(W_bar, W, beta) -
  (beta / alpha) lam`` (read 3, write 2 instead of read 8, write 4).

``W - W_bar`` is still formed first, so the regulariser's gradient is exactly zero where
``W == W_bar`` and ``lam == 0``. Compiling needs a C++ compiler (inductor's CPU backend) and
takes a few seconds per model, once per process; without a compiler :func:`fused_updates`
returns ``None`` and FPTT keeps the foreach kernels.

Example:
    >>> kernels = fused_updates()
    >>> kernels is None or sorted(kernels) == ["practical_update", "regularizer_grad"]
    True
"""
from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["compiler_available", "fused_updates"]


def _regularizer_grad(grads, params, w_bar, trace, alpha: float, c: float):
    for g, p, w, t in zip(grads, params, w_bar, trace):
        g.add_((p - w) * alpha - t * c)


def _practical_update(params, w_bar, lam, alpha: float, beta: float):
    for p, w, m in zip(params, w_bar, lam):
        m.sub_((p - w) * alpha)
        w.lerp_(p, beta).sub_(m * (beta / alpha))


def compiler_available() -> bool:
    """True if inductor finds the C++ compiler it needs to build CPU kernels.

    >>> isinstance(compiler_available(), bool)
    True
    """
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
        return True
    except Exception:  # noqa: BLE001 (inductor raises its own InvalidCxxCompiler, or fails to import)
        return False


@functools.cache
def _compiled():
    # fullgraph: a graph break would silently run the per-tensor Python loops eagerly.
    # dynamic=False: the lists and shapes of one model never change, so specialise on them.
    opts = {"fullgraph": True, "dynamic": False}
    return {"regularizer_grad": torch.compile(_regularizer_grad, **opts),
            "practical_update": torch.compile(_practical_update, **opts)}


def fused_updates():
    """The compiled update kernels ``{"regularizer_grad", "practical_update"}``, or ``None``
    (with a warning) where no C++ compiler is available. Compilation happens at the first call.

    >>> import torch
    >>> kernels = fused_updates()
    >>> update = kernels["practical_update"] if kernels else _practical_update  # (what it compiles)
    >>> w, w_bar, lam = torch.ones(3), torch.zeros(3), torch.zeros(3)
    >>> update([w], [w_bar], [lam], 0.1, 0.5)  # lam -= alpha (W - W_bar); W_bar <- lerp(W_bar, W, beta) - beta/alpha lam
    >>> lam.tolist(), w_bar.tolist()
    ([-0.10000000149011612, -0.10000000149011612, -0.10000000149011612], [1.0, 1.0, 1.0])
    """
    if not compiler_available():
        warnings.warn("FPTT(fused=True) needs a C++ compiler for torch.compile (inductor found "
                      "none; install g++ or set CXX); using the foreach kernels instead.",
                      RuntimeWarning, stacklevel=3)
        return None
    return _compiled()
