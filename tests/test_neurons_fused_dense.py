"""The LTC-SN step with its dense gates inside one node (fptt_ext.neurons.fused_dense).

Against the modular path (the gates called as modules, then the fused elementwise step), with
the same weights: the same spikes, states and logits bit for bit, and every gradient (input
current, states, gate weights and biases, a learned threshold) to float64 rounding, over
several steps of BPTT (states with a graph) and of TBPTT-1 (states detached), for every reset,
``detach_reset`` / ``detach_adaptation``, snnTorch's scale (``gain``, ``reset_delay``) and the
surrogates the fused step knows. ``gradcheck`` with a zero surrogate checks the closed form.
"""

from __future__ import annotations

import itertools

import pytest
import snntorch.surrogate as snn_surrogate
import torch

import fptt_ext
from fptt_ext.neurons import functional
from fptt_ext.neurons.fused import SpikeRule
from fptt_ext.neurons.fused_dense import FusedDenseLTCStep, dense_step_rule
from fptt_ext.neurons.gates import DenseGate
from fptt_ext.neurons.surrogate import MultiGaussian


class _ModularGate(DenseGate):
    """A DenseGate the dense step does not take: the modular path, with the same weights."""


def _gates(n: int, modular: bool, dtype=torch.float64):
    torch.manual_seed(1)
    cls = _ModularGate if modular else DenseGate
    return cls(n).to(dtype), cls(n).to(dtype)


def _run(modular: bool, *, steps=5, detach_each_step=False, b0_learned=False, spike_fn=None, **kw):
    g_m, g_adp = _gates(4, modular)
    torch.manual_seed(2)
    w_in = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    xs = 0.6 * torch.rand(steps, 2, 3, dtype=torch.float64) @ w_in + 0.2
    b0 = torch.nn.Parameter(torch.tensor(0.1, dtype=torch.float64)) if b0_learned else 0.1
    z = torch.zeros(2, 4, dtype=torch.float64)
    state, spikes, loss = (z, z, z), [], 0.0
    for t, x in enumerate(xs):
        s, m, b = functional.ltc_step(x, *state, g_m, g_adp, b0=b0, spike_fn=spike_fn or MultiGaussian(), **kw)
        spikes.append(s)
        loss = loss + (s * (t + 1)).sum() + 0.3 * m.square().sum() + 0.2 * b.sum()
        state = (m, b, s)
        if detach_each_step:
            state = tuple(v.detach() for v in state)
    wrt = [w_in, *g_m.parameters(), *g_adp.parameters()] + ([b0] if b0_learned else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return torch.stack(spikes), state, grads, spikes[-1].grad_fn.name()


@pytest.mark.parametrize("detach_each_step", [False, True])
@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_dense_step_equals_the_modular_path(detach_each_step, reset):
    for detach_reset, detach_adaptation, gain, reset_delay in itertools.product(
            (False, True), (False, True), (1.0, 4.0), (False, True)):
        kw = {"reset_mechanism": reset, "detach_reset": detach_reset, "detach_adaptation": detach_adaptation,
              "gain": gain, "reset_delay": reset_delay}
        spk_a, state_a, grads_a, node_a = _run(True, detach_each_step=detach_each_step, b0_learned=True, **kw)
        spk_b, state_b, grads_b, node_b = _run(False, detach_each_step=detach_each_step, b0_learned=True, **kw)
        assert node_a == "FusedAdaptiveStepBackward" and node_b == "FusedDenseLTCStepBackward"
        assert spk_a.sum() > 0 and (spk_a == 0).any()
        assert torch.equal(spk_a, spk_b), kw
        for a, b in zip(state_a, state_b):
            assert torch.equal(a, b), kw
        for i, (a, b) in enumerate(zip(grads_a, grads_b)):
            assert (a is None) == (b is None), (i, kw)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=lambda m, i=i, kw=kw: f"{i} {kw}: {m}")


@pytest.mark.parametrize("spike_fn", [MultiGaussian(sigma=0.5, h=0.3, s=3.0, gamma=1.0),
                                      snn_surrogate.fast_sigmoid(slope=10)])
def test_dense_step_with_other_surrogates(spike_fn):
    # snnTorch's surrogates fuse in float32 only: there the dense step runs in float32 too
    if getattr(spike_fn, "__module__", "") == "snntorch.surrogate":
        g_m, g_adp = DenseGate(4), DenseGate(4)
        z = torch.zeros(2, 4)
        assert dense_step_rule(z, z, z, z, z, z, g_m, g_adp, 0.1, spike_fn) is not None
        assert dense_step_rule(*(t.double() for t in (z,) * 6), g_m.double(), g_adp.double(), 0.1, spike_fn) is None
        return
    spk_a, _, grads_a, _ = _run(True, spike_fn=spike_fn)
    spk_b, _, grads_b, node = _run(False, spike_fn=spike_fn)
    assert node == "FusedDenseLTCStepBackward" and torch.equal(spk_a, spk_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("same", [True, False])
def test_gradcheck_float64(same):
    # a zero surrogate makes the step piecewise smooth, so finite differences check the gates'
    # products, the states' shares and the elementwise paths; `same`: the elementwise current and
    # membrane are the gates' too (gain 1, passed as None), else the gates get tensors of their own
    zero = SpikeRule(lambda g, x: torch.zeros_like(x))
    torch.manual_seed(0)
    g_m, g_adp = DenseGate(3).double(), DenseGate(3).double()

    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, dtype=torch.float64)).requires_grad_()

    cur, mem, b = leaf(2, 3, scale=0.5), leaf(2, 3, scale=0.2), leaf(2, 3, scale=0.1)
    spk = (torch.rand(2, 3) < 0.5).double().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in (*g_m.parameters(), *g_adp.parameters())]
    b0 = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)

    def step(cur, mem, b, spk, w_m, bias_m, w_adp, bias_adp, b0):
        gate_cur, gate_mem = (None, None) if same else (cur * 1.0, mem * 1.0)
        return FusedDenseLTCStep.apply(cur, gate_cur, mem, gate_mem, b, spk, w_m, bias_m, w_adp, bias_adp, b0, 1.8,
                                       zero, "zero", False, False)

    assert torch.autograd.gradcheck(step, (cur, mem, b, spk, *params, b0), eps=1e-7, atol=1e-9)


def test_modules_take_the_dense_step_and_the_others_do_not():
    x = torch.rand(2, 4, requires_grad=True)
    assert fptt_ext.LTC(size=4)(x)[0].grad_fn.name() == "FusedDenseLTCStepBackward"
    assert fptt_ext.LTC(beta=0.9, size=4)(x)[0].grad_fn.name() == "FusedDenseLTCStepBackward"  # snnTorch's scale
    assert fptt_ext.ALIF(size=4)(x)[0].grad_fn.name() == "FusedAdaptiveStepBackward"  # constant gates
    assert fptt_ext.LTC(size=4, liquid_adp=False)(x)[0].grad_fn.name() == "FusedAdaptiveStepBackward"
    assert fptt_ext.LTC(size=4, beta_a=0.0)(x)[0].grad_fn.name() == "FusedDenseLTCStepBackward"  # inert b, too
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts Linear's operands, not a Function's
        assert fptt_ext.LTC(size=4)(x)[0].grad_fn.name() != "FusedDenseLTCStepBackward"


@pytest.mark.parametrize("window", [1, 4])
def test_inert_adaptation_in_the_dense_node_matches_the_modular_shortcut(window):
    # beta_a = 0 (the authors' Add-task neuron): the dense node runs the adaptation gate without
    # a graph, as the modular step's shortcut does. Same spikes and states bit for bit, the same
    # gradients to float64 rounding (over a window, whose states carry a graph), none for the
    # adaptation gate, and b without a graph.
    torch.manual_seed(0)
    g_m, g_adp = DenseGate(5).double(), DenseGate(5).double()
    w = torch.nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    x = torch.rand(6, 2, 3, dtype=torch.float64)
    kw = {"b0": 0.2, "beta_a": 0.0}

    def run(dense: bool):
        for p in (w, *g_m.parameters(), *g_adp.parameters()):
            p.grad = None
        gm, ga = (g_m, g_adp) if dense else (lambda c, s: g_m(c, s), lambda c, s: g_adp(c, s))
        z = torch.zeros(2, 5, dtype=torch.float64)
        state, spikes, loss = (z, z, z), [], 0.0
        for t, x_t in enumerate(x):
            if t % window == 0:
                state = tuple(s.detach() for s in state)
            s, m, b = functional.ltc_step(x_t @ w, state[0], state[1], state[2], gm, ga, **kw)
            assert not b.requires_grad
            if dense:
                assert s.grad_fn.name() == "FusedDenseLTCStepBackward"
            state = (m, b, s)
            spikes.append(s)
            loss = loss + s.sum() + m.square().sum()
        loss.backward()
        return torch.stack(spikes), state, [p.grad for p in (w, *g_m.parameters(), *g_adp.parameters())]

    spk_a, state_a, grads_a = run(True)
    spk_b, state_b, grads_b = run(False)
    assert spk_a.sum() > 0 and torch.equal(spk_a, spk_b)
    assert all(torch.equal(a, b) for a, b in zip(state_a, state_b)) and state_a[1].abs().sum() > 0
    assert grads_a[-2:] == [None, None] and grads_b[-2:] == [None, None]  # the adaptation gate's
    for a, b in zip(grads_a[:-2], grads_b[:-2]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
