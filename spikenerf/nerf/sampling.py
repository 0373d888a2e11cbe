"""Where the samples of a ray go: uniform marching in the scene box and the coarse-stage occupancy cache.

:func:`sample_along_rays` is the one place that turns rays into sample positions for the voxel-grid models
(a scene contraction for unbounded captures belongs here); :func:`build_occupancy_cache` turns the coarse
density into the boolean cache that marching skips empty space with.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .grid import Marched, march
from .rendering import density_to_alpha

__all__ = ["sample_along_rays", "build_occupancy_cache"]


def sample_along_rays(origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, near_plane: float,
                      occupancy: Optional[Tensor] = None) -> Marched:
    """Samples every ``step`` (world units) along each ray inside the box ``aabb`` ``[2, 3]`` and, when given,
    the occupancy cache ``[X, Y, Z]``; only the kept ones come back, packed per ray (:func:`~.grid.march`).

    ``origins`` / unit ``dirs`` ``[R, 3]`` -> :class:`~.grid.Marched` with ``t``, ``index``, ``valid``
    ``[R, S']``. The lattice is long enough to cross the box's diagonal.
    """
    diag = float((aabb[1] - aabb[0]).norm())
    num_steps = max(1, int(math.ceil(diag / step)) + 1)
    return march(origins, dirs, aabb, step, num_steps, near_plane, occupancy)


@torch.no_grad()
def build_occupancy_cache(density_raw: Callable[[Tensor], Tensor], aabb: Tensor, resolution: tuple[int, int, int],
                          shift: float, interval: float, threshold: float, chunk: int = 1 << 18) -> Tensor:
    """Boolean occupancy ``[X, Y, Z]``: the vertices whose alpha over ``interval`` (base-voxel units) exceeds
    ``threshold``, dilated by one voxel. ``density_raw`` maps ``[N, 3]`` points to raw density ``[N]``.

    An empty result would blank the scene for good, so then every vertex is kept.
    """
    X, Y, Z = resolution
    lin = [torch.linspace(float(aabb[0, i]), float(aabb[1, i]), r, device=aabb.device)
           for i, r in enumerate((X, Y, Z))]
    xyz = torch.stack(torch.meshgrid(*lin, indexing="ij"), -1).reshape(-1, 3)
    raw = torch.cat([density_raw(c) for c in xyz.split(chunk)])
    alpha = density_to_alpha(raw, shift, interval)
    occ = (alpha > threshold).float().reshape(1, 1, X, Y, Z)
    occ = F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0
    if not bool(occ.any()):
        occ = torch.ones_like(occ)
    return occ
