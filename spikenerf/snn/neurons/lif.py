"""Leaky integrate-and-fire in its two common forms.

- :class:`LIFNode` (SpikingJelly form): ``h = v + (x - (v - v_reset)) / tau`` with ``decay_input``,
  or ``h = v - (v - v_reset) / tau + x`` without. As ``h = a v + b x + c``:
  ``a = 1 - 1/tau``, ``b = 1/tau`` (or 1), ``c = v_reset / tau``.
- :class:`DecayLIFNode` (decay-factor form of the Guo-group papers and Spik-NeRF's ``u = tau u + x``):
  ``h = decay * v + x``, with ``decay`` in (0, 1] (they call it tau).
"""

from __future__ import annotations

from .base import BaseNode

__all__ = ["LIFNode", "DecayLIFNode"]


class LIFNode(BaseNode):
    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        if tau < 1.0:
            raise ValueError(f"LIFNode needs tau >= 1 (membrane time constant in steps), got {tau}; "
                             "for a decay factor in (0, 1) use DecayLIFNode")
        super().__init__(**kwargs)
        self.tau = float(tau)
        self.decay_input = decay_input

    def charge_coefficients(self):
        k = 1.0 / self.tau
        return 1.0 - k, (k if self.decay_input else 1.0), self.spec.v_reset * k

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class DecayLIFNode(BaseNode):
    def __init__(self, decay: float = 0.5, **kwargs) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"DecayLIFNode needs decay in (0, 1], got {decay}")
        super().__init__(**kwargs)
        self.decay = float(decay)

    def charge_coefficients(self):
        return self.decay, 1.0, 0.0

    def extra_repr(self) -> str:
        return f"decay={self.decay:g}, " + super().extra_repr()
