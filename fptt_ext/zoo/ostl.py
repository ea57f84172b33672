"""The OSTL R-MNIST network of the papers: 784-256-256 LTC-SN (dense) and an LI readout of 10.

Example:
    >>> import torch
    >>> net = OSTLNet()
    >>> net(torch.rand(4, 784)).shape
    torch.Size([4, 10])
"""

from __future__ import annotations

from torch import nn

from ..neurons.snntorch import ALIF, LI, LTC

__all__ = ["OSTLNet", "spiking_neuron"]


def spiking_neuron(kind: str, size: int) -> nn.Module:
    """A dense spiking neuron layer of ``size`` neurons that keeps its state (``init_hidden``)."""
    if kind == "ltc":
        return LTC(init_hidden=True, size=size)
    if kind == "ltc-minus":
        return LTC(init_hidden=True, size=size, liquid_adp=False)
    if kind == "alif":
        return ALIF(init_hidden=True, size=size)
    raise ValueError(f"unknown neuron {kind!r}; choose 'ltc', 'ltc-minus' or 'alif'")


class OSTLNet(nn.Sequential):
    """``Linear(784, 256) -> LTC -> Linear(256, 256) -> LTC -> Linear(256, 10) -> LI``; one step per call."""

    def __init__(self, n_in: int = 784, hidden: tuple[int, ...] = (256, 256), n_out: int = 10, neuron: str = "ltc"):
        layers, width = [], n_in
        for h in hidden:
            layers += [nn.Linear(width, h), spiking_neuron(neuron, h)]
            width = h
        layers += [nn.Linear(width, n_out), LI(init_hidden=True, size=n_out)]
        super().__init__(*layers)
