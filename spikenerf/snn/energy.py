"""Operation counts and energy estimates (conventions in ``docs/energy.md``).

- A conv / linear layer fed with real values pays dense multiply-accumulates: ``MACs``.
- Fed with spikes it pays one accumulate per (non-zero input, connected output) pair: synaptic operations,
  ``SOPs``. Estimated the usual way as ``SOPs = MACs_dense * firing_rate``, where ``MACs_dense`` is summed
  over every step the layer ran (``MACs_step * T``) and ``firing_rate`` is the fraction of non-zero inputs
  over all steps; i.e. ``SOPs = MACs_step * T * fr``, the per-step sum. The exact count (border-aware fan-out
  of each non-zero input under zero padding) is kept as well (``sops_exact``).
- Any non-zero input is one event: a ternary ``-1`` is an accumulate with the negated weight, a multi-bit
  level ``n`` is one (bit-serial / shifted) accumulate, its width is charged by S-ACE below.
- Energy: ``E = e_mac * MACs + e_ac * SOPs`` with 45 nm CMOS figures (Horowitz, ISSCC 2014):
  ``e_mac = 4.6 pJ`` (32-bit float MAC), ``e_ac = 0.9 pJ`` (32-bit float add). Neuron updates, BN (folded
  at inference), pooling and memory traffic are not counted.
- Multi-bit accounting (Shen et al., CVPR 2024 "bit budget"; Yao et al. 2025 adaptive bit allocation):
  per layer ``bit_budget = T * B_w * B_s`` and ``S-ACE = MACs_step * T * B_w * B_s * fr`` (bit-operations of
  the non-zero inputs; a real-valued input counts ``B_s = 32`` and ``fr = 1``).

:class:`OpCounter` hooks ``nn.Linear`` / ``nn.Conv{1,2,3}d`` / :class:`~spikenerf.snn.real_spike.UnsharedConv2d`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .real_spike import UnsharedConv2d

__all__ = [
    "E_MAC_PJ",
    "E_AC_PJ",
    "E_MUL_PJ",
    "E_SRAM_8KB_PJ",
    "E_SRAM_32KB_PJ",
    "E_SRAM_1MB_PJ",
    "E_DRAM_32BIT_PJ",
    "memory_read_pj",
    "LOIHI_E_SYNOP_PJ",
    "LOIHI_T_SYNOP_NS",
    "LOIHI_E_NEURON_ACTIVE_PJ",
    "LOIHI_E_NEURON_INACTIVE_PJ",
    "LOIHI_T_NEURON_ACTIVE_NS",
    "LOIHI_T_NEURON_INACTIVE_NS",
    "LOIHI_E_SPIKE_TILE_PJ",
    "LOIHI_T_SPIKE_TILE_NS",
    "LOIHI_E_HOP_PJ",
    "LOIHI_T_HOP_NS",
    "LOIHI_BARRIER_NS",
    "EnergyModel",
    "energy_pj",
    "LayerCount",
    "OpCounter",
    "bit_budget",
    "s_ace",
    "spike_bits",
]

E_MAC_PJ = 4.6  # 32-bit float multiply-accumulate, 45 nm (Horowitz 2014)
E_AC_PJ = 0.9  # 32-bit float add, 45 nm
E_MUL_PJ = 3.7  # 32-bit float multiply, 45 nm (a state decay: HetSyn's synaptic currents)

# Memory reads, 45 nm (Horowitz, ISSCC 2014, "Computing's energy problem", the memory table of its energy
# figure): a 64-bit read from an 8 KB / 32 KB / 1 MB SRAM cache; a 32-bit value read from such a cache is
# charged one whole word. DRAM: Horowitz gives 1.3-2.6 nJ per 64 bits; the 640 pJ per 32-bit DRAM read is
# the figure Han et al. (NeurIPS 2015, "Learning both weights and connections", Table 1) derive from it.
E_SRAM_8KB_PJ = 10.0
E_SRAM_32KB_PJ = 20.0
E_SRAM_1MB_PJ = 100.0
E_DRAM_32BIT_PJ = 640.0


def memory_read_pj(array_bytes: float) -> float:
    """Energy of one 32-bit read from an array of ``array_bytes``: the smallest Horowitz SRAM it fits
    (8 KB / 32 KB / 1 MB, a whole 64-bit word each), else DRAM (a 2-160 MB voxel grid lives there)."""
    for size, e in ((8 << 10, E_SRAM_8KB_PJ), (32 << 10, E_SRAM_32KB_PJ), (1 << 20, E_SRAM_1MB_PJ)):
        if array_bytes <= size:
            return e
    return E_DRAM_32BIT_PJ


# Loihi (Davies et al., IEEE Micro 38(1), 2018, Table 2: measured / simulated core characteristics, 14 nm):
LOIHI_E_SYNOP_PJ = 23.6  # synaptic spike operation, energy (min)
LOIHI_T_SYNOP_NS = 3.5  # synaptic spike operation, time (min)
LOIHI_E_NEURON_ACTIVE_PJ = 81.0  # neuron (compartment) update, active
LOIHI_E_NEURON_INACTIVE_PJ = 52.0  # neuron update, inactive
LOIHI_T_NEURON_ACTIVE_NS = 8.4  # neuron update time, active
LOIHI_T_NEURON_INACTIVE_NS = 5.3  # neuron update time, inactive
LOIHI_E_SPIKE_TILE_PJ = 1.7  # spike message within a tile, energy
LOIHI_T_SPIKE_TILE_NS = 2.1  # spike message within a tile, latency
LOIHI_E_HOP_PJ = 3.0  # energy per tile hop, east-west (north-south: 4.0)
LOIHI_T_HOP_NS = 4.1  # latency per tile hop, east-west (north-south: 6.5)
LOIHI_BARRIER_NS = 113.0  # barrier synchronisation of a time step, per tile (min of 113-465 ns)


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules; ``E = e_mac * MACs + e_ac * SOPs``."""

    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ

    def energy_pj(self, macs: float, sops: float) -> float:
        return float(macs) * self.e_mac_pj + float(sops) * self.e_ac_pj

    def energy_uj(self, macs: float, sops: float) -> float:
        return self.energy_pj(macs, sops) * 1e-6


def energy_pj(macs: float, sops: float, model: EnergyModel | None = None) -> float:
    """``macs * e_mac + sops * e_ac`` in pJ (default 45 nm figures)."""
    return (model or EnergyModel()).energy_pj(macs, sops)


def _product(*xs):
    """Product of numbers (a float) or of tensors (keeps the autograd graph: budget losses train bit widths)."""
    if not any(isinstance(x, torch.Tensor) for x in xs):
        return math.prod(float(x) for x in xs)
    return math.prod(xs)


def bit_budget(T, b_w, b_s):
    """Bit budget of one layer: ``T * B_w * B_s`` (floats in, float out; tensors in, tensor out)."""
    return _product(T, b_w, b_s)


def s_ace(macs_step, T, b_w, b_s, firing_rate):
    """S-ACE of one layer: ``MACs_step * T * B_w * B_s * fr`` (bit-operations of the non-zero inputs)."""
    return _product(macs_step, T, b_w, b_s, firing_rate)


def spike_bits(max_level: int, signed: bool) -> int:
    """Bits to hold levels ``{0..max_level}`` (``{-max..max}`` if ``signed``): binary 1, ternary 2, {0,1,2} 2."""
    b = max(1, math.ceil(math.log2(max_level + 1))) if max_level > 0 else 1
    return b + (1 if signed else 0)


@dataclass
class LayerCount:
    """Counts of one hooked layer, summed over every call (all steps, all samples) until normalized."""

    name: str
    kind: str
    real_input: bool = False
    dense_macs: float = 0.0  # MACs if every input were non-zero (all steps)
    in_elements: float = 0.0
    events: float = 0.0  # non-zero inputs (a -1 counts)
    sops_exact: float = 0.0  # accumulates triggered: each non-zero input times its actual fan-out
    max_level: float = 0.0  # largest |input| seen (spike layers: the highest spike level)
    signed: bool = False
    calls: int = 0
    T: int | None = None
    b_w: int = 32
    b_s: int | None = None  # None: 32 for real inputs, else from the observed levels

    @property
    def firing_rate(self) -> float:
        return self.events / self.in_elements if self.in_elements else 0.0

    @property
    def macs(self) -> float:
        """MACs paid: the dense count for a real-input layer, 0 for a spike layer."""
        return self.dense_macs if self.real_input else 0.0

    @property
    def sops(self) -> float:
        """``MACs_dense * firing_rate`` for a spike layer, 0 for a real-input layer."""
        return 0.0 if self.real_input else self.dense_macs * self.firing_rate

    def spike_bits(self) -> int:
        if self.b_s is not None:
            return self.b_s
        if self.real_input:
            return 32
        return spike_bits(int(round(self.max_level)), self.signed)

    def bit_budget(self) -> float:
        return bit_budget(self.T or 1, self.b_w, self.spike_bits())

    def s_ace(self) -> float:
        fr = 1.0 if self.real_input else self.firing_rate
        T = self.T or 1
        return s_ace(self.dense_macs / T, T, self.b_w, self.spike_bits(), fr)

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "real_input": self.real_input, "macs": self.macs,
                "sops": self.sops, "sops_exact": self.sops_exact, "dense_macs": self.dense_macs,
                "firing_rate": self.firing_rate, "T": self.T, "B_w": self.b_w, "B_s": self.spike_bits(),
                "bit_budget": self.bit_budget(), "s_ace": self.s_ace()}


_HOOKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, UnsharedConv2d)


def _fan_in(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features
    if isinstance(m, UnsharedConv2d):
        return m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    return (m.in_channels // m.groups) * math.prod(m.kernel_size)


@torch.no_grad()
def _exact_accumulates(m: nn.Module, x: Tensor) -> float:
    """Number of (non-zero input, output) pairs the layer connects: the accumulates an event-driven core runs."""
    nz = (x != 0).to(torch.float64)
    if isinstance(m, nn.Linear):
        return float(nz.sum()) * m.out_features
    if isinstance(m, UnsharedConv2d):
        ones = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=x.device)
        win = F.conv2d(nz.sum(1, keepdim=True), ones, stride=m.stride, padding=m.padding, dilation=m.dilation)
        return float(win.sum()) * m.out_channels
    # sum the input channels first: every input channel feeds out_channels / groups outputs per window
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[x.dim() - 2]
    ones = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=x.device)
    if m.padding_mode != "zeros":
        # replicated / reflected border values are copies of real inputs: they are events too
        xp = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        win = conv((xp != 0).to(torch.float64).sum(1, keepdim=True), ones, stride=m.stride, dilation=m.dilation)
    else:
        win = conv(nz.sum(1, keepdim=True), ones, stride=m.stride, padding=m.padding, dilation=m.dilation)
    return float(win.sum()) * (m.out_channels // m.groups)


class OpCounter:
    """Count MACs / SOPs per layer with forward hooks (a context manager).

    Args:
        model: the network; every ``nn.Linear`` / ``nn.ConvNd`` / ``UnsharedConv2d`` in it is counted.
        real_input_layers: layers fed with real values (counted as MACs), e.g. the encoding conv. When
            ``None``, each call is classified from its input: spikes if every value is an integer of
            magnitude ``<= max_spike_level`` (binary, ternary, multi-bit), else real.
        bits: optional ``{module or name: (B_w, B_s)}``; ``B_s=None`` infers it from the observed levels.
        exact: also compute the exact event-driven accumulate count (one extra cheap conv per call).

    Use ``run(model_input)`` for one forward (records ``T`` and the batch from ``[T, B, ...]``), or call the
    model yourself inside ``with`` and add the number of samples to ``samples``. ``layers`` holds the totals;
    ``per_sample()`` divides them by ``samples``.
    """

    def __init__(self, model: nn.Module, real_input_layers: Iterable[nn.Module] | None = None,
                 bits: dict | None = None, max_spike_level: int = 255, exact: bool = True) -> None:
        self.model = model
        self.real_ids = None if real_input_layers is None else {id(m) for m in real_input_layers}
        self.max_spike_level = max_spike_level
        self.exact = exact
        self.samples = 0
        self.T: int | None = None
        self.layers: dict[str, LayerCount] = {}
        self._hooks: list = []
        bits = bits or {}
        for name, m in model.named_modules():
            if isinstance(m, _HOOKED):
                lc = LayerCount(name or type(m).__name__, type(m).__name__)
                bw_bs = bits.get(m, bits.get(name))
                if bw_bs is not None:
                    lc.b_w, lc.b_s = int(bw_bs[0]), (None if bw_bs[1] is None else int(bw_bs[1]))
                self.layers[lc.name] = lc
                self._hooks.append((m, lc))
        self._handles: list = []

    def _is_spike(self, x: Tensor) -> bool:
        if not torch.is_floating_point(x):
            return True
        return bool(((x == torch.round(x)) & (x.abs() <= self.max_spike_level)).all())

    def _hook(self, lc: LayerCount):
        def fn(mod: nn.Module, inp: tuple, out: Tensor) -> None:
            x = inp[0].detach()
            real = (id(mod) in self.real_ids) if self.real_ids is not None else not self._is_spike(x)
            if lc.calls and real != lc.real_input:
                raise ValueError(f"layer {lc.name} was fed both real values and spikes; list it in real_input_layers")
            lc.real_input = real
            lc.calls += 1
            lc.dense_macs += float(out.numel()) * _fan_in(mod)
            lc.in_elements += float(x.numel())
            lc.events += float((x != 0).sum())
            if x.numel():
                lc.max_level = max(lc.max_level, float(x.abs().max()))
                lc.signed = lc.signed or bool((x < 0).any())
            if self.exact and not real:
                lc.sops_exact += _exact_accumulates(mod, x)
        return fn

    def __enter__(self) -> "OpCounter":
        self._handles = [m.register_forward_hook(self._hook(lc)) for m, lc in self._hooks]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @torch.no_grad()
    def run(self, x_seq: Tensor, *args, **kwargs):
        """One forward of ``model(x_seq)`` with ``x_seq`` ``[T, B, ...]``; adds ``B`` samples, records ``T``."""
        self.T = int(x_seq.shape[0])
        for lc in self.layers.values():
            lc.T = self.T if lc.T is None else lc.T
        self.samples += int(x_seq.shape[1])
        if self._handles:
            return self.model(x_seq, *args, **kwargs)
        with self:
            return self.model(x_seq, *args, **kwargs)

    def per_sample(self) -> list[LayerCount]:
        """Per-sample copies of the counted layers (layers never called are left out)."""
        n = max(self.samples, 1)
        out = []
        for lc in self.layers.values():
            if not lc.calls:
                continue
            c = LayerCount(**{**lc.__dict__})
            c.dense_macs, c.in_elements, c.events, c.sops_exact = (lc.dense_macs / n, lc.in_elements / n,
                                                                   lc.events / n, lc.sops_exact / n)
            out.append(c)
        return out

    def totals(self, energy: EnergyModel | None = None) -> dict[str, float]:
        """Per-sample ``macs``, ``sops``, ``sops_exact``, ``energy_pj``, ``bit_budget_mean``, ``s_ace``."""
        layers = self.per_sample()
        macs = sum(l.macs for l in layers)
        sops = sum(l.sops for l in layers)
        em = energy or EnergyModel()
        return {"macs": macs, "sops": sops, "sops_exact": sum(l.sops_exact for l in layers),
                "energy_pj": em.energy_pj(macs, sops),
                "bit_budget_mean": sum(l.bit_budget() for l in layers) / max(len(layers), 1),
                "s_ace": sum(l.s_ace() for l in layers)}

