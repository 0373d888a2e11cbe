"""Common base of the vision classifiers: ``[T, B, ...]`` in, ``[T, B, K]`` out, mean over ``T`` for the prediction."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from ..blocks import NeuronConfig, SpikeAct

__all__ = ["SeqClassifier"]


class SeqClassifier(nn.Module):
    """Base class.

    Subclasses build their layers with ``self.act(channels, dim)`` so the spiking model and its ANN
    twin share one definition, and implement :meth:`forward_seq`. ``fold_pairs`` lists activation
    slots whose only consumers are linear layers (conv / fc): those can absorb a spike amplitude
    (Ternary Spike) or a Real Spike scale at export.
    """

    def __init__(self, spiking: bool, neuron: NeuronConfig | None) -> None:
        super().__init__()
        self.spiking = spiking
        self.neuron_cfg = neuron or NeuronConfig()

    def act(self, channels: int, dim: int) -> SpikeAct:
        return SpikeAct(self.spiking, self.neuron_cfg, channels, dim)

    def forward_seq(self, x_seq: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``x_seq`` ``[T, B, ...]`` -> per-step logits ``[T, B, K]``."""
        raise NotImplementedError

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq`` ``[T, B, ...]`` -> logits ``[B, K]`` (mean of the classifier output over ``T``)."""
        return self.forward_seq(x_seq).mean(0)

    def fold_pairs(self) -> list[tuple[SpikeAct, list[nn.Module]]]:
        return []

    def stages(self) -> list[Callable[[Tensor], Tensor]] | None:
        """The network as a chain ``f_K o ... o f_1`` of ``[T, B, ...]`` maps (the last ends in per-step logits),
        so that ``forward_seq(x) == f_K(...f_1(x))``; methods that splice one network's first stages onto another's
        last ones use it (Joint A-SNN's hybrid branches). ``None`` where a model does not define its stages."""
        return None

    def first_layers(self) -> list[nn.Module]:
        """Layers fed with real-valued input (counted as MACs in the SNN energy estimate)."""
        return []
