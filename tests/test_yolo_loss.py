"""YOLOLoss with an object to find, against a loss worked out by hand.

One head on a 2 x 2 grid of a 64 x 64 image (cells of 32 px), one anchor of 16 x 16 px, one
class. All logits 0 except the class logit of cell (0, 0), 2.0. Decoded (scale_xy 1.05):
sigmoid(0) = 0.5 puts every predicted box at its cell's centre, exp(0) gives the anchor's
size, so cell (0, 0) predicts [8, 8, 24, 24]. The ground truth [4, 8, 28, 32] (24 x 24,
centre (16, 20)) has its centre in cell (0, 0): that anchor is responsible.

* box: 1 - CIoU = 1 - IoU + rho^2 / c^2 (both boxes square: no aspect term), with
  IoU = 16^2 / 24^2 = 4/9 (the prediction lies inside the box), rho^2 = 4^2 (the centres),
  c^2 = 24^2 + 24^2 (the enclosing box is the ground truth): 5/9 + 16/1152 = 41/72.
* obj: BCE(logit 0) is log 2 whatever the target; 4 anchors (none ignored: the other cells'
  boxes do not touch the ground truth): 4 log 2.
* cls: the smoothed target 1 - 0.05/2 = 0.975 at logit 2:
  0.975 log(1 + e^-2) + 0.025 log(1 + e^2).
"""

from __future__ import annotations

import math

import pytest
import torch

from fptt_ext.detection import YOLOLoss

BOX = 41 / 72
OBJ_PER_IMAGE = 4 * math.log(2)
CLS = 0.975 * math.log1p(math.exp(-2)) + 0.025 * math.log1p(math.exp(2))


def _logits(batch: int) -> torch.Tensor:
    out = torch.zeros(batch, 6, 2, 2)  # 1 anchor x (x, y, w, h, obj, cls)
    out[0, 5, 0, 0] = 2.0
    return out


def test_one_object_by_hand():
    crit = YOLOLoss(torch.tensor([[0.25, 0.25]]), masks=((0,),), num_classes=1)
    target = [{"boxes": torch.tensor([[4.0, 8.0, 28.0, 32.0]]), "labels": torch.tensor([0])}]
    loss, parts = crit([_logits(1)], target, image_size=(64, 64))
    assert parts["box"] == pytest.approx(BOX, abs=1e-5)
    assert parts["obj"] == pytest.approx(OBJ_PER_IMAGE, abs=1e-5)
    assert parts["cls"] == pytest.approx(CLS, abs=1e-5)
    assert loss.item() == pytest.approx(BOX + OBJ_PER_IMAGE + CLS, abs=1e-5)


def test_sums_are_divided_by_the_batch_size():
    crit = YOLOLoss(torch.tensor([[0.25, 0.25]]), masks=((0,),), num_classes=1, box_gain=2.0)
    targets = [{"boxes": torch.tensor([[4.0, 8.0, 28.0, 32.0]]), "labels": torch.tensor([0])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]  # a second, empty image
    loss, parts = crit([_logits(2)], targets, image_size=(64, 64))
    assert parts["box"] == pytest.approx(BOX / 2, abs=1e-5)
    assert parts["obj"] == pytest.approx(2 * OBJ_PER_IMAGE / 2, abs=1e-5)
    assert parts["cls"] == pytest.approx(CLS / 2, abs=1e-5)
    assert loss.item() == pytest.approx((2 * BOX + 2 * OBJ_PER_IMAGE + CLS) / 2, abs=1e-5)


def test_a_prediction_on_the_object_is_not_pushed_to_objectness_zero():
    """Another anchor whose box overlaps the ground truth by more than ignore_thresh is left
    out of the objectness loss: 3 of the 4 anchors count in the second head below."""
    # 24 px: takes the box; 8 px: shape IoU 64/576 = 0.11, below the 0.213 that would make it responsible too
    anchors = torch.tensor([[0.375, 0.375], [0.125, 0.125]])
    crit = YOLOLoss(anchors, masks=((0,), (1,)), num_classes=1, ignore_thresh=0.1)
    target = [{"boxes": torch.tensor([[4.0, 4.0, 28.0, 28.0]]), "labels": torch.tensor([0])}]
    _, parts = crit([torch.zeros(1, 6, 2, 2), torch.zeros(1, 6, 2, 2)], target, image_size=(64, 64))
    # head 0: the responsible anchor predicts the box exactly (CIoU 1, box loss 0); 4 anchors in obj.
    # head 1: cell (0, 0) predicts [12, 12, 20, 20], IoU 64/576 = 0.11 > 0.1 with the box: ignored;
    # 3 anchors left.
    assert parts["box"] == pytest.approx(0.0, abs=1e-6)
    assert parts["obj"] == pytest.approx((4 + 3) * math.log(2), abs=1e-5)
    assert parts["cls"] == pytest.approx(math.log(2), abs=1e-6)  # logit 0: log 2 for any target
