"""snnTorch adapters: ``fptt_ext.LTC``, ``fptt_ext.ALIF`` and ``fptt_ext.LI``.

They follow the contract of ``snn.Leaky`` (and subclass it, so
``snntorch.utils.reset(net)`` finds them): ``spk, mem = ltc(cur)`` or
``spk, mem = ltc(cur, mem)``; ``init_hidden=True`` keeps every state on the
module for ``nn.Sequential`` use. The math is :func:`fptt_ext.neurons.functional.ltc_step`.

Example - the snnTorch tutorial network with ``snn.Leaky`` swapped out:
    >>> import torch, torch.nn as nn, fptt_ext
    >>> fc1, lif1 = nn.Linear(784, 100), fptt_ext.LTC(beta=0.9)
    >>> mem1 = lif1.reset_mem()
    >>> for step in range(5):
    ...     spk1, mem1 = lif1(fc1(torch.rand(8, 784)), mem1)
    >>> spk1.shape, lif1.b.shape, lif1.gate_m.weight.shape
    (torch.Size([8, 100]), torch.Size([8, 100]), torch.Size([100, 200]))
"""

from __future__ import annotations

import snntorch as snn
import torch

from .functional import li_step, ltc_step
from .gates import DEFAULT_DECAY, GatedNeuron
from .surrogate import MultiGaussian

__all__ = ["ALIF", "LI", "LTC"]


class _self_or_all_instances:
    """A method that acts on one module when called on it, and on every live
    instance of the class when called on the class (snnTorch's classmethod
    semantics for ``reset_hidden`` / ``detach_hidden``)."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj, cls):
        if obj is not None:
            return self.fn.__get__(obj, cls)

        def for_all():
            for inst in snn.SpikingNeuron.instances:
                if isinstance(inst, cls):
                    self.fn(inst)

        return for_all


class _SnnTorchNeuron(GatedNeuron, snn.Leaky):
    """Shared snnTorch plumbing: states as non-persistent buffers, reset/detach."""

    _state_names: tuple[str, ...] = ("_mem",)

    _mem_had_graph = False  # did the last ``mem`` this module produced carry a graph?

    def _init_mem(self):  # called by snn.Leaky.__init__
        for name in self._state_names:
            self.register_buffer(name, torch.zeros(0), persistent=False)

    def _drop_leaky_beta(self, beta):
        # snn.Leaky stores a fixed decay ``beta``; here beta only initialises a gate.
        del self._buffers["beta"]
        self.init_beta = beta

    @property
    def mem(self) -> torch.Tensor:
        """Membrane potential. Assigning it (as ``snn.Leaky.reset_hidden`` and
        ``snntorch.utils.reset`` do) starts a new state: the other states are cleared."""
        return self._mem

    @mem.setter
    def mem(self, value: torch.Tensor) -> None:
        self._mem = value
        for name in self._state_names[1:]:
            setattr(self, name, torch.zeros_like(value))

    def _prepare_states(self, cur: torch.Tensor, mem: torch.Tensor | None) -> dict:
        """Make the states ready for a step on ``cur``; returns the buffer dict that holds them.

        The step reads and writes its states in that dict: ``nn.Module.__setattr__``
        re-registers a buffer on every assignment (about 3 us each, three states a step)."""
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        states = self._buffers
        if mem is not None:
            states["_mem"] = mem
        if self._mem_had_graph and not states["_mem"].requires_grad:
            # The membrane we produced had a graph and lost it: the graph was cut, by
            # snnTorch's class-level ``snn.Leaky.detach_hidden()`` (an in-place
            # ``mem.detach_()``, e.g. in ``snntorch.backprop.TBPTT``) or by a detached ``mem``
            # passed in. Cut the other states with it.
            for name in self._state_names[1:]:
                states[name] = states[name].detach()
        for name in self._state_names:
            if states[name].shape != cur.shape:  # first call or new batch size
                states[name] = torch.zeros_like(cur)
        return states

    def reset_mem(self) -> torch.Tensor:
        """Reset every state to zero (keeping its shape) and return ``mem``."""
        for name in self._state_names:
            setattr(self, name, torch.zeros_like(getattr(self, name)))
        return self._mem

    def init_leaky(self) -> torch.Tensor:
        """snnTorch's older name for :meth:`reset_mem`."""
        return self.reset_mem()

    @_self_or_all_instances
    def reset_hidden(self) -> None:
        """Zero all states (on one module, or on all instances if called on the class)."""
        self.reset_mem()

    @_self_or_all_instances
    def detach_hidden(self) -> None:
        """Cut the graph behind all states (truncated BPTT / FPTT)."""
        states = self._buffers  # (not setattr: see _prepare_states)
        for name in self._state_names:
            states[name] = states[name].detach()

    # The SpikingJelly protocol, so ``functional.reset_net`` / ``detach_net``
    # handle snnTorch-style networks built from these modules as well.
    def reset(self) -> None:
        self.reset_mem()

    def detach(self, *args):
        """With no arguments: :meth:`detach_hidden`. With tensors: snnTorch's
        ``SpikingNeuron.detach(*args)``, detaching them in place."""
        if args:
            return snn.SpikingNeuron.detach(*args)
        self.detach_hidden()


class _AdaptiveSpiking(_SnnTorchNeuron):
    _state_names = ("_mem", "b", "spk")
    _leaky_scale_default = "beta"  # leaky_scale=None means: True when beta is given

    def __init__(
        self,
        beta=None,
        threshold=None,
        spike_grad=None,
        surrogate_disable=False,
        init_hidden=False,
        learn_beta=True,
        learn_threshold=False,
        reset_mechanism=None,
        output=False,
        *,
        size=None,
        conv=None,
        beta_a=None,
        adaptation_decay=None,
        learn_adaptation=True,
        detach_reset=False,
        detach_adaptation=False,
        liquid_m=True,
        liquid_adp=True,
        leaky_scale=None,
        reset_delay=None,
        graded_spikes_factor=1.0,
        learn_graded_spikes_factor=False,
    ):
        if leaky_scale is None:
            leaky_scale = beta is not None if self._leaky_scale_default == "beta" else False
        if leaky_scale and beta is None:
            raise ValueError(f"{type(self).__name__}: leaky_scale=True needs beta (the scale is 1 / (1 - beta))")
        # snnTorch's defaults in snn.Leaky's scale, the papers' otherwise (SPEC section 1)
        threshold = (1.0 if leaky_scale else 0.1) if threshold is None else threshold
        reset_mechanism = ("subtract" if leaky_scale else "zero") if reset_mechanism is None else reset_mechanism
        if leaky_scale:
            # A slow, moderate adaptation in snnTorch's scale: the ASRNN's tau_adp = 200 steps, and a
            # threshold that at most doubles (0.9 x threshold). The papers' 1.8 over b0 = 0.1 with a fast
            # adaptation cost 10 points in snnTorch's tutorial 6 (docs/snntorch-tutorials.md).
            beta_a = 0.9 * float(threshold) if beta_a is None else beta_a
            adaptation_decay = DEFAULT_DECAY["gate_adp"] if adaptation_decay is None else adaptation_decay
        beta_a = 1.8 if beta_a is None else beta_a
        # an invalid beta gets its message from _setup_gates below
        gain = 1.0 / (1.0 - beta) if leaky_scale and isinstance(beta, (int, float)) and 0 < beta < 1 else 1.0
        if spike_grad is None:
            # The papers' surrogate of the papers'-scale membrane u = mem / gain:
            # d/dmem MG(mem / gain; sigma) = MG(mem; gain * sigma), exactly.
            spike_grad = MultiGaussian(sigma=0.3 * gain)
        super().__init__(
            beta=0.0,
            threshold=torch.tensor(float(threshold), dtype=torch.float64),
            spike_grad=spike_grad,
            surrogate_disable=surrogate_disable,
            init_hidden=init_hidden,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            output=output,
            graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
            reset_delay=bool(leaky_scale) if reset_delay is None else bool(reset_delay),
        )
        self._drop_leaky_beta(beta)
        self.leaky_scale = bool(leaky_scale)
        # Valid beta (0 < beta < 1) is checked with the gates below; the gain is only computed then.
        self._graded = bool(learn_graded_spikes_factor) or float(graded_spikes_factor) != 1.0
        self.beta_a, self.detach_reset = float(beta_a), bool(detach_reset)
        self.detach_adaptation = bool(detach_adaptation)
        self._setup_gates(
            size,
            conv,
            liquid={"gate_m": liquid_m, "gate_adp": liquid_adp},
            decays={"gate_m": beta, "gate_adp": adaptation_decay},
            trainable={"gate_m": learn_beta, "gate_adp": learn_adaptation},
        )
        self.gain = gain

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None):
        self._check_input(input_)
        states = self._prepare_states(input_, mem)
        spk, mem, states["b"] = ltc_step(
            input_, states["_mem"], states["b"], states["spk"], self.gate_m, self.gate_adp,
            gain=self.gain, reset_delay=self.reset_delay,
            b0=self.threshold, beta_a=self.beta_a, spike_fn=self.spike_grad,
            reset_mechanism=self.reset_mechanism, detach_reset=self.detach_reset,
            detach_adaptation=self.detach_adaptation,
        )
        states["_mem"] = mem
        states["spk"] = spk  # the binary spike: it drives the adaptation and the (delayed) reset
        self.__dict__["_mem_had_graph"] = mem.requires_grad
        if self._graded:
            spk = spk * self.graded_spikes_factor
        if self.init_hidden and not self.output:
            return spk
        return spk, mem

    def extra_repr(self) -> str:
        scale = f", leaky_scale=True (gain {self.gain:g})" if self.leaky_scale else ""
        delay = ", reset_delay=True" if self.reset_delay else ""
        return (f"size={self.size}, conv={self.conv}, b0={float(self.threshold):g}, beta_a={self.beta_a:g}, "
                f"reset={self.reset_mechanism!r}{delay}{scale}")


class LTC(_AdaptiveSpiking):
    r"""Liquid time-constant spiking neuron (LTC-SN), a drop-in for ``snn.Leaky``.

    .. math::
        \alpha_t = \sigma(\mathrm{gate\_m}(I_t, u_{t-1})),\quad
        \rho_t = \sigma(\mathrm{gate\_adp}(I_t, b_{t-1}))\\
        b_t = \rho_t b_{t-1} + (1-\rho_t) s_{t-1},\quad \theta_t = b_0 + \beta_a b_t\\
        u_t = u_{t-1} + \alpha_t (I_t - u_{t-1}),\quad s_t = H(u_t - \theta_t),\quad u_t \leftarrow u_t (1 - s_t)

    The gates are ``Linear(2N -> N)`` on ``[I_t, state]`` for input ``(B, N)``, and
    ``BN(Conv3x3(I_t + state))`` for input ``(B, C, H, W)``; the kind and size are
    inferred on the first call unless ``size=`` (and ``conv=True``) is given. Create
    the optimizer after the first forward pass when the size is inferred, as with
    PyTorch's lazy modules.

    **snnTorch's scale.** Passing ``beta``, as every ``snn.Leaky(beta=...)`` call does, switches on
    ``leaky_scale``: the input is multiplied by ``gain = 1 / (1 - beta)``, the DC gain of
    ``snn.Leaky``, so that at the start (``alpha = 1 - beta``) the membrane follows
    ``mem_t = beta mem_{t-1} + I_t`` exactly as ``snn.Leaky(beta)``; the threshold (1.0), reset
    (``"subtract"``, with ``reset_delay``: the ``mem`` returned is the one before its reset) and
    surrogate keep snnTorch's sizes. The gates see ``(I_t, mem / gain)``, the papers' scale, and the
    spikes and adaptation are the papers' neuron's for the membrane ``mem / gain`` (tested step by
    step). Without ``beta`` every default is the papers' (SPEC section 1). Where an LTC-SN differs
    from a LIF, and what to do: docs/howto/snntorch.md.

    Args:
        beta: initial membrane decay; sets the bias of ``gate_m`` so that
            ``1 - alpha ≈ beta`` at start, and switches on ``leaky_scale``. ``None`` keeps
            PyTorch's default init and the papers' scale.
        threshold: baseline threshold ``b0``: 1.0 in snnTorch's scale, 0.1 (papers) otherwise.
        spike_grad: any ``x -> spikes`` callable (snnTorch surrogates work, applied to
            ``mem - threshold`` as in ``snn.Leaky``); default the papers' multi-Gaussian of the
            papers'-scale membrane (its width times ``gain``).
        init_hidden, output: as in ``snn.Leaky``.
        learn_beta: train ``gate_m`` (``False`` freezes it at its initial value).
        learn_threshold: make ``b0`` a parameter.
        reset_mechanism: ``"zero"`` (papers' default), ``"subtract"`` (``u -= s*theta``, snnTorch's
            default) or ``"none"``.
        size, conv: explicit number of neurons (or channels with ``conv=True``).
        beta_a: adaptation strength: 1.8 (papers), ``0.9 * threshold`` in snnTorch's scale.
        adaptation_decay: initial ``rho``, sets the bias of ``gate_adp``; in snnTorch's scale
            ``exp(-1/200)`` by default (the papers' ASRNN start), else PyTorch's default init.
        learn_adaptation: train ``gate_adp``.
        liquid_adp: ``False`` makes ``rho`` a learned constant (the "LTC-minus" ablation).
        detach_reset: no gradient through the reset.
        detach_adaptation: no gradient through the spike that drives the adaptation
            ``b`` (forward unchanged). Over long BPTT windows the loop spike -> ``b`` ->
            threshold -> spike can explode the gradient; this cuts it (docs/recipes.md).
        leaky_scale: snnTorch's scale as described above; default ``True`` when ``beta`` is given.
        reset_delay: return (and keep) the membrane before its reset and apply the reset at the
            next call, as ``snn.Leaky``; the spikes do not change. Default: ``leaky_scale``.
        graded_spikes_factor, learn_graded_spikes_factor: scale the returned spikes, as in
            snnTorch (the adaptation and reset use the binary spike).

    States ``mem``, ``b`` (adaptation) and ``spk`` (last spike) are attributes. Passing
    ``mem`` sets only the membrane: start each new sequence with ``mem = ltc.reset_mem()``
    (or ``snntorch.utils.reset(net)``), which clears all three. A ``mem`` passed in
    detached from its graph (truncated BPTT) cuts the graph of ``b`` and ``spk`` too.

    Example:
        >>> import torch, torch.nn as nn, fptt_ext
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), fptt_ext.LTC(init_hidden=True))
        >>> net(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
        >>> type(net[1].gate_m).__name__
        'ConvGate'
        >>> lif = fptt_ext.LTC(beta=0.95)                  # the snn.Leaky(beta=0.95) swap
        >>> float(lif.threshold), lif.reset_mechanism, lif.reset_delay, round(lif.gain, 6)
        (1.0, 'subtract', True, 20.0)
    """

    def __init__(self, beta=None, threshold=None, spike_grad=None, surrogate_disable=False,
                 init_hidden=False, learn_beta=True, learn_threshold=False, reset_mechanism=None,
                 output=False, *, liquid_adp=True, **kwargs):
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, learn_beta,
                         learn_threshold, reset_mechanism, output, liquid_m=True,
                         liquid_adp=liquid_adp, **kwargs)


class ALIF(_AdaptiveSpiking):
    """Adaptive LIF (the papers' ASRNN neuron): LTC-SN with learned constant gates.

    ``alpha = σ(p_m)`` and ``rho = σ(p_adp)`` per neuron (per channel for conv
    input); they start at ``tau_m = 20`` and ``tau_adp = 200`` steps unless
    ``beta`` / ``adaptation_decay`` are given. Same arguments as :class:`LTC`, except that
    ``beta`` keeps the papers' meaning (the constant's start, in the papers' scale) unless
    ``leaky_scale=True`` is given too.

    Example:
        >>> import torch, fptt_ext
        >>> alif = fptt_ext.ALIF(size=3)
        >>> spk, mem = alif(torch.full((1, 3), 5.0))
        >>> spk.tolist()
        [[1.0, 1.0, 1.0]]
    """

    _leaky_scale_default = False  # beta sets the constant decay only, as in the papers' ASRNN

    def __init__(self, beta=None, threshold=None, spike_grad=None, surrogate_disable=False,
                 init_hidden=False, learn_beta=True, learn_threshold=False, reset_mechanism=None,
                 output=False, **kwargs):
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, learn_beta,
                         learn_threshold, reset_mechanism, output, liquid_m=False,
                         liquid_adp=False, **kwargs)


class LI(_SnnTorchNeuron):
    r"""Leaky-integrator readout (no spikes): ``o_t = o_{t-1} + alpha_t (I_t - o_{t-1})``.

    ``alpha_t = σ(gate_m(I_t, o_{t-1}))`` (liquid) or a learned constant per
    neuron (``liquid=False``). Returns ``mem`` (the prediction at step t), in
    both explicit and ``init_hidden`` mode.

    Example:
        >>> import torch, fptt_ext
        >>> li = fptt_ext.LI(beta=0.5, liquid=False, size=2)
        >>> li(torch.ones(1, 2))
        tensor([[0.5000, 0.5000]], grad_fn=<AddBackward0>)
    """

    def __init__(self, beta=None, init_hidden=False, learn_beta=True, *, size=None, conv=None, liquid=True):
        super().__init__(beta=0.0, init_hidden=init_hidden, reset_mechanism="none")
        self._drop_leaky_beta(beta)
        self._setup_gates(size, conv, liquid={"gate_m": liquid}, decays={"gate_m": beta},
                          trainable={"gate_m": learn_beta})

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(input_)
        states = self._prepare_states(input_, mem)
        mem = states["_mem"] = li_step(input_, states["_mem"], self.gate_m)
        return mem

    def extra_repr(self) -> str:
        return f"size={self.size}, conv={self.conv}"
