"""Neurons: the functional core, the gates, and the snnTorch / SpikingJelly adapters."""

from .functional import adaptive_step, alif_step, li_step, ltc_step
from .gates import ConstantGate, ConvGate, DenseGate
from .snntorch import ALIF, LI, LTC
from .surrogate import MultiGaussian, multi_gaussian

__all__ = [
    "LTC", "ALIF", "LI", "ltc_step", "alif_step", "li_step", "adaptive_step",
    "DenseGate", "ConvGate", "ConstantGate", "MultiGaussian", "multi_gaussian",
]
