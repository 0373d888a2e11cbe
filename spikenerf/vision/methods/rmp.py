"""RMP-Loss (Guo et al., ICCV 2023): ``CE + lambda(step) * mean_l mean (u - Q(u))^2`` on the recorded membranes.

The regularizer and its cosine warm-up live in :mod:`spikenerf.vision.losses` (``rmp_loss``, ``rmp_lambda``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from ..losses import record_membranes, rmp_lambda, rmp_loss
from .base import Method, MethodConfig

__all__ = ["RMPConfig", "RMPMethod"]


class RMPMethod(Method):
    config: "RMPConfig"

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        with record_membranes(model) as acts:
            logits = model(x_seq)
            loss = F.cross_entropy(logits, y)
            if acts:  # the ANN twin records nothing: plain CE
                loss = loss + rmp_lambda(step, total_steps, self.config.weight, self.config.warmup) * rmp_loss(acts)
        for a in acts:
            a.last_membrane = None  # free the graph references
        return logits, loss


@dataclass
class RMPConfig(MethodConfig):
    """RMP-Loss: CE + lambda * membrane-to-spike-value regularizer (Guo et al., ICCV 2023)."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: RMPMethod)
    weight: float = 0.1
    """lambda, reached after the cosine warm-up."""
    warmup: float = 0.5
    """Fraction of the training steps over which lambda ramps from 0 (cosine)."""
