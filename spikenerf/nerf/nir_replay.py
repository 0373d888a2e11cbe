"""Replay an exported colour net (:mod:`~spikenerf.nerf.colour_nir`) in other SNN frameworks, inside the project's
renderer: ``spikenerf-export nir ... --replay norse,snntorch --views N``.

Each framework reads the NIR graph with its own importer and runs it one time step per call; this module only lays
the samples out in time around it (:func:`run_layout`: the project's packing, one sequence per ray) and hooks the
result in place of the field's colour net for a render (:func:`replay_colours`: the models' one seam,
``model.colour_net()``, returns a stand-in for the field), so grids or VM planes, masks and compositing are the
project's own. The voxel-grid presets and SpikingNeRF-T replay through the same code.

How each importer discretises NIR's LIF ``tau dv/dt = (v_leak - v) + r I`` (with the graph's ``dt``):

- Norse (``norse.torch.from_nir(graph, dt=dt)``, ``LIFBoxCell``): ``v <- v + (dt / tau) (v_leak - v + I)``, spike
  on ``v > v_th``, ``v <- v_reset`` (it keeps its own ``v_reset = 0``). It ignores ``r``, which the project's map
  makes 1 for ``decay_input`` neurons (SpikingNeRF); ``r != 1`` (Spik-NeRF, ``decay_input=False``) is refused
  here. The same map as the project's in exact arithmetic; the float rounding differs (``v + k (I - v)`` against
  ``(1 - k) v + k x``).
- snnTorch (``snntorch.import_nir.import_from_nir``, ``Leaky``): ``beta = 1 - dt_s / tau`` with its fixed
  ``dt_s = 1e-4`` (the graph's ``dt`` is not read, hence the exporter's default), ``m <- beta m + I`` against
  a threshold divided by ``r dt_s / tau`` (the input gain moved to the threshold: ``m = v tau / (r dt_s)``),
  reset to 0 (``v_leak`` must be 0). Exact up to rounding when ``dt = 1e-4``; another ``dt`` is refused here.

Both fire on ``v > v_th``, the project on ``h >= V_th``. Run in float64 (the default) the rounding differences stay
far below any threshold gap, so the spikes and colours equal the project's colour net run in float64.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from spikenerf.snn.nir import NIRExportError

from .colour_nir import DEFAULT_DT, time_layout_meta
from .packing import pack_index, scatter_valid

__all__ = ["FRAMEWORKS", "StepNet", "load_replay", "run_layout", "replay_colours", "project_colours"]

FRAMEWORKS = ("norse", "snntorch")
"""Frameworks :func:`load_replay` reads a graph into (the ``test`` extra installs them)."""

StepNet = Callable[[Tensor], Tensor]
"""A replayed graph as a multi-step function: ``[T, B, in_dim]`` -> read-out ``[T, B, 3]``, membranes from 0."""


def _missing(framework: str) -> NIRExportError:
    return NIRExportError(f"--replay {framework}: the package is not installed (pip install {framework}; the "
                          "project's `test` extra has it)")


def _param(graph: Any, attr: str) -> np.ndarray:
    return np.concatenate([np.ravel(getattr(graph.nodes[k], attr)) for k in ("lif1", "lif2")])


def _norse(graph: Any, dtype: torch.dtype) -> StepNet:
    try:
        import norse.torch as norse_torch  # optional peer: only this path needs it
    except ImportError as e:
        raise _missing("norse") from e
    if not np.allclose(_param(graph, "r"), 1.0) or not np.allclose(_param(graph, "v_reset"), 0.0):
        raise NIRExportError("--replay norse: Norse's importer drops r and v_reset; it replays r = 1, v_reset = 0 "
                             "(decay_input LIF, SpikingNeRF's), not this graph")
    net = norse_torch.from_nir(graph, dt=float(graph.metadata["dt"])).to(dtype)

    def run(x: Tensor) -> Tensor:
        state, out = None, []
        for t in range(x.shape[0]):
            y, state = net(x[t], state)
            out.append(y)
        return torch.stack(out) if out else x.new_zeros(0, x.shape[1], 3)
    return run


def _snntorch(graph: Any, dtype: torch.dtype) -> StepNet:
    try:
        import snntorch
        from snntorch.import_nir import import_from_nir  # optional peer: only this path needs it
    except ImportError as e:
        raise _missing("snntorch") from e
    if not math.isclose(float(graph.metadata["dt"]), DEFAULT_DT, rel_tol=1e-12):
        raise NIRExportError(f"--replay snntorch: snnTorch's importer assumes dt = {DEFAULT_DT:g} s; export with "
                             f"--dt {DEFAULT_DT:g}")
    if not np.allclose(_param(graph, "v_leak"), 0.0) or not np.allclose(_param(graph, "v_reset"), 0.0):
        raise NIRExportError("--replay snntorch: snnTorch's importer needs v_leak = v_reset = 0")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight-scaling notes
        net = import_from_nir(copy.deepcopy(graph)).to(dtype)  # it rewrites the graph it is given
    leaky = [m for m in net.modules() if isinstance(m, snntorch.Leaky)]
    for m in leaky:  # its spikes are always float32 ({0, 1}: the cast is exact), the next layer may be float64
        m.register_forward_hook(lambda _m, _i, s: s.to(dtype) if isinstance(s, Tensor) else s)

    def run(x: Tensor) -> Tensor:
        for m in leaky:  # its state lives in the modules; a shape mismatch makes it start from 0 (its own rule)
            m.mem = x.new_zeros(0)
        out = [net(x[t])[0] for t in range(x.shape[0])]
        return torch.stack(out) if out else x.new_zeros(0, x.shape[1], 3)
    return run


def load_replay(framework: str, graph: Any, dtype: torch.dtype = torch.float64) -> StepNet:
    """``graph`` (as ``nir.read`` gives it) loaded by ``framework``'s own NIR importer, run in ``dtype``."""
    loaders = {"norse": _norse, "snntorch": _snntorch}
    if framework not in loaders:
        raise NIRExportError(f"--replay {framework}: not a supported framework; choose from {', '.join(FRAMEWORKS)}")
    return loaders[framework](graph, dtype)


@torch.no_grad()
def run_layout(net: StepNet, x: Tensor, mask: Tensor, layout: Dict[str, Any],
               time_index: Tensor | None = None) -> Tensor:
    """The replayed colour net on the kept samples: ``x`` ``[N, in_dim]`` (row-major order of ``mask`` ``[R, S]``)
    -> read-out ``[N, 3]``. ``ray`` layouts: one sequence per ray (:func:`~.packing.pack_index`: padding holes are
    zero-input steps, ``time_index`` ``[R, S]`` the lattice index of each column); ``repeat``: each sample alone,
    its input repeated ``time_steps`` times, the read-out averaged."""
    if x.shape[0] == 0:
        return x.new_zeros(0, 3)
    if layout["mode"] == "repeat":
        T = int(layout["time_steps"])
        return net(x.unsqueeze(0).expand(T, *x.shape)).mean(0)
    info = pack_index(mask, layout["pack_mode"], bool(layout["flip"]),
                      time_index if layout["pack_mode"] == "padding" else None)
    y = net(scatter_valid(x, info))  # [T, B, 3]
    return y[info.t_idx, info.b_idx]


KeptRGB = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]
"""``(graph inputs [K, in_dim], keep [R, S], time_index [R, S] or None) -> rgb [K, 3]`` of the kept samples."""


class _ColourNet:
    """What ``model.colour_net()`` returns within :func:`replay_colours` / :func:`project_colours`: the field's
    colour entry points, on a ``dtype`` copy of the field, with the kept samples' colours from ``kept_rgb`` (a
    replay) or from the field's own pass (``None``), cast back to the render's dtype. ``color`` is what the
    voxel-grid model calls, ``colour_net_inputs`` then ``color_inputs`` what SpikingNeRF-T's renderer calls; the
    inputs are looked up in ``dtype`` in both."""

    def __init__(self, field: Any, dtype: torch.dtype, kept_rgb: Optional[KeptRGB]) -> None:
        self.field = copy.deepcopy(field).to(dtype)
        self.dtype, self.kept_rgb = dtype, kept_rgb
        self.render_dtype = next(field.parameters()).dtype

    def color(self, xyz: Tensor, dirs: Tensor, mask: Tensor, time_index: Optional[Tensor] = None
              ) -> tuple[Tensor, None]:
        """:meth:`~.field.SpikingNeRFField.color`'s call: ``xyz`` ``[R, S, 3]``, ``dirs`` ``[R, 3]`` -> rgb
        ``[R, S, 3]`` (no op counts)."""
        xyz_d, dirs_d = xyz.to(self.dtype), dirs.to(self.dtype)
        if self.kept_rgb is None:
            rgb, _ = self.field.color(xyz_d, dirs_d, mask, time_index=time_index)
        else:
            r, s = mask.nonzero(as_tuple=True)
            rgb = xyz_d.new_zeros(*mask.shape, 3)
            rgb[r, s] = self.kept_rgb(self.field.colour_net_inputs(xyz_d[r, s], dirs_d[r]), mask, time_index)
        return rgb.to(self.render_dtype), None

    def colour_net_inputs(self, xyz: Tensor, dirs: Tensor) -> Tensor:
        """SpikingNeRF-T's inputs ``[K, in_dim]`` of the kept samples, looked up in ``dtype``."""
        return self.field.colour_net_inputs(xyz.to(self.dtype), dirs.to(self.dtype))

    def color_inputs(self, inputs: Tensor, keep: Tensor) -> tuple[Tensor, None]:
        """SpikingNeRF-T's call: rgb ``[K, 3]`` of the kept samples from their inputs (condensed time)."""
        x = inputs.to(self.dtype)
        rgb = self.field.color_inputs(x, keep)[0] if self.kept_rgb is None else self.kept_rgb(x, keep, None)
        return rgb.to(self.render_dtype), None


@contextlib.contextmanager
def _swapped(model: Any, net: _ColourNet) -> Iterator[None]:
    """Within the block, ``model.colour_net()`` (the seam of both the voxel-grid and SpikingNeRF-T's models)
    returns ``net``."""
    model.colour_net = lambda: net
    try:
        yield
    finally:
        del model.colour_net  # the class's method again


def replay_colours(model: Any, net: StepNet, dtype: torch.dtype = torch.float64):
    """Context manager: renders of ``model`` take their sample colours from the replayed ``net``, fed with the
    project's own inputs (the field's ``colour_net_inputs``: feature grid and view encoding, or TensoRF's 150,
    looked up in ``dtype``) and time layout."""
    layout = time_layout_meta(model.field)

    def kept_rgb(x: Tensor, keep: Tensor, time_index: Optional[Tensor]) -> Tensor:
        return torch.sigmoid(run_layout(net, x, keep, layout, time_index))
    return _swapped(model, _ColourNet(model.field, dtype, kept_rgb))


def project_colours(model: Any, dtype: torch.dtype = torch.float64):
    """Context manager: the project's own colour net (the field's ``color`` / ``color_inputs``) run in ``dtype``
    (float64: the reference the replays are compared with)."""
    return _swapped(model, _ColourNet(model.field, dtype, None))
