"""Whole-renderer operation counts and energy, beside the colour net's (``docs/energy.md``).

Per ray, for the SNN and its ANN twin on the same samples:

- **density look-up** at every marched sample (the alpha stage): a trilinear read of the 1-channel density grid,
  8 vertex reads + 8 MACs (the weighted corner sum) + 12 multiplies (the 8 corner weights from the 3
  fractions, sharing the pairwise products), then the density activation and alpha (2 transcendentals,
  1 multiply by the step);
- **feature look-up** at every sample that reaches the colour net: ``8 * C`` vertex reads, ``8 * C`` MACs and
  12 multiplies;
- **colour net**: the first layer (``in_dim * H`` MACs per sample, the papers' convention), then the SNN's
  synaptic ops (``ray_sops``, accumulates) or the twin's hidden + read-out MACs; the sigmoid read-out
  (3 transcendentals per sample);
- **compositing**: per alpha sample the transmittance (``1 - alpha``: 1 add, times ``T``: 1 multiply) and its
  weight (``T * alpha``: 1 multiply); per colour sample the weighted rgb and depth sums (4 MACs) and the
  accumulation (1 add); per ray the background blend (3 MACs, 1 add).

Prices: :mod:`spikenerf.snn.energy` (Horowitz 2014, 45 nm: MAC 4.6 pJ, add 0.9 pJ, multiply 3.7 pJ; a 32-bit
read from the array the grid fits, DRAM 640 pJ per 32 bits for any grid over 1 MB). Transcendentals are
counted but not priced (no entry in the table). Not counted: ray generation, sampling / occupancy tests,
PE(direction), writing the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
from torch import Tensor

from spikenerf.snn.energy import E_AC_PJ, E_MAC_PJ, E_MUL_PJ, memory_read_pj

__all__ = ["RendererShape", "renderer_ray_counts", "renderer_ray_energy_pj", "renderer_energy_metrics",
           "energy_map_pj", "padded_steps"]

VERTICES = 8  # corners of a trilinear cell
WEIGHT_MULS = 12  # 4 pairwise products of two fractions, then 8 products with the third
BYTES_PER_VALUE = 4  # float32 grids


@dataclass(frozen=True)
class RendererShape:
    """What the counts need to know of a model: grid channels and voxels, colour net widths."""

    feature_channels: int
    in_dim: int
    hidden_dim: int
    voxels: int  # voxels of one grid channel (X * Y * Z)
    out_dim: int = 3
    density_channels: int = 1

    @property
    def grid_bytes(self) -> float:
        return float(self.voxels) * (self.feature_channels + self.density_channels) * BYTES_PER_VALUE

    @property
    def ann_macs_per_sample(self) -> int:
        h = self.hidden_dim
        return self.in_dim * h + h * h + h * self.out_dim

    @classmethod
    def of_field(cls, field) -> "RendererShape":
        """From a :class:`~.field.SpikingNeRFField` (its grids and colour-net widths)."""
        res = field.feature_grid.resolution
        return cls(int(field.feature_grid.channels), int(field.in_dim), int(field.hidden_dim),
                   int(res[0]) * int(res[1]) * int(res[2]))


def renderer_ray_counts(density_samples: Tensor, color_samples: Tensor, shape: RendererShape) -> Dict[str, Tensor]:
    """Per-ray operation counts ``[R]`` outside the colour net's hidden layers, from the samples that got an
    alpha (``density_samples`` ``[R]``) and those that reached the colour net (``color_samples`` ``[R]``).

    Keys: ``reads`` (32-bit grid values), ``grid_macs``, ``grid_muls``, ``fc1_macs``, ``composite_macs``,
    ``composite_muls``, ``composite_adds``, ``transcendentals``.
    """
    nd, nc = density_samples.double(), color_samples.double()
    c, rays = shape.feature_channels, (nd > 0).double()
    dc = shape.density_channels
    return {
        "reads": VERTICES * (dc * nd + c * nc),
        "grid_macs": VERTICES * (dc * nd + c * nc),
        "grid_muls": WEIGHT_MULS * (nd + nc) + nd,  # + sigma * step for alpha
        "fc1_macs": nc * shape.in_dim * shape.hidden_dim,
        "composite_macs": 4 * nc + 3 * rays,
        "composite_muls": 2 * nd,
        "composite_adds": nd + nc + rays,
        "transcendentals": 2 * nd + shape.out_dim * nc,
    }


def renderer_ray_energy_pj(counts: Dict[str, Tensor], ray_sops: Tensor, color_samples: Tensor,
                           shape: RendererShape, memory_pj: float | None = None) -> Dict[str, Tensor]:
    """Per-ray energy ``[R]`` in pJ by stage, for the SNN (``snn_*``) and the twin (``ann_*``).

    ``ray_sops`` ``[R]``: the SNN's synaptic ops (hidden and read-out layers). ``memory_pj``: a 32-bit grid
    read (default :func:`~spikenerf.snn.energy.memory_read_pj` of the grids' size). Keys per network:
    ``grid``, ``colour_net``, ``composite``, ``total``; ``memory_pj`` as used.
    """
    e_read = memory_read_pj(shape.grid_bytes) if memory_pj is None else memory_pj
    grid = counts["reads"] * e_read + counts["grid_macs"] * E_MAC_PJ + counts["grid_muls"] * E_MUL_PJ
    comp = counts["composite_macs"] * E_MAC_PJ + counts["composite_muls"] * E_MUL_PJ + counts["composite_adds"] * E_AC_PJ
    snn_net = counts["fc1_macs"] * E_MAC_PJ + ray_sops.double() * E_AC_PJ
    ann_net = color_samples.double() * shape.ann_macs_per_sample * E_MAC_PJ
    out = {"grid": grid, "composite": comp}
    return {**{f"snn_{k}": v for k, v in out.items()}, **{f"ann_{k}": v for k, v in out.items()},
            "snn_colour_net": snn_net, "ann_colour_net": ann_net,
            "snn_total": grid + comp + snn_net, "ann_total": grid + comp + ann_net,
            "memory_pj": torch.full_like(grid, e_read)}


def renderer_energy_metrics(density_samples: Tensor, color_samples: Tensor, ray_sops: Tensor,
                            shape: RendererShape) -> Dict[str, float]:
    """ns-eval metrics of one image from its per-ray counts (each ``[R]`` or ``[H, W, 1]``): the colour net's and
    the whole renderer's energy (uJ per image) for the SNN and its twin, and both reductions
    (``1 - snn / ann``), so the colour net's saving is never read as the renderer's."""
    nd, nc, sops = density_samples.reshape(-1), color_samples.reshape(-1), ray_sops.reshape(-1)
    e = renderer_ray_energy_pj(renderer_ray_counts(nd, nc, shape), sops, nc, shape)
    tot = {k: float(v.sum()) for k, v in e.items() if k != "memory_pj"}
    m = {
        "renderer_snn_energy_uj_per_image": tot["snn_total"] * 1e-6,
        "renderer_ann_energy_uj_per_image": tot["ann_total"] * 1e-6,
        "renderer_grid_energy_uj_per_image": tot["snn_grid"] * 1e-6,
        "renderer_composite_energy_uj_per_image": tot["snn_composite"] * 1e-6,
        "colour_net_snn_energy_uj_per_image": tot["snn_colour_net"] * 1e-6,
        "colour_net_ann_energy_uj_per_image": tot["ann_colour_net"] * 1e-6,
        "renderer_memory_pj_per_read": memory_read_pj(shape.grid_bytes),
    }
    m["colour_net_reduction"] = 1.0 - tot["snn_colour_net"] / tot["ann_colour_net"] if tot["ann_colour_net"] else 0.0
    m["renderer_reduction"] = 1.0 - tot["snn_total"] / tot["ann_total"] if tot["ann_total"] else 0.0
    return m


def energy_map_pj(density_samples: Tensor, color_samples: Tensor, ray_sops: Tensor, shape: RendererShape,
                  whole_renderer: bool = True) -> tuple[Tensor, Tensor]:
    """pJ per pixel of the SNN and the twin, each shaped like the inputs (``[H, W, 1]`` -> ``[H, W]``):
    the whole renderer's (default) or the colour net's alone."""
    hw = color_samples.shape[:2] if color_samples.dim() == 3 else color_samples.shape
    nd, nc, sops = density_samples.reshape(-1), color_samples.reshape(-1), ray_sops.reshape(-1)
    e = renderer_ray_energy_pj(renderer_ray_counts(nd, nc, shape), sops, nc, shape)
    key = "total" if whole_renderer else "colour_net"
    return e[f"snn_{key}"].reshape(hw), e[f"ann_{key}"].reshape(hw)


def padded_steps(mask: Tensor, time_index: Tensor | None) -> Tensor:
    """``[R]`` steps a ray runs under padding: from its first to its last valid sample on the lattice, holes
    included (steps before the first are a LIF at rest, skipped exactly); 0 for a ray without samples."""
    ti = torch.arange(mask.shape[1], device=mask.device).expand_as(mask) if time_index is None else time_index
    last = ti.masked_fill(~mask, -1).amax(1)
    first = ti.masked_fill(~mask, torch.iinfo(ti.dtype).max).amin(1)
    return torch.where(mask.any(1), last - first + 1, torch.zeros_like(last))
