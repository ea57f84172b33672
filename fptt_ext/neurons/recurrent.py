"""A recurrent spiking layer: ``I_t = W_in x_t + W_rec s_{t-1}`` fed to any stateful neuron.

Example:
    >>> import torch, fptt_ext
    >>> from spikingjelly.activation_based import neuron
    >>> layer = RecurrentSpiking(2, 16, fptt_ext.LTC(init_hidden=True, size=16))
    >>> layer(torch.rand(4, 2)).shape
    torch.Size([4, 16])
    >>> RecurrentSpiking(2, 16, neuron.ParametricLIFNode())(torch.rand(4, 2)).shape   # SpikingJelly's PLIF
    torch.Size([4, 16])
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from torch import nn

__all__ = ["LastSpike", "RecurrentSpiking"]


class LastSpike(base.MemoryModule):
    """Runs ``neuron`` and remembers its output spike as the registered memory ``spk``.

    For neurons that do not keep their last spike themselves (SpikingJelly's nodes keep
    ``v``, snnTorch's ``Leaky`` keeps ``mem``), so that :class:`RecurrentSpiking` can feed it
    back. ``spk`` is a SpikingJelly memory: ``functional.reset_net`` and this package's
    state protocol reset and detach it with the neuron's own state.

    Example:
        >>> import torch
        >>> from spikingjelly.activation_based import functional, neuron
        >>> node = LastSpike(neuron.LIFNode(v_threshold=0.1))
        >>> s = node(torch.ones(2, 3)); bool((node.spk == s).all())
        True
        >>> functional.reset_net(node); node.spk
        0.0
    """

    def __init__(self, neuron: nn.Module):
        super().__init__()
        self.neuron = neuron
        self.register_memory("spk", 0.0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.spk = self.neuron(x)
        return self.spk


def _keeps_state(neuron: nn.Module) -> bool:
    return isinstance(neuron, base.MemoryModule) or getattr(neuron, "init_hidden", False)


class RecurrentSpiking(nn.Module):
    """``neuron(fc(x_t) + rec(s_{t-1}))`` where ``s_{t-1}`` is the neuron's own last spike.

    ``neuron`` must keep its state: an snnTorch-style neuron built with ``init_hidden=True``
    or a SpikingJelly node. :class:`fptt_ext.LTC` and :class:`fptt_ext.ALIF` expose their
    previous spike as ``spk``; any other neuron is wrapped in :class:`LastSpike`, which keeps
    it. Either way the last spike is registered neuron state, so every reset/detach reaches it.

    Example:
        >>> import torch, fptt_ext
        >>> layer = RecurrentSpiking(3, 8, fptt_ext.ALIF(init_hidden=True, size=8))
        >>> s1 = layer(torch.rand(2, 3))                 # s_0 = 0: no recurrent input yet
        >>> s2 = layer(torch.rand(2, 3))                 # now fc(x_2) + rec(s_1)
        >>> s2.shape, layer.rec.weight.shape
        (torch.Size([2, 8]), torch.Size([8, 8]))
    """

    def __init__(self, in_features: int, hidden: int, neuron: nn.Module):
        super().__init__()
        if not _keeps_state(neuron):
            raise ValueError(f"neuron must keep its state between calls: an snnTorch-style neuron built with "
                             f"init_hidden=True (e.g. fptt_ext.LTC(init_hidden=True)) or a SpikingJelly node, "
                             f"got {type(neuron).__name__}")
        if not hasattr(neuron, "spk"):
            neuron = LastSpike(neuron)
        self.fc = nn.Linear(in_features, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        nn.init.orthogonal_(self.rec.weight)
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur = self.fc(x)
        prev = self.neuron.spk
        if isinstance(prev, torch.Tensor) and prev.shape == cur.shape:  # otherwise a new sequence: s = 0
            cur = cur + self.rec(prev)
        return self.neuron(cur)
