"""A synthetic detection set drawn on the fly: coloured shapes on textured backgrounds.

Each image (``[3, S, S]`` float in [0, 1]) holds 1 to ``max_objects`` filled shapes
(circle, square, triangle, diamond, cross; the classes, :data:`SHAPE_CLASSES`) of
random size, position and colour on a random background (a smooth colour field plus
stripes and noise). Targets are VOC-style, as :func:`fptt_ext.data.voc_detection`
gives them: ``{"boxes": float32 [N, 4] xyxy pixels, "labels": int64 [N], "difficult":
bool [N]}``, the box being the shape's tight pixel extent. Item ``i`` depends only on
``(seed, i)``, so a set is reproducible and two seeds give disjoint-looking sets.

:class:`Mosaic` wraps any such set: 4 images resized into the quadrants around a
random centre, their boxes moved along (YOLOv4's mosaic augmentation).

Example:
    >>> ds = SyntheticShapes(4, image_size=64, seed=0)
    >>> img, t = ds[0]
    >>> img.shape, t["boxes"].shape[1], t["labels"].dtype, bool((t["boxes"][:, 2:] > t["boxes"][:, :2]).all())
    (torch.Size([3, 64, 64]), 4, torch.int64, True)
    >>> bool((ds[0][0] == img).all())                     # deterministic
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["SHAPE_CLASSES", "Mosaic", "SyntheticShapes", "moving_shapes", "render"]

SHAPE_CLASSES = ("circle", "square", "triangle", "diamond", "cross")


def _mask(kind: str, h: int, w: int) -> torch.Tensor:
    """A boolean ``[h, w]`` mask of the shape filling its box (so the box is tight)."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    if kind == "circle":
        m = x ** 2 + y ** 2 <= 1.0
    elif kind == "square":
        m = torch.ones(h, w, dtype=torch.bool)
    elif kind == "triangle":  # apex at the top centre, base at the bottom
        m = x.abs() <= (y + 1) / 2
    elif kind == "diamond":
        m = x.abs() + y.abs() <= 1.0
    elif kind == "cross":
        m = (x.abs() <= 0.3) | (y.abs() <= 0.3)
    else:
        raise ValueError(f"unknown shape {kind!r}; shapes: {SHAPE_CLASSES}")
    return m


def _background(S: int, g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(1, 3, 4, 4, generator=g) * 0.6 + 0.2
    bg = F.interpolate(coarse, size=(S, S), mode="bilinear", align_corners=False)[0]
    period = 4 + int(torch.randint(0, 12, (1,), generator=g))
    angle = float(torch.rand(1, generator=g)) * 3.1416
    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    stripes = torch.sin((xx * torch.cos(torch.tensor(angle)) + yy * torch.sin(torch.tensor(angle))) * 6.2832 / period)
    bg = bg + 0.08 * stripes + 0.05 * torch.randn(3, S, S, generator=g)
    return bg.clamp(0, 1)


def render(background: torch.Tensor, objects, classes=SHAPE_CLASSES) -> tuple[torch.Tensor, dict]:
    """Draw ``objects`` ``(class, x0, y0, w, h, colour)`` (class: an index into ``classes``, which is
    also the label) on a copy of ``background``; returns the image and its VOC-style target.

    >>> img, t = render(torch.zeros(3, 8, 8), [(1, 2, 2, 4, 3, torch.ones(3))])
    >>> t["boxes"].tolist(), t["labels"].tolist(), float(img.sum())
    ([[2.0, 2.0, 6.0, 5.0]], [1], 36.0)
    """
    img, boxes, labels = background.clone(), [], []
    for c, x0, y0, w, h, colour in objects:
        m = _mask(classes[c], h, w)
        patch = img[:, y0:y0 + h, x0:x0 + w]
        img[:, y0:y0 + h, x0:x0 + w] = torch.where(m, colour[:, None, None], patch)
        boxes.append((x0, y0, x0 + w, y0 + h))
        labels.append(c)
    # later shapes may cover earlier ones: keep the annotation (as VOC keeps occluded objects)
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels,
              dtype=torch.int64), "difficult": torch.zeros(len(labels), dtype=torch.bool)}
    return img, target


class SyntheticShapes(Dataset):
    """``n`` images of ``image_size`` pixels with 1..``max_objects`` shapes each.

    Args:
        n: number of images.
        image_size: side ``S`` of the square images (a multiple of 32 for SPYv4).
        seed: set seed; item ``i`` is drawn from ``torch.Generator().manual_seed(seed * 1_000_003 + i)``.
        max_objects: most shapes per image.
        min_size, max_size: shape side as fractions of ``S``.
        classes: which shapes to draw (names from :data:`SHAPE_CLASSES`).

    >>> ds = SyntheticShapes(2, image_size=32, seed=1, max_objects=2, classes=("circle", "square"))
    >>> img, t = ds[1]
    >>> len(ds), img.shape, 1 <= len(t["labels"]) <= 2, bool((t["labels"] < 2).all())
    (2, torch.Size([3, 32, 32]), True, True)
    """

    def __init__(self, n: int, image_size: int = 128, seed: int = 0, max_objects: int = 3, min_size: float = 0.15,
                 max_size: float = 0.5, classes=SHAPE_CLASSES):
        if n < 0 or image_size < 16:
            raise ValueError(f"need n >= 0 and image_size >= 16, got n={n}, image_size={image_size}")
        if not 0 < min_size <= max_size <= 1:
            raise ValueError(f"need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
        unknown = [c for c in classes if c not in SHAPE_CLASSES]
        if unknown:
            raise ValueError(f"unknown shapes {unknown}; choose from {SHAPE_CLASSES}")
        self.n, self.image_size, self.seed, self.max_objects = n, image_size, seed, max_objects
        self.min_size, self.max_size, self.classes = min_size, max_size, tuple(classes)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, objects = self.scene(i)
        return render(img, objects, self.classes)

    def scene(self, i: int) -> tuple[torch.Tensor, list[tuple[int, int, int, int, int, torch.Tensor]]]:
        """Image ``i``'s background ``[3, S, S]`` and its shapes ``(class, x0, y0, w, h, colour)`` (class:
        an index into ``self.classes``), in drawing order; :func:`render` draws them."""
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        i %= self.n
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        S = self.image_size
        img = _background(S, g)
        objects = []
        for _ in range(1 + int(torch.randint(0, self.max_objects, (1,), generator=g))):
            c = int(torch.randint(0, len(self.classes), (1,), generator=g))
            lo, hi = self.min_size * S, self.max_size * S
            w = max(4, int(lo + (hi - lo) * float(torch.rand(1, generator=g))))
            h = max(4, int(w * (0.7 + 0.6 * float(torch.rand(1, generator=g)))))
            h = min(h, S)
            x0 = int(torch.randint(0, S - w + 1, (1,), generator=g))
            y0 = int(torch.randint(0, S - h + 1, (1,), generator=g))
            colour = torch.rand(3, generator=g)
            colour[int(torch.randint(0, 3, (1,), generator=g))] = 1.0  # saturated, so it stands out
            objects.append((c, x0, y0, w, h, colour))
        return img, objects

    def __repr__(self) -> str:
        return f"SyntheticShapes(n={self.n}, image_size={self.image_size}, seed={self.seed})"


def moving_shapes(frames: int, image_size: int = 128, seed: int = 0, speed: float = 2.0,
                  max_objects: int = 3) -> tuple[torch.Tensor, list[dict]]:
    """A short clip: the shapes of one synthetic scene gliding over its background.

    Each shape moves ``speed`` pixels per frame in a random direction and bounces off the
    image edges. Returns the frames ``[frames, 3, S, S]`` in [0, 1] and each frame's target
    (as :class:`SyntheticShapes` gives them).

    >>> clip, targets = moving_shapes(3, image_size=64, seed=1)
    >>> clip.shape, len(targets), bool((targets[0]["boxes"] != targets[2]["boxes"]).any())
    (torch.Size([3, 3, 64, 64]), 3, True)
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    background, objects = SyntheticShapes(1, image_size, seed, max_objects).scene(0)
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(len(objects), generator=g) * 6.2832
    vel = torch.stack([angles.cos(), angles.sin()], 1) * speed
    pos = torch.tensor([[x0, y0] for _, x0, y0, _, _, _ in objects], dtype=torch.float32)
    limit = torch.tensor([[image_size - w, image_size - h] for _, _, _, w, h, _ in objects], dtype=torch.float32)
    images, targets = [], []
    for _ in range(frames):
        moved = [(c, round(float(x)), round(float(y)), w, h, colour)
                 for (c, _, _, w, h, colour), (x, y) in zip(objects, pos)]
        img, target = render(background, moved)
        images.append(img)
        targets.append(target)
        pos = pos + vel
        bounce = (pos < 0) | (pos > limit)
        vel = torch.where(bounce, -vel, vel)
        pos = torch.minimum(pos.clamp(min=0), limit)
    return torch.stack(images), targets


class Mosaic(Dataset):
    """YOLOv4's mosaic: item ``i`` tiles image ``i`` and 3 random others around a random centre.

    Each of the 4 images is resized into its quadrant (aspect ratio not kept); boxes
    are scaled and shifted with it and dropped when smaller than ``min_box`` pixels.
    With probability ``1 - p`` the item is returned unchanged. Call :meth:`set_epoch`
    so each epoch draws new mosaics (deterministic given ``seed`` and epoch).

    >>> m = Mosaic(SyntheticShapes(8, image_size=64), seed=0)
    >>> img, t = m[3]
    >>> img.shape, bool((t["boxes"] >= 0).all() and (t["boxes"] <= 64).all())
    (torch.Size([3, 64, 64]), True)
    """

    def __init__(self, dataset, p: float = 1.0, seed: int = 0, min_box: float = 2.0):
        self.dataset, self.p, self.seed, self.min_box, self.epoch = dataset, p, seed, min_box, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed((self.seed * 7919 + self.epoch) * 1_000_003 + i)
        if float(torch.rand(1, generator=g)) >= self.p:
            return self.dataset[i]
        idx = [i] + torch.randint(0, len(self.dataset), (3,), generator=g).tolist()
        first, _ = self.dataset[i]
        _, S, S2 = first.shape
        cx = int(S2 * (0.25 + 0.5 * float(torch.rand(1, generator=g))))
        cy = int(S * (0.25 + 0.5 * float(torch.rand(1, generator=g))))
        canvas = torch.empty_like(first)
        regions = ((0, 0, cx, cy), (cx, 0, S2, cy), (0, cy, cx, S), (cx, cy, S2, S))
        boxes, labels, difficult = [], [], []
        for k, (x0, y0, x1, y1) in zip(idx, regions):
            img, t = self.dataset[k]
            h, w = img.shape[1:]
            canvas[:, y0:y1, x0:x1] = F.interpolate(img[None], size=(y1 - y0, x1 - x0), mode="bilinear",
                                                    align_corners=False, antialias=True)[0]
            b = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
            b = b * torch.tensor([(x1 - x0) / w, (y1 - y0) / h] * 2) + torch.tensor([x0, y0, x0, y0])
            ok = ((b[:, 2] - b[:, 0]) >= self.min_box) & ((b[:, 3] - b[:, 1]) >= self.min_box)
            boxes.append(b[ok])
            labels.append(torch.as_tensor(t["labels"]).long()[ok])
            difficult.append(torch.as_tensor(t.get("difficult", torch.zeros(len(ok), dtype=torch.bool)))[ok])
        return canvas, {"boxes": torch.cat(boxes), "labels": torch.cat(labels), "difficult": torch.cat(difficult)}
