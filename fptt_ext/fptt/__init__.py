"""FPTT: the optimizer wrapper, the state protocol, the losses and the online loop."""

from .loop import BatchResult, SequenceTrainer, window_ends
from .losses import ClassificationLoss, PerStepLoss, RegressionEndLoss
from .optimizer import FPTT
from .state import StatefulModules, detach_tree, register_state_handler

__all__ = [
    "FPTT",
    "BatchResult",
    "ClassificationLoss",
    "PerStepLoss",
    "RegressionEndLoss",
    "SequenceTrainer",
    "StatefulModules",
    "detach_tree",
    "register_state_handler",
    "window_ends",
]
