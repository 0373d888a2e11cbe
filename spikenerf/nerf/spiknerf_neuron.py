"""Spik-NeRF's neuron, its deployed form and its options, shared by the voxel-grid field (``spiknerf``) and the
NeRF MLP (``spiknerf-mlp``).

One hard-reset (to 0) LIF neuron of the core (:func:`spikenerf.snn.make_node`) with one of Spik-NeRF's spike
codes; deploying it (shifted codes, folded biases) is the core's too (:mod:`spikenerf.snn.deploy`):
:class:`DeployedNeuron` is that deployed code behind the interface the time layouts run
(:mod:`spikenerf.nerf.time_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Literal, Optional

from torch import Tensor

from spikenerf.snn import BaseNode, make_node
from spikenerf.snn.deploy import DEPLOY_OFFSET, deployed_code, deployed_spikes

from .time_layout import TimeMode, segment_steps

__all__ = ["SpikeCodeName", "SPIKE_CODES", "make_neuron", "DeployedNeuron", "train_code_nonzero", "SpikNeRFOptions"]

SpikeCodeName = Literal["ternary012", "ternary", "binary"]
SPIKE_CODES = ("ternary012", "ternary", "binary")


def make_neuron(code: str, tau: float = 4.0, v_threshold: float = 0.5, margin: float = 1.0,
                decay_input: bool = False, surrogate: str = "atan") -> BaseNode:
    """A hard-reset (to 0) LIF neuron with one of Spik-NeRF's spike codes.

    ``ternary012``: {0, 1, 2} (2 above ``v_threshold + margin``); ``ternary``: {-1, 0, 1} times a trainable
    layer-wise amplitude; ``binary``: {0, 1}.
    """
    if code not in SPIKE_CODES:
        raise ValueError(f"spike_code must be 'ternary012', 'ternary' or 'binary', got {code!r}")
    kw: Dict[str, Any] = dict(decay_input=decay_input, v_threshold=v_threshold, reset="hard", v_reset=0.0,
                              surrogate=surrogate, spike_code=code)
    if code == "ternary012":
        kw["margin"] = margin
    if code == "ternary":
        kw["amplitude"] = "learnable"
    return make_node("lif", tau=tau, **kw)


class DeployedNeuron:
    """``node`` as deployed: every forward sends the raw code shifted by :data:`~spikenerf.snn.deploy.
    DEPLOY_OFFSET` (``{-1, 0, 1}`` for ternary012), no output scale (the next layer is folded,
    :func:`~spikenerf.snn.deploy.fold_consumer`). Deployment is inference: no gradient through the in-place
    forms."""

    def __init__(self, node: BaseNode) -> None:
        self.node = node

    def __call__(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` block -> deployed code, the same shape."""
        return deployed_spikes(self.node, x)

    def forward_ragged(self, xv: Tensor, starts: Tensor, steps: Tensor, reverse: bool = False) -> Tensor:
        return deployed_code(self.node, self.node.forward_ragged(xv, starts, steps, reverse, raw=True))

    def forward_segments(self, xv: Tensor, starts: Tensor, reverse: bool = False) -> Tensor:
        """Hole-free sequences: the ragged scan with consecutive steps (the same values, no gradient)."""
        return self.forward_ragged(xv, starts, segment_steps(starts, reverse), reverse)


def train_code_nonzero(code: str, s: Tensor, deployed: bool) -> Tensor:
    """0/1 ``[...]``: the non-zero outputs of the *training* code in ``s`` (raw code, no scale; the deployed
    code when ``deployed``, whose training 0 is sent as ``-DEPLOY_OFFSET[code]``)."""
    zero = -DEPLOY_OFFSET[code] if deployed else 0.0
    return (s != zero).to(s.dtype)


@dataclass
class SpikNeRFOptions:
    """Spik-NeRF's options, the same for every backbone (``spiknerf`` grids, ``spiknerf-mlp``); both model
    configs inherit them."""

    tau: float = 4.0
    """LIF membrane time constant: ``h_t = (1 - 1/tau) v_{t-1} + x_t`` (``decay_input=False``)."""
    v_threshold: float = 0.5
    decay_input: bool = False
    """True: SpikingJelly's ``h = v + (x - v) / tau`` (the input is scaled by 1/tau too)."""
    spike_code: SpikeCodeName = "ternary012"
    """``ternary012`` {0,1,2} (Spik-NeRF), ``ternary`` {-1,0,1} x learnable amplitude, or ``binary``."""
    margin: float = 1.0
    """ternary012: a 2 is emitted above ``v_threshold + margin``."""
    time_mode: TimeMode = "repeat"
    """``repeat``: T time steps per sample (the paper); ``ray``: one sample per time step (SpikingNeRF)."""
    time_steps: int = 2
    """T of ``time_mode=repeat``."""
    reparam_inference: bool = True
    """Evaluate/render with the re-parameterized network (shifted spikes, folded biases / amplitudes)."""
    teacher_config: Optional[Path] = None
    """config.yml of a trained ANN teacher (``spiknerf-ann``, ``spiknerf-mlp-ann``) to distil from; None = no
    distillation."""
    distill_density_weight: float = 0.5
    """lambda_d of ``lambda_d * MSE(density)``."""
    distill_color_weight: float = 0.5
    """lambda_c of ``lambda_c * MSE(colour)``."""
    distill_density_space: Literal["sigma", "alpha"] = "alpha"
    """Compare densities as the alpha of the student's sampling step (default) or as sigma per world unit (the
    paper's form). Measured on lego-400 (docs/benchmarks.md): alpha +0.60 dB over no distillation on the MLP
    (sigma -1.42 dB: its squared sigma error, ~4, drowns the colour loss) and +0.07 dB on the grids (sigma +0.00)."""
