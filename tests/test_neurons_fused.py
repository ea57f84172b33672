"""The fused adaptive step (fptt_ext.neurons.fused) against the plain, op-by-op path.

* forward: the plain path's spikes, and its states to rounding (the fused step computes
  ``lerp``s where the plain path multiplies and adds), every surrogate the package knows,
  float32 and float64, each reset, dense and broadcast (ALIF) gates;
* backward: ``torch.autograd.gradcheck`` in float64 of every path except the spike's
  surrogate (with a zero surrogate the step is piecewise smooth, so finite differences apply),
  and the full gradient, surrogate included, equal to autograd through the plain path to
  float64 rounding, with ``detach_reset`` / ``detach_adaptation`` and a learned threshold;
* dispatch: which calls take the fused path, and that an unknown spike function does not.
"""

from __future__ import annotations

import itertools

import pytest
import snntorch.surrogate as snn_surrogate
import torch
from spikingjelly.activation_based import surrogate as sj_surrogate

import fptt_ext
from fptt_ext.neurons import functional
from fptt_ext.neurons.fused import FusedAdaptiveStep, SpikeRule, spike_rule, use_fused
from fptt_ext.neurons.surrogate import MultiGaussian, multi_gaussian_grad

RESETS = ("zero", "subtract", "none")
SURROGATES = {
    "multi_gaussian": MultiGaussian,
    "multi_gaussian_wide": lambda: MultiGaussian(sigma=0.5, h=0.3, s=3.0, gamma=1.0),
    "snntorch.fast_sigmoid": lambda: snn_surrogate.fast_sigmoid(slope=10),
    "snntorch.atan": snn_surrogate.atan,
    "snntorch.sigmoid": lambda: snn_surrogate.sigmoid(slope=5),
    "snntorch.ste": snn_surrogate.straight_through_estimator,
    "spikingjelly.ATan": sj_surrogate.ATan,
    "spikingjelly.Sigmoid": sj_surrogate.Sigmoid,
}


def _inputs(dtype, *, alif=False, B=3, N=5, seed=0, b0_learned=False):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, shift=0.0):
        return (scale * torch.randn(*shape, generator=g, dtype=dtype) + shift).requires_grad_()

    gate_shape = (N,) if alif else (B, N)
    x = {"cur": rand(B, N, scale=0.5, shift=0.3), "mem": rand(B, N, scale=0.2),
         "b": (0.1 * torch.rand(B, N, generator=g, dtype=dtype)).requires_grad_(),
         "spk": (torch.rand(B, N, generator=g) < 0.4).to(dtype).requires_grad_(),
         "logit_m": rand(*gate_shape), "logit_adp": rand(*gate_shape)}
    b0 = torch.tensor(0.1, dtype=dtype, requires_grad=True) if b0_learned else 0.1
    return x, b0


def _step(x, b0, spike_fn, **kw):
    return functional._gated_step(x["cur"], x["mem"], x["b"], x["spk"], x["logit_m"], x["logit_adp"], b0=b0,
                                  beta_a=1.8, spike_fn=spike_fn, **kw)


def _grads(x, b0, spike_fn, fused, **kw):
    with use_fused(fused):
        out = _step(x, b0, spike_fn, **kw)
    g = torch.Generator().manual_seed(7)
    loss = sum((torch.randn(o.shape, generator=g, dtype=o.dtype) * o).sum() for o in out)
    wrt = list(x.values()) + ([b0] if isinstance(b0, torch.Tensor) else [])
    return out, torch.autograd.grad(loss, wrt, allow_unused=True)


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_plain_forward_and_gradient(name, dtype):
    for reset, detach_reset, detach_adaptation, alif in itertools.product(RESETS, (False, True), (False, True),
                                                                           (False, True)):
        spike_fn = SURROGATES[name]()
        x, b0 = _inputs(dtype, alif=alif, b0_learned=dtype == torch.float64)
        kw = {"reset_mechanism": reset, "detach_reset": detach_reset, "detach_adaptation": detach_adaptation}
        out_plain, g_plain = _grads(x, b0, spike_fn, False, **kw)
        out_fused, g_fused = _grads(x, b0, spike_fn, True, **kw)
        fused_here = dtype == torch.float32 or not name.startswith("snntorch")  # snnTorch spikes are float32
        assert (out_fused[0].grad_fn.name() == "FusedAdaptiveStepBackward") == fused_here
        assert torch.equal(out_plain[0], out_fused[0])  # the same spikes (no neuron sits within 1e-6 of theta)
        tol = 1e-14 if dtype == torch.float64 else 1e-6
        for a, b in zip(out_plain, out_fused):  # states to rounding
            assert a.dtype == b.dtype and (a - b).abs().max().item() <= tol, (reset, detach_reset, detach_adaptation)
        assert out_plain[0].sum() > 0 and (out_plain[0] == 0).any()  # both sides of the threshold
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        for i, (a, b) in enumerate(zip(g_plain, g_fused)):
            assert (a is None) == (b is None), i
            if a is not None:
                assert (a - b).abs().max().item() <= tol * (1 + a.abs().max().item()), (i, reset, detach_reset,
                                                                                         detach_adaptation, alif)


_NO_SURROGATE = SpikeRule(lambda g, x: torch.zeros_like(x))


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("detach_adaptation", [False, True])
@pytest.mark.parametrize("alif", [False, True])
def test_gradcheck_float64(reset, detach_reset, detach_adaptation, alif):
    # With a zero surrogate the step is piecewise smooth in every input (the Heaviside is
    # constant off the threshold), so finite differences check every other gradient path:
    # reset, threshold, adaptation, membrane update, the fused sigmoids, a learned b0.
    x, b0 = _inputs(torch.float64, alif=alif, b0_learned=True)
    if detach_adaptation:  # then the previous spike gets no gradient by design
        x["spk"] = x["spk"].detach()
    names = list(x)

    def step(*args):
        d = dict(zip(names, args[:-1]))
        return FusedAdaptiveStep.apply(d["cur"], d["mem"], d["b"], d["spk"], d["logit_m"], d["logit_adp"], args[-1],
                                       1.8, _NO_SURROGATE, reset, detach_reset, detach_adaptation, True)

    assert torch.autograd.gradcheck(step, (*x.values(), b0), eps=1e-7, atol=1e-9)
    x_alpha = dict(x, logit_m=torch.sigmoid(x["logit_m"]).detach().requires_grad_(),
                   logit_adp=torch.sigmoid(x["logit_adp"]).detach().requires_grad_())

    def step_probabilities(*args):  # alpha and rho given (adaptive_step), no fused sigmoid
        d = dict(zip(names, args[:-1]))
        return FusedAdaptiveStep.apply(d["cur"], d["mem"], d["b"], d["spk"], d["logit_m"], d["logit_adp"], args[-1],
                                       1.8, _NO_SURROGATE, reset, detach_reset, detach_adaptation, False)

    assert torch.autograd.gradcheck(step_probabilities, (*x_alpha.values(), b0), eps=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["multi_gaussian", "multi_gaussian_wide", "snntorch.fast_sigmoid", "snntorch.atan",
                                  "snntorch.sigmoid", "spikingjelly.ATan", "spikingjelly.Sigmoid"])
def test_spike_rule_derivative_against_the_surrogates_own_backward(name):
    spike_fn = SURROGATES[name]()
    dtype = torch.float32 if name.startswith("snntorch") else torch.float64
    x = torch.linspace(-3, 3, 601, dtype=dtype, requires_grad=True)
    g = torch.linspace(0.5, 1.5, 601, dtype=dtype)
    (expected,) = torch.autograd.grad((spike_fn(x) * g).sum(), x)
    got = spike_rule(spike_fn, x).backward(g, x.detach())
    assert (got - expected).abs().max().item() <= (1e-6 if dtype == torch.float32 else 1e-14)
    if name == "multi_gaussian":
        assert torch.allclose(got, g * multi_gaussian_grad(x.detach()), rtol=0, atol=1e-14)


def test_unknown_spike_function_takes_the_plain_path():
    x, b0 = _inputs(torch.float32)

    def my_spike(v):  # a user's own surrogate
        return snn_surrogate.atan()(v) * 1.0

    spk, _, _ = _step(x, b0, my_spike)
    assert spk.grad_fn.name() != "FusedAdaptiveStepBackward"
    assert spike_rule(my_spike, x["cur"]) is None
    assert spike_rule(sj_surrogate.ATan(spiking=False), x["cur"]) is None  # not spikes: the plain path
    assert spike_rule(sj_surrogate.PiecewiseQuadratic(), x["cur"]) is None  # not (yet) known here


def test_dispatch_conditions():
    x, _ = _inputs(torch.float32)
    spk, _, _ = _step(x, 0.1, MultiGaussian())
    assert spk.grad_fn.name() == "FusedAdaptiveStepBackward"
    with use_fused(False):
        assert _step(x, 0.1, MultiGaussian())[0].grad_fn.name() != "FusedAdaptiveStepBackward"
    # a per-neuron threshold, or states of another shape: the plain path, same answers
    spk, _, _ = _step(x, torch.full((5,), 0.1), MultiGaussian())
    assert spk.grad_fn.name() != "FusedAdaptiveStepBackward"
    with pytest.raises(ValueError, match="reset_mechanism"):
        _step(x, 0.1, MultiGaussian(), reset_mechanism="bogus")


@pytest.mark.parametrize("logits_low", [True, False])
def test_mixed_precision_is_fused_with_the_plain_paths_numbers(logits_low):
    # bf16 autocast: the convolution (and its gates) give bfloat16, the neuron's state is float32.
    # The fused step casts to the promoted dtype first, as the plain path's every op does.
    torch.manual_seed(0)
    x, _ = _inputs(torch.float32, B=8, N=16)
    low = ("cur", "logit_m", "logit_adp") if logits_low else ("cur",)
    x = {k: (v.detach().to(torch.bfloat16) if k in low else v.detach()).requires_grad_() for k, v in x.items()}
    kw = {"reset_mechanism": "zero"}
    out_plain, g_plain = _grads(x, 0.1, MultiGaussian(), False, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_fused, g_fused = _grads(x, 0.1, MultiGaussian(), True, **kw)
    assert out_fused[0].grad_fn.name() == "FusedAdaptiveStepBackward"
    assert torch.equal(out_plain[0], out_fused[0]) and out_plain[0].sum() > 0 and (out_plain[0] == 0).any()
    # The plain path rounds some intermediates to bfloat16 (``1.0 - rho`` with rho in bf16), the fused
    # step does not: they agree to bf16's 8-bit mantissa, 2^-8 of values of order 1.
    for a, b in zip(out_plain, out_fused):
        assert a.dtype == b.dtype == torch.float32 and (a - b).abs().max().item() <= 2 ** -8
    for name, a, b in zip(x, g_plain, g_fused):
        assert a.dtype == b.dtype == x[name].dtype, name  # gradients come back in each input's dtype
        assert (a.float() - b.float()).abs().max().item() <= 1e-2 * (1 + a.float().abs().max().item()), name


@pytest.mark.parametrize("cls,conv", [(fptt_ext.LTC, False), (fptt_ext.ALIF, False), (fptt_ext.LTC, True)])
def test_modules_train_identically_with_and_without_fusion(cls, conv):
    # BPTT over 6 steps through an snnTorch module: spikes equal, states and gate gradients to rounding
    results = []
    for fused in (False, True):
        torch.manual_seed(3)
        mod = cls(size=4, conv=conv) if conv else cls(size=4)
        xs = 0.3 + torch.rand(6, 2, 4, 3, 3) if conv else 0.3 + torch.rand(6, 2, 4)
        with use_fused(fused):
            spikes = [mod(x)[0] for x in xs]
            loss = sum((s * (i + 1)).sum() for i, s in enumerate(spikes)) + mod.mem.sum()
            loss.backward()
        results.append((torch.stack(spikes), [p.grad.clone() for p in mod.parameters()]))
        # the dense LTC-SN takes the step with its gates inside (fptt_ext.neurons.fused_dense)
        assert (spikes[-1].grad_fn.name() in ("FusedAdaptiveStepBackward", "FusedDenseLTCStepBackward")) == fused
    (s0, g0), (s1, g1) = results
    assert torch.equal(s0, s1) and s0.sum() > 0
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("multi_step", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_inert_adaptation_skips_its_graph_with_the_same_numbers(multi_step, fused):
    # beta_a = 0 (the authors' Add-task neuron): b cannot reach the spikes, so its gate runs
    # without a graph. Spikes, states and every gradient are bit-identical to the full graph's.
    from fptt_ext.neurons.gates import DenseGate

    def run(shortcut: bool):
        torch.manual_seed(0)
        g_m, g_adp = DenseGate(6), DenseGate(6)
        w = torch.nn.Parameter(torch.randn(4, 6))
        x = torch.rand(7, 3, 4) @ w
        z = torch.zeros(3, 6)
        kw = {"b0": 0.2, "beta_a": 0.0}
        with use_fused(fused), functional.inert_adaptation_shortcut(shortcut):
            if multi_step:
                spk_seq, mem, b, _, _ = functional.ltc_multi_step(x, z, z, z, g_m, g_adp, **kw)
            else:
                state, out = (z, z, z), []
                for x_t in x:
                    s, m, bb = functional.ltc_step(x_t, state[0], state[1], state[2], g_m, g_adp, **kw)
                    state = (m, bb, s)
                    out.append(s)
                spk_seq, mem, b = torch.stack(out), state[0], state[1]
        (spk_seq.sum() + mem.square().sum()).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in (w, *g_m.parameters(), *g_adp.parameters())]
        return spk_seq, mem, b, grads

    spk_a, mem_a, b_a, grads_a = run(True)
    spk_b, mem_b, b_b, grads_b = run(False)
    assert spk_a.sum() > 0 and torch.equal(spk_a, spk_b) and torch.equal(mem_a, mem_b)
    assert torch.equal(b_a, b_b) and b_a.abs().sum() > 0  # b is still updated, only without a graph
    assert not b_a.requires_grad and b_b.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert grads_a[-1].abs().sum() == 0  # the adaptation gate gets no gradient either way


def test_a_second_derivative_is_refused_and_the_first_computed_under_create_graph():
    # The hand-derived backward is first-order only (torch's once_differentiable, whose
    # no_grad block is skipped only outside create_graph): with create_graph=True it still
    # gives the gradient, and differentiating that again raises instead of giving a wrong number.
    x, b0 = _inputs(torch.float64)
    spk, _, _ = _step(x, b0, MultiGaussian())
    assert spk.grad_fn.name() == "FusedAdaptiveStepBackward"
    v = torch.randn(spk.shape, dtype=spk.dtype, requires_grad=True)
    (first,) = torch.autograd.grad(spk, x["cur"], v, create_graph=True)
    (plain,) = torch.autograd.grad(spk, x["cur"], v.detach(), retain_graph=True)
    torch.testing.assert_close(first, plain, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        first.sum().backward()
