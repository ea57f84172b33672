"""SPYv4: the papers' spiking Tiny-YOLOv4 detector (Yin et al. 2023, Methods and Supplementary Fig. 2a).

The Tiny-YOLOv4 topology (Bochkovskiy et al.; Jiang et al. 2020) with every
``conv -> BN -> leaky ReLU`` replaced by ``conv -> BN -> spiking neuron`` (LTC-SN by
default), so only binary spikes pass between spiking layers:

* stem: two ``Conv3x3/2`` (32, 64 channels);
* backbone: three spiking CSP blocks. Each takes its input spikes ``x`` through a
  ``Conv3x3`` (``c``), keeps the second half of the channels (``route groups=2``),
  runs two ``Conv3x3`` on it, concatenates their spikes, a ``Conv1x1`` (``c``) and
  concatenates that with the block's ``Conv3x3`` output (``2c``), then a 2/2 max-pool.
  The residual paths are *concatenations*, not additions, so their outputs stay 0/1;
* neck: ``Conv3x3 512``, ``Conv1x1 256`` (P5), ``Conv3x3 512`` -> head at stride 32;
  P5 -> ``Conv1x1 128`` -> nearest 2x upsample, concatenated with the last CSP block's
  ``Conv1x1`` spikes (stride 16) -> ``Conv3x3 256`` -> head at stride 16;
* heads: two ordinary (non-spiking) ``Conv1x1`` with ``3 * (5 + num_classes)`` outputs
  (3 anchors per scale; x, y, w, h, objectness, classes), read as YOLO logits.

19 spiking conv layers + 2 conv heads = 21 layers. The image (raw pixels in [0, 1])
is the input current of the first conv at every read (time step); ``T`` reads of the
same image are ``T`` calls in single-step mode, with the neuron states kept between
them and reset between images (``StatefulModules(model).reset()``).

Parameter count, honestly: the 21 convs and their BNs hold 5.9M parameters at
``width=1`` with 20 classes (the Tiny-YOLOv4 count). Each LTC-SN conv layer of ``C``
channels adds two gates ``BN(Conv3x3 C->C)`` (``gate_m``, ``gate_adp``), 8.0M
parameters per gate over the 19 layers, so ``neuron="ltc"`` has 22.0M parameters.
The papers' "14 million" equals the convs plus *one* such gate per layer (13.9M):
``neuron="ltc-minus"`` (liquid membrane gate, learned-constant adaptation) has that
count, 14.0M. The papers do not say which form they used; the default here is the
LTC-SN of docs/concepts/ltc.md with both gates. Spiking neurons at 416x416: 6.12M (the papers: "about
6.2M"; counted by ``spiking_neuron_count``).

``width`` multiplies every spiking layer's channels (``width=0.25``: the CPU variant
``spyv4_tiny``). Inputs must be ``[B, 3, S, S']`` with ``S, S'`` multiples of 32.

Example:
    >>> import torch
    >>> net = SPYv4(num_classes=3, width=0.125)
    >>> p32, p16 = net(torch.rand(1, 3, 64, 64))
    >>> p32.shape, p16.shape               # 3 anchors x (5 + 3 classes) at strides 32 and 16
    (torch.Size([1, 24, 2, 2]), torch.Size([1, 24, 4, 4]))
    >>> len(net.spiking_layers())
    19
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..fptt.state import StatefulModules
from .base import SpikingNet, make_neuron

__all__ = ["ANCHORS", "SPYv4", "SPYv4Backbone", "parameter_breakdown", "spiking_neuron_count"]

# Tiny-YOLOv4's anchors (width, height) in pixels of a 416x416 input; stored as fractions
# of the input size so that smaller inputs (the CPU runs) keep the same relative shapes.
# Stride 32 uses the three large ones, stride 16 the three small ones (darknet's
# yolov4-tiny.cfg uses masks 3,4,5 and 1,2,3; the disjoint split is the common one).
ANCHORS_416 = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
ANCHORS = tuple((w / 416.0, h / 416.0) for w, h in ANCHORS_416)
ANCHOR_MASKS = ((3, 4, 5), (0, 1, 2))  # per head: stride 32, stride 16
STRIDES = (32, 16)


def _ch(n: int, width: float) -> int:
    return max(2, 2 * round(n * width / 2))  # even, so the CSP split halves it exactly


class SpikingConv(nn.Module):
    """``Conv(k, stride) -> BN -> spiking neuron``: one of the 19 spiking layers."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, neuron: str = "ltc",
                 backend: str = "snntorch"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.spike = make_neuron(neuron, c_out, conv=True, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spike(self.bn(self.conv(x)))


class CSPBlock(nn.Module):
    """Tiny-YOLOv4's CSP block on spikes; returns ``(pooled 2c spikes, the 1x1 layer's c spikes)``."""

    def __init__(self, c_in: int, c: int, **kw):
        super().__init__()
        self.c = c
        self.conv1 = SpikingConv(c_in, c, 3, **kw)
        self.conv2 = SpikingConv(c // 2, c // 2, 3, **kw)
        self.conv3 = SpikingConv(c // 2, c // 2, 3, **kw)
        self.conv4 = SpikingConv(c, c, 1, **kw)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.conv1(x)
        a = self.conv2(x1[:, self.c // 2:])  # darknet: route groups=2 group_id=1
        b = self.conv3(a)
        feat = self.conv4(torch.cat([b, a], dim=1))
        # concatenation residuals: max-pool of spikes is again 0/1
        return self.pool(torch.cat([x1, feat], dim=1)), feat


class SPYv4Backbone(SpikingNet):
    """The spiking CSP backbone of SPYv4: two strided stem convs and three CSP blocks (14 spiking layers).

    ``forward`` maps an image ``[B, 3, H, W]`` to spikes ``[B, 2 * 256 * width, H/32, W/32]``
    (binary), for use as a spiking feature extractor.

    >>> import torch
    >>> SPYv4Backbone(width=0.125)(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 64, 2, 2])
    """

    loops_over_time = True  # the CSP splits and concatenations act on dim 1: see SpikingNet

    def __init__(self, width: float = 1.0, neuron: str = "ltc", backend: str = "snntorch", step_mode: str = "s"):
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        super().__init__(None, backend=backend, step_mode="s")
        kw = {"neuron": neuron, "backend": backend}
        c32, c64, c128, c256 = (_ch(c, width) for c in (32, 64, 128, 256))
        self.width = width
        self.stem1 = SpikingConv(3, c32, 3, 2, **kw)
        self.stem2 = SpikingConv(c32, c64, 3, 2, **kw)
        self.csp1 = CSPBlock(c64, c64, **kw)
        self.csp2 = CSPBlock(2 * c64, c128, **kw)
        self.csp3 = CSPBlock(2 * c128, c256, **kw)
        self.step_mode = step_mode

    def spiking_layers(self) -> list[SpikingConv]:
        """The spiking conv layers in forward order (shallow to deep)."""
        return [m for m in self.modules() if isinstance(m, SpikingConv)]

    def _check_image(self, x: torch.Tensor) -> None:
        lead = 1 if self.step_mode == "s" else 2
        what = "[B, 3, H, W]" if lead == 1 else "[T, B, 3, H, W]"
        who = type(self).__name__
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{who} expects a floating-point image tensor {what} in [0, 1], got "
                            f"{getattr(x, 'dtype', type(x).__name__)}; convert with x.float() / 255")
        if x.dim() != lead + 3 or x.shape[lead] != 3:
            raise ValueError(f"{who} in step_mode={self.step_mode!r} expects RGB images {what}, got shape "
                             f"{tuple(x.shape)}; convert grey or RGBA images to 3 channels first")
        h, w = x.shape[-2:]
        if h % 32 or w % 32 or h < 32 or w < 32:
            raise ValueError(f"{who} needs height and width that are multiples of 32 (two heads at strides 32 "
                             f"and 16), got {h}x{w}; resize or letterbox the image, e.g. to 416x416")

    def forward_step(self, x: torch.Tensor, with_stride16: bool = False):
        x = self.stem2(self.stem1(x))
        x, _ = self.csp1(x)
        x, _ = self.csp2(x)
        x, feat = self.csp3(x)
        return (x, feat) if with_stride16 else x

    def forward(self, x: torch.Tensor):
        self._check_image(x)
        if self.step_mode == "s":
            return self.forward_step(x)
        return torch.stack([self.forward_step(x_t) for x_t in x])


class SPYv4(SPYv4Backbone):
    """Spiking Tiny-YOLOv4 (see the module docstring).

    Args:
        num_classes: object classes (20 for VOC).
        width: multiplies the channels of every spiking layer (1.0 = the papers' net).
        neuron: ``ltc`` (default), ``ltc-minus``, ``alif``, ``leaky`` or ``plif``.
        backend: ``snntorch`` or ``spikingjelly`` neurons.
        step_mode: ``"s"``: ``x [B, 3, H, W]`` is one read, returns ``(p32, p16)``;
            ``"m"``: ``x [T, B, 3, H, W]``, returns both heads stacked over ``T``.

    Outputs are raw logits ``[B, 3 * (5 + num_classes), H/32, W/32]`` and ``[..., H/16,
    W/16]``; :mod:`fptt_ext.detection` decodes them with :attr:`anchors`.

    >>> net = SPYv4(num_classes=1, width=0.125, step_mode="m")
    >>> p32, p16 = net(torch.rand(2, 1, 3, 32, 64))     # T=2 reads of one 32x64 image
    >>> p32.shape, p16.shape, net.anchors.shape
    (torch.Size([2, 1, 18, 1, 2]), torch.Size([2, 1, 18, 2, 4]), torch.Size([6, 2]))
    """

    def __init__(self, num_classes: int = 20, width: float = 1.0, neuron: str = "ltc", backend: str = "snntorch",
                 step_mode: str = "s"):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        SpikingNet.__init__(self, None, backend=backend, step_mode="s")
        kw = {"neuron": neuron, "backend": backend}
        c128, c256, c512 = (_ch(c, width) for c in (128, 256, 512))
        self.num_classes, self.width = num_classes, width
        self.anchors = torch.tensor(ANCHORS)
        self.anchor_masks, self.strides = ANCHOR_MASKS, STRIDES
        n_out = 3 * (5 + num_classes)
        self.backbone = SPYv4Backbone(width, neuron, backend)
        self.conv15 = SpikingConv(2 * c256, c512, 3, **kw)
        self.conv16 = SpikingConv(c512, c256, 1, **kw)  # P5
        self.conv17 = SpikingConv(c256, c512, 3, **kw)
        self.head32 = nn.Conv2d(c512, n_out, 1)
        self.conv18 = SpikingConv(c256, c128, 1, **kw)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv19 = SpikingConv(c128 + c256, c256, 3, **kw)
        self.head16 = nn.Conv2d(c256, n_out, 1)
        self._init_heads()
        self.step_mode = step_mode

    def _init_heads(self) -> None:
        # Priors (as in YOLOv5): objectness ~1% and class ~1/num_classes at start, so the
        # thousands of empty cells do not swamp the first updates.
        for head in (self.head32, self.head16):
            b = head.bias.detach().view(3, -1)
            b[:, 4] = math.log(0.01 / 0.99)
            b[:, 5:] = math.log(0.6 / (self.num_classes - 0.99)) if self.num_classes > 1 else 0.0

    def forward_step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, feat = self.backbone.forward_step(x, with_stride16=True)
        p5 = self.conv16(self.conv15(x))
        out32 = self.head32(self.conv17(p5))
        up = self.up(self.conv18(p5))
        out16 = self.head16(self.conv19(torch.cat([up, feat], dim=1)))
        return out32, out16

    def forward(self, x: torch.Tensor):
        self._check_image(x)
        if self.step_mode == "s":
            return self.forward_step(x)
        outs = [self.forward_step(x_t) for x_t in x]
        return tuple(torch.stack(o) for o in zip(*outs))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, width={self.width}, backend={self.backend!r}"


def spiking_neuron_count(model: SPYv4, image_size: int | tuple[int, int] = 416) -> int:
    """Number of spiking neurons (channels x positions of all 19 spiking layers) at ``image_size``.

    >>> spiking_neuron_count(SPYv4(width=0.125), 64)
    18112
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    counts = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: counts.append(out[0].numel()))
             for m in model.spiking_layers()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model.forward_step(torch.zeros(1, 3, h, w))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
        StatefulModules(model).reset()
    return sum(counts)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters of the gates (``gate_m``, ``gate_adp``), of everything else, and the total.

    >>> b = parameter_breakdown(SPYv4(width=0.125))
    >>> b["total"] == b["gate_m"] + b["gate_adp"] + b["other"]
    True
    """
    out = {"gate_m": 0, "gate_adp": 0, "other": 0}
    for name, p in model.named_parameters():
        key = next((g for g in ("gate_m", "gate_adp") if f".{g}." in f".{name}"), "other")
        out[key] += p.numel()
    out["total"] = sum(out.values())
    return out
