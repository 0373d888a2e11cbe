"""The original NeRF MLP as a Spik-NeRF backbone (``ns-train spiknerf-mlp`` / ``spiknerf-mlp-ann``).

Architecture (Mildenhall et al. 2020): positional encoding of the position (10 frequencies) and of the view
direction (4), a trunk of ``num_layers`` (8) fully-connected layers of width ``hidden_dim`` with the encoded
position re-injected at layer ``skip_layer`` (5, i.e. the input is concatenated to the fifth layer's output),
a density head on the trunk, a (linear) feature layer, then ``[feature, PE(dir)] -> color_hidden -> rgb``.
Hierarchical sampling: 64 coarse (uniform) + 128 fine (PDF) samples with nerfstudio's samplers, two networks.

Spiking (``spiking=True``, following Spik-NeRF, which replaces the ReLUs of the NeRF MLP by spiking neurons):
every hidden activation is a LIF neuron -- the 8 trunk layers and the colour layer -- while the density
head, the feature layer and the rgb head are real-valued read-outs (softplus density, sigmoid colour) of
spikes. The first layer and the skip input see the real-valued encoding (MACs), the colour layer sees the
real-valued feature + direction encoding (MACs); every other layer is driven by spikes (SOPs).
Time: ``repeat`` (T steps per sample, samples are the batch, read-outs averaged over T) or ``ray`` (the
samples of a ray are the time steps, as SpikingNeRF). Defaults are CPU-sized (width 64); the paper's NeRF
is ``--pipeline.model.hidden-dim 256``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.models.base_model import Model, ModelConfig

from spikenerf.snn.deploy import count_events, deployed_spikes, fold_consumer

from spikenerf.snn.energy import E_MAC_PJ, energy_pj

from .distill import TeacherMixin, distill_losses
from .field import positional_encoding
from .metrics import build_lpips, ground_truth, image_op_metrics, image_quality_of, psnr, render_images
from .rendering import density_activation
from .spiking import SpikeCodeName, make_neuron

__all__ = ["SpikingNeRFMLP", "NeRFMLPModelConfig", "NeRFMLPModel"]


class SpikingNeRFMLP(nn.Module):
    """One NeRF network (coarse or fine), spiking or ANN. Inputs/outputs are ``[T, B, ...]``."""

    def __init__(self, hidden_dim: int = 64, num_layers: int = 8, skip_layer: int = 5, color_hidden: int = 0,
                 pos_freqs: int = 10, dir_freqs: int = 4, spiking: bool = True, spike_code: str = "ternary012",
                 tau: float = 4.0, v_threshold: float = 0.5, margin: float = 1.0, decay_input: bool = False,
                 reparam: bool = True) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        W, Wc = int(hidden_dim), int(color_hidden) or max(1, int(hidden_dim) // 2)
        self.hidden_dim, self.color_hidden, self.num_layers = W, Wc, int(num_layers)
        self.pos_freqs, self.dir_freqs = int(pos_freqs), int(dir_freqs)
        self.pos_dim, self.dir_dim = 3 * (1 + 2 * self.pos_freqs), 3 * (1 + 2 * self.dir_freqs)
        self.skip_layer = int(skip_layer) if 0 < int(skip_layer) < self.num_layers else -1
        self.spiking, self.spike_code, self.reparam = bool(spiking), spike_code, bool(reparam)
        self.trunk = nn.ModuleList([nn.Linear(self.pos_dim, W)] + [nn.Linear(W, W) for _ in range(num_layers - 1)])
        # the skip's concatenation [h, PE(x)] as two Linears: the spike part and the real-valued part
        self.skip_in = nn.Linear(self.pos_dim, W, bias=False) if self.skip_layer > 0 else None
        self.density_head = nn.Linear(W, 1)
        self.feature = nn.Linear(W, W)
        self.color_in = nn.Linear(W + self.dir_dim, Wc)
        self.rgb_head = nn.Linear(Wc, 3)
        if self.spiking:
            mk = lambda: make_neuron(spike_code, tau, v_threshold, margin, decay_input)  # noqa: E731
            self.acts = nn.ModuleList([mk() for _ in range(num_layers)])
            self.color_act = mk()

    @property
    def deployed(self) -> bool:
        return self.spiking and self.reparam and not self.training

    def _act(self, node: Optional[nn.Module], x: Tensor) -> Tensor:
        if node is None:
            return F.relu(x)
        return deployed_spikes(node, x) if self.deployed else node(x)

    def _next(self, layer: nn.Linear, node: Optional[nn.Module]) -> nn.Linear:
        return fold_consumer(layer, node) if (node is not None and self.deployed) else layer

    def forward(self, pe: Tensor, de: Tensor) -> tuple[Tensor, Tensor, List[Tensor]]:
        """``pe`` ``[T, B, pos_dim]``, ``de`` ``[T, B, dir_dim]`` -> density logit ``[T, B]``, rgb logits
        ``[T, B, 3]`` and, per spiking layer, its events per batch element ``[B]`` (empty for the ANN)."""
        acts = list(self.acts) if self.spiking else [None] * self.num_layers
        cact = self.color_act if self.spiking else None
        events: List[Tensor] = []
        ones = None

        def record(node, s):
            nonlocal ones
            if node is not None:
                with torch.no_grad():
                    ones = torch.ones_like(s, dtype=torch.bool) if ones is None or ones.shape != s.shape else ones
                    events.append(count_events(self.spike_code, s, ones, self.deployed).sum((0, 2)))

        h = pe
        for i, lin in enumerate(self.trunk):
            x = lin(pe) if i == 0 else self._next(lin, acts[i - 1])(h)
            if i == self.skip_layer:
                x = x + self.skip_in(pe)
            h = self._act(acts[i], x)
            record(acts[i], h)
        dl = self._next(self.density_head, acts[-1])(h)[..., 0]
        feat = self._next(self.feature, acts[-1])(h)
        hc = self._act(cact, self.color_in(torch.cat([feat, de], -1)))
        record(cact, hc)
        return dl, self._next(self.rgb_head, cact)(hc), events

    # -- op counts ---------------------------------------------------------------------------------
    def fanouts(self) -> List[int]:
        """Accumulates driven by one event of each spiking layer (trunk layers, then the colour layer)."""
        W = self.hidden_dim
        return [W] * (self.num_layers - 1) + [W + 1, 3]

    def macs_per_sample(self, T: int) -> int:
        """MACs of the real-valued inputs per sample: PE layers once (constant over T), the colour layer x T."""
        W, Wc = self.hidden_dim, self.color_hidden
        skip = self.pos_dim * W if self.skip_in is not None else 0
        return self.pos_dim * W + skip + T * W * Wc + self.dir_dim * Wc

    def ann_macs_per_sample(self) -> int:
        W, Wc = self.hidden_dim, self.color_hidden
        skip = self.pos_dim * W if self.skip_in is not None else 0
        return (self.pos_dim * W + (self.num_layers - 1) * W * W + skip + W + W * W + (W + self.dir_dim) * Wc
                + Wc * 3)


@dataclass
class NeRFMLPModelConfig(ModelConfig):
    """Spik-NeRF on the NeRF MLP (coarse + fine networks, hierarchical sampling)."""

    _target: Type = field(default_factory=lambda: NeRFMLPModel)
    enable_collider: bool = True
    collider_params: Optional[Dict[str, float]] = to_immutable_dict({"near_plane": 2.0, "far_plane": 6.0})
    num_coarse_samples: int = 64
    num_importance_samples: int = 128
    hidden_dim: int = 64
    """Trunk width (the paper's NeRF: 256; 64 keeps CPU runs short)."""
    num_layers: int = 8
    skip_layer: int = 5
    color_hidden: int = 0
    """Width of the colour layer (0 = hidden_dim // 2, NeRF's 128 for width 256)."""
    pos_freqs: int = 10
    dir_freqs: int = 4
    spiking: bool = True
    spike_code: SpikeCodeName = "ternary012"
    tau: float = 4.0
    v_threshold: float = 0.5
    margin: float = 1.0
    decay_input: bool = False
    time_mode: Literal["repeat", "ray"] = "repeat"
    time_steps: int = 2
    reparam_inference: bool = True
    background_color: Literal["white", "black"] = "white"
    loss_coefficients: Dict[str, float] = to_immutable_dict({"rgb_loss_coarse": 1.0, "rgb_loss_fine": 1.0})
    teacher_config: Optional[Path] = None
    """config.yml of a trained ANN teacher (e.g. spiknerf-mlp-ann or spiknerf-ann); None = no distillation."""
    distill_density_weight: float = 0.5
    distill_color_weight: float = 0.5
    distill_density_space: Literal["sigma", "alpha"] = "sigma"
    eval_num_rays_per_chunk: int = 1024


class NeRFMLPModel(TeacherMixin, Model):
    """NeRF with (spiking) MLPs; outputs, metrics and energy keys as SpikingNeRF's."""

    config: NeRFMLPModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if cfg.time_mode not in ("repeat", "ray") or cfg.time_steps < 1:
            raise ValueError(f"bad time_mode/time_steps: {cfg.time_mode!r}/{cfg.time_steps}")
        aabb = self.scene_box.aabb.detach().clone().float()
        self.register_buffer("aabb", aabb)
        self.register_buffer("num_train_views", torch.tensor(int(self.num_train_data)))
        kw = dict(hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers, skip_layer=cfg.skip_layer,
                  color_hidden=cfg.color_hidden, pos_freqs=cfg.pos_freqs, dir_freqs=cfg.dir_freqs,
                  spiking=cfg.spiking, spike_code=cfg.spike_code, tau=cfg.tau, v_threshold=cfg.v_threshold,
                  margin=cfg.margin, decay_input=cfg.decay_input, reparam=cfg.reparam_inference)
        self.field_coarse = SpikingNeRFMLP(**kw)
        self.field_fine = SpikingNeRFMLP(**kw)
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_importance_samples)
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer()
        self.lpips = build_lpips()
        object.__setattr__(self, "teacher", None)  # never a registered submodule

    @property
    def T(self) -> int:
        return self.config.time_steps if (self.config.spiking and self.config.time_mode == "repeat") else 1

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": list(self.field_coarse.parameters()) + list(self.field_fine.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        self.load_teacher_if_configured()
        return []

    # -- network evaluation -------------------------------------------------------------------------
    def _encode(self, net: SpikingNeRFMLP, pos: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        center = (self.aabb[0] + self.aabb[1]) / 2
        half = ((self.aabb[1] - self.aabb[0]) / 2).max()
        pe = positional_encoding(math.pi * (pos - center) / half, net.pos_freqs)
        return pe, positional_encoding(dirs, net.dir_freqs)

    def _eval_net(self, net: SpikingNeRFMLP, pos: Tensor, dirs: Tensor) -> Dict[str, Tensor]:
        """``pos`` / ``dirs`` ``[R, S, 3]`` -> density ``[R, S, 1]``, rgb ``[R, S, 3]`` and per-ray op counts."""
        R, S = pos.shape[:2]
        pe, de = self._encode(net, pos, dirs)
        if not net.spiking:
            dl, rl, events = net(pe.reshape(1, R * S, -1), de.reshape(1, R * S, -1))
            dl, rl = dl.reshape(R, S), rl.reshape(R, S, 3)
        elif self.config.time_mode == "repeat":
            T = self.T
            dl, rl, events = net(pe.reshape(1, R * S, -1).expand(T, -1, -1), de.reshape(1, R * S, -1).expand(T, -1, -1))
            dl, rl = dl.mean(0).reshape(R, S), rl.mean(0).reshape(R, S, 3)
            events = [e.reshape(R, S).sum(1) for e in events]
        else:  # ray-aligned: the samples of a ray are the time steps
            dl, rl, events = net(pe.transpose(0, 1), de.transpose(0, 1))
            dl, rl = dl.transpose(0, 1), rl.transpose(0, 1)
        n = float(S)
        ann = pos.new_full((R,), n * net.ann_macs_per_sample())
        out = {"density": density_activation(dl, 0.0)[..., None], "rgb": torch.sigmoid(rl), "ann_macs": ann}
        if net.spiking:
            out["macs"] = pos.new_full((R,), n * net.macs_per_sample(self.T))
            out["sops"] = sum(e * f for e, f in zip(events, net.fanouts()))
            out["spikes"] = sum(events)
            out["neurons"] = pos.new_full((R,), n * self.T * (net.hidden_dim * net.num_layers + net.color_hidden))
        else:
            out["macs"], out["sops"] = ann, torch.zeros_like(ann)
            out["spikes"], out["neurons"] = torch.zeros_like(ann), torch.zeros_like(ann)
        return out

    @torch.no_grad()
    def query_points(self, xyz: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher interface: the fine network's density ``[N]`` and colour ``[N, 3]`` at points ``[N, 3]``."""
        o = self._eval_net(self.field_fine, xyz[:, None], dirs[:, None])
        return o["density"][:, 0, 0], o["rgb"][:, 0]

    def _render(self, rs: RaySamples, o: Dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w = rs.get_weights(o["density"])
        rgb = self.renderer_rgb(rgb=o["rgb"], weights=w)
        return w, rgb, self.renderer_accumulation(w), self.renderer_depth(w, rs)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        rs_c = self.sampler_uniform(ray_bundle)
        oc = self._eval_net(self.field_coarse, rs_c.frustums.get_positions(), rs_c.frustums.directions)
        w_c, rgb_c, acc_c, depth_c = self._render(rs_c, oc)
        rs_f = self.sampler_pdf(ray_bundle, rs_c, w_c)
        pos_f, dirs_f = rs_f.frustums.get_positions(), rs_f.frustums.directions
        of = self._eval_net(self.field_fine, pos_f, dirs_f)
        _, rgb_f, acc_f, depth_f = self._render(rs_f, of)
        col = lambda k: (oc[k] + of[k])[:, None]  # noqa: E731  both networks run at inference
        spikes, neurons = col("spikes"), col("neurons")
        outputs: Dict[str, Any] = {
            "rgb": rgb_f, "rgb_coarse": rgb_c, "accumulation": acc_f, "accumulation_coarse": acc_c,
            "depth": depth_f, "depth_coarse": depth_c,
            "spike_rate": spikes / neurons.clamp_min(1.0),
            "ray_macs": col("macs"), "ray_sops": col("sops"), "ray_ann_macs": col("ann_macs"),
            "ray_spikes": spikes, "ray_neurons": neurons,
        }
        if self.training:
            outputs["_xyz"], outputs["_dirs"] = pos_f.reshape(-1, 3), dirs_f.reshape(-1, 3)
            outputs["_sigma"], outputs["_sample_rgb"] = of["density"].reshape(-1), of["rgb"].reshape(-1, 3)
            outputs["_delta"] = rs_f.deltas.reshape(-1)
        return outputs

    # -- losses / metrics ----------------------------------------------------------------------------
    def _gt(self, batch: Dict[str, Tensor], ref: Tensor) -> Tensor:
        return ground_truth(batch, ref, self.config.background_color)

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Any]:
        gt = self._gt(batch, outputs["rgb"])
        m: Dict[str, Any] = {"psnr": psnr(outputs["rgb"], gt)}
        R = outputs["rgb"].shape[0]
        macs, sops = float(outputs["ray_macs"].sum()), float(outputs["ray_sops"].sum())
        e, e_ann = energy_pj(macs, sops), float(outputs["ray_ann_macs"].sum()) * E_MAC_PJ
        m.update({"energy_pj_per_ray": e / R, "energy_reduction_vs_ann": e_ann / e if e > 0 else float("nan")})
        if self.config.spiking:
            m["firing_rate"] = float(outputs["ray_spikes"].sum()) / max(1.0, float(outputs["ray_neurons"].sum()))
        return m

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor], metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config.loss_coefficients
        gt = self._gt(batch, outputs["rgb"])
        loss = {"rgb_loss_coarse": c.get("rgb_loss_coarse", 1.0) * F.mse_loss(outputs["rgb_coarse"], gt),
                "rgb_loss_fine": c.get("rgb_loss_fine", 1.0) * F.mse_loss(outputs["rgb"], gt)}
        if self.teacher is not None and "_xyz" in outputs:
            loss.update(distill_losses(self.teacher, outputs["_xyz"], outputs["_dirs"], outputs["_sigma"],
                                       outputs["_sample_rgb"], self.config.distill_density_weight,
                                       self.config.distill_color_weight, self.config.distill_density_space,
                                       outputs["_delta"]))
        return loss

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        rgb, gt, metrics = image_quality_of(outputs, batch, self.config.background_color, self.lpips)
        metrics.update(image_op_metrics(outputs, rgb.shape[0] * rgb.shape[1]))
        metrics["time_steps"] = float(self.T)
        if self.config.spiking:
            metrics["firing_rate"] = float(outputs["ray_spikes"].sum()) / max(1.0, float(outputs["ray_neurons"].sum()))
        return metrics, render_images(outputs, rgb, gt)
