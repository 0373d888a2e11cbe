"""Spiking ResNet-19 / ResNet-20 (CIFAR forms) and SEW-ResNet-18, each with its ANN twin (``spiking=False``).

- ResNet-19 (as in tdBN / TET / the Guo-group papers): 3x3 stem conv 128, stages of (3, 3, 2) basic
  blocks with widths (128, 256, 512), strides (1, 2, 2), global average pool, fc 256 + act, fc K.
- ResNet-20: He et al.'s CIFAR ResNet-20 (3 stages x 3 basic blocks, widths 16/32/64). (Some SNN
  papers call a wider VGG-stem network "ResNet-20"; this is the standard CIFAR one.)
- SEW-ResNet-18 (Fang et al., NeurIPS 2021, ADD connection): ``out = SN(BN(conv(SN(BN(conv(s)))))) + s'``
  where the shortcut ``s'`` is the block input spikes (or ``SN(BN(conv1x1(s)))`` when downsampling).
  ``cifar_stem`` swaps the 7x7/2 + maxpool ImageNet stem for a 3x3/1 conv.

``width`` multiplies every channel count (tiny models for tests and CPU runs).
All tensors are ``[T, B, C, H, W]``.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from spikenerf.snn.layers import SeqToANN

from ..blocks import ConvBN, NeuronConfig, SpikeAct
from .base import SeqClassifier

__all__ = ["BasicBlock", "SpikingResNet", "resnet19", "resnet20", "sew_resnet18", "sew_resnet34"]


def _w(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers. Standard: ``act2(bn2(conv2(act1(...))) + shortcut(x))``; SEW: add after ``act2``."""

    def __init__(self, owner: SeqClassifier, cin: int, cout: int, stride: int, sew: bool = False) -> None:
        super().__init__()
        self.sew = sew
        self.cb1 = ConvBN(cin, cout, 3, stride, 1)
        self.act1 = owner.act(cout, 2)
        self.cb2 = ConvBN(cout, cout, 3, 1, 1)
        self.act2 = owner.act(cout, 2)
        self.down = ConvBN(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None
        # SEW: the downsample path ends in its own neuron so the ADD joins two spike tensors
        self.act_down = owner.act(cout, 2) if (sew and self.down is not None) else None
        # (shortcut, T of the branch) -> shortcut with that T; set when layers may change T (adaptive bits)
        self.time_align: Callable[[Tensor, int], Tensor] | None = None

    def _align(self, sc: Tensor, like: Tensor) -> Tensor:
        return sc if self.time_align is None else self.time_align(sc, like.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        y = self.cb2(self.act1(self.cb1(x)))
        sc = x if self.down is None else self.down(x)
        if self.sew:
            if self.act_down is not None:
                sc = self.act_down(sc)
            a2 = self.act2(y)
            return a2 + self._align(sc, a2)
        return self.act2(y + self._align(sc, y))


class SpikingResNet(SeqClassifier):
    """Generic CIFAR-style residual network; see the module docstring for the named variants."""

    def __init__(
        self,
        stages: tuple[int, ...],
        widths: tuple[int, ...],
        strides: tuple[int, ...],
        stem_width: int,
        num_classes: int = 10,
        in_channels: int = 3,
        spiking: bool = True,
        neuron: NeuronConfig | None = None,
        width: float = 1.0,
        hidden_fc: int = 0,
        sew: bool = False,
        imagenet_stem: bool = False,
    ) -> None:
        super().__init__(spiking, neuron)
        c0 = _w(stem_width, width)
        if imagenet_stem:
            self.stem = ConvBN(in_channels, c0, 7, 2, 3)
            self.stem_pool: nn.Module = SeqToANN(nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = ConvBN(in_channels, c0, 3, 1, 1)
            self.stem_pool = nn.Identity()
        self.stem_act = self.act(c0, 2)
        blocks: list[nn.Module] = []
        cin = c0
        for n, w, s in zip(stages, widths, strides):
            cout = _w(w, width)
            for i in range(n):
                blocks.append(BasicBlock(self, cin, cout, s if i == 0 else 1, sew=sew))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.stage_sizes = tuple(stages)
        self.pool = SeqToANN(nn.AdaptiveAvgPool2d(1))
        if hidden_fc > 0:
            h = _w(hidden_fc, width)
            self.fc1: nn.Module | None = nn.Linear(cin, h)
            self.fc_act: SpikeAct | None = self.act(h, 1)
            self.fc = nn.Linear(h, num_classes)
        else:
            self.fc1, self.fc_act = None, None
            self.fc = nn.Linear(cin, num_classes)

    def _head(self, x: Tensor) -> Tensor:
        x = self.pool(x).flatten(2)  # [T, B, C]
        if self.fc1 is not None:
            x = self.fc_act(self.fc1(x))
        return self.fc(x)

    def forward_seq(self, x_seq: Tensor) -> Tensor:
        x = self.stem_act(self.stem_pool(self.stem(x_seq)))
        return self._head(self.blocks(x))

    def stages(self) -> list[Callable[[Tensor], Tensor]]:
        """One map per residual stage: the stem joins the first, the pool and classifier the last."""
        ends = [sum(self.stage_sizes[:i + 1]) for i in range(len(self.stage_sizes))]
        runs = [self.blocks[a:b] for a, b in zip([0] + ends[:-1], ends)]
        out: list[Callable[[Tensor], Tensor]] = [lambda x: runs[0](self.stem_act(self.stem_pool(self.stem(x))))]
        out += [runs[i] for i in range(1, len(runs))]
        last = out[-1]
        out[-1] = lambda x: self._head(last(x))
        return out

    def first_layers(self) -> list[nn.Module]:
        return [self.stem.conv]

    def fold_pairs(self) -> list[tuple[SpikeAct, list[nn.Module]]]:
        pairs: list[tuple[SpikeAct, list[nn.Module]]] = []
        blocks = list(self.blocks)
        for blk in blocks:
            pairs.append((blk.act1, [blk.cb2.conv]))
        if blocks and not blocks[0].sew and isinstance(self.stem_pool, nn.Identity):
            # a spike tensor that feeds the next block's conv1 and a conv shortcut only is foldable;
            # an identity shortcut adds it unscaled to the next membrane, so it is not.
            feeds: list[tuple[SpikeAct, nn.Module]] = [(self.stem_act, blocks[0])]
            feeds += [(blocks[i].act2, blocks[i + 1]) for i in range(len(blocks) - 1)]
            for act, nxt in feeds:
                if nxt.down is not None:
                    pairs.append((act, [nxt.cb1.conv, nxt.down.conv]))
            # the last block feeds global average pooling (linear) and the first fc only
            pairs.append((blocks[-1].act2, [self.fc1 if self.fc1 is not None else self.fc]))
        if self.fc_act is not None:
            pairs.append((self.fc_act, [self.fc]))
        return pairs


def resnet19(num_classes: int = 10, in_channels: int = 3, spiking: bool = True, neuron: NeuronConfig | None = None,
             width: float = 1.0) -> SpikingResNet:
    return SpikingResNet((3, 3, 2), (128, 256, 512), (1, 2, 2), 128, num_classes, in_channels, spiking, neuron,
                         width, hidden_fc=256)


def resnet20(num_classes: int = 10, in_channels: int = 3, spiking: bool = True, neuron: NeuronConfig | None = None,
             width: float = 1.0) -> SpikingResNet:
    return SpikingResNet((3, 3, 3), (16, 32, 64), (1, 2, 2), 16, num_classes, in_channels, spiking, neuron, width)


def sew_resnet18(num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                 neuron: NeuronConfig | None = None, width: float = 1.0, cifar_stem: bool = True) -> SpikingResNet:
    return SpikingResNet((2, 2, 2, 2), (64, 128, 256, 512), (1, 2, 2, 2), 64, num_classes, in_channels, spiking,
                         neuron, width, sew=True, imagenet_stem=not cifar_stem)


def sew_resnet34(num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                 neuron: NeuronConfig | None = None, width: float = 1.0, cifar_stem: bool = True) -> SpikingResNet:
    return SpikingResNet((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2), 64, num_classes, in_channels, spiking,
                         neuron, width, sew=True, imagenet_stem=not cifar_stem)
