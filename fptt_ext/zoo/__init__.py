"""Model zoo: the papers' networks behind a timm-style registry.

>>> from fptt_ext.zoo import create_model, list_models
>>> list_models("srnn_*")
['srnn_addtask', 'srnn_dvsgesture', 'srnn_psmnist', 'srnn_smnist', 'srnn_smnist5k']
"""

from . import models, models_detection  # noqa: F401  (registers the entries)
from .base import SpikingNet, architecture
from .evaluate import accuracy, addtask_mse, evaluate, loader_accuracy
from .registry import (
                       CheckpointError,
                       create_model,
                       list_models,
                       load_pretrained,
                       model_card,
                       model_constructor,
                       register_model,
                       zoo_dir,
)

__all__ = ["CheckpointError", "SpikingNet", "accuracy", "addtask_mse", "architecture", "create_model", "evaluate", "list_models",
           "load_pretrained", "loader_accuracy", "model_card", "model_constructor", "register_model",
           "zoo_dir"]
