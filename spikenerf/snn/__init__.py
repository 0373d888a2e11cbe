"""spikenerf's spiking neuron core, imported by both ``spikenerf.nerf`` and ``spikenerf.vision``.

Tensors are multi-step ``[T, B, ...]``; neurons keep no state between calls.
"""

from .affine import BiasMapConv, fold_input_affine, fold_input_affine_conv, fold_input_affine_layer
from .deploy import DEPLOY_OFFSET, count_events, deploy_affine, deployed_spikes, fold_consumer
from .energy import E_AC_PJ, E_MAC_PJ, EnergyModel, LayerCount, OpCounter, bit_budget, energy_pj, s_ace
from .fused import c_kernel_available, multistep_scan, ragged_scan, segment_scan
from .layers import MultiStep, SeqToANNContainer, seq_to_ann
from .memory import apply_memory_policy, memory_policy
from .mpbn import MPBN, fold_mpbn, mpbn_threshold
from .mpr import MPR, ShiftedNode, mpr_phi, mpr_phi_inverse, remove_mpr
from .neurons import NEURON_KINDS, BaseNode, DecayLIFNode, IFNode, LIFNode, NeuronKind, PLIFNode, make_node
from .process import configure_process, openmp_wait_policy
from .real_spike import RealSpike, UnsharedConv2d, fold_real_spike
from .reparam import fold_amplitude, fold_bn, fold_ternary012_shift
from .scan import ScanSpec, SpikeCode, scan_reference
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
    "configure_process",
    "openmp_wait_policy",
    "apply_memory_policy",
    "memory_policy",
    "BaseNode",
    "IFNode",
    "LIFNode",
    "DecayLIFNode",
    "PLIFNode",
    "make_node",
    "NeuronKind",
    "NEURON_KINDS",
    "ScanSpec",
    "SpikeCode",
    "scan_reference",
    "multistep_scan",
    "ragged_scan",
    "segment_scan",
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
    # layers
    "SeqToANNContainer",
    "MultiStep",
    "seq_to_ann",
    # membrane transforms and spike scales
    "MPBN",
    "fold_mpbn",
    "mpbn_threshold",
    "MPR",
    "mpr_phi",
    "mpr_phi_inverse",
    "remove_mpr",
    "ShiftedNode",
    "RealSpike",
    "UnsharedConv2d",
    "fold_real_spike",
    # re-parameterization
    "fold_input_affine",
    "fold_input_affine_conv",
    "fold_input_affine_layer",
    "fold_bn",
    "fold_amplitude",
    "fold_ternary012_shift",
    "BiasMapConv",
    # deployed spike codes
    "DEPLOY_OFFSET",
    "deploy_affine",
    "deployed_spikes",
    "fold_consumer",
    "count_events",
    # energy
    "E_MAC_PJ",
    "E_AC_PJ",
    "EnergyModel",
    "energy_pj",
    "OpCounter",
    "LayerCount",
    "bit_budget",
    "s_ace",
]
