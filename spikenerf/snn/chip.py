"""A Loihi-class chip model: fixed-point LIF arithmetic and a per-operation cost (``docs/energy.md``).

**Arithmetic** (:func:`loihi_lif`): the CUBA neuron of Loihi (Davies et al., IEEE Micro 38(1), 2018) as Lava's
bit-accurate fixed-point model ``lava.proc.lif.models.PyLifModelBitAcc`` computes it (``lava-nc`` needs
Python < 3.11, so it cannot be installed here; this is our own integer model written from that model's
published source, not a copy). Per step, integers throughout:

- ``u = rz(u * (4096 - du) / 4096) + (a_in << 6)``, wrapped to 24 bits (Lava wraps the current);
- ``v = rz(v * (4096 - dv) / 4096) + u + bias``, saturated to ``[-(2^23 - 1), 2^23 - 1]``;
- spike where ``v > vth << 6``, then ``v = 0`` (hard reset).

``rz`` rounds toward zero (``sign(x) * (|x| >> 12)``). ``du`` / ``dv`` here are the *effective* 12-bit
decays in ``0..4096`` (Loihi 1 stores ``du - 1``: its 1-bit ``ds_offset`` makes ``du = 4096`` reachable).
``a_in`` is the synaptic sum ``sum_j s_j * m_ij * 2^exp``: 8-bit signed weight mantissas ``m`` with a shared
per-layer exponent, so a weight enters the current as ``m * 2^(6 + exp)``.

**Mapping the project's LIF** ``v_t = (1 - 1/tau) v_{t-1} + x_t / tau`` (decay_input, fire at ``v >= theta``):
CUBA with ``du = 4096`` (the current is the step's input, no memory) and ``dv = round(4096 / tau)`` (exact for
``tau = 2``: ``dv = 2048``); the ``1/tau`` of the input is folded into the weights. A float membrane ``v`` is
the integer ``v * S`` with ``S = 2^6 * vth / theta``. A layer's bias is a synapse from a "valid" input that
is 1 on real samples and 0 at padding holes, so holes stay zero input as in the float model.

**First layer**: its input (grid features, PE(direction)) is real-valued. ``first_layer="off-chip"``: fc1
runs on the host in float and its current is injected, rounded to the ``a_in`` grid (``2^6`` membrane units).
``"on-chip"``: the input is quantized to signed 8-bit activations (a per-tensor scale) sent as graded spikes
(Loihi 2), and fc1 is an 8-bit synaptic layer like the others.

**Cost** (:func:`chip_cost`): neuron updates, synaptic operations, spike messages between cores, weight memory
and time steps of one rendered image, priced with the per-operation figures in :mod:`.energy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .energy import (
    E_MAC_PJ,
    LOIHI_BARRIER_NS,
    LOIHI_E_HOP_PJ,
    LOIHI_E_NEURON_ACTIVE_PJ,
    LOIHI_E_NEURON_INACTIVE_PJ,
    LOIHI_E_SPIKE_TILE_PJ,
    LOIHI_E_SYNOP_PJ,
    LOIHI_T_NEURON_ACTIVE_NS,
    LOIHI_T_NEURON_INACTIVE_NS,
    LOIHI_T_SYNOP_NS,
)

__all__ = [
    "DECAY_UNITY",
    "MEMBRANE_MAX",
    "WEIGHT_MANTISSA_MAX",
    "ACT_SHIFT",
    "decay_rz",
    "loihi_lif",
    "check_lif_params",
    "lif_to_cuba",
    "quantize_shared_exponent",
    "ChipLayer",
    "ChipColourNet",
    "ChipCounts",
    "ChipCost",
    "chip_cost",
]

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096: a 12-bit decay of 4096 empties the state every step
ACT_SHIFT = 6  # synaptic input and threshold are MSB-aligned by 6 bits
MEMBRANE_BITS = 24
MEMBRANE_MAX = (1 << (MEMBRANE_BITS - 1)) - 1  # v saturates to +-(2^23 - 1)
WEIGHT_MANTISSA_MAX = 127  # signed 8-bit mantissa: -128..127 (we use the symmetric +-127)
WEIGHT_EXP_RANGE = (-8, 7)  # Loihi's 4-bit signed weight exponent
VTH_MAX = (1 << 17) - 1  # vth is an unsigned 17-bit register
BIAS_MANT_MAX = (1 << 12) - 1  # signed 13-bit bias mantissa
BIAS_EXP_MAX = 7  # unsigned 3-bit bias exponent


def decay_rz(x: Tensor, d: int) -> Tensor:
    """``x * (4096 - d) / 4096`` rounded toward zero, as the chip's 12-bit decay (``x`` int64)."""
    prod = x * (DECAY_UNITY - int(d))
    return torch.sign(prod) * (prod.abs() >> DECAY_SHIFT)


def _wrap24(x: Tensor) -> Tensor:
    """Lava's 24-bit wrap of the current: above ``2^23`` subtract ``2^24``; at or below ``-2^23`` add it."""
    m = 1 << (MEMBRANE_BITS - 1)
    y = torch.where(x > m, x - 2 * m, x)
    return torch.where(y <= -m, x + 2 * m, y)


def loihi_lif(a_in: Tensor, du: int, dv: int, vth: int, bias: Tensor | int = 0,
              reset: Literal["hard", "soft"] = "hard", return_v: bool = False):
    """Run integer CUBA LIF neurons over ``a_in`` ``[T, B, N]`` (int, the synaptic sums before the ``<< 6``).

    Args:
        a_in: synaptic input per step, integer tensor ``[T, B, N]``.
        du, dv: effective current / voltage decays in ``0..4096``.
        vth: threshold mantissa (``v > vth << 6`` fires), ``0..2^17 - 1``.
        bias: per-neuron bias ``[N]`` (or a number) added to ``v`` every step, already ``mant << exp``.
        reset: ``hard`` (Loihi: ``v = 0``) or ``soft`` (subtract the threshold; not a Loihi 1 reset mode,
            offered for models trained that way).
        return_v: also return the membrane after the reset, ``[T, B, N]``.

    Returns:
        spikes ``[T, B, N]`` int64 (0/1), and the membrane trace when ``return_v``.
    """
    check_lif_params(du, dv, vth)
    if torch.is_floating_point(a_in):
        raise TypeError("a_in must be an integer tensor (the chip's synaptic sums); round and cast it first")
    spikes, vs = _lif_steps(a_in.to(torch.int64) << ACT_SHIFT, du, dv, int(vth) << ACT_SHIFT, bias, reset,
                            return_v)
    spikes = spikes.to(torch.int64)
    return (spikes, vs) if return_v else spikes


def check_lif_params(du: int, dv: int, vth: int, hint: str = "") -> None:
    """Refuse decays outside ``0..4096`` (12 bits) and a threshold mantissa outside ``0..2^17 - 1``."""
    if not (0 <= du <= DECAY_UNITY and 0 <= dv <= DECAY_UNITY):
        raise ValueError(f"du and dv must be in 0..{DECAY_UNITY} (12-bit decays), got du={du}, dv={dv}")
    if not 0 <= vth <= VTH_MAX:
        raise ValueError(f"vth must be an unsigned 17-bit integer (0..{VTH_MAX}), got {vth}{hint}")


def _lif_steps(current: Tensor, du: int, dv: int, vth_eff: int, bias: Tensor | int, reset: str,
               return_v: bool) -> tuple[Tensor, Tensor | None]:
    """:func:`loihi_lif`'s loop on the validated input current ``a_in << 6`` ``[T, B, N]`` (int64, or float64
    holding exact integers): bool spikes and the membrane trace (int64).

    One tensor op per step and state update over all ``[B, N]`` neurons, in place. Exact rewrites of the
    chip's integer equations: ``rz(x * (4096 - d) / 4096)`` is a truncating division; with ``du = 4096`` the
    current keeps nothing of itself, so every step's ``u`` is computed at once before the loop; the bias is
    added to ``u`` beforehand (integer addition is associative: the same ``v``).
    """
    T = current.shape[0]
    bias_t = torch.as_tensor(bias, dtype=current.dtype, device=current.device)
    if du == DECAY_UNITY:
        ub = current
        lo, hi = torch.aminmax(ub) if ub.numel() else (ub.new_zeros(()), ub.new_zeros(()))
        if float(lo) <= -(1 << (MEMBRANE_BITS - 1)) or float(hi) > 1 << (MEMBRANE_BITS - 1):
            ub = _wrap24(ub)  # one pass to find that nothing wraps saves the wrap's four
    else:
        current = current.to(torch.int64)
        bias_t = bias_t.to(torch.int64)
        ub = torch.empty_like(current)
        u = torch.zeros_like(current[0])
        for t in range(T):
            u = _wrap24(_decay_trunc(u, du) + current[t])
            ub[t] = u
    if bias_t.numel() > 1 or bool(bias_t != 0):
        ub = ub + bias_t
    # the membrane loop in float64, exact: |v| < 2^23 and keep <= 4096, so v * keep / 4096 has at most 35
    # significant bits (one exact multiply by keep / 2^12) and trunc is the round toward zero; a sum is exact
    # below 2^53, and one beyond (|ub| past 2^53) saturates like the exact one (rounding keeps the order).
    # float64 ops vectorise where int64 multiply / divide do not (2x faster per step)
    ub = ub.to(torch.float64)
    spikes = torch.empty(ub.shape, dtype=torch.bool, device=ub.device)
    vs = torch.empty(ub.shape, dtype=torch.int64, device=ub.device) if return_v else None
    v = torch.zeros_like(ub[0])
    keep = (DECAY_UNITY - int(dv)) / DECAY_UNITY
    for t in range(T):
        if keep == 0.0:
            v.copy_(ub[t])
        else:
            v.mul_(keep).trunc_().add_(ub[t])
        v.clamp_(-MEMBRANE_MAX, MEMBRANE_MAX)
        s = spikes[t]
        torch.gt(v, vth_eff, out=s)
        if reset == "soft":
            v.sub_(s * vth_eff)
        else:
            v.masked_fill_(s, 0.0)
        if vs is not None:
            vs[t] = v.to(torch.int64)
    return spikes, vs


def _decay_trunc(x: Tensor, d: int) -> Tensor:
    """:func:`decay_rz` as one truncating division (the same integers: ``trunc(p / 4096) = sign(p)(|p| >> 12)``)."""
    return torch.div(x * (DECAY_UNITY - int(d)), DECAY_UNITY, rounding_mode="trunc")


def lif_to_cuba(tau: float) -> tuple[int, int]:
    """``(du, dv)`` of the project's decay-input LIF with time constant ``tau``: ``(4096, round(4096 / tau))``."""
    if tau < 1.0:
        raise ValueError(f"tau must be >= 1 (steps), got {tau}")
    return DECAY_UNITY, int(round(DECAY_UNITY / tau))


def quantize_shared_exponent(w: Tensor, scale: float) -> tuple[Tensor, int]:
    """Integer weights ``w * scale`` as 8-bit mantissas with one shared exponent: ``m * 2^(6 + exp)``.

    ``exp`` is the smallest exponent (in Loihi's -8..7) whose mantissas fit ``+-127``. Returns the mantissas
    (int64, same shape as ``w``) and ``exp``. Raises when even ``exp = 7`` cannot hold the largest weight.
    """
    peak = float(w.abs().max()) * scale if w.numel() else 0.0
    if peak == 0.0:
        return torch.zeros_like(w, dtype=torch.int64), WEIGHT_EXP_RANGE[0]
    exp = math.ceil(math.log2(peak / (WEIGHT_MANTISSA_MAX * (1 << ACT_SHIFT))))
    exp = max(exp, WEIGHT_EXP_RANGE[0])
    if exp > WEIGHT_EXP_RANGE[1]:
        raise ValueError(f"weights up to {peak:.3g} membrane units need exponent {exp} > {WEIGHT_EXP_RANGE[1]}: "
                         "lower vth_bits")
    m = torch.round(w.double() * scale / 2.0 ** (ACT_SHIFT + exp)).to(torch.int64)
    return m.clamp(-WEIGHT_MANTISSA_MAX, WEIGHT_MANTISSA_MAX), exp


@dataclass
class ChipLayer:
    """One synaptic layer on the chip: mantissas ``[O, I]`` (+ a bias column driven by the valid input), the
    shared exponent, and ``scale``: integer membrane units per float unit of the layer's (``1/tau``-folded)
    output."""

    mant: Tensor
    exp: int
    scale: float
    bias_mant: Tensor | None = None  # [O], mantissas of the bias synapse (same exponent)

    def synaptic_sum(self, s: Tensor, valid: Tensor) -> Tensor:
        """``a_in`` ``[T, B, O]`` (int64) from integer inputs ``s`` ``[T, B, I]`` (int or bool) and the valid flag
        ``[T, B]``."""
        a, _ = self._sum(s, valid, False)
        a = a.to(torch.int64)
        return a << self.exp if self.exp >= 0 else _shift_right_rz(a, -self.exp)

    def current(self, s: Tensor, valid: Tensor, count: bool = False) -> tuple[Tensor, Tensor | None]:
        """The next compartment's input current ``synaptic_sum(s, valid) << 6`` ``[T, B, O]``, as float64 when it
        holds it exactly (else int64), and with ``count`` the inputs' row sums ``[T, B]`` (spikes per step of
        the layer feeding ``s``: a ones row in the same matmul)."""
        a, counts = self._sum(s, valid, count)
        if a.dtype == torch.int64 or self._bound(s) * 2.0 ** (self.exp + ACT_SHIFT) >= 2.0 ** 53:
            a = a.to(torch.int64)
            a = a << self.exp if self.exp >= 0 else _shift_right_rz(a, -self.exp)
            return a << ACT_SHIFT, counts
        a = a.to(torch.float64)
        if self.exp >= 0:
            return a.mul_(2.0 ** (self.exp + ACT_SHIFT)), counts
        return a.mul_(2.0 ** self.exp).trunc_().mul_(1 << ACT_SHIFT), counts  # rz of a negative exponent

    def _bound(self, s: Tensor) -> int:
        """An upper bound on every partial sum of the synaptic sum (the bias synapse and the count row included)."""
        peak_in = 1 if s.dtype == torch.bool else (int(s.abs().max()) if s.numel() else 0)
        bound = peak_in * max(int(self.mant.abs().sum(1).max()) if self.mant.numel() else 0, self.mant.shape[1])
        if self.bias_mant is not None and self.bias_mant.numel():
            bound += int(self.bias_mant.abs().max())
        return bound

    def _sum(self, s: Tensor, valid: Tensor, count: bool) -> tuple[Tensor, Tensor | None]:
        """The raw integer sums ``sum_i s_i m_oi (+ valid * bias)`` ``[T, B, O]`` and, with ``count``, ``sum_i s_i``.

        They run as a float matmul (BLAS; an int64 einsum has none) where that is exact: every partial sum is
        an integer no larger than :meth:`_bound`, and a float holds every integer below ``2^24`` (float32)
        or ``2^53`` (float64) exactly, whatever the order of the additions. Larger sums fall back to int64.
        """
        dtype = _exact_float(self._bound(s))
        if dtype is None:
            a = torch.einsum("tbi,oi->tbo", s.to(torch.int64), self.mant)
            if self.bias_mant is not None:
                a = a + valid.to(torch.int64)[..., None] * self.bias_mant
            return a, (s.to(torch.int64).sum(-1) if count else None)
        w = self.mant.to(dtype)
        if count:
            w = torch.cat([w, w.new_ones(1, w.shape[1])])
        a = torch.matmul(s.to(dtype), w.t())
        if self.bias_mant is not None:  # the bias synapse, driven by the valid flag (exact: within the bound)
            a[..., : self.mant.shape[0]] += valid.to(dtype)[..., None] * self.bias_mant.to(dtype)
        if count:
            return a[..., :-1], a[..., -1].to(torch.int64)
        return a, None

    @property
    def weight_bits(self) -> int:
        """Bits of weight memory: 8 per mantissa (the bias synapse included) plus the 4-bit exponent."""
        n = self.mant.numel() + (0 if self.bias_mant is None else self.bias_mant.numel())
        return 8 * n + 4


def _exact_float(bound: int) -> torch.dtype | None:
    """The narrowest float dtype whose matmul sums integers up to ``bound`` exactly, or None (use int64).
    float32 only at the "highest" matmul precision: lower ones may round the inputs to bfloat16 / TF32."""
    if bound < (1 << 24) and torch.get_float32_matmul_precision() == "highest":
        return torch.float32
    return torch.float64 if bound < (1 << 53) else None


def _shift_right_rz(a: Tensor, k: int) -> Tensor:
    """``a * 2^-k`` rounded toward zero (a negative weight exponent on a synaptic sum)."""
    return torch.sign(a) * (a.abs() >> k)


class ChipColourNet:
    """The colour network fc1 -> LIF1 -> fc2 -> LIF2 -> fc3 in Loihi fixed point.

    Build it with :meth:`from_float` from float weights; :meth:`run` takes the real input sequence
    ``[T, B, in_dim]`` and the valid mask ``[T, B]`` (holes are zero input) and returns the read-out logits
    ``[T, B, 3]`` (float, dequantized; the sigmoid stays off-chip) and the spikes of both LIF layers.
    """

    def __init__(self, fc1: ChipLayer | Tensor, fc2: ChipLayer, fc3: ChipLayer, du: int, dv: int, vth: int,
                 reset: Literal["hard", "soft"], first_layer: Literal["off-chip", "on-chip"],
                 input_scale: float = 1.0, fc1_scale: float = 1.0) -> None:
        check_lif_params(du, dv, vth, ": lower vth_bits")  # at build time, not at the first run
        self.fc1, self.fc2, self.fc3 = fc1, fc2, fc3
        self.du, self.dv, self.vth, self.reset = du, dv, vth, reset
        self.first_layer = first_layer
        self.input_scale = input_scale  # on-chip: float input per 8-bit activation step
        self.fc1_scale = fc1_scale  # off-chip: integer units per float current (before the << 6)

    @classmethod
    def from_float(cls, w1: Tensor, w2: Tensor, b2: Tensor | None, w3: Tensor, b3: Tensor | None, tau: float,
                   v_threshold: float, reset: Literal["hard", "soft"] = "hard",
                   first_layer: Literal["off-chip", "on-chip"] = "off-chip", input_max: float | None = None,
                   vth_bits: int = 10) -> "ChipColourNet":
        """Quantize float weights ``w1`` ``[H, in]``, ``w2`` ``[H, H]``, ``w3`` ``[3, H]`` (biases ``[H]`` /
        ``[3]`` or None) of a LIF net with ``tau`` / ``v_threshold``.

        ``vth_bits``: the threshold mantissa is ``2^vth_bits`` (membrane resolution ``theta / 2^(6+vth_bits)``,
        headroom ``2^(17 - vth_bits)`` thresholds in the 24-bit membrane). ``input_max``: the largest
        ``|input|`` the 8-bit activations cover (``first_layer="on-chip"`` needs it: calibrate it on data).
        """
        if v_threshold <= 0:
            raise ValueError(f"v_threshold must be > 0, got {v_threshold}")
        du, dv = lif_to_cuba(tau)
        vth = 1 << vth_bits
        scale = (1 << ACT_SHIFT) * vth / v_threshold  # integer membrane units per float unit
        w2c = w2 if b2 is None else torch.cat([w2, b2[:, None]], 1)
        m2, e2 = quantize_shared_exponent(w2c / tau, scale)
        fc2 = ChipLayer(m2[:, : w2.shape[1]], e2, scale, None if b2 is None else m2[:, -1])
        # read-out: no threshold, so its scale only has to fit the mantissas (exponent 0)
        w3c = w3 if b3 is None else torch.cat([w3, b3[:, None]], 1)
        s3 = WEIGHT_MANTISSA_MAX * (1 << ACT_SHIFT) / max(float(w3c.abs().max()), 1e-12)
        m3, e3 = quantize_shared_exponent(w3c, s3)
        fc3 = ChipLayer(m3[:, : w3.shape[1]], e3, s3, None if b3 is None else m3[:, -1])
        if first_layer == "off-chip":
            return cls(w1.double() / tau, fc2, fc3, du, dv, vth, reset, first_layer, fc1_scale=scale / (1 << ACT_SHIFT))
        if first_layer != "on-chip":
            raise ValueError(f"first_layer must be 'off-chip' or 'on-chip', got {first_layer!r}")
        if input_max is None or input_max <= 0:
            raise ValueError("first_layer='on-chip' needs input_max > 0: the largest |input| the 8-bit "
                             "activations cover (calibrate it on the features)")
        step = input_max / WEIGHT_MANTISSA_MAX
        m1, e1 = quantize_shared_exponent(w1 / tau * step, scale)
        return cls(ChipLayer(m1, e1, scale), fc2, fc3, du, dv, vth, reset, first_layer, input_scale=step)

    def _quantize_input(self, x: Tensor) -> Tensor:
        """The 8-bit activations of the real input (float64 holding integers in ``-127..127``)."""
        return torch.round(x.double() / self.input_scale).clamp(-WEIGHT_MANTISSA_MAX, WEIGHT_MANTISSA_MAX)

    def _first_input(self, x: Tensor) -> Tensor:
        """LIF1's input current ``a_in << 6`` ``[T, B, H]`` from the real input ``x`` ``[T, B, in_dim]`` (zero at
        holes), float64 where exact (see :meth:`ChipLayer.current`): on the chip fc1's synaptic sum of the
        8-bit activations, off it ``round(fc1(x) * fc1_scale) * 64`` (the same float as the int64 shifted)."""
        if isinstance(self.fc1, ChipLayer):
            return self.fc1.current(self._quantize_input(x), torch.zeros(x.shape[:2], dtype=torch.bool))[0]
        return torch.round(F.linear(x.double(), self.fc1).mul_(self.fc1_scale)).mul_(1 << ACT_SHIFT)

    @torch.no_grad()
    def run(self, x: Tensor, valid: Tensor, spikes_dtype: torch.dtype = torch.int64) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``[T, B, 3]`` and spikes ``[T, B, H]`` of LIF1 and LIF2 (``spikes_dtype``; ``torch.bool``
        saves two int64 copies) for the input ``x`` ``[T, B, in]`` with holes where ``valid`` ``[T, B]`` is
        False (their input is zeroed)."""
        logits, s1, s2, _, _ = self._forward(x, valid)
        return logits, s1.to(spikes_dtype), s2.to(spikes_dtype)

    @torch.no_grad()
    def run_counts(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`run` with spike counts per step instead of the trains: logits ``[T, B, 3]`` and the spikes of
        LIF1 and LIF2 summed over their neurons, ``[T, B]`` (int64)."""
        logits, _, _, n1, n2 = self._forward(x, valid)
        return logits, n1, n2

    def _forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x = x * valid[..., None].to(x.dtype)
        vth_eff = int(self.vth) << ACT_SHIFT
        s1, _ = _lif_steps(self._first_input(x), self.du, self.dv, vth_eff, 0, self.reset, False)
        a2, n1 = self.fc2.current(s1, valid, count=True)
        s2, _ = _lif_steps(a2, self.du, self.dv, vth_eff, 0, self.reset, False)
        current, n2 = self.fc3.current(s2, valid, count=True)  # the read-out compartment's current
        return current.double() / self.fc3.scale, s1, s2, n1, n2

    @property
    def weight_bits(self) -> int:
        """On-chip weight memory in bits (fc1 counts only when it is on the chip)."""
        bits = self.fc2.weight_bits + self.fc3.weight_bits
        return bits + (self.fc1.weight_bits if isinstance(self.fc1, ChipLayer) else 0)


@dataclass
class ChipCounts:
    """What one rendered image makes the chip do (totals over its rays).

    ``steps``: ray time steps run (TP: every ray's padded steps, holes included; TCP: the valid samples);
    ``valid``: valid samples (steps with input); ``spikes``: spikes per LIF layer; ``widths``: neurons per
    layer ``(in_dim, H, H, out)``; ``bias``: whether fc2 / fc3 have the valid-driven bias synapse.
    """

    steps: float
    valid: float
    spikes: tuple[float, float]
    widths: tuple[int, int, int, int]
    bias: bool = True
    first_layer: Literal["off-chip", "on-chip"] = "off-chip"


@dataclass
class ChipCost:
    """Counts and their price for one image; energies in pJ, latency in ns."""

    neuron_updates_active: float
    neuron_updates_inactive: float
    synops: float
    messages: float
    host_macs: float
    weight_bits: int
    steps: float
    energy_pj: dict = field(default_factory=dict)
    latency_ns: float = 0.0

    @property
    def total_pj(self) -> float:
        return float(sum(self.energy_pj.values()))


def chip_cost(c: ChipCounts, hops: float = 0.0, cores_in_parallel: int = 1) -> ChipCost:
    """Count and price one image on a Loihi-class chip, one layer per core (LIF1, LIF2, read-out: one tile).

    - neuron updates: every step updates every compartment of the three cores (``2H + out``), active on
      valid samples, inactive at padding holes (Davies et al. 2018, Table 2 prices them differently);
    - synaptic ops: LIF1 spikes x H (fc2 fan-out) + LIF2 spikes x out (fc3), plus one bias synapse per output
      per valid step (fc2, fc3) when biased; on-chip fc1: ``valid * in_dim * H`` graded ops;
    - messages between cores: one per spike per destination core (a spike reaches the next layer's core as
      one message, fan-out is expanded there), plus the valid flag to the two biased cores, plus the input
      (on-chip: ``in_dim`` graded spikes per valid step; off-chip: ``H`` injected currents per valid step);
      priced at the within-tile energy plus ``hops`` tile hops each;
    - host MACs: off-chip fc1, ``valid * in_dim * H`` at ``E_MAC_PJ``;
    - latency: per step, the slowest core's serial work (its neuron updates and synaptic ops) plus a barrier
      synchronisation; ``cores_in_parallel`` copies of the net share the rays.
    """
    d_in, h, h2, out = c.widths
    holes = c.steps - c.valid
    n_neur = h + h2 + out
    s1, s2 = c.spikes
    bias_ops = c.valid * (h2 + out) if c.bias else 0.0
    fc1_ops = c.valid * d_in * h if c.first_layer == "on-chip" else 0.0
    synops = s1 * h2 + s2 * out + bias_ops + fc1_ops
    inputs = c.valid * (d_in if c.first_layer == "on-chip" else h)
    messages = s1 + s2 + (2 * c.valid if c.bias else 0.0) + inputs
    host_macs = 0.0 if c.first_layer == "on-chip" else c.valid * d_in * h
    bits = 8 * (h2 * h + out * h2 + ((h2 + out) if c.bias else 0) + (d_in * h if c.first_layer == "on-chip" else 0))
    bits += 4 * (3 if c.first_layer == "on-chip" else 2)
    energy = {
        "neuron_updates": c.valid * n_neur * LOIHI_E_NEURON_ACTIVE_PJ + holes * n_neur * LOIHI_E_NEURON_INACTIVE_PJ,
        "synops": synops * LOIHI_E_SYNOP_PJ,
        "messages": messages * (LOIHI_E_SPIKE_TILE_PJ + hops * LOIHI_E_HOP_PJ),
        "host_macs": host_macs * E_MAC_PJ,
    }
    # per step: each core updates its neurons and runs the synaptic ops its inputs trigger; the slowest of
    # the three (pipelined layers) sets the step time, then a barrier
    steps = max(c.steps, 1e-12)
    act, inact = c.valid / steps, holes / steps
    per_core = [
        h * (act * LOIHI_T_NEURON_ACTIVE_NS + inact * LOIHI_T_NEURON_INACTIVE_NS) + fc1_ops / steps * LOIHI_T_SYNOP_NS,
        h2 * (act * LOIHI_T_NEURON_ACTIVE_NS + inact * LOIHI_T_NEURON_INACTIVE_NS)
        + (s1 * h2 + (c.valid * h2 if c.bias else 0.0)) / steps * LOIHI_T_SYNOP_NS,
        out * (act * LOIHI_T_NEURON_ACTIVE_NS + inact * LOIHI_T_NEURON_INACTIVE_NS)
        + (s2 * out + (c.valid * out if c.bias else 0.0)) / steps * LOIHI_T_SYNOP_NS,
    ]
    step_ns = max(per_core) + LOIHI_BARRIER_NS
    latency = c.steps * step_ns / max(cores_in_parallel, 1)
    return ChipCost(c.valid * n_neur, holes * n_neur, synops, messages, host_macs, bits, c.steps, energy, latency)
