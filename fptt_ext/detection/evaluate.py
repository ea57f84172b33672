"""mAP@0.5 of a detector after each of its T reads of every image.

Example:
    >>> from fptt_ext.data.synthetic import SyntheticShapes
    >>> from fptt_ext.zoo.spyv4 import SPYv4
    >>> evaluate_detector(SPYv4(num_classes=5, width=0.125), SyntheticShapes(1, image_size=32), T=1)["n"]
    1
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.voc import voc_collate
from ..fptt.state import StatefulModules
from .boxes import head_geometry
from .decode import decode
from .metrics import mean_average_precision

__all__ = ["evaluate_detector"]


@torch.no_grad()
def evaluate_detector(model, dataset, T: int, batch_size: int = 16, class_names=None, progress: bool = False,
                      conf_thresh: float = 0.005, workers: int = 0) -> dict:
    """mAP@0.5 of ``model`` on ``dataset`` after each of the ``T`` reads.

    Returns ``{"map50": after the last read (fraction), "map50_per_read": [...], "per_class": {...}, "n": images}``.

    >>> from fptt_ext.data.synthetic import SyntheticShapes
    >>> from fptt_ext.zoo.spyv4 import SPYv4
    >>> r = evaluate_detector(SPYv4(num_classes=5, width=0.125), SyntheticShapes(2, image_size=32), T=2, batch_size=2)
    >>> r["n"], len(r["map50_per_read"]), r["map50"] == r["map50_per_read"][-1]    # the score of the last read
    (2, 2, True)
    """
    was_training = model.training
    model.eval()
    states = StatefulModules(model)
    anchors = head_geometry(model)
    preds, targets = [[] for _ in range(T)], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=voc_collate, num_workers=workers)
    device = next(model.parameters()).device
    try:
        for images, tg in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
            images = images.to(device)
            states.reset()
            for t in range(T):
                out = model(images)
                preds[t] += decode(out, anchors, images.shape[-2:], conf_thresh=conf_thresh)
            targets += tg
    finally:
        states.reset()
        model.train(was_training)
    per_read = [mean_average_precision(p, targets, class_names) for p in preds]
    return {"map50": per_read[-1]["map50"], "map50_per_read": [r["map50"] for r in per_read],
            "per_class": per_read[-1]["per_class"], "n": len(targets)}
