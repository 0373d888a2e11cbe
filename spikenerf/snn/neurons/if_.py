"""Integrate-and-fire: ``h_t = v_{t-1} + x_t``."""

from __future__ import annotations

from .base import BaseNode

__all__ = ["IFNode"]


class IFNode(BaseNode):
    """Non-leaky integrate-and-fire neuron (all :class:`BaseNode` options apply)."""

    def charge_coefficients(self):
        return 1.0, 1.0, 0.0
