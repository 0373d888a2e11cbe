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
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.models.base_model import Model, ModelConfig

from spikenerf.snn.deploy import count_events, fold_consumer
from spikenerf.snn.energy import E_MAC_PJ, energy_pj

from .distill import TeacherMixin, distill_losses
from .export import NerfstudioToolsMixin
from .field import positional_encoding
from .metrics import build_lpips, ground_truth, image_op_metrics, image_quality_of, psnr, render_images
from .rendering import density_activation, sigma_to_alpha
from .spiknerf_neuron import DeployedNeuron, SpikNeRFOptions, make_neuron, train_code_nonzero
from .time_layout import DenseBlock, Neuron, RepeatSteps, TimeLayout, choose_layout, time_steps_of

__all__ = ["SpikNeRFMLP", "NeRFMLPModelConfig", "NeRFMLPModel"]


class SpikNeRFMLP(nn.Module):
    """One NeRF network (coarse or fine) of Spik-NeRF, spiking or ANN. Inputs ``[B, C]`` (the same at every
    step) or ``[T, B, C]``; outputs ``[T, B, ...]``; the time runs on a layout of
    :mod:`~spikenerf.nerf.time_layout`."""

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
        self.count_ops = True
        """Count events / non-zero spikes per forward (set by the model: off in training unless asked)."""

    @property
    def deployed(self) -> bool:
        return self.spiking and self.reparam and not self.training

    def neuron(self, node: nn.Module) -> Neuron:
        """What the layout runs for LIF layer ``node``: its deployed view when re-parameterized."""
        return DeployedNeuron(node) if self.deployed else node

    def _next(self, layer: nn.Linear, node: Optional[nn.Module]) -> nn.Linear:
        return fold_consumer(layer, node) if (node is not None and self.deployed) else layer

    def _counts(self, s: Tensor, layout: TimeLayout) -> tuple[Tensor, Tensor]:
        """Per sample ``[B]``: deployed-code events and non-zero training-code outputs of ``s``."""
        with torch.no_grad():
            ev = layout.per_sample(count_events(self.spike_code, s, None, self.deployed))
            nz = layout.per_sample(train_code_nonzero(self.spike_code, s, self.deployed))
        return ev, nz

    def forward(self, pe: Tensor, de: Tensor, T: Optional[int] = None, density_only: bool = False,
                reference: bool = False, layout: Optional[TimeLayout] = None
                ) -> tuple[Tensor, Optional[Tensor], List[Tensor], List[Tensor]]:
        """Density logit ``[T, B]``, rgb logits ``[T, B, 3]`` (``None`` with ``density_only``) and, per spiking
        layer, its deployed-code events and its non-zero training spikes per sample ``[B]`` (empty lists
        for the ANN).

        ``layout``: where the time runs (:func:`~spikenerf.nerf.time_layout.choose_layout`); default
        :class:`~.time_layout.RepeatSteps` ``(T)`` for a ``[B, C]`` input, a :class:`~.time_layout.DenseBlock`
        for ``[T, B, C]``.

        ``pe`` ``[T, B, pos_dim]`` / ``de`` ``[T, B, dir_dim]``, or ``[B, ...]`` with ``T`` given: the input is
        repeated over the T steps (the paper's time), so the real-valued input layers (layer 1, the skip
        input, the colour layer's direction part) run once on ``[B, C]`` and are broadcast over T. Every
        spike-driven layer runs as one ``[T*B, C]`` matmul, each LIF layer as one fused scan over ``[T, B, C]``.
        ``reference=True`` repeats the input first and runs every layer on the repeated block (the plain form
        the fast path is tested against).
        """
        if layout is None:
            if pe.dim() == 2 and T is None:
                raise ValueError("a [B, C] input needs T (the number of time steps it is repeated over)")
            layout = RepeatSteps(T=T) if pe.dim() == 2 else DenseBlock()
        pe, de = layout.enter_input(pe), layout.enter_input(de)
        if reference and pe.dim() == 2:
            pe, de = layout.enter(pe), layout.enter(de)
        acts = list(self.acts) if self.spiking else [None] * self.num_layers
        cact = self.color_act if self.spiking else None
        events: List[Tensor] = []
        nonzero: List[Tensor] = []

        def run(i: int, x: Tensor) -> Tensor:
            if x.dim() == 2:
                x = layout.enter(x)
            node = acts[i] if i >= 0 else cact
            if node is None:
                return F.relu(x)
            h = layout.run(self.neuron(node), x)
            if self.count_ops:
                ev, nz = self._counts(h, layout)
                events.append(ev)
                nonzero.append(nz)
            return h

        h = pe
        for i, lin in enumerate(self.trunk):
            x = lin(pe) if i == 0 else self._next(lin, acts[i - 1])(h)
            if i == self.skip_layer:
                x = x + self.skip_in(pe)  # [B, W] broadcast over T on the fast path
            h = run(i, x)
        dl = self._next(self.density_head, acts[-1])(h)[..., 0]
        if density_only:
            return dl, None, events, nonzero
        feat = self._next(self.feature, acts[-1])(h)
        if reference:
            c_in = self.color_in(torch.cat([feat, de], -1))
        else:  # [feat, PE(d)] @ W^T = feat @ W_f^T + PE(d) @ W_d^T: the direction part once per sample
            W = self.hidden_dim
            c_in = F.linear(feat, self.color_in.weight[:, :W]) + F.linear(de, self.color_in.weight[:, W:],
                                                                          self.color_in.bias)
        hc = run(-1, c_in)
        return dl, self._next(self.rgb_head, cact)(hc), events, nonzero

    # -- op counts ---------------------------------------------------------------------------------
    def fanouts(self) -> List[int]:
        """Accumulates driven by one event of each spiking layer (trunk layers, then the colour layer)."""
        W = self.hidden_dim
        return [W] * (self.num_layers - 1) + [W + 1, 3]

    def macs_per_sample(self, T: int, repeated_input: Literal["once", "per_step"] = "once") -> int:
        """MACs of the real-valued inputs per sample over T steps.

        The position encoding (layer 1, skip input) and the direction encoding (colour layer) are the same at
        every step: ``repeated_input="once"`` counts them once (what a deployed network must compute),
        ``"per_step"`` x T (how the SpikingNeRF authors' code counts a repeated input). The colour layer's
        feature input changes with the step: x T in both conventions.
        """
        W, Wc = self.hidden_dim, self.color_hidden
        skip = self.pos_dim * W if self.skip_in is not None else 0
        k = 1 if repeated_input == "once" else T
        return k * (self.pos_dim * W + skip + self.dir_dim * Wc) + T * W * Wc

    def ann_macs_per_sample(self) -> int:
        W, Wc = self.hidden_dim, self.color_hidden
        skip = self.pos_dim * W if self.skip_in is not None else 0
        return (self.pos_dim * W + (self.num_layers - 1) * W * W + skip + W + W * W + (W + self.dir_dim) * Wc
                + Wc * 3)


@dataclass
class NeRFMLPModelConfig(SpikNeRFOptions, ModelConfig):
    """Spik-NeRF on the NeRF MLP (coarse + fine networks, hierarchical sampling); Spik-NeRF's own options are
    :class:`~.spiknerf_neuron.SpikNeRFOptions`."""

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
    background_color: Literal["white", "black"] = "white"
    loss_coefficients: Dict[str, float] = to_immutable_dict({"rgb_loss_coarse": 1.0, "rgb_loss_fine": 1.0})
    eval_num_rays_per_chunk: int = 1024
    train_op_counts: bool = False
    """Count spike events in training steps too (for the logged firing rate / energy); counting costs about
    as much as one extra linear layer per spiking layer, so by default only evaluation counts."""
    occupancy_resolution: int = 0
    """0: every sample goes through the networks (the paper's protocol). N > 0: an N^3 occupancy cache over the
    scene box; samples outside the box or in empty cells get density 0 and skip both networks (training and
    rendering), as instant-NGP / nerfacc do. ``repeat`` time (and the ANN) only."""
    occupancy_warmup_steps: int = 200
    """Steps before the first full sweep of the cache (until then only samples outside the box are skipped)."""
    occupancy_update_every: int = 16
    occupancy_cells_per_update: int = 16384
    """Random cells re-measured per update (after the full sweep); a cell's value is max(decay * old, new)."""
    occupancy_decay: float = 0.95
    occupancy_alpha_threshold: float = 0.01
    """A cell is occupied when the fine network's alpha over one coarse step ((far - near) / coarse samples)
    exceeds this anywhere in its 3^3 neighbourhood."""


class NeRFMLPModel(NerfstudioToolsMixin, TeacherMixin, Model):
    """NeRF with (spiking) MLPs; outputs, metrics and energy keys as SpikingNeRF's."""

    config: NeRFMLPModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.T = time_steps_of(cfg.spiking, cfg.time_mode, cfg.time_steps)
        self.time_mode = cfg.time_mode if cfg.spiking else "repeat"  # the ANN has no time: each sample once
        aabb = self.scene_box.aabb.detach().clone().float()
        self.register_buffer("aabb", aabb)
        self.register_buffer("num_train_views", torch.tensor(int(self.num_train_data)))
        if cfg.occupancy_resolution > 0:
            if self.time_mode != "repeat":
                raise ValueError("occupancy_resolution > 0 needs time_mode='repeat' (ray time runs every sample)")
            r = int(cfg.occupancy_resolution)
            self.register_buffer("occupancy", torch.ones(r, r, r, dtype=torch.bool))
            self.register_buffer("occupancy_sigma", torch.zeros(r, r, r))
            self.register_buffer("occupancy_swept", torch.tensor(False))
        kw = dict(hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers, skip_layer=cfg.skip_layer,
                  color_hidden=cfg.color_hidden, pos_freqs=cfg.pos_freqs, dir_freqs=cfg.dir_freqs,
                  spiking=cfg.spiking, spike_code=cfg.spike_code, tau=cfg.tau, v_threshold=cfg.v_threshold,
                  margin=cfg.margin, decay_input=cfg.decay_input, reparam=cfg.reparam_inference)
        self.field_coarse = SpikNeRFMLP(**kw)
        self.field_fine = SpikNeRFMLP(**kw)
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_importance_samples)
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer()
        self.lpips = build_lpips()
        object.__setattr__(self, "teacher", None)  # never a registered submodule

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"fields": list(self.field_coarse.parameters()) + list(self.field_fine.parameters())}

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        self.load_teacher_if_configured()
        if self.config.occupancy_resolution <= 0:
            return []
        return [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.update_occupancy)]

    # -- network evaluation -------------------------------------------------------------------------
    def _encode(self, net: SpikNeRFMLP, pos: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        center = (self.aabb[0] + self.aabb[1]) / 2
        half = ((self.aabb[1] - self.aabb[0]) / 2).max()
        pe = positional_encoding(math.pi * (pos - center) / half, net.pos_freqs)
        return pe, positional_encoding(dirs, net.dir_freqs)

    def _eval_net(self, net: SpikNeRFMLP, pos: Tensor, dirs: Tensor,
                  keep: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """``pos`` / ``dirs`` ``[R, S, 3]`` -> density ``[R, S, 1]``, rgb ``[R, S, 3]`` and per-ray op counts.

        ``keep`` ``[R, S]`` (the occupancy cache): only those samples run through ``net``; the others have
        density 0 and colour 0 and cost nothing.
        """
        R, S = pos.shape[:2]
        flat_pos, flat_dirs = pos.reshape(-1, 3), dirs.reshape(-1, 3)
        idx = None
        if keep is not None:
            idx = keep.reshape(-1).nonzero(as_tuple=True)[0]
            flat_pos, flat_dirs = flat_pos[idx], flat_dirs[idx]
        pe, de = self._encode(net, flat_pos, flat_dirs)
        net.count_ops = not self.training or self.config.train_op_counts
        # repeat time (and the ANN): samples are the batch; ray time (no cache): one [S, R] block of all samples
        layout = choose_layout(None, time_mode=self.time_mode, T=self.T, rays=(R, S))
        dl, rl, events, nonzero = net(pe, de, layout=layout)
        dl, rl = layout.read_out(dl[..., None])[:, 0], layout.read_out(rl)  # per sample (mean over repeats)
        per_ray = idx // S if idx is not None else torch.arange(R * S, device=pos.device) // S
        sigma, rgb = density_activation(dl, 0.0), torch.sigmoid(rl)
        if idx is not None:
            sigma = pos.new_zeros(R * S).index_put((idx,), sigma)
            rgb = pos.new_zeros(R * S, 3).index_put((idx,), rgb)
        zeros_r = pos.new_zeros(R)
        to_ray = lambda e: zeros_r.index_add(0, per_ray, e)  # noqa: E731  per sample [N] -> per ray [R]
        n = keep.sum(1).to(pos.dtype) if keep is not None else pos.new_full((R,), float(S))  # samples run per ray
        ann = n * net.ann_macs_per_sample()
        out = {"density": sigma.reshape(R, S, 1), "rgb": rgb.reshape(R, S, 3), "ann_macs": ann, "samples": n}
        if net.spiking and net.count_ops:
            ev = [to_ray(e) for e in events]
            out["macs"] = n * net.macs_per_sample(self.T, "once")
            out["macs_input_per_step"] = n * net.macs_per_sample(self.T, "per_step")
            out["sops"] = sum(e * f for e, f in zip(ev, net.fanouts()))
            out["spikes"] = sum(ev)
            out["train_spikes"] = sum(to_ray(z) for z in nonzero)
            out["neurons"] = n * (self.T * (net.hidden_dim * net.num_layers + net.color_hidden))
        elif net.spiking:  # not counted in this training step: NaN counters (the metrics leave them out)
            nan = torch.full_like(ann, float("nan"))
            out.update(macs=nan, macs_input_per_step=nan, sops=nan, spikes=nan, train_spikes=nan, neurons=nan)
        else:
            out["macs"], out["macs_input_per_step"], out["sops"] = ann, ann, torch.zeros_like(ann)
            out["spikes"], out["train_spikes"], out["neurons"] = (torch.zeros_like(ann),) * 3
        return out

    # -- occupancy cache ------------------------------------------------------------------------------
    def _occupied(self, pos: Tensor) -> Optional[Tensor]:
        """``[..., 3]`` -> bool ``[...]``: inside the scene box and in an occupied cell (None without a cache)."""
        if self.config.occupancy_resolution <= 0:
            return None
        u = (pos - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((u >= 0) & (u <= 1)).all(-1)
        res = self.occupancy.shape[0]
        ijk = (u.clamp(0.0, 1.0) * res).long().clamp_max(res - 1)
        return inside & self.occupancy[ijk[..., 0], ijk[..., 1], ijk[..., 2]]

    @torch.no_grad()
    def _density(self, net: SpikNeRFMLP, xyz: Tensor, chunk: int = 1 << 14) -> Tensor:
        """Volume density ``[N]`` of ``net`` at points ``[N, 3]`` (the trunk only, no colour branch)."""
        out = []
        for c in xyz.split(chunk):
            pe = self._encode(net, c, c)[0]
            none = pe[..., :0]  # no direction: the density head needs none
            # each point its own sequence: T repeats, or one step for ray time and the ANN (T = 1)
            dl = net(pe, none, T=self.T, density_only=True)[0].mean(0)
            out.append(density_activation(dl, 0.0))
        return torch.cat(out) if out else xyz.new_zeros(0)

    @torch.no_grad()
    def update_occupancy(self, step: int) -> None:
        """Instant-NGP's rule on the fine network: the first call after the warm-up measures every cell, later
        ones ``occupancy_cells_per_update`` random cells (one jittered point each); a cell keeps
        ``max(decay * old, new)`` (decay after the first sweep only) and is occupied when its alpha over one
        coarse step exceeds the threshold anywhere in its 3^3 neighbourhood."""
        cfg = self.config
        if cfg.occupancy_resolution <= 0 or step < cfg.occupancy_warmup_steps:
            return
        if bool(self.occupancy_swept) and (step - cfg.occupancy_warmup_steps) % cfg.occupancy_update_every:
            return
        res = self.occupancy.shape[0]
        grid = self.occupancy_sigma.view(-1)
        dev = grid.device
        if bool(self.occupancy_swept):
            cells = torch.randint(0, res ** 3, (cfg.occupancy_cells_per_update,), device=dev)
            grid.mul_(cfg.occupancy_decay)
        else:
            cells = torch.arange(res ** 3, device=dev)
            grid.zero_()
        ijk = torch.stack([cells // (res * res), (cells // res) % res, cells % res], -1).to(grid.dtype)
        xyz = self.aabb[0] + (ijk + torch.rand_like(ijk)) / res * (self.aabb[1] - self.aabb[0])
        grid.scatter_reduce_(0, cells, self._density(self.field_fine, xyz), reduce="amax")
        self.occupancy_swept.fill_(True)
        interval = (self.collider.far_plane - self.collider.near_plane) / cfg.num_coarse_samples \
            if self.collider is not None else 4.0 / cfg.num_coarse_samples
        occ = sigma_to_alpha(self.occupancy_sigma, interval) > cfg.occupancy_alpha_threshold
        occ = F.max_pool3d(occ[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        self.occupancy.copy_(occ)

    @torch.no_grad()
    def world_density(self, xyz: Tensor) -> Tensor:
        """The fine network's density ``[N]`` at world points ``[N, 3]`` (``ns-export`` normals; the MLP's
        density needs its trunk, the view direction only reaches the colour head)."""
        return self.query_points(xyz, torch.zeros_like(xyz))[0]

    @torch.no_grad()
    def query_points(self, xyz: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher interface: the fine network's density ``[N]`` and colour ``[N, 3]`` at points ``[N, 3]``
        (density 0 where its occupancy cache is empty, as it renders)."""
        keep = self._occupied(xyz[:, None])
        o = self._eval_net(self.field_fine, xyz[:, None], dirs[:, None], keep)
        return o["density"][:, 0, 0], o["rgb"][:, 0]

    def _render(self, rs: RaySamples, o: Dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w = rs.get_weights(o["density"])
        rgb = self.renderer_rgb(rgb=o["rgb"], weights=w)
        return w, rgb, self.renderer_accumulation(w), self.renderer_depth(w, rs)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Any]:
        rs_c = self.sampler_uniform(ray_bundle)
        pos_c = rs_c.frustums.get_positions()
        oc = self._eval_net(self.field_coarse, pos_c, rs_c.frustums.directions, self._occupied(pos_c))
        w_c, rgb_c, acc_c, depth_c = self._render(rs_c, oc)
        rs_f = self.sampler_pdf(ray_bundle, rs_c, w_c)
        pos_f, dirs_f = rs_f.frustums.get_positions(), rs_f.frustums.directions
        keep_f = self._occupied(pos_f)
        of = self._eval_net(self.field_fine, pos_f, dirs_f, keep_f)
        _, rgb_f, acc_f, depth_f = self._render(rs_f, of)
        col = lambda k: (oc[k] + of[k])[:, None]  # noqa: E731  both networks run at inference
        spikes, neurons = col("spikes"), col("neurons")
        outputs: Dict[str, Any] = {
            "rgb": rgb_f, "rgb_coarse": rgb_c, "accumulation": acc_f, "accumulation_coarse": acc_c,
            "depth": depth_f, "depth_coarse": depth_c,
            "spike_rate": spikes / neurons.clamp_min(1.0),
            "ray_macs": col("macs"), "ray_macs_input_per_step": col("macs_input_per_step"), "ray_sops": col("sops"),
            "ray_ann_macs": col("ann_macs"), "ray_spikes": spikes, "ray_train_spikes": col("train_spikes"),
            "ray_neurons": neurons, "ray_samples": col("samples"),
        }
        if self.training:
            sel = keep_f.reshape(-1) if keep_f is not None else slice(None)  # samples that ran the fine net
            outputs["_xyz"], outputs["_dirs"] = pos_f.reshape(-1, 3)[sel], dirs_f.reshape(-1, 3)[sel]
            outputs["_sigma"], outputs["_sample_rgb"] = of["density"].reshape(-1)[sel], of["rgb"].reshape(-1, 3)[sel]
            outputs["_delta"] = rs_f.deltas.reshape(-1)[sel]
        return outputs

    # -- losses / metrics ----------------------------------------------------------------------------
    def _gt(self, batch: Dict[str, Tensor], ref: Tensor) -> Tensor:
        return ground_truth(batch, ref, self.config.background_color)

    def get_metrics_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor]) -> Dict[str, Any]:
        gt = self._gt(batch, outputs["rgb"])
        m: Dict[str, Any] = {"psnr": psnr(outputs["rgb"], gt)}
        R = outputs["rgb"].shape[0]
        m["samples_per_ray"] = float(outputs["ray_samples"].sum()) / max(1, R)
        macs, sops = float(outputs["ray_macs"].sum()), float(outputs["ray_sops"].sum())
        if math.isnan(sops):  # a training step without op counts (train_op_counts=False)
            return m
        e, e_ann = energy_pj(macs, sops), float(outputs["ray_ann_macs"].sum()) * E_MAC_PJ
        m.update({"energy_pj_per_ray": e / R, "energy_reduction_vs_ann": e_ann / e if e > 0 else float("nan")})
        m.update(self._rates(outputs))
        return m

    def _rates(self, outputs: Dict[str, Any]) -> Dict[str, float]:
        """``firing_rate``: deployed-code events per neuron and step (what the energy counts; for ternary012 a
        silent neuron sends -1, an event); ``train_spike_rate``: non-zero training-code outputs per neuron and
        step; ``samples_per_ray``: samples that ran a network (coarse + fine)."""
        rays = max(1, outputs["ray_samples"].numel())
        out = {"samples_per_ray": float(outputs["ray_samples"].sum()) / rays}
        if self.config.spiking:
            nrn = max(1.0, float(outputs["ray_neurons"].sum()))
            out["firing_rate"] = float(outputs["ray_spikes"].sum()) / nrn
            out["train_spike_rate"] = float(outputs["ray_train_spikes"].sum()) / nrn
        return out

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
        metrics.update(self._rates(outputs))
        # the second MAC convention: the repeated real-valued inputs counted at every step (x T)
        macs_t = float(outputs["ray_macs_input_per_step"].sum())
        e_t = energy_pj(macs_t, metrics["sops_per_image"])
        metrics.update({"macs_per_image_input_xT": macs_t, "energy_uj_per_image_input_xT": e_t * 1e-6,
                        "energy_reduction_vs_ann_input_xT": metrics["ann_energy_uj_per_image"] * 1e6 / e_t
                        if e_t > 0 else float("nan")})
        return metrics, render_images(outputs, rgb, gt)
