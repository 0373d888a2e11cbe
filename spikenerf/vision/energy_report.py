"""Operation counts and energy estimates for a vision model and its ANN twin.

Counting rule (the usual one in the SNN literature, e.g. the Guo-group papers): a conv / linear layer
fed with real values costs ``MACs``; fed with spikes it costs one accumulate per non-zero input and
fan-out, estimated as ``SOPs = MACs * density(input)``, summed over all ``T`` steps. Energy uses
45 nm CMOS figures (Horowitz, ISSCC 2014): ``E_MAC = 4.6 pJ``, ``E_AC = 0.9 pJ``. Membrane updates,
BN (folded at inference) and pooling are not counted.

Counting and constants come from the core (:class:`spikenerf.snn.energy.OpCounter`,
:class:`~spikenerf.snn.energy.EnergyModel`; conventions in ``docs/energy.md``); this module keeps the
vision report types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from spikenerf.snn.energy import E_AC_PJ, E_MAC_PJ, EnergyModel, OpCounter

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerOps", "OpReport", "count_ops"]


@dataclass
class LayerOps:
    name: str
    macs: float = 0.0  # dense multiply-accumulates if every input were non-zero (per sample)
    density: float = 0.0  # mean fraction of non-zero inputs
    real_input: bool = False  # fed with real values (first layer): costs MACs, not SOPs


@dataclass
class OpReport:
    layers: list[LayerOps] = field(default_factory=list)
    spiking: bool = True

    @property
    def macs(self) -> float:
        """MACs actually paid: every layer in an ANN; real-input layers only in an SNN."""
        return sum(l.macs for l in self.layers if (not self.spiking or l.real_input))

    @property
    def sops(self) -> float:
        return sum(l.macs * l.density for l in self.layers if self.spiking and not l.real_input)

    @property
    def energy_pj(self) -> float:
        return EnergyModel().energy_pj(self.macs, self.sops)

    def as_dict(self) -> dict[str, float]:
        return {"macs": self.macs, "sops": self.sops, "energy_uJ": self.energy_pj * 1e-6}


@torch.no_grad()
def count_ops(model: nn.Module, batches, spiking: bool, first_layers: list[nn.Module] | None = None) -> OpReport:
    """Run ``model`` on each ``x_seq`` ``[T, B, ...]`` in ``batches`` and count per-sample ops.

    ``first_layers``: modules fed with real-valued input (counted as MACs even in an SNN); every other
    conv / linear layer is a spike layer (``SOPs = MACs * density``).
    """
    counter = OpCounter(model, real_input_layers=list(first_layers or []), exact=False)
    was_training = model.training
    model.eval()
    try:
        with counter:
            for x_seq in batches:
                counter.run(x_seq)
    finally:
        model.train(was_training)
    layers = [LayerOps(l.name, macs=l.dense_macs, density=l.firing_rate, real_input=l.real_input)
              for l in counter.per_sample()]
    return OpReport([l for l in layers if l.macs > 0], spiking=spiking)
