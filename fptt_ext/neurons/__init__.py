"""Neurons: the functional core, the gates, and the snnTorch / SpikingJelly adapters."""

from .functional import adaptive_step, alif_step, li_step, ltc_step
from .gates import ConstantGate, ConvGate, DenseGate
from .snntorch import ALIF, LI, LTC
from .surrogate import MultiGaussian, multi_gaussian

__all__ = [
    "ALIF",
    "LI",
    "LTC",
    "ConstantGate",
    "ConvGate",
    "DenseGate",
    "MultiGaussian",
    "adaptive_step",
    "alif_step",
    "li_step",
    "ltc_step",
    "multi_gaussian",
]
