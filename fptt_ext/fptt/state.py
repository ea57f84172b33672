"""One protocol for the recurrent state of any network: reset, detach, get, set.

Stateful modules are found by walking ``model.modules()`` once; each is handled
by the :class:`StateHandler` registered for the nearest class in its MRO:

* SpikingJelly ``MemoryModule`` (and this package's ``LTCNode`` ...): its
  registered memories;
* snnTorch ``SpikingNeuron`` (``snn.Leaky`` ..., and ``fptt_ext.LTC`` ...): its
  non-persistent buffers, which is where snnTorch keeps ``mem``, ``syn``, ``spk``.

Other libraries plug in with :func:`register_state_handler`. State that the
user holds (``nn.LSTM``'s ``(h, c)``) is passed around by the training loop and
detached with :func:`detach_tree`.

Example:
    >>> import torch, fptt_ext
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), fptt_ext.LTC(init_hidden=True))
    >>> _ = net(torch.rand(2, 3))
    >>> states = StatefulModules(net)
    >>> len(states), states.get()[0]["_mem"].shape
    (1, torch.Size([2, 4]))
    >>> states.reset(); float(net[1].mem.abs().sum())
    0.0
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

__all__ = ["StateHandler", "StatefulModules", "detach_tree", "register_state_handler"]


class StateHandler(abc.ABC):
    """How to reset, detach, read and write the state of one kind of module.

    Example:
        >>> import torch
        >>> class Cell(torch.nn.Module):                  # keeps its state in ``self.h``
        ...     h = torch.ones(2)
        >>> class CellHandler(StateHandler):
        ...     def names(self, m):
        ...         return ["h"]
        >>> register_state_handler(Cell, CellHandler())
        >>> net = torch.nn.Sequential(Cell()); StatefulModules(net).reset()
        >>> net[0].h.tolist()
        [0.0, 0.0]
    """

    @abc.abstractmethod
    def names(self, m: nn.Module) -> list[str]:
        """The attribute names of ``m``'s state tensors."""

    def get(self, m: nn.Module) -> dict[str, Any]:
        return {n: getattr(m, n) for n in self.names(m)}

    def set(self, m: nn.Module, states: dict[str, Any]) -> None:
        for n, v in states.items():
            setattr(m, n, v)

    def reset(self, m: nn.Module) -> None:
        self.set(m, {n: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v for n, v in self.get(m).items()})

    def detach(self, m: nn.Module) -> None:
        # Re-bind instead of detach_(): the old tensors may be outputs the caller still uses.
        self.set(m, {n: v.detach() for n, v in self.get(m).items() if isinstance(v, torch.Tensor)})


class _SpikingJellyHandler(StateHandler):
    def names(self, m):
        return list(m._memories)

    def get(self, m):
        return dict(m._memories)

    def set(self, m, states):
        m._memories.update(states)

    def reset(self, m):
        m.reset()  # SpikingJelly's own reset restores the registered reset values


class _SnnTorchHandler(StateHandler):
    def names(self, m):
        return [n for n in m._buffers if n in m._non_persistent_buffers_set]


_HANDLERS: dict[type, StateHandler] = {}


def register_state_handler(cls: type, handler: StateHandler) -> None:
    """Teach the protocol about another stateful module class (and its subclasses).

    Example:
        >>> import torch
        >>> class Memory(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.m = torch.ones(3, requires_grad=True) * 2
        >>> class MemoryHandler(StateHandler):
        ...     def names(self, m):
        ...         return ["m"]
        >>> register_state_handler(Memory, MemoryHandler())
        >>> states = StatefulModules(torch.nn.Sequential(Memory()))
        >>> states.detach(); states.get()[0]["m"].requires_grad
        False
    """
    _HANDLERS[cls] = handler


def _register_builtin() -> None:
    try:
        from spikingjelly.activation_based.base import MemoryModule
        register_state_handler(MemoryModule, _SpikingJellyHandler())
    except ImportError:  # pragma: no cover - spikingjelly is a dependency
        pass
    try:
        import snntorch
        register_state_handler(snntorch.SpikingNeuron, _SnnTorchHandler())
    except ImportError:  # pragma: no cover
        pass


_register_builtin()


def _handler_for(m: nn.Module) -> StateHandler | None:
    for cls in type(m).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    return None


class StatefulModules:
    """The stateful modules of ``model``, found once, handled together.

    Example:
        >>> import torch, fptt_ext
        >>> from spikingjelly.activation_based import neuron
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), fptt_ext.LTC(init_hidden=True), neuron.LIFNode())
        >>> states = StatefulModules(net)                # snnTorch-style and SpikingJelly modules alike
        >>> len(states)
        2
        >>> _ = net(torch.rand(4, 2)); states.detach(); states.reset()
    """

    def __init__(self, model: nn.Module):
        self.items = [(m, h) for m in model.modules() if (h := _handler_for(m)) is not None]

    def __len__(self) -> int:
        return len(self.items)

    def reset(self) -> None:
        for m, h in self.items:
            h.reset(m)

    def detach(self) -> None:
        for m, h in self.items:
            h.detach(m)

    def get(self) -> list[dict[str, Any]]:
        """A snapshot (references) of every module's state, in traversal order."""
        return [h.get(m) for m, h in self.items]

    def set(self, snapshot: list[dict[str, Any]]) -> None:
        if len(snapshot) != len(self.items):
            raise ValueError(f"state snapshot has {len(snapshot)} modules, the model has {len(self.items)}")
        for (m, h), states in zip(self.items, snapshot):
            h.set(m, states)


def detach_tree(state: Any) -> Any:
    """Detach every tensor in a nested tuple/list/dict of user-held state.

    Example:
        >>> import torch
        >>> h = torch.ones(2, requires_grad=True) * 2
        >>> out = detach_tree({"lstm": (h, h), "step": 3})
        >>> out["lstm"][0].requires_grad, out["step"]
        (False, 3)
    """
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_tree(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_tree(v) for k, v in state.items()}
    return state
