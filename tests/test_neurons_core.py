"""Neuron math of fptt_ext against the equations of docs/concepts/ltc.md.

Covers: hand-computed steps of LTC-SN / ALIF / LI (dense and conv, both
adapters, "zero" and "subtract" reset, adaptive threshold, state carry-over),
the multi-Gaussian surrogate, bit-identity of the snnTorch and SpikingJelly
adapters, input validation and the ``beta`` initialisation.

The reference math in this file is written from those equations alone; it does not
call ``fptt_ext.neurons.functional``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fptt_ext
from fptt_ext.spikingjelly import ALIFNode, LINode, LTCNode

B0, BETA_A = 0.1, 1.8
ADAPTERS = ("snntorch", "spikingjelly")



# ----------------------------------------------------------------------------
# Reference math (docs/concepts/ltc.md, "The equations"), independent of the package
# ----------------------------------------------------------------------------

def ref_dense_logit(weight, bias, cur, state):
    """Linear(2N -> N) on [I_t, state]: z = [I, state] W^T + bias."""
    z = torch.cat([cur, state], dim=-1)
    return z @ weight.t() + bias


def ref_conv_logit(conv_weight, bn_weight, bn_bias, eps, cur, state):
    """BN(Conv3x3(I_t + state)) with BN in training mode (batch statistics)."""
    y = F.conv2d(cur + state, conv_weight, padding=1)
    return F.batch_norm(y, None, None, bn_weight, bn_bias, training=True, eps=eps)


def sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def ref_adaptive(cur, u, b, s, alpha, rho, reset):
    """One adaptive step. Returns spk, u (after reset), b, u before reset, theta."""
    b_new = rho * b + (1.0 - rho) * s  # uses the PREVIOUS spike s_{t-1}
    theta = B0 + BETA_A * b_new
    u_pre = u + alpha * (cur - u)
    spk = (u_pre - theta >= 0).to(cur.dtype)
    if reset == "zero":
        u_new = u_pre * (1.0 - spk)
    elif reset == "subtract":
        u_new = u_pre - spk * theta
    else:
        raise AssertionError(reset)
    return spk, u_new, b_new, u_pre, theta


def gate_logits(kind, gate, cur, state):
    """Pre-sigmoid gate value computed from the gate's own parameters."""
    if kind == "dense":
        return ref_dense_logit(gate.weight, gate.bias, cur, state)
    if kind == "conv":
        return ref_conv_logit(gate.conv.weight, gate.bn.weight, gate.bn.bias, gate.bn.eps, cur, state)
    if kind == "const":
        return gate.p.expand_as(cur)
    raise AssertionError(kind)


# ----------------------------------------------------------------------------
# Adapter plumbing for the tests
# ----------------------------------------------------------------------------

def make_neuron(kind, adapter, reset="zero", **kw):
    if adapter == "snntorch":
        cls = {"ltc": fptt_ext.LTC, "alif": fptt_ext.ALIF, "li": fptt_ext.LI}[kind]
        if kind != "li":
            kw["reset_mechanism"] = reset
        return cls(**kw)
    cls = {"ltc": LTCNode, "alif": ALIFNode, "li": LINode}[kind]
    if kind != "li":
        kw["v_reset"] = 0.0 if reset == "zero" else None
    return cls(**kw)


def set_states(mod, adapter, u, b=None, s=None):
    if adapter == "snntorch":
        mod.mem = u  # property setter: also clears b and spk
        if b is not None:
            mod.b = b
            mod.spk = s
    else:
        mod.v = u
        if b is not None:
            mod.b = b
            mod.s = s


def run_step(mod, adapter, cur):
    """Returns (spk or None, mem, b or None) after one step."""
    if adapter == "snntorch":
        out = mod(cur)
        if isinstance(mod, fptt_ext.LI):
            assert torch.equal(out, mod.mem)
            return None, out, None
        spk, mem = out
        assert torch.equal(mem, mod.mem)
        return spk, mem, mod.b
    out = mod(cur)
    if isinstance(mod, LINode):
        assert torch.equal(out, mod.v)
        return None, out, None
    assert torch.equal(out, mod.s)
    return out, mod.v, mod.b


def randomize_gates(mod, gen):
    """Move gates away from their symmetric defaults so every parameter matters."""
    with torch.no_grad():
        for name in ("gate_m", "gate_adp"):
            gate = getattr(mod, name, None)
            if gate is None:
                continue
            if hasattr(gate, "p"):
                gate.p.copy_(torch.randn(gate.p.shape, generator=gen, dtype=gate.p.dtype))
            elif hasattr(gate, "bn"):
                gate.bn.weight.copy_(0.5 + torch.rand(gate.bn.weight.shape, generator=gen, dtype=gate.bn.weight.dtype))
                gate.bn.bias.copy_(0.5 * torch.randn(gate.bn.bias.shape, generator=gen, dtype=gate.bn.bias.dtype))


ATOL = 1e-12


def assert_close(actual, expected, what):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    err = (actual - expected).abs().max().item()
    assert err <= ATOL, f"{what}: max abs error {err}"


# ----------------------------------------------------------------------------
# 1. Hand-computed steps
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind,form", [("ltc", "dense"), ("ltc", "conv"), ("alif", "dense"), ("alif", "conv")])
def test_adaptive_two_steps_by_hand(adapter, reset, kind, form):
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    if form == "dense":
        shape, size, conv = (3, 6), 6, False
    else:
        shape, size, conv = (2, 3, 4, 4), 3, True
    mod = make_neuron(kind, adapter, reset=reset, size=size, conv=conv).double()
    randomize_gates(mod, gen)
    gkind = "const" if kind == "alif" else form

    # non-trivial previous state: membrane, adaptation and previous spike
    u0 = 0.3 * torch.rand(shape, generator=gen, dtype=torch.float64)
    b_prev = 0.4 * torch.rand(shape, generator=gen, dtype=torch.float64)
    s_prev = (torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5).double()
    cur1 = 0.5 + torch.randn(shape, generator=gen, dtype=torch.float64)
    cur2 = 0.5 + torch.randn(shape, generator=gen, dtype=torch.float64)

    # ---- expected, step 1 ----
    with torch.no_grad():
        alpha1 = sigmoid(gate_logits(gkind, mod.gate_m, cur1, u0))
        rho1 = sigmoid(gate_logits(gkind, mod.gate_adp, cur1, b_prev))
        spk1, u1, b1, u1_pre, theta1 = ref_adaptive(cur1, u0, b_prev, s_prev, alpha1, rho1, reset)
        # step 2 carries u1, b1 and the step-1 spike
        alpha2 = sigmoid(gate_logits(gkind, mod.gate_m, cur2, u1))
        rho2 = sigmoid(gate_logits(gkind, mod.gate_adp, cur2, b1))
        spk2, u2, b2, u2_pre, theta2 = ref_adaptive(cur2, u1, b1, spk1, alpha2, rho2, reset)

    # self-checks of the scenario, so that the comparison below is meaningful
    for u_pre, theta in ((u1_pre, theta1), (u2_pre, theta2)):
        assert (u_pre - theta).abs().min() > 1e-6, "a neuron sits on its threshold"
    adapted_block = (u1_pre >= B0) & (u1_pre < theta1)
    assert adapted_block.any(), "need a neuron that spikes with b0 but not with the adapted threshold"
    assert (spk1 == 1).any() and (u1_pre < B0).any()
    assert (spk2 == 1).any() and (spk1 != s_prev).any() and (spk2 != spk1).any()

    # ---- actual ----
    set_states(mod, adapter, u0.clone(), b_prev.clone(), s_prev.clone())
    with torch.no_grad():
        a_spk1, a_u1, a_b1 = run_step(mod, adapter, cur1)
        assert torch.equal(a_spk1, spk1)
        assert_close(a_u1, u1, "u after step 1")
        assert_close(a_b1, b1, "b after step 1")
        assert torch.equal(a_spk1[adapted_block], torch.zeros_like(a_spk1[adapted_block]))
        a_spk2, a_u2, a_b2 = run_step(mod, adapter, cur2)
        assert torch.equal(a_spk2, spk2)
        assert_close(a_u2, u2, "u after step 2")
        assert_close(a_b2, b2, "b after step 2")
    if reset == "zero":
        assert torch.all(a_u1[spk1 == 1] == 0)
    else:
        assert torch.all(a_u1[spk1 == 1] != 0)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("form,liquid", [("dense", True), ("conv", True), ("dense", False), ("conv", False)])
def test_li_two_steps_by_hand(adapter, form, liquid):
    gen = torch.Generator().manual_seed(99)
    torch.manual_seed(99)
    if form == "dense":
        shape, size, conv = (3, 5), 5, False
    else:
        shape, size, conv = (2, 3, 4, 4), 3, True
    mod = make_neuron("li", adapter, size=size, conv=conv, liquid=liquid).double()
    randomize_gates(mod, gen)
    gkind = form if liquid else "const"
    o0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    cur1 = torch.randn(shape, generator=gen, dtype=torch.float64)
    cur2 = torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        o1 = o0 + sigmoid(gate_logits(gkind, mod.gate_m, cur1, o0)) * (cur1 - o0)
        o2 = o1 + sigmoid(gate_logits(gkind, mod.gate_m, cur2, o1)) * (cur2 - o1)
        set_states(mod, adapter, o0.clone())
        _, a1, _ = run_step(mod, adapter, cur1)
        assert_close(a1, o1, "LI step 1")
        _, a2, _ = run_step(mod, adapter, cur2)
        assert_close(a2, o2, "LI step 2")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_dense_gate_order_is_input_then_state(adapter):
    """alpha depends on [I, u] in that order: swapping the halves of W changes the result."""
    torch.manual_seed(0)
    mod = make_neuron("ltc", adapter, size=2).double()
    with torch.no_grad():
        mod.gate_m.weight.zero_()
        mod.gate_m.bias.zero_()
        mod.gate_m.weight[:, :2] = torch.eye(2, dtype=torch.float64) * 3.0  # acts on I only
        mod.gate_adp.weight.zero_()
        mod.gate_adp.bias.fill_(100.0)  # rho = 1 -> b stays 0
    cur = torch.tensor([[0.2, -0.2]], dtype=torch.float64)
    with torch.no_grad():
        spk, mem, _ = run_step(mod, adapter, cur)
    alpha = sigmoid(3.0 * cur)  # u_{t-1} = 0, logit = 3 * I
    expected = alpha * cur * (1 - spk)
    assert torch.equal(spk, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert_close(mem, expected, "membrane with a gate on I only")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_zero_initial_state_first_step(adapter):
    """From the initial state u=b=s=0: b_1 = 0, theta = b0, u_1 = alpha * I."""
    torch.manual_seed(3)
    mod = make_neuron("ltc", adapter, size=4).double()
    cur = torch.tensor([[0.05, 0.15, 0.5, -1.0]], dtype=torch.float64)
    with torch.no_grad():
        alpha = sigmoid(ref_dense_logit(mod.gate_m.weight, mod.gate_m.bias, cur, torch.zeros_like(cur)))
        spk, mem, b = run_step(mod, adapter, cur)
    u_pre = alpha * cur
    assert torch.equal(b, torch.zeros_like(cur))
    assert torch.equal(spk, (u_pre >= B0).double())
    assert_close(mem, u_pre * (1 - spk), "first step")
    assert spk.sum() >= 1 and spk.sum() < 4


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_exactly_at_threshold(adapter, dtype):
    """H(u - theta) with H(0) = 1: u_t == theta_t == b0 fires."""
    mod = make_neuron("alif", adapter, size=2, beta=0.5).to(dtype)  # alpha = 0.5 exactly
    assert float(torch.sigmoid(mod.gate_m.p.detach())[0]) == 0.5
    cur = torch.tensor([[0.2, 0.19]], dtype=dtype)  # u_1 = 0.1 (== b0 in this dtype), 0.095
    assert (0.5 * cur)[0, 0] == torch.tensor(0.1, dtype=dtype)
    with torch.no_grad():
        spk, _mem, _ = run_step(mod, adapter, cur)
    assert spk.tolist() == [[1.0, 0.0]]


def test_reset_none_keeps_membrane_snntorch():
    # (SpikingJelly nodes only offer zero (v_reset=0.0) and subtract (v_reset=None))
    mod = fptt_ext.ALIF(size=2, reset_mechanism="none", beta=0.5).double()
    with torch.no_grad():
        spk, mem = mod(torch.tensor([[1.0, 0.1]], dtype=torch.float64))
    assert spk.tolist() == [[1.0, 0.0]]
    assert_close(mem, torch.tensor([[0.5, 0.05]], dtype=torch.float64), "no reset")


def test_sj_rejects_other_v_reset():
    with pytest.raises(ValueError):
        LTCNode(v_reset=0.5)


# ----------------------------------------------------------------------------
# 2. Surrogate gradient
# ----------------------------------------------------------------------------

SIG, H, S, GAMMA = 0.3, 0.15, 6.0, 0.5


def normal_pdf(x, mu, sd):
    return torch.exp(-((x - mu) ** 2) / (2 * sd**2)) / (math.sqrt(2 * math.pi) * sd)


def surrogate_formula(x):
    return GAMMA * (
        (1 + H) * normal_pdf(x, 0.0, SIG) - H * normal_pdf(x, SIG, S * SIG) - H * normal_pdf(x, -SIG, S * SIG)
    )


SURROGATE_GRID = [-50.0, -5.0, -1.0, -0.3, -0.1, -1e-9, -0.0, 0.0, 1e-9, 0.1, 0.3, 1.0, 1.8, 5.0, 50.0]


@pytest.mark.parametrize("make_spike", [fptt_ext.multi_gaussian, fptt_ext.MultiGaussian])
def test_surrogate_forward_is_heaviside(make_spike):
    spike = make_spike()
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(SURROGATE_GRID, dtype=dtype)
        out = spike(x)
        assert out.dtype == dtype
        assert torch.equal(out, (x >= 0).to(dtype))
    assert spike(torch.tensor([0.0])).item() == 1.0
    assert spike(torch.tensor([-1e-30])).item() == 0.0


def test_surrogate_backward_closed_form_grid():
    spike = fptt_ext.multi_gaussian()
    x = torch.tensor(SURROGATE_GRID, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(spike(x).sum(), x)
    expected = surrogate_formula(x.detach())
    assert grad.dtype == torch.float64
    assert torch.allclose(grad, expected, rtol=0, atol=1e-12)
    # spot values: peak at 0, tails vanish
    assert abs(grad[SURROGATE_GRID.index(0.0)].item() - 0.7319) < 1e-4
    assert abs(grad[0].item()) < 1e-12 and abs(grad[-1].item()) < 1e-12
    # the side lobes are negative at moderate |x|
    assert surrogate_formula(torch.tensor(1.0, dtype=torch.float64)) < 0
    assert grad[SURROGATE_GRID.index(1.0)] < 0


def test_surrogate_backward_scales_upstream_grad():
    spike = fptt_ext.multi_gaussian()
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    w = torch.linspace(0.5, 3.0, 41, dtype=torch.float64)
    (grad,) = torch.autograd.grad((spike(x) * w).sum(), x)
    assert torch.allclose(grad, w * surrogate_formula(x.detach()), rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None, database=None)  # no .hypothesis dir
@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-20.0, 20.0, allow_nan=False)))
def test_surrogate_property(xs):
    spike = fptt_ext.multi_gaussian()
    x = torch.from_numpy(xs.copy()).requires_grad_(True)
    out = spike(x)
    assert torch.equal(out.detach(), (x.detach() >= 0).double())
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, surrogate_formula(x.detach()), rtol=0, atol=1e-12)


def test_surrogate_rejects_bad_parameters():
    with pytest.raises(ValueError):
        fptt_ext.MultiGaussian(sigma=0.0)
    with pytest.raises(ValueError):
        fptt_ext.MultiGaussian(s=-1.0)


# ----------------------------------------------------------------------------
# 5. Same weights in both adapters -> bit-identical traces
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ltc", "alif", "li"])
@pytest.mark.parametrize("form", ["dense", "conv"])
def test_adapters_bit_identical(kind, form):
    torch.manual_seed(7)
    if form == "dense":
        size, conv, shape = 8, False, (4, 8)
    else:
        size, conv, shape = 3, True, (2, 3, 5, 5)
    st_mod = make_neuron(kind, "snntorch", size=size, conv=conv)
    sj_mod = make_neuron(kind, "spikingjelly", size=size, conv=conv)
    randomize_gates(st_mod, torch.Generator().manual_seed(8))

    sd = st_mod.state_dict()
    extra = {"threshold", "graded_spikes_factor", "reset_mechanism_val"}
    assert extra <= set(sd), sorted(sd)
    res = sj_mod.load_state_dict(sd, strict=False)
    assert res.missing_keys == []
    assert set(res.unexpected_keys) == extra
    for k, v in sj_mod.state_dict().items():
        assert torch.equal(v, sd[k]), k

    xs = 1.0 + 1.5 * torch.randn(10, *shape)
    total_spikes = 0.0
    for t in range(10):
        spk_a, mem_a, b_a = run_step(st_mod, "snntorch", xs[t])
        spk_b, mem_b, b_b = run_step(sj_mod, "spikingjelly", xs[t])
        assert torch.equal(mem_a, mem_b), f"membrane differs at t={t}"
        if kind != "li":
            assert torch.equal(spk_a, spk_b), f"spikes differ at t={t}"
            assert torch.equal(b_a, b_b), f"adaptation differs at t={t}"
            total_spikes += spk_a.sum().item()
    if kind != "li":
        assert 0 < total_spikes < 10 * xs[0].numel()


# ----------------------------------------------------------------------------
# 8. Bad input
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("kind", ["ltc", "alif", "li"])
def test_feature_size_mismatch_after_first_call(adapter, kind):
    mod = make_neuron(kind, adapter)
    mod(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        mod(torch.rand(2, 5))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_feature_size_mismatch_explicit_size_and_conv(adapter):
    mod = make_neuron("ltc", adapter, size=6)
    with pytest.raises(ValueError, match=r"\(batch, 6\)"):
        mod(torch.rand(2, 3))
    mod = make_neuron("ltc", adapter, size=3, conv=True)
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        mod(torch.rand(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        mod(torch.rand(2, 3))  # dense input to a conv neuron


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("kind", ["ltc", "alif", "li"])
def test_integer_input_raises_type_error(adapter, kind):
    mod = make_neuron(kind, adapter, size=3)
    with pytest.raises(TypeError, match="float"):
        mod(torch.ones(2, 3, dtype=torch.int64))
    mod = make_neuron(kind, adapter)  # lazy: must not build int gates either
    with pytest.raises(TypeError, match="float"):
        mod(torch.ones(2, 3, dtype=torch.int32))


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("kind", ["ltc", "alif", "li"])
def test_nan_input_raises(adapter, kind):
    mod = make_neuron(kind, adapter, size=3)
    x = torch.rand(2, 3)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        mod(x)


@pytest.mark.parametrize("cls", [LTCNode, ALIFNode, LINode])
def test_nan_input_raises_sj_multistep_later_step(cls):
    """The whole [T, B, ...] sequence is checked, not only x_seq[0]."""
    node = cls(step_mode="m", size=3)
    x = torch.rand(4, 2, 3)
    x[2, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        node(x)


@pytest.mark.parametrize("cls", [LTCNode, ALIFNode, LINode])
def test_nan_input_raises_sj_multistep_first_step(cls):
    node = cls(step_mode="m", size=3)
    x = torch.rand(4, 2, 3)
    x[0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        node(x)


@pytest.mark.parametrize("factory", [fptt_ext.LTC, fptt_ext.ALIF, fptt_ext.LI, LTCNode, ALIFNode, LINode])
@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_size_raises(factory, size):
    with pytest.raises(ValueError, match="size"):
        factory(size=size)


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match="shape"):
        fptt_ext.LTC()(torch.rand(2, 3, 4))


# ----------------------------------------------------------------------------
# 9. beta initialisation
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("factory", [fptt_ext.LTC, fptt_ext.LI, LTCNode, LINode])
def test_beta_sets_initial_decay_dense(factory):
    mod = factory(beta=0.9, size=4)
    alpha = torch.sigmoid(mod.gate_m.bias.detach().double())
    assert torch.allclose(alpha, torch.full((4,), 0.1, dtype=torch.float64), atol=1e-6)
    # lazily-built gates get the same initialisation
    lazy = factory(beta=0.9)
    lazy(torch.zeros(1, 4))
    assert torch.allclose(torch.sigmoid(lazy.gate_m.bias.detach().double()), alpha, atol=1e-6)


@pytest.mark.parametrize("factory", [fptt_ext.LTC, LTCNode])
def test_adaptation_decay_sets_gate_adp_bias(factory):
    mod = factory(size=3, adaptation_decay=0.95)
    rho = torch.sigmoid(mod.gate_adp.bias.detach().double())
    assert torch.allclose(rho, torch.full((3,), 0.95, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("factory", [fptt_ext.ALIF, ALIFNode])
def test_alif_default_constants(factory):
    mod = factory(size=5)
    alpha = torch.sigmoid(mod.gate_m.p.detach().double())
    rho = torch.sigmoid(mod.gate_adp.p.detach().double())
    assert torch.allclose(alpha, torch.full((5,), 1 - math.exp(-1 / 20), dtype=torch.float64), atol=1e-6)
    assert torch.allclose(rho, torch.full((5,), math.exp(-1 / 200), dtype=torch.float64), atol=1e-6)
    conv = factory(size=2, conv=True)
    assert conv.gate_m.p.shape == (2, 1, 1)
    # the constants really drive the dynamics: one step from rest
    mod = mod.double()
    with torch.no_grad():
        out = mod(torch.full((1, 5), 0.5, dtype=torch.float64))
    mem = out[1] if isinstance(out, tuple) else mod.v
    # p was initialised in float32, hence the float32-level tolerance
    expected = torch.full((1, 5), 0.5 * (1 - math.exp(-1 / 20)), dtype=torch.float64)
    assert mem.dtype == torch.float64
    assert torch.allclose(mem, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("factory", [fptt_ext.ALIF, ALIFNode])
def test_alif_beta_overrides_constant(factory):
    mod = factory(size=3, beta=0.8)
    assert torch.allclose(torch.sigmoid(mod.gate_m.p.detach()), torch.full((3,), 0.2), atol=1e-6)


def test_thresholds_default_to_b0():
    assert float(fptt_ext.LTC().threshold) == pytest.approx(0.1)
    assert LTCNode().v_threshold == pytest.approx(0.1)


def _adaptation_run(detach: bool, beta_a: float = 1.8, steps: int = 40):
    """A recurrent-free ALIF layer with fast adaptation (rho ~ 0.05) driven near threshold."""
    torch.manual_seed(0)
    neuron = fptt_ext.ALIF(size=16, beta=0.5, adaptation_decay=0.05, beta_a=beta_a, detach_adaptation=detach)
    x = (0.12 + 0.05 * torch.randn(steps, 4, 16)).requires_grad_()
    mem = neuron.reset_mem()
    spikes = []
    for t in range(steps):
        spk, mem = neuron(x[t], mem)
        spikes.append(spk)
    out = torch.stack(spikes)
    out[-1].sum().backward()
    return out.detach(), x.grad


def test_detach_adaptation_changes_only_the_backward():
    fwd, grad = _adaptation_run(detach=False)
    fwd_d, grad_d = _adaptation_run(detach=True)
    assert torch.equal(fwd, fwd_d) and 0 < fwd.mean() < 1  # same spikes, some firing
    # the gradient that reaches steps far back through spike -> b -> threshold -> spike
    far = slice(0, 20)
    assert grad[far].abs().sum() > 10 * grad_d[far].abs().sum()
    # without adaptation (beta_a = 0) the b path carries no gradient: detaching it changes nothing
    assert torch.equal(_adaptation_run(False, beta_a=0.0)[1], _adaptation_run(True, beta_a=0.0)[1])


def test_detach_adaptation_in_both_adapters():
    zeros = torch.zeros(2, 3)
    for neuron in (fptt_ext.LTC(size=3, detach_adaptation=True), LTCNode(size=3, detach_adaptation=True)):
        assert neuron.detach_adaptation is True
    cur = torch.tensor([[0.5, 0.05, 0.3], [0.0, 1.0, 0.2]])
    a, b = fptt_ext.LTC(size=3), LTCNode(size=3, detach_adaptation=True)
    b.load_state_dict(a.state_dict(), strict=False)
    spk_a, mem_a = a(cur, zeros)
    spk_b = b(cur)
    assert torch.equal(spk_a, spk_b) and torch.equal(mem_a, b.v)


@pytest.mark.parametrize("cur_grad", [True, False])
def test_dense_gate_with_a_detached_state_gives_linears_gradients(cur_grad, monkeypatch):
    # A detached state (FPTT with K = 1, TBPTT-1) takes the backward that skips the state's
    # half of the input gradient (from B x N x N = 2^21 on; here at any size); values and
    # every gradient are those of Linear on the concatenation, in float64 to rounding.
    from fptt_ext.neurons import gates
    from fptt_ext.neurons.gates import DenseGate, _ConcatLinear

    assert DenseGate(4)(torch.randn(2, 4, requires_grad=True), torch.randn(2, 4)).grad_fn.name() == "AddmmBackward0"
    monkeypatch.setattr(gates, "_MIN_SAVED_MACS", 0)
    torch.manual_seed(0)
    gate = DenseGate(5).double()
    cur = torch.randn(3, 5, dtype=torch.float64, requires_grad=cur_grad)
    state = torch.randn(3, 5, dtype=torch.float64)
    out = gate(cur, state)
    assert out.grad_fn.name() == "_ConcatLinearBackward"
    ref = F.linear(torch.cat((cur, state), -1), gate.weight, gate.bias)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    wrt = [gate.weight, gate.bias] + ([cur] if cur_grad else [])
    for a, b in zip(torch.autograd.grad(out, wrt, g), torch.autograd.grad(ref, wrt, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    leaves = (cur.detach().requires_grad_(), gate.weight.detach().requires_grad_(),
              gate.bias.detach().requires_grad_())
    assert torch.autograd.gradcheck(lambda c, w, b: _ConcatLinear.apply(c, state, w, b), leaves)


def test_dense_gate_with_a_state_in_the_graph_is_linear_on_the_concatenation(monkeypatch):
    from fptt_ext.neurons import gates
    from fptt_ext.neurons.gates import DenseGate

    monkeypatch.setattr(gates, "_MIN_SAVED_MACS", 0)
    gate = DenseGate(4)
    cur, state = torch.randn(2, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)
    assert gate(cur, state).grad_fn.name() == "AddmmBackward0"  # the state's gradient is needed
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts Linear's operands
        assert gate(cur, state.detach()).dtype == torch.bfloat16
