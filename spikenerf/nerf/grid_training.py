"""Training-time surgery on the voxel grids: progressive up-scaling, optimiser re-pointing, DDP averaging, and
the backbone-independent parts of a grid model's training schedule.

- :class:`GridSchedule`: when the grids change (stage switch, up-scales, cache refreshes); no tensors.
- :class:`OccupancyCache`: a model's boolean cache buffer with its host-side flag, its version, and the
  in-cache pixel mask handed to the data manager when the cache changed.
- :func:`hook_grid_optimizer`: the grid optimiser's step hooks (DDP averaging of new grids, per-voxel lr).
- :func:`axis_resolution`: vertices per axis with ``n`` along the longest one (about cubic voxels).
- :func:`progressive_resolution`: the fine grid's vertex count at a fine-stage step (DVGO's schedule).
- :func:`rescale_grids`: re-sample :class:`~.grid.DenseGrid` modules to a new resolution (new Parameters).
- :func:`sync_optimizers`: point optimiser groups at the current Parameters after up-scaling or a resume.
- :func:`average_new_grads`: multi-process training, average the gradients of grids DDP never saw.
- :func:`voxel_view_counts` / :class:`PerVoxelLR`: DVGO's view-count-based learning rate of the coarse
  density grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import Parameter

from .grid import DenseGrid, trilinear

__all__ = ["axis_resolution", "progressive_resolution", "rescale_grids", "sync_optimizers", "average_new_grads",
           "voxel_view_counts", "PerVoxelLR", "GridSchedule", "OccupancyCache", "hook_grid_optimizer"]

RayHits = Callable[[Tensor, Tensor], Tensor]
"""``(origins, unit dirs) [R, 3] -> [R]`` bool: the ray has a sample in the cache."""


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


@dataclass(frozen=True)
class GridSchedule:
    """When a coarse-to-fine grid model changes its grids (DVGO's timetable), from the global step alone.

    Steps ``< coarse_steps`` are the coarse stage; the fine stage's vertex count along the longest axis reaches
    ``final_resolution`` after the last of ``scale_steps`` (fine-stage steps, :func:`progressive_resolution`).
    The cache is built when the fine stage starts and refreshed every ``refresh_every`` fine steps (0: never)
    and, with ``refresh_on_upscale``, at every up-scale. It holds no tensors, so a backbone with another
    resolution rule (TensoRF's log-spaced voxel counts) overrides :meth:`resolution_at` and keeps the rest.
    """

    coarse_steps: int
    scale_steps: tuple[int, ...]
    final_resolution: int
    refresh_every: int = 0
    refresh_on_upscale: bool = True

    def __post_init__(self) -> None:
        if self.coarse_steps < 0:
            raise ValueError("coarse_steps must be >= 0")
        if list(self.scale_steps) != sorted(self.scale_steps):
            raise ValueError(f"pg_scale_steps must be increasing, got {self.scale_steps}")

    def in_fine_stage(self, step: int) -> bool:
        return step >= self.coarse_steps

    def resolution_at(self, step: int) -> int:
        """Fine vertices along the longest axis at global step ``step``."""
        return progressive_resolution(self.final_resolution, step - self.coarse_steps, self.scale_steps)

    def scales_done(self, step: int) -> int:
        """Up-scalings of the fine grids before global step ``step``."""
        return sum(1 for s in self.scale_steps if step - self.coarse_steps >= s)

    def builds_cache(self, step: int, cache_ready: bool) -> bool:
        """The coarse stage is over and its cache not built yet (no coarse stage: no cache)."""
        return step >= self.coarse_steps and not cache_ready and self.coarse_steps > 0

    def refreshes_cache(self, step: int, scaled: bool) -> bool:
        """A fine step after the first that up-scaled (``scaled``) or falls on the refresh period."""
        fine_step = step - self.coarse_steps
        return step > self.coarse_steps and ((scaled and self.refresh_on_upscale) or (
            self.refresh_every > 0 and fine_step % self.refresh_every == 0))


class OccupancyCache:
    """A boolean cache ``[X, Y, Z]`` kept as buffers of its owner (so checkpoints name them there), with the
    host-side copy of its ready flag (no host-device sync per step) and a version that counts its changes.

    ``owner.<name>`` is the cache and ``owner.<name>_ready`` the saved flag. Register :meth:`take_shape` as the
    owner's load-state-dict pre-hook and call :meth:`restored` after a load. :meth:`update_ray_mask` hands a
    data manager the pixels whose rays cross the cache (DVGO's ``in_maskcache`` sampler) once per version.
    """

    def __init__(self, owner: nn.Module, shape: Sequence[int], name: str = "occupancy") -> None:
        self.owner, self.name = owner, name
        owner.register_buffer(name, torch.ones(*shape, dtype=torch.bool))
        owner.register_buffer(name + "_ready", torch.tensor(False))
        self.ready = False
        self.version, self._mask_version = 0, 0  # the cache's changes, the one the ray mask was built on

    @property
    def grid(self) -> Tensor:
        return getattr(self.owner, self.name)

    def set(self, grid: Tensor) -> None:
        """Replace the cache (any shape) and mark it built."""
        setattr(self.owner, self.name, grid)
        getattr(self.owner, self.name + "_ready").fill_(True)
        self.ready = True
        self.version += 1

    def take_shape(self, state_dict: Dict[str, Tensor], prefix: str, *args: Any) -> None:
        """Load pre-hook: take the checkpoint's cache shape (a tightened or up-scaled grid)."""
        occ = state_dict.get(prefix + self.name)
        if occ is not None and tuple(occ.shape) != tuple(self.grid.shape):
            setattr(self.owner, self.name, torch.ones(occ.shape, dtype=torch.bool, device=self.grid.device))

    def restored(self) -> None:
        """After a load: the flag from the buffer, and a new version (the ray mask is rebuilt from it)."""
        self.ready = bool(getattr(self.owner, self.name + "_ready"))
        self.version += 1

    @torch.no_grad()
    def rays_hit(self, hits: RayHits, origins: Tensor, dirs: Tensor, chunk: int = 1 << 16) -> Tensor:
        """``[R]`` bool: ``hits`` over rays ``[R, 3]`` in chunks (directions need not be unit); every ray
        before the cache is built."""
        if not self.ready:
            return torch.ones(origins.shape[0], dtype=torch.bool, device=origins.device)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        found = [hits(o, d) for o, d in zip(origins.split(chunk), dirs.split(chunk))]
        return torch.cat(found) if found else origins.new_zeros(0, dtype=torch.bool)

    def pixel_mask(self, hits: RayHits, cameras: Any) -> Optional[Tensor]:
        """``[N, H, W, 1]`` bool: the pixels of ``cameras`` (nerfstudio ``Cameras``) whose ray crosses the cache;
        None when the cameras differ in size (the pixel sampler's mask is one tensor)."""
        if len({int(h) for h in cameras.height.flatten()}) != 1 or len({int(w) for w in cameras.width.flatten()}) != 1:
            return None
        device, masks = self.grid.device, []
        for i in range(len(cameras)):
            rays = cameras.generate_rays(camera_indices=i)
            hw = rays.origins.shape[:2]
            o, d = rays.origins.reshape(-1, 3).to(device), rays.directions.reshape(-1, 3).to(device)
            masks.append(self.rays_hit(hits, o, d).reshape(*hw, 1))
        return torch.stack(masks)

    def update_ray_mask(self, hits: RayHits, datamanager: Any) -> None:
        """Hand the data manager (``set_ray_mask``) the in-cache pixels of its training cameras when the cache
        changed since the last call."""
        if self._mask_version == self.version:
            return
        self._mask_version = self.version
        dataset = getattr(datamanager, "train_dataset", None)
        if dataset is None or not hasattr(datamanager, "set_ray_mask"):
            return
        mask = self.pixel_mask(hits, dataset.cameras)
        if mask is not None:
            datamanager.set_ray_mask(mask)


def hook_grid_optimizer(optimizer: torch.optim.Optimizer, grids: Callable[[], Iterable[Parameter]],
                        known_ids: set[int], pervoxel: Callable[[], Optional[PerVoxelLR]]) -> None:
    """Wrap the grid optimiser's step: first :func:`average_new_grads` of ``grids()`` (the current grid
    Parameters; ``known_ids`` those DDP registered), then the per-voxel learning rate ``pervoxel()`` returns
    for this step (None: plain steps)."""
    optimizer.register_step_pre_hook(lambda *_: average_new_grads(grids(), known_ids))

    def pre(*_: Any) -> None:
        lr = pervoxel()
        if lr is not None:
            lr.before()

    def post(*_: Any) -> None:
        lr = pervoxel()
        if lr is not None:
            lr.after()

    optimizer.register_step_pre_hook(pre)
    optimizer.register_step_post_hook(post)
