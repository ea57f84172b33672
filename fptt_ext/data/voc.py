"""PASCAL VOC detection through ``torchvision.datasets.VOCDetection`` (never downloads).

Conventions (the usual YOLO ones): ``split="trainval"`` concatenates VOC2007
and VOC2012 trainval ("VOC07+12", 16,551 images); ``split="test"`` is VOC2007
test (4,952 images). Items are ``(image, target)``:

* ``image``: float32 ``[3, S, S]`` in [0, 1], ``S = image_size``. By default the
  image is letterboxed: scaled to fit (aspect ratio kept), centred, the
  borders filled with ``fill`` (0.5). ``letterbox=False`` stretches it to S x S.
  Images that are not RGB (grey, palette, CMYK) are converted to RGB (by
  ``VOCDetection``'s ``Image.convert("RGB")``).
* ``target``: ``{"boxes": float32 [N, 4] xyxy in pixels of the resized image
  (a ``tv_tensors.BoundingBoxes``, so ``torchvision.transforms.v2`` transforms
  move them), "labels": int64 [N] in 0..19 (index in ``VOC_CLASSES``),
  "difficult": bool [N]}``. Coordinates are the annotation's numbers (VOC's
  1-based pixel indices) times the resize scale plus the letterbox offset.

Bad annotations: a class name outside ``VOC_CLASSES`` raises ``ValueError``
naming the file and the name; a degenerate box (``xmax <= xmin`` or
``ymax <= ymin``) is skipped with a ``warnings.warn`` naming the file.

Where the files are looked for, in order: ``root=``, ``$FPTT_EXT_DATA/voc``,
``$FPTT_EXT_DATA``; the folder must hold torchvision's layout
``VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}`` (and
``VOCdevkit/VOC2012/...``), i.e. the official tar files extracted in it
(``root`` may also be the ``VOCdevkit`` folder itself).

Example (no data needed):
    >>> VOC_CLASSES[:3], len(VOC_CLASSES), VOC_CLASSES.index("person")
    (('aeroplane', 'bicycle', 'bird'), 20, 14)
"""

from __future__ import annotations

import bisect
import os
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .images import DatasetNotFoundError

__all__ = ["VOC_CLASSES", "VOCDetectionDataset", "voc_collate", "voc_detection"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
_INDEX = {name: i for i, name in enumerate(VOC_CLASSES)}
_SPLITS = ("train", "val", "trainval", "test")


def _split_file(base: Path, year: str, split: str) -> Path:
    return base / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"


def _find_root(root, years, split) -> Path:
    candidates = []
    if root is not None:
        r = Path(root).expanduser()
        candidates += [r, r.parent] if r.name == "VOCdevkit" else [r]
    if os.environ.get("FPTT_EXT_DATA"):
        env = Path(os.environ["FPTT_EXT_DATA"]).expanduser()
        candidates += [env / "voc", env]
    for c in candidates:
        if all(_split_file(c, y, split).is_file() for y in years):
            return c
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    tars = []
    for y in years:
        key = "2007-test" if (y, split) == ("2007", "test") else y
        tars.append(DATASET_YEAR_DICT[key]["filename"])
    looked = ", ".join(str(c) for c in candidates) or "nowhere (no root= and no FPTT_EXT_DATA)"
    expected = ", ".join(f"VOCdevkit/VOC{y}/{{JPEGImages,Annotations}}/ and VOCdevkit/VOC{y}/ImageSets/Main/{split}.txt"
                         for y in years)
    raise DatasetNotFoundError(
        f"PASCAL VOC ({'+'.join(years)} {split}) not found; looked in: {looked}. Expected in that folder: {expected}. "
        f"To get it: on a machine with internet download {', '.join(tars)} from the PASCAL VOC site "
        f"(host.robots.ox.ac.uk/pascal/VOC), extract them into one folder (they create VOCdevkit/VOC<year>/) and "
        f"pass that folder as root= or set FPTT_EXT_DATA"
    )


def _objects(annotation: dict, path: str):
    """(boxes [N, 4] float, labels [N] long, difficult [N] bool) of a parsed VOC XML, in its pixels."""
    objs = annotation.get("annotation", {}).get("object", [])
    if isinstance(objs, dict):
        objs = [objs]
    boxes, labels, difficult = [], [], []
    for obj in objs:
        name = str(obj.get("name", "")).strip()
        if name not in _INDEX:
            raise ValueError(f"{path}: unknown class name {name!r} (VOC classes: {', '.join(VOC_CLASSES)})")
        try:
            bb = obj["bndbox"]
            x1, y1, x2, y2 = (float(bb[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: object {name!r} has no valid bndbox ({err!r})") from err
        if x2 <= x1 or y2 <= y1:
            warnings.warn(f"{path}: skipped the degenerate box of {name!r} (xmin={x1:g}, ymin={y1:g}, "
                          f"xmax={x2:g}, ymax={y2:g})", stacklevel=3)
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(_INDEX[name])
        difficult.append(str(obj.get("difficult", "0")).strip() == "1")
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64),
            torch.tensor(difficult, dtype=torch.bool))


class VOCDetectionDataset(Dataset):
    """One or more ``torchvision.datasets.VOCDetection`` sets, concatenated, with resized tensors.

    Example:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> voc = pathlib.Path(tempfile.mkdtemp()) / "VOCdevkit" / "VOC2007"     # a one-image VOC2007
        >>> for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        ...     (voc / sub).mkdir(parents=True)
        >>> Image.new("RGB", (200, 100)).save(voc / "JPEGImages" / "000001.jpg")
        >>> _ = (voc / "Annotations" / "000001.xml").write_text(
        ...     "<annotation><filename>000001.jpg</filename><object><name>dog</name><difficult>0</difficult>"
        ...     "<bndbox><xmin>20</xmin><ymin>10</ymin><xmax>120</xmax><ymax>90</ymax></bndbox></object></annotation>")
        >>> _ = (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001")
        >>> ds = voc_detection(root=voc.parent.parent, years=("2007",), image_size=32)
        >>> ds, len(ds)
        (VOCDetectionDataset(VOC2007 trainval, n=1, image_size=32), 1)
    """

    def __init__(self, parts, image_size: int = 416, letterbox: bool = True, fill: float = 0.5,
                 keep_difficult: bool = True, transforms=None):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.parts = list(parts)
        self.image_size = image_size
        self.letterbox = letterbox
        self.fill = float(fill)
        self.keep_difficult = keep_difficult
        self.transforms = transforms
        self._ends = []
        n = 0
        for p in self.parts:
            n += len(p)
            self._ends.append(n)

    @property
    def images(self) -> list[str]:
        return [f for p in self.parts for f in p.images]

    @property
    def annotations(self) -> list[str]:
        return [f for p in self.parts for f in p.annotations]

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: int):
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        k = bisect.bisect_right(self._ends, index)
        part, i = self.parts[k], index - (self._ends[k - 1] if k else 0)
        pil, annotation = part[i]  # RGB PIL image, parsed XML
        boxes, labels, difficult = _objects(annotation, part.annotations[i])
        if not self.keep_difficult:
            boxes, labels, difficult = boxes[~difficult], labels[~difficult], difficult[~difficult]

        S = self.image_size
        w, h = pil.size
        if self.letterbox:
            scale = S / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        else:
            nw, nh = S, S
        left, top = (S - nw) // 2, (S - nh) // 2
        img = TF.resize(TF.pil_to_tensor(pil), [nh, nw], antialias=True).float().div_(255.0)
        if (nw, nh) != (S, S):
            canvas = torch.full((3, S, S), self.fill, dtype=torch.float32)
            canvas[:, top:top + nh, left:left + nw] = img
            img = canvas
        boxes = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h]) + torch.tensor([left, top, left, top])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(S, S)),
            "labels": labels,
            "difficult": difficult,
        }
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target

    def __repr__(self):
        years = "+".join(p.year for p in self.parts)
        split = self.parts[0].image_set if self.parts else "?"
        return f"VOCDetectionDataset(VOC{years} {split}, n={len(self)}, image_size={self.image_size})"


def voc_detection(root=None, split: str = "trainval", years=None, image_size: int = 416, letterbox: bool = True,
                  fill: float = 0.5, keep_difficult: bool = True, transforms=None) -> VOCDetectionDataset:
    """PASCAL VOC detection; see the module docstring for the items and conventions.

    ``years`` defaults to ``("2007", "2012")`` for ``train``/``val``/``trainval``
    and to ``("2007",)`` for ``test`` (VOC2012 test annotations are not public).
    ``transforms(image, target)``, if given, runs last (e.g. a
    ``torchvision.transforms.v2`` pipeline; the boxes follow it).

    Example:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> voc = pathlib.Path(tempfile.mkdtemp()) / "VOCdevkit" / "VOC2007"     # a one-image VOC2007
        >>> for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        ...     (voc / sub).mkdir(parents=True)
        >>> Image.new("RGB", (200, 100)).save(voc / "JPEGImages" / "000001.jpg")
        >>> _ = (voc / "Annotations" / "000001.xml").write_text(
        ...     "<annotation><filename>000001.jpg</filename><object><name>dog</name><difficult>0</difficult>"
        ...     "<bndbox><xmin>20</xmin><ymin>10</ymin><xmax>120</xmax><ymax>90</ymax></bndbox></object></annotation>")
        >>> _ = (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001")
        >>> ds = voc_detection(root=voc.parent.parent, split="trainval", years=("2007",), image_size=64)
        >>> image, target = ds[0]
        >>> image.shape, [VOC_CLASSES[i] for i in target["labels"]], [round(v) for v in target["boxes"][0].tolist()]
        (torch.Size([3, 64, 64]), ['dog'], [6, 19, 38, 45])
    """
    from torchvision.datasets import VOCDetection

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if years is None:
        years = ("2007",) if split == "test" else ("2007", "2012")
    years = tuple(str(y) for y in ([years] if isinstance(years, (str, int)) else years))
    if not years:
        raise ValueError("years must name at least one VOC year")
    for y in years:
        if y not in {str(v) for v in range(2007, 2013)}:
            raise ValueError(f"VOC years are 2007 ... 2012, got {y!r}")
        if split == "test" and y != "2007":
            raise ValueError(f"only VOC2007 has a public test set, got years={years}")
    base = _find_root(root, years, split)
    try:
        parts = [VOCDetection(str(base), year=y, image_set=split, download=False) for y in years]
    except (RuntimeError, OSError) as err:
        raise DatasetNotFoundError(f"PASCAL VOC under {base} is unreadable ({err})") from err
    return VOCDetectionDataset(parts, image_size, letterbox, fill, keep_difficult, transforms)


def voc_collate(batch):
    """Batch ``(image, target)`` items: ``(images [B, 3, S, S], [target, ...])`` (targets differ in length).

    >>> item = lambda n: (torch.zeros(3, 8, 8), {"boxes": torch.zeros(n, 4), "labels": torch.zeros(n).long()})
    >>> images, targets = voc_collate([item(2), item(0)])
    >>> images.shape, [len(t["labels"]) for t in targets]
    (torch.Size([2, 3, 8, 8]), [2, 0])
    """
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
