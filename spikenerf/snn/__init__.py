"""spikenerf's spiking neuron core, imported by both ``spikenerf.nerf`` and ``spikenerf.vision``.

Tensors are multi-step ``[T, B, ...]``; neurons keep no state between calls.
"""

from .fused import c_kernel_available, multistep_scan
from .neurons import BaseNode, DecayLIFNode, IFNode, LIFNode, PLIFNode
from .scan import ScanSpec, scan_reference
from .surrogate import (
    ATan,
    MultiGaussian,
    Rect,
    Sigmoid,
    Surrogate,
    SurrogateSchedule,
    Tanh,
    Triangle,
    get_surrogate,
    heaviside,
)

__all__ = [
    "BaseNode",
    "IFNode",
    "LIFNode",
    "DecayLIFNode",
    "PLIFNode",
    "ScanSpec",
    "scan_reference",
    "multistep_scan",
    "c_kernel_available",
    "Surrogate",
    "Sigmoid",
    "ATan",
    "Rect",
    "Triangle",
    "Tanh",
    "MultiGaussian",
    "SurrogateSchedule",
    "get_surrogate",
    "heaviside",
]
