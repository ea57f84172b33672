"""fptt-ext: liquid time-constant spiking neurons and Forward Propagation Through Time
for snnTorch and SpikingJelly users.

>>> import fptt_ext
>>> fptt_ext.LTC()
LTC(size=None, conv=None, b0=0.1, beta_a=1.8, reset='zero')
"""

from .fptt import FPTT, SequenceTrainer, StatefulModules
from .neurons import ALIF, LI, LTC, surrogate
from .neurons.recurrent import RecurrentSpiking
from .neurons.surrogate import MultiGaussian, multi_gaussian

__version__ = "0.1.0"
__all__ = [
    "ALIF",
    "FPTT",
    "LI",
    "LTC",
    "MultiGaussian",
    "RecurrentSpiking",
    "SequenceTrainer",
    "StatefulModules",
    "__version__",
    "multi_gaussian",
    "surrogate",
]
