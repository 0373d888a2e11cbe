"""SpikingNeRF model (Yao et al. 2023) on nerfstudio: DVGO coarse stage, then a spiking fine stage.

Coarse stage (``step < coarse_steps``): density grid + direct RGB grid (DVGO coarse, no network); at its end
its density is turned into a binary occupancy cache. Fine stage: density + feature grids with progressive
up-scaling and the colour network of :class:`~spikenerf.nerf.field.SpikingNeRFField`, where each ray is one
SNN sequence and each sample one time step. Masked samples (outside the box, unoccupied, low alpha, low
weight) never reach the colour network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps

from .energy import E_MAC_PJ, energy_pj
from .field import SpikingNeRFField, grid_resolution, make_grid, density_shift
from .grid import Marched, march
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


def _axis_resolution(aabb: Tensor, n: int) -> tuple[int, int, int]:
    """Vertices per axis with ``n`` along the longest one and (about) cubic voxels."""
    size = (aabb[1] - aabb[0]).tolist()
    m = max(size)
    return tuple(max(2, int(round((n - 1) * s / m)) + 1) for s in size)  # type: ignore[return-value]


def _build_lpips() -> Optional[nn.Module]:
    """torchmetrics' LPIPS, only when its AlexNet weights are already in the torch hub cache.

    Building it otherwise tries a download (no network here: it fails or stalls); LPIPS is then reported
    as NaN instead of crashing the run like nerfstudio's own models do offline.
    """
    import os

    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    if not (os.path.isdir(cache) and any(f.startswith("alexnet-owt") for f in os.listdir(cache))):
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception:
        return None


def image_quality(rgb: Tensor, gt: Tensor, lpips: Optional[nn.Module]) -> Dict[str, float]:
    """PSNR, SSIM and LPIPS of one ``[H, W, 3]`` image in [0, 1] (shared by every spikenerf model).

    ns-eval averages every value as a number, so an unavailable LPIPS is NaN plus ``lpips_available = 0``.
    """
    from torchmetrics.functional import structural_similarity_index_measure

    a, b = gt.permute(2, 0, 1)[None], rgb.permute(2, 0, 1)[None]
    metrics: Dict[str, float] = {
        "psnr": float(-10.0 * torch.log10(F.mse_loss(rgb, gt).clamp_min(1e-10))),
        "ssim": float(structural_similarity_index_measure(b, a, data_range=1.0)),
        "lpips": float("nan"),
        "lpips_available": 0.0,
    }
    if lpips is not None:
        try:
            metrics["lpips"] = float(lpips(a, b))
            metrics["lpips_available"] = 1.0
        except Exception:  # e.g. an image smaller than AlexNet's receptive field
            pass
    return metrics


class SpikingNeRFModel(Model):
    """SpikingNeRF (and its ANN twin with ``spiking=False``)."""

    config: SpikingNeRFModelConfig

    # -- construction -----------------------------------------------------------------------------
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
        self.coarse_res = _axis_resolution(aabb, cfg.coarse_resolution)
        self.coarse_voxel = max_size / (cfg.coarse_resolution - 1)
        self.fine_voxel_base = max_size / (cfg.fine_resolution - 1)  # interval unit of the fine density
        self.coarse_density = make_grid(1, self.coarse_res, aabb)
        self.coarse_color = make_grid(3, self.coarse_res, aabb)
        self.coarse_shift = density_shift(cfg.alpha_init_coarse)
        self.field = SpikingNeRFField(
            aabb,
            self.fine_resolution_at(0),
            feature_channels=cfg.feature_channels,
            hidden_dim=cfg.hidden_dim,
            dir_freqs=cfg.dir_freqs,
            spiking=cfg.spiking,
            tau=cfg.tau,
            v_threshold=cfg.v_threshold,
            pack_mode=cfg.pack_mode,
            flip=cfg.flip,
            alpha_init=cfg.alpha_init_fine,
        )
        # occupancy cache from the coarse stage; fixed shape so checkpoints always load
        self.register_buffer("occupancy", torch.ones(self.coarse_res, dtype=torch.bool))
        self.register_buffer("occupancy_ready", torch.tensor(False))
        self.step = 0  # plain int; set by the training callback / update_to_step
        self.lpips = _build_lpips()
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
        fine_step = step - cfg.coarse_steps
        pending = sum(1 for s in cfg.pg_scale_steps if fine_step < s)
        n = (cfg.fine_resolution - 1) * 2.0 ** (-pending / 3.0) + 1
        return _axis_resolution(self.aabb, max(2, int(round(n))))

    def _rescale_fine(self, step: int, optimizers: Any = None) -> None:
        res = self.fine_resolution_at(step)
        for grid in (self.field.density_grid, self.field.feature_grid):
            if grid_resolution(grid) != res:
                before = {name: (q, tuple(q.shape)) for name, q in grid.named_parameters()}
                grid.scale_to(res)
                for name, q in list(grid.named_parameters()):
                    old = before.get(name)
                    if old is not None and old[0] is q and old[1] != tuple(q.shape):
                        # same leaf with a new shape: autograd keeps the old shape, so re-wrap it
                        owner = grid.get_submodule(name.rpartition(".")[0]) if "." in name else grid
                        setattr(owner, name.rpartition(".")[2], nn.Parameter(q.detach()))
        if optimizers is not None:
            self._sync_optimizers(optimizers)

    def _sync_optimizers(self, optimizers: Any) -> None:
        """Point each optimiser group at the current parameters (after up-scaling or a resume).

        A replaced parameter keeps its optimiser state when the shapes still match (resume) and drops it
        otherwise (up-scaling: DVGO restarts the moments too).
        """
        opts = getattr(optimizers, "optimizers", {})
        for name, params in self.get_param_groups().items():
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
    def _average_new_grads(self) -> None:
        """Multi-process training: average the gradients of grids created after DDP wrapped the model.

        DDP all-reduces only the parameters it saw at construction, and progressive up-scaling replaces the
        fine grids with new Parameters; without this their gradients would stay per-process and the
        replicas would drift apart. Runs right before the grid optimiser steps (after backward, when DDP's
        own all-reduce is done), on every process in the same order; a missing gradient counts as zero.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        world = dist.get_world_size()
        for p in self.get_param_groups()["grids"]:
            if id(p) in self._ddp_param_ids:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(world)

    @torch.no_grad()
    def build_occupancy(self) -> None:
        """Binary occupancy cache from the coarse density (alpha > threshold), dilated by one voxel."""
        X, Y, Z = self.coarse_res
        lin = [torch.linspace(float(self.aabb[0, i]), float(self.aabb[1, i]), r, device=self.aabb.device)
               for i, r in enumerate((X, Y, Z))]
        xyz = torch.stack(torch.meshgrid(*lin, indexing="ij"), -1).reshape(-1, 3)
        raw = torch.cat([self.coarse_density(c)[..., 0] for c in xyz.split(1 << 18)])
        alpha = 1.0 - torch.exp(-F.softplus(raw + self.coarse_shift) * self.config.step_ratio)
        occ = (alpha > self.config.occupancy_threshold).float().reshape(1, 1, X, Y, Z)
        occ = F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0
        if not bool(occ.any()):  # an empty cache would blank the scene for good: keep everything
            occ = torch.ones_like(occ)
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
    def _background(self, ref: Tensor) -> Tensor:
        v = 1.0 if self.config.background_color == "white" else 0.0
        return torch.full((3,), v, dtype=ref.dtype, device=ref.device)

    def _march(self, origins: Tensor, dirs: Tensor, voxel: float, fine: bool) -> tuple[Marched, float]:
        """Uniform samples every ``step_ratio`` voxels inside the box (ray/box intersection) and, in the
        fine stage, the occupancy cache; only the kept ones come back, packed per ray (``spikenerf.nerf.grid``)."""
        step = self.config.step_ratio * voxel
        diag = float((self.aabb[1] - self.aabb[0]).norm())
        num_steps = max(1, int(math.ceil(diag / step)) + 1)
        occ = self.occupancy if (fine and bool(self.occupancy_ready)) else None
        return march(origins, dirs, self.aabb, step, num_steps, self.config.near_plane, occ), step

    @staticmethod
    def _weights(alpha: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha`` ``[R, S]`` -> weights ``[R, S]`` and the transmittance left after the last sample ``[R]``."""
        trans = torch.cumprod(1.0 - alpha + 1e-10, dim=1)
        excl = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], 1)
        return alpha * excl, trans[:, -1]

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Render a ray bundle ``[R]``: every output is ``[R, k]`` (so chunked camera renders can stack them)."""
        origins = ray_bundle.origins.reshape(-1, 3)
        dirs = ray_bundle.directions.reshape(-1, 3)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        R = origins.shape[0]
        fine = self.in_fine_stage
        voxel = (float((self.aabb[1] - self.aabb[0]).max()) / (max(grid_resolution(self.field.density_grid)) - 1)
                 if fine else self.coarse_voxel)
        marched, step = self._march(origins, dirs, voxel, fine)
        t, valid = marched.t, marched.valid  # [R, S'] the kept samples of each ray, near -> far
        xyz = origins[:, None] + dirs[:, None] * t[..., None]
        # density: looked up only where valid; never spikes
        alpha = xyz.new_zeros(valid.shape)
        if fine:
            raw = self.field.density_raw(xyz[valid])
            alpha[valid] = self.field.alpha(raw, step / self.fine_voxel_base)
        else:
            raw = self.coarse_density(xyz[valid])[..., 0]
            alpha[valid] = 1.0 - torch.exp(-F.softplus(raw + self.coarse_shift) * (step / self.coarse_voxel))
        cfg = self.config
        keep = valid & (alpha > (cfg.alpha_threshold if fine else cfg.coarse_threshold))
        weights, _ = self._weights(alpha * keep)
        keep = keep & (weights > (cfg.weight_threshold if fine else cfg.coarse_threshold))
        weights = weights * keep
        zeros = xyz.new_zeros(R, 1)
        if fine:
            rgb_s, stats = self.field.color(xyz, dirs, keep, time_index=marched.index)
            ray_rate = (stats.ray_spikes / stats.ray_neurons.clamp_min(1.0))[:, None]
        else:
            rgb_s = xyz.new_zeros(R, valid.shape[1], 3)
            rgb_s[keep] = torch.sigmoid(self.coarse_color(xyz[keep]))
            stats, ray_rate = None, zeros
        acc = weights.sum(1, keepdim=True)  # [R, 1]
        rgb = (weights[..., None] * rgb_s).sum(1) + (1.0 - acc) * self._background(rgb_s)
        depth = (weights * t).sum(1, keepdim=True) / acc.clamp_min(1e-10)
        n_col = keep.sum(1, keepdim=True).to(rgb.dtype)  # samples that reached the colour stage, per ray
        outputs: Dict[str, Tensor] = {
            "rgb": rgb,
            "depth": depth,
            "accumulation": acc,
            "spike_rate": ray_rate.to(rgb.dtype),
            "num_color_samples": n_col,
        }
        if stats is not None:
            per = self._per_ray_ops(stats, n_col)
            outputs.update(per)
        if self.training:
            outputs["_weights"] = weights  # [R, S] for the per-point colour loss
            outputs["_sample_rgb"] = rgb_s  # [R, S, 3]
            outputs["_stats"] = stats  # type: ignore[assignment]
            outputs["_xyz"], outputs["_keep"], outputs["_dirs"] = xyz, keep, dirs  # for distillation losses
        return outputs

    def _per_ray_ops(self, stats: Any, n_col: Tensor) -> Dict[str, Tensor]:
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
        image = batch["image"].to(ref.device)
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        if image.shape[:-1] != ref.shape[:-1] or image.shape[-1] not in (3, 4):
            raise ValueError(f"batch['image'] {tuple(image.shape)} does not match the rendered rgb "
                             f"{tuple(ref.shape)} (expected the same leading shape and 3 or 4 channels)")
        if image.shape[-1] == 4:  # RGBA without an alpha colour set in the parser: blend like the model
            image = image[..., :3] * image[..., 3:] + self._background(ref) * (1.0 - image[..., 3:])
        return image

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Any]:
        gt = self._gt(batch, outputs["rgb"])
        mse = F.mse_loss(outputs["rgb"], gt)
        metrics: Dict[str, Any] = {"psnr": -10.0 * torch.log10(mse.detach().clamp_min(1e-10)),
                                   "stage_fine": float(self.in_fine_stage)}
        stats = outputs.get("_stats")
        if stats is not None:
            metrics.update(self._op_metrics(stats, outputs["rgb"].shape[0]))
        return metrics

    def _op_metrics(self, stats: Any, num_rays: int) -> Dict[str, float]:
        m: Dict[str, float] = {"color_samples_per_ray": stats.num_samples / max(1, num_rays)}
        for i, (s, n) in enumerate(zip(stats.spikes_per_layer, stats.neurons_per_layer)):
            m[f"firing_rate_lif{i + 1}"] = s / n if n > 0 else 0.0
        e = energy_pj(stats.macs, stats.sops)
        e_ann = stats.ann_macs * E_MAC_PJ
        m.update({
            "macs_per_ray": stats.macs / max(1, num_rays),
            "sops_per_ray": stats.sops / max(1, num_rays),
            "energy_pj_per_ray": e / max(1, num_rays),
            "energy_reduction_vs_ann": e_ann / e if e > 0 else float("nan"),
            "tensor_density": stats.tensor_density,
        })
        return m

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

    @torch.no_grad()
    def get_outputs_for_camera_ray_bundle(self, camera_ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Chunked render of a camera ``[H, W]``; every chunk's outputs go to the input's device at once."""
        return super().get_outputs_for_camera_ray_bundle(camera_ray_bundle)

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        rgb = outputs["rgb"].clamp(0, 1)
        gt = self._gt(batch, rgb)[..., :3]
        H, W = rgb.shape[:2]
        metrics = image_quality(rgb, gt, self.lpips)
        num_rays = H * W
        n_col = float(outputs["num_color_samples"].sum())
        if "ray_macs" in outputs:
            macs = float(outputs["ray_macs"].sum())
            sops = float(outputs["ray_sops"].sum())
            ann = float(outputs["ray_ann_macs"].sum())
            e = energy_pj(macs, sops)
            metrics.update({
                "macs_per_image": macs, "sops_per_image": sops,
                "macs_per_ray": macs / num_rays, "sops_per_ray": sops / num_rays,
                "energy_uj_per_image": e * 1e-6, "energy_pj_per_ray": e / num_rays,
                "ann_energy_uj_per_image": ann * E_MAC_PJ * 1e-6,
                "energy_reduction_vs_ann": (ann * E_MAC_PJ) / e if e > 0 else float("nan"),
            })
            if self.field.spiking and n_col > 0:
                neurons = n_col * self.field.hidden_dim
                metrics["firing_rate"] = float(outputs["ray_spikes"].sum()) / (2 * neurons)
                for k in ("lif1", "lif2"):
                    metrics[f"firing_rate_{k}"] = float(outputs[f"ray_spikes_{k}"].sum()) / neurons
        metrics["color_samples_per_ray"] = n_col / num_rays
        acc = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        rate = outputs["spike_rate"]
        rate_img = colormaps.apply_colormap(rate / rate.max().clamp_min(1e-8))
        images = {"img": torch.cat([gt, rgb], 1), "accumulation": acc, "depth": depth, "spike_rate": rate_img}
        return metrics, images
