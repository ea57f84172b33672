"""From head logits to boxes: anchor decoding, score threshold, class-wise NMS (``torchvision.ops.batched_nms``).

A box's score for class ``c`` is ``sigmoid(obj) * sigmoid(cls_c)``; every class whose
score passes ``conf_thresh`` gives a candidate (multi-label, as YOLO evaluation does),
then NMS per class at ``iou_thresh`` and the ``max_det`` best remain.

Example (a hand-made prediction: one confident box in cell (1, 1) of a 2x2 grid):
    >>> import torch
    >>> anchors = [torch.tensor([[0.25, 0.25]])]
    >>> logits = torch.full((1, 6, 2, 2), -10.0)              # 1 anchor, 1 class
    >>> logits[0, :4, 1, 1] = 0.0; logits[0, 4:, 1, 1] = 10.0 # centre of the cell, anchor size
    >>> d = decode([logits], anchors, image_size=(64, 64))[0]
    >>> d["boxes"], d["labels"]
    (tensor([[40., 40., 56., 56.]]), tensor([0]))
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_convert

from .boxes import SCALE_XY, YoloHead

__all__ = ["decode"]


@torch.no_grad()
def decode(outputs, anchors, image_size: tuple[int, int], conf_thresh: float = 0.005, iou_thresh: float = 0.45,
           max_det: int = 100, scale_xy: float = SCALE_XY) -> list[dict]:
    """Detections per image: ``{"boxes": [N, 4] xyxy pixels (clipped to the image), "scores": [N],
    "labels": [N]}``.

    ``outputs``: the heads' logits ``[B, A*(5+C), gh, gw]``; ``anchors``: per head ``[A, 2]``
    (fractions of the image, e.g. :func:`~fptt_ext.detection.head_geometry`); ``image_size``
    ``(H, W)``. The default ``conf_thresh`` suits mAP evaluation; use ~0.25 for display.

    >>> logits = torch.full((2, 7, 1, 1), -10.0)           # 2 images, 1 anchor, 2 classes, 1x1 grid
    >>> logits[1, :4] = 0.0; logits[1, 4] = 10.0; logits[1, 6] = 10.0   # image 1: one box of class 1
    >>> d = decode([logits], [torch.tensor([[0.5, 0.5]])], image_size=(32, 32), conf_thresh=0.25)
    >>> [len(r["boxes"]) for r in d], d[1]["labels"], d[1]["boxes"].round().tolist()
    ([0, 1], tensor([1]), [[8.0, 8.0, 24.0, 24.0]])
    """
    H, W = image_size
    per_head = []
    for out, anc in zip(outputs, anchors):
        head = YoloHead(out.float(), torch.as_tensor(anc), scale_xy)
        B = out.shape[0]
        boxes = head.boxes_cxcywh().reshape(B, -1, 4) * out.new_tensor([W, H, W, H]).float()
        scores = (torch.sigmoid(head.objectness)[..., None] * torch.sigmoid(head.class_logits)).reshape(
            B, -1, head.num_classes)
        per_head.append((boxes, scores))
    boxes = torch.cat([b for b, _ in per_head], dim=1)
    scores = torch.cat([s for _, s in per_head], dim=1)
    results = []
    for b in range(boxes.shape[0]):
        idx, cls = torch.nonzero(scores[b] > conf_thresh, as_tuple=True)
        bx = box_convert(boxes[b, idx], "cxcywh", "xyxy")
        bx[:, 0::2] = bx[:, 0::2].clamp(0, W)
        bx[:, 1::2] = bx[:, 1::2].clamp(0, H)
        sc = scores[b, idx, cls]
        keep = batched_nms(bx, sc, cls, iou_thresh)[:max_det]
        results.append({"boxes": bx[keep], "scores": sc[keep], "labels": cls[keep]})
    return results
