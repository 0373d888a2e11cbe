"""Training losses of the Guo-group methods, on membranes recorded by :class:`~spikenerf.vision.blocks.SpikeAct`.

- RMP-Loss (Guo et al., ICCV 2023, "RMP-Loss: Regularizing Membrane Potential Distribution for SNNs").
  Implemented: ``L_RMP = mean_l mean_{t,i} (u - Q(u))^2`` with ``Q(u)`` the spike value the neuron emits
  for membrane ``u`` (binary: ``0`` or ``1``; ternary: ``-1/0/1``; times the learnable amplitude when
  there is one), i.e. membranes are pulled toward the spike values they are quantized to, which is
  the quantization error of firing. The total loss is ``CE + lambda * L_RMP``; ``rmp_lambda`` ramps
  ``lambda`` with a cosine warm-up (our choice; the paper anneals ``lambda`` over training too).
  ``Q`` is constant almost everywhere, so gradients flow through ``u`` only (``Q`` is detached).
- IM-Loss (Guo et al., NeurIPS 2022, "IM-Loss: Information Maximization Loss for SNNs"). The entropy
  of a binary spike is maximal at firing rate 1/2; the paper reaches it by pulling the mean
  membrane of each layer to the threshold: ``L_IM = mean_l (mean(u_l) - V_th)^2`` (implemented, with
  ``u`` the pre-reset membrane). The evolving surrogate gradient (ESG) is the tanh surrogate with
  its steepness ``K`` moved from ``K_min`` to ``K_max`` over the ``N`` training steps by the paper's
  ``K(i) = (10^{i/N} - 1) / 9 (K_max - K_min) + K_min``: ``spikenerf.snn.SurrogateSchedule(mode='esg')``.
- ``firing_rate_entropy_loss``: the direct form "maximize the entropy of each layer's firing rate"
  (``-H(r)`` with ``r`` the mean spike rate), given for comparison.
- ``distillation_loss``: Hinton KD ``tau^2 KL(softmax(t/tau) || softmax(s/tau))`` (joint ANN-SNN training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import SpikeAct, spike_acts

__all__ = [
    "spike_value",
    "rmp_loss",
    "im_loss",
    "firing_rate_entropy_loss",
    "distillation_loss",
    "rmp_lambda",
    "record_membranes",
]


def spike_value(u: Tensor, v_threshold: Tensor | float, code: str = "binary", amplitude: Tensor | float = 1.0) -> Tensor:
    """``Q(u)``: the value the neuron would emit for membrane ``u`` (no reset, no surrogate)."""
    if code == "binary":
        q = (u >= v_threshold).to(u.dtype)
    elif code == "ternary":
        q = (u >= v_threshold).to(u.dtype) - (u <= -v_threshold).to(u.dtype)
    else:
        raise ValueError(f"rmp_loss supports the binary and ternary codes, not {code!r}")
    return q * amplitude


def rmp_loss(acts: list[SpikeAct]) -> Tensor:
    """RMP-Loss over the last recorded membranes of ``acts`` (mean over layers of the mean squared gap)."""
    terms = []
    for a in acts:
        u = a.last_membrane
        if u is None:
            continue
        n = a.neuron
        amp = n.output_scale() if hasattr(n, "output_scale") else None
        q = spike_value(u, n.v_threshold, n.spec.code, 1.0 if amp is None else amp)
        terms.append(((u - q.detach()) ** 2).mean())
    if not terms:
        raise RuntimeError("rmp_loss: no membranes recorded; wrap the forward in record_membranes(model)")
    return torch.stack(terms).mean()


def im_loss(acts: list[SpikeAct]) -> Tensor:
    """IM-Loss ``mean_l (mean(u_l) - V_th)^2`` over the last recorded membranes."""
    terms = []
    for a in acts:
        if a.last_membrane is None:
            continue
        terms.append((a.last_membrane.mean() - a.neuron.v_threshold) ** 2)
    if not terms:
        raise RuntimeError("im_loss: no membranes recorded; wrap the forward in record_membranes(model)")
    return torch.stack(terms).mean()


def firing_rate_entropy_loss(spikes: list[Tensor], eps: float = 1e-6) -> Tensor:
    """``-mean_l H(r_l)``, ``H(r) = -r log r - (1-r) log(1-r)``, ``r_l`` the mean rate of spikes ``[T, B, ...]``."""
    hs = []
    for s in spikes:
        r = s.abs().mean().clamp(eps, 1 - eps)
        hs.append(-(r * torch.log(r) + (1 - r) * torch.log(1 - r)))
    return -torch.stack(hs).mean()


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, tau: float = 4.0) -> Tensor:
    """``tau^2 KL(p_teacher || p_student)`` with temperature ``tau``; the teacher is detached."""
    p_t = F.softmax(teacher_logits.detach() / tau, dim=-1)
    return F.kl_div(F.log_softmax(student_logits / tau, dim=-1), p_t, reduction="batchmean") * tau * tau


def rmp_lambda(step: int, total: int, lam: float, warmup_frac: float = 0.5) -> float:
    """Cosine warm-up of the regularizer weight from 0 to ``lam`` over the first ``warmup_frac`` of training."""
    w = max(1, int(total * warmup_frac))
    p = min(step / w, 1.0)
    return lam * 0.5 * (1.0 - math.cos(math.pi * p))


class record_membranes:
    """Context manager: the spiking slots of ``model`` keep their membranes during the forward."""

    def __init__(self, model: nn.Module) -> None:
        self.acts = [a for _, a in spike_acts(model) if a.spiking]

    def __enter__(self) -> list[SpikeAct]:
        for a in self.acts:
            a.record_membrane, a.last_membrane = True, None
        return self.acts

    def __exit__(self, *exc) -> None:
        for a in self.acts:
            a.record_membrane = False
