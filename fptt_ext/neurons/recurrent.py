"""A recurrent spiking layer: ``I_t = W_in x_t + W_rec s_{t-1}`` fed to any of the neurons.

Example:
    >>> import torch, fptt_ext
    >>> layer = RecurrentSpiking(2, 16, fptt_ext.LTC(init_hidden=True, size=16))
    >>> layer(torch.rand(4, 2)).shape
    torch.Size([4, 16])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RecurrentSpiking"]


class RecurrentSpiking(nn.Module):
    """``neuron(fc(x_t) + rec(s_{t-1}))`` where ``s_{t-1}`` is the neuron's own last spike.

    ``neuron`` must keep its state (``init_hidden=True``) and expose the previous
    spike as ``spk`` (:class:`fptt_ext.LTC`, :class:`fptt_ext.ALIF`), so the
    layer has no state of its own and every reset/detach reaches it.

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
        if not getattr(neuron, "init_hidden", False) or not hasattr(neuron, "spk"):
            raise ValueError("neuron must be an fptt_ext.LTC/ALIF built with init_hidden=True")
        self.fc = nn.Linear(in_features, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        nn.init.orthogonal_(self.rec.weight)
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur = self.fc(x)
        prev = self.neuron.spk
        if prev.shape == cur.shape:  # otherwise a new sequence starts from s = 0
            cur = cur + self.rec(prev)
        return self.neuron(cur)
