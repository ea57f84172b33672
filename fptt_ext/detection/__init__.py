"""Object detection on top of the zoo's SPYv4: YOLO targets, loss, decoding, mAP.

Built on ``torchvision.ops`` (box conversion, IoU, CIoU loss, batched NMS) and
``torchmetrics.detection.MeanAveragePrecision`` (mAP@0.5).

>>> from fptt_ext.detection import YOLOLoss, decode, mean_average_precision
"""

from .boxes import YoloHead, head_geometry
from .decode import decode
from .loss import YOLOLoss
from .metrics import mean_average_precision
from .targets import build_targets

__all__ = ["YOLOLoss", "YoloHead", "build_targets", "decode", "head_geometry", "mean_average_precision"]
