"""Spiking VGG-11 / VGG-16 (conv-BN-act, average pooling) with its ANN twin; ``[T, B, C, H, W]`` in.

Channels 64-M-128-M-256-256-M-512-512-M-512-512-M (times ``width``); a pooling step is skipped once
the feature map is 1x1 (``input_size`` tells the builder), so the same net runs on 8x8 digits,
32x32 CIFAR and 34x34 N-MNIST. Average pooling (not max) keeps pooling linear, so spike amplitudes
fold through it into the next conv. Head: global average pool, fc K.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from spikenerf.snn.layers import SeqToANN

from ..blocks import ConvBN, NeuronConfig, SpikeAct
from .base import SeqClassifier

__all__ = ["SpikingVGG", "vgg11", "vgg16"]

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class SpikingVGG(SeqClassifier):
    def __init__(self, cfg: tuple = VGG11, num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                 neuron: NeuronConfig | None = None, width: float = 1.0, input_size: int = 32) -> None:
        super().__init__(spiking, neuron)
        layers: list[nn.Module] = []
        self._convs: list[ConvBN] = []
        self._acts: list[SpikeAct] = []
        cin, size = in_channels, input_size
        for v in cfg:
            if v == "M":
                if size >= 2:
                    layers.append(SeqToANN(nn.AvgPool2d(2)))
                    size //= 2
                continue
            cout = max(1, int(round(v * width)))
            cb, act = ConvBN(cin, cout, 3, 1, 1), self.act(cout, 2)
            layers += [cb, act]
            self._convs.append(cb)
            self._acts.append(act)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = SeqToANN(nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(cin, num_classes)

    def forward_seq(self, x_seq: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x_seq)).flatten(2))

    def stages(self) -> list[Callable[[Tensor], Tensor]]:
        """One map per pooling stage (each ends with its average pool); the pool and fc join the last."""
        cuts = [i + 1 for i, m in enumerate(self.features) if isinstance(m, SeqToANN)]
        cuts = [0] + [c for c in cuts if c < len(self.features)] + [len(self.features)]
        runs = [self.features[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        out: list[Callable[[Tensor], Tensor]] = list(runs[:-1])
        out.append(lambda x: self.fc(self.pool(runs[-1](x)).flatten(2)))
        return out

    def first_layers(self) -> list[nn.Module]:
        return [self._convs[0].conv]

    def fold_pairs(self) -> list[tuple[SpikeAct, list[nn.Module]]]:
        pairs = [(a, [c.conv]) for a, c in zip(self._acts[:-1], self._convs[1:])]
        pairs.append((self._acts[-1], [self.fc]))  # global average pool is linear
        return pairs


def vgg11(num_classes: int = 10, in_channels: int = 3, spiking: bool = True, neuron: NeuronConfig | None = None,
          width: float = 1.0, input_size: int = 32) -> SpikingVGG:
    return SpikingVGG(VGG11, num_classes, in_channels, spiking, neuron, width, input_size)


def vgg16(num_classes: int = 10, in_channels: int = 3, spiking: bool = True, neuron: NeuronConfig | None = None,
          width: float = 1.0, input_size: int = 32) -> SpikingVGG:
    return SpikingVGG(VGG16, num_classes, in_channels, spiking, neuron, width, input_size)
