"""One neuron of the core -> one NIR neuron node (``pip install nir``), shared by the NeRF and vision exporters.

Every neuron of the core charges as ``h_t = a v_{t-1} + b x_t + c`` (:mod:`spikenerf.snn.scan`), fires a binary
spike on ``h_t >= V_th`` and, with a hard reset, sets ``v_t = v_reset``. NIR's LIF is continuous,
``tau dv/dt = (v_leak - v) + r I``; its forward-Euler step with the graph's time step ``dt`` is

    v_t = (1 - dt / tau) v_{t-1} + (dt r / tau) I_t + (dt / tau) v_leak,

which is the core's charge exactly when

    tau = dt / (1 - a),   r = b / (1 - a),   v_leak = c / (1 - a)

(for :class:`~spikenerf.snn.LIFNode`: ``tau = tau_steps * dt``, ``r = 1`` with ``decay_input`` else
``tau_steps``, ``v_leak = v_reset``). ``a = 1`` (no leak) is NIR's IF, ``v_t = v_{t-1} + dt r I_t``: ``r = b / dt``.
NIR fires on ``v > v_threshold``, the scan on ``h >= V_th``: they differ only when the membrane lands exactly on
the threshold.

What has no NIR node is refused with :class:`NIRExportError`, naming the feature: soft reset (NIR's neurons
reset to ``v_reset``), spike codes other than binary, spike scales (amplitudes), membrane transforms (MPBN / MPR)
and a constant charge without leak. A learned ``tau`` (PLIF) or threshold is a constant once trained and is
written as its current value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from .neurons.base import BaseNode

try:  # optional: only the exporters need it
    import nir
except ImportError:  # pragma: no cover - depends on the environment
    nir = None

__all__ = ["NIRExportError", "need_nir", "lif_map", "neuron_to_nir", "check_exportable"]


class NIRExportError(ValueError):
    """The network uses a feature NIR export does not cover (the CLIs print it, exit 2)."""


def need_nir() -> None:
    """Raise :class:`NIRExportError` when the ``nir`` package is missing."""
    if nir is None:
        raise NIRExportError("NIR export needs the `nir` package: pip install nir")


def _scalar(v: Tensor | float) -> float:
    return float(v.detach().double().item()) if isinstance(v, Tensor) else float(v)


def check_exportable(node: BaseNode, name: str, avoid: str = "") -> None:
    """Refuse (one line, the feature named, then ``avoid``: the preset or flag that avoids it) what NIR's
    LIF / IF cannot express."""
    tail = f"; {avoid}" if avoid else ""
    sp = node.spec
    if sp.code != "binary":
        raise NIRExportError(f"NIR export: {name} emits {sp.code} spikes; NIR neurons emit binary spikes{tail}")
    if sp.reset != "hard":
        raise NIRExportError(f"NIR export: {name} uses a soft reset (subtracting V_th); NIR's LIF / IF reset to "
                             f"v_reset, so only hard-reset networks are exported{tail}")
    if node.membrane_transform is not None:
        raise NIRExportError(f"NIR export: {name} keeps a membrane transform (MPBN / MPR); NIR has no such node")
    if node.output_scale() is not None:
        raise NIRExportError(f"NIR export: {name} scales its spikes (an amplitude); NIR spikes are unscaled")


def lif_map(node: BaseNode, dt: float) -> dict[str, float]:
    """The NIR charge parameters of ``node`` for the time step ``dt`` (see the module docstring): ``tau``, ``r``,
    ``v_leak`` (LIF, ``a < 1``) or ``r`` alone (IF, ``a = 1``), ``v_reset``, and the core's ``a``, ``b``, ``c``.
    Scalars: every neuron of the core charges layer-wise."""
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    a, b, c = (_scalar(v) for v in node.charge_coefficients())
    out = {"a": a, "b": b, "c": c, "v_reset": float(node.spec.v_reset)}
    if a == 1.0:
        if c != 0.0:
            raise NIRExportError("NIR export: a constant charge without leak has no NIR node (NIR's IF has none)")
        out["r"] = b / dt
    else:
        out.update(tau=dt / (1.0 - a), r=b / (1.0 - a), v_leak=c / (1.0 - a))
    return out


def neuron_to_nir(node: BaseNode, name: str, shape: tuple[int, ...], dt: float = 1.0, avoid: str = "",
                  v_threshold: np.ndarray | None = None, dtype: Any = np.float64) -> Any:
    """The NIR ``LIF`` (or ``IF``) node of ``node`` over neurons of ``shape`` (NIR neuron parameters have the
    layer's shape), after :func:`check_exportable`. ``v_threshold``: per-neuron thresholds of ``shape`` (default:
    the node's layer-wise one). float64 parameters keep the map exact to the core's float32 coefficients."""
    need_nir()
    check_exportable(node, name, avoid)
    p = lif_map(node, dt)
    full = lambda v: np.full(shape, v, dtype=dtype)  # noqa: E731
    if v_threshold is None:
        vth = node.v_threshold.detach()
        if vth.numel() != 1:
            raise NIRExportError(f"NIR export: {name} has per-channel thresholds; pass them as v_threshold")
        v_threshold = full(_scalar(vth))
    vth = np.asarray(v_threshold, dtype=dtype)
    if "tau" not in p:
        return nir.IF(r=full(p["r"]), v_threshold=vth, v_reset=full(p["v_reset"]))
    return nir.LIF(tau=full(p["tau"]), r=full(p["r"]), v_leak=full(p["v_leak"]), v_threshold=vth,
                   v_reset=full(p["v_reset"]))
