"""A small Spikformer (Zhou et al., ICLR 2023) on the core's neurons, with its ANN twin (``spiking=False``).

- Spiking patch splitting (SPS): ``conv3x3-BN-SN`` with ``D/4``, ``D/2``, ``D`` channels, a 2x2 max pool after
  the 2nd and 3rd (skipped once the map is 2x2), then the relative position embedding
  ``x + SN(BN(conv3x3(x)))``; the map is flattened into ``N`` tokens ``[T, B, N, D]``.
- Encoder block: ``x = x + SSA(x)``, ``x = x + MLP(x)`` with spiking self-attention
  ``Q, K, V = SN(BN(Linear(x)))`` (per head), ``SSA = SN(BN(Linear(SN(s Q K^T V))))`` (no softmax: spike-form
  Q/K/V make the product non-negative; ``s = 0.125``) and ``MLP = SN(BN(Linear(SN(BN(Linear(x))))))``
  with hidden ``4 D``.
- Head: mean over tokens, ``Linear(D, K)``; prediction = mean over ``T``.

Every ``SN`` is a :class:`~spikenerf.vision.blocks.SpikeAct` (a :mod:`spikenerf.snn` neuron or a ReLU in the
twin). When layers run at different temporal lengths (adaptive bit allocation), ``K``, ``V`` and the residual
inputs are resampled to the consuming branch's length with the core's mean-preserving
:func:`spikenerf.snn.neurons.refined.resample_time` (identity when the lengths agree).
"""

from __future__ import annotations

from torch import Tensor, nn

from spikenerf.snn.layers import SeqToANN
from spikenerf.snn.neurons.refined import resample_time

from ..blocks import ConvBN, NeuronConfig, SpikeAct
from .base import SeqClassifier

__all__ = ["Spikformer", "spikformer", "TokenLinearBN"]


class TokenLinearBN(nn.Module):
    """Linear + BN1d over the feature dim of ``[T, B, N, D]`` tokens."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=False)
        self.bn = nn.BatchNorm1d(fout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x)
        return self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


def _match(x: Tensor, like: Tensor) -> Tensor:
    return resample_time(x, like.shape[0])


class SpikingSelfAttention(nn.Module):
    def __init__(self, owner: SeqClassifier, dim: int, heads: int, scale: float = 0.125) -> None:
        super().__init__()
        self.heads, self.scale = heads, scale
        self.q, self.k, self.v = (TokenLinearBN(dim, dim) for _ in range(3))
        self.q_act, self.k_act, self.v_act = (owner.act(dim, 1) for _ in range(3))
        self.attn_act = owner.act(dim, 1)
        self.proj = TokenLinearBN(dim, dim)
        self.proj_act = owner.act(dim, 1)

    def _split(self, x: Tensor) -> Tensor:  # [T, B, N, D] -> [T, B, h, N, D/h]
        T, B, N, D = x.shape
        return x.reshape(T, B, N, self.heads, D // self.heads).transpose(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        q = self.q_act(self.q(x))
        k = self.k_act(self.k(x))
        v = self.v_act(self.v(x))
        k, v = _match(k, q), _match(v, q)
        qh, kh, vh = self._split(q), self._split(k), self._split(v)
        a = (qh @ kh.transpose(-2, -1)) @ vh * self.scale  # [T, B, h, N, d]
        T, B, h, N, d = a.shape
        a = self.attn_act(a.transpose(2, 3).reshape(T, B, N, h * d))
        return self.proj_act(self.proj(a))


class SpikingMLP(nn.Module):
    def __init__(self, owner: SeqClassifier, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act1 = TokenLinearBN(dim, hidden), owner.act(hidden, 1)
        self.fc2, self.act2 = TokenLinearBN(hidden, dim), owner.act(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(self.fc2(self.act1(self.fc1(x))))


class EncoderBlock(nn.Module):
    def __init__(self, owner: SeqClassifier, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.attn = SpikingSelfAttention(owner, dim, heads)
        self.mlp = SpikingMLP(owner, dim, dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        y = self.attn(x)
        x = y + _match(x, y)
        y = self.mlp(x)
        return y + _match(x, y)


class Spikformer(SeqClassifier):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, spiking: bool = True,
                 neuron: NeuronConfig | None = None, width: float = 1.0, input_size: int = 32, dim: int = 256,
                 depth: int = 2, heads: int = 8) -> None:
        super().__init__(spiking, neuron)
        D = max(heads, int(round(dim * width)) // heads * heads)
        self.dim = D
        chans = [max(1, D // 4), max(1, D // 2), D]
        size = input_size
        self.sps_convs = nn.ModuleList()
        self.sps_acts = nn.ModuleList()
        self.sps_pools = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(chans):
            self.sps_convs.append(ConvBN(cin, c, 3, 1, 1))
            self.sps_acts.append(self.act(c, 2))
            pool = i >= 1 and size > 2
            self.sps_pools.append(SeqToANN(nn.MaxPool2d(2)) if pool else nn.Identity())
            if pool:
                size //= 2
            cin = c
        self.rpe = ConvBN(D, D, 3, 1, 1)
        self.rpe_act = self.act(D, 2)
        self.blocks = nn.ModuleList([EncoderBlock(self, D, heads) for _ in range(depth)])
        self.fc = nn.Linear(D, num_classes)

    def forward_seq(self, x_seq: Tensor) -> Tensor:
        x = x_seq
        for cb, act, pool in zip(self.sps_convs, self.sps_acts, self.sps_pools):
            x = pool(act(cb(x)))
        r = self.rpe_act(self.rpe(x))
        x = r + _match(x, r)
        T, B, D, H, W = x.shape
        x = x.flatten(3).transpose(2, 3)  # [T, B, N, D]
        for blk in self.blocks:
            x = blk(x)
        return self.fc(x.mean(2))

    def first_layers(self) -> list[nn.Module]:
        return [self.sps_convs[0].conv]


def spikformer(num_classes: int = 10, in_channels: int = 3, spiking: bool = True, neuron: NeuronConfig | None = None,
               width: float = 1.0, input_size: int = 32, depth: int = 2, heads: int = 8) -> Spikformer:
    """Spikformer-2-256 at ``width=1`` (``dim = 256 * width``, rounded to a multiple of ``heads``)."""
    return Spikformer(num_classes, in_channels, spiking, neuron, width, input_size, 256, depth, heads)
