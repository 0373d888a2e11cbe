"""Spiking PointNet (Ren et al., NeurIPS 2023) and its ANN twin; input ``[T, B, 3, N]`` points.

PointNet without the T-nets: shared MLP 64-128-1024 (1x1 Conv1d + BN + act), max pool over the N
points (the last layer is conv -> max over points -> BN -> act, see :class:`ConvMaxBN`), fc 512-256
(+BN + act), fc K. The paper's two training ideas live outside the module:

- "trained with T=1, evaluated at T=1..4": the model is time-agnostic; the CLI trains with ``T=1`` and
  ``eval`` can sweep ``--eval-timesteps``.
- membrane potential perturbation: a random initial membrane ``U(lo, hi)`` in every training
  forward, set by ``NeuronConfig.init_membrane`` (implemented by ``spikenerf.snn.BaseNode``); so a
  single-step model sees the residual membranes it meets at later steps.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..blocks import ConvBN, ConvMaxBN, LinearBN, NeuronConfig, SpikeAct
from .base import SeqClassifier

__all__ = ["SpikingPointNet", "spiking_pointnet"]


class SpikingPointNet(SeqClassifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                 neuron: NeuronConfig | None = None, width: float = 1.0) -> None:
        super().__init__(spiking, neuron)
        w = lambda c: max(1, int(round(c * width)))  # noqa: E731
        dims = [in_channels, w(64), w(128), w(1024)]
        self.mlp_convs = nn.ModuleList([ConvBN(dims[0], dims[1], 1, dim=1), ConvBN(dims[1], dims[2], 1, dim=1),
                                        ConvMaxBN(dims[2], dims[3])])
        self.mlp_acts = nn.ModuleList([self.act(dims[i + 1], 1) for i in range(3)])  # the 3rd acts on [T, B, C]
        self.fc1, self.act1 = LinearBN(dims[3], w(512)), self.act(w(512), 1)
        self.fc2, self.act2 = LinearBN(w(512), w(256)), self.act(w(256), 1)
        self.fc3 = nn.Linear(w(256), num_classes)

    def forward_seq(self, x_seq: Tensor) -> Tensor:
        x = x_seq
        for cb, act in zip(self.mlp_convs[:2], self.mlp_acts[:2]):
            x = act(cb(x))
        # symmetric max over points of the last layer's current (then BN, then fire): [T, B, C].
        # Why: pooling spikes of hundreds of points gives all-ones features and spreads the gradient
        # over tied maxima; pooling the current keeps it informative and routes it to the arg-max.
        x = self.mlp_acts[2](self.mlp_convs[2](x))
        x = self.act1(self.fc1(x))
        x = self.act2(self.fc2(x))
        return self.fc3(x)

    def first_layers(self) -> list[nn.Module]:
        return [self.mlp_convs[0].conv]

    def fold_pairs(self) -> list[tuple[SpikeAct, list[nn.Module]]]:
        return [(self.mlp_acts[0], [self.mlp_convs[1].conv]), (self.mlp_acts[1], [self.mlp_convs[2].conv]),
                (self.mlp_acts[2], [self.fc1.fc]), (self.act1, [self.fc2.fc]), (self.act2, [self.fc3])]


def spiking_pointnet(num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                     neuron: NeuronConfig | None = None, width: float = 1.0) -> SpikingPointNet:
    return SpikingPointNet(num_classes, in_channels, spiking, neuron, width)
