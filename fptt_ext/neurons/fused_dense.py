"""The LTC-SN step with both dense gates inside one autograd node.

With :class:`~fptt_ext.neurons.gates.DenseGate` gates, an LTC-SN step is two concatenations,
two ``addmm`` and the fused elementwise step (:mod:`fptt_ext.neurons.fused`): five autograd
nodes, two of them ``Linear`` backwards that form the input gradient of the whole
concatenation ``[I_t, state]``, and a gradient of ``I_t`` summed from three places by the
engine. Here the step is one node whose backward forms exactly what is needed:

* ``g_I = g_I(elementwise) + g_m W_m[:, :N] + g_adp W_adp[:, :N]`` as a chain of two ``addmm``;
* the states' shares ``g_m W_m[:, N:]`` and ``g_adp W_adp[:, N:]`` only for a state that
  needs a gradient: none with FPTT at K = 1 and TBPTT-1, where the states are detached;
* ``W^T`` gradients and bias sums as ``Linear`` computes them.

With ``inert=True`` (``beta_a = 0``, the authors' Add-task neuron: ``b`` cannot reach the
spikes) the adaptation gate and ``b`` take no part in the backward at all: no gradient for
``b``, the gate's weights or the previous spike through ``b``, and ``b`` comes out without a
graph, as :func:`~fptt_ext.neurons.functional.ltc_step`'s shortcut for that case does with the
modular step.

The forward is the modular path's, operation for operation (bit for bit the same spikes,
states and logits); gradients agree with it to rounding (``tests/test_neurons_fused.py``).
:func:`fptt_ext.neurons.functional.ltc_step` takes this path when both gates are exactly
``DenseGate`` and the elementwise step can be fused (:func:`dense_step_rule`).

Example:
    >>> import torch
    >>> from fptt_ext.neurons.gates import DenseGate
    >>> from fptt_ext.neurons.functional import ltc_step
    >>> g_m, g_adp, cur, z = DenseGate(3), DenseGate(3), torch.rand(2, 3, requires_grad=True), torch.zeros(2, 3)
    >>> spk, mem, b = ltc_step(cur, z, z, z, g_m, g_adp)
    >>> spk.grad_fn.name()
    'FusedDenseLTCStepBackward'
"""

from __future__ import annotations

import torch

from .fused import (
    SpikeRule,
    _backward,
    _kept,
    _spike_and_reset,
    _state_update,
    fused_enabled,
    once_differentiable_backward,
    spike_rule,
)
from .gates import DenseGate, _add_mm, _concat_linear, _param_grads

__all__ = ["FusedDenseLTCStep", "dense_step_rule", "fused_dense_ltc_step"]


def dense_step_rule(cur, gate_cur, mem, gate_mem, b, spk, gate_m, gate_adp, b0, spike_fn) -> SpikeRule | None:
    """The spike rule if :class:`FusedDenseLTCStep` computes this step, else ``None``.

    It does when both gates are exactly ``DenseGate`` (with bias), every tensor is 2-D of one
    floating dtype and shape, ``b0`` is a number or a 0-dim tensor, the spike function is one
    the fused step knows, and autocast is off (it casts ``nn.Linear``'s operands, not a
    Function's).

    >>> import torch
    >>> from fptt_ext.neurons.surrogate import MultiGaussian
    >>> z = torch.zeros(2, 3)
    >>> dense_step_rule(z, z, z, z, z, z, DenseGate(3), DenseGate(3), 0.1, MultiGaussian()) is not None
    True
    >>> dense_step_rule(z, z, z, z, z, z, DenseGate(3), lambda c, s: c, 0.1, MultiGaussian()) is None
    True
    """
    if not (type(gate_m) is DenseGate and type(gate_adp) is DenseGate and fused_enabled()):
        return None
    if gate_m.bias is None or gate_adp.bias is None or torch.is_autocast_enabled(cur.device.type):
        return None
    if isinstance(b0, torch.Tensor) and b0.dim() != 0:
        return None
    shape, dtype = cur.shape, cur.dtype
    if len(shape) != 2 or not dtype.is_floating_point:
        return None
    for t in (gate_cur, mem, gate_mem, b, spk):
        if t.shape != shape or t.dtype != dtype:
            return None
    for w in (gate_m.weight, gate_m.bias, gate_adp.weight, gate_adp.bias):
        if w.dtype != dtype:
            return None
    return spike_rule(spike_fn, cur)


class FusedDenseLTCStep(torch.autograd.Function):
    """An LTC-SN step with dense gates as one node (see the module's docstring).

    Inputs: ``cur`` (the elementwise step's current), ``gate_cur`` (the gates' current, or
    ``None`` for ``cur`` itself: they differ where ``ltc_step``'s ``gain`` scales the current),
    ``mem`` and ``gate_mem`` (likewise), ``b``, ``spk``, both gates' weights and biases,
    ``b0``; then the elementwise step's settings and ``inert`` (see the module's docstring).
    (``None`` rather than the same tensor twice: Dynamo cannot trace a Function given one tensor
    as two inputs.)

    >>> import torch
    >>> from fptt_ext.neurons.surrogate import MultiGaussian
    >>> g_m, g_adp, z = DenseGate(2), DenseGate(2), torch.zeros(1, 2)
    >>> cur = torch.ones(1, 2, requires_grad=True)
    >>> rule = dense_step_rule(cur, cur, z, z, z, z, g_m, g_adp, 0.1, MultiGaussian())
    >>> spk, mem, b = FusedDenseLTCStep.apply(cur, None, z, None, z, z, g_m.weight, g_m.bias, g_adp.weight,
    ...                                       g_adp.bias, 0.1, 1.8, rule, "zero", False, False, False)
    >>> spk.sum().backward(); cur.grad.shape, g_m.weight.grad.shape
    (torch.Size([1, 2]), torch.Size([2, 4]))
    """

    @staticmethod
    def forward(ctx, cur, gate_cur, mem, gate_mem, b, spk, w_m, bias_m, w_adp, bias_adp, b0, beta_a, rule, reset,
                detach_reset, detach_adaptation, inert=False):
        ctx.set_materialize_grads(False)  # an output without gradient (FPTT: mem, b) costs nothing
        ctx.same_cur, ctx.same_mem = gate_cur is None, gate_mem is None
        gate_cur = cur if gate_cur is None else gate_cur
        gate_mem = mem if gate_mem is None else gate_mem
        x_m, logit_m = _concat_linear(gate_cur, gate_mem, w_m, bias_m)
        x_adp, logit_adp = _concat_linear(gate_cur, b, w_adp, bias_adp)
        alpha, rho, b_new, u, x, theta = _state_update(cur, mem, b, spk, logit_m, logit_adp, b0, beta_a, reset, True)
        spk_new, mem_new = _spike_and_reset(u, x, theta, rule.strict, reset)
        # (as if the gates' current and membrane were inputs of their own where they are cur and mem)
        need = list(ctx.needs_input_grad)
        need[1], need[3] = need[0] if ctx.same_cur else need[1], need[2] if ctx.same_mem else need[3]
        if inert:  # nothing flows through b or the adaptation gate
            need[4] = need[8] = need[9] = False
            ctx.mark_non_differentiable(b_new)
        ctx.need = need
        need_m = need[1] or need[3] or need[6] or need[7]  # does logit_m need a gradient?
        need_adp = not inert and (need[1] or need[4] or need[8] or need[9])
        ctx.config = {"rule": rule, "reset": reset, "beta_a": beta_a, "detach_adaptation": detach_adaptation,
                      "logits": True, "need": (need[0], need[2], need[4], need[5], need_m, need_adp, need[10]),
                      "b0_grad": need[10]}
        ctx.n = gate_cur.shape[-1]
        ctx.save_for_backward(alpha, rho, x, _kept(u, theta, reset, detach_reset), spk_new,
                              cur if need_m else None, mem if need_m else None,
                              b if need_adp else None, spk if need_adp else None,
                              x_m if need[6] else None, x_adp if need[8] else None,
                              w_m if need[1] or need[3] else None, w_adp if need[1] or need[4] else None)
        return spk_new, mem_new, b_new

    @staticmethod
    @once_differentiable_backward
    def backward(ctx, g_spk, g_mem, g_b):
        *saved, x_m, x_adp, w_m, w_adp = ctx.saved_tensors
        need, n = ctx.need, ctx.n
        g_cur, g_mem_in, g_b_in, g_spk_in, g_lm, g_la, g_b0 = _backward(g_spk, g_mem, g_b, *saved, **ctx.config)
        # the gates' input current: one chain of addmm onto the elementwise gradient where it is the same tensor
        g_gate_cur = None
        if need[1]:
            acc = g_cur if ctx.same_cur else None
            for g, w in ((g_lm, w_m), (g_la, w_adp)):
                if g is not None:
                    acc = _add_mm(acc, g, w[:, :n])
            g_cur, g_gate_cur = (acc, None) if ctx.same_cur else (g_cur, acc)
        # the states' shares: only for a state with a graph (not with FPTT at K = 1 or TBPTT-1)
        g_gate_mem = None
        if need[3] and g_lm is not None:
            if ctx.same_mem:
                g_mem_in = _add_mm(g_mem_in, g_lm, w_m[:, n:])
            else:
                g_gate_mem = g_lm.mm(w_m[:, n:])
        if need[4] and g_la is not None:
            g_b_in = _add_mm(g_b_in, g_la, w_adp[:, n:])
        return (g_cur if need[0] else None, g_gate_cur, g_mem_in if need[2] else None, g_gate_mem, g_b_in,
                g_spk_in, *_param_grads(g_lm, x_m, need[6], need[7]), *_param_grads(g_la, x_adp, need[8], need[9]),
                g_b0, None, None, None, None, None, None)


def fused_dense_ltc_step(cur, gate_cur, mem, gate_mem, b, spk, gate_m: DenseGate, gate_adp: DenseGate, *,
                         rule: SpikeRule, b0=0.1, beta_a=1.8, reset_mechanism="zero", detach_reset=False,
                         detach_adaptation=False, inert=False):
    """One LTC-SN step through :class:`FusedDenseLTCStep`; returns ``(spk, mem, b)``.

    Callers check the conditions with :func:`dense_step_rule`;
    :func:`fptt_ext.neurons.functional.ltc_step` does. ``inert=True`` (for ``beta_a = 0`` only):
    the adaptation takes no part in the backward, and ``b`` is returned without a graph.

    >>> import torch
    >>> from fptt_ext.neurons.surrogate import MultiGaussian
    >>> z, g_m, g_adp = torch.zeros(1, 2), DenseGate(2), DenseGate(2)
    >>> rule = dense_step_rule(z, z, z, z, z, z, g_m, g_adp, 0.1, MultiGaussian())
    >>> fused_dense_ltc_step(torch.ones(1, 2), torch.ones(1, 2), z, z, z, z, g_m, g_adp, rule=rule)[0].shape
    torch.Size([1, 2])
    """
    return FusedDenseLTCStep.apply(cur, None if gate_cur is cur else gate_cur, mem,
                                   None if gate_mem is mem else gate_mem, b, spk, gate_m.weight, gate_m.bias,
                                   gate_adp.weight, gate_adp.bias, b0, float(beta_a), rule, reset_mechanism,
                                   bool(detach_reset), bool(detach_adaptation or inert), bool(inert))
