"""DVGO's coarse-to-fine training of the voxel-grid model: what changes at each training step, and its options.

:class:`~.model.SpikingNeRFModel` owns one :class:`CoarseToFine` and hands it every step (:meth:`CoarseToFine.
set_step`, from the training callback of :meth:`CoarseToFine.training_callbacks`); the model only renders, with
the grids and cache this leaves it:

- coarse stage (``step < coarse_steps``): optionally DVGO's per-voxel learning rate by view count;
- its end: the occupancy cache from the coarse density (DVGO's ``MaskGrid``) and, bounded scenes, the fine box
  tightened around the coarse geometry;
- fine stage: progressive up-scaling with the activation shift's decay, cache refreshes at every up-scale and
  every ``occupancy_refresh_every`` steps, the in-cache ray mask handed to the data manager.

The timetable (:class:`~.grid_training.GridSchedule`), the cache's bookkeeping and ray mask
(:class:`~.grid_training.OccupancyCache`) and the grid optimiser's hooks (:func:`~.grid_training.
hook_grid_optimizer`) are not DVGO's own: another backbone (TensoRF's up-sampling and alpha mask) reuses them
with its own resolution rule and mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation

from .grid import DenseGrid, Marched, occupied
from .grid_training import (GridSchedule, OccupancyCache, PerVoxelLR, axis_resolution, hook_grid_optimizer,
                            rescale_grids, sync_optimizers, voxel_view_counts)
from .sampling import coarse_geometry_box, grid_vertices, mask_cache, refresh_occupancy

__all__ = ["CoarseToFineConfig", "CoarseToFine", "GridModel"]


@dataclass
class CoarseToFineConfig:
    """The coarse-to-fine options of a grid model's config (inherited: ``--pipeline.model.<name>``)."""

    coarse_steps: int = 300
    """Training steps of the coarse stage; the fine stage starts after them."""
    coarse_resolution: int = 48
    """Coarse grid vertices along the longest scene-box axis."""
    fine_resolution: int = 96
    """Final fine grid vertices along the longest axis (reached after the last ``pg_scale_steps``)."""
    pg_scale_steps: Tuple[int, ...] = (200, 400)
    """Fine-stage steps at which the fine grids are up-scaled (voxel count x2 each time, DVGO)."""
    occupancy_threshold: float = 1e-3
    """DVGO's ``MaskGrid`` rule: a vertex is in the occupancy cache when the alpha over one coarse voxel of
    the 3x3x3 max-pooled coarse density is at least this."""
    occupancy_refresh_every: int = 1000
    """Fine stage: every this many steps (and at every up-scale) the cache is ANDed with the max-pooled fine
    alpha over one voxel ``> alpha_threshold`` (DVGO); 0 turns the periodic refresh off."""
    in_cache_rays: bool = False
    """Fine stage, bounded scenes: draw training rays only from the pixels whose ray crosses the occupancy cache
    (DVGO's ``in_maskcache`` ray sampler); the rest render the background whatever the grids hold. Recomputed
    at every cache refresh (so a resumed run draws from the same pixels). Unbounded scenes: every ray reaches
    the contracted background, so nothing is dropped there. Off by default: on the bundled scene it adds 0.45 dB
    at 1,200 steps but each fine step costs 1.4x (more samples per ray), and at equal training time it gains
    nothing on this CPU (docs/nerf.md)."""
    refresh_on_upscale: bool = True
    """Refresh the cache at every up-scale too (DVGO's ``scale_volume_grid``)."""
    pervoxel_lr: bool = False
    """Coarse stage: DVGO's view-count-based learning rate on the coarse density grid (each vertex's update
    scaled by the number of training views whose rays see it over the largest such number; counted once from
    the training cameras when the coarse stage starts, every ``pervoxel_lr_downrate``-th pixel)."""
    pervoxel_lr_downrate: int = 1
    tighten_fine_box: bool = True
    """Bounded scenes: the fine grids span the box of the coarse geometry (DVGO's
    ``compute_bbox_by_coarse_geo``: coarse alpha over one voxel ``> bbox_threshold``, scaled by
    ``bbox_scale``) instead of the data parser's whole box. Unbounded scenes keep the contracted box."""
    bbox_threshold: float = 1e-3
    bbox_scale: float = 1.05
    decay_after_scale: float = 0.0
    """The fine density's activation shift drops by this after each up-scale (DVGO: 1.0). Off by default: on
    the bundled scene's 1,200-step schedule DVGO's 1.0 cost 0.5 dB (25.62 vs 26.13 dB, docs/nerf.md) - with
    200-400 steps between up-scales the grids do not recover from each drop; DVGO has 1,000."""


class GridModel(Protocol):
    """What :class:`CoarseToFine` reads and changes on its model (:class:`~.model.SpikingNeRFModel`)."""

    config: Any  # a CoarseToFineConfig with ``alpha_threshold``
    step: int
    unbounded: bool
    aabb: Tensor
    coarse_res: tuple[int, int, int]
    coarse_shift: float
    fine_shift0: float
    coarse_density: DenseGrid
    field: Any  # density_grid, feature_grid, shift, density_raw, set_box
    coarse_box: Tensor
    fine_box: Tensor
    fine_voxel_base: float

    def fine_voxel(self) -> float: ...
    def sample(self, origins: Tensor, dirs: Tensor, fine: bool) -> tuple[Marched, float]: ...
    def lookup_points(self, origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor: ...
    def get_param_groups(self) -> Dict[str, List[Parameter]]: ...
    def _cache_extents(self) -> None: ...


class CoarseToFine:
    """DVGO's coarse-to-fine grid training of ``model``: the schedule, the occupancy cache (``model.occupancy``,
    ``model.occupancy_ready``: checkpoint keys of the model) and its ray mask, the per-voxel learning rate.

    Create it in ``populate_modules`` after the coarse grids (the fine field takes :meth:`fine_resolution_at`
    ``(0)``), and call :meth:`mark_ddp_params` once every parameter exists.
    """

    def __init__(self, model: GridModel) -> None:
        cfg = model.config
        if cfg.coarse_resolution < 2 or cfg.fine_resolution < 2:
            raise ValueError("coarse_resolution and fine_resolution need at least 2 vertices per axis")
        self.model = model
        self.schedule = GridSchedule(cfg.coarse_steps, tuple(cfg.pg_scale_steps), cfg.fine_resolution,
                                     cfg.occupancy_refresh_every, cfg.refresh_on_upscale)
        # the cache spans the fine box at the fine resolution (its shape follows the checkpoint on load)
        self.cache = OccupancyCache(model, model.coarse_res)  # type: ignore[arg-type]
        self.pervoxel: Optional[PerVoxelLR] = None
        self._pervoxel_counted = False
        self.known_ids: set[int] = set()

    def mark_ddp_params(self, params: Iterator[Parameter]) -> None:
        """The parameters a DDP wrapper registers (nerfstudio wraps the model right after ``populate_modules``);
        grids that progressive up-scaling creates later are averaged across processes by the optimiser hook."""
        self.known_ids = {id(p) for p in params}

    # -- schedule ---------------------------------------------------------------------------------
    def fine_resolution_at(self, step: int) -> tuple[int, int, int]:
        """Fine grid resolution at a global training step (DVGO: voxel count halves per pending scale)."""
        m = self.model
        box = m.field.density_grid.aabb if hasattr(m, "field") else m.aabb
        return axis_resolution(box, self.schedule.resolution_at(step))

    def rescale_fine(self, step: int, optimizers: Any = None) -> bool:
        """Fine grids at the resolution of ``step`` and the activation shift after its up-scalings; True when
        the grids changed."""
        f = self.model.field
        before = f.density_grid.resolution
        rescale_grids((f.density_grid, f.feature_grid), self.fine_resolution_at(step))
        f.shift = self.model.fine_shift0 - self.model.config.decay_after_scale * self.schedule.scales_done(step)
        if optimizers is not None:
            sync_optimizers(optimizers, self.model.get_param_groups())
        return f.density_grid.resolution != before

    def set_step(self, step: int, optimizers: Any = None) -> None:
        """Bring the grids and the cache to training step ``step`` (nerfstudio's ``Optimizers`` follow them)."""
        m, sched = self.model, self.schedule
        if sched.builds_cache(step, self.cache.ready):
            self.build_occupancy(step)
            if optimizers is not None:
                sync_optimizers(optimizers, m.get_param_groups())
        m.step = int(step)
        shift_before = m.field.shift
        scaled = self.rescale_fine(step, optimizers)
        if self.cache.ready and sched.refreshes_cache(step, scaled):
            # DVGO refreshes with the shift of before the decay that follows the up-scale
            self.refresh_occupancy(shift_before if scaled else None)

    def update_to_step(self, step: int) -> None:
        """Checkpoint loading: grids take the resolution they had at ``step`` before the state loads (the load
        itself then takes the checkpoint's shapes, e.g. of a tightened fine box)."""
        self.model.step = int(step)
        self.rescale_fine(step)

    # -- occupancy cache and ray mask -----------------------------------------------------------------
    def _coarse_raw(self, xyz: Tensor) -> Tensor:
        return self.model.coarse_density(xyz)[..., 0]

    def build_occupancy(self, step: Optional[int] = None) -> None:
        """End of the coarse stage: the coarse ``MaskGrid`` cache, the tightened fine box (bounded scenes) and
        the cache on the fine grid's vertices (nearest coarse vertex)."""
        m, cfg = self.model, self.model.config
        step = cfg.coarse_steps if step is None else step
        coarse = mask_cache(self._coarse_raw, m.coarse_box, m.coarse_res, m.coarse_shift, cfg.occupancy_threshold)
        if cfg.tighten_fine_box and not m.unbounded:
            box = coarse_geometry_box(self._coarse_raw, m.coarse_box, m.coarse_res, m.coarse_shift,
                                      cfg.bbox_threshold, cfg.bbox_scale)
            m.field.set_box(box, self.fine_resolution_at(step))  # the fine grids are still all zero here
            m._cache_extents()
        res = m.field.density_grid.resolution
        xyz = grid_vertices(m.fine_box, res)
        from_coarse = torch.zeros(res, dtype=torch.bool, device=xyz.device)
        inside = ((xyz >= m.coarse_box[0]) & (xyz <= m.coarse_box[1])).all(-1).reshape(res)
        from_coarse[inside] = occupied(coarse, xyz.reshape(*res, 3)[inside], m.coarse_box)
        self.cache.set(from_coarse if bool(from_coarse.any()) else torch.ones_like(from_coarse))

    def refresh_occupancy(self, shift: Optional[float] = None) -> None:
        """Fine stage: cache at the fine grid's vertices AND max-pooled fine alpha over one voxel > threshold."""
        m = self.model
        self.cache.set(refresh_occupancy(
            self.cache.grid, m.fine_box, m.field.density_raw, m.fine_box, m.field.density_grid.resolution,
            m.field.shift if shift is None else shift, m.fine_voxel() / m.fine_voxel_base,
            m.config.alpha_threshold))

    def _hits(self, origins: Tensor, dirs: Tensor) -> Tensor:
        return self.model.sample(origins, dirs, fine=True)[0].valid.any(1)

    def rays_in_cache(self, origins: Tensor, dirs: Tensor, chunk: int = 1 << 16) -> Tensor:
        """``[R]`` bool: the ray ``origins`` / ``dirs`` ``[R, 3]`` has a fine-stage sample in the occupancy cache
        (DVGO's ``in_maskcache`` rule; every ray before the cache exists)."""
        return self.cache.rays_hit(self._hits, origins, dirs, chunk)

    def pixel_mask(self, cameras: Any) -> Optional[Tensor]:
        """``[N, H, W, 1]`` bool: the pixels of ``cameras`` whose ray crosses the cache (or None)."""
        return self.cache.pixel_mask(self._hits, cameras)

    def update_ray_mask(self, datamanager: Any) -> None:
        """Hand the data manager the in-cache pixels of its training cameras when the cache changed."""
        self.cache.update_ray_mask(self._hits, datamanager)

    # -- per-voxel learning rate ----------------------------------------------------------------------
    def coarse_view_points(self, cameras: Any, downrate: int = 1, chunk: int = 1 << 15) -> Iterator[Iterator[Tensor]]:
        """Per training camera (nerfstudio ``Cameras``), the coarse-stage look-up points of its rays (every
        ``downrate``-th pixel), in chunks: what :func:`~.grid_training.voxel_view_counts` counts."""
        m = self.model
        for i in range(len(cameras)):
            rays = cameras.generate_rays(camera_indices=i)
            o = rays.origins[::downrate, ::downrate].reshape(-1, 3).to(m.aabb.device)
            d = rays.directions[::downrate, ::downrate].reshape(-1, 3).to(m.aabb.device)
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)

            def chunks(o: Tensor = o, d: Tensor = d) -> Iterator[Tensor]:
                for oc, dc in zip(o.split(chunk), d.split(chunk)):
                    marched, _ = m.sample(oc, dc, fine=False)
                    yield m.lookup_points(oc, dc, marched.t)[marched.valid]

            yield chunks()

    def setup_pervoxel_lr(self, datamanager: Any) -> Optional[PerVoxelLR]:
        """DVGO's per-voxel learning rate of the coarse density grid, counted from the training cameras alone
        (so a resumed run counts the same); None without a training dataset."""
        dataset = getattr(datamanager, "train_dataset", None)
        if dataset is None:
            return None
        m = self.model
        with torch.no_grad():
            count = voxel_view_counts(self.coarse_view_points(dataset.cameras, m.config.pervoxel_lr_downrate),
                                      m.coarse_res, m.coarse_box)
        return PerVoxelLR(m.coarse_density, count)

    def _pervoxel_now(self) -> Optional[PerVoxelLR]:
        return None if self.schedule.in_fine_stage(self.model.step) else self.pervoxel

    # -- nerfstudio ---------------------------------------------------------------------------------
    def training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """The step callback (grids, cache, ray mask, per-voxel lr) and the grid optimiser's hooks."""
        m, cfg = self.model, self.model.config
        datamanager = getattr(attrs.pipeline, "datamanager", None)
        use_mask = cfg.in_cache_rays and datamanager is not None

        def set_step(step: int) -> None:
            self.set_step(step, attrs.optimizers)
            if use_mask and self.cache.ready and not m.unbounded:
                self.update_ray_mask(datamanager)
            if cfg.pervoxel_lr and not self.schedule.in_fine_stage(m.step) and not self._pervoxel_counted:
                self.pervoxel, self._pervoxel_counted = self.setup_pervoxel_lr(datamanager), True

        opts = getattr(attrs.optimizers, "optimizers", {})
        if "grids" in opts:
            hook_grid_optimizer(opts["grids"], lambda: m.get_param_groups()["grids"], self.known_ids,
                                self._pervoxel_now)
        return [TrainingCallback(where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                                 update_every_num_iters=1, func=set_step)]
