"""SpikingNeRF model (Yao et al. 2023) on nerfstudio: DVGO coarse stage, then a spiking fine stage.

Coarse stage (``step < coarse_steps``): density grid + direct RGB grid (DVGO coarse, no network); at its end
its density is turned into a binary occupancy cache. Fine stage: density + feature grids with progressive
up-scaling and the colour network of :class:`~spikenerf.nerf.field.SpikingNeRFField`, where each ray is one
SNN sequence and each sample one time step. Masked samples (outside the box, unoccupied, low alpha, low
weight) never reach the colour network.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import Model, ModelConfig

from .coarse_to_fine import CoarseToFine, CoarseToFineConfig
from .contraction import contracted_sample_count
from .export import NerfstudioToolsMixin
from .field import ColorStats, SpikingNeRFField
from .grid import DenseGrid, Marched
from .grid_training import axis_resolution
from .metrics import (batch_op_metrics, build_lpips, ground_truth, image_firing_rates, image_op_metrics,
                      image_quality_of, psnr, ray_spike_outputs, render_images)
from .renderer_energy import RendererShape, renderer_energy_metrics
from .rendering import background_rgb, composite, density_shift, density_to_alpha, distortion_loss, sample_masks
from .sampling import render_in_groups, sample_along_rays
from .scene import (SCENE_BOUNDED, SCENE_NDC, SCENE_UNBOUNDED, SCENE_UNDECIDED, SceneConfig, checked_box,
                    fit_scene_to_data, ndc_camera_of, register_ndc_camera)
from .scene_rays import SceneRaysMixin

__all__ = ["SpikingNeRFModelConfig", "SpikingNeRFModel", "SCENE_UNDECIDED", "SCENE_BOUNDED",
           "SCENE_UNBOUNDED", "SCENE_NDC"]


@dataclass
class SpikingNeRFModelConfig(ModelConfig, SceneConfig, CoarseToFineConfig):
    """SpikingNeRF model configuration (defaults sized for a CPU run on a ~100x100 scene); the scene options are
    :class:`~.scene.SceneConfig`'s, the stage, up-scale, cache and per-voxel lr ones
    :class:`~.coarse_to_fine.CoarseToFineConfig`'s."""

    _target: Type = field(default_factory=lambda: SpikingNeRFModel)
    enable_collider: bool = False
    """Samples are placed inside the scene box by the model itself (ray/box intersection)."""
    near_plane: float = 0.05
    """Samples closer than this to the camera are dropped."""
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


class SpikingNeRFModel(NerfstudioToolsMixin, SceneRaysMixin, Model):
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
        # an NDC scene is known from the data parser's metadata before any grid exists: its settings size them
        camera = ndc_camera_of(self.kwargs.get("metadata")) if self.config.scene in ("auto", "ndc") else None
        if camera is not None:
            self.config = replace(self.config, **self.config.ndc.overrides())
        cfg = self.config
        if cfg.step_ratio <= 0:
            raise ValueError("step_ratio must be > 0")
        aabb = checked_box(self.scene_box.aabb, cfg.bg_len)
        self.register_buffer("aabb", aabb)  # the data parser's box (the inner box of unbounded scenes)
        self.coarse_res = axis_resolution(aabb, cfg.coarse_resolution)  # the contracted box has the same shape
        self.coarse_density = DenseGrid(1, self.coarse_res, aabb)
        self.coarse_color = DenseGrid(3, self.coarse_res, aabb)
        self.coarse_shift = density_shift(cfg.alpha_init_coarse)
        self.fine_shift0 = density_shift(cfg.alpha_init_fine)
        # stages, up-scaling, the occupancy cache (buffers occupancy / occupancy_ready), per-voxel lr
        self.coarse_to_fine = CoarseToFine(self)
        self.field = self.field_class(aabb, self.coarse_to_fine.fine_resolution_at(0), **self.field_kwargs())
        self.register_buffer("scene_code", torch.tensor(SCENE_UNDECIDED))
        # [H, W, focal, near] of NDC scenes (zeros otherwise): saved, so a checkpoint renders without the parser
        register_ndc_camera(self)
        self.unbounded = False
        self.ndc_cam: Optional[Tuple[float, float, float, float]] = None  # host copy of ndc_camera (NDC scenes)
        self.near_clip = max(cfg.near_clip, 0.0)  # -1 (from the data) is resolved when training starts
        self._cache_extents()
        if camera is not None:
            self.set_ndc(camera)
        elif cfg.scene in ("bounded", "unbounded"):  # "ndc" without a camera: refused when training starts
            self.set_scene(cfg.scene == "unbounded")
        self._register_load_state_dict_pre_hook(self.coarse_to_fine.cache.take_shape)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._restore_flags())
        self.step = 0  # plain int; set by the training callback / update_to_step
        self.lpips = build_lpips()
        self.coarse_to_fine.mark_ddp_params(self.parameters())

    # -- scene (the parameterization itself: :class:`~.scene_rays.SceneRaysMixin`) ---------------------
    def _restore_flags(self) -> None:
        self.coarse_to_fine.cache.restored()
        self.unbounded = int(self.scene_code) == SCENE_UNBOUNDED
        if int(self.scene_code) == SCENE_NDC:
            if self.ndc_cam is None:  # built without the parser's metadata: the checkpoint's NDC settings
                self.config = replace(self.config, **self.config.ndc.overrides())
                self.coarse_to_fine.reschedule()
            self.ndc_cam = tuple(float(v) for v in self.ndc_camera.tolist())  # type: ignore[assignment]
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

    def fine_voxel(self) -> float:
        """Voxel size (world / contracted units, longest axis) of the fine grids at their current resolution."""
        return self._fine_extent / (max(self.field.density_grid.resolution) - 1)

    # -- training schedule: asked of self.coarse_to_fine ------------------------------------------------
    @property
    def in_fine_stage(self) -> bool:
        return self.coarse_to_fine.schedule.in_fine_stage(self.step)

    @property
    def _occ_ready(self) -> bool:
        """The occupancy cache is built (host-side flag)."""
        return self.coarse_to_fine.cache.ready

    def _set_step(self, step: int, optimizers: Any = None) -> None:
        self.coarse_to_fine.set_step(step, optimizers)

    def update_to_step(self, step: int) -> None:
        self.coarse_to_fine.update_to_step(step)

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Fits the scene to the training data (:func:`~.scene.fit_scene_to_data`), then hands every step to
        :class:`~.coarse_to_fine.CoarseToFine`."""
        outputs = getattr(getattr(attrs.pipeline, "datamanager", None), "train_dataparser_outputs", None)
        if outputs is not None:
            fit_scene_to_data(self, outputs)
        return self.coarse_to_fine.training_callbacks(attrs)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        grids = (list(self.coarse_density.parameters()) + list(self.coarse_color.parameters())
                 + list(self.field.density_grid.parameters()) + list(self.field.feature_grid.parameters()))
        grid_ids = {id(p) for p in grids}
        mlp = [p for p in self.field.parameters() if id(p) not in grid_ids]
        return {"grids": grids, "mlp": mlp}

    # -- rendering --------------------------------------------------------------------------------
    def sample(self, origins: Tensor, dirs: Tensor, fine: bool) -> tuple[Marched, float]:
        """Samples every ``step_ratio`` voxels of the current stage (:func:`~.sampling.sample_along_rays`) along
        the world rays ``[R, 3]``: in the stage's box (bounded), along the contracted lattice (unbounded) or in
        the NDC box from the near plane (NDC; ``t`` is then the NDC distance), and in the fine stage only in
        the occupancy cache; returns them and the step (world / contracted / NDC units)."""
        step = self.config.step_ratio * (self.fine_voxel() if fine else self.coarse_voxel)
        occ = self.occupancy if (fine and self.coarse_to_fine.cache.ready) else None
        if self.unbounded:
            return sample_along_rays(origins, dirs, self.aabb, step, self.config.near_plane, occ,
                                     self.config.bg_len), step
        box = self.fine_box if fine else self.coarse_box
        rays = self.marching_rays(origins, dirs)
        near = self.config.near_plane if rays.valid is None else 0.0  # NDC rays start on the near plane
        marched = sample_along_rays(rays.origins, rays.directions, box, step, near, occ)
        if rays.valid is not None:
            marched = marched._replace(valid=marched.valid & rays.valid[:, None])
        return marched, step

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

    def colour_net(self) -> SpikingNeRFField:
        """What colours the fine stage's kept samples: the field (its :meth:`~.field.SpikingNeRFField.color`).
        The seam :mod:`~.nir_replay` swaps for a render; SpikingNeRF-T's model has the same one."""
        return self.field

    def sample_color(self, xyz: Tensor, dirs: Tensor, keep: Tensor, marched: Marched,
                     fine: bool) -> tuple[Tensor, ColorStats | None]:
        """Colour ``[R, S, 3]`` of the kept samples: the field's colour network (fine) or the coarse RGB grid."""
        if fine:
            return self.colour_net().color(xyz, dirs, keep, time_index=marched.index)
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
        return render_in_groups(lambda g, sub: self.render_marched(origins[g], dirs[g], sub, step, fine), marched,
                                groups)

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
        rgb_s, stats = self.sample_color(xyz, dirs, keep, marched, fine)  # the world view directions (NeRF, DVGO)
        out = composite(weights, rgb_s, self.world_distance(origins, dirs, t, valid) if self.ndc else t,
                        self.background(rgb_s), bg_weight)
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
            "num_density_samples": valid.sum(1, keepdim=True).to(out.rgb.dtype),  # samples given an alpha
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
        return {"ray_macs": macs, "ray_sops": stats.ray_sops[:, None].to(n_col.dtype), "ray_ann_macs": ann,
                "ray_macs_dir_once": macs - repeated_dir, "ray_ann_macs_dir_once": ann - repeated_dir,
                **ray_spike_outputs(stats, n_col)}

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
        if self.ndc:
            c = {**c, **self.config.ndc.loss_overrides()}
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
        if fine and (self.unbounded or self.ndc) and c.get("distortion_loss", 0.0) > 0 and "_index" in outputs:
            step = self.config.step_ratio * self.fine_voxel()
            if self.unbounded:
                n = sum(contracted_sample_count(step, self.aabb, self.config.bg_len))  # lattice length
            else:  # NDC: the NDC distance (uniform in inverse depth) over the box's depth 2, as DVGO's
                n = 2.0 / step  # DirectMPIGO takes its sample index over the MPI depth
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
                metrics.update(image_firing_rates(outputs, n_col, self.field.hidden_dim, len(self.field.lif_layers())))
                # the whole renderer's energy beside the colour net's, for the SNN and its twin on these samples
                metrics.update(renderer_energy_metrics(outputs["num_density_samples"], outputs["num_color_samples"],
                                                       outputs["ray_sops"], RendererShape.of_field(self.field)))
        metrics["color_samples_per_ray"] = n_col / num_rays
        return metrics, render_images(outputs, rgb, gt)

