"""The papers' spiking convolutional networks (SCNNs, the PLIF architectures of Fang et al.).

Every conv layer feeds a conv LTC-SN (gates ``BN(Conv3x3(I + state))``) and a 2/2
max-pool; a dense spiking layer and a leaky-integrator readout follow:

* static MNIST / Fashion-MNIST, ``[B, 1, 28, 28]`` per step:
  ``ConvK3C32S1P1-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-MPK2S2-512D-10I``
* DVS-Gesture / DVS-CIFAR10, ``[B, 2, 128, 128]`` event frames per step:
  ``ConvK7C64S1P3-MPK2S2-ConvK7C128S1P3-MPK2S2-ConvK3C128S1P1-MPK2S2-ConvK3C256S1P1-``
  ``MPK2S2-ConvK3C256S1P1-MPK2S2-ConvK3C512S1P1-MPK2S2-512D-{11,10}I``

``width`` scales every conv and dense width (``width=0.25`` is the narrow variant that
trains on a laptop CPU); the layer pattern stays the papers'.

Example:
    >>> import torch
    >>> from fptt_ext.zoo.base import architecture
    >>> net = SCNN(STATIC_LAYERS, in_shape=(1, 28, 28), num_classes=10, width=0.125)
    >>> architecture(net)
    'ConvK3C4S1P1-MPK2S2-ConvK3C16S1P1-MPK2S2-ConvK3C32S1P1-MPK2S2-64D-10I'
    >>> net(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from torch import nn

from .base import SpikingNet, layers_for, make_neuron, make_readout

__all__ = ["DVS_LAYERS", "SCNN", "STATIC_LAYERS"]

# (kernel, out channels, stride, padding) of each conv; each is followed by MPK2S2.
STATIC_LAYERS = ((3, 32, 1, 1), (3, 128, 1, 1), (3, 256, 1, 1))
DVS_LAYERS = ((7, 64, 1, 3), (7, 128, 1, 3), (3, 128, 1, 1), (3, 256, 1, 1), (3, 256, 1, 1), (3, 512, 1, 1))


def _scaled(n: int, width: float) -> int:
    return max(1, round(n * width))


class SCNN(SpikingNet):
    """Conv -> spiking -> MaxPool blocks, then ``Flatten -> Linear -> spiking -> Linear -> LI``.

    Args:
        convs: ``(kernel, channels, stride, padding)`` per conv layer.
        in_shape: ``(C, H, W)`` of one time step's input.
        num_classes: readout size.
        dense: width of the dense spiking layer (512 in the papers).
        width: multiplies every conv's channels and ``dense``.
        neuron, backend, step_mode: see :mod:`fptt_ext.zoo.base`.

    Example:
        >>> import torch
        >>> net = SCNN(STATIC_LAYERS, width=0.125, dense=32)
        >>> net(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, convs=STATIC_LAYERS, in_shape=(1, 28, 28), num_classes: int = 10, dense: int = 512,
                 width: float = 1.0, neuron: str = "ltc", backend: str = "snntorch", step_mode: str = "s"):
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        L = layers_for(backend)
        c, h, w = in_shape
        layers = []
        for k, out, s, p in convs:
            out = _scaled(out, width)
            layers += [L.Conv2d(c, out, k, stride=s, padding=p), make_neuron(neuron, out, conv=True, backend=backend),
                       L.MaxPool2d(2, 2)]
            c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"input {tuple(in_shape)} is too small for {len(convs)} conv+pool stages")
        dense = _scaled(dense, width)
        layers += [L.Flatten(), L.Linear(c * h * w, dense), make_neuron(neuron, dense, backend=backend),
                   L.Linear(dense, num_classes), make_readout(num_classes, backend=backend)]
        super().__init__(nn.Sequential(*layers), backend=backend, step_mode=step_mode, input_shape=in_shape)
        self.width = width
