"""FPTT: the optimizer wrapper, the state protocol, the losses and the online loop."""

from .loop import BatchResult, SequenceTrainer, window_ends
from .losses import ClassificationLoss, PerStepLoss, RegressionEndLoss
from .optimizer import FPTT
from .state import StatefulModules, detach_tree, register_state_handler

__all__ = [
    "FPTT", "SequenceTrainer", "BatchResult", "window_ends", "ClassificationLoss", "PerStepLoss",
    "RegressionEndLoss", "StatefulModules", "detach_tree", "register_state_handler",
]
