"""YOLO target assignment: which anchor of which cell is responsible for each ground-truth box.

Each box goes to the cell that holds its centre, on the head of the anchor whose
shape fits it best (IoU of width/height, both centred), and also to every other
anchor whose shape IoU exceeds ``multi_anchor_thresh`` (YOLOv4's ``iou_thresh``),
so a box between two anchor sizes trains both.

Example:
    >>> import torch
    >>> anchors = torch.tensor([[0.1, 0.1], [0.5, 0.5]])
    >>> t = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([2])}]
    >>> a = build_targets(t, anchors, masks=((1,), (0,)), grids=((2, 2), (4, 4)), image_size=(64, 64))
    >>> a[0]["index"], a[0]["labels"]                 # head 0 (anchor 1), image 0, cell (0, 0)
    (tensor([[0, 0, 0, 0]]), tensor([2]))
    >>> a[1]["index"].shape[0]                        # the small anchor does not fit
    0
"""

from __future__ import annotations

import torch

__all__ = ["build_targets", "shape_iou"]


def shape_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``[N, 2]`` and ``[M, 2]`` (widths, heights) placed on the same centre: ``[N, M]``.

    >>> shape_iou(torch.tensor([[2.0, 2.0]]), torch.tensor([[2.0, 2.0], [1.0, 1.0], [4.0, 1.0]]))
    tensor([[1.0000, 0.2500, 0.3333]])
    """
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


def build_targets(targets: list[dict], anchors: torch.Tensor, masks, grids, image_size,
                  multi_anchor_thresh: float = 0.213) -> list[dict]:
    """Assign the boxes of a batch to the heads.

    Args:
        targets: per image ``{"boxes": [N, 4] xyxy pixels, "labels": [N]}``.
        anchors: ``[A_total, 2]`` anchor sizes as fractions of the image.
        masks: per head, the indices of its anchors in ``anchors``.
        grids: per head, ``(gh, gw)``.
        image_size: ``(H, W)`` of the input in pixels.

    Returns per head ``{"index": [P, 4] (image, anchor-in-head, row, col), "boxes": [P, 4]
    cxcywh fractions of the image, "labels": [P]}``; a cell-anchor claimed twice keeps the
    last box.

    >>> t = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)},
    ...      {"boxes": torch.tensor([[16.0, 16.0, 48.0, 48.0]]), "labels": torch.tensor([0])}]
    >>> a = build_targets(t, torch.tensor([[0.5, 0.5]]), masks=((0,),), grids=((2, 2),), image_size=(64, 64))
    >>> a[0]["index"], a[0]["boxes"]                   # image 1, anchor 0, cell (1, 1); cx, cy, w, h
    (tensor([[1, 0, 1, 1]]), tensor([[0.5000, 0.5000, 0.5000, 0.5000]]))
    """
    H, W = image_size
    scale = torch.tensor([W, H, W, H], dtype=torch.float32)
    out = [{"index": [], "boxes": [], "labels": []} for _ in masks]
    owner = {}  # anchor index -> (head, position in head)
    for k, mask in enumerate(masks):
        for pos, a in enumerate(mask):
            owner[int(a)] = (k, pos)
    for b, t in enumerate(targets):
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        if boxes.numel() == 0:
            continue
        labels = torch.as_tensor(t["labels"]).long().reshape(-1)
        xyxy = boxes / scale.to(boxes.device)
        cxcywh = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1).cpu()
        iou = shape_iou(cxcywh[:, 2:], anchors.float().cpu())
        best = iou.argmax(1)
        for n in range(len(cxcywh)):
            chosen = {int(best[n])} | {int(a) for a in torch.nonzero(iou[n] > multi_anchor_thresh).flatten()}
            for a in sorted(chosen):
                if a not in owner:
                    continue
                k, pos = owner[a]
                gh, gw = grids[k]
                col = min(max(int(cxcywh[n, 0] * gw), 0), gw - 1)
                row = min(max(int(cxcywh[n, 1] * gh), 0), gh - 1)
                out[k]["index"].append((b, pos, row, col))
                out[k]["boxes"].append(cxcywh[n])
                out[k]["labels"].append(int(labels[n]))
    result = []
    for k in range(len(masks)):
        # keep the last box per cell-anchor (an index is claimed at most once)
        seen = {}
        for i, idx in enumerate(out[k]["index"]):
            seen[idx] = i
        keep = sorted(seen.values())
        result.append({
            "index": torch.tensor([out[k]["index"][i] for i in keep], dtype=torch.long).reshape(-1, 4),
            "boxes": torch.stack([out[k]["boxes"][i] for i in keep]) if keep else torch.zeros(0, 4),
            "labels": torch.tensor([out[k]["labels"][i] for i in keep], dtype=torch.long),
        })
    return result
