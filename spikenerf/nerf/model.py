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

from .field import ColorStats, SpikingNeRFField
from .grid import DenseGrid, Marched
from .grid_training import (average_new_grads, axis_resolution, progressive_resolution, rescale_grids,
                            sync_optimizers)
from .metrics import (batch_op_metrics, build_lpips, ground_truth, image_op_metrics, image_quality_of, psnr,
                      render_images)
from .rendering import (background_rgb, composite, density_shift, density_to_alpha, sample_masks)
from .sampling import build_occupancy_cache, sample_along_rays
from .video import ensure_ffmpeg_on_path

ensure_ffmpeg_on_path()  # ns-render videos without a system ffmpeg (imageio-ffmpeg's binary)

__all__ = ["SpikingNeRFModelConfig", "SpikingNeRFModel"]


@dataclass
class SpikingNeRFModelConfig(ModelConfig):
    """SpikingNeRF model configuration (defaults sized for a CPU run on a ~100x100 scene)."""

    _target: Type = field(default_factory=lambda: SpikingNeRFModel)
    enable_collider: bool = False
    """Samples are placed inside the scene box by the model itself (ray/box intersection)."""
    near_plane: float = 0.05
    """Samples closer than this to the camera are dropped."""
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
    pack_mode: Literal["padding", "condensing"] = "condensing"
    """Ray-aligned time layout of the SNN input (see spikenerf.nerf.packing). Condensing is the default: on
    the same samples its tensor is denser (padding also runs every hole between a ray's first and last valid
    sample) and a training step is 1.3x faster (docs/benchmarks.md)."""
    flip: bool = False
    """Run time far -> near along each ray."""
    alpha_init_coarse: float = 1e-6
    alpha_init_fine: float = 1e-2
    occupancy_threshold: float = 1e-3
    """Coarse alpha above which a voxel is kept in the occupancy cache."""
    alpha_threshold: float = 1e-4
    """Samples with a smaller alpha are dropped before compositing/colour."""
    weight_threshold: float = 1e-4
    """Samples with a smaller compositing weight never reach the colour network."""
    coarse_threshold: float = 1e-7
    """Alpha and weight threshold of the coarse stage (DVGO's coarse ``fast_color_thres``). It must sit below
    the coarse grid's initial alpha (``alpha_init_coarse`` x step / voxel = 5e-7): with the fine stage's 1e-4
    every coarse sample would be dropped and the coarse grids would never receive a gradient."""
    background_color: Literal["white", "black"] = "white"
    loss_coefficients: Dict[str, float] = to_immutable_dict(
        {"rgb_loss": 1.0, "entropy_loss": 0.01, "rgbper_loss": 0.01, "tv_loss": 0.0}
    )
    eval_num_rays_per_chunk: int = 4096


class SpikingNeRFModel(Model):
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
                    flip=cfg.flip, alpha_init=cfg.alpha_init_fine)

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
        self.register_buffer("aabb", aabb)
        max_size = float((aabb[1] - aabb[0]).max())
        self.coarse_res = axis_resolution(aabb, cfg.coarse_resolution)
        self.coarse_voxel = max_size / (cfg.coarse_resolution - 1)
        self.fine_voxel_base = max_size / (cfg.fine_resolution - 1)  # interval unit of the fine density
        self.coarse_density = DenseGrid(1, self.coarse_res, aabb)
        self.coarse_color = DenseGrid(3, self.coarse_res, aabb)
        self.coarse_shift = density_shift(cfg.alpha_init_coarse)
        self.field = self.field_class(aabb, self.fine_resolution_at(0), **self.field_kwargs())
        # occupancy cache from the coarse stage; fixed shape so checkpoints always load
        self.register_buffer("occupancy", torch.ones(self.coarse_res, dtype=torch.bool))
        self.register_buffer("occupancy_ready", torch.tensor(False))
        self.step = 0  # plain int; set by the training callback / update_to_step
        self.lpips = build_lpips()
        # the parameters a DDP wrapper registers (nerfstudio wraps the model right after this); grids that
        # progressive up-scaling creates later are averaged across processes by _average_new_grads
        self._ddp_param_ids = {id(p) for p in self.parameters()}

    # -- schedule ---------------------------------------------------------------------------------
    @property
    def in_fine_stage(self) -> bool:
        return self.step >= self.config.coarse_steps

    def fine_resolution_at(self, step: int) -> tuple[int, int, int]:
        """Fine grid resolution at a global training step (DVGO: voxel count halves per pending scale)."""
        cfg = self.config
        n = progressive_resolution(cfg.fine_resolution, step - cfg.coarse_steps, cfg.pg_scale_steps)
        return axis_resolution(self.aabb, n)

    def fine_voxel(self) -> float:
        """Voxel size (world units, longest axis) of the fine grids at their current resolution."""
        return float((self.aabb[1] - self.aabb[0]).max()) / (max(self.field.density_grid.resolution) - 1)

    def _rescale_fine(self, step: int, optimizers: Any = None) -> None:
        rescale_grids((self.field.density_grid, self.field.feature_grid), self.fine_resolution_at(step))
        if optimizers is not None:
            sync_optimizers(optimizers, self.get_param_groups())

    def _average_new_grads(self) -> None:
        """Multi-process training: average the gradients of grids created after DDP wrapped the model."""
        average_new_grads(self.get_param_groups()["grids"], self._ddp_param_ids)

    def build_occupancy(self) -> None:
        """Binary occupancy cache from the coarse density (alpha > threshold), dilated by one voxel."""
        occ = build_occupancy_cache(lambda xyz: self.coarse_density(xyz)[..., 0], self.aabb, self.coarse_res,
                                    self.coarse_shift, self.config.step_ratio, self.config.occupancy_threshold)
        self.occupancy.copy_(occ)
        self.occupancy_ready.fill_(True)

    def _set_step(self, step: int, optimizers: Any = None) -> None:
        cfg = self.config
        if step >= cfg.coarse_steps and not bool(self.occupancy_ready) and cfg.coarse_steps > 0:
            self.build_occupancy()
        self.step = int(step)
        self._rescale_fine(step, optimizers)

    def update_to_step(self, step: int) -> None:
        """Checkpoint loading: grids take the resolution they had at ``step`` before the state loads."""
        self.step = int(step)
        self._rescale_fine(step)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        def set_step(step: int) -> None:
            self._set_step(step, training_callback_attributes.optimizers)

        opts = getattr(training_callback_attributes.optimizers, "optimizers", {})
        if "grids" in opts:
            opts["grids"].register_step_pre_hook(lambda *_: self._average_new_grads())

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
        """Samples every ``step_ratio`` voxels of the current stage inside the box and, in the fine stage,
        the occupancy cache (:func:`~.sampling.sample_along_rays`); returns them and the step (world units)."""
        step = self.config.step_ratio * (self.fine_voxel() if fine else self.coarse_voxel)
        occ = self.occupancy if (fine and bool(self.occupancy_ready)) else None
        return sample_along_rays(origins, dirs, self.aabb, step, self.config.near_plane, occ), step

    def sample_alpha(self, xyz: Tensor, valid: Tensor, step: float, fine: bool) -> Tensor:
        """Alpha ``[R, S]`` of the valid samples (zero elsewhere) from the stage's density grid; never spikes."""
        alpha = xyz.new_zeros(valid.shape)
        if fine:
            alpha[valid] = density_to_alpha(self.field.density_raw(xyz[valid]), self.field.shift,
                                            step / self.fine_voxel_base)
        else:
            alpha[valid] = density_to_alpha(self.coarse_density(xyz[valid])[..., 0], self.coarse_shift,
                                            step / self.coarse_voxel)
        return alpha

    def sample_color(self, xyz: Tensor, dirs: Tensor, keep: Tensor, marched: Marched,
                     fine: bool) -> tuple[Tensor, ColorStats | None]:
        """Colour ``[R, S, 3]`` of the kept samples: the field's colour network (fine) or the coarse RGB grid."""
        if fine:
            return self.field.color(xyz, dirs, keep, time_index=marched.index)
        rgb_s = xyz.new_zeros(*keep.shape, 3)
        rgb_s[keep] = torch.sigmoid(self.coarse_color(xyz[keep]))
        return rgb_s, None

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Render a ray bundle ``[R]``: every output is ``[R, k]`` (so chunked camera renders can stack them)."""
        cfg = self.config
        origins = ray_bundle.origins.reshape(-1, 3)
        dirs = ray_bundle.directions.reshape(-1, 3)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        fine = self.in_fine_stage
        marched, step = self.sample(origins, dirs, fine)
        t, valid = marched.t, marched.valid  # [R, S'] the kept samples of each ray, near -> far
        xyz = origins[:, None] + dirs[:, None] * t[..., None]
        alpha = self.sample_alpha(xyz, valid, step, fine)
        keep, weights = sample_masks(alpha, valid, cfg.alpha_threshold if fine else cfg.coarse_threshold,
                                     cfg.weight_threshold if fine else cfg.coarse_threshold)
        rgb_s, stats = self.sample_color(xyz, dirs, keep, marched, fine)
        out = composite(weights, rgb_s, t, background_rgb(cfg.background_color, rgb_s))
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
            outputs["_stats"] = stats  # type: ignore[assignment]
            outputs["_xyz"], outputs["_keep"], outputs["_dirs"] = xyz, keep, dirs  # for distillation losses
        return outputs

    def sigma(self, xyz: Tensor) -> Tensor:
        """Fine volume density per world unit ``[N]`` at points ``[N, 3]``."""
        return self.field.density(xyz) / self.fine_voxel_base

    @torch.no_grad()
    def query_points(self, xyz: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher interface: fine density per world unit ``[N]`` and colour ``[N, 3]`` at points ``[N, 3]``
        with directions ``[N, 3]`` (each point its own one-sample ray)."""
        n = xyz.shape[0]
        rgb, _ = self.field.color(xyz[:, None], dirs, torch.ones(n, 1, dtype=torch.bool, device=xyz.device))
        return self.sigma(xyz), rgb[:, 0]

    def _per_ray_ops(self, stats: ColorStats, n_col: Tensor) -> Dict[str, Tensor]:
        """Per-ray op counts ``[R, 1]``: MACs and SOPs of this network, MACs of the ANN twin."""
        f = self.field
        ann = n_col * f.ann_macs_per_sample()
        if not f.spiking:
            return {"ray_macs": ann, "ray_sops": torch.zeros_like(n_col), "ray_ann_macs": ann,
                    "ray_spikes": torch.zeros_like(n_col)}
        macs = n_col * (f.in_dim * f.hidden_dim)
        out = {"ray_macs": macs, "ray_sops": stats.ray_sops[:, None].to(n_col.dtype), "ray_ann_macs": ann,
               "ray_spikes": stats.ray_spikes[:, None].to(n_col.dtype)}
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
        c = self.config.loss_coefficients
        gt = self._gt(batch, outputs["rgb"])
        loss = {"rgb_loss": c.get("rgb_loss", 1.0) * F.mse_loss(outputs["rgb"], gt)}
        if c.get("entropy_loss", 0.0) > 0:  # DVGO: push accumulation to 0 or 1 (clean background)
            pout = (1.0 - outputs["accumulation"]).clamp(1e-6, 1 - 1e-6)
            ent = -(pout * torch.log(pout) + (1 - pout) * torch.log(1 - pout)).mean()
            loss["entropy_loss"] = c["entropy_loss"] * ent
        if c.get("rgbper_loss", 0.0) > 0 and "_weights" in outputs:  # per-point colour loss
            per = ((outputs["_sample_rgb"] - gt[:, None, :3]) ** 2).sum(-1)
            loss["rgbper_loss"] = c["rgbper_loss"] * (per * outputs["_weights"]).sum(1).mean()
        if c.get("tv_loss", 0.0) > 0:
            grids = ((self.field.density_grid, self.field.feature_grid) if self.in_fine_stage
                     else (self.coarse_density, self.coarse_color))
            loss["tv_loss"] = c["tv_loss"] * sum(g.total_variation() for g in grids)
        return loss

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        rgb, gt, metrics = image_quality_of(outputs, batch, self.config.background_color, self.lpips)
        num_rays = rgb.shape[0] * rgb.shape[1]
        n_col = float(outputs["num_color_samples"].sum())
        if "ray_macs" in outputs:
            metrics.update(image_op_metrics(outputs, num_rays))
            if self.field.spiking and n_col > 0:
                neurons = n_col * self.field.hidden_dim
                metrics["firing_rate"] = float(outputs["ray_spikes"].sum()) / (2 * neurons)
                for k in ("lif1", "lif2"):
                    metrics[f"firing_rate_{k}"] = float(outputs[f"ray_spikes_{k}"].sum()) / neurons
        metrics["color_samples_per_ray"] = n_col / num_rays
        return metrics, render_images(outputs, rgb, gt)
