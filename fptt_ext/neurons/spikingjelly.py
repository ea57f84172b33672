"""SpikingJelly adapters: ``LTCNode``, ``ALIFNode`` and ``LINode``.

They are :class:`spikingjelly.activation_based.base.MemoryModule` nodes with
registered memories (``v``, ``b``, ``s``), so ``functional.reset_net``,
``functional.detach_net`` and ``functional.set_step_mode`` handle them, and
they implement SpikingJelly's ``single_step_functional_forward`` with the same
pure step function as the snnTorch adapter
(:func:`fptt_ext.neurons.functional.ltc_step`). Multi-step mode (``[T, B, ...]``)
overrides ``multi_step_functional_forward``, as SpikingJelly's own multi-step neurons do:
the window is known, so the gates' share of the input is computed for all T steps at once
(:func:`fptt_ext.neurons.functional.ltc_multi_step`), and ``store_v_seq=True`` keeps the
membrane of every step in ``v_seq``.

Example - the PLIF network of SpikingJelly with LTC-SN neurons:
    >>> import torch
    >>> from spikingjelly.activation_based import functional
    >>> from spikingjelly.activation_based.model.parametric_lif_net import FashionMNISTNet
    >>> from fptt_ext.spikingjelly import LTCNode
    >>> net = FashionMNISTNet(channels=4, spiking_neuron=LTCNode)
    >>> functional.set_step_mode(net, "m")
    >>> net(torch.rand(3, 2, 1, 28, 28)).shape        # [T, B, classes]
    torch.Size([3, 2, 10])
    >>> functional.reset_net(net)
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from spikingjelly.activation_based.neuron import BaseNode

from .functional import li_multi_step, li_step, ltc_multi_step, ltc_step
from .gates import GatedNeuron
from .surrogate import MultiGaussian

__all__ = ["ALIFNode", "LINode", "LTCNode"]


def _materialize(states: tuple, x: torch.Tensor) -> tuple:
    """Float reset values become zero tensors shaped like ``x``; stale shapes restart."""
    out = []
    for s in states:
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            s = torch.full_like(x, float(s) if not isinstance(s, torch.Tensor) else 0.0)
        out.append(s)
    return tuple(out)


class _AdaptiveNode(GatedNeuron, BaseNode):
    def __init__(
        self,
        v_threshold: float = 0.1,
        v_reset: float | None = 0.0,
        surrogate_function=None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        beta=None,
        size=None,
        conv=None,
        beta_a: float = 1.8,
        adaptation_decay=None,
        learn_beta: bool = True,
        learn_adaptation: bool = True,
        liquid_m: bool = True,
        liquid_adp: bool = True,
        detach_adaptation: bool = False,
    ):
        if v_reset not in (0.0, None):
            raise ValueError(f"v_reset must be 0.0 (reset to zero, as in the papers) or None (subtract), got {v_reset}")
        super().__init__(float(v_threshold), v_reset, MultiGaussian() if surrogate_function is None else surrogate_function,
                         detach_reset, step_mode, store_v_seq)
        self.register_memory("b", 0.0)
        self.register_memory("s", 0.0)
        self.beta_a, self.detach_adaptation = float(beta_a), bool(detach_adaptation)
        self._setup_gates(
            size,
            conv,
            liquid={"gate_m": liquid_m, "gate_adp": liquid_adp},
            decays={"gate_m": beta, "gate_adp": adaptation_decay},
            trainable={"gate_m": learn_beta, "gate_adp": learn_adaptation},
        )

    def materialize_states(self, inputs, states, step_mode):
        if step_mode == "m":
            self._check_sequence(inputs[0])
        else:
            self._check_input(inputs[0])
        return _materialize(states, inputs[0][0] if step_mode == "m" else inputs[0])

    def _step_kwargs(self) -> dict:
        return {"b0": self.v_threshold, "beta_a": self.beta_a, "spike_fn": self.surrogate_function,
                "reset_mechanism": "zero" if self.v_reset is not None else "subtract",
                "detach_reset": self.detach_reset, "detach_adaptation": self.detach_adaptation}

    def single_step_functional_forward(self, inputs, states, **kwargs):
        (x,), (v, b, s) = inputs, states
        s, v, b = ltc_step(x, v, b, s, self.gate_m, self.gate_adp, **self._step_kwargs())
        return (s,), (v, b, s)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        (x_seq,), (v, b, s) = inputs, states
        spk_seq, v, b, s, _ = ltc_multi_step(x_seq, v, b, s, self.gate_m, self.gate_adp, **self._step_kwargs())
        return (spk_seq,), (v, b, s)

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if not self.store_v_seq:
            return super().multi_step_forward(x_seq, *args, **kwargs)
        # as SpikingJelly's own nodes do: the functional forward stays free of side effects
        v, b, s = self.materialize_states((x_seq, *args), tuple(self._memories.values()), "m")
        spk_seq, v, b, s, self.v_seq = ltc_multi_step(x_seq, v, b, s, self.gate_m, self.gate_adp,
                                                      store_v_seq=True, **self._step_kwargs())
        for name, value in zip(self._memories.keys(), (v, b, s), strict=True):
            self._memories[name] = value
        return spk_seq

    def extra_repr(self):
        return f"size={self.size}, conv={self.conv}, " + super().extra_repr()


class LTCNode(_AdaptiveNode):
    """LTC-SN as a SpikingJelly node; equations and gates as :class:`fptt_ext.LTC`.

    ``v_threshold`` is the baseline threshold ``b0`` (0.1); ``v_reset=0.0`` resets
    to zero (papers), ``None`` subtracts the threshold. Keyword-only arguments
    (``beta``, ``size``, ``conv``, ``beta_a``, ``adaptation_decay``, ``learn_beta``,
    ``learn_adaptation``, ``liquid_adp``) mean what they mean for ``fptt_ext.LTC``.

    Example:
        >>> import torch
        >>> node = LTCNode(step_mode="m")
        >>> node(torch.rand(4, 2, 8)).shape
        torch.Size([4, 2, 8])
        >>> node.v.shape, node.b.shape
        (torch.Size([2, 8]), torch.Size([2, 8]))
    """

    def __init__(self, v_threshold=0.1, v_reset=0.0, surrogate_function=None, detach_reset=False,
                 step_mode="s", store_v_seq=False, *, liquid_adp=True, **kwargs):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
                         liquid_m=True, liquid_adp=liquid_adp, **kwargs)


class ALIFNode(_AdaptiveNode):
    """Adaptive LIF node: learned constant ``alpha``, ``rho`` (see :class:`fptt_ext.ALIF`).

    Example:
        >>> import torch
        >>> ALIFNode(size=2)(torch.full((1, 2), 5.0)).tolist()
        [[1.0, 1.0]]
    """

    def __init__(self, v_threshold=0.1, v_reset=0.0, surrogate_function=None, detach_reset=False,
                 step_mode="s", store_v_seq=False, **kwargs):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
                         liquid_m=False, liquid_adp=False, **kwargs)


class LINode(GatedNeuron, base.MemoryModule):
    """Leaky-integrator readout node; outputs its state ``v`` (see :class:`fptt_ext.LI`).

    Example:
        >>> import torch
        >>> LINode(beta=0.5, liquid=False, size=2)(torch.ones(1, 2))
        tensor([[0.5000, 0.5000]], grad_fn=<AddBackward0>)
    """

    def __init__(self, step_mode: str = "s", *, beta=None, size=None, conv=None, liquid: bool = True,
                 learn_beta: bool = True):
        super().__init__()
        self.step_mode = step_mode
        self.register_memory("v", 0.0)
        self._setup_gates(size, conv, liquid={"gate_m": liquid}, decays={"gate_m": beta},
                          trainable={"gate_m": learn_beta})

    def materialize_states(self, inputs, states, step_mode):
        if step_mode == "m":
            self._check_sequence(inputs[0])
        else:
            self._check_input(inputs[0])
        return _materialize(states, inputs[0][0] if step_mode == "m" else inputs[0])

    def single_step_functional_forward(self, inputs, states, **kwargs):
        v = li_step(inputs[0], states[0], self.gate_m)
        return (v,), (v,)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        v_seq = li_multi_step(inputs[0], states[0], self.gate_m)
        return (v_seq,), (v_seq[-1],)

    def extra_repr(self):
        return f"size={self.size}, conv={self.conv}, step_mode={self.step_mode}"
