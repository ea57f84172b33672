"""Reading YOLO head logits as boxes: the anchor-based parametrisation shared by loss and decoding.

A head of grid ``gh x gw`` outputs ``[B, A * (5 + C), gh, gw]`` logits; per anchor
``a`` and cell ``(i, j)``: ``tx, ty, tw, th, obj, cls_1..C``. The box (fractions of
the image, as YOLOv4 with ``scale_x_y``)::

    x = (j + scale * sigmoid(tx) - (scale - 1) / 2) / gw
    y = (i + scale * sigmoid(ty) - (scale - 1) / 2) / gh
    w = anchor_w * exp(tw),  h = anchor_h * exp(th)    # anchors as fractions of the image

Example:
    >>> import torch
    >>> head = YoloHead(torch.zeros(1, 3 * 7, 2, 2), torch.tensor([[0.1, 0.1], [0.2, 0.2], [0.4, 0.4]]))
    >>> head.boxes_cxcywh()[0, 0, 0, 0]          # anchor 0, cell (0, 0): centre of the cell
    tensor([0.2500, 0.2500, 0.1000, 0.1000])
"""

from __future__ import annotations

import torch

__all__ = ["SCALE_XY", "YoloHead", "head_geometry", "letterbox", "unletterbox"]

SCALE_XY = 1.05  # yolov4-tiny.cfg: lets sigmoid reach cell borders without infinite logits
_MAX_LOG_WH = 4.0  # exp(4) = 55x the anchor: beyond that a box is garbage, and exp would overflow


class YoloHead:
    """One head's logits reshaped to ``[B, A, gh, gw, 5 + C]`` with its anchors ``[A, 2]``.

    >>> head = YoloHead(torch.zeros(2, 3 * 8, 4, 4), torch.full((3, 2), 0.25))
    >>> head.p.shape, head.num_classes, head.grid, head.class_logits.shape
    (torch.Size([2, 3, 4, 4, 8]), 3, (4, 4), torch.Size([2, 3, 4, 4, 3]))
    """

    def __init__(self, logits: torch.Tensor, anchors: torch.Tensor, scale_xy: float = SCALE_XY):
        if logits.dim() != 4:
            raise ValueError(f"a YOLO head output must be [B, A*(5+C), H, W], got shape {tuple(logits.shape)}")
        b, ch, gh, gw = logits.shape
        a = anchors.shape[0]
        if ch % a or ch // a < 6:
            raise ValueError(f"head has {ch} channels, not a multiple of {a} anchors x (5 + classes)")
        self.p = logits.view(b, a, ch // a, gh, gw).permute(0, 1, 3, 4, 2)
        self.anchors = anchors.to(logits)
        self.grid = (gh, gw)
        self.scale_xy = scale_xy
        self.num_classes = ch // a - 5

    def boxes_cxcywh(self) -> torch.Tensor:
        """``[B, A, gh, gw, 4]`` boxes (cx, cy, w, h) as fractions of the image."""
        gh, gw = self.grid
        ys, xs = torch.meshgrid(torch.arange(gh, device=self.p.device), torch.arange(gw, device=self.p.device),
                                indexing="ij")
        s = self.scale_xy
        xy = s * torch.sigmoid(self.p[..., :2]) - (s - 1) / 2
        cx = (xy[..., 0] + xs) / gw
        cy = (xy[..., 1] + ys) / gh
        wh = torch.exp(self.p[..., 2:4].clamp(max=_MAX_LOG_WH)) * self.anchors.view(1, -1, 1, 1, 2)
        return torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1)

    @property
    def objectness(self) -> torch.Tensor:
        return self.p[..., 4]

    @property
    def class_logits(self) -> torch.Tensor:
        return self.p[..., 5:]


def head_geometry(model) -> list[torch.Tensor]:
    """The anchors ``[3, 2]`` of each head of a SPYv4-like model (``anchors``, ``anchor_masks``).

    >>> from fptt_ext.zoo.spyv4 import SPYv4
    >>> [a.shape for a in head_geometry(SPYv4(num_classes=2, width=0.125))]
    [torch.Size([3, 2]), torch.Size([3, 2])]
    """
    return [model.anchors[list(mask)] for mask in model.anchor_masks]


def letterbox(image: torch.Tensor, size: int, fill: float = 0.5) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Scale a ``[3, H, W]`` float image to fit ``size x size`` (aspect kept), centred on ``fill``.

    Returns ``(image [3, size, size], scale, (left, top))``, the same convention as
    :func:`fptt_ext.data.voc_detection`; :func:`unletterbox` maps boxes back.

    >>> img, s, off = letterbox(torch.zeros(3, 50, 100), 64)
    >>> img.shape, s, off
    (torch.Size([3, 64, 64]), 0.64, (0, 16))
    """
    import torch.nn.functional as F

    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"letterbox expects an RGB image [3, H, W], got shape {tuple(image.shape)}")
    h, w = image.shape[1:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    left, top = (size - nw) // 2, (size - nh) // 2
    out = torch.full((3, size, size), float(fill), dtype=torch.float32)
    out[:, top:top + nh, left:left + nw] = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear",
                                                         align_corners=False, antialias=True)[0]
    return out, scale, (left, top)


def unletterbox(boxes: torch.Tensor, scale: float, offset: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """Map xyxy boxes from the letterboxed frame back to the original image (clipped to it).

    >>> _, s, off = letterbox(torch.zeros(3, 50, 100), 64)     # scale 0.64, offset (0, 16)
    >>> unletterbox(torch.tensor([[0.0, 16.0, 32.0, 48.0]]), s, off, (50, 100))
    tensor([[ 0.,  0., 50., 50.]])
    """
    left, top = offset
    b = (boxes - boxes.new_tensor([left, top, left, top])) / scale
    h, w = image_hw
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    return b
