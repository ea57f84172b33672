"""The YOLOv4 detection loss: CIoU box loss, objectness BCE with an ignore zone, class BCE with label smoothing.

Per head (see :mod:`.targets` for who is responsible for which box)::

    box   = sum over responsible anchors of (1 - CIoU(pred, gt))     # torchvision.ops.complete_box_iou_loss
    obj   = sum over anchors of BCE(obj, 1 if responsible else 0),   # anchors whose predicted box
                                                                     # overlaps a gt by > ignore_thresh
                                                                     # and are not responsible are skipped
    cls   = sum over responsible anchors of BCE(cls, smoothed one-hot)
    loss  = (box_gain * box + obj_gain * obj + cls_gain * cls) / batch_size

Label smoothing ``eps`` turns the class targets into ``1 - eps/2`` and ``eps/2``
(YOLOv5's ``smooth_BCE``). Sums over anchors divided by the batch size, as darknet does.

Example:
    >>> import torch
    >>> from fptt_ext.zoo.spyv4 import SPYv4
    >>> net = SPYv4(num_classes=2, width=0.125)
    >>> t = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1])}]
    >>> loss, parts = YOLOLoss.for_model(net)(net(torch.rand(1, 3, 64, 64)), t)
    >>> sorted(parts), loss.dim()
    (['box', 'cls', 'obj'], 0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, complete_box_iou_loss

from .boxes import SCALE_XY, YoloHead
from .targets import build_targets

__all__ = ["YOLOLoss"]


class YOLOLoss(nn.Module):
    """Loss of the two (or more) YOLO heads of a detector.

    Args:
        anchors: ``[A_total, 2]`` anchor sizes, fractions of the image.
        masks: per head, the indices of its anchors.
        num_classes: number of classes.
        label_smoothing: ``eps`` of the class targets (0.05).
        ignore_thresh: predicted boxes overlapping a gt more than this are not pushed to
            objectness 0 (yolov4-tiny.cfg: 0.7).
        box_gain, obj_gain, cls_gain: weights of the three parts.

    >>> crit = YOLOLoss(torch.tensor([[0.25, 0.25]]), masks=((0,),), num_classes=1)
    >>> empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    >>> loss, parts = crit([torch.zeros(1, 6, 2, 2)], empty, image_size=(64, 64))
    >>> parts["box"], parts["cls"], round(parts["obj"], 4)   # no objects: only objectness, 4 x BCE(0, 0)
    (0.0, 0.0, 2.7726)
    """

    def __init__(self, anchors: torch.Tensor, masks, num_classes: int, label_smoothing: float = 0.05,
                 ignore_thresh: float = 0.7, box_gain: float = 1.0, obj_gain: float = 1.0, cls_gain: float = 1.0,
                 scale_xy: float = SCALE_XY):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.register_buffer("anchors", torch.as_tensor(anchors, dtype=torch.float32), persistent=False)
        self.masks = tuple(tuple(int(a) for a in m) for m in masks)
        self.num_classes = num_classes
        self.eps, self.ignore_thresh, self.scale_xy = label_smoothing, ignore_thresh, scale_xy
        self.gains = {"box": box_gain, "obj": obj_gain, "cls": cls_gain}

    @classmethod
    def for_model(cls, model, **kwargs) -> YOLOLoss:
        """The loss matching a SPYv4 model's anchors and classes."""
        return cls(model.anchors, model.anchor_masks, model.num_classes, **kwargs)

    def forward(self, outputs, targets: list[dict], image_size: tuple[int, int] | None = None):
        """``outputs``: the heads' logits; ``targets``: per image ``{"boxes" xyxy pixels, "labels"}``.
        ``image_size`` ``(H, W)`` defaults to the first head's grid times 32.

        Returns ``(loss, {"box", "obj", "cls"})`` (the parts as floats, for logging)."""
        outputs = list(outputs)
        if len(outputs) != len(self.masks):
            raise ValueError(f"expected {len(self.masks)} head outputs, got {len(outputs)}")
        B = outputs[0].shape[0]
        if len(targets) != B:
            raise ValueError(f"{len(targets)} targets for a batch of {B} images")
        if image_size is None:
            image_size = (outputs[0].shape[2] * 32, outputs[0].shape[3] * 32)
        H, W = image_size
        scale = outputs[0].new_tensor([W, H, W, H])
        heads = [YoloHead(o, self.anchors[list(m)], self.scale_xy) for o, m in zip(outputs, self.masks)]
        for h in heads:
            if h.num_classes != self.num_classes:
                raise ValueError(f"head predicts {h.num_classes} classes, the loss expects {self.num_classes}")
        assigned = build_targets(targets, self.anchors, self.masks, [h.grid for h in heads], image_size)
        gt = [torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4).to(scale) for t in targets]
        parts = {k: outputs[0].new_zeros(()) for k in self.gains}
        for head, a in zip(heads, assigned):
            boxes = head.boxes_cxcywh()  # [B, A, gh, gw, 4]
            pos = a["index"].to(boxes.device)
            with torch.no_grad():
                ignore = torch.zeros(boxes.shape[:4], dtype=torch.bool, device=boxes.device)
                for b in range(B):
                    if len(gt[b]):
                        pred = box_convert(boxes[b].reshape(-1, 4) * scale, "cxcywh", "xyxy")
                        ignore[b] = (box_iou(pred, gt[b]).amax(1) > self.ignore_thresh).view(ignore.shape[1:])
            obj_t = torch.zeros_like(head.objectness)
            keep = ~ignore
            if len(pos):
                b, an, i, j = pos.unbind(1)
                obj_t[b, an, i, j] = 1.0
                keep[b, an, i, j] = True
                pb = box_convert(boxes[b, an, i, j] * scale, "cxcywh", "xyxy")
                tb = box_convert(a["boxes"].to(scale) * scale, "cxcywh", "xyxy")
                parts["box"] = parts["box"] + complete_box_iou_loss(pb, tb, reduction="sum")
                cls_t = torch.full((len(pos), self.num_classes), self.eps / 2, device=boxes.device)
                cls_t[torch.arange(len(pos)), a["labels"].to(boxes.device)] = 1.0 - self.eps / 2
                parts["cls"] = parts["cls"] + F.binary_cross_entropy_with_logits(
                    head.class_logits[b, an, i, j], cls_t.to(boxes.dtype), reduction="sum")
            parts["obj"] = parts["obj"] + F.binary_cross_entropy_with_logits(
                head.objectness[keep], obj_t[keep], reduction="sum")
        loss = sum(self.gains[k] * v for k, v in parts.items()) / B
        return loss, {k: float(v.detach()) / B for k, v in parts.items()}
