"""RecurrentSpiking: the current its neuron receives is ``I_t = W_in x_t + b + W_rec s_{t-1}``,
checked against numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch

import fptt_ext
from fptt_ext import RecurrentSpiking


def _layer():
    # ALIF with constant gates: alpha = 1 - exp(-1/20) = 0.0488 at start, threshold 0.1 on the first step
    layer = RecurrentSpiking(2, 2, fptt_ext.ALIF(init_hidden=True, size=2))
    with torch.no_grad():
        layer.fc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        layer.fc.bias.copy_(torch.tensor([0.5, 0.0]))
        layer.rec.weight.copy_(torch.tensor([[0.0, 3.0], [-2.0, 0.0]]))
    currents = []
    layer.neuron.register_forward_pre_hook(lambda module, args: currents.append(args[0].detach().clone()))
    return layer, currents


def test_input_current_is_w_in_x_plus_w_rec_times_the_last_spike():
    layer, currents = _layer()
    s1 = layer(torch.tensor([[5.0, -5.0]]))
    # I_1 = W_in x_1 + b = [5 - 10 + 0.5, 0 + 5] = [-4.5, 5] (s_0 = 0); u_1 = 0.0488 I_1: only neuron 2
    # crosses 0.1
    assert currents[0].tolist() == [[-4.5, 5.0]]
    assert s1.tolist() == [[0.0, 1.0]]
    layer(torch.tensor([[1.0, 1.0]]))
    # I_2 = W_in x_2 + b + W_rec s_1 = [1 + 2 + 0.5, -1] + [3 * 1, -2 * 0] = [6.5, -1]
    assert currents[1].tolist() == [[6.5, -1.0]]


def test_a_new_sequence_starts_without_recurrent_input():
    layer, currents = _layer()
    layer(torch.tensor([[5.0, -5.0]]))
    layer.neuron.reset_mem()  # what snntorch.utils.reset / StatefulModules.reset do
    layer(torch.tensor([[1.0, 1.0]]))
    assert currents[1].tolist() == [[3.5, -1.0]]  # W_in x + b only: s_0 = 0 again
    layer(torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]]))  # another batch size: a new sequence too
    assert currents[2].tolist() == [[3.5, -1.0], [0.5, 0.0], [2.5, 0.0]]


def test_the_neuron_must_keep_its_state():
    with pytest.raises(ValueError, match="init_hidden=True"):
        RecurrentSpiking(2, 2, fptt_ext.ALIF(size=2))


def test_a_spikingjelly_node_gets_its_last_spike_kept_as_registered_state():
    from spikingjelly.activation_based import functional, neuron

    from fptt_ext.fptt.state import StatefulModules

    # IF node, threshold 1: I_1 = [2, 0] -> s_1 = [1, 0]; I_2 = W_in x_2 + W_rec s_1 = [0, 0] + [0, -2]
    layer = RecurrentSpiking(2, 2, neuron.IFNode(v_threshold=1.0))
    with torch.no_grad():
        layer.fc.weight.copy_(torch.eye(2))
        layer.fc.bias.zero_()
        layer.rec.weight.copy_(torch.tensor([[0.0, 3.0], [-2.0, 0.0]]))
    currents = []
    layer.neuron.neuron.register_forward_pre_hook(lambda module, args: currents.append(args[0].detach().clone()))
    w = layer.fc.weight
    s1 = layer(torch.tensor([[2.0, 0.0]]) * (w.sum() / w.sum()))  # part of a graph, so detach has work to do
    assert s1.tolist() == [[1.0, 0.0]] and torch.equal(layer.neuron.spk, s1)
    layer(torch.tensor([[0.0, 0.0]]))
    assert currents[1].tolist() == [[0.0, -2.0]]
    states = StatefulModules(layer)
    assert len(states) == 2  # the IF node's v and the wrapper's spk
    states.detach()
    assert not layer.neuron.spk.requires_grad
    states.reset()
    layer(torch.tensor([[0.0, 1.0]]))
    assert currents[2].tolist() == [[0.0, 1.0]]  # reset: s_0 = 0 again
    functional.reset_net(layer)
    assert layer.neuron.spk == 0.0
