"""Where the samples of a ray go, and the occupancy cache that skips empty space (DVGO's rules).

- :func:`sample_along_rays`: the one place that turns rays into sample positions for the voxel-grid models,
  uniform steps in a box (bounded scenes) or the contracted lattice of :mod:`~.contraction` (real captures).
- :func:`mask_cache`: DVGO's ``MaskGrid`` rule for the coarse-to-fine cache (max-pooled coarse density,
  alpha over one coarse voxel, kept where ``alpha >= 1e-3``).
- :func:`refresh_occupancy`: the fine stage's refresh (old cache AND max-pooled fine alpha above the fine
  alpha threshold), at every up-scale and every ``occupancy_refresh_every`` steps.
- :func:`coarse_geometry_box`: DVGO's ``compute_bbox_by_coarse_geo``, the box the fine grids span.
- :func:`render_in_groups`: inference over groups of rays with similar sample counts (less padding per step).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .grid import Marched, march, march_contracted, occupied
from .rendering import density_to_alpha

__all__ = ["sample_along_rays", "grid_vertices", "vertex_alpha", "mask_cache", "refresh_occupancy",
           "coarse_geometry_box", "render_in_groups"]

DensityFn = Callable[[Tensor], Tensor]


def sample_along_rays(origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, near_plane: float,
                      occupancy: Optional[Tensor] = None, bg_len: Optional[float] = None) -> Marched:
    """Samples every ``step`` (world units) along each ray, only the kept ones, packed per ray.

    Bounded (``bg_len`` None): inside the box ``aabb`` ``[2, 3]`` and, when given, the occupancy cache
    ``[X, Y, Z]`` over it (:func:`~.grid.march`); a sample outside the box is dropped, never read as density 0.
    Unbounded: ``aabb`` is the inner box of the contraction and the cache spans the contracted box
    (:func:`~.grid.march_contracted`). ``origins`` / unit ``dirs`` ``[R, 3]`` -> :class:`~.grid.Marched`
    with ``t``, ``index``, ``valid`` ``[R, S']``.
    """
    if bg_len is not None:
        return march_contracted(origins, dirs, aabb, bg_len, step, near_plane, occupancy)
    diag = float((aabb[1] - aabb[0]).norm())
    num_steps = max(1, int(math.ceil(diag / step)) + 1)
    return march(origins, dirs, aabb, step, num_steps, near_plane, occupancy)


def grid_vertices(aabb: Tensor, resolution: tuple[int, int, int]) -> Tensor:
    """``[X * Y * Z, 3]`` positions of the vertices of a grid over ``aabb`` (x slowest, as ``[X, Y, Z]``)."""
    lin = [torch.linspace(float(aabb[0, i]), float(aabb[1, i]), r, device=aabb.device)
           for i, r in enumerate(resolution)]
    return torch.stack(torch.meshgrid(*lin, indexing="ij"), -1).reshape(-1, 3)


@torch.no_grad()
def vertex_alpha(density_raw: DensityFn, aabb: Tensor, resolution: tuple[int, int, int], shift: float,
                 interval: float, pool_density: bool = False, chunk: int = 1 << 18) -> Tensor:
    """``[X, Y, Z]`` alpha over ``interval`` (base-voxel units) at the grid vertices; with ``pool_density`` the
    raw density is max-pooled over 3x3x3 vertices first (DVGO's ``MaskGrid``)."""
    xyz = grid_vertices(aabb, resolution)
    raw = torch.cat([density_raw(c) for c in xyz.split(chunk)]).reshape(1, 1, *resolution)
    if pool_density:
        raw = F.max_pool3d(raw, 3, stride=1, padding=1)
    return density_to_alpha(raw[0, 0], shift, interval)


def mask_cache(density_raw: DensityFn, aabb: Tensor, resolution: tuple[int, int, int], shift: float,
               threshold: float = 1e-3) -> Tensor:
    """DVGO's ``MaskGrid`` rule: bool ``[X, Y, Z]``, True where the alpha of the 3x3x3 max-pooled raw density
    over one voxel (interval 1 in base-voxel units) is ``>= threshold``. Never empty (all True instead: an
    empty cache would blank the scene for good)."""
    occ = vertex_alpha(density_raw, aabb, resolution, shift, 1.0, pool_density=True) >= threshold
    return occ if bool(occ.any()) else torch.ones_like(occ)


def refresh_occupancy(cache: Tensor, cache_box: Tensor, density_raw: DensityFn, aabb: Tensor,
                      resolution: tuple[int, int, int], shift: float, interval: float, threshold: float) -> Tensor:
    """The fine stage's cache at ``resolution`` over ``aabb``: the old ``cache`` (over ``cache_box``, nearest
    vertex) AND the 3x3x3 max-pooled alpha of the fine density over one fine voxel (``interval`` base-voxel
    units) ``> threshold`` (DVGO's ``scale_volume_grid`` / ``update_occupancy_cache``)."""
    xyz = grid_vertices(aabb, resolution)
    old = occupied(cache, xyz, cache_box.to(xyz)).reshape(resolution)
    alpha = vertex_alpha(density_raw, aabb, resolution, shift, interval)
    alpha = F.max_pool3d(alpha[None, None], 3, stride=1, padding=1)[0, 0]
    occ = old & (alpha > threshold)
    return occ if bool(occ.any()) else old


def coarse_geometry_box(density_raw: DensityFn, aabb: Tensor, resolution: tuple[int, int, int], shift: float,
                        threshold: float = 1e-3, scale: float = 1.05) -> Tensor:
    """DVGO's ``compute_bbox_by_coarse_geo``: ``[2, 3]`` box of the vertices whose alpha over one coarse voxel
    exceeds ``threshold``, scaled by ``scale`` about its centre and clipped to ``aabb``; ``aabb`` itself when
    no vertex passes."""
    xyz = grid_vertices(aabb, resolution)
    alpha = vertex_alpha(density_raw, aabb, resolution, shift, 1.0).reshape(-1)
    active = xyz[alpha > threshold]
    if active.shape[0] == 0:
        return aabb.clone()
    lo, hi = active.amin(0), active.amax(0)
    c, h = (lo + hi) * 0.5, (hi - lo) * 0.5 * scale
    h = torch.maximum(h, (aabb[1] - aabb[0]) / (torch.tensor(resolution, device=aabb.device) - 1))  # >= 1 voxel
    return torch.stack([torch.maximum(c - h, aabb[0]), torch.minimum(c + h, aabb[1])])


def render_in_groups(render: Callable[[Tensor, Marched], Dict[str, Tensor]], marched: Marched,
                     groups: int) -> Dict[str, Tensor]:
    """The outputs ``[R, k]`` of rays ``[R]`` rendered in ``groups`` groups of similar sample counts (sorted by
    count), each cut to its own longest ray instead of the longest of all. ``render(rays, samples)`` gets a
    group's ray indices ``[R_g]`` and samples ``[R_g, S_g]``; the outputs come back in the rays' order."""
    counts, order = marched.valid.sum(1).sort()
    parts, end = [], 0
    for g in order.tensor_split(groups):
        end += g.numel()
        width = max(1, int(counts[end - 1]))  # the group's longest ray
        parts.append(render(g, Marched(marched.t[g, :width], marched.index[g, :width], marched.valid[g, :width])))
    out: Dict[str, Tensor] = {}
    for k in parts[0]:
        v = torch.cat([p[k] for p in parts])
        out[k] = torch.empty_like(v).index_copy_(0, order, v)  # back to the rays' order
    return out
