"""Model zoo: the papers' networks behind a timm-style registry.

>>> from fptt_ext.zoo import create_model, list_models
>>> list_models("srnn_*")
['srnn_addtask']
"""

from . import models  # noqa: F401  (registers the entries)
from .registry import CheckpointError, create_model, list_models, load_pretrained, model_card, register_model

__all__ = ["CheckpointError", "create_model", "list_models", "load_pretrained", "model_card", "register_model"]
