"""Parametric LIF (Fang et al., ICCV 2021): ``1/tau = sigmoid(w)`` with ``w`` learnable per layer."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import BaseNode

__all__ = ["PLIFNode"]


class PLIFNode(BaseNode):
    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        if init_tau <= 1.0:
            raise ValueError(f"PLIFNode needs init_tau > 1, got {init_tau}")
        super().__init__(**kwargs)
        # sigmoid(w) = 1/tau  =>  w = -log(tau - 1)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.decay_input = decay_input

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def charge_coefficients(self):
        k = torch.sigmoid(self.w)
        return 1.0 - k, (k if self.decay_input else 1.0), self.spec.v_reset * k

    def extra_repr(self) -> str:
        return f"tau={self.tau:.3g}, decay_input={self.decay_input}, " + super().extra_repr()
