"""SpikingJelly nodes of fptt-ext: ``from fptt_ext.spikingjelly import LTCNode``."""

from .neurons.spikingjelly import ALIFNode, LINode, LTCNode

__all__ = ["ALIFNode", "LINode", "LTCNode"]
