"""Pure step functions of the neuron math, shared by every adapter.

Both the snnTorch modules (:mod:`fptt_ext.neurons.snntorch`) and the
SpikingJelly nodes (:mod:`fptt_ext.neurons.spikingjelly`) call these functions,
so the two ecosystems give bit-identical results for identical weights.

Adaptive spiking update (docs/concepts/ltc.md), given the gate values
``alpha`` (membrane update rate, "1/tau_m") and ``rho`` (adaptation decay)::

    b_t     = rho * b_{t-1} + (1 - rho) * s_{t-1}
    theta_t = b0 + beta_a * b_t
    u_t     = u_{t-1} + alpha * (I_t - u_{t-1})
    s_t     = H(u_t - theta_t)
    u_t     = u_t * (1 - s_t)            # reset "zero" (u_rest = 0)

LTC-SN computes ``alpha = σ(gate_m(I_t, u_{t-1}))`` and ``rho = σ(gate_adp(I_t, b_{t-1}))``;
ALIF uses learned constants ``alpha = σ(p_m)``, ``rho = σ(p_adp)``.

For the spike functions it knows (:func:`fptt_ext.neurons.fused.spike_rule`: the
multi-Gaussian, snnTorch's and SpikingJelly's common surrogates) the elementwise part,
sigmoids included, runs as one autograd node with a hand-derived backward
(:mod:`fptt_ext.neurons.fused`): the same spikes and states bit for bit, the same gradient
up to rounding, in less time. Any other ``spike_fn`` takes the plain path below. With both
gates a :class:`~fptt_ext.neurons.gates.DenseGate`, :func:`ltc_step` runs the gates and that
step as one node (:mod:`fptt_ext.neurons.fused_dense`).

Example:
    >>> import torch
    >>> from fptt_ext.neurons.functional import alif_step
    >>> zeros = torch.zeros(1, 2)
    >>> spk, mem, b = alif_step(torch.tensor([[1.0, 0.05]]), zeros, zeros, zeros,
    ...                         p_m=torch.zeros(2), p_adp=torch.zeros(2))
    >>> spk, mem
    (tensor([[1., 0.]]), tensor([[0.0000, 0.0250]]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from . import fused
from .fused_dense import dense_step_rule, fused_dense_ltc_step
from .surrogate import MultiGaussian

__all__ = ["RESET_MECHANISMS", "adaptive_step", "alif_step", "delayed_reset", "li_multi_step", "li_step",
           "ltc_multi_step", "ltc_step"]

RESET_MECHANISMS = ("zero", "subtract", "none")
_DEFAULT_SPIKE = MultiGaussian()
Gate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def adaptive_step(
    cur: torch.Tensor,
    mem: torch.Tensor,
    b: torch.Tensor,
    spk: torch.Tensor,
    alpha: torch.Tensor,
    rho: torch.Tensor,
    *,
    b0: float | torch.Tensor = 0.1,
    beta_a: float = 1.8,
    spike_fn: Callable[[torch.Tensor], torch.Tensor] = _DEFAULT_SPIKE,
    reset_mechanism: str = "zero",
    detach_reset: bool = False,
    detach_adaptation: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the adaptive-threshold spiking neuron, gates given.

    Returns ``(spk, mem, b)`` at step t. ``spk`` is the previous step's spike
    on input and drives the adaptation, as in the papers' eq. 8c.

    ``detach_reset`` / ``detach_adaptation`` change the backward pass only: no gradient
    through the reset, or through the spike that drives ``b``. The second cuts the loop
    spike -> ``b`` -> threshold -> spike, whose gain per step is
    ``beta_a * (1 - rho) * surrogate slope`` (up to 1.8 x 0.73 = 1.3 at the defaults):
    above 1, gradients grow geometrically along a window of many steps.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 2)
        >>> spk, mem, b = adaptive_step(torch.tensor([[0.5, 0.1]]), z, z, z, alpha=torch.tensor(0.5),
        ...                             rho=torch.tensor(0.9))
        >>> spk.tolist(), [round(u, 3) for u in mem[0].tolist()]   # 0.25 > 0.1 fires and resets; 0.05 not
        ([[1.0, 0.0]], [0.0, 0.05])
    """
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    rule, dtype = _fusable(cur, mem, b, spk, alpha, rho, b0, spike_fn)
    if rule is not None:
        cur, mem, b, spk, alpha, rho = _promote(dtype, cur, mem, b, spk, alpha, rho)
        return fused.fused_adaptive_step(cur, mem, b, spk, alpha, rho, rule=rule, b0=b0, beta_a=beta_a,
                                         reset_mechanism=reset_mechanism, detach_reset=detach_reset,
                                         detach_adaptation=detach_adaptation, logits=False)
    return _plain_adaptive_step(cur, mem, b, spk, alpha, rho, b0=b0, beta_a=beta_a, spike_fn=spike_fn,
                                reset_mechanism=reset_mechanism, detach_reset=detach_reset,
                                detach_adaptation=detach_adaptation)


def _fusable(cur, mem, b, spk, gate_m, gate_adp, b0, spike_fn) -> tuple[fused.SpikeRule | None, torch.dtype]:
    """``(rule, dtype)``: the fused step's spike rule if it computes what the plain path does here
    (else ``None``), and the dtype the plain path computes in.

    Mixed floating dtypes are fused too, with every input first cast to the dtype that type
    promotion gives the plain path's operations: under bf16 autocast the convolutions and
    their gates return bfloat16 while the neuron's state is float32, and op by op each of
    the step's ~20 operations would convert again.
    """
    dtype = cur.dtype
    if not fused.fused_enabled():
        return None, dtype
    if not (isinstance(gate_m, torch.Tensor) and isinstance(gate_adp, torch.Tensor)):
        return None, dtype
    if isinstance(b0, torch.Tensor) and b0.dim() != 0:
        return None, dtype
    shape = cur.shape
    for t in (mem, b, spk, gate_m, gate_adp):
        if t.dtype != dtype:  # (a dispatcher call each otherwise, on every step)
            dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        return None, dtype
    if mem.shape != shape or b.shape != shape or spk.shape != shape:
        return None, dtype
    for g in (gate_m, gate_adp):  # a gate may broadcast over the batch (ALIF), not beyond the state
        if g.shape != shape and torch.broadcast_shapes(g.shape, shape) != shape:
            return None, dtype
    return fused.spike_rule(spike_fn, cur if cur.dtype == dtype else cur.new_empty((), dtype=dtype)), dtype


def _promote(dtype: torch.dtype, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t if t.dtype == dtype else t.to(dtype) for t in tensors)


def _plain_adaptive_step(cur, mem, b, spk, alpha, rho, *, b0, beta_a, spike_fn, reset_mechanism, detach_reset,
                         detach_adaptation):
    """:func:`adaptive_step` op by op, autograd recording each operation: the reference."""
    b = rho * b + (1.0 - rho) * (spk.detach() if detach_adaptation else spk)
    theta = b0 + beta_a * b
    mem = mem + alpha * (cur - mem)
    spk = spike_fn(mem - theta)
    gate = spk.detach() if detach_reset else spk
    if reset_mechanism == "zero":
        mem = mem * (1.0 - gate)
    elif reset_mechanism == "subtract":
        mem = mem - gate * theta
    return spk, mem, b


def ltc_step(
    cur: torch.Tensor,
    mem: torch.Tensor,
    b: torch.Tensor,
    spk: torch.Tensor,
    gate_m: Gate,
    gate_adp: Gate,
    *,
    gain: float = 1.0,
    reset_delay: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LTC-SN step: the time constants are gates of the input and state.

    ``gate_m(cur, mem)`` and ``gate_adp(cur, b)`` return pre-sigmoid values
    (a :class:`~fptt_ext.neurons.gates.DenseGate`, ``ConvGate`` or
    ``ConstantGate``); keyword arguments go to :func:`adaptive_step`.

    ``gain`` scales the input current: ``u_t = u_{t-1} + alpha_t (gain * I_t - u_{t-1})``, with
    ``mem``, ``b0`` and ``beta_a`` in that scale and the gates fed ``(I_t, mem / gain)``. This is
    the papers' neuron for the membrane ``mem / gain`` with threshold ``(b0 + beta_a b) / gain``;
    ``gain = 1 / (1 - beta)`` is the scale of ``snn.Leaky(beta)``. ``reset_delay`` takes ``mem``
    as the previous step's membrane before its reset, applies that reset first
    (:func:`delayed_reset`) and returns this step's membrane before its own: the spikes and
    adaptation are the same as without it.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 3)
        >>> gate = lambda cur, state: 2.0 * cur          # alpha = rho = sigmoid(2 I)
        >>> spk, mem, b = ltc_step(torch.tensor([[0.0, 0.1, 1.0]]), z, z, z, gate, gate)
        >>> spk.tolist()
        [[0.0, 0.0, 1.0]]
    """
    cur, mem, state_m, kwargs = _before_step(cur, mem, b, spk, gain, reset_delay, kwargs)
    inert = _inert_adaptation(kwargs)
    if kwargs.get("reset_mechanism", "zero") in RESET_MECHANISMS and not torch.compiler.is_compiling():
        # both gates dense: the whole step as one node (fptt_ext.neurons.fused_dense), with
        # beta_a = 0 without the adaptation's backward, as below. Not under torch.compile, whose
        # compiled modular step is faster (docs/benchmarks.md section 9) and which cannot trace a
        # Function given one tensor as two inputs.
        rule = dense_step_rule(cur, state_m[0], mem, state_m[1], b, spk, gate_m, gate_adp, kwargs.get("b0", 0.1),
                               kwargs.get("spike_fn", _DEFAULT_SPIKE))
        if rule is not None:
            return fused_dense_ltc_step(cur, state_m[0], mem, state_m[1], b.detach() if inert else b, spk, gate_m,
                                        gate_adp, rule=rule, inert=inert,
                                        **{k: v for k, v in kwargs.items() if k != "spike_fn"})
    logit_m = gate_m(state_m[0], state_m[1])
    if not inert:
        return _gated_step(cur, mem, b, spk, logit_m, gate_adp(state_m[0], b), **kwargs)
    with torch.no_grad():
        logit_adp = gate_adp(state_m[0], b)
    spk, mem, b = _gated_step(cur, mem, b.detach(), spk, logit_m, logit_adp,
                              **{**kwargs, "detach_adaptation": True})
    return spk, mem, b.detach()


def _inert_adaptation(kwargs: dict) -> bool:
    """Whether the adaptation cannot reach the spikes: ``theta = b0 + beta_a b`` with ``beta_a = 0``
    (the authors' Add-task neuron).

    Then ``b`` is still updated (a state users may read) but without a graph: its gate's
    gradient and the gradient along ``spike -> b`` are exactly zero, so leaving them out
    changes no gradient and saves the gate's backward (two of the step's six backward
    matrix products). The returned ``b`` does not require grad.

    >>> _inert_adaptation({"beta_a": 0.0}), _inert_adaptation({})
    (True, False)
    """
    beta_a = kwargs.get("beta_a", 1.8)
    return _INERT_SHORTCUT[0] and isinstance(beta_a, (int, float)) and beta_a == 0 and torch.is_grad_enabled()


_INERT_SHORTCUT = [True]


@contextlib.contextmanager
def inert_adaptation_shortcut(enabled: bool = True):
    """Turn the ``beta_a = 0`` shortcut of :func:`ltc_step` off (``False``) inside a ``with`` block:
    the full graph, for benchmarks and tests (the numbers are the same either way).

    >>> with inert_adaptation_shortcut(False):
    ...     _inert_adaptation({"beta_a": 0.0})
    False
    """
    before, _INERT_SHORTCUT[0] = _INERT_SHORTCUT[0], bool(enabled)
    try:
        yield
    finally:
        _INERT_SHORTCUT[0] = before


def delayed_reset(mem: torch.Tensor, spk: torch.Tensor, b: torch.Tensor, *, b0: float | torch.Tensor = 0.1,
                  beta_a: float = 1.8, reset_mechanism: str = "zero", detach_reset: bool = False) -> torch.Tensor:
    """The reset of step t-1, applied at the start of step t: snnTorch's ``reset_delay=True``.

    ``mem`` is the membrane of step t-1 *before* its reset, ``spk`` and ``b`` that step's spike
    and adaptation, so the threshold it crossed was ``b0 + beta_a * b``. The result is the
    membrane after the reset, the ``u_{t-1}`` the next step starts from: the same as an
    immediate reset, one call later.

    Example:
        >>> import torch
        >>> mem, spk, b = torch.tensor([[0.3, 0.05]]), torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)
        >>> delayed_reset(mem, spk, b).tolist(), delayed_reset(mem, spk, b, reset_mechanism="subtract")
        ([[0.0, 0.05000000074505806]], tensor([[0.2000, 0.0500]]))
    """
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    gate = spk.detach() if detach_reset else spk
    if reset_mechanism == "zero":
        return mem * (1.0 - gate)
    if reset_mechanism == "subtract":
        return mem - gate * (b0 + beta_a * b)
    return mem


def _before_step(cur, mem, b, spk, gain, reset_delay, kwargs):
    """Apply a delayed reset and the input gain; returns what the gates see (in the papers' scale)."""
    if reset_delay:
        mem = delayed_reset(mem, spk, b, b0=kwargs.get("b0", 0.1), beta_a=kwargs.get("beta_a", 1.8),
                            reset_mechanism=kwargs.get("reset_mechanism", "zero"),
                            detach_reset=kwargs.get("detach_reset", False))
        kwargs = {**kwargs, "reset_mechanism": "none"}  # this step's reset waits for the next call
    if gain == 1.0:  # the papers' scale: nothing to convert (and bit-identical to it)
        return cur, mem, (cur, mem), kwargs
    # The gates see the current and the membrane in the papers' scale, whatever the gain:
    # their weights and biases then mean the same, and 20x larger inputs do not saturate them.
    return cur * gain, mem, (cur, mem / gain), kwargs


def _gated_step(cur, mem, b, spk, logit_m, logit_adp, **kwargs):
    """:func:`adaptive_step` from the gates' logits: fused sigmoids where the step is fused."""
    rule, dtype = _fusable(cur, mem, b, spk, logit_m, logit_adp, kwargs.get("b0", 0.1),
                           kwargs.get("spike_fn", _DEFAULT_SPIKE))
    if (rule is None or kwargs.get("reset_mechanism", "zero") not in RESET_MECHANISMS
            or logit_m.dtype != dtype or logit_adp.dtype != dtype):
        # (logits in a lower precision than the state: the plain path takes the sigmoids in the
        # logits' precision, and so does adaptive_step here, which still fuses the rest)
        return adaptive_step(cur, mem, b, spk, torch.sigmoid(logit_m), torch.sigmoid(logit_adp), **kwargs)
    kwargs.pop("spike_fn", None)
    cur, mem, b, spk = _promote(dtype, cur, mem, b, spk)
    return fused.fused_adaptive_step(cur, mem, b, spk, logit_m, logit_adp, rule=rule, logits=True, **kwargs)


def alif_step(
    cur: torch.Tensor,
    mem: torch.Tensor,
    b: torch.Tensor,
    spk: torch.Tensor,
    p_m: torch.Tensor,
    p_adp: torch.Tensor,
    *,
    gain: float = 1.0,
    reset_delay: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ALIF step: ``alpha = σ(p_m)`` and ``rho = σ(p_adp)`` are learned constants.

    ``gain`` and ``reset_delay`` as in :func:`ltc_step`.

    Example:
        >>> import torch
        >>> z = torch.zeros(1, 1)
        >>> spk, mem, b = alif_step(torch.ones(1, 1), z, z, z, p_m=torch.zeros(1), p_adp=torch.zeros(1))
        >>> spk.item(), mem.item()                       # alpha = 0.5: u = 0.5 > 0.1, fires, resets
        (1.0, 0.0)
    """
    cur, mem, _, kwargs = _before_step(cur, mem, b, spk, gain, reset_delay, kwargs)
    return _gated_step(cur, mem, b, spk, p_m, p_adp, **kwargs)


def _per_step_logits(gate: Gate, cur_seq: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """``logits(t, state)`` of ``gate`` over a known window: the input's share computed once for
    all steps where the gate can split it (``precompute``/``from_precomputed``: a
    :class:`~fptt_ext.neurons.gates.DenseGate`), else the gate called step by step."""
    if not hasattr(gate, "precompute") or not fused.fused_enabled():
        cur_steps = cur_seq.unbind(0)
        return lambda t, state: gate(cur_steps[t], state)
    # unbind once: indexing pre[t] at every step would make each step's backward fill a
    # zero tensor of the whole window (T^2 memory traffic per window)
    pre = gate.precompute(cur_seq).unbind(0)
    return lambda t, state: gate.from_precomputed(pre[t], state)


def ltc_multi_step(
    cur_seq: torch.Tensor,
    mem: torch.Tensor,
    b: torch.Tensor,
    spk: torch.Tensor,
    gate_m: Gate,
    gate_adp: Gate,
    *,
    store_v_seq: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`ltc_step` over a window of inputs known in advance, ``cur_seq`` ``[T, B, ...]``.

    A dense gate's share of the input (``W_cur I_t``) is one large product for the whole
    window instead of T small ones, and the per-step concatenation ``[I_t, state]`` is gone;
    each step adds the state's share (``addmm``) and runs the fused elementwise step. Same math as T calls of
    :func:`ltc_step`, up to the rounding of the split products. Keyword arguments are
    those of :func:`adaptive_step`. Returns ``(spk_seq, mem, b, spk, v_seq)``: the spikes
    ``[T, B, ...]``, the last states, and the membrane of every step if ``store_v_seq``
    (else ``None``).

    Example:
        >>> import torch
        >>> from fptt_ext.neurons.gates import DenseGate
        >>> g_m, g_adp, x, z = DenseGate(3), DenseGate(3), torch.rand(5, 2, 3), torch.zeros(2, 3)
        >>> spk_seq, mem, b, spk, _ = ltc_multi_step(x, z, z, z, g_m, g_adp)
        >>> state = (z, z, z)
        >>> for t in range(5):
        ...     s, m, bb = ltc_step(x[t], state[0], state[1], state[2], g_m, g_adp)
        ...     state = (m, bb, s)
        >>> torch.equal(spk, state[2]), torch.allclose(mem, state[0], atol=1e-6)
        (True, True)
    """
    logits_m = _per_step_logits(gate_m, cur_seq)
    inert = _inert_adaptation(kwargs)  # then b and its gate need no graph, as in ltc_step
    with torch.no_grad() if inert else contextlib.nullcontext():
        logits_adp = _per_step_logits(gate_adp, cur_seq)
    if inert:
        kwargs, b, adp = {**kwargs, "detach_adaptation": True}, b.detach(), logits_adp

        def logits_adp(t, state):
            with torch.no_grad():
                return adp(t, state)
    spikes, v_seq = [], []
    for t, cur in enumerate(cur_seq.unbind(0)):
        spk, mem, b = _gated_step(cur, mem, b, spk, logits_m(t, mem), logits_adp(t, b), **kwargs)
        b = b.detach() if inert else b
        spikes.append(spk)
        if store_v_seq:
            v_seq.append(mem)
    return torch.stack(spikes), mem, b, spk, torch.stack(v_seq) if store_v_seq else None


def li_multi_step(cur_seq: torch.Tensor, mem: torch.Tensor, gate_m: Gate) -> torch.Tensor:
    """:func:`li_step` over a known window ``cur_seq`` ``[T, B, ...]``; returns every step's output.

    >>> import torch
    >>> li_multi_step(torch.ones(2, 1, 2), torch.zeros(1, 2), lambda x, h: torch.zeros(2))[:, 0, 0].tolist()
    [0.5, 0.75]
    """
    logits = _per_step_logits(gate_m, cur_seq)
    out = []
    for t, cur in enumerate(cur_seq.unbind(0)):
        mem = mem + torch.sigmoid(logits(t, mem)) * (cur - mem)
        out.append(mem)
    return torch.stack(out)


def li_step(cur: torch.Tensor, mem: torch.Tensor, gate_m: Gate) -> torch.Tensor:
    """Leaky-integrator readout: ``o_t = o_{t-1} + σ(gate_m(I_t, o_{t-1})) * (I_t - o_{t-1})``.

    >>> import torch
    >>> li_step(torch.ones(1, 2), torch.zeros(1, 2), lambda x, h: torch.zeros(2))
    tensor([[0.5000, 0.5000]])
    """
    return mem + torch.sigmoid(gate_m(cur, mem)) * (cur - mem)
