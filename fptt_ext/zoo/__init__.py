"""Model zoo: the papers' networks behind a timm-style registry.

>>> from fptt_ext.zoo import create_model, list_models
>>> list_models("srnn_*")
['srnn_addtask']
"""

from . import models  # noqa: F401  (registers the entries)
from .evaluate import accuracy, evaluate
from .registry import CheckpointError, create_model, list_models, load_pretrained, model_card, register_model

__all__ = ["CheckpointError", "accuracy", "create_model", "evaluate", "list_models", "load_pretrained", "model_card",
           "register_model"]
