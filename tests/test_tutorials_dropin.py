"""The drop-in on the tutorials' own networks (fptt_ext.bench.tutorials), at a CI-sized budget.

The full measurement (a whole epoch of the 4,000 real MNIST images, several seeds, all three
snnTorch tutorials and SpikingJelly's PLIF network) is ``scripts/bench_tutorials.py``, table in
docs/snntorch-tutorials.md. Here: snnTorch's tutorial 5 network with every ``snn.Leaky``
swapped for ``fptt_ext.LTC`` reaches within 3 points of the Leaky network after the same
short training on real MNIST images; tutorials 6 and 7 and the SpikingJelly network train
with the swapped neuron; SpikingJelly's ``reset_net``, ``detach_net``, ``set_step_mode`` and
``monitor`` work on the swapped PLIF network.
"""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, monitor

from fptt_ext.bench import tutorials as tut
from fptt_ext.spikingjelly import LTCNode


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_tutorial5_ltc_within_3_points_of_leaky():
    """Half an epoch (2,048 of the 4,000 training images), all 1,000 test images, seed 0."""
    data = tut._mnist(2048, None)
    leaky = tut.run_tutorial("t5", "leaky", data=data)
    ltc = tut.run_tutorial("t5", "ltc", data=data)
    assert leaky["test_accuracy"] > 0.6, leaky  # the budget is enough for the Leaky network to learn
    assert ltc["test_accuracy"] >= leaky["test_accuracy"] - 0.03, (leaky["test_accuracy"], ltc["test_accuracy"])


def test_tutorial6_with_ltc_learns():
    """The CSNN in nn.Sequential (init_hidden, output, utils.reset, SF.ce_rate_loss), 10 steps, 8 batches."""
    r = tut.run_tutorial("t6", "ltc", train_limit=1024, test_limit=500, num_steps=10)
    assert r["test_accuracy"] > 0.25, r  # chance is 0.1 (0.37 measured; snn.Leaky: 0.17 at this budget)


def test_tutorial7_event_pipeline_and_gradients():
    """tonic's Denoise + ToFrame + PadTensors on the saccade events; SF.mse_count_loss reaches every gate."""
    import snntorch.functional as SF
    import tonic

    from fptt_ext import LTC
    from fptt_ext.data.saccades import saccade_mnist

    events, _ = saccade_mnist("train", limit=1)[0]
    assert len(tonic.transforms.Denoise(filter_time=10_000)(events)) < len(events)  # the noise goes
    frames, labels = tut.event_frames("train", limit=16)
    assert frames.shape[1:] == (16, 2, 34, 34) and frames.shape[0] >= 25 and frames.sum() > 0
    torch.manual_seed(0)
    net = tut.tutorial7_net(LTC)
    spk, mem = tut.forward_pass(net, frames)
    assert spk.shape == mem.shape == (frames.shape[0], 16, 10)
    SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, labels).backward()
    for neuron in (m for m in net if isinstance(m, LTC)):
        assert neuron.gate_m.parameters().__next__().grad.abs().sum() > 0


def _sj_net():
    torch.manual_seed(0)
    net = tut.sj_fashion_net("ltc", channels=4)
    net(torch.zeros(1, 2, 1, 28, 28))
    functional.reset_net(net)
    return net


def test_sj_reset_net_gives_identical_reruns_and_set_step_mode_agrees():
    net = _sj_net()
    net.eval()
    x = torch.rand(4, 3, 1, 28, 28)
    with torch.no_grad():
        out1 = net(x)
        functional.reset_net(net)
        out2 = net(x)
        assert torch.equal(out1, out2)
        functional.reset_net(net)
        functional.set_step_mode(net, "s")
        out_s = torch.stack([net(x_t) for x_t in x])
    assert torch.allclose(out1, out_s)


def test_sj_detach_net_cuts_every_ltc_state():
    net = _sj_net()
    net(torch.rand(3, 2, 1, 28, 28)).sum().backward()
    nodes = [m for m in net.modules() if isinstance(m, LTCNode)]
    assert len(nodes) == 4 and all(n.v.grad_fn is not None for n in nodes)
    functional.detach_net(net)
    assert all(n.v.grad_fn is None and n.b.grad_fn is None and n.s.grad_fn is None for n in nodes)
    net(torch.rand(3, 2, 1, 28, 28)).sum().backward()  # trains on from the detached state


def test_sj_monitors_record_the_ltc_layers():
    net = _sj_net()
    spikes = monitor.OutputMonitor(net, LTCNode)
    membranes = monitor.AttributeMonitor("v", pre_forward=False, net=net, instance=LTCNode)
    net(torch.rand(3, 2, 1, 28, 28))
    assert len(spikes.records) == 4 and spikes.records[0].shape == (3, 2, 4, 28, 28)
    assert len(membranes.records) == 4
    rates = [float(r.detach().mean()) for r in spikes.records]
    assert all(0.0 <= r <= 1.0 for r in rates) and max(rates) > 0
    spikes.remove_hooks()
    membranes.remove_hooks()


def test_run_sj_trains_and_scores_every_epoch():
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    x = x * 0.2 + (y.float() / 10).view(-1, 1, 1, 1)  # brightness tells the class
    r = tut.run_sj("ltc", T=2, channels=4, batch_size=20, epochs=3, data=(x, y, x, y))
    assert r["batches"] == 2 and len(r["test_accuracy_per_epoch"]) == 3
