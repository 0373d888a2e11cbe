"""Spiking neurons: one module per model, all on :class:`BaseNode` and the shared scan."""

from .base import BaseNode
from .factory import NEURON_KINDS, NeuronKind, make_node
from .hetsyn import HetSynLIF, hetsyn_drive, hetsyn_fire
from .if_ import IFNode
from .lif import DecayLIFNode, LIFNode
from .plif import PLIFNode
from .refined import RefinedNode

__all__ = ["BaseNode", "make_node", "NeuronKind", "NEURON_KINDS", "IFNode", "LIFNode", "DecayLIFNode", "PLIFNode", "HetSynLIF", "hetsyn_drive", "hetsyn_fire", "RefinedNode"]
