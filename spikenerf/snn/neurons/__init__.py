"""Spiking neurons: one module per model, all on :class:`BaseNode` and the shared scan."""

from .base import BaseNode
from .if_ import IFNode
from .lif import DecayLIFNode, LIFNode
from .plif import PLIFNode

__all__ = ["BaseNode", "IFNode", "LIFNode", "DecayLIFNode", "PLIFNode"]
