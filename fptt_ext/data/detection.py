"""The detection datasets by name: the synthetic shapes set and PASCAL VOC.

Example:
    >>> ds, names = detection_data("synthetic", "test", image_size=32, n=3)
    >>> len(ds), names[0]
    (3, 'circle')
"""

from __future__ import annotations

from torch.utils.data import Subset

from .synthetic import SHAPE_CLASSES, SyntheticShapes
from .voc import VOC_CLASSES, voc_detection

__all__ = ["DETECTION_DATASETS", "detection_data"]

DETECTION_DATASETS = ("synthetic", "voc")


def detection_data(dataset: str, split: str, *, root=None, image_size: int = 128, n: int | None = None,
                   seed: int = 0):
    """``(dataset, class_names)`` for ``dataset`` ``"synthetic"`` or ``"voc"``, ``split`` ``"train"`` or ``"test"``.

    Synthetic: ``n`` images (default 2000 train / 500 test), the test set drawn with another seed.
    VOC: VOC07+12 trainval for ``"train"``, VOC07 test for ``"test"``; ``n`` keeps the first ``n``.

    >>> ds, names = detection_data("synthetic", "test", image_size=32, n=3)
    >>> len(ds), ds[0][0].shape, names[:2]
    (3, torch.Size([3, 32, 32]), ('circle', 'square'))
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if dataset == "synthetic":
        n = (2000 if split == "train" else 500) if n is None else n
        return SyntheticShapes(n, image_size=image_size, seed=seed if split == "train" else seed + 10_007), \
            SHAPE_CLASSES
    if dataset == "voc":
        ds = voc_detection(root, split="trainval" if split == "train" else "test", image_size=image_size)
        if n is not None:
            ds = Subset(ds, range(min(n, len(ds))))
        return ds, VOC_CLASSES
    raise ValueError(f"unknown detection dataset {dataset!r}; choose one of {DETECTION_DATASETS}")
