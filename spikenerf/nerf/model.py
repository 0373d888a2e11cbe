"""SpikingNeRF model (Yao et al. 2023) on nerfstudio: DVGO coarse stage, then a spiking fine stage.

Coarse stage (``step < coarse_steps``): density grid + direct RGB grid (DVGO coarse, no network); at its end
its density is turned into a binary occupancy cache. Fine stage: density + feature grids with progressive
up-scaling and the colour network of :class:`~spikenerf.nerf.field.SpikingNeRFField`, where each ray is one
SNN sequence and each sample one time step. Masked samples (outside the box, unoccupied, low alpha, low
weight) never reach the colour network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE

from .contraction import contract, contracted_box, contracted_sample_count, looks_unbounded, near_clip_from_points
from .export import NerfstudioToolsMixin
from .field import ColorStats, SpikingNeRFField
from .grid import DenseGrid, Marched, occupied
from .grid_training import (PerVoxelLR, average_new_grads, axis_resolution, progressive_resolution, rescale_grids,
                            voxel_view_counts,
                            sync_optimizers)
from .metrics import (batch_op_metrics, build_lpips, ground_truth, image_op_metrics, image_quality_of, psnr,
                      render_images)
from .rendering import background_rgb, composite, density_shift, density_to_alpha, distortion_loss, sample_masks
from .sampling import coarse_geometry_box, grid_vertices, mask_cache, refresh_occupancy, sample_along_rays

__all__ = ["SpikingNeRFModelConfig", "SpikingNeRFModel", "SCENE_UNDECIDED", "SCENE_BOUNDED", "SCENE_UNBOUNDED"]

SCENE_UNDECIDED, SCENE_BOUNDED, SCENE_UNBOUNDED = 0, 1, 2
"""Values of the model's ``scene_code`` buffer."""


@dataclass
class SpikingNeRFModelConfig(ModelConfig):
    """SpikingNeRF model configuration (defaults sized for a CPU run on a ~100x100 scene)."""

    _target: Type = field(default_factory=lambda: SpikingNeRFModel)
    enable_collider: bool = False
    """Samples are placed inside the scene box by the model itself (ray/box intersection)."""
    scene: Literal["auto", "bounded", "unbounded"] = "auto"
    """Scene parameterization. ``bounded``: the grids span the data parser's box (Blender scenes).
    ``unbounded``: that box is the inner box of a contraction and the grids span the contracted space, which
    holds everything outside it (real captures: floor, walls, sky). ``auto``: unbounded when at least half of
    the training cameras are inside the box (nerfstudio's colmap / nerfstudio-data / instant-ngp-data parsers
    scale the poses into it), else bounded; decided when training starts and saved with the checkpoint."""
    bg_len: float = 0.5
    """Unbounded scenes: thickness of the contracted shell (everything outside the inner box) in inner
    half-sizes; the grids span ``(1 + bg_len)`` times the inner box (DVGOv2's ``bg_len``)."""
    near_plane: float = 0.05
    """Samples closer than this to the camera are dropped."""
    near_clip: float = -1.0
    """Unbounded scenes: training samples closer than this to their camera have their density pushed down
    (DVGOv2's near-clip loss, weight ``nearclip_loss``): nothing real is that close to a training camera, and
    density there is a floater that fits one view and fogs its neighbours. ``-1``: from the data, 0.9 x the
    nearest sparse 3D point of any training camera (:func:`~.contraction.near_clip_from_points`; the ``colmap``
    parser loads them), off when the parser gives no points; ``0``: off; ``> 0``: this distance."""
    coarse_steps: int = 300
    """Training steps of the coarse stage; the fine stage starts after them."""
    coarse_resolution: int = 48
    """Coarse grid vertices along the longest scene-box axis."""
    fine_resolution: int = 96
    """Final fine grid vertices along the longest axis (reached after the last ``pg_scale_steps``)."""
    pg_scale_steps: Tuple[int, ...] = (200, 400)
    """Fine-stage steps at which the fine grids are up-scaled (voxel count x2 each time, DVGO)."""
    step_ratio: float = 0.5
    """Sampling step as a fraction of the current voxel size."""
    feature_channels: int = 12
    hidden_dim: int = 128
    dir_freqs: int = 4
    spiking: bool = True
    """LIF colour network (SpikingNeRF) or the ReLU twin."""
    tau: float = 2.0
    v_threshold: float = 1.0
    neuron: Literal["lif", "plif"] = "lif"
    """Colour neurons: LIF with ``tau`` fixed, or PLIF (``1/tau`` learned per layer from ``tau``), the two of
    the official SpikingNeRF code."""
    reset: Literal["hard", "soft"] = "soft"
    """Colour neurons' reset: subtract the threshold (``soft``, the default) or to 0 (``hard``, the paper's
    and its code's). Soft is the default because it fits better at the same energy: on lego-400 (2,500 steps of
    ``spikingnerf-full``, 25 test views) 29.47 dB against 29.21 for hard, the ReLU twin 29.89; training PSNR
    +0.24 dB, firing rate 0.29 both (docs/benchmarks.md). What a soft reset keeps above the threshold carries
    to the ray's next sample instead of being thrown away."""
    surrogate: str = "atan"
    """Surrogate gradient of the colour neurons' spike (``spikenerf.snn.surrogate``: ``atan``, ``sigmoid``, ...)."""
    detach_reset: bool = False
    """No gradient through the reset (the official code detaches it)."""
    threshold: Literal["fixed", "learnable"] = "fixed"
    """Colour neurons' threshold: ``v_threshold`` fixed, or learned per layer from it."""
    pack_mode: Literal["padding", "condensing"] = "condensing"
    """Ray-aligned time layout of the SNN input (see spikenerf.nerf.packing). Condensing is the default: on
    the same samples its tensor is denser (padding also runs every hole between a ray's first and last valid
    sample) and a training step is 1.3x faster (docs/benchmarks.md)."""
    flip: bool = False
    """Run time far -> near along each ray."""
    alpha_init_coarse: float = 1e-6
    alpha_init_fine: float = 1e-2
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
    color_bias: bool = True
    """Biases in the colour net's 2nd and 3rd Linear layers (the 1st never has one). ``False`` is the paper's
    net (no bias in any of its three layers). ``True`` stays the default: Spik-NeRF's inference-time
    re-parameterization folds its spike offset into fc2's bias, and no run here has shown the bias-free net
    better."""
    alpha_threshold: float = 1e-4
    """Samples with a smaller alpha are dropped before compositing/colour."""
    weight_threshold: float = 1e-4
    """Samples with a smaller compositing weight never reach the colour network."""
    coarse_threshold: float = 1e-7
    """Alpha and weight threshold of the coarse stage (DVGO's coarse ``fast_color_thres``). It must sit below
    the coarse grid's initial alpha (``alpha_init_coarse`` x step / voxel = 5e-7): with the fine stage's 1e-4
    every coarse sample would be dropped and the coarse grids would never receive a gradient."""
    background_color: Literal["white", "black"] = "white"
    random_background: bool = False
    """Unbounded scenes, training only: each ray's background colour is drawn uniformly at random (DVGOv2's
    ``rand_bkgd``), so a ray whose background shows through is wrong whatever the image holds and the model
    must make the scene opaque; evaluation and renders use ``background_color``."""
    loss_coefficients: Dict[str, float] = to_immutable_dict(
        {"rgb_loss": 1.0, "entropy_loss": 0.001, "rgbper_loss": 0.01, "coarse_entropy_loss": 0.01,
         "coarse_rgbper_loss": 0.1, "distortion_loss": 0.01, "nearclip_loss": 1.0,
         "tv_density": 0.0, "tv_feature": 0.0}
    )
    """Per stage as DVGO / SpikingNeRF-D: fine ``entropy_loss`` / ``rgbper_loss``, coarse ``coarse_*``. The
    entropy acts on the background weight, the per-point colour loss uses detached compositing weights.
    ``distortion_loss`` (DVGOv2's weight for unbounded scenes) acts in the fine stage of unbounded scenes
    only: it pulls each ray's weight together, so the fog of a real capture turns into surfaces (and fewer
    samples reach the colour network). ``nearclip_loss`` (DVGOv2's 1.0) acts in both stages of unbounded scenes
    (see ``near_clip``). ``tv_density`` / ``tv_feature`` are DVGO's ``weight_tv_density`` / ``weight_tv_k0``
    (1e-6 / 1e-7 for its unbounded 360 scenes; off by default), fine stage only (DVGO's coarse stage has none):
    every step, on the whole fine grid, each vertex gets the gradient ``w / rays * (max resolution / 128) *
    sum_neighbours clamp(v - v_n, -1, 1)``. The feature grid's costs a pass over all its channels per step."""
    eval_num_rays_per_chunk: int = 4096
    eval_ray_groups: int = 4
    """At inference the rays of a chunk are rendered in this many groups of similar sample counts (sorted by
    count): every ``[R, S]`` step then pads each group to its own longest ray, not the chunk's (lego-400: ~40
    samples per ray on average, ~230 for the longest of a chunk). Rays are independent, so the outputs are
    those of one group up to float rounding; 1 turns it off. Training always runs one group."""


class SpikingNeRFModel(NerfstudioToolsMixin, Model):
    """SpikingNeRF (and its ANN twin with ``spiking=False``).

    ``get_outputs`` strings the steps of :mod:`~spikenerf.nerf.sampling` and :mod:`~spikenerf.nerf.rendering`
    together: :meth:`sample` -> :meth:`sample_alpha` -> :func:`~.rendering.sample_masks` -> colour
    (:meth:`sample_color`) -> :func:`~.rendering.composite`.
    """

    config: SpikingNeRFModelConfig
    field_class: Type[SpikingNeRFField] = SpikingNeRFField
    """The fine stage's field; subclasses name theirs and extend :meth:`field_kwargs`."""

    # -- construction -----------------------------------------------------------------------------
    def field_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :attr:`field_class` from the config (besides the box and resolution)."""
        cfg = self.config
        return dict(feature_channels=cfg.feature_channels, hidden_dim=cfg.hidden_dim, dir_freqs=cfg.dir_freqs,
                    spiking=cfg.spiking, tau=cfg.tau, v_threshold=cfg.v_threshold, pack_mode=cfg.pack_mode,
                    flip=cfg.flip, alpha_init=cfg.alpha_init_fine, color_bias=cfg.color_bias, neuron=cfg.neuron,
                    reset=cfg.reset, surrogate=cfg.surrogate, detach_reset=cfg.detach_reset,
                    threshold=cfg.threshold)

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if cfg.coarse_steps < 0:
            raise ValueError("coarse_steps must be >= 0")
        if cfg.step_ratio <= 0:
            raise ValueError("step_ratio must be > 0")
        if cfg.coarse_resolution < 2 or cfg.fine_resolution < 2:
            raise ValueError("coarse_resolution and fine_resolution need at least 2 vertices per axis")
        if list(cfg.pg_scale_steps) != sorted(cfg.pg_scale_steps):
            raise ValueError(f"pg_scale_steps must be increasing, got {cfg.pg_scale_steps}")
        aabb = self.scene_box.aabb.detach().clone().float()
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"scene box must have positive extent, got {aabb.tolist()}")
        if cfg.bg_len <= 0:
            raise ValueError("bg_len must be > 0")
        self.register_buffer("aabb", aabb)  # the data parser's box (the inner box of unbounded scenes)
        self.coarse_res = axis_resolution(aabb, cfg.coarse_resolution)  # the contracted box has the same shape
        self.coarse_density = DenseGrid(1, self.coarse_res, aabb)
        self.coarse_color = DenseGrid(3, self.coarse_res, aabb)
        self.coarse_shift = density_shift(cfg.alpha_init_coarse)
        self.fine_shift0 = density_shift(cfg.alpha_init_fine)
        self.field = self.field_class(aabb, self.fine_resolution_at(0), **self.field_kwargs())
        # occupancy cache over the fine box at the fine resolution (its shape follows the checkpoint on load)
        self.register_buffer("occupancy", torch.ones(self.coarse_res, dtype=torch.bool))
        self.register_buffer("occupancy_ready", torch.tensor(False))
        self.register_buffer("scene_code", torch.tensor(SCENE_UNDECIDED))
        self._occ_ready = False  # Python copies of the two flags: no host-device sync per step
        self._occ_version, self._mask_version = 0, 0  # the cache's changes, the one the ray mask was built on
        self.unbounded = False
        self.near_clip = max(cfg.near_clip, 0.0)  # -1 (from the data) is resolved when training starts
        self._cache_extents()
        if cfg.scene != "auto":
            self.set_scene(cfg.scene == "unbounded")
        self._register_load_state_dict_pre_hook(self._take_checkpoint_shapes)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._restore_flags())
        self.step = 0  # plain int; set by the training callback / update_to_step
        self.lpips = build_lpips()
        # the parameters a DDP wrapper registers (nerfstudio wraps the model right after this); grids that
        # progressive up-scaling creates later are averaged across processes by _average_new_grads
        self._ddp_param_ids = {id(p) for p in self.parameters()}

    # -- scene ------------------------------------------------------------------------------------
    def set_scene(self, unbounded: bool) -> None:
        """Fix the parameterization (before training): the grids span the box, or the contracted box."""
        box = contracted_box(self.aabb, self.config.bg_len) if unbounded else self.aabb.clone()
        self.unbounded = bool(unbounded)
        self.scene_code.fill_(SCENE_UNBOUNDED if unbounded else SCENE_BOUNDED)
        for grid in (self.coarse_density, self.coarse_color):
            grid.aabb.copy_(box)
        self.field.aabb.copy_(box)
        for grid in (self.field.density_grid, self.field.feature_grid):
            grid.aabb.copy_(box)
        self._cache_extents()

    def detect_scene(self, camera_origins: Tensor) -> bool:
        """``scene="auto"``: choose from the training camera centres ``[N, 3]`` unless already decided."""
        if int(self.scene_code) == SCENE_UNDECIDED:
            self.set_scene(looks_unbounded(camera_origins, self.aabb))
        return self.unbounded

    def data_near_clip(self, cameras: Any, points: Tensor | None) -> float:
        """``near_clip="auto"`` (-1): from the training cameras and the sparse points (0 without points, or in
        bounded scenes, where DVGO has no near-clip loss). Recomputed from the data on resume, so it is the same."""
        if not self.unbounded or points is None or len(points) == 0:
            return 0.0
        clip = near_clip_from_points(cameras.camera_to_worlds, cameras.fx, cameras.fy, cameras.cx, cameras.cy,
                                     cameras.width, cameras.height, points)
        CONSOLE.log(f"spikingnerf: near clip {clip:.4g} (0.9 x the nearest of {len(points)} sparse points)")
        return clip

    def _take_checkpoint_shapes(self, state_dict, prefix, *args) -> None:
        occ = state_dict.get(prefix + "occupancy")
        if occ is not None and tuple(occ.shape) != tuple(self.occupancy.shape):
            self.occupancy = torch.ones(occ.shape, dtype=torch.bool, device=self.occupancy.device)

    def _restore_flags(self) -> None:
        self._occ_ready = bool(self.occupancy_ready)
        self._occ_version += 1  # a loaded cache: the ray mask is rebuilt from it
        self.unbounded = int(self.scene_code) == SCENE_UNBOUNDED
        self._cache_extents()

    @property
    def coarse_box(self) -> Tensor:
        return self.coarse_density.aabb

    @property
    def fine_box(self) -> Tensor:
        return self.field.density_grid.aabb

    def _cache_extents(self) -> None:
        """Python copies of the boxes' longest sides (read every step; no host-device sync on CUDA)."""
        self._coarse_extent = float((self.coarse_box[1] - self.coarse_box[0]).max())
        self._fine_extent = float((self.fine_box[1] - self.fine_box[0]).max())

    @property
    def coarse_voxel(self) -> float:
        return self._coarse_extent / (self.config.coarse_resolution - 1)

    @property
    def fine_voxel_base(self) -> float:
        """Interval unit of the fine density: the final fine voxel (longest axis of the fine box)."""
        return self._fine_extent / (self.config.fine_resolution - 1)

    # -- schedule ---------------------------------------------------------------------------------
    @property
    def in_fine_stage(self) -> bool:
        return self.step >= self.config.coarse_steps

    def fine_resolution_at(self, step: int) -> tuple[int, int, int]:
        """Fine grid resolution at a global training step (DVGO: voxel count halves per pending scale)."""
        cfg = self.config
        n = progressive_resolution(cfg.fine_resolution, step - cfg.coarse_steps, cfg.pg_scale_steps)
        box = self.field.density_grid.aabb if hasattr(self, "field") else self.aabb
        return axis_resolution(box, n)

    def scales_done(self, step: int) -> int:
        """Up-scalings of the fine grids before global step ``step``."""
        return sum(1 for s in self.config.pg_scale_steps if step - self.config.coarse_steps >= s)

    def fine_voxel(self) -> float:
        """Voxel size (world / contracted units, longest axis) of the fine grids at their current resolution."""
        return self._fine_extent / (max(self.field.density_grid.resolution) - 1)

    def _rescale_fine(self, step: int, optimizers: Any = None) -> bool:
        """Fine grids at the resolution of ``step`` and the activation shift after its up-scalings; True when
        the grids changed."""
        before = self.field.density_grid.resolution
        rescale_grids((self.field.density_grid, self.field.feature_grid), self.fine_resolution_at(step))
        self.field.shift = self.fine_shift0 - self.config.decay_after_scale * self.scales_done(step)
        if optimizers is not None:
            sync_optimizers(optimizers, self.get_param_groups())
        return self.field.density_grid.resolution != before

    def _average_new_grads(self) -> None:
        """Multi-process training: average the gradients of grids created after DDP wrapped the model."""
        average_new_grads(self.get_param_groups()["grids"], self._ddp_param_ids)

    def _coarse_raw(self, xyz: Tensor) -> Tensor:
        return self.coarse_density(xyz)[..., 0]

    def build_occupancy(self, step: int | None = None) -> None:
        """End of the coarse stage: the coarse ``MaskGrid`` cache, the tightened fine box (bounded scenes) and
        the cache on the fine grid's vertices (nearest coarse vertex)."""
        cfg = self.config
        step = self.config.coarse_steps if step is None else step
        coarse = mask_cache(self._coarse_raw, self.coarse_box, self.coarse_res, self.coarse_shift,
                            cfg.occupancy_threshold)
        if cfg.tighten_fine_box and not self.unbounded:
            box = coarse_geometry_box(self._coarse_raw, self.coarse_box, self.coarse_res, self.coarse_shift,
                                      cfg.bbox_threshold, cfg.bbox_scale)
            self.field.set_box(box, self.fine_resolution_at(step))  # the fine grids are still all zero here
            self._cache_extents()
        res = self.field.density_grid.resolution
        xyz = grid_vertices(self.fine_box, res)
        from_coarse = torch.zeros(res, dtype=torch.bool, device=xyz.device)
        inside = ((xyz >= self.coarse_box[0]) & (xyz <= self.coarse_box[1])).all(-1).reshape(res)
        from_coarse[inside] = occupied(coarse, xyz.reshape(*res, 3)[inside], self.coarse_box)
        self.occupancy = from_coarse if bool(from_coarse.any()) else torch.ones_like(from_coarse)
        self.occupancy_ready.fill_(True)
        self._occ_ready = True
        self._occ_version += 1

    def refresh_occupancy(self, shift: float | None = None) -> None:
        """Fine stage: cache at the fine grid's vertices AND max-pooled fine alpha over one voxel > threshold."""
        res = self.field.density_grid.resolution
        self.occupancy = refresh_occupancy(
            self.occupancy, self.fine_box, self.field.density_raw, self.fine_box, res,
            self.field.shift if shift is None else shift, self.fine_voxel() / self.fine_voxel_base,
            self.config.alpha_threshold)
        self._occ_version += 1

    @torch.no_grad()
    def rays_in_cache(self, origins: Tensor, dirs: Tensor, chunk: int = 1 << 16) -> Tensor:
        """``[R]`` bool: the ray ``origins`` / ``dirs`` ``[R, 3]`` has a fine-stage sample in the occupancy cache
        (DVGO's ``in_maskcache`` rule; every ray before the cache exists)."""
        if not self._occ_ready:
            return torch.ones(origins.shape[0], dtype=torch.bool, device=origins.device)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        hits = [self.sample(o, d, fine=True)[0].valid.any(1)
                for o, d in zip(origins.split(chunk), dirs.split(chunk))]
        return torch.cat(hits) if hits else origins.new_zeros(0, dtype=torch.bool)

    def pixel_mask(self, cameras: Any) -> Tensor | None:
        """``[N, H, W, 1]`` bool: the pixels of ``cameras`` (nerfstudio ``Cameras``) whose ray crosses the cache;
        None when the cameras differ in size (the pixel sampler's mask is one tensor)."""
        if len({int(h) for h in cameras.height.flatten()}) != 1 or len({int(w) for w in cameras.width.flatten()}) != 1:
            return None
        masks = []
        for i in range(len(cameras)):
            rays = cameras.generate_rays(camera_indices=i)
            hw = rays.origins.shape[:2]
            o = rays.origins.reshape(-1, 3).to(self.aabb.device)
            d = rays.directions.reshape(-1, 3).to(self.aabb.device)
            masks.append(self.rays_in_cache(o, d).reshape(*hw, 1))
        return torch.stack(masks)

    def _update_ray_mask(self, datamanager: Any) -> None:
        """Hand the data manager the in-cache pixels of its training cameras when the cache changed."""
        if self._mask_version == self._occ_version:
            return
        self._mask_version = self._occ_version
        dataset = getattr(datamanager, "train_dataset", None)
        if dataset is None or not hasattr(datamanager, "set_ray_mask"):
            return
        mask = self.pixel_mask(dataset.cameras)
        if mask is not None:
            datamanager.set_ray_mask(mask)

    def coarse_view_points(self, cameras: Any, downrate: int = 1, chunk: int = 1 << 15):
        """Per training camera (nerfstudio ``Cameras``), the coarse-stage look-up points of its rays (every
        ``downrate``-th pixel), in chunks: what :func:`~.grid_training.voxel_view_counts` counts."""
        for i in range(len(cameras)):
            rays = cameras.generate_rays(camera_indices=i)
            o = rays.origins[::downrate, ::downrate].reshape(-1, 3).to(self.aabb.device)
            d = rays.directions[::downrate, ::downrate].reshape(-1, 3).to(self.aabb.device)
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)

            def chunks(o=o, d=d):
                for oc, dc in zip(o.split(chunk), d.split(chunk)):
                    marched, _ = self.sample(oc, dc, fine=False)
                    yield self.lookup_points(oc, dc, marched.t)[marched.valid]

            yield chunks()

    def _setup_pervoxel_lr(self, datamanager: Any) -> PerVoxelLR | None:
        dataset = getattr(datamanager, "train_dataset", None)
        if dataset is None:
            return None
        with torch.no_grad():
            count = voxel_view_counts(self.coarse_view_points(dataset.cameras, self.config.pervoxel_lr_downrate),
                                      self.coarse_res, self.coarse_box)
        return PerVoxelLR(self.coarse_density, count)

    def _set_step(self, step: int, optimizers: Any = None) -> None:
        cfg = self.config
        if step >= cfg.coarse_steps and not self._occ_ready and cfg.coarse_steps > 0:
            self.build_occupancy(step)
            if optimizers is not None:
                sync_optimizers(optimizers, self.get_param_groups())
        self.step = int(step)
        shift_before = self.field.shift
        scaled = self._rescale_fine(step, optimizers)
        fine_step = step - cfg.coarse_steps
        if self._occ_ready and step > cfg.coarse_steps and (
                (scaled and cfg.refresh_on_upscale)
                or (cfg.occupancy_refresh_every > 0 and fine_step % cfg.occupancy_refresh_every == 0)):
            # DVGO refreshes with the shift of before the decay that follows the up-scale
            self.refresh_occupancy(shift_before if scaled else None)

    def update_to_step(self, step: int) -> None:
        """Checkpoint loading: grids take the resolution they had at ``step`` before the state loads (the load
        itself then takes the checkpoint's shapes, e.g. of a tightened fine box)."""
        self.step = int(step)
        self._rescale_fine(step)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        datamanager = getattr(training_callback_attributes.pipeline, "datamanager", None)
        use_mask = self.config.in_cache_rays and datamanager is not None
        pervoxel: Dict[str, PerVoxelLR | None] = {}

        def set_step(step: int) -> None:
            self._set_step(step, training_callback_attributes.optimizers)
            if use_mask and self._occ_ready and not self.unbounded:
                self._update_ray_mask(datamanager)
            if self.config.pervoxel_lr and not self.in_fine_stage and "lr" not in pervoxel:
                # counted from the cameras alone, so a resumed run counts the same
                pervoxel["lr"] = self._setup_pervoxel_lr(datamanager)

        outputs = getattr(getattr(training_callback_attributes.pipeline, "datamanager", None),
                          "train_dataparser_outputs", None)
        if outputs is not None and int(self.scene_code) == SCENE_UNDECIDED:
            self.detect_scene(outputs.cameras.camera_to_worlds[..., :3, 3].to(self.aabb.device))
        if outputs is not None and self.config.near_clip < 0:
            self.near_clip = self.data_near_clip(outputs.cameras, (outputs.metadata or {}).get("points3D_xyz"))
        opts = getattr(training_callback_attributes.optimizers, "optimizers", {})
        if "grids" in opts:
            opts["grids"].register_step_pre_hook(lambda *_: self._average_new_grads())

            def pervoxel_hook(before: bool):
                def hook(*_: Any) -> None:
                    lr = None if self.in_fine_stage else pervoxel.get("lr")
                    if lr is not None and before:
                        lr.before()
                    elif lr is not None:
                        lr.after()
                return hook

            opts["grids"].register_step_pre_hook(pervoxel_hook(True))
            opts["grids"].register_step_post_hook(pervoxel_hook(False))

        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=set_step,
            )
        ]

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        grids = (list(self.coarse_density.parameters()) + list(self.coarse_color.parameters())
                 + list(self.field.density_grid.parameters()) + list(self.field.feature_grid.parameters()))
        grid_ids = {id(p) for p in grids}
        mlp = [p for p in self.field.parameters() if id(p) not in grid_ids]
        return {"grids": grids, "mlp": mlp}

    # -- rendering --------------------------------------------------------------------------------
    def sample(self, origins: Tensor, dirs: Tensor, fine: bool) -> tuple[Marched, float]:
        """Samples every ``step_ratio`` voxels of the current stage (:func:`~.sampling.sample_along_rays`): in
        the stage's box (bounded) or along the contracted lattice (unbounded), and in the fine stage only in
        the occupancy cache; returns them and the step (world / contracted units)."""
        step = self.config.step_ratio * (self.fine_voxel() if fine else self.coarse_voxel)
        occ = self.occupancy if (fine and self._occ_ready) else None
        if self.unbounded:
            return sample_along_rays(origins, dirs, self.aabb, step, self.config.near_plane, occ,
                                     self.config.bg_len), step
        box = self.fine_box if fine else self.coarse_box
        return sample_along_rays(origins, dirs, box, step, self.config.near_plane, occ), step

    def lookup_points(self, origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor:
        """``[R, S, 3]`` grid look-up points of samples at distances ``t`` ``[R, S]``: the world points, or
        their contraction (:func:`~.contraction.contract`) in unbounded scenes."""
        xyz = origins[:, None] + dirs[:, None] * t[..., None]
        return contract(xyz, self.aabb, self.config.bg_len) if self.unbounded else xyz

    def raw_density(self, xyz: Tensor, fine: bool) -> Tensor:
        """The stage's density grid at look-up points ``[N, 3]``, before the shift and activation ``[N]``."""
        return self.field.density_raw(xyz) if fine else self.coarse_density(xyz)[..., 0]

    def sample_alpha(self, xyz: Tensor, valid: Tensor, step: float, fine: bool) -> tuple[Tensor, Tensor]:
        """Alpha ``[R, S]`` of the valid samples (zero elsewhere) from the stage's density grid, and the raw
        density ``[N]`` of the valid samples (row-major) it came from; never spikes."""
        alpha = xyz.new_zeros(valid.shape)
        shift, unit = (self.field.shift, self.fine_voxel_base) if fine else (self.coarse_shift, self.coarse_voxel)
        idx = valid.nonzero(as_tuple=True)  # once for the gather and the scatter (a bool index finds it twice)
        raw = self.raw_density(xyz[idx], fine)
        alpha[idx] = density_to_alpha(raw, shift, step / unit)
        return alpha, raw

    def sample_color(self, xyz: Tensor, dirs: Tensor, keep: Tensor, marched: Marched,
                     fine: bool) -> tuple[Tensor, ColorStats | None]:
        """Colour ``[R, S, 3]`` of the kept samples: the field's colour network (fine) or the coarse RGB grid."""
        if fine:
            return self.field.color(xyz, dirs, keep, time_index=marched.index)
        rgb_s = xyz.new_zeros(*keep.shape, 3)
        rgb_s[keep] = torch.sigmoid(self.coarse_color(xyz[keep]))
        return rgb_s, None

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Render a ray bundle ``[R]``: every output is ``[R, k]`` (so chunked camera renders can stack them).
        At inference the rays go through :meth:`render_marched` in groups of similar sample counts
        (``eval_ray_groups``)."""
        origins = ray_bundle.origins.reshape(-1, 3)
        dirs = ray_bundle.directions.reshape(-1, 3)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        fine = self.in_fine_stage
        marched, step = self.sample(origins, dirs, fine)
        groups = 1 if self.training else self.config.eval_ray_groups
        if groups <= 1 or origins.shape[0] < 2 * groups:
            return self.render_marched(origins, dirs, marched, step, fine)
        counts, order = marched.valid.sum(1).sort()
        parts, end = [], 0
        for g in order.tensor_split(groups):
            end += g.numel()
            width = max(1, int(counts[end - 1]))  # the group's longest ray
            sub = Marched(marched.t[g, :width], marched.index[g, :width], marched.valid[g, :width])
            parts.append(self.render_marched(origins[g], dirs[g], sub, step, fine))
        out: Dict[str, Tensor] = {}
        for k in parts[0]:
            v = torch.cat([p[k] for p in parts])
            out[k] = torch.empty_like(v).index_copy_(0, order, v)  # back to the bundle's ray order
        return out

    def background(self, ref: Tensor) -> Tensor:
        """The background colour of rays ``ref`` ``[R, ...]``: ``[3]``, or ``[R, 3]`` random in training
        (:attr:`~SpikingNeRFModelConfig.random_background`, unbounded scenes)."""
        if self.training and self.config.random_background and self.unbounded:
            return torch.rand(ref.shape[0], 3, dtype=ref.dtype, device=ref.device)
        return background_rgb(self.config.background_color, ref)

    def render_marched(self, origins: Tensor, dirs: Tensor, marched: Marched, step: float,
                       fine: bool) -> Dict[str, Tensor]:
        """The outputs of rays ``[R]`` (unit ``dirs``) from their kept samples ``marched`` (``[R, S']``)."""
        cfg = self.config
        t, valid = marched.t, marched.valid  # [R, S'] the kept samples of each ray, near -> far
        xyz = self.lookup_points(origins, dirs, t)
        alpha, raw = self.sample_alpha(xyz, valid, step, fine)
        keep, weights, bg_weight = sample_masks(alpha, valid, cfg.alpha_threshold if fine else cfg.coarse_threshold,
                                                cfg.weight_threshold if fine else cfg.coarse_threshold)
        rgb_s, stats = self.sample_color(xyz, dirs, keep, marched, fine)
        out = composite(weights, rgb_s, t, self.background(rgb_s), bg_weight)
        n_col = keep.sum(1, keepdim=True).to(out.rgb.dtype)  # samples that reached the colour stage, per ray
        if stats is not None:
            ray_rate = (stats.ray_spikes / stats.ray_neurons.clamp_min(1.0))[:, None]
        else:
            ray_rate = n_col.new_zeros(n_col.shape)
        outputs: Dict[str, Tensor] = {
            "rgb": out.rgb,
            "depth": out.depth,
            "accumulation": out.accumulation,
            "spike_rate": ray_rate.to(out.rgb.dtype),
            "num_color_samples": n_col,
        }
        if stats is not None:
            outputs.update(self._per_ray_ops(stats, n_col))
        if self.training:
            outputs["_weights"] = weights  # [R, S] for the per-point colour loss
            outputs["_sample_rgb"] = rgb_s  # [R, S, 3]
            outputs["_index"] = marched.index  # [R, S] lattice index: uniform in the (contracted) space
            outputs["_stats"] = stats  # type: ignore[assignment]
            outputs["_xyz"], outputs["_keep"], outputs["_dirs"] = xyz, keep, dirs  # for distillation losses
            if self.unbounded and self.near_clip > 0:
                outputs["_near_raw"] = raw[t[valid] < self.near_clip]  # the look-ups alpha already made
        return outputs

    def sigma(self, xyz: Tensor) -> Tensor:
        """Fine volume density per world unit ``[N]`` at points ``[N, 3]``."""
        return self.field.density(xyz) / self.fine_voxel_base

    @torch.no_grad()
    def world_density(self, xyz: Tensor) -> Tensor:
        """Fine density per world unit ``[N]`` at world points ``[N, 3]`` (contracted first in unbounded scenes);
        the density grid only, no colour network (``ns-export`` normals)."""
        return self.sigma(contract(xyz, self.aabb, self.config.bg_len) if self.unbounded else xyz)

    @torch.no_grad()
    def query_points(self, xyz: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher interface: fine density per world unit ``[N]`` and colour ``[N, 3]`` at points ``[N, 3]``
        with directions ``[N, 3]`` (each point its own one-sample ray). The points are look-up points
        (:meth:`lookup_points`): world points in bounded scenes, their contraction in unbounded ones (as the
        ``_xyz`` training output the distillation passes)."""
        n = xyz.shape[0]
        rgb, _ = self.field.color(xyz[:, None], dirs, torch.ones(n, 1, dtype=torch.bool, device=xyz.device))
        return self.sigma(xyz), rgb[:, 0]

    def _per_ray_ops(self, stats: ColorStats, n_col: Tensor) -> Dict[str, Tensor]:
        """Per-ray op counts ``[R, 1]``: MACs and SOPs of this network, MACs of the ANN twin, each MAC count
        under two conventions. ``ray_macs`` / ``ray_ann_macs``: fc1 per sample (``in_dim * H``), as the papers
        count it. ``*_dir_once``: the view-direction part of fc1 (``dir_dim * H``) once per ray that has
        samples, in both networks: the direction is the same at every sample (time step) of a ray, so the
        layer's input current from it is a per-ray constant, and that is how :meth:`~.field.SpikingNeRFField.
        first_layer` computes it."""
        f = self.field
        ann = n_col * f.ann_macs_per_sample()
        repeated_dir = (n_col - (n_col > 0).to(n_col.dtype)) * (f.dir_dim * f.hidden_dim)
        if not f.spiking:
            return {"ray_macs": ann, "ray_sops": torch.zeros_like(n_col), "ray_ann_macs": ann,
                    "ray_spikes": torch.zeros_like(n_col), "ray_macs_dir_once": ann - repeated_dir,
                    "ray_ann_macs_dir_once": ann - repeated_dir}
        macs = n_col * (f.in_dim * f.hidden_dim)
        out = {"ray_macs": macs, "ray_sops": stats.ray_sops[:, None].to(n_col.dtype), "ray_ann_macs": ann,
               "ray_spikes": stats.ray_spikes[:, None].to(n_col.dtype), "ray_macs_dir_once": macs - repeated_dir,
               "ray_ann_macs_dir_once": ann - repeated_dir}
        for i, sp in enumerate(stats.ray_spikes_per_layer):
            out[f"ray_spikes_lif{i + 1}"] = sp[:, None].to(n_col.dtype)
        return out

    # -- losses / metrics ---------------------------------------------------------------------------
    def _gt(self, batch: Dict[str, Tensor], ref: Tensor) -> Tensor:
        return ground_truth(batch, ref, self.config.background_color)

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Any]:
        gt = self._gt(batch, outputs["rgb"])
        metrics: Dict[str, Any] = {"psnr": psnr(outputs["rgb"], gt), "stage_fine": float(self.in_fine_stage)}
        stats = outputs.get("_stats")
        if stats is not None:
            metrics.update(batch_op_metrics(stats, outputs["rgb"].shape[0]))
        return metrics

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor], metrics_dict=None) -> Dict[str, Tensor]:
        """DVGO's losses with per-stage weights: MSE, entropy of the background weight (pushes it to 0 or 1),
        per-point colour loss weighted by the detached compositing weights, optional TV."""
        c = self.config.loss_coefficients
        fine = self.in_fine_stage
        w_ent = c.get("entropy_loss", 0.0) if fine else c.get("coarse_entropy_loss", c.get("entropy_loss", 0.0))
        w_per = c.get("rgbper_loss", 0.0) if fine else c.get("coarse_rgbper_loss", c.get("rgbper_loss", 0.0))
        gt = self._gt(batch, outputs["rgb"])
        loss = {"rgb_loss": c.get("rgb_loss", 1.0) * F.mse_loss(outputs["rgb"], gt)}
        if w_ent > 0:
            pout = (1.0 - outputs["accumulation"]).clamp(1e-6, 1 - 1e-6)  # the background weight
            ent = -(pout * torch.log(pout) + (1 - pout) * torch.log(1 - pout)).mean()
            loss["entropy_loss"] = w_ent * ent
        if w_per > 0 and "_weights" in outputs:
            per = ((outputs["_sample_rgb"] - gt[:, None, :3]) ** 2).sum(-1)
            loss["rgbper_loss"] = w_per * (per * outputs["_weights"].detach()).sum(1).mean()
        if fine and self.unbounded and c.get("distortion_loss", 0.0) > 0 and "_index" in outputs:
            step = self.config.step_ratio * self.fine_voxel()
            n = sum(contracted_sample_count(step, self.aabb, self.config.bg_len))  # lattice length
            loss["distortion_loss"] = c["distortion_loss"] * distortion_loss(
                outputs["_weights"], outputs["_index"].to(outputs["_weights"].dtype) / n, 1.0 / n)
        if c.get("nearclip_loss", 0.0) > 0 and outputs.get("_near_raw") is not None:
            raw = outputs["_near_raw"]  # DVGOv2: a gradient of exactly the weight on each raw density; value 0
            loss["nearclip_loss"] = c["nearclip_loss"] * (raw - raw.detach()).sum()
        for key, grid in (("tv_density", self.field.density_grid), ("tv_feature", self.field.feature_grid)):
            if fine and c.get(key, 0.0) > 0:  # DVGO: weight / rays (the MSE is a mean) x resolution / 128
                w = c[key] / outputs["rgb"].shape[0] * max(grid.resolution) / 128
                loss[key] = w * grid.total_variation()
        return loss

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        rgb, gt, metrics = image_quality_of(outputs, batch, self.config.background_color, self.lpips)
        num_rays = rgb.shape[0] * rgb.shape[1]
        n_col = float(outputs["num_color_samples"].sum())
        if "ray_macs" in outputs:
            metrics.update(image_op_metrics(outputs, num_rays))
            if "ray_macs_dir_once" in outputs:
                metrics.update(image_op_metrics(outputs, num_rays, convention="_dir_once"))
            if self.field.spiking and n_col > 0:
                neurons = n_col * self.field.hidden_dim
                metrics["firing_rate"] = float(outputs["ray_spikes"].sum()) / (2 * neurons)
                for k in ("lif1", "lif2"):
                    metrics[f"firing_rate_{k}"] = float(outputs[f"ray_spikes_{k}"].sum()) / neurons
        metrics["color_samples_per_ray"] = n_col / num_rays
        return metrics, render_images(outputs, rgb, gt)

