"""Training-time surgery on the voxel grids: progressive up-scaling, optimiser re-pointing, DDP averaging.

- :func:`axis_resolution`: vertices per axis with ``n`` along the longest one (about cubic voxels).
- :func:`progressive_resolution`: the fine grid's vertex count at a fine-stage step (DVGO's schedule).
- :func:`rescale_grids`: re-sample :class:`~.grid.DenseGrid` modules to a new resolution (new Parameters).
- :func:`sync_optimizers`: point optimiser groups at the current Parameters after up-scaling or a resume.
- :func:`average_new_grads`: multi-process training, average the gradients of grids DDP never saw.
- :func:`voxel_view_counts` / :class:`PerVoxelLR`: DVGO's view-count-based learning rate of the coarse
  density grid.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import Parameter

from .grid import DenseGrid, trilinear

__all__ = ["axis_resolution", "progressive_resolution", "rescale_grids", "sync_optimizers", "average_new_grads",
           "voxel_view_counts", "PerVoxelLR"]


def axis_resolution(aabb: Tensor, n: int) -> tuple[int, int, int]:
    """Vertices per axis with ``n`` along the longest one and (about) cubic voxels.

    >>> axis_resolution(torch.tensor([[0.0, 0, 0], [2, 1, 1]]), 9)
    (9, 5, 5)
    """
    size = (aabb[1] - aabb[0]).tolist()
    m = max(size)
    return tuple(max(2, int(round((n - 1) * s / m)) + 1) for s in size)  # type: ignore[return-value]


def progressive_resolution(final: int, fine_step: int, scale_steps: Sequence[int]) -> int:
    """Vertices along the longest axis at fine-stage step ``fine_step``: ``final`` after the last of
    ``scale_steps``, and the voxel count halved for each scale step still to come (DVGO).

    >>> [progressive_resolution(65, s, (10, 20)) for s in (0, 10, 20)]
    [41, 52, 65]
    """
    pending = sum(1 for s in scale_steps if fine_step < s)
    n = (final - 1) * 2.0 ** (-pending / 3.0) + 1
    return max(2, int(round(n)))


def rescale_grids(grids: Iterable[DenseGrid], resolution: tuple[int, int, int]) -> None:
    """Re-sample every grid whose resolution differs to ``resolution`` (each gets new Parameters)."""
    for grid in grids:
        if grid.resolution == tuple(resolution):
            continue
        before = {name: (q, tuple(q.shape)) for name, q in grid.named_parameters()}
        grid.scale_to(resolution)
        for name, q in list(grid.named_parameters()):
            old = before.get(name)
            if old is not None and old[0] is q and old[1] != tuple(q.shape):
                # same leaf with a new shape: autograd keeps the old shape, so re-wrap it
                owner = grid.get_submodule(name.rpartition(".")[0]) if "." in name else grid
                setattr(owner, name.rpartition(".")[2], nn.Parameter(q.detach()))


def sync_optimizers(optimizers: Any, param_groups: Dict[str, List[Parameter]]) -> None:
    """Point each optimiser (nerfstudio's ``Optimizers``, by group name) at the current parameters.

    A replaced parameter keeps its optimiser state when the shapes still match (resume) and drops it
    otherwise (up-scaling: DVGO restarts the moments too).
    """
    opts = getattr(optimizers, "optimizers", {})
    for name, params in param_groups.items():
        opt = opts.get(name)
        if opt is None:
            continue
        cur = opt.param_groups[0]["params"]
        for i, (p, q) in enumerate(zip(cur, params)):
            if p is q:
                continue
            st = opt.state.pop(p, None)
            if st is not None and all(not torch.is_tensor(v) or v.dim() == 0 or v.shape == q.shape
                                      for v in st.values()):
                opt.state[q] = st
            cur[i] = q


@torch.no_grad()
def average_new_grads(params: Iterable[Parameter], known_ids: set[int]) -> None:
    """Average across processes the gradients of ``params`` whose ids are not in ``known_ids``.

    DDP all-reduces only the parameters it saw at construction (``known_ids``), and progressive up-scaling
    replaces the fine grids with new Parameters; without this their gradients would stay per-process and the
    replicas would drift apart. Call it right before the grid optimiser steps (after backward, when DDP's
    own all-reduce is done), on every process in the same order; a missing gradient counts as zero.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for p in params:
        if id(p) in known_ids:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(world)


def voxel_view_counts(views: Iterable[Iterable[Tensor]], resolution: tuple[int, int, int], aabb: Tensor) -> Tensor:
    """DVGO's ``voxel_count_views``: ``[X, Y, Z]`` how many views see each vertex of a grid over ``aabb``.

    ``views`` yields, per view, chunks of the look-up points ``[M, 3]`` of its rays' samples. A view counts
    for a vertex when the trilinear weights its samples put on that vertex sum to more than 1 (DVGO
    back-propagates a grid of ones and counts ``grad > 1``).
    """
    count = torch.zeros(*[int(r) for r in resolution], dtype=torch.float32, device=aabb.device)
    for chunks in views:
        ones = torch.ones(*count.shape, 1, device=aabb.device, requires_grad=True)
        with torch.enable_grad():
            for pts in chunks:
                if pts.shape[0]:
                    trilinear(ones, pts.detach(), aabb).sum().backward()
        if ones.grad is not None:
            count += (ones.grad[..., 0] > 1).float()
    return count


class PerVoxelLR:
    """DVGO's per-voxel learning rate: each optimiser step's update of ``grid`` is scaled per vertex by
    ``count / count.max()`` (views that see the vertex over the most any vertex has), so vertices few views
    constrain move slowly. DVGO applies it in the coarse stage to the density grid only (its Adam scales the
    parameters shaped like the count); :meth:`before` / :meth:`after` wrap the optimiser's ``step``."""

    def __init__(self, grid: DenseGrid, count: Tensor) -> None:
        self.grid = grid
        self.scale = (count / count.max().clamp_min(1.0))[..., None]  # [X, Y, Z, 1]
        self._prev: Tensor | None = None

    def before(self) -> None:
        self._prev = self.grid.grid.detach().clone()

    @torch.no_grad()
    def after(self) -> None:
        prev, self._prev = self._prev, None
        g = self.grid.grid
        if prev is None or prev.shape != g.shape:
            return
        g.copy_(prev + self.scale * (g - prev))
