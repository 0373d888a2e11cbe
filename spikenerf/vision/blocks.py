"""Building blocks shared by the vision models: neuron config, the activation slot, conv+BN, MPBN, MPR, Real Spike.

Every tensor that flows between blocks is multi-step ``[T, B, ...]``. The activation slot
(:class:`SpikeAct`) holds either a :mod:`spikenerf.snn` neuron (spiking model) or a ReLU (the ANN
twin): same architecture, one flag. No neuron is defined here; the spiking dynamics all come from
``spikenerf.snn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikenerf.snn import NeuronKind, SpikeCode, get_surrogate, make_node
from spikenerf.snn.mpbn import MPBN
from spikenerf.snn.mpr import MPR
from spikenerf.snn.real_spike import RealSpike

__all__ = [
    "NeuronConfig",
    "SpikeAct",
    "ConvBN",
    "LinearBN",
    "ConvMaxBN",
    "MembraneBN",
    "MembraneRectifier",
    "RealSpikeScale",
    "build_neuron",
    "spike_acts",
]


@dataclass
class NeuronConfig:
    """How the spiking activation slots are built (ignored by the ANN twin).

    kind: ``decaylif`` (``u = decay*u + x``, Guo-group form), ``lif``, ``if``, ``plif``.
    spike_code / amplitude: ``ternary`` + ``learnable`` is Ternary Spike (Guo et al., AAAI 2024).
    mpbn: BN on the membrane before firing (MPBN, Guo et al., ICCV 2023).
    mpr: membrane potential rectifier before firing (Guo et al., ECCV 2022; use with ``reset='soft'``
        and ``v_threshold=0.5``, as in the paper).
    real_spike: learnable spike amplitude, folded into the next layer at export (Real Spike, Guo et al.,
        ECCV 2022); ``real_spike_mode='element'`` learns one amplitude per position ``(c, y, x)`` (the paper's
        element-wise form: the next conv becomes an unshared conv at inference).
    init_membrane: ``(lo, hi)`` random initial membrane in training (membrane potential perturbation
        of Spiking PointNet, NeurIPS 2023); ``init_membrane_at_test`` draws it at test time too (the paper).
    mpr_tails / mpr_scale: the rectifier's form. ``constant`` / 1 is this package's earlier stand-in (fires at
        ``V_th = 0.5``); the paper's neuron (ECCV 2022: IF, soft reset by ``V_th = 1``, fires on
        ``2 phi(u) >= 1``) is ``kind='if', v_threshold=1, reset='soft', mpr_tails='cuberoot', mpr_scale=2``.
    """

    kind: NeuronKind = "decaylif"
    decay: float = 0.5
    tau: float = 2.0
    v_threshold: float = 0.5
    reset: Literal["hard", "soft"] = "hard"
    spike_code: SpikeCode = "binary"
    amplitude: Literal["learnable", "threshold"] | None = None
    threshold_mode: Literal["fixed", "learnable", "tanh"] = "fixed"
    surrogate: str = "rect"
    surrogate_alpha: float | None = None
    detach_reset: bool = False
    mpbn: bool = False
    mpr: bool = False
    real_spike: bool = False
    real_spike_mode: Literal["channel", "element"] = "channel"
    init_membrane: tuple[float, float] | None = None
    init_membrane_at_test: bool = False
    mpr_tails: Literal["constant", "cuberoot", "code"] = "constant"
    mpr_scale: float = 1.0


class MembraneBN(MPBN):
    """MPBN (:class:`spikenerf.snn.mpbn.MPBN`) with the vision layout: ``BatchNorm2d`` for conv maps
    (``dim == 2``), ``BatchNorm1d`` otherwise. The neuron calls it per step as its ``membrane_transform``;
    the reset still acts on the raw ``h_t``.
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__(channels, bn=nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels))
        self.trailing_dims = 2 if dim == 2 else 0  # dims after C; updated on forward (fold needs it)


class MembraneRectifier(MPR):
    """MPR (:class:`spikenerf.snn.mpr.MPR`, Guo et al., ECCV 2022) as used by the vision models, ``V_th = 0.5``.

    Keeps this package's earlier constant tails (``-1`` below 0, ``2`` above 1; ``tanh`` branch in
    between, ``k = 3``). The paper's ``phi`` has cube-root tails (``MPR()``, ``tails='cuberoot'``); both are
    monotone with ``phi(1/2) = 1/2``, so spikes at ``V_th = 0.5`` are unchanged and the rectifier is dropped
    at export. TODO(vision): switch to the paper's tails (``tails='cuberoot'``) and update
    ``tests/vision/test_methods.py::test_mpr_function_and_gradient``.
    """

    def __init__(self, k: float = 3.0, scale: float = 1.0, tails: str = "constant") -> None:
        super().__init__(k=k, scale=scale, tails=tails)  # type: ignore[arg-type]


class RealSpikeScale(RealSpike):
    """Real Spike (:class:`spikenerf.snn.real_spike.RealSpike`): output ``a_c * s`` with a per-channel
    learnable ``a`` (init 1), or ``a_{c,y,x} * s`` element-wise; ``s`` ``[T, B, C, ...]``."""

    def __init__(self, channels: int, element_shape: tuple[int, ...] | None = None) -> None:
        if element_shape is None:
            super().__init__(channels, mode="channel")
        else:
            super().__init__(mode="element", element_shape=element_shape)


def build_neuron(cfg: NeuronConfig, channels: int, dim: int) -> nn.Module:
    """One ``spikenerf.snn`` neuron for ``channels`` features; ``dim`` = spatial dims (2 conv, 1 conv1d/linear)."""
    transforms: list[nn.Module] = []
    if cfg.mpbn:
        transforms.append(MembraneBN(channels, dim))
    if cfg.mpr:
        transforms.append(MembraneRectifier(scale=cfg.mpr_scale, tails=cfg.mpr_tails))
    transform = None if not transforms else (transforms[0] if len(transforms) == 1 else nn.Sequential(*transforms))
    return make_node(
        cfg.kind,
        tau=cfg.tau,
        decay=cfg.decay,
        v_threshold=cfg.v_threshold,
        reset=cfg.reset,
        surrogate=get_surrogate(cfg.surrogate, cfg.surrogate_alpha),  # one object per neuron: schedulable
        detach_reset=cfg.detach_reset,
        spike_code=cfg.spike_code,
        threshold_mode=cfg.threshold_mode,
        amplitude=cfg.amplitude,
        init_membrane=cfg.init_membrane,
        membrane_transform=transform,
    )


class SpikeAct(nn.Module):
    """Activation slot on ``[T, B, C, ...]``: a spiking neuron (+ Real Spike scale) or ReLU (ANN twin).

    Set ``record_membrane`` to keep the last membrane ``[T, B, ...]`` (RMP-Loss, IM-Loss) in
    ``last_membrane``; set ``record_stats`` to accumulate firing-rate counts (eval).
    """

    def __init__(self, spiking: bool, cfg: NeuronConfig | None, channels: int, dim: int) -> None:
        super().__init__()
        self.spiking = spiking
        self.channels = channels
        cfg = cfg or NeuronConfig()
        self.neuron: nn.Module = build_neuron(cfg, channels, dim) if spiking else nn.ReLU()
        self.real_spike = RealSpikeScale(channels) if (spiking and cfg.real_spike) else None
        # element-wise amplitudes need the map size: created by `materialize_element_scales` (one dry forward)
        self.element_pending = spiking and cfg.real_spike and cfg.real_spike_mode == "element"
        if self.element_pending:
            self.real_spike = None
        # Spiking PointNet draws the random initial membrane at test time too (BaseNode does it in training)
        self.test_membrane = cfg.init_membrane if (spiking and cfg.init_membrane_at_test) else None
        self.record_membrane = False
        self.record_stats = False
        self.last_membrane: Tensor | None = None
        self.spike_count = 0.0
        self.element_count = 0.0

    def reset_stats(self) -> None:
        self.spike_count, self.element_count = 0.0, 0.0

    @property
    def firing_rate(self) -> float:
        """Fraction of non-zero outputs (|s| > 0) over all recorded elements and steps."""
        return self.spike_count / max(self.element_count, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        if not self.spiking:
            y = F.relu(x)
            if self.record_stats:
                self.spike_count += float((y != 0).sum())
                self.element_count += float(y.numel())
            return y
        v0 = None
        if self.test_membrane is not None and not self.training:
            v0 = torch.empty_like(x[0]).uniform_(*self.test_membrane)
        if self.record_membrane:
            s, h = self.neuron(x, v0, return_membrane=True)
            self.last_membrane = h
        else:
            s = self.neuron(x, v0)
        if self.record_stats:
            self.spike_count += float((s != 0).sum())
            self.element_count += float(s.numel())
        if self.element_pending:
            self.real_spike = RealSpikeScale(self.channels, tuple(s.shape[2:])).to(s.device)
            self.element_pending = False
        if self.real_spike is not None:
            s = self.real_spike(s)
        return s


class ConvBN(nn.Module):
    """Conv (2d or 1d) + BN on ``[T, B, C, ...]`` (time folded into batch). ``bn`` becomes Identity after folding."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dim: int = 2) -> None:
        super().__init__()
        conv_cls, bn_cls = (nn.Conv2d, nn.BatchNorm2d) if dim == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv = conv_cls(cin, cout, k, stride=stride, padding=padding, bias=False)
        self.bn: nn.Module = bn_cls(cout)

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))
        return y.reshape(t, b, *y.shape[1:])


class LinearBN(nn.Module):
    """Linear (+ optional BN1d) on ``[T, B, F]``."""

    def __init__(self, fin: int, fout: int, bn: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(fin, fout, bias=not bn)
        self.bn: nn.Module = nn.BatchNorm1d(fout) if bn else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = self.bn(self.fc(x.flatten(0, 1)))
        return y.reshape(t, b, *y.shape[1:])


class ConvMaxBN(nn.Module):
    """Point-wise Conv1d, max over points, then BN1d: ``[T, B, C, N] -> [T, B, C']``.

    Why BN after the max: BN-then-max over hundreds of points makes every channel's max land far above
    threshold, so every pooled spike is 1 for every sample (dead features). Max commutes with a
    per-channel affine map of positive scale, so the BN still folds into the conv when ``gamma > 0``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 1, bias=False)
        self.bn: nn.Module = nn.BatchNorm1d(cout)

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)).amax(dim=-1))
        return y.reshape(t, b, -1)


@torch.no_grad()
def materialize_element_scales(model: nn.Module, example: Tensor) -> None:
    """Create the element-wise Real Spike amplitudes of ``model`` (their shapes come from one dry forward on
    ``example`` ``[T, B, ...]``); call before building the optimizer or loading weights. No-op without them."""
    if not any(a.element_pending for _, a in spike_acts(model)):
        return
    was = model.training
    model.eval()
    model(example)
    model.train(was)


def spike_acts(model: nn.Module) -> list[tuple[str, SpikeAct]]:
    """All activation slots of ``model`` in registration order, with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikeAct)]
