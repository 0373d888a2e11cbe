"""``BaseNode``: the one spiking-neuron module every model in spikenerf uses.

Subclasses only say how they charge (the ``(a, b, c)`` of ``h_t = a v_{t-1} + b x_t + c``); firing,
reset, spike codes, learnable thresholds, amplitudes, membrane transforms and the fused kernel are
shared here. Input and output are multi-step ``[T, B, ...]``; state is explicit: the initial membrane
is an argument (or drawn fresh per call when ``init_membrane`` is set) and nothing survives between calls.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from ..fused import multistep_scan, ragged_scan, segment_scan
from ..scan import ScanSpec, SpikeCode
from ..surrogate import ATan, Surrogate, get_surrogate

__all__ = ["BaseNode", "NeuronOutput"]


class NeuronOutput(tuple):
    """``(spikes, membrane)`` pair returned when ``return_membrane=True``; both ``[T, B, ...]``."""


class BaseNode(nn.Module):
    """Shared spiking neuron.

    Args:
        v_threshold: firing threshold (step size for ``multibit``).
        reset: ``hard`` (to ``v_reset``) or ``soft`` (subtract ``v_threshold * s``).
        v_reset: hard-reset value.
        surrogate: surrogate gradient object or its name.
        detach_reset: no gradient through the reset path.
        spike_code: ``binary`` | ``ternary`` | ``ternary012`` | ``multibit`` (see :class:`ScanSpec`).
        margin: second-level offset above the threshold for ``ternary012``.
        levels: number of levels for ``multibit``.
        threshold_mode: ``fixed``; ``learnable`` (``v_th`` is a parameter); ``tanh`` (LTMD:
            ``v_th = tanh(w)`` with ``w`` a per-layer parameter).
        amplitude: ``None``; ``learnable`` (output ``alpha * s`` with a layer-wise trainable ``alpha``,
            Ternary Spike); ``threshold`` (output ``v_th * s``, the multi-bit step-size convention).
        init_membrane: ``None`` (zeros) or ``(low, high)``: a fresh ``U(low, high)`` initial membrane in
            every training forward; zeros in eval so inference is deterministic.
        membrane_transform: optional module applied to ``h_t`` before firing only (MPBN, MPR).
        backend: ``auto`` | ``c`` | ``torch`` | ``reference`` (see :mod:`spikenerf.snn.fused`).

    Example (a subclass only supplies ``charge_coefficients``; :class:`~spikenerf.snn.LIFNode` is one)::

        >>> import torch
        >>> from spikenerf.snn import LIFNode
        >>> lif = LIFNode(tau=2.0, v_threshold=1.0, reset="hard")
        >>> x = torch.full((4, 2, 3), 1.5)              # [T, B, C]: T = 4 steps
        >>> s, h = lif(x, return_membrane=True)         # both [T, B, C]
        >>> s.shape, h.shape
        (torch.Size([4, 2, 3]), torch.Size([4, 2, 3]))
        >>> s[:, 0, 0].tolist()                         # h = 0.75, 1.125 (fire, reset to 0), 0.75, 1.125
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        reset: Literal["hard", "soft"] = "hard",
        v_reset: float = 0.0,
        surrogate: Surrogate | str = "atan",
        detach_reset: bool = False,
        spike_code: SpikeCode = "binary",
        margin: float = 1.0,
        levels: int = 1,
        threshold_mode: Literal["fixed", "learnable", "tanh"] = "fixed",
        amplitude: Literal["learnable", "threshold"] | None = None,
        init_membrane: tuple[float, float] | None = None,
        membrane_transform: nn.Module | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.spec = ScanSpec(
            code=spike_code,
            reset=reset,
            v_reset=float(v_reset),
            detach_reset=detach_reset,
            surrogate=get_surrogate(surrogate) if isinstance(surrogate, str) else surrogate,
            margin=float(margin),
            levels=int(levels),
        )
        self.threshold_mode = threshold_mode
        if threshold_mode == "fixed":
            self.register_buffer("v_threshold_value", torch.tensor(float(v_threshold)), persistent=False)
        elif threshold_mode == "learnable":
            self.v_threshold_param = nn.Parameter(torch.tensor(float(v_threshold)))
        elif threshold_mode == "tanh":
            if not -1.0 < v_threshold < 1.0:
                raise ValueError("threshold_mode='tanh' needs an initial v_threshold in (-1, 1)")
            self.threshold_w = nn.Parameter(torch.tensor(math.atanh(v_threshold)))
        else:
            raise ValueError(f"unknown threshold_mode {threshold_mode!r}")
        if amplitude not in (None, "learnable", "threshold"):
            raise ValueError(f"unknown amplitude {amplitude!r}")
        self.amplitude_mode = amplitude
        if amplitude == "learnable":
            self.amplitude = nn.Parameter(torch.tensor(1.0))
        self.init_membrane = init_membrane
        self.membrane_transform = membrane_transform
        self.backend = backend

    # -- what subclasses provide ------------------------------------------------------------
    def charge_coefficients(self) -> tuple[Tensor | float, Tensor | float, Tensor | float]:
        """``(a, b, c)`` of ``h_t = a v_{t-1} + b x_t + c``."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    @property
    def surrogate(self) -> Surrogate:
        return self.spec.surrogate

    @property
    def v_threshold(self) -> Tensor:
        if self.threshold_mode == "fixed":
            return self.v_threshold_value
        if self.threshold_mode == "learnable":
            return self.v_threshold_param
        return torch.tanh(self.threshold_w)

    def output_scale(self) -> Tensor | None:
        """Factor the emitted spike levels are multiplied by (``None`` = 1)."""
        if self.amplitude_mode == "learnable":
            return self.amplitude
        if self.amplitude_mode == "threshold":
            return self.v_threshold
        return None

    def initial_membrane(self, x_seq: Tensor) -> Tensor | None:
        if self.init_membrane is None or not self.training:
            return None
        lo, hi = self.init_membrane
        return torch.empty_like(x_seq[0]).uniform_(lo, hi)

    def forward(self, x_seq: Tensor, v0: Tensor | None = None, return_membrane: bool = False):
        """``x_seq`` ``[T, B, ...]`` -> spikes ``[T, B, ...]`` (times the output scale, if any).

        With ``return_membrane=True`` returns ``(spikes, h)`` where ``h`` ``[T, B, ...]`` is the membrane
        after charging and before reset (what RMP-Loss and MPBN act on).
        """
        if v0 is None:
            v0 = self.initial_membrane(x_seq)
        a, b, c = self.charge_coefficients()
        s, h = multistep_scan(
            x_seq,
            self.spec,
            a=a,
            b=b,
            c=c,
            vth=self.v_threshold,
            v0=v0,
            backend=self.backend,
            membrane_transform=self.membrane_transform,
        )
        scale = self.output_scale()
        if scale is not None:
            s = s * scale
        return NeuronOutput((s, h)) if return_membrane else s

    def supports_ragged(self) -> bool:
        """Whether :meth:`forward_ragged` reproduces :meth:`forward` now: scalar parameters, no membrane
        transform, and no random initial membrane (training with ``init_membrane``)."""
        a, b, c = self.charge_coefficients()
        scalar = all(not isinstance(p, Tensor) or p.numel() == 1 for p in (a, b, c, self.v_threshold))
        return scalar and self.membrane_transform is None and (self.init_membrane is None or not self.training)

    @torch.no_grad()
    def forward_ragged(self, xv: Tensor, starts: Tensor, steps: Tensor, reverse: bool = False,
                       raw: bool = False) -> Tensor:
        """Inference on ragged sequences stored row by row (:func:`~spikenerf.snn.fused.ragged_scan`): the
        spikes ``[N, C]`` that :meth:`forward` gives on the dense ``[T, B, C]`` layout with zero input at the
        missing steps; times the output scale unless ``raw``. No gradient; check :meth:`supports_ragged`."""
        if not self.supports_ragged():
            raise ValueError("forward_ragged needs scalar parameters, no membrane transform and no random "
                             "initial membrane; use forward on a dense [T, B, ...] layout")
        a, b, c = self.charge_coefficients()
        s = ragged_scan(xv, starts, steps, self.spec, a=a, b=b, c=c, vth=self.v_threshold, reverse=reverse,
                        backend="torch" if self.backend == "torch" else "auto")
        scale = None if raw else self.output_scale()
        return s if scale is None else s * scale

    def forward_segments(self, xv: Tensor, starts: Tensor, reverse: bool = False) -> Tensor:
        """Sequences without holes stored row by row (:func:`~spikenerf.snn.fused.segment_scan`), with
        gradients: the spikes ``[N, C]`` (times the output scale) that :meth:`forward` gives on the dense
        layout, read back at the rows. Check :meth:`supports_ragged`."""
        if not self.supports_ragged():
            raise ValueError("forward_segments needs scalar parameters, no membrane transform and no random "
                             "initial membrane; use forward on a dense [T, B, ...] layout")
        a, b, c = self.charge_coefficients()
        s = segment_scan(xv, starts, self.spec, a=a, b=b, c=c, vth=self.v_threshold, reverse=reverse,
                         backend="torch" if self.backend == "torch" else "auto")
        scale = self.output_scale()
        return s if scale is None else s * scale

    def extra_repr(self) -> str:
        sp = self.spec
        return (
            f"code={sp.code}, reset={sp.reset}, v_reset={sp.v_reset:g}, surrogate={sp.surrogate}, "
            f"threshold={self.threshold_mode}, detach_reset={sp.detach_reset}, backend={self.backend}"
        )
