"""The model's forward under ``torch.compile``, for ``SequenceTrainer(..., compile=True)``.

An online trainer calls the model once per time step, so on a CPU much of a small network's
step is Python and per-operator dispatch: the neuron's dozen elementwise kernels, the autograd
nodes they record, the module calls. ``torch.compile`` turns one step of the network (forward
and, through AOTAutograd, its backward) into a few fused kernels. The package's modules compile
to one graph: their per-call NaN/Inf checks on the input current are skipped while Dynamo
traces (a data-dependent branch would split the graph at every layer); the trainer still checks
each batch's input once, and FPTT every gradient.

The first steps compile (seconds to tens of seconds per network, cached on disk by inductor);
each new situation recompiles once: the first step of a sequence (states still unset), a window
start (states without graph), another batch size. Without a C++ compiler, or if compiling fails,
the model runs as it is, with a warning; the failure comes before any of the model's state is
written.

Example:
    >>> import torch, fptt_ext
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), fptt_ext.LTC(init_hidden=True))
    >>> forward = CompiledForward(net)        # torch.compile(net), or net itself without a compiler
    >>> forward.model is net
    True
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .fused import compiler_available

__all__ = ["CompiledForward"]


class CompiledForward:
    """Call ``torch.compile(model)`` in place of ``model``; the model itself where that is impossible.

    ``active`` says whether calls go through the compiled module. The compiled module shares
    the model's parameters, buffers and state: training through it trains ``model``.

    Dynamo keeps up to ``torch._dynamo.config.recompile_limit`` (8) compiled versions of a
    module class's ``forward``; a process that compiles many instances of one network, or
    feeds many batch sizes, may exceed it, and Dynamo then runs the uncompiled code (with a
    warning in its log).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 2)
        >>> forward = CompiledForward(net)
        >>> forward.module is (forward._compiled if forward.active else net)
        True
        >>> forward(torch.ones(1, 3)).shape                     # compiles here, at the first call
        torch.Size([1, 2])
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._compiled = None
        if compiler_available():
            self._compiled = torch.compile(model)
        else:
            warnings.warn("compile=True needs a C++ compiler for torch.compile (inductor found none; install "
                          "g++ or set CXX); the model runs uncompiled.", RuntimeWarning, stacklevel=3)

    @property
    def active(self) -> bool:
        return self._compiled is not None

    @property
    def module(self) -> nn.Module:
        """What calls go to, as a module for code that needs one: ``torch.compile(model)`` (an
        ``nn.Module`` over the same parameters and state) or, inactive, ``model``."""
        return self.model if self._compiled is None else self._compiled

    def __call__(self, *args):
        if self._compiled is None:
            return self.model(*args)
        try:
            return self._compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            # Dynamo traces symbolically and the backend fails before the graph runs, so the
            # model's state is as it was: run this step, and every later one, uncompiled.
            warnings.warn(f"compile=True: compiling the model failed ({type(e).__name__}: {e}); it runs "
                          f"uncompiled.", RuntimeWarning, stacklevel=3)
            self._compiled = None
            return self.model(*args)
