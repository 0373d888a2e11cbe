"""The multi-step neuron scan: one charge / fire / reset recurrence shared by every neuron.

Every neuron in :mod:`spikenerf.snn.neurons` reduces to

    charge:  h_t = a * v_{t-1} + b * x_t + c
    fire:    s_t = F(h_t; v_th)                       (the spike code, see :class:`ScanSpec`)
    reset:   hard: v_t = h_t * (1 - z_t) + v_reset * z_t,  z_t = "fired"
             soft: v_t = h_t - v_th * s_t

with ``(a, b, c)`` given by the neuron (IF: ``(1, 1, 0)``; LIF: ``(1 - 1/tau, 1/tau, v_reset/tau)``...).
This module holds the spec, the naive per-step autograd reference (the ground truth in tests) and the
graph-free torch backend (for dtypes and devices no fused kernel covers). It imports no other backend:
the dispatcher :func:`spikenerf.snn.fused.multistep_scan` imports it, the C kernel (``csrc/scan.c``, via
:mod:`spikenerf.snn.fused`) and the Triton kernels (:mod:`spikenerf.snn.triton_scan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .surrogate import ATan, Surrogate, heaviside

SpikeCode = Literal["binary", "ternary", "ternary012", "multibit"]
CODE_IDS: dict[str, int] = {"binary": 0, "ternary": 1, "ternary012": 2, "multibit": 3}

__all__ = ["ScanSpec", "SpikeCode", "scan_reference", "scan_torch_forward", "scan_torch_backward", "fire_reference",
           "CODE_IDS"]


@dataclass
class ScanSpec:
    """Static description of a neuron's fire and reset rules.

    code:
        ``binary`` {0,1}; ``ternary`` {-1,0,1} (fires -1 below ``-v_th``, Ternary Spike);
        ``ternary012`` {0,1,2} (1 above ``v_th``, 2 above ``v_th + margin``, Spik-NeRF);
        ``multibit`` {0..levels} (number of multiples of ``v_th`` crossed; ``v_th`` is the step size).
    reset: ``hard`` (to ``v_reset``) or ``soft`` (subtract ``v_th * s``).
    detach_reset: no gradient through the reset path (Zenke & Vogels 2021 style).
    """

    code: SpikeCode = "binary"
    reset: Literal["hard", "soft"] = "hard"
    v_reset: float = 0.0
    detach_reset: bool = False
    surrogate: Surrogate = field(default_factory=ATan)
    margin: float = 1.0
    levels: int = 1

    def __post_init__(self) -> None:
        if self.code not in CODE_IDS:
            raise ValueError(f"unknown spike code {self.code!r}; choose one of {sorted(CODE_IDS)}")
        if self.reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', got {self.reset!r}")
        if self.code == "multibit" and self.levels < 1:
            raise ValueError("multibit code needs levels >= 1")
        if self.code == "ternary012" and self.margin <= 0:
            raise ValueError("ternary012 code needs margin > 0")


# ---------------------------------------------------------------- reference (autograd, per step)
def fire_reference(h: Tensor, vth: Tensor | float, spec: ScanSpec) -> tuple[Tensor, Tensor]:
    """Spike ``s`` and hard-reset indicator ``z`` of membrane ``h``, built from surrogate Heavisides."""
    sg = spec.surrogate
    if spec.code == "binary":
        s = heaviside(h - vth, sg)
        return s, s
    if spec.code == "ternary":
        up, down = heaviside(h - vth, sg), heaviside(-h - vth, sg)
        return up - down, up + down
    if spec.code == "ternary012":
        first = heaviside(h - vth, sg)
        return first + heaviside((h - vth) - spec.margin, sg), first
    first = heaviside(h - vth, sg)
    s = first
    for k in range(2, spec.levels + 1):
        s = s + heaviside(h - k * vth, sg)
    return s, first


def _reset_reference(h: Tensor, s: Tensor, z: Tensor, vth: Tensor | float, spec: ScanSpec) -> Tensor:
    if spec.reset == "hard":
        if spec.detach_reset:
            z = z.detach()
        return h * (1.0 - z) + spec.v_reset * z
    if spec.detach_reset:
        s = s.detach()
    return h - vth * s


def scan_reference(
    x_seq: Tensor,
    v0: Tensor | None,
    a: Tensor | float,
    b: Tensor | float,
    c: Tensor | float,
    vth: Tensor | float,
    spec: ScanSpec,
    membrane_transform=None,
) -> tuple[Tensor, Tensor]:
    """Naive per-step loop with autograd through every step: ``([T, ...] spikes, [T, ...] membrane h)``.

    ``membrane_transform`` (optional callable ``h_t -> h_hat_t``) is applied to the membrane before
    firing only, as MPBN and the membrane potential rectifier do; the reset still acts on ``h_t``.
    ``vth`` may be a tensor broadcastable to one step (per-channel thresholds).
    """
    v = torch.zeros_like(x_seq[0]) if v0 is None else v0
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = a * v + b * x_seq[t] + c
        h_fire = h if membrane_transform is None else membrane_transform(h)
        s, z = fire_reference(h_fire, vth, spec)
        v = _reset_reference(h, s, z, vth, spec)
        spikes.append(s)
        hs.append(h)
    return torch.stack(spikes), torch.stack(hs)


# ---------------------------------------------------------------- torch backend (no per-step graph)
def _fire_value(h: Tensor, vth: float, spec: ScanSpec) -> tuple[Tensor, Tensor]:
    step = lambda u: (u >= 0).to(h.dtype)  # noqa: E731
    if spec.code == "binary":
        s = step(h - vth)
        return s, s
    if spec.code == "ternary":
        up, down = step(h - vth), step(-h - vth)
        return up - down, up + down
    if spec.code == "ternary012":
        first = step(h - vth)
        return first + step((h - vth) - spec.margin), first
    first = step(h - vth)
    s = first.clone()
    for k in range(2, spec.levels + 1):
        s += step(h - k * vth)
    return s, first


def _fire_grads(h: Tensor, vth: float, spec: ScanSpec) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dF/dh, dF/dvth, dZ/dh, dZ/dvth."""
    g = spec.surrogate.grad
    if spec.code == "binary":
        gp = g(h - vth)
        return gp, -gp, gp, -gp
    if spec.code == "ternary":
        gp, gm = g(h - vth), g(-h - vth)
        return gp + gm, gm - gp, gp - gm, -gp - gm
    if spec.code == "ternary012":
        gp = g(h - vth)
        gf = gp + g((h - vth) - spec.margin)
        return gf, -gf, gp, -gp
    gp = g(h - vth)
    gf, gt = gp.clone(), -gp
    for k in range(2, spec.levels + 1):
        gk = g(h - k * vth)
        gf += gk
        gt -= k * gk
    return gf, gt, gp, -gp


def _reset_value(h: Tensor, s: Tensor, z: Tensor, vth: float, spec: ScanSpec) -> Tensor:
    if spec.reset == "hard":
        return h * (1.0 - z) + spec.v_reset * z
    return h - vth * s


@torch.no_grad()
def scan_torch_forward(x: Tensor, v0: Tensor | None, a: float, b: float, c: float, vth: float, spec: ScanSpec):
    s_seq, h_seq = torch.empty_like(x), torch.empty_like(x)
    v = torch.zeros_like(x[0]) if v0 is None else v0.to(x.dtype)
    for t in range(x.shape[0]):
        h = a * v + b * x[t] + c
        s, z = _fire_value(h, vth, spec)
        h_seq[t], s_seq[t] = h, s
        v = _reset_value(h, s, z, vth, spec)
    return s_seq, h_seq


@torch.no_grad()
def scan_torch_backward(x, h_seq, gs, gh_out, v0, a: float, b: float, c: float, vth: float, spec: ScanSpec):
    """Same recurrence as ``csrc/scan.c``'s backward; returns (gx, gv0, ga, gb, gvth, gc)."""
    gx = torch.empty_like(x)
    gv = torch.zeros_like(x[0])
    ga = gb = gth = gc = x.new_zeros((), dtype=torch.float64)
    for t in range(x.shape[0] - 1, -1, -1):
        h = h_seq[t]
        s, z = _fire_value(h, vth, spec)
        dfdh, dfdth, dzdh, dzdth = _fire_grads(h, vth, spec)
        if spec.reset == "hard":
            dvdh, dvdth = 1.0 - z, torch.zeros_like(h)
            if not spec.detach_reset:
                dvdh = dvdh + (spec.v_reset - h) * dzdh
                dvdth = (spec.v_reset - h) * dzdth
        else:
            dvdh, dvdth = torch.ones_like(h), -s
            if not spec.detach_reset:
                dvdh = dvdh - vth * dfdh
                dvdth = dvdth - vth * dfdth
        g = gs[t] * dfdh + gv * dvdh
        if gh_out is not None:
            g = g + gh_out[t]
        gth = gth + (gs[t] * dfdth + gv * dvdth).double().sum()
        if t > 0:
            hp = h_seq[t - 1]
            sp, zp = _fire_value(hp, vth, spec)
            vprev = _reset_value(hp, sp, zp, vth, spec)
        else:
            vprev = torch.zeros_like(h) if v0 is None else v0.to(h.dtype)
        ga = ga + (g * vprev).double().sum()
        gb = gb + (g * x[t]).double().sum()
        gc = gc + g.double().sum()
        gx[t] = b * g
        gv = a * g
    return gx, gv, ga, gb, gth, gc
