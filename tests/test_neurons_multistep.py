"""SpikingJelly multi-step mode: the nodes' own window loop (ltc_multi_step / li_multi_step)
against SpikingJelly's generic loop over the single step, with the same weights."""

import pytest
import torch
from spikingjelly.activation_based import base, surrogate
from spikingjelly.activation_based import functional as sj_functional

from fptt_ext.neurons.fused import use_fused
from fptt_ext.spikingjelly import ALIFNode, LINode, LTCNode


def _generic(cls):
    return type(f"Generic{cls.__name__}", (cls,),
                {"multi_step_functional_forward": base.MemoryModule.multi_step_functional_forward})


def _pair(cls, shape, **kwargs):
    conv = len(shape) == 5
    torch.manual_seed(0)
    fast = cls(step_mode="m", size=shape[2], conv=conv or None, **kwargs).double()
    generic = _generic(cls)(step_mode="m", size=shape[2], conv=conv or None, **kwargs).double()
    generic.load_state_dict(fast.state_dict())
    return fast, generic


def _run(node, x, w):
    x = x.clone().requires_grad_()
    y = node(x)
    (y * w).sum().backward()
    states = [getattr(node, k) for k in node._memories]
    return y.detach(), [s.detach() for s in states], x.grad, [p.grad.clone() for p in node.parameters()]


CASES = [
    (LTCNode, {}),
    (LTCNode, {"v_reset": None, "detach_reset": True}),
    (LTCNode, {"surrogate_function": surrogate.Sigmoid()}),
    (LTCNode, {"surrogate_function": surrogate.PiecewiseQuadratic()}),  # not fused: the plain step
    (LTCNode, {"liquid_adp": False, "detach_adaptation": True}),
    (ALIFNode, {}),
    (LINode, {}),
]


@pytest.mark.parametrize("shape", [(7, 3, 5), (4, 2, 3, 5, 5)], ids=["dense", "conv"])
@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda c: getattr(c, "__name__", None) or str(c))
def test_the_window_loop_equals_spikingjellys_loop_over_the_single_step(cls, kwargs, shape):
    fast, generic = _pair(cls, shape, **kwargs)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 0.6
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    a, b = _run(fast, x, w), _run(generic, x, w)
    if cls is not LINode:
        assert torch.equal(a[0], b[0])  # the same spikes
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)
    for sa, sb in zip(a[1], b[1]):
        torch.testing.assert_close(sa, sb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a[2], b[2], rtol=1e-10, atol=1e-12)
    assert len(a[3]) == len(b[3]) > 0
    for ga, gb in zip(a[3], b[3]):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_the_window_loop_continues_a_run_as_single_steps_do():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), LTCNode(size=6), torch.nn.Linear(6, 3), LINode(size=3))
    x = torch.rand(10, 2, 4, generator=torch.Generator().manual_seed(2))
    sj_functional.set_step_mode(net, "m")
    windows = torch.cat([net(x[:4]), net(x[4:])])  # two windows, the state carried over
    sj_functional.reset_net(net)
    sj_functional.set_step_mode(net, "s")
    steps = torch.stack([net(x[t]) for t in range(10)])
    torch.testing.assert_close(windows, steps, rtol=1e-5, atol=1e-6)


def test_store_v_seq_keeps_every_steps_membrane():
    torch.manual_seed(0)
    node = LTCNode(step_mode="m", store_v_seq=True, size=3)
    x = torch.rand(6, 2, 3) * 0.5
    node(x)
    single = LTCNode(size=3)
    single.load_state_dict(node.state_dict())
    membranes = []
    for t in range(6):
        single(x[t])
        membranes.append(single.v)
    assert node.v_seq.shape == (6, 2, 3)
    torch.testing.assert_close(node.v_seq, torch.stack(membranes), rtol=1e-5, atol=1e-6)
    assert torch.equal(node.v_seq[-1], node.v)
    sj_functional.reset_net(node)
    assert node.v_seq is None


def test_the_reference_path_calls_the_gates_step_by_step():
    node = LTCNode(step_mode="m", size=3)
    calls = {"precompute": 0}
    original = type(node.gate_m).precompute

    def spy(self, cur_seq):
        calls["precompute"] += 1
        return original(self, cur_seq)

    x = torch.rand(5, 2, 3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(node.gate_m), "precompute", spy)
        with use_fused(False):
            ref = node(x)
        assert calls["precompute"] == 0
        sj_functional.reset_net(node)
        fast = node(x)
        assert calls["precompute"] == 2  # gate_m and gate_adp, once per window
    torch.testing.assert_close(fast, ref)
