"""SpikingJelly adapters (fptt_ext.spikingjelly.LTCNode / ALIFNode / LINode).

Covers: multi-step == loop of single steps (to rounding), the PLIF FashionMNISTNet with
LTC-SN nodes, reset_net / detach_net, gradients into the gates, state_dict
round trips and float32/float64 operation.
"""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from spikingjelly.activation_based.model.parametric_lif_net import FashionMNISTNet
from torch import nn

from fptt_ext.spikingjelly import ALIFNode, LINode, LTCNode

CASES = [
    ("ltc-dense", lambda **kw: LTCNode(size=6, **kw), (6, 3, 6)),
    ("ltc-conv", lambda **kw: LTCNode(size=3, conv=True, **kw), (6, 2, 3, 4, 4)),
    ("ltc-subtract", lambda **kw: LTCNode(size=6, v_reset=None, **kw), (6, 3, 6)),
    ("alif-dense", lambda **kw: ALIFNode(size=6, beta=0.5, **kw), (6, 3, 6)),
    ("alif-conv", lambda **kw: ALIFNode(size=3, conv=True, beta=0.5, **kw), (6, 2, 3, 4, 4)),
    ("li-dense", lambda **kw: LINode(size=6, **kw), (6, 3, 6)),
    ("li-conv", lambda **kw: LINode(size=3, conv=True, **kw), (6, 2, 3, 4, 4)),
]
IDS = [c[0] for c in CASES]



def _memories(node):
    return {k: v for k, v in node.named_memories()} if hasattr(node, "named_memories") else dict(node._memories)


# ----------------------------------------------------------------------------
# 4. Multi-step == loop of single steps
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,factory,shape", CASES, ids=IDS)
def test_multistep_equals_single_step_loop(name, factory, shape):
    torch.manual_seed(0)
    node = factory(step_mode="m")
    xs = 0.5 + torch.randn(shape)
    out_m = node(xs)
    assert out_m.shape == xs.shape
    final_m = {k: v.clone() for k, v in _memories(node).items()}
    assert set(final_m) == ({"v"} if name.startswith("li") else {"v", "b", "s"})

    functional.reset_net(node)
    functional.set_step_mode(node, "s")
    out_s = torch.stack([node(x) for x in xs])
    # the window loop computes the gates' input share for all steps in one product: the same
    # math, summed in another order (tests/test_neurons_multistep.py: equal to SpikingJelly's
    # own loop over the single step to float64 rounding)
    if not name.startswith("li"):
        assert torch.equal(out_m, out_s)  # the same spikes
    torch.testing.assert_close(out_m, out_s, rtol=1e-5, atol=1e-6)
    for k, v in _memories(node).items():
        torch.testing.assert_close(v, final_m[k], rtol=1e-5, atol=1e-6, msg=k)
    if not name.startswith("li"):
        assert 0 < out_m.sum() < out_m.numel()  # some, not all, neurons spiked
        assert torch.equal(out_m[-1], node.s)


def test_multistep_equals_single_step_loop_in_a_network_with_grads():
    torch.manual_seed(1)
    net = nn.Sequential(layer.Linear(5, 6), LTCNode(), layer.Linear(6, 3), LINode())
    xs = torch.rand(4, 2, 5)
    functional.set_step_mode(net, "m")
    out_m = net(xs)
    out_m.pow(2).sum().backward()
    grads_m = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    functional.reset_net(net)
    functional.set_step_mode(net, "s")
    out_s = torch.stack([net(x) for x in xs])
    out_s.pow(2).sum().backward()
    torch.testing.assert_close(out_m, out_s, rtol=1e-5, atol=1e-6)
    assert {n for n in grads_m} == {n for n, _ in net.named_parameters()}
    for n, p in net.named_parameters():
        assert torch.allclose(p.grad, grads_m[n], rtol=1e-6, atol=1e-7), n


# ----------------------------------------------------------------------------
# 4. FashionMNISTNet (PLIF net of SpikingJelly) with LTC-SN nodes
# ----------------------------------------------------------------------------

def test_fashion_mnist_net_with_ltc_nodes():
    torch.manual_seed(2)
    net = FashionMNISTNet(channels=4, spiking_neuron=LTCNode)
    functional.set_step_mode(net, "m")
    x = torch.rand(3, 2, 1, 28, 28)
    out = net(x)
    assert out.shape == (3, 2, 10)
    nodes = [m for m in net.modules() if isinstance(m, LTCNode)]
    assert len(nodes) == 4
    assert [type(n.gate_m).__name__ for n in nodes] == ["ConvGate", "ConvGate", "DenseGate", "DenseGate"]
    assert [n.size for n in nodes] == [4, 4, 2048, 100]

    loss = nn.functional.cross_entropy(out.mean(0), torch.tensor([1, 7]))
    loss.backward()
    gate_grads = {n: p.grad for n, p in net.named_parameters() if ".gate_" in n}
    assert gate_grads, "gate parameters missing from net.parameters()"
    nonzero = [n for n, g in gate_grads.items() if g is not None and torch.count_nonzero(g) > 0]
    assert any("gate_m" in n for n in nonzero), nonzero
    assert any("gate_adp" in n for n in nonzero), nonzero
    # the first conv layer's gates get gradient through the whole network
    first = [n for n in nonzero if n.startswith("conv_fc.2.")]
    assert first, nonzero

    # reset_net zeroes v, b, s of every node
    for node in nodes:
        for k in ("v", "b", "s"):
            assert isinstance(getattr(node, k), torch.Tensor)
    assert any(torch.count_nonzero(node.b) > 0 for node in nodes)
    functional.reset_net(net)
    for node in nodes:
        for k in ("v", "b", "s"):
            val = torch.as_tensor(getattr(node, k))
            assert torch.count_nonzero(val) == 0, k

    # after the reset, the same input gives the same output (no state leak)
    net.eval()
    with torch.no_grad():
        o1 = net(x)
        net(x)
        functional.reset_net(net)
        o2 = net(x)
    assert torch.equal(o1, o2)


def test_reset_net_makes_reruns_identical():
    torch.manual_seed(3)
    net = nn.Sequential(layer.Linear(4, 5), LTCNode(), layer.Linear(5, 3), LTCNode(), layer.Linear(3, 2), LINode())
    functional.set_step_mode(net, "m")
    xs = 2.0 * torch.rand(6, 2, 4)
    with torch.no_grad():
        o1 = net(xs)
        o_noreset = net(xs)
        functional.reset_net(net)
        o2 = net(xs)
    assert torch.equal(o1, o2)
    assert not torch.equal(o1, o_noreset)
    assert net[3].s.sum() > 0  # reset_net(net) then did reach the nested node's state


def test_reset_net_zeros_states():
    torch.manual_seed(4)
    node = LTCNode(step_mode="m")
    node(1.0 + torch.rand(5, 2, 3))
    assert torch.count_nonzero(node.v) > 0 and torch.count_nonzero(node.b) > 0
    assert torch.count_nonzero(node.s) > 0
    functional.reset_net(node)
    for k in ("v", "b", "s"):
        assert torch.count_nonzero(torch.as_tensor(getattr(node, k))) == 0
    # new batch size after a reset works
    assert node(torch.rand(2, 7, 3)).shape == (2, 7, 3)


@pytest.mark.parametrize("factory", [lambda: LTCNode(size=3), lambda: ALIFNode(size=3), lambda: LINode(size=3)])
def test_detach_net_detaches(factory):
    torch.manual_seed(5)
    node = factory()
    w = torch.ones(3, requires_grad=True)
    for _ in range(3):
        node(torch.rand(2, 3) * w + 0.2)
    names = list(_memories(node))
    before = {k: getattr(node, k).clone() for k in names}
    for k in names:
        assert getattr(node, k).requires_grad, k
    functional.detach_net(node)
    for k in names:
        t = getattr(node, k)
        assert t.grad_fn is None and not t.requires_grad, k
        assert torch.equal(t, before[k]), k
    out = node(torch.rand(2, 3) * w)
    out.sum().backward()  # backward only through the last step works
    assert w.grad is not None


# ----------------------------------------------------------------------------
# 6. Gradients reach the gates
# ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "factory,shape",
    [
        (lambda: LTCNode(size=6, step_mode="m"), (5, 4, 6)),
        (lambda: LTCNode(size=2, conv=True, step_mode="m"), (5, 2, 2, 4, 4)),
        (lambda: ALIFNode(size=6, step_mode="m"), (5, 4, 6)),
        (lambda: ALIFNode(size=2, conv=True, step_mode="m"), (5, 2, 2, 4, 4)),
    ],
)
def test_gradients_reach_gates(factory, shape):
    torch.manual_seed(6)
    node = factory()
    xs = 0.3 + torch.rand(shape)
    spk = node(xs)
    assert spk.sum() > 0
    (torch.randn(shape) * spk).sum().backward()
    for gate in (node.gate_m, node.gate_adp):
        grads = [p.grad for p in gate.parameters()]
        assert grads and all(g is not None for g in grads)
        assert any(torch.count_nonzero(g) > 0 for g in grads), type(gate).__name__


def test_gradients_reach_li_gate():
    torch.manual_seed(7)
    node = LINode(size=3, step_mode="m")
    node(torch.randn(4, 2, 3)).pow(2).sum().backward()
    assert torch.count_nonzero(node.gate_m.weight.grad) > 0


# ----------------------------------------------------------------------------
# 7. state_dict round trip, dtypes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,factory,shape", CASES, ids=IDS)
def test_state_dict_round_trip(name, factory, shape, tmp_path):
    torch.manual_seed(8)
    src = factory(step_mode="m")
    xs = 1.0 + torch.randn(shape)
    opt = torch.optim.SGD(src.parameters(), lr=0.5)
    for _ in range(2):  # move weights (and BN running stats) away from init
        src(xs).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        functional.reset_net(src)
    torch.save(src.state_dict(), tmp_path / "node.pt")
    dst = factory(step_mode="m")
    assert any(not torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    dst.load_state_dict(torch.load(tmp_path / "node.pt"))
    for mode in ("train", "eval"):
        for m in (src, dst):
            getattr(m, mode)()
            functional.reset_net(m)
        with torch.no_grad():
            assert torch.equal(src(xs), dst(xs))


@pytest.mark.parametrize("name,factory,shape", CASES, ids=IDS)
def test_float32_and_float64(name, factory, shape):
    node = factory(step_mode="m")
    assert node(torch.rand(shape)).dtype == torch.float32
    functional.reset_net(node)
    node = node.double()
    out = node(torch.rand(shape, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert node.v.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in node.parameters())


def test_lazy_node_builds_gates_in_input_dtype():
    node = LTCNode(step_mode="m")
    out = node(torch.rand(3, 2, 4, dtype=torch.float64))
    assert out.dtype == torch.float64 and node.gate_m.weight.dtype == torch.float64
    assert node.size == 4 and node.gate_m.weight.shape == (4, 8)
