"""SpikingNeRF-T on nerfstudio: TensoRF's VM-split planes with the package's spiking colour net.

- :class:`SpikingNeRFTField`: the colour half, :class:`~.field.SpikingNeRFField`'s colour net (its LIF layers,
  :meth:`~.field.SpikingNeRFField.layout` / ``spiking_net`` / ``_spiking_rows``, :func:`~.field.color_stats`)
  reading TensoRF's 150 inputs (:func:`~.tensorf.tensorf_color_input`) instead of a feature grid; the
  VM-split backbone (:class:`~.tensorf.TensoRFBackbone`) gives the real-valued density and features.
- :class:`SpikingNeRFTModel`: TensoRF's training loop as nerfstudio callbacks (alpha mask, shrink,
  up-sampling, learning rates with their reset, L1 / TV weights from :class:`~.tensorf_render.TensoRFSchedule`)
  around :func:`~.tensorf_render.render_tensorf`, for bounded (Blender) and NDC (``llff-data``) scenes.

As the official ``MLPRender_Fea_Spiking`` (``SpikingNeRF-T/models/tensorBase.py``): ``Linear(150 -> 128)``,
LIF, ``Linear(128 -> 128)``, LIF, ``Linear(128 -> 3)``, sigmoid, no bias anywhere (SpikingJelly's ``layer.Linear
(..., bias=False)``), LIF ``tau = 2``, hard reset to 0, detached reset, SpikingJelly's default sigmoid
surrogate; the ANN twin (``MLPRender_Fea``) has ReLU instead. The colour net sees only the samples whose
rendering weight passes ``1e-4`` after the alpha mask, condensed (each ray's samples at consecutive time steps
near -> far, the ``condensing`` time layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE

from .contraction import looks_unbounded
from .export import NerfstudioToolsMixin
from .field import ColorStats, SpikingNeRFField, color_stats
from .grid_training import sync_optimizers
from .metrics import (batch_op_metrics, build_lpips, ground_truth, image_firing_rates, image_op_metrics,
                      image_quality_of, psnr, ray_spike_outputs, render_images)
from .ndc import ndc_rays_for_marching, ndc_t_to_world_t
from .rendering import background_rgb
from .tensorf import TensoRFBackbone, n_to_reso, tensorf_color_input
from .tensorf_render import LEGO, LLFF, TensoRFSchedule, render_tensorf
from .time_layout import PackMode

__all__ = ["SpikingNeRFTField", "SpikingNeRFTModelConfig", "SpikingNeRFTModel"]


class SpikingNeRFTField(SpikingNeRFField):
    """TensoRF's backbone and the package's colour net on its 150 inputs (one spiking colour path).

    The parent's voxel grids are removed (the VM planes replace them); ``fc1`` reads the whole
    ``[features, viewdirs, PE(features), PE(viewdirs)]`` row per sample, in the official column order, so
    :meth:`first_layer` is ``fc1`` of the input and everything after it is the parent's.

    Args:
        backbone: the VM-split planes (:class:`~.tensorf.TensoRFBackbone`).
        spiking: LIF colour net (True) or the ReLU twin.
        hidden_dim / tau / v_threshold / reset / surrogate / detach_reset: the colour neurons
            (:class:`~.field.SpikingNeRFField`); the defaults are the official code's.
        pack_mode: time layout of the kept samples (``condensing``: the official ``condenser``).
        feat_pe / view_pe: frequencies of TensoRF's encodings of the features and the view direction (2, 2).
        color_bias: biases in fc2 / fc3 (the official nets have none).
    """

    def __init__(self, backbone: TensoRFBackbone, spiking: bool = True, hidden_dim: int = 128, tau: float = 2.0,
                 v_threshold: float = 1.0, reset: str = "hard", surrogate: str = "sigmoid", detach_reset: bool = True,
                 pack_mode: PackMode = "condensing", flip: bool = False, feat_pe: int = 2, view_pe: int = 2,
                 color_bias: bool = False) -> None:
        app_dim = backbone.basis_mat.out_features
        # in_dim = feature part + the parent's direction part (3 (1 + 2 view_pe)): 27 * 5 + 3 * 5 = 150
        super().__init__(backbone.aabb, (2, 2, 2), feature_channels=app_dim * (1 + 2 * feat_pe), hidden_dim=hidden_dim,
                         dir_freqs=view_pe, spiking=spiking, tau=tau, v_threshold=v_threshold, pack_mode=pack_mode,
                         flip=flip, color_bias=color_bias, neuron="lif", reset=reset, surrogate=surrogate,
                         detach_reset=detach_reset)
        del self.density_grid, self.feature_grid, self.aabb  # the VM planes hold the scene (and its box)
        self.backbone = backbone
        self.feat_pe, self.view_pe = int(feat_pe), int(view_pe)

    def colour_net_inputs(self, xyz: Tensor, dirs: Tensor) -> Tensor:
        """The ``[N, 150]`` inputs (:func:`~.tensorf.tensorf_color_input`) of samples at world points ``xyz``
        ``[N, 3]`` (NDC points on NDC scenes) read with unit view directions ``dirs`` ``[N, 3]``: the VM planes'
        appearance features, the direction and both encodings."""
        return tensorf_color_input(self.backbone.app_features(xyz), dirs, self.feat_pe, self.view_pe)

    def colour_net_input_parts(self) -> List[Dict[str, Any]]:
        """The blocks of :meth:`colour_net_inputs` in order (the official column order), as the parent's."""
        app = self.backbone.basis_mat.out_features
        pe = "sin(2^k x_d) for every d and k < freqs (d slowest), then cos(2^k x_d) likewise (TensoRF's " \
             "positional_encoding: no copy of x)"
        return [{"name": "features", "size": app,
                 "from": "TensoRF appearance: basis_mat(VM plane x line products at the point normalised to the "
                         "aabb)"},
                {"name": "view direction", "size": 3, "from": "the unit ray direction (world, also on NDC scenes)"},
                {"name": "PE(features)", "size": 2 * self.feat_pe * app, "freqs": self.feat_pe, "formula": pe},
                {"name": "PE(view direction)", "size": 6 * self.view_pe, "freqs": self.view_pe, "formula": pe}]

    def first_layer(self, feat: Tensor, dirs: Optional[Tensor], ray_of: Tensor) -> Tensor:
        """``fc1`` of the full inputs ``feat`` ``[N, 150]`` (the direction is already in each row)."""
        return self.fc1(feat)

    def color_inputs(self, inputs: Tensor, keep: Tensor) -> Tuple[Tensor, ColorStats]:
        """Colour ``[K, 3]`` of the kept samples from their inputs ``[K, 150]`` (row-major order of ``keep``
        ``[R, S]``: ray by ray, near -> far) and the pass's :class:`~.field.ColorStats`.

        The spiking net runs the parent's ``spiking_net`` on the layout of ``keep`` (condensing: each ray's
        kept samples are its time steps 0, 1, ... near -> far); the twin runs the same layers with ReLU."""
        R = keep.shape[0]
        r_of = keep.nonzero(as_tuple=True)[0]
        n = int(r_of.numel())
        ann_macs = float(n * self.ann_macs_per_sample())
        if not self.spiking:
            rgb = torch.sigmoid(self.fc3(F.relu(self.fc2(F.relu(self.fc1(inputs))))))
            return rgb, color_stats(r_of, R, [], [], [], 1, ann_macs, ann_macs, 1.0)
        training = torch.is_grad_enabled() and inputs.requires_grad
        layout = self.layout(keep, None, training)
        fanouts = [reader.out_features for _, reader in self.lif_layers()]
        widths = [self.hidden_dim] * len(fanouts)
        logits, events, nonzero = self._spiking_rows(inputs, None, r_of, layout, training)  # type: ignore[arg-type]
        macs = float(n * self.in_dim * self.hidden_dim)  # fc1 reads real values; fc2 / fc3 read spikes
        return torch.sigmoid(logits), color_stats(r_of, R, events, fanouts, widths, layout.steps_per_sample, macs,
                                                  ann_macs, layout.density, nonzero)

    def empty_stats(self, num_rays: int, device: torch.device) -> ColorStats:
        """The :class:`~.field.ColorStats` of a pass where no sample reached the colour net."""
        r_of = torch.zeros(0, dtype=torch.long, device=device)
        fanouts = [reader.out_features for _, reader in self.lif_layers()] if self.spiking else []
        empty = [torch.zeros(0, device=device)] * len(fanouts)
        return color_stats(r_of, num_rays, empty, fanouts, [self.hidden_dim] * len(fanouts), 1, 0.0, 0.0, 0.0)


@dataclass
class SpikingNeRFTModelConfig(ModelConfig):
    """SpikingNeRF-T (TensoRF VM-split + spiking appearance net) and its ANN twin (``spiking=False``).

    Scene kinds, from the data parser's metadata (``scene="auto"``):

    - ``ndc`` (``llff-data`` puts ``scene_kind = "ndc"`` in it): rays are mapped to NDC
      (:func:`~.ndc.ndc_rays_for_marching`, unit NDC directions) and marched through the parser's NDC box;
      the colour net reads the world view direction (as NeRF / DVGO; TensoRF reads the NDC one), depth is
      the world distance; the schedule is ``ndc_tensorf`` (TensoRF's ``flower.txt``: relu density,
      (16, 4, 4) / (48, 12, 12) components, TV), black background.
    - ``bounded`` (every other parser): the planes span the parser's scene box (Blender), schedule
      ``tensorf`` (TensoRF's ``lego.txt``), white background.
    - unbounded inward-facing captures (``colmap``, ``nerfstudio-data``) are treated as bounded, as TensoRF
      itself does: the planes span the parser's box and everything outside it is background (a warning says
      so when most training cameras sit inside the box). For those use ``spikingnerf-capture``.

    Learning rates: set by the model every step (TensoRF's decay ``lr_decay_ratio`` over ``num_steps``, reset
    after each up-sampling), so the optimisers carry no scheduler.
    """

    _target: Type = field(default_factory=lambda: SpikingNeRFTModel)
    enable_collider: bool = False
    """The model places its samples itself (ray/box intersection)."""
    scene: Literal["auto", "bounded", "ndc"] = "auto"
    """``auto``: ``ndc`` when the data parser says ``scene_kind = "ndc"`` (``llff-data``), else ``bounded``."""
    tensorf: TensoRFSchedule = field(default_factory=lambda: replace(LEGO))
    """TensoRF schedule of bounded scenes (its ``configs/lego.txt``)."""
    ndc_tensorf: TensoRFSchedule = field(default_factory=lambda: replace(LLFF))
    """TensoRF schedule of NDC scenes (its ``configs/flower.txt``)."""
    spiking: bool = True
    """LIF colour net (SpikingNeRF-T) or the ReLU twin."""
    hidden_dim: int = 128
    tau: float = 2.0
    v_threshold: float = 1.0
    reset: Literal["hard", "soft"] = "hard"
    """SpikingJelly's ``LIFNode`` default (``v_reset = 0``), as the official code."""
    surrogate: str = "sigmoid"
    """SpikingJelly's default surrogate (the official code names none)."""
    detach_reset: bool = True
    pack_mode: Literal["padding", "condensing"] = "condensing"
    """The official code condenses (each ray's kept samples at consecutive time steps)."""
    color_bias: bool = False
    """Biases in fc2 / fc3 (the official nets, spiking and ReLU, have none)."""
    near_plane: float = 0.05
    """Bounded scenes: no sample closer than this to the camera (TensoRF's Blender ``near_far[0]`` is 2)."""
    background_color: Literal["auto", "white", "black"] = "auto"
    """``auto``: white on bounded scenes (Blender), black on NDC ones (TensoRF's ``white_bkgd`` per dataset)."""
    eval_num_rays_per_chunk: int = 4096


class SpikingNeRFTModel(NerfstudioToolsMixin, Model):
    """SpikingNeRF-T: see the module docstring; :meth:`render_rays` is one batch of rays."""

    config: SpikingNeRFTModelConfig

    # -- construction -----------------------------------------------------------------------------
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        metadata = self.kwargs.get("metadata") or {}
        kind = cfg.scene if cfg.scene != "auto" else ("ndc" if metadata.get("scene_kind") == "ndc" else "bounded")
        if kind == "ndc" and not {"ndc_near", "ndc_focal", "ndc_hw"} <= set(metadata):
            raise ValueError("scene 'ndc' needs the data parser's ndc_near / ndc_focal / ndc_hw metadata: use "
                             "llff-data (ns-train spikingnerf-t llff-data --data <scene>)")
        self.ndc = kind == "ndc"
        self.ndc_params = (float(metadata["ndc_near"]), float(metadata["ndc_focal"]),
                           tuple(int(v) for v in metadata["ndc_hw"])) if self.ndc else None
        self.schedule: TensoRFSchedule = cfg.ndc_tensorf if self.ndc else cfg.tensorf
        sc = self.schedule
        bg = cfg.background_color if cfg.background_color != "auto" else ("black" if self.ndc else "white")
        self.background_color = bg
        aabb = self.scene_box.aabb.detach().clone().float()
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"scene box must have positive extent, got {aabb.tolist()}")
        backbone = TensoRFBackbone(aabb, n_to_reso(sc.n_voxel_init, aabb), sc.density_components, sc.app_components,
                                   activation=sc.activation, step_ratio=sc.step_ratio,
                                   alpha_mask_threshold=sc.alpha_mask_threshold)
        self.field = SpikingNeRFTField(backbone, spiking=cfg.spiking, hidden_dim=cfg.hidden_dim, tau=cfg.tau,
                                       v_threshold=cfg.v_threshold, reset=cfg.reset, surrogate=cfg.surrogate,
                                       detach_reset=cfg.detach_reset, pack_mode=cfg.pack_mode,
                                       color_bias=cfg.color_bias)
        # the last step whose TensoRF rules (alpha mask, shrink, up-sampling) have run: saved with the
        # checkpoint, so a resumed run neither repeats nor skips one
        self.register_buffer("rules_done_step", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("mask_resolution", torch.zeros(3, dtype=torch.long))  # 0: no alpha mask yet
        self.step = 0
        self.lpips = build_lpips()

    @property
    def backbone(self) -> TensoRFBackbone:
        return self.field.backbone

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """``grids``: the planes and lines (TensoRF's ``lr_init``); ``mlp``: ``basis_mat`` and the colour net
        (``lr_basis``)."""
        b = self.backbone
        grids = list(b.density.parameters()) + list(b.app.parameters())
        ids = {id(p) for p in grids}
        return {"grids": grids, "mlp": [p for p in self.field.parameters() if id(p) not in ids]}

    # -- TensoRF's training rules -------------------------------------------------------------------
    def apply_rules(self, step: int) -> bool:
        """TensoRF's end-of-iteration rules of ``step``: alpha-mask update (and, at the first one, the shrink
        to the mask's box), then the up-sampling. True when the planes changed (new Parameters)."""
        sc, b = self.schedule, self.backbone
        changed = False
        if step in sc.alpha_mask_steps:
            cur = [int(r) for r in b.resolution]
            prev = self.mask_resolution.tolist() if int(self.mask_resolution[0]) > 0 else None
            res = sc.mask_resolution(cur, prev)
            self.mask_resolution.copy_(torch.tensor(res, device=self.mask_resolution.device))
            box = b.update_alpha_mask(res)
            if step == sc.alpha_mask_steps[0]:
                b.shrink(box)
                changed = True
                CONSOLE.log(f"spikingnerf-t: step {step}: alpha mask {res}, box shrunk to {box.tolist()} "
                            f"(grid {list(b.resolution)})")
        if step in sc.upsample_steps:
            res = sc.resolution_after(step, b.aabb)
            b.upsample(res)
            changed = True
            CONSOLE.log(f"spikingnerf-t: step {step}: planes up-sampled to {res}")
        return changed

    def _set_step(self, step: int, optimizers: Any = None) -> None:
        """Before training step ``step``: the rules of every earlier step not yet applied, the optimisers
        pointed at the current planes, and TensoRF's learning rates."""
        self.step = int(step)
        done = int(self.rules_done_step)
        for s in sorted(set(self.schedule.alpha_mask_steps) | set(self.schedule.upsample_steps)):
            if done < s < step:
                self.apply_rules(s)
        if step - 1 > done:
            self.rules_done_step.fill_(step - 1)
        if optimizers is not None:
            sync_optimizers(optimizers, self.get_param_groups())  # no-op unless planes were replaced / loaded
            for name, opt in getattr(optimizers, "optimizers", {}).items():
                for group in opt.param_groups:
                    group["lr"] = self.schedule.lr(step, grid=name == "grids")

    def update_to_step(self, step: int) -> None:
        """Checkpoint loading: the planes take the checkpoint's shapes in the load itself (their pre-hook)."""
        self.step = int(step)

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes
                               ) -> List[TrainingCallback]:
        outputs = getattr(getattr(training_callback_attributes.pipeline, "datamanager", None),
                          "train_dataparser_outputs", None)
        if outputs is not None and not self.ndc and looks_unbounded(
                outputs.cameras.camera_to_worlds[..., :3, 3].to(self.backbone.aabb.device), self.scene_box.aabb):
            CONSOLE.log("[yellow]spikingnerf-t: the training cameras sit inside the scene box (an unbounded "
                        "capture?): it is treated as bounded, everything outside the box is background. "
                        "spikingnerf-capture models such scenes.")
        opts = training_callback_attributes.optimizers
        return [TrainingCallback(where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                                 update_every_num_iters=1, func=lambda step: self._set_step(step, opts))]

    # -- rendering --------------------------------------------------------------------------------
    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        origins = ray_bundle.origins.reshape(-1, 3)
        dirs = ray_bundle.directions.reshape(-1, 3)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return self.render_rays(origins, dirs)

    def colour_net(self) -> SpikingNeRFTField:
        """What colours the kept samples: the field (its :meth:`~SpikingNeRFTField.colour_net_inputs` and
        :meth:`~SpikingNeRFTField.color_inputs`). The seam :mod:`~.nir_replay` swaps for a render; the grid model
        has the same one."""
        return self.field

    def render_rays(self, origins: Tensor, dirs: Tensor) -> Dict[str, Any]:
        """Outputs ``[R, k]`` of rays ``origins`` / unit ``dirs`` ``[R, 3]`` (:func:`~.tensorf_render.
        render_tensorf`): ``rgb``, ``depth`` (world distance), ``accumulation``, ``spike_rate``,
        ``num_color_samples`` and the per-ray op counters; in training also ``_stats``."""
        sc, b = self.schedule, self.backbone
        R = origins.shape[0]
        march_o, march_d, viewdirs, far = origins, dirs, None, 1e10
        near = self.config.near_plane
        if self.ndc_params is not None:
            ndc_near, focal, (h, w) = self.ndc_params
            rays = ndc_rays_for_marching(h, w, focal, ndc_near, origins, dirs)
            # a ray that never reaches the near plane marches from behind the NDC box, away from it: empty
            away = torch.tensor([0.0, 0.0, -1.0], dtype=dirs.dtype, device=dirs.device)
            march_o = torch.where(rays.valid[:, None], rays.origins, 2.0 * away)
            march_d = torch.where(rays.valid[:, None], rays.directions, away)
            viewdirs, near = dirs, 0.0
        jitter = torch.rand(R, device=origins.device, dtype=origins.dtype) if self.training else None
        n_samples = min(sc.max_samples, b.n_samples)
        holder: Dict[str, ColorStats] = {}

        net = self.colour_net()

        def color_fn(inputs: Tensor, keep: Tensor) -> Tensor:
            rgb, holder["stats"] = net.color_inputs(inputs, keep)
            return rgb

        bg = background_rgb(self.background_color, origins)
        out = render_tensorf(b, color_fn, march_o, march_d, near, far, n_samples, bg, sc.distance_scale,
                             sc.weight_threshold, jitter, viewdirs=viewdirs, color_inputs=net.colour_net_inputs)
        stats = holder.get("stats") or self.field.empty_stats(R, origins.device)
        depth = out.depth
        if self.ndc_params is not None:  # NDC distance r along the unit NDC ray -> t' = r / |d'| -> world t
            t_world = ndc_t_to_world_t((out.t / rays.length[:, None]).clamp(max=1.0 - 1e-6), origins, dirs,
                                       self.ndc_params[0])
            depth = (out.weights * t_world).sum(1, keepdim=True) / out.accumulation.clamp_min(1e-10)
        n_col = out.keep.sum(1, keepdim=True).to(out.rgb.dtype)
        outputs: Dict[str, Any] = {
            "rgb": out.rgb, "depth": depth, "accumulation": out.accumulation,
            "spike_rate": (stats.ray_spikes / stats.ray_neurons.clamp_min(1.0))[:, None].to(out.rgb.dtype),
            "num_color_samples": n_col,
        }
        outputs.update(self._per_ray_ops(stats, n_col))
        if self.training:
            outputs["_stats"] = stats
        return outputs

    def _per_ray_ops(self, stats: ColorStats, n_col: Tensor) -> Dict[str, Tensor]:
        """Per-ray op counts ``[R, 1]`` (fc1 per sample, ``150 x H``, as the official ``add_counter`` and the
        papers count): ``ray_macs`` / ``ray_sops`` of this net, ``ray_ann_macs`` of the twin on the same
        samples, spikes per LIF layer."""
        f = self.field
        ann = n_col * f.ann_macs_per_sample()
        if not f.spiking:
            zero = torch.zeros_like(n_col)
            return {"ray_macs": ann, "ray_sops": zero, "ray_ann_macs": ann, "ray_spikes": zero}
        return {"ray_macs": n_col * (f.in_dim * f.hidden_dim), "ray_sops": stats.ray_sops[:, None].to(n_col.dtype),
                "ray_ann_macs": ann, **ray_spike_outputs(stats, n_col)}

    @torch.no_grad()
    def world_density(self, xyz: Tensor) -> Tensor:
        """Density ``[N]`` at world points ``[N, 3]`` (bounded scenes; ``ns-export`` normals): zero outside
        the box and the alpha mask."""
        b = self.backbone
        sigma = xyz.new_zeros(xyz.shape[0])
        inside = ((xyz >= b.aabb[0]) & (xyz <= b.aabb[1])).all(-1)
        inside[inside.clone()] = b.alpha_mask.keep(xyz[inside])
        if bool(inside.any()):
            sigma[inside] = b.feature2density(b.density_features(xyz[inside])) * self.schedule.distance_scale
        return sigma

    def forward(self, ray_bundle: RayBundle) -> Dict[str, Any]:  # type: ignore[override]
        if self.ndc:  # normals by the world density need world points; the NDC planes do not hold them
            return Model.forward(self, ray_bundle)
        return super().forward(ray_bundle)

    # -- losses / metrics ---------------------------------------------------------------------------
    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Any]:
        gt = ground_truth(batch, outputs["rgb"], self.background_color)
        metrics: Dict[str, Any] = {"psnr": psnr(outputs["rgb"], gt)}
        if outputs.get("_stats") is not None:
            metrics.update(batch_op_metrics(outputs["_stats"], outputs["rgb"].shape[0]))
        return metrics

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor], metrics_dict=None) -> Dict[str, Tensor]:
        """TensoRF's losses: MSE, density L1 (``L1_weight_inital`` / ``_rest``), TV of the density and
        appearance planes (weights decayed as the learning rate)."""
        sc, b = self.schedule, self.backbone
        gt = ground_truth(batch, outputs["rgb"], self.background_color)
        loss = {"rgb_loss": F.mse_loss(outputs["rgb"], gt)}
        w_l1 = sc.l1_weight(self.step)
        if w_l1 > 0:
            loss["l1_loss"] = w_l1 * b.l1_loss()
        w_tvd, w_tva = sc.tv_weights(self.step)
        if w_tvd > 0 or w_tva > 0:
            tv_d, tv_a = b.tv_loss()
            if w_tvd > 0:
                loss["tv_density"] = w_tvd * tv_d
            if w_tva > 0:
                loss["tv_app"] = w_tva * tv_a
        return loss

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
                                     ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        rgb, gt, metrics = image_quality_of(outputs, batch, self.background_color, self.lpips)
        num_rays = rgb.shape[0] * rgb.shape[1]
        n_col = float(outputs["num_color_samples"].sum())
        metrics.update(image_op_metrics(outputs, num_rays))
        if self.field.spiking and n_col > 0:
            metrics.update(image_firing_rates(outputs, n_col, self.field.hidden_dim, len(self.field.lif_layers())))
        metrics["color_samples_per_ray"] = n_col / num_rays
        metrics["grid_resolution_x"] = float(self.backbone.resolution[0])
        return metrics, render_images(outputs, rgb, gt)

