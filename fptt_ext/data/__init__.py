"""Data: task generators and dataset loaders.

>>> from fptt_ext.data import AddTask
>>> AddTask(T=10, batch_size=2, seed=0)
AddTask(T=10, batch_size=2, seed=0)
"""

from .addtask import AddTask, add_task_batch, batch_seed

__all__ = ["AddTask", "add_task_batch", "batch_seed"]

from .events import cifar10_dvs, dvs_gesture
from .voc import VOC_CLASSES, voc_collate, voc_detection

__all__ += ["VOC_CLASSES", "cifar10_dvs", "dvs_gesture", "voc_collate", "voc_detection"]
