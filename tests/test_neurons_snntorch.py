"""snnTorch adapters (fptt_ext.LTC / ALIF / LI) as drop-ins for snn.Leaky.

Covers: the snnTorch tutorial networks with Leaky swapped for LTC (explicit
state and ``init_hidden=True``), the reset / detach protocol, gradients into the
gates, state_dict round trips and float32/float64 operation.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.utils
import torch
import torch.nn.functional as F
from torch import nn

import fptt_ext

T = 10



def _toy_vectors(seed=0, n=24, features=10, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = 1.5 * torch.randn(classes, features, generator=g)
    x = centers[y] + 0.3 * torch.randn(n, features, generator=g)
    return x, y


def _toy_images(seed=0, n=12, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.2 * torch.rand(n, 1, 8, 8, generator=g)
    for i in range(n):  # class = which third of the image is bright
        c = int(y[i])
        x[i, 0, :, 2 * c + 1: 2 * c + 4] += 1.0
    return x, y


# ----------------------------------------------------------------------------
# 3(a). Tutorial network, explicit state
# ----------------------------------------------------------------------------

class Net(nn.Module):
    """snnTorch tutorial 5 with ``snn.Leaky(beta=beta)`` replaced by ``fptt_ext.LTC(beta=beta)``."""

    def __init__(self, num_inputs=10, num_hidden=16, num_outputs=3, beta=0.9, num_steps=T):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = fptt_ext.LTC(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = fptt_ext.LTC(beta=beta)

    def forward(self, x):
        mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def _tutorial_loss(mem_rec, y):
    return sum(F.cross_entropy(mem_rec[t], y) for t in range(mem_rec.shape[0]))


def test_tutorial_net_explicit_state_trains():
    torch.manual_seed(0)
    x, y = _toy_vectors()
    net = Net()
    n_before = sum(1 for _ in net.parameters())
    net(x)  # lazy gates: build them before creating the optimizer
    names = {n for n, _ in net.named_parameters()}
    assert {"lif1.gate_m.weight", "lif1.gate_adp.weight", "lif2.gate_m.bias"} <= names
    assert sum(1 for _ in net.parameters()) == n_before + 8
    assert net.lif1.gate_m.weight.shape == (16, 32)

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.no_grad():
        loss0 = _tutorial_loss(net(x)[1], y).item()
    gate_before = net.lif1.gate_m.weight.detach().clone()
    for _ in range(20):
        spk_rec, mem_rec = net(x)
        loss = _tutorial_loss(mem_rec, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        spk_rec, mem_rec = net(x)
        loss1 = _tutorial_loss(mem_rec, y).item()
    assert loss1 < 0.85 * loss0, (loss0, loss1)  # ~0.6-0.7 over seeds 0-5
    assert not torch.equal(gate_before, net.lif1.gate_m.weight)  # the gates are trained
    assert spk_rec.shape == (T, 24, 3)


# ----------------------------------------------------------------------------
# 3(b). Tutorial conv network, init_hidden=True in nn.Sequential
# ----------------------------------------------------------------------------

def _conv_net(beta=0.9):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.MaxPool2d(2),
        fptt_ext.LTC(beta=beta, init_hidden=True),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
        fptt_ext.LTC(beta=beta, init_hidden=True, output=True),
    )


def _forward_pass(net, num_steps, data):
    mem_rec, spk_rec = [], []
    snntorch.utils.reset(net)  # resets hidden states for all LIF neurons in net
    for _ in range(num_steps):
        spk_out, mem_out = net(data)
        spk_rec.append(spk_out)
        mem_rec.append(mem_out)
    return torch.stack(spk_rec), torch.stack(mem_rec)


def test_sequential_conv_init_hidden_trains():
    torch.manual_seed(1)
    x, y = _toy_images()
    net = _conv_net()
    _forward_pass(net, 2, x)  # build lazy gates
    assert type(net[2].gate_m).__name__ == "ConvGate"
    assert type(net[5].gate_m).__name__ == "DenseGate"
    hidden_out = net[:3](x)
    assert isinstance(hidden_out, torch.Tensor) and hidden_out.shape == (12, 4, 4, 4)  # init_hidden: spk only

    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def loss_fn(mem_rec):
        return sum(F.cross_entropy(m, y) for m in mem_rec)

    with torch.no_grad():
        loss0 = loss_fn(_forward_pass(net, 5, x)[1]).item()
    for _ in range(20):
        spk_rec, mem_rec = _forward_pass(net, 5, x)
        loss = loss_fn(mem_rec)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        spk_rec, mem_rec = _forward_pass(net, 5, x)
        loss1 = loss_fn(mem_rec).item()
    assert loss1 < 0.9 * loss0, (loss0, loss1)
    assert spk_rec.shape == (5, 12, 3)


def test_init_hidden_rejects_explicit_mem():
    lif = fptt_ext.LTC(init_hidden=True, size=3)
    with pytest.raises(TypeError):
        lif(torch.rand(2, 3), torch.zeros(2, 3))


# ----------------------------------------------------------------------------
# 3(c). Resets and detach
# ----------------------------------------------------------------------------

def _run_seq(net, xs):
    outs = []
    for x in xs:
        spk, mem = net(x)
        outs.append(torch.cat([spk.flatten(), mem.flatten()]))
    return torch.stack(outs)


def _neurons(net):
    return [m for m in net if isinstance(m, fptt_ext.LTC)]


def _assert_states_zero(net):
    for m in _neurons(net):
        for name in ("mem", "b", "spk"):
            state = getattr(m, name)
            assert state.numel() > 0, name
            assert torch.count_nonzero(state) == 0, name


def _assert_states_nonzero(net):
    for m in _neurons(net):
        assert torch.count_nonzero(m.mem) > 0
        assert torch.count_nonzero(m.b) > 0  # b > 0 only after some spike
    assert any(torch.count_nonzero(m.spk) > 0 for m in _neurons(net))


def _reset_snntorch_utils(net):
    snntorch.utils.reset(net)


def _reset_mem(net):
    for m in _neurons(net):
        m.reset_mem()


def _reset_hidden_instance(net):
    for m in _neurons(net):
        m.reset_hidden()


def _reset_hidden_class(net):
    fptt_ext.LTC.reset_hidden()


def _reset_sj(net):
    from spikingjelly.activation_based import functional

    functional.reset_net(net)


@pytest.mark.parametrize(
    "reset", [_reset_snntorch_utils, _reset_mem, _reset_hidden_instance, _reset_hidden_class, _reset_sj]
)
def test_reset_gives_identical_reruns(reset):
    torch.manual_seed(2)
    net = _conv_net()
    with torch.no_grad():
        net(torch.zeros(3, 1, 8, 8))  # build the lazy gates
        net[4].weight.mul_(4.0)  # make sure the output layer spikes too
    xs = 2.0 * torch.rand(6, 3, 1, 8, 8)
    snntorch.utils.reset(net)
    with torch.no_grad():
        out1 = _run_seq(net, xs)
        _assert_states_nonzero(net)
        # no reset: the second run starts from the carried-over state
        out_noreset = _run_seq(net, xs)
        assert not torch.equal(out1, out_noreset)
        reset(net)
        _assert_states_zero(net)
        out2 = _run_seq(net, xs)
    assert torch.equal(out1, out2)


def test_class_reset_hidden_reaches_every_instance():
    a, b = fptt_ext.LTC(size=3, init_hidden=True), fptt_ext.LTC(size=3, init_hidden=True)
    a(torch.full((1, 3), 5.0))
    b(torch.full((1, 3), 5.0))
    assert torch.count_nonzero(a.spk) == 3 and torch.count_nonzero(b.spk) == 3
    fptt_ext.LTC.reset_hidden()
    for m in (a, b):
        for s in (m.mem, m.b, m.spk):
            assert s.shape == (1, 3) and torch.count_nonzero(s) == 0


def test_explicit_state_rerun_with_reset_mem():
    torch.manual_seed(3)
    lif = fptt_ext.LTC(size=5)
    xs = torch.rand(8, 2, 5)

    def run():
        mem = lif.reset_mem()
        rec = []
        for x in xs:
            spk, mem = lif(x, mem)
            rec.append(torch.cat([spk, mem, lif.b], dim=-1))
        return torch.stack(rec)

    with torch.no_grad():
        r1 = run()
        r2 = run()
        assert torch.equal(r1, r2)
        # continuing without reset_mem: b and spk are carried over
        rec = []
        mem = lif.mem
        for x in xs:
            spk, mem = lif(x, mem)
            rec.append(torch.cat([spk, mem, lif.b], dim=-1))
        assert not torch.equal(r1, torch.stack(rec))
    assert r1[..., :5].sum() > 0


@pytest.mark.parametrize("how", ["instance", "class", "snntorch_utils", "sj_detach"])
def test_detach_hidden(how):
    torch.manual_seed(4)
    net = _conv_net()
    snntorch.utils.reset(net)
    xs = 2.0 * torch.rand(3, 2, 1, 8, 8)
    for x in xs:
        net(x)
    for m in _neurons(net):
        assert m.mem.grad_fn is not None and m.b.grad_fn is not None and m.spk.grad_fn is not None
    before = [(m.mem.clone(), m.b.clone(), m.spk.clone()) for m in _neurons(net)]
    if how == "instance":
        for m in _neurons(net):
            m.detach_hidden()
    elif how == "class":
        fptt_ext.LTC.detach_hidden()
    elif how == "snntorch_utils":
        snntorch.utils.reset(net)  # reset + detach
    else:
        from spikingjelly.activation_based import functional

        functional.detach_net(net)
    for m, (mem, b, spk) in zip(_neurons(net), before):
        for s in (m.mem, m.b, m.spk):
            assert s.grad_fn is None and not s.requires_grad
        if how != "snntorch_utils":  # detach keeps the values
            assert torch.equal(m.mem, mem) and torch.equal(m.b, b) and torch.equal(m.spk, spk)
    # training continues from detached states
    loss = sum(net(xs[0])[1].sum() for _ in range(2))
    loss.backward()


def test_snntorch_class_detach_hidden_truncates_all_states():
    """snnTorch's own ``snn.Leaky.detach_hidden()`` (what snntorch.backprop.TBPTT calls)
    only does ``mem.detach_()``; b and spk must be cut too, or the next window's
    backward runs into the freed graph of the previous one."""
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(4, 3), fptt_ext.LTC(init_hidden=True, output=True))
    x = torch.rand(2, 4) + 1.0

    def window(model):
        loss = 0.0
        for _ in range(3):
            spk, mem = model(x)
            loss = loss + mem.pow(2).sum() + spk.sum()
        return loss

    snntorch.utils.reset(net)
    window(net).backward()
    snn.Leaky.detach_hidden()
    lif = net[1]
    state = (lif.mem.detach().clone(), lif.b.detach().clone(), lif.spk.detach().clone())
    assert torch.count_nonzero(state[1]) > 0 and torch.count_nonzero(state[2]) > 0
    net.zero_grad()
    window(net).backward()  # must not touch window 1's graph
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}

    # reference: a copy started from the (detached) state values
    ref = nn.Sequential(nn.Linear(4, 3), fptt_ext.LTC(init_hidden=True, output=True, size=3))
    ref.load_state_dict(net.state_dict())
    ref[1].mem = state[0].clone()
    ref[1].b, ref[1].spk = state[1].clone(), state[2].clone()
    window(ref).backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(p.grad, grads[n], rtol=1e-6, atol=1e-7), n


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_snntorch_backprop_tbptt_runs_with_ltc():
    import snntorch.functional as SF
    from snntorch import backprop

    torch.manual_seed(10)
    net = nn.Sequential(nn.Linear(4, 3), fptt_ext.LTC(init_hidden=True, output=True, size=3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = [(torch.rand(2, 4) + 1.0, torch.tensor([0, 1]))]
    loss = backprop.TBPTT(net, data, opt, SF.ce_rate_loss(), num_steps=4, time_var=False, K=2)
    assert torch.isfinite(torch.as_tensor(loss)).all()


def _functional_reference_grads(lif, xs, w, **kw):
    from fptt_ext.neurons.functional import ltc_step

    z = torch.zeros_like(xs[0])
    m, b, s = z, z, z
    loss = 0.0
    for t in range(xs.shape[0]):
        s, m, b = ltc_step(xs[t], m, b, s, lif.gate_m, lif.gate_adp, b0=0.1, beta_a=1.8, spike_fn=lif.spike_grad, **kw)
        loss = loss + (w[t] * s).sum()
    return torch.autograd.grad(loss, lif.gate_adp.weight)[0]


def _module_grads(lif, xs, w):
    loss = sum((w[t] * lif(xs[t])[0]).sum() for t in range(xs.shape[0]))
    return torch.autograd.grad(loss, lif.gate_adp.weight)[0]


@pytest.mark.parametrize("learn_beta", [True, False])
def test_bptt_gradients_match_functional_loop(learn_beta):
    torch.manual_seed(11)
    lif = fptt_ext.LTC(size=3, learn_beta=learn_beta).double()
    xs = torch.rand(4, 2, 3, dtype=torch.float64) + 0.5
    w = torch.randn(4, 2, 3, dtype=torch.float64)
    g_mod = _module_grads(lif, xs, w)
    assert torch.count_nonzero(g_mod) > 0
    assert torch.allclose(g_mod, _functional_reference_grads(lif, xs, w), rtol=1e-10, atol=1e-12)


def test_bptt_gradients_match_functional_loop_detach_reset_frozen_gate_m():
    torch.manual_seed(11)
    lif = fptt_ext.LTC(size=3, learn_beta=False, detach_reset=True).double()
    xs = torch.rand(4, 2, 3, dtype=torch.float64) + 0.5
    w = torch.randn(4, 2, 3, dtype=torch.float64)
    g_mod = _module_grads(lif, xs, w)
    g_ref = _functional_reference_grads(lif, xs, w, detach_reset=True)
    assert torch.allclose(g_mod, g_ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# 6. Gradients reach the gates
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind,form", [("ltc", "dense"), ("ltc", "conv"), ("alif", "dense"), ("alif", "conv")])
def test_gradients_reach_gates(kind, form):
    torch.manual_seed(5)
    cls = fptt_ext.LTC if kind == "ltc" else fptt_ext.ALIF
    if form == "dense":
        mod, xs = cls(size=6), 0.3 + torch.rand(5, 4, 6)
    else:
        mod, xs = cls(size=2, conv=True), 0.3 + torch.rand(5, 2, 2, 4, 4)
    w = torch.randn(xs.shape[1:])
    loss, spikes = 0.0, 0.0
    for x in xs:
        spk, _mem = mod(x)
        loss = loss + (w * spk).sum()
        spikes += spk.sum().item()
    assert spikes > 0
    loss.backward()
    for gate in (mod.gate_m, mod.gate_adp):
        grads = [p.grad for p in gate.parameters()]
        assert grads and all(g is not None for g in grads)
        assert any(torch.count_nonzero(g) > 0 for g in grads), type(gate).__name__
    if form == "conv" and kind == "ltc":
        assert torch.count_nonzero(mod.gate_m.conv.weight.grad) > 0
        assert torch.count_nonzero(mod.gate_adp.conv.weight.grad) > 0


def test_gradients_reach_li_gate():
    torch.manual_seed(6)
    li = fptt_ext.LI(size=3)
    for x in torch.randn(4, 2, 3):
        out = li(x)
    out.pow(2).sum().backward()
    assert torch.count_nonzero(li.gate_m.weight.grad) > 0


def test_learn_beta_false_freezes_gate():
    lif = fptt_ext.LTC(size=3, learn_beta=False)
    assert not any(p.requires_grad for p in lif.gate_m.parameters())
    assert all(p.requires_grad for p in lif.gate_adp.parameters())


# ----------------------------------------------------------------------------
# 7. state_dict round trip, dtypes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "factory,shape",
    [
        (lambda: fptt_ext.LTC(size=5), (3, 5)),
        (lambda: fptt_ext.LTC(size=2, conv=True), (3, 2, 4, 4)),
        (lambda: fptt_ext.ALIF(size=5), (3, 5)),
        (lambda: fptt_ext.LI(size=5), (3, 5)),
    ],
)
def test_state_dict_round_trip(factory, shape, tmp_path):
    torch.manual_seed(7)
    src = factory()
    xs = 1.0 + torch.randn(6, *shape)
    # perturb the weights (and BN running stats) away from any default init
    opt = torch.optim.SGD(src.parameters(), lr=0.5)
    for x in xs:
        out = src(x)
        (out[1] if isinstance(out, tuple) else out).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        src.detach_hidden()
    path = tmp_path / "neuron.pt"
    torch.save(src.state_dict(), path)

    dst = factory()
    assert any(not torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    dst.load_state_dict(torch.load(path))
    for mode in ("train", "eval"):
        getattr(src, mode)()
        getattr(dst, mode)()
        src.reset_mem()
        dst.reset_mem()
        with torch.no_grad():
            for x in xs:
                a, b = src(x), dst(x)
                if isinstance(a, tuple):
                    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                else:
                    assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [fptt_ext.LTC, fptt_ext.ALIF, fptt_ext.LI])
@pytest.mark.parametrize("conv", [False, True])
def test_float32_and_float64(cls, conv):
    torch.manual_seed(8)
    shape = (2, 3, 4, 4) if conv else (2, 3)
    mod = cls(size=3, conv=conv)
    out = mod(torch.rand(shape))
    out = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == torch.float32 for o in out)

    mod = mod.double()
    mod.reset_mem()
    out = mod(torch.rand(shape, dtype=torch.float64))
    out = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == torch.float64 for o in out)
    assert mod.mem.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in mod.parameters())

    lazy = cls()
    out = lazy(torch.rand(shape, dtype=torch.float64))  # gates built in the input's dtype
    out = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == torch.float64 for o in out)


def test_subclasses_leaky():
    for cls in (fptt_ext.LTC, fptt_ext.ALIF, fptt_ext.LI):
        assert issubclass(cls, snn.Leaky)
    # beta only initialises gate_m: no fixed-decay buffer is left behind
    assert "beta" not in dict(fptt_ext.LTC(size=2, beta=0.9).named_buffers())
