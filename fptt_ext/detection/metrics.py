"""mAP@0.5 with ``torchmetrics.detection.MeanAveragePrecision`` (pycocotools underneath).

The VOC protocol's parts: IoU threshold 0.5, greedy matching by score, objects marked
``difficult`` neither count as misses nor make their detections false positives
(passed to torchmetrics as ``iscrowd``). The precision-recall curve is integrated
COCO-style (101 recall points); VOC2007's official devkit uses 11 points and VOC2010+
all points, which give slightly different numbers on the same detections.

Example (a hand-checked case: one class, two objects, a hit at score 0.9 and a
miss at 0.8: precision 1 up to recall 0.5, then nothing, so AP = 51/101):
    >>> import torch
    >>> gt = [{"boxes": torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]]), "labels": torch.tensor([0, 0])}]
    >>> det = [{"boxes": torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.]]),
    ...         "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}]
    >>> round(mean_average_precision(det, gt)["map50"], 4)
    0.505
"""

from __future__ import annotations

import torch

__all__ = ["mean_average_precision"]


def mean_average_precision(preds: list[dict], targets: list[dict], class_names=None) -> dict:
    """mAP@0.5 of detections ``preds`` (``boxes`` xyxy, ``scores``, ``labels``) against ``targets``
    (``boxes``, ``labels``, optional ``difficult``), all in the same pixel frame.

    Returns ``{"map50": fraction in [0, 1], "per_class": {name or index: AP or None}}``;
    a class with no ground truth in ``targets`` gets ``None`` and does not enter the mean.

    >>> gt = [{"boxes": torch.tensor([[0., 0., 10., 10.]]), "labels": torch.tensor([1])}]
    >>> det = [{"boxes": torch.tensor([[0., 0., 10., 10.]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    >>> r = mean_average_precision(det, gt, class_names=["cat", "dog"])
    >>> r["map50"], r["per_class"]
    (1.0, {'dog': 1.0})
    """
    from torchmetrics.detection import MeanAveragePrecision

    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} images")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True,
                                  backend="pycocotools")
    p = [{"boxes": d["boxes"].float().cpu(), "scores": d["scores"].float().cpu(), "labels": d["labels"].long().cpu()}
         for d in preds]
    t = []
    for g in targets:
        boxes = torch.as_tensor(g["boxes"], dtype=torch.float32).reshape(-1, 4).cpu()
        labels = torch.as_tensor(g["labels"]).long().reshape(-1).cpu()
        difficult = g.get("difficult")
        crowd = (torch.as_tensor(difficult).bool() if difficult is not None
                 else torch.zeros(len(labels), dtype=torch.bool)).long()
        t.append({"boxes": boxes, "labels": labels, "iscrowd": crowd})
    metric.update(p, t)
    r = metric.compute()
    per_class = {}
    classes = r["classes"].reshape(-1).tolist()
    values = r["map_per_class"].reshape(-1).tolist()
    for c, v in zip(classes, values):
        name = class_names[c] if class_names is not None and c < len(class_names) else c
        per_class[name] = None if v < 0 else v
    m = float(r["map_50"])
    return {"map50": max(m, 0.0), "per_class": per_class}
