"""Spik-NeRF's neuron factory, shared by the voxel-grid field (``spiknerf``) and the NeRF MLP (``nerf_mlp``).

One hard-reset (to 0) LIF neuron of the core (:class:`spikenerf.snn.LIFNode`) with one of Spik-NeRF's spike
codes; deploying it (shifted codes, folded biases) is the core's too (:mod:`spikenerf.snn.deploy`).
"""

from __future__ import annotations

from typing import Any, Dict, Literal

from spikenerf.snn import LIFNode

__all__ = ["SpikeCodeName", "SPIKE_CODES", "make_neuron"]

SpikeCodeName = Literal["ternary012", "ternary", "binary"]
SPIKE_CODES = ("ternary012", "ternary", "binary")


def make_neuron(code: str, tau: float = 4.0, v_threshold: float = 0.5, margin: float = 1.0,
                decay_input: bool = False, surrogate: str = "atan") -> LIFNode:
    """A hard-reset (to 0) LIF neuron with one of Spik-NeRF's spike codes.

    ``ternary012``: {0, 1, 2} (2 above ``v_threshold + margin``); ``ternary``: {-1, 0, 1} times a trainable
    layer-wise amplitude; ``binary``: {0, 1}.
    """
    if code not in SPIKE_CODES:
        raise ValueError(f"spike_code must be 'ternary012', 'ternary' or 'binary', got {code!r}")
    kw: Dict[str, Any] = dict(tau=tau, decay_input=decay_input, v_threshold=v_threshold, reset="hard",
                              v_reset=0.0, surrogate=surrogate, spike_code=code)
    if code == "ternary012":
        kw["margin"] = margin
    if code == "ternary":
        kw["amplitude"] = "learnable"
    return LIFNode(**kw)
