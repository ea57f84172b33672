"""The OSTL R-MNIST network of the papers: 784-256-256 LTC-SN (dense) and an LI readout of 10.

Example:
    >>> import torch
    >>> net = OSTLNet()
    >>> net(torch.rand(4, 784)).shape
    torch.Size([4, 10])
    >>> OSTLNet(neuron="plif", backend="spikingjelly", step_mode="m")(torch.rand(20, 4, 784)).shape
    torch.Size([20, 4, 10])
"""

from __future__ import annotations

from torch import nn

from .base import SpikingNet, layers_for, make_neuron, make_readout

__all__ = ["OSTLNet"]


class OSTLNet(SpikingNet):
    """``Linear(784, 256) -> LTC -> Linear(256, 256) -> LTC -> Linear(256, 10) -> LI``.

    ``neuron``, ``backend`` and ``step_mode`` as in :mod:`fptt_ext.zoo.base`.

    Example:
        >>> import torch
        >>> from fptt_ext.zoo import architecture
        >>> net = OSTLNet(hidden=(32, 32))
        >>> architecture(net), net(torch.rand(2, 784)).shape
        ('32D-32D-10I', torch.Size([2, 10]))
    """

    def __init__(self, n_in: int = 784, hidden: tuple[int, ...] = (256, 256), n_out: int = 10, neuron: str = "ltc",
                 backend: str = "snntorch", step_mode: str = "s"):
        L, layers, width = layers_for(backend), [], n_in
        for h in hidden:
            layers += [L.Linear(width, h), make_neuron(neuron, h, backend=backend)]
            width = h
        layers += [L.Linear(width, n_out), make_readout(n_out, backend=backend)]
        super().__init__(nn.Sequential(*layers), backend=backend, step_mode=step_mode, input_shape=(n_in,))
