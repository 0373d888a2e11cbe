"""Refined spiking neuron of adaptive bit allocation (Yao et al., 2025): per-layer learnable temporal length
``T_l`` and spike bit width ``B_s`` on the shared scan.

Dynamics (the core recurrence with ``a = decay``, ``b = 1``, ``c = 0``, ``multibit`` code, soft reset)::

    x'      = R_{T_l <- T_in} x                        (temporal resampling, below)
    h_t     = decay * v_{t-1} + x'_t
    s_t     = min(floor(h_t / d), L) (as sum_k H(h_t - k d)),  L = 2^{B_s} - 1 levels, d the step size
    v_t     = h_t - d s_t                              (soft reset: the residue is the quantization error)
    out_t   = d s_t

- **Different temporal lengths.** A layer with ``T_l`` steps consumes an input of ``T_in`` steps through the
  mean-preserving resampling ``x'_k = sum_t R_{kt} x_t``, ``R_{kt} = T_l |[k/T_l, (k+1)/T_l) n [t/T_in,
  (t+1)/T_in)|`` (each output step averages the input over its window; ``R = I`` when ``T_l = T_in``;
  ``mean_k x'_k = mean_t x_t``).
- **Gradients for T_l and B_s.** ``T_l = round(t)``, ``B_s = round(b)`` (clamped to their ranges) with
  straight-through rounding. The output rate ``r = mean_t out_t`` of a soft-reset quantizer is the input
  mean quantized to ``T_l L`` levels, ``r ~ d round(x_bar T_l / d) / T_l`` for ``x_bar`` in ``[0, L d]``,
  so (straight-through round) ``dr/dT_l = (x_bar - r) / T_l``; it is added to every output step as
  ``out_t += (T - sg(T)) (clip(x_bar, 0, L d) - r) / T`` (value unchanged). The saturation level gives
  ``d out_t / dL = d`` where ``s_t = L`` (``L = 2^{B_s} - 1`` with straight-through ``B_s``).
- The step size ``d`` is the learnable threshold (``threshold_mode='learnable'``, ``amplitude='threshold'``);
  :meth:`renew_step` is the step-size renewal of a changed bit width (see
  :mod:`spikenerf.vision.methods.adaptive_bits`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..fused import multistep_scan
from .base import BaseNode, NeuronOutput

__all__ = ["RefinedNode", "resample_time", "resample_matrix", "round_ste", "best_step"]


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` with the identity gradient."""
    return x + (torch.round(x) - x).detach()


@torch.no_grad()
def best_step(x: Tensor, quantize, candidates: list[float], grid: int = 33) -> float:
    """Step size ``d`` minimising ``mean (quantize(x, d) - x)^2``: the best of ``candidates``, then refined on a
    multiplicative grid ``d * 2^u``, ``u`` in ``[-1, 1]``. Used by the step-size renewal."""
    def err(d: float) -> float:
        return float(((quantize(x, d) - x) ** 2).mean())

    cands = [c for c in candidates if c > 0]
    best = min(cands, key=err)
    fine = [best * 2.0 ** u for u in torch.linspace(-1, 1, grid).tolist()]
    return min(fine + [best], key=err)


def resample_matrix(t_out: int, t_in: int, dtype=torch.float32, device=None) -> Tensor:
    """``R [t_out, t_in]``: ``R_kt = t_out * overlap([k/t_out, (k+1)/t_out), [t/t_in, (t+1)/t_in))``."""
    k = torch.arange(t_out, dtype=torch.float64)
    t = torch.arange(t_in, dtype=torch.float64)
    lo = torch.maximum(k[:, None] / t_out, t[None, :] / t_in)
    hi = torch.minimum((k[:, None] + 1) / t_out, (t[None, :] + 1) / t_in)
    return (t_out * (hi - lo).clamp(min=0.0)).to(dtype=dtype, device=device)


def resample_time(x_seq: Tensor, t_out: int) -> Tensor:
    """``[T_in, ...] -> [t_out, ...]`` by :func:`resample_matrix` (identity when the lengths are equal)."""
    t_in = x_seq.shape[0]
    if t_in == t_out:
        return x_seq
    R = resample_matrix(t_out, t_in, x_seq.dtype, x_seq.device)
    return torch.tensordot(R, x_seq, dims=([1], [0]))


class RefinedNode(BaseNode):
    """Multi-bit, soft-reset neuron with learnable ``T_l`` (``t_param``), ``B_s`` (``bits_param``), step ``d``.

    The forward is pure: it writes nothing on the module or on its output. The level count ``L`` of the current
    ``B_s`` goes to the scan in a per-call copy of the spec; what the adaptive-bits method needs about a call
    (the layer's straight-through ``T`` and ``B_s``, the mean input currents for the step renewal) it asks for
    explicitly: :meth:`temporal_length`, :meth:`spike_bits`, :meth:`input_sample`.
    """

    def __init__(self, decay: float = 1.0, step: float = 0.5, t_init: float = 4.0, t_range: tuple[int, int] = (1, 8),
                 bits_init: float = 2.0, bits_range: tuple[int, int] = (1, 4), surrogate="rect", **kwargs) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"RefinedNode needs decay in (0, 1], got {decay}")
        b0 = int(round(bits_init))
        super().__init__(v_threshold=step, reset="soft", spike_code="multibit", levels=2 ** b0 - 1,
                         threshold_mode="learnable", amplitude="threshold", surrogate=surrogate, **kwargs)
        self.decay = float(decay)
        self.t_range = (int(t_range[0]), int(t_range[1]))
        self.bits_range = (int(bits_range[0]), int(bits_range[1]))
        self.t_param = nn.Parameter(torch.tensor(float(t_init)))
        self.bits_param = nn.Parameter(torch.tensor(float(bits_init)))
        self.register_buffer("bits_int", torch.tensor(b0))  # bit width the step size was last renewed for

    def charge_coefficients(self):
        return self.decay, 1.0, 0.0

    def temporal_length(self) -> Tensor:
        return round_ste(self.t_param.clamp(*self.t_range))

    def spike_bits(self) -> Tensor:
        return round_ste(self.bits_param.clamp(*self.bits_range))

    @torch.no_grad()
    def input_sample(self, x_seq: Tensor, n: int = 8192) -> Tensor:
        """Mean input currents ``[<= n]`` of ``x_seq`` after resampling to this layer's ``T`` (step renewal)."""
        return resample_time(x_seq.detach(), int(self.temporal_length())).mean(0).flatten()[:n].clone()

    @torch.no_grad()
    def renew_step(self, x_sample: Tensor | None = None) -> bool:
        """Step-size renewal when ``round(b)`` changed from ``B_old`` to ``B_new`` (returns True if renewed).

        The step learnt for ``B_old`` mismatches ``B_new``. Renewed step: the one minimising the rate
        quantization error ``E (x_bar - Q(x_bar))^2``, ``Q(x) = (d/T) clip(round(x T / d), 0, T L_new)``, on
        ``x_sample`` (the last training batch's mean input currents, :meth:`input_sample`), searched from the
        candidates ``d`` (kept) and ``d (2^B_old - 1) / (2^B_new - 1)`` (range kept); without a sample the range
        is kept.
        """
        new = int(torch.round(self.bits_param.clamp(*self.bits_range)))
        old = int(self.bits_int)
        if new == old:
            return False
        d = float(self.v_threshold_param)
        keep_range = d * (2 ** old - 1) / (2 ** new - 1)
        if x_sample is None:
            self.v_threshold_param.fill_(keep_range)
        else:
            T, L = int(self.temporal_length()), 2 ** new - 1

            def q(x: Tensor, step: float) -> Tensor:
                return (step / T) * torch.clamp(torch.round(x * T / step), 0, T * L)

            self.v_threshold_param.fill_(best_step(x_sample, q, [d, keep_range]))
        self.bits_int.fill_(new)
        return True

    def forward(self, x_seq: Tensor, v0: Tensor | None = None, return_membrane: bool = False):
        T_ste, B_ste = self.temporal_length(), self.spike_bits()
        T, B = int(T_ste.detach()), int(B_ste.detach())
        L = 2 ** B - 1
        x = resample_time(x_seq, T)
        if v0 is None:
            v0 = self.initial_membrane(x)
        a, b, c = self.charge_coefficients()
        d = self.v_threshold
        counts, h = multistep_scan(x, dataclasses.replace(self.spec, levels=L), a=a, b=b, c=c, vth=d, v0=v0,
                                   backend=self.backend, membrane_transform=self.membrane_transform)
        s = counts * d  # output d * count (amplitude = the step)
        L_ste = 2.0 ** B_ste - 1.0
        sat = (s.detach() >= (L - 0.5) * d.detach()).to(s.dtype)
        s = s + (L_ste - L_ste.detach()) * d.detach() * sat
        xbar = torch.minimum(x.detach().mean(0).clamp(min=0.0), L * d.detach())
        r = s.detach().mean(0)
        s = s + (T_ste - T_ste.detach()) * ((xbar - r) / T).unsqueeze(0)
        return NeuronOutput((s, h)) if return_membrane else s

    def extra_repr(self) -> str:
        return (f"decay={self.decay:g}, T={int(self.temporal_length())}, B_s={int(self.spike_bits())}, "
                f"step={float(self.v_threshold):.4g}")
