"""IM-Loss with the evolving surrogate gradient (Guo et al., NeurIPS 2022).

Loss ``CE + w * mean_l (mean(u_l) - V_th)^2`` (:func:`spikenerf.vision.losses.im_loss`); ESG moves the tanh
surrogate's steepness ``K(i) = (10^(i/N) - 1) / 9 (K_max - K_min) + K_min`` over the ``N`` training steps
(:class:`spikenerf.snn.SurrogateSchedule`, ``mode='esg'``), stepped after every optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from spikenerf.snn import SurrogateSchedule, Tanh

from ..blocks import spike_acts
from ..losses import im_loss, record_membranes
from .base import Method, MethodConfig

__all__ = ["IMLossConfig", "IMLossMethod"]


class IMLossMethod(Method):
    config: "IMLossConfig"

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.esg: SurrogateSchedule | None = None

    def start(self, model: nn.Module, total_steps: int) -> None:
        c = self.config
        if not c.esg:
            return
        surr = [a.neuron.surrogate for _, a in spike_acts(model) if a.spiking]
        if not all(isinstance(s, Tanh) for s in surr):
            raise ValueError("ESG needs the tanh surrogate (--neuron.surrogate tanh), as in IM-Loss")
        self.esg = SurrogateSchedule(surr, c.k_min, c.k_max, max(1, total_steps), mode="esg")

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        with record_membranes(model) as acts:
            logits = model(x_seq)
            loss = F.cross_entropy(logits, y)
            if acts and self.config.weight > 0:
                loss = loss + self.config.weight * im_loss(acts)
        for a in acts:
            a.last_membrane = None
        return logits, loss

    def after_step(self, model: nn.Module) -> None:
        if self.esg is not None:
            self.esg.step()

    def state_dict(self) -> dict:
        return {"esg": self.esg.state_dict()} if self.esg is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.esg is not None and state.get("esg"):
            self.esg.load_state_dict(state["esg"])

    def report(self, model: nn.Module, x_seq: Tensor) -> dict:
        return {"esg_K": self.esg.value()} if self.esg is not None else {}

    def format_report(self, rep: dict) -> str:
        return f"ESG: final tanh steepness K = {rep['esg_K']:.3f}" if "esg_K" in rep else ""


@dataclass
class IMLossConfig(MethodConfig):
    """IM-Loss (mean membrane to threshold) with the evolving surrogate gradient (Guo et al., NeurIPS 2022)."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: IMLossMethod)
    weight: float = 1.0
    """Weight of IM-Loss (0: ESG alone)."""
    esg: bool = True
    """Evolving surrogate gradient: tanh steepness K from k_min to k_max, K(i) = (10^(i/N)-1)/9 (K_max-K_min) + K_min."""
    k_min: float = 1.0
    k_max: float = 10.0
