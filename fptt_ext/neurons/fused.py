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
import functools
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .surrogate import MultiGaussian

__all__ = ["SpikeRule", "fused_adaptive_step", "fused_enabled", "once_differentiable_backward", "spike_rule",
           "use_fused"]

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


def _built(cached):
    # a rule builder, through its cache unless torch.compile traces the caller (Dynamo traces
    # through functools caches anyway, with a warning, and the traced closure is a new one)
    return cached.__wrapped__ if torch.compiler.is_compiling() else cached


# The rules are cached by their parameters: equal spike functions share one SpikeRule, built
# once (constants, closure, the 0-dim tensors of the multi-Gaussian) rather than every step.
@functools.cache
def _multi_gaussian_rule(sig: float, h: float, s: float, gamma: float) -> SpikeRule:
    # The closed form of surrogate.multi_gaussian_grad with x^2 computed once: with
    # q = x^2, the side Gaussians N(x; +-s, S) are exp(k1 q +- k2 x) times a constant
    # (exp(-s^2 / 2S^2) / (sqrt(2 pi) S)), and the centre one exp(k0 q) times another.
    # Ten vectorised kernels instead of about twenty (torch's cosh is not vectorised on CPU,
    # hence two exponentials for the sides). Each exponent, constant factor included, is one
    # addcmul: c exp(k q) = 2^(log2 c + k' q) with k' = k / ln 2. And exp2: torch's CPU exp2
    # takes 5.6 us on 128 x 128 here, its exp 14.3 us. It differs from the reference by
    # rounding only (tests/test_neurons_fused.py).
    wide = s * sig
    c0 = gamma * (1.0 + h) / (math.sqrt(2.0 * math.pi) * sig)
    c1 = gamma * h * math.exp(-0.5 / (s * s)) / (math.sqrt(2.0 * math.pi) * wide)
    k0, k1, k2 = (k / math.log(2.0) for k in (-0.5 / (sig * sig), -0.5 / (wide * wide), sig / (wide * wide)))
    log2_c0, log2_c1 = math.log2(c0), math.log2(c1)
    offsets = {}  # dtype -> (log2 c0, log2 c1) as 0-dim tensors, addcmul's broadcast first operand

    def backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # one generated loop anyway; no tensor constants in the graph
            q = x * x
            return ((q * k0 + log2_c0).exp2() - (q * k1 + x * k2 + log2_c1).exp2()
                    - (q * k1 - x * k2 + log2_c1).exp2()) * grad
        if x.dtype not in offsets:
            offsets[x.dtype] = tuple(torch.tensor(c, dtype=x.dtype) for c in (log2_c0, log2_c1))
        log_c0, log_c1 = offsets[x.dtype]
        centre = torch.addcmul(log_c0, x, x, value=k0).exp2_()
        t = torch.addcmul(log_c1, x, x, value=k1)
        right = torch.add(t, x, alpha=k2).exp2_()
        return centre.sub_(right).sub_(t.sub_(x, alpha=k2).exp2_()).mul_(grad)

    return SpikeRule(backward)


def _snntorch_rule(fn) -> SpikeRule | None:
    # snnTorch's surrogates are closures ``<name>.<locals>.inner`` around an autograd
    # Function; their parameters live in the closure.
    name = fn.__qualname__.split(".", 1)[0]
    try:
        params = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
    except ValueError:  # an empty cell
        return None
    try:
        return _built(_snntorch_rule_of)(name, tuple(sorted((k, float(v)) for k, v in params.items()
                                                    if k in ("slope", "alpha"))))
    except (TypeError, ValueError):
        return None


@functools.cache
def _snntorch_rule_of(name: str, items: tuple) -> SpikeRule | None:
    params = dict(items)
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
        return _built(_multi_gaussian_rule)(spike_fn.sigma, spike_fn.h, spike_fn.s, spike_fn.gamma)
    module = getattr(type(spike_fn), "__module__", "")
    if module == "spikingjelly.activation_based.surrogate":
        kind = type(spike_fn).__name__
        if kind in ("ATan", "Sigmoid") and spike_fn.spiking:
            # SpikingJelly's own closed-form backward; its forward is (x >= 0).to(x)
            try:
                return _built(_spikingjelly_rule)(type(spike_fn), tuple(sorted(spike_fn._sg_params.items())))
            except TypeError:  # a parameter that cannot be a cache key
                return None
        return None
    if getattr(spike_fn, "__module__", None) == "snntorch.surrogate" and hasattr(spike_fn, "__code__"):
        # (x > 0).float(): the same spikes only when the step computes in float32
        return _snntorch_rule(spike_fn) if x.dtype == torch.float32 else None
    return None


@functools.cache
def _spikingjelly_rule(cls, items: tuple) -> SpikeRule:
    params = dict(items)
    return SpikeRule(lambda g, v: cls.backward(g, v, **params))


def once_differentiable_backward(fn):
    """``torch.autograd.function.once_differentiable``, skipping its ``no_grad`` block where grad
    mode is already off: in every backward except one with ``create_graph=True``, which takes
    torch's decorator unchanged (an error if differentiated again). The block costs about 4.5 us
    per call (a trivial node's forward and backward: 45.2 us with torch's decorator, 40.7 us with
    this one; docs/benchmarks.md section 9).

    >>> class Double(torch.autograd.Function):
    ...     forward = staticmethod(lambda ctx, x: 2 * x)
    ...     backward = staticmethod(once_differentiable_backward(lambda ctx, g: 2 * g))
    >>> x = torch.ones(2, requires_grad=True)
    >>> Double.apply(x).sum().backward(); x.grad
    tensor([2., 2.])
    """
    with_graph = once_differentiable(fn)

    @functools.wraps(fn)
    def backward(ctx, *grads):
        return with_graph(ctx, *grads) if torch.is_grad_enabled() else fn(ctx, *grads)

    return backward


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    # a gate that broadcast over the batch (ALIF's constants) gets the summed gradient
    return grad if grad.shape == shape else grad.sum_to_size(shape)


def _state_update(cur, mem, b, spk, gate_m, gate_adp, b0, beta_a: float, reset: str, logits: bool):
    # the step before its spike: (alpha, rho, b_t, u, x = u - theta, theta or None)
    alpha = torch.sigmoid(gate_m) if logits else gate_m
    rho = torch.sigmoid(gate_adp) if logits else gate_adp
    b_new = torch.lerp(spk, b, rho)
    u = torch.lerp(mem, cur, alpha)
    if reset == "subtract":
        theta = torch.mul(b_new, beta_a).add_(b0)
        return alpha, rho, b_new, u, u - theta, theta
    return alpha, rho, b_new, u, torch.sub(u, b_new, alpha=beta_a).sub_(b0), None


def _spike_and_reset(u, x, theta, strict: bool, reset: str):
    # a comparison written straight into a float tensor: one vectorised kernel (6 us on
    # 128 x 256 here; heaviside 32 us, (x >= 0).to(dtype) 39 us)
    spk_new = (torch.gt if strict else torch.ge)(x, 0, out=torch.empty_like(x))
    if reset == "zero":
        return spk_new, torch.addcmul(u, u, spk_new, value=-1.0)  # exact: u - u = 0 where it fires
    if reset == "subtract":
        return spk_new, torch.addcmul(u, spk_new, theta, value=-1.0)
    return spk_new, u


def _backward(g_spk, g_mem, g_b, alpha, rho, x, kept, spk_new, cur, mem, b, spk, *, rule, reset, beta_a,
              detach_adaptation, logits, need, b0_grad):
    # the closed-form gradient of the step; terms of absent output gradients and of inputs
    # that need none are skipped. Returns the gradients of (cur, mem, b, spk, gate_m, gate_adp, b0).
    # through the reset: into u, into -theta (subtract) and into the spike (unless detached);
    # carried as the gradient of -theta = x - u, which the surrogate's gradient already is
    g_u = g_neg_theta = None
    if g_mem is not None:
        if reset == "zero":
            g_u = torch.addcmul(g_mem, g_mem, spk_new, value=-1.0)  # g_mem (1 - s_t)
        elif reset == "subtract":
            g_neg_theta = g_mem * spk_new
        if kept is not None:
            g_spk = -(g_mem * kept) if g_spk is None else torch.addcmul(g_spk, g_mem, kept, value=-1.0)
    # the spike s_t = H(x), x = u - theta, with the surrogate derivative
    if g_spk is not None:
        g_x = rule.backward(g_spk, x)
        g_u = g_x if g_u is None and g_mem is None else (g_u if g_u is not None else g_mem) + g_x
        g_neg_theta = g_x if g_neg_theta is None else g_neg_theta.add_(g_x)
    elif g_u is None:
        g_u = g_mem
    # theta = b0 + beta_a * b_new
    g_b0 = g_neg_theta.sum().neg_() if b0_grad and g_neg_theta is not None else None  # a learned threshold
    if g_neg_theta is not None:
        g_b = torch.mul(g_neg_theta, -beta_a) if g_b is None else torch.add(g_b, g_neg_theta, alpha=-beta_a)
    # u = mem + alpha (cur - mem)
    g_cur = g_mem_in = g_gm = None
    if g_u is not None:
        if need[0] or need[1]:
            g_cur = g_u * alpha
            g_mem_in = g_u - g_cur if need[1] else None
        if need[4]:
            g_gm = _sum_to(torch.sub(cur, mem).mul_(g_u), alpha.shape)
            g_gm = torch.ops.aten.sigmoid_backward(g_gm, alpha) if logits else g_gm
    # b_new = rho b + (1 - rho) spk
    g_b_in = g_spk_in = g_ga = None
    if g_b is not None:
        if need[2] or need[3]:
            g_b_in = g_b * rho
            if need[3] and not detach_adaptation:
                g_spk_in = g_b - g_b_in
        if need[5]:
            g_ga = _sum_to(torch.sub(b, spk).mul_(g_b), rho.shape)
            g_ga = torch.ops.aten.sigmoid_backward(g_ga, rho) if logits else g_ga
    return g_cur if need[0] else None, g_mem_in, g_b_in if need[2] else None, g_spk_in, g_gm, g_ga, g_b0


def _kept(u, theta, reset: str, detach_reset: bool):
    # the reset's gradient into the spike needs u (zero) or theta (subtract)
    return None if detach_reset or reset == "none" else u if reset == "zero" else theta


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
        need = ctx.needs_input_grad
        ctx.config = {"rule": rule, "reset": reset, "beta_a": beta_a, "detach_adaptation": detach_adaptation,
                      "logits": logits, "need": tuple(need), "b0_grad": need[6]}
        ctx.set_materialize_grads(False)  # an output without gradient (FPTT: mem, b) costs nothing
        alpha, rho, b_new, u, x, theta = _state_update(cur, mem, b, spk, gate_m, gate_adp, b0, beta_a, reset,
                                                       logits)
        spk_new, mem_new = _spike_and_reset(u, x, theta, rule.strict, reset)
        ctx.save_for_backward(alpha, rho, x, _kept(u, theta, reset, detach_reset), spk_new,
                              cur if need[4] else None, mem if need[4] else None,
                              b if need[5] else None, spk if need[5] else None)
        return spk_new, mem_new, b_new

    @staticmethod
    @once_differentiable_backward
    def backward(ctx, g_spk, g_mem, g_b):
        grads = _backward(g_spk, g_mem, g_b, *ctx.saved_tensors, **ctx.config)
        return (*grads, None, None, None, None, None, None)


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
