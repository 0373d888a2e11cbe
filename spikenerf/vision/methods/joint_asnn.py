"""Joint ANN-SNN training (Guo et al., Pattern Recognition 2023): shared weight factors, ANN->SNN distillation.

The model is :class:`spikenerf.vision.joint.JointANNSNN`; the loss is
``CE(snn) + CE(ann) + w [KD(snn <- ann) + sum_k KD(branch_k <- ann)]``, branch ``k`` being the SNN's first ``k``
stages finished by the ANN's (multi-branch self-distillation; ``--method.no-branches`` drops the branch terms).
The ANN branch sees one step of a static input (a ReLU net is stateless) and the whole sequence of events.
Evaluation and export use the SNN branch with its factors baked into plain layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from ..joint import JointANNSNN
from ..losses import distillation_loss
from .base import Method, MethodConfig

__all__ = ["JointConfig", "JointMethod"]


class JointMethod(Method):
    config: "JointConfig"

    @property
    def spiking(self) -> bool:
        return True

    def build(self) -> nn.Module:
        c, i = self.ctx.cfg, self.ctx.info
        return JointANNSNN(c.model, i.num_classes, i.in_channels, c.neuron, c.width, i.input_size,
                           self.config.rank_ratio)

    def eval_model(self, model: nn.Module):
        return model.materialize("snn") if isinstance(model, JointANNSNN) else model

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        x_ann = x_seq if self.ctx.info.kind == "events" else x_seq[:1]
        if self.config.branches:
            logits, ann_logits, hybrids = model.branch_logits(x_seq, x_ann)
        else:
            (logits, ann_logits), hybrids = model(x_seq, x_ann), []
        loss = F.cross_entropy(logits, y) + F.cross_entropy(ann_logits, y)
        kd = sum((distillation_loss(s, ann_logits, self.config.distill_tau) for s in [logits, *hybrids]),
                 torch.zeros((), device=logits.device))
        return logits, loss + self.config.distill_weight * kd


@dataclass
class JointConfig(MethodConfig):
    """Joint ANN-SNN training: shared U, V factors, per-branch singular values, multi-branch ANN->SNN distillation."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: JointMethod)
    rank_ratio: float = 1.0
    """Kept singular values per layer, as a fraction of the full rank."""
    distill_weight: float = 1.0
    distill_tau: float = 4.0
    branches: bool = True
    """Multi-branch self-distillation: also distill each hybrid (the SNN's first k stages, then the ANN's)."""
