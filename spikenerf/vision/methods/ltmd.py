"""LTMD (Wang, Cheng & Lim, NeurIPS 2022): learnable thresholding neurons + moderate dropout.

- Learnable thresholding: every spiking layer has its own threshold ``V_th = tanh(w)`` with ``w`` a trainable
  scalar (the core's ``threshold_mode='tanh'``; the paper initialises ``w = 0.5``, i.e. ``V_th = tanh(0.5)``,
  decay ``tau = 0.25``, hard reset ``u_t = tau u_{t-1} (1 - o_{t-1}) + W x_t``): ``dV_th/dw = 1 - tanh(w)^2``.
- Moderate dropout: dropout on the features that enter the classifier, with one mask per sample shared
  over all ``T`` steps; each training batch is run **twice** (two independent masks) and the loss is the
  mean of the two cross-entropies plus a consistency term, the symmetric KL between the two predictions::

      L = 1/2 (CE(z1, y) + CE(z2, y)) + alpha * 1/2 (KL(p2 || p1) + KL(p1 || p2)),

  ``p_i = softmax(z_i)``, KL averaged over all ``B x K`` entries as in the authors' released training code
  (``alpha = 1/2`` there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from ..blocks import spike_acts
from .base import Method, MethodConfig

__all__ = ["SeqDropout", "ltmd_consistency", "ltmd_loss", "attach_moderate_dropout", "thresholds", "LTMDConfig",
           "LTMDMethod"]


class SeqDropout(nn.Module):
    """Dropout on ``[T, B, ...]`` with one mask per sample (and feature) shared over the ``T`` steps."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x[:1]).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def attach_moderate_dropout(model: nn.Module, p: float) -> SeqDropout:
    """Put a :class:`SeqDropout` in front of the classifier ``model.fc`` (a forward pre-hook)."""
    drop = SeqDropout(p)
    model.add_module("ltmd_dropout", drop)
    fc = getattr(model, "fc", None)
    if fc is None:
        raise ValueError("moderate dropout needs a model with a final `fc` layer")
    fc.register_forward_pre_hook(lambda mod, args: (model.ltmd_dropout(args[0]),) + tuple(args[1:]))
    return drop


def ltmd_consistency(z1: Tensor, z2: Tensor) -> Tensor:
    """``1/2 (KL(p2 || p1) + KL(p1 || p2))`` averaged over all entries (element-wise mean)."""
    kl_12 = F.kl_div(F.log_softmax(z1, -1), F.softmax(z2, -1), reduction="none").mean()
    kl_21 = F.kl_div(F.log_softmax(z2, -1), F.softmax(z1, -1), reduction="none").mean()
    return 0.5 * (kl_12 + kl_21)


def ltmd_loss(model: nn.Module, x_seq: Tensor, y: Tensor, alpha: float = 0.5) -> tuple[Tensor, Tensor]:
    """Two forward runs (two dropout masks); returns ``(z1, L)`` with ``L`` as in the module docstring."""
    z1, z2 = model(x_seq), model(x_seq)
    loss = 0.5 * (F.cross_entropy(z1, y) + F.cross_entropy(z2, y)) + alpha * ltmd_consistency(z1, z2)
    return z1, loss


def thresholds(model: nn.Module) -> dict[str, float]:
    """Per-layer thresholds ``tanh(w)`` after training."""
    return {n: float(a.neuron.v_threshold.detach()) for n, a in spike_acts(model) if a.spiking}


class LTMDMethod(Method):
    config: "LTMDConfig"

    def build(self) -> nn.Module:
        model = self.base_model()
        for _, a in spike_acts(model):
            if a.spiking and a.neuron.threshold_mode != "tanh":
                raise ValueError("LTMD needs --neuron.threshold-mode tanh (V_th = tanh(w)); the ltmd presets set it")
        attach_moderate_dropout(model, self.config.dropout)
        return model

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        return ltmd_loss(model, x_seq, y, self.config.alpha)

    def report(self, model: nn.Module, x_seq: Tensor) -> dict[str, Any]:
        return {"thresholds": thresholds(model)}

    def format_report(self, rep: dict[str, Any]) -> str:
        return "thresholds tanh(w): " + ", ".join(f"{k}={v:.3f}" for k, v in rep["thresholds"].items())


@dataclass
class LTMDConfig(MethodConfig):
    """LTMD (Wang et al. 2022): tanh(w) learnable thresholds + moderate dropout with a two-run consistency loss."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: LTMDMethod)
    dropout: float = 0.2
    """Dropout before the classifier, one mask per sample shared over T."""
    alpha: float = 0.5
    """Weight of the symmetric-KL consistency term between the two dropout runs."""
