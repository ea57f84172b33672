"""A fused adaptive spiking step: one autograd node with a hand-derived backward.

:func:`fptt_ext.neurons.functional.adaptive_step` written op by op records a dozen autograd
nodes per neuron layer and step, each saving its inputs, and its backward runs two dozen
small kernels (the multi-Gaussian surrogate alone is about twenty). Here the elementwise
part of the step - the gates' sigmoids, adaptation, threshold, membrane update, spike and
reset - is one :class:`torch.autograd.Function`: a forward of eight kernels (``lerp``,
``ge``, ``addcmul``) that records no graph, and the closed-form gradient as its
backward, with terms skipped when an output got no gradient or an input needs none. It is
the same math as the plain path; the two round differently in the last bit.

:func:`spike_rule` says whether a spike function is one whose forward and derivative are
known here: the package's :class:`~fptt_ext.neurons.surrogate.MultiGaussian`, snnTorch's
``surrogate.fast_sigmoid()``, ``atan()``, ``sigmoid()`` and ``straight_through_estimator()``
(float32 input: they return ``.float()`` spikes), and SpikingJelly's ``surrogate.ATan()`` and
``Sigmoid()`` in spiking mode. Any other callable gets ``None`` and the plain path
(:mod:`~fptt_ext.neurons.functional` decides; the adapters need not know).

:func:`use_fused` turns the fused path off and on (for benchmarks and tests);
``FPTT_EXT_FUSED=0`` in the environment starts with it off.

Example:
    >>> import torch
    >>> from fptt_ext.neurons.surrogate import MultiGaussian
    >>> z = torch.zeros(1, 2)
    >>> rule = spike_rule(MultiGaussian(), z)
    >>> cur = torch.tensor([[0.5, 0.1]], requires_grad=True)
    >>> spk, mem, b = fused_adaptive_step(cur, z, z, z, torch.zeros(2), torch.zeros(2), rule=rule,
    ...                                   b0=0.1, beta_a=1.8)
    >>> spk.tolist(), mem.tolist()                       # alpha = sigmoid(0) = 0.5: 0.25 fires, 0.05 not
    ([[1.0, 0.0]], [[0.0, 0.05000000074505806]])
    >>> spk.grad_fn.name()
    'FusedAdaptiveStepBackward'
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .surrogate import MultiGaussian

__all__ = ["SpikeRule", "fused_adaptive_step", "fused_enabled", "spike_rule", "use_fused"]

_enabled = os.environ.get("FPTT_EXT_FUSED", "1") != "0"


def fused_enabled() -> bool:
    """Whether :mod:`~fptt_ext.neurons.functional` uses the fused step where it can.

    >>> fused_enabled()
    True
    """
    return _enabled


@contextlib.contextmanager
def use_fused(enabled: bool = True):
    """Turn the fused step on or off inside a ``with`` block (the plain path is the reference).

    >>> with use_fused(False):
    ...     fused_enabled()
    False
    >>> fused_enabled()
    True
    """
    global _enabled
    before, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = before


class SpikeRule(NamedTuple):
    """A spike function's forward and derivative, as the fused step needs them.

    ``backward(grad, x)`` returns ``grad * dS/dx``; ``strict`` means ``S = x > 0``
    (snnTorch) rather than ``x >= 0``.

    >>> import torch
    >>> ste = SpikeRule(lambda grad, x: grad, strict=True)     # a straight-through estimator
    >>> ste.backward(torch.ones(2), torch.zeros(2)), ste.strict
    (tensor([1., 1.]), True)
    """

    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    strict: bool = False


def _multi_gaussian_backward(fn: MultiGaussian):
    # The closed form of surrogate.multi_gaussian_grad with x^2 computed once: with
    # q = x^2, the side Gaussians N(x; +-s, S) are exp(k1 q +- k2 x) times a constant
    # (exp(-s^2 / 2S^2) / (sqrt(2 pi) S)), and the centre one exp(k0 q) times another.
    # Twelve vectorised kernels instead of about twenty (torch's cosh is not vectorised on
    # CPU, hence two exps); it differs from the reference by rounding only
    # (tests/test_neurons_fused.py).
    sig, h, s, gamma = fn.sigma, fn.h, fn.s, fn.gamma
    wide = s * sig
    c0 = gamma * (1.0 + h) / (math.sqrt(2.0 * math.pi) * sig)
    c1 = gamma * h * math.exp(-0.5 / (s * s)) / (math.sqrt(2.0 * math.pi) * wide)
    k0, k1, k2 = -0.5 / (sig * sig), -0.5 / (wide * wide), sig / (wide * wide)

    def backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = x * x
        t = q * k1
        side = torch.add(t, x, alpha=k2).exp_().add_(t.add_(x, alpha=-k2).exp_())
        return q.mul_(k0).exp_().mul_(c0).sub_(side, alpha=c1).mul_(grad)

    return backward


def _snntorch_rule(fn) -> SpikeRule | None:
    # snnTorch's surrogates are closures ``<name>.<locals>.inner`` around an autograd
    # Function; their parameters live in the closure.
    name = fn.__qualname__.split(".", 1)[0]
    try:
        params = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
    except ValueError:  # an empty cell
        return None
    if name == "fast_sigmoid" and "slope" in params:
        slope = float(params["slope"])
        return SpikeRule(lambda g, x: g / (slope * x.abs() + 1.0).square_(), strict=True)
    if name == "atan" and "alpha" in params:
        a = float(params["alpha"])
        return SpikeRule(lambda g, x: g * (a / 2) / (x * (math.pi / 2 * a)).square_().add_(1.0), strict=True)
    if name == "sigmoid" and "slope" in params:
        k = float(params["slope"])
        return SpikeRule(lambda g, x: torch.ops.aten.sigmoid_backward(g * k, torch.sigmoid(x * k)), strict=True)
    if name == "straight_through_estimator":
        return SpikeRule(lambda g, x: g, strict=True)
    return None


def spike_rule(spike_fn, x: torch.Tensor) -> SpikeRule | None:
    """The :class:`SpikeRule` of ``spike_fn`` for input like ``x``, or ``None`` (plain path).

    >>> import torch, snntorch.surrogate
    >>> x = torch.zeros(2)
    >>> spike_rule(MultiGaussian(), x).strict, spike_rule(snntorch.surrogate.atan(), x).strict
    (False, True)
    >>> spike_rule(snntorch.surrogate.atan(), x.double()) is None     # snnTorch spikes are float32
    True
    >>> spike_rule(lambda v: (v > 0).float(), x) is None              # unknown: the plain path
    True
    """
    if type(spike_fn) is MultiGaussian:
        return SpikeRule(_multi_gaussian_backward(spike_fn))
    module = getattr(type(spike_fn), "__module__", "")
    if module == "spikingjelly.activation_based.surrogate":
        kind = type(spike_fn).__name__
        if kind in ("ATan", "Sigmoid") and spike_fn.spiking:
            # SpikingJelly's own closed-form backward; its forward is (x >= 0).to(x)
            return SpikeRule(lambda g, v: type(spike_fn).backward(g, v, **spike_fn._sg_params))
        return None
    if getattr(spike_fn, "__module__", None) == "snntorch.surrogate" and hasattr(spike_fn, "__code__"):
        # (x > 0).float(): the same spikes only when the step computes in float32
        return _snntorch_rule(spike_fn) if x.dtype == torch.float32 else None
    return None


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # a gate or threshold that broadcast over the batch (ALIF's constants) gets the summed gradient
    return grad if grad.shape == like.shape else grad.sum_to_size(like.shape)


class FusedAdaptiveStep(torch.autograd.Function):
    """The elementwise part of :func:`~fptt_ext.neurons.functional.adaptive_step` as one node.

    Inputs ``cur, mem, b, spk`` (same shape), ``gate_m, gate_adp`` (sigmoid logits if
    ``logits``, else ``alpha`` and ``rho``; tensors broadcastable to ``cur``), ``b0`` (a
    number or a 0-dim tensor, which may be learned).

    Forward, eight kernels for the zero reset where the op-by-op path runs seventeen::

        b_t = lerp(s_{t-1}, b_{t-1}, rho)            # rho b + (1 - rho) s
        u   = lerp(u_{t-1}, I_t, alpha)              # u + alpha (I - u)
        x   = u - beta_a b_t - b0                    # u - theta
        s_t = x >= 0                                 # x > 0 for snnTorch's surrogates
        u_t = u - u s_t  |  u - s_t theta  |  u      # reset zero | subtract | none

    the same math as the plain path, rounded differently in the last bit (so a neuron within
    about 1e-7 of its threshold may fire on one path and not the other). Saved for backward:
    ``alpha``, ``rho``, ``x``, ``u`` (zero reset, reset not detached), the new spike, and the
    inputs (``cur, mem, b, spk``, which the caller holds anyway); nothing else is allocated.
    """

    @staticmethod
    def forward(ctx, cur, mem, b, spk, gate_m, gate_adp, b0, beta_a, rule, reset, detach_reset,
                detach_adaptation, logits):
        alpha = torch.sigmoid(gate_m) if logits else gate_m
        rho = torch.sigmoid(gate_adp) if logits else gate_adp
        b_new = torch.lerp(spk, b, rho)
        u = torch.lerp(mem, cur, alpha)
        if reset == "subtract":
            theta = torch.mul(b_new, beta_a).add_(b0)
            x = u - theta
        else:
            x = torch.sub(u, b_new, alpha=beta_a).sub_(b0)
        # a comparison written straight into a float tensor: one vectorised kernel (6 us on
        # 128 x 256 here; heaviside 32 us, (x >= 0).to(dtype) 39 us)
        spk_new = (torch.gt if rule.strict else torch.ge)(x, 0, out=torch.empty_like(x))
        if reset == "zero":
            mem_new = torch.addcmul(u, u, spk_new, value=-1.0)  # exact: u - u = 0 where it fires
        elif reset == "subtract":
            mem_new = torch.addcmul(u, spk_new, theta, value=-1.0)
        else:
            mem_new = u
        need = ctx.needs_input_grad
        ctx.rule, ctx.reset, ctx.beta_a = rule, reset, beta_a
        ctx.detach_reset, ctx.detach_adaptation, ctx.logits, ctx.b0_grad = (detach_reset, detach_adaptation,
                                                                            logits, need[6])
        # the reset's gradient into the spike needs u (zero) or theta (subtract)
        kept = None if detach_reset or reset == "none" else u if reset == "zero" else theta
        ctx.save_for_backward(alpha, rho, x, kept, spk_new,
                              cur if need[4] else None, mem if need[4] else None,
                              b if need[5] else None, spk if need[5] else None)
        ctx.set_materialize_grads(False)  # an output without gradient (FPTT: mem, b) costs nothing
        return spk_new, mem_new, b_new

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spk, g_mem, g_b):
        alpha, rho, x, kept, spk_new, cur, mem, b, spk = ctx.saved_tensors
        need = ctx.needs_input_grad
        # through the reset: into u, into theta (subtract) and into the spike (unless detached)
        g_u = g_theta = None
        if g_mem is not None:
            if ctx.reset == "zero":
                g_u = torch.addcmul(g_mem, g_mem, spk_new, value=-1.0)  # g_mem (1 - s_t)
            elif ctx.reset == "subtract":
                g_theta = -(g_mem * spk_new)
            if kept is not None:
                g_spk = -(g_mem * kept) if g_spk is None else torch.addcmul(g_spk, g_mem, kept, value=-1.0)
        # the spike s_t = H(x), x = u - theta, with the surrogate derivative
        if g_spk is not None:
            g_x = ctx.rule.backward(g_spk, x)
            g_u = g_x if g_u is None and g_mem is None else (g_u if g_u is not None else g_mem) + g_x
            g_theta = -g_x if g_theta is None else g_theta.sub_(g_x)
        elif g_u is None:
            g_u = g_mem
        # theta = b0 + beta_a * b_new
        g_b0 = g_theta.sum() if ctx.b0_grad and g_theta is not None else None  # a learned threshold
        if g_theta is not None:
            g_b = g_theta.mul_(ctx.beta_a) if g_b is None else torch.add(g_b, g_theta, alpha=ctx.beta_a)
        # u = mem + alpha (cur - mem)
        g_cur = g_mem_in = g_gm = None
        if g_u is not None:
            if need[0] or need[1]:
                g_cur = g_u * alpha
                g_mem_in = g_u - g_cur if need[1] else None
            if need[4]:
                g_gm = _sum_to(torch.sub(cur, mem).mul_(g_u), alpha)
                g_gm = torch.ops.aten.sigmoid_backward(g_gm, alpha) if ctx.logits else g_gm
        # b_new = rho b + (1 - rho) spk
        g_b_in = g_spk_in = g_ga = None
        if g_b is not None:
            if need[2] or need[3]:
                g_b_in = g_b * rho
                if need[3] and not ctx.detach_adaptation:
                    g_spk_in = g_b - g_b_in
            if need[5]:
                g_ga = _sum_to(torch.sub(b, spk).mul_(g_b), rho)
                g_ga = torch.ops.aten.sigmoid_backward(g_ga, rho) if ctx.logits else g_ga
        return (g_cur if need[0] else None, g_mem_in, g_b_in if need[2] else None, g_spk_in, g_gm, g_ga, g_b0,
                None, None, None, None, None, None)


def fused_adaptive_step(cur, mem, b, spk, gate_m, gate_adp, *, rule: SpikeRule, b0=0.1, beta_a=1.8,
                        reset_mechanism="zero", detach_reset=False, detach_adaptation=False, logits=True):
    """One adaptive step through :class:`FusedAdaptiveStep`; returns ``(spk, mem, b)``.

    ``gate_m``/``gate_adp`` are the gates' logits (``logits=True``: the sigmoid is fused)
    or ``alpha``/``rho``. Callers check the conditions (:func:`spike_rule`, equal state
    shapes and dtypes); :func:`fptt_ext.neurons.functional.adaptive_step` does.

    >>> import torch
    >>> z = torch.zeros(1, 1)
    >>> rule = spike_rule(MultiGaussian(), z)
    >>> fused_adaptive_step(torch.ones(1, 1), z, z, z, torch.tensor(0.5), torch.tensor(0.9), rule=rule,
    ...                     logits=False)[0]
    tensor([[1.]])
    """
    return FusedAdaptiveStep.apply(cur, mem, b, spk, gate_m, gate_adp, b0, float(beta_a), rule, reset_mechanism,
                                   bool(detach_reset), bool(detach_adaptation), logits)
