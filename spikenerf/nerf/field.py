"""SpikingNeRF field: DVGO-style voxel grids + a spiking (or ANN) colour network.

- density: a 1-channel real-valued grid, ``alpha = 1 - exp(-softplus(d + shift) * interval)`` with the
  DVGO shift so that an all-zero grid starts at ``alpha_init`` (:mod:`spikenerf.nerf.rendering`). Density
  never spikes: it is a plain lookup.
- colour: a ``feature_channels`` grid, concatenated with a positional encoding of the view direction and
  fed to ``Linear(no bias) -> LIF -> Linear -> LIF -> Linear -> sigmoid`` (``spiking=True``) or the same
  with ReLU (the ANN twin). In the SNN the samples of a ray are the time steps; where that time runs is a
  time layout (:mod:`spikenerf.nerf.time_layout`), chosen once per pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikenerf.snn import make_node

from .grid import DenseGrid
from .rendering import density_activation, density_shift
from .time_layout import Neuron, TimeLayout, choose_layout

__all__ = ["SpikingNeRFField", "positional_encoding", "ColorStats", "color_stats"]


def positional_encoding(x: Tensor, num_freqs: int) -> Tensor:
    """``[N, D]`` -> ``[N, D (1 + 2 num_freqs)]``: ``x, sin(2^k x), cos(2^k x)``."""
    if num_freqs <= 0:
        return x
    freqs = 2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)
    xb = (x[..., None] * freqs).flatten(-2)
    return torch.cat([x, torch.sin(xb), torch.cos(xb)], -1)


@dataclass
class ColorStats:
    """Spike / op counts of one colour-network pass (numbers or 0-d tensors, and per-ray tensors).

    The spike counts stay 0-d tensors on the network's device (no host sync per step); ``float()`` them when
    logging.

    ``spikes_per_layer[i]`` spikes emitted by LIF layer i on valid samples; ``neurons_per_layer[i]`` = valid
    samples x width x time steps per sample. ``macs`` / ``sops`` count the whole pass; ``ann_macs`` what the
    ANN twin would need on the same samples. ``ray_spikes`` ``[R]`` / ``ray_neurons`` ``[R]`` give the per-ray
    firing rate; ``ray_sops`` ``[R]`` and ``ray_spikes_per_layer`` (each ``[R]``) the per-ray counts.
    ``ray_train_spikes`` ``[R]``: non-zero outputs of the training code per ray (the events, unless the code's
    deployed form differs: Spik-NeRF's ternary012).
    """

    num_samples: int
    spikes_per_layer: list[float | Tensor]
    neurons_per_layer: list[float]
    macs: float
    sops: float | Tensor
    ann_macs: float
    tensor_density: float | Tensor
    ray_spikes: Tensor
    ray_neurons: Tensor
    ray_sops: Tensor
    ray_spikes_per_layer: list[Tensor]
    ray_train_spikes: Optional[Tensor] = None


def color_stats(r_of: Tensor, num_rays: int, events: Sequence[Tensor], fanouts: Sequence[int],
                widths: Sequence[int], steps: int, macs: float, ann_macs: float, density: float | Tensor,
                nonzero: Optional[Sequence[Tensor]] = None) -> ColorStats:
    """The :class:`ColorStats` of one pass through any number of LIF layers.

    Args:
        r_of: ``[N]`` ray of each valid sample.
        num_rays: ``R``.
        events: per LIF layer, its spike events per valid sample ``[N]`` (empty for the ANN twin).
        fanouts: per LIF layer, the accumulates one event drives in the next layer (its output width).
        widths: per LIF layer, its neurons per sample and step.
        steps: time steps each sample spends in a layer (T of repeat time, else 1).
        macs / ann_macs: the pass's real-valued MACs and the ANN twin's on the same samples.
        density: tensor density of the time layout.
        nonzero: per LIF layer, non-zero training-code outputs per sample ``[N]`` (-> ``ray_train_spikes``);
            empty or None: they are the events.
    """
    n = int(r_of.numel())
    zeros_r = torch.zeros(num_rays, device=r_of.device)
    with torch.no_grad():
        per_ray = lambda c: zeros_r.index_add(0, r_of, c.to(zeros_r.dtype))  # noqa: E731  [N] -> [R]
        ray_sp = [per_ray(e) for e in events]
        totals = [e.sum() for e in events]  # 0-d tensors: no host-device sync per step
        ray_samples = per_ray(torch.ones_like(r_of, dtype=zeros_r.dtype))
        ray_spikes = sum(ray_sp, zeros_r)
        ray_nz = sum((per_ray(z) for z in nonzero), zeros_r) if nonzero else ray_spikes
    return ColorStats(
        num_samples=n,
        spikes_per_layer=totals,
        neurons_per_layer=[float(n * w * steps) for w in widths],
        macs=macs,
        sops=sum((t * f for t, f in zip(totals, fanouts)), zeros_r.new_zeros(())),
        ann_macs=ann_macs,
        tensor_density=density,
        ray_spikes=ray_spikes,
        ray_neurons=ray_samples * (sum(widths) * steps),
        ray_sops=sum((r * f for r, f in zip(ray_sp, fanouts)), zeros_r),
        ray_spikes_per_layer=ray_sp,
        ray_train_spikes=ray_nz,
    )


class SpikingNeRFField(nn.Module):
    """Density + feature grids and the colour network.

    Args:
        aabb: ``[2, 3]`` scene box.
        resolution: initial ``(X, Y, Z)`` grid resolution.
        feature_channels: channels of the feature grid.
        hidden_dim: colour network width.
        dir_freqs: frequencies of the view-direction encoding.
        spiking: LIF colour network (True) or the ReLU twin (False).
        tau, v_threshold: LIF constants (``tau``: the initial one of ``plif``).
        neuron: ``lif`` (fixed ``tau``) or ``plif`` (``1/tau`` learned per layer, Fang et al. 2021; the
            official SpikingNeRF code's other option).
        reset, surrogate, detach_reset, threshold: the colour neurons' reset (``soft``, subtract the threshold |
            ``hard``, to 0, the paper's), surrogate gradient name, no gradient through the reset, ``fixed`` |
            ``learnable`` threshold (:class:`~spikenerf.snn.BaseNode`).
        pack_mode: ``padding`` | ``condensing`` (ray-aligned time layout).
        flip: time runs far -> near.
        alpha_init: initial alpha of an all-zero density grid (sets the softplus shift).
        color_bias: biases in fc2 / fc3 (fc1 never has one). ``False`` is the paper's colour net (no bias in
            its three Linear layers: a spike-free sample reads out exactly sigmoid(0)).
    """

    time_mode: str = "ray"
    """The samples of a ray are its time steps (Spik-NeRF's field may repeat each sample instead)."""
    time_steps: int = 1
    """Time steps per sample (T of Spik-NeRF's ``repeat`` time)."""
    rows_per_block: int = 1 << 14
    """Samples per block of the inference path on rows in place (:meth:`_spiking_rows`)."""
    in_place: bool = True
    """Run the LIF layers on the valid samples where they are (:class:`~.time_layout.RaggedRows`,
    :class:`~.time_layout.Segments`) when the CPU kernels can: at inference, and in training for the condensing
    layout (no holes). ``False`` always copies them into time blocks (:class:`~.time_layout.TimeBuckets`), the
    reference the in-place paths are tested and timed against (``tools/bench_nerf.py --render-compare`` /
    ``--step-compare``)."""

    def __init__(
        self,
        aabb: Tensor,
        resolution: tuple[int, int, int],
        feature_channels: int = 12,
        hidden_dim: int = 128,
        dir_freqs: int = 4,
        spiking: bool = True,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        pack_mode: str = "padding",
        flip: bool = False,
        alpha_init: float = 1e-2,
        color_bias: bool = True,
        neuron: str = "lif",
        reset: str = "soft",
        surrogate: str = "atan",
        detach_reset: bool = False,
        threshold: str = "fixed",
    ) -> None:
        super().__init__()
        if neuron not in ("lif", "plif"):
            raise ValueError(f"neuron must be 'lif' or 'plif', got {neuron!r}")
        if pack_mode not in ("padding", "condensing"):
            raise ValueError(f"pack_mode must be 'padding' or 'condensing', got {pack_mode!r}")
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.density_grid = DenseGrid(1, resolution, self.aabb)
        self.feature_grid = DenseGrid(feature_channels, resolution, self.aabb)
        self.spiking = bool(spiking)
        self.pack_mode = pack_mode
        self.flip = bool(flip)
        self.dir_freqs = int(dir_freqs)
        self.shift = density_shift(alpha_init)
        self.dir_dim = 3 * (1 + 2 * self.dir_freqs)  # width of PE(view direction), fc1's per-ray part
        self.in_dim = feature_channels + self.dir_dim
        self.hidden_dim = int(hidden_dim)
        # first layer has no bias: zero holes in the padded sequence must stay zero input
        self.fc1 = nn.Linear(self.in_dim, hidden_dim, bias=False)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim, bias=color_bias)
        self.fc3 = nn.Linear(hidden_dim, 3, bias=color_bias)
        if self.spiking:
            kw = dict(v_threshold=v_threshold, reset=reset, surrogate=surrogate, detach_reset=detach_reset,
                      threshold_mode=threshold)
            self.lif1 = make_node(neuron, tau=tau, **kw)
            self.lif2 = make_node(neuron, tau=tau, **kw)

    # -- geometry ------------------------------------------------------------------------------
    def set_box(self, aabb: Tensor, resolution: tuple[int, int, int]) -> None:
        """Both grids span ``aabb`` ``[2, 3]`` at ``resolution`` from now on, all values zero (new Parameters)."""
        self.aabb.copy_(aabb)
        for grid in (self.density_grid, self.feature_grid):
            grid.set_box(aabb, resolution)

    def density_raw(self, xyz: Tensor) -> Tensor:
        """``[N, 3]`` -> raw density ``[N]`` (before the shifted softplus)."""
        return self.density_grid(xyz)[..., 0]

    def density(self, xyz: Tensor) -> Tensor:
        """``[N, 3]`` -> volume density ``[N]`` per base-voxel unit (:func:`~.rendering.density_activation`)."""
        return density_activation(self.density_raw(xyz), self.shift)

    def ann_macs_per_sample(self) -> int:
        return self.in_dim * self.hidden_dim + self.hidden_dim * self.hidden_dim + self.hidden_dim * 3

    def colour_net_inputs(self, xyz: Tensor, dirs: Tensor) -> Tensor:
        """fc1's whole input ``[N, in_dim]`` (the NIR graph's, :mod:`~.colour_nir`) of samples at look-up points
        ``xyz`` ``[N, 3]`` with unit view directions ``dirs`` ``[N, 3]``: ``[features, PE(view direction)]``.
        :meth:`color` never builds it (:meth:`first_layer` adds the direction part once per ray)."""
        return torch.cat([self.feature_grid(xyz), positional_encoding(dirs, self.dir_freqs)], -1)

    def colour_net_input_parts(self) -> list[Dict[str, Any]]:
        """The blocks of :meth:`colour_net_inputs` in order, each ``name``, ``size`` and where it comes from
        (the NIR export's metadata and sidecar)."""
        return [{"name": "features", "size": self.in_dim - self.dir_dim,
                 "from": "feature_grid: trilinear look-up at the sample's look-up point"},
                {"name": "PE(view direction)", "size": self.dir_dim, "freqs": self.dir_freqs,
                 "formula": "d, sin(2^k d), cos(2^k d) for k < freqs, each block ordered (x: k..., y: k..., "
                            "z: k...); d the unit ray direction"}]

    # -- colour ----------------------------------------------------------------------------------
    def first_layer(self, feat: Tensor, dirs: Tensor, ray_of: Tensor) -> Tensor:
        """fc1 of ``[features, PE(dir)]`` ``[N, in_dim]`` without building that tensor: the feature part per
        sample, the direction part once per ray (``dirs`` ``[R, 3]``, ``ray_of`` ``[N]``) and gathered; the same
        product as ``fc1(cat(...))`` up to float rounding. Op counts name both conventions: the layer's
        ``N * in_dim * H`` (``ray_macs``) and this computation's, the direction part once per ray
        (``ray_macs_dir_once``, :meth:`~spikenerf.nerf.model.SpikingNeRFModel._per_ray_ops`)."""
        c = feat.shape[-1]
        w = self.fc1.weight
        per_ray = F.linear(positional_encoding(dirs, self.dir_freqs), w[:, c:])  # [R, H]
        return torch.addmm(per_ray.index_select(0, ray_of), feat, w[:, :c].t())

    def lif_layers(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(LIF layer, the layer reading its spikes)`` in order: ``(lif1, fc2), (lif2, fc3)``; the last reader
        is the read-out."""
        return [(self.lif1, self.fc2), (self.lif2, self.fc3)]

    def layout(self, mask: Tensor, time_index: Optional[Tensor], training: bool) -> TimeLayout:
        """Where the LIF layers' time runs for this pass (:func:`~.time_layout.choose_layout`): ``time_mode``,
        and for ray time the ``pack_mode`` / ``flip`` of the samples."""
        return choose_layout(mask, time_mode=self.time_mode, T=self.time_steps, pack_mode=self.pack_mode,
                             flip=self.flip, time_index=time_index, training=training, in_place=self.in_place,
                             neurons=[n for n, _ in self.lif_layers()])

    def neuron(self, node: nn.Module) -> Neuron:
        """What the layouts run for LIF layer ``node`` (subclasses: its deployed view)."""
        return node

    def consumer(self, layer: nn.Module, node: nn.Module) -> nn.Module:
        """The layer that reads ``node``'s spikes (subclasses return a re-parameterized copy)."""
        return layer

    def events(self, s: Tensor) -> Tensor:
        """Spike events counted for SOPs from LIF outputs of valid samples (binary: the spikes)."""
        return s

    def train_nonzero(self, s: Tensor) -> Optional[Tensor]:
        """Non-zero training-code outputs of ``s`` when they differ from :meth:`events` (else None)."""
        return None

    def spiking_net(self, x1: Tensor, layout: TimeLayout) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """First-layer currents of the valid samples ``[N, H]`` -> read-out logits ``[N, 3]`` and, per LIF
        layer, its events and non-zero training-code outputs per sample ``[N]`` (the latter only where
        :meth:`train_nonzero` counts them).

        Each LIF layer runs along the layout's time (holes of the padding layout are zero input), the
        linear layers per sample: fc2 on valid samples with zero LIF2 input at the holes is exactly
        ``fc2(s1) * mask`` on the packed sequence.
        """
        x = layout.enter(x1)
        events, nonzero = [], []
        for node, reader in self.lif_layers():
            s = layout.run(self.neuron(node), x)
            with torch.no_grad():
                events.append(layout.per_sample(self.events(s)))
                nz = self.train_nonzero(s)
                if nz is not None:
                    nonzero.append(layout.per_sample(nz))
            x = self.consumer(reader, node)(s)
        return layout.read_out(x), events, nonzero

    def _spiking_rows(self, feat: Tensor, dirs: Tensor, r_of: Tensor, layout: TimeLayout, training: bool
                      ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """:meth:`spiking_net` from the features ``[N, C]``. Inference on rows in place runs in blocks of whole
        rays of about ``rows_per_block`` samples, so one block's layer outputs are still in the CPU cache when
        the next layer reads them (a 4,096-ray chunk of a real capture is ~160 MB per layer), and no spike
        tensor outlives its block."""
        if training or not layout.blockwise:
            return self.spiking_net(self.first_layer(feat, dirs, r_of), layout)
        n = feat.shape[0]
        logits = feat.new_empty(n, 3)
        counts: list[list[Tensor]] = []
        for r0, r1, block in layout.blocks(self.rows_per_block):
            lg, ev, nz = self.spiking_net(self.first_layer(feat[r0:r1], dirs, r_of[r0:r1]), block)
            logits[r0:r1] = lg
            if not counts:
                counts = [[feat.new_empty(n) for _ in c] for c in (ev, nz)]
            for dst, src in zip(counts[0] + counts[1], ev + nz):
                dst[r0:r1] = src
        return logits, counts[0], counts[1]

    def color(self, xyz: Tensor, dirs: Tensor, mask: Tensor,
              time_index: Tensor | None = None) -> tuple[Tensor, ColorStats]:
        """Colour of the masked samples.

        Args:
            xyz: ``[R, S, 3]`` sample positions.
            dirs: ``[R, 3]`` unit view directions.
            mask: ``[R, S]`` bool, samples that reach the colour network.
            time_index: ``[R, S]`` sample index of each entry on the ray's full lattice, when the columns
                are not consecutive samples (empty space already dropped); only padding uses it, so that
                every skipped sample is still a hole. ``None``: the column index.

        Returns:
            ``rgb`` ``[R, S, 3]`` (zero where masked out) and :class:`ColorStats`.
        """
        R, S = mask.shape
        r_of, s_of = mask.nonzero(as_tuple=True)  # row-major: the order of every [N, ...] tensor below
        n = int(r_of.numel())
        feat = self.feature_grid(xyz[r_of, s_of])  # [N, C] only the surviving samples are looked up
        rgb = xyz.new_zeros(R, S, 3)
        ann_macs = float(n * self.ann_macs_per_sample())
        if not self.spiking:
            x1v = self.first_layer(feat, dirs, r_of)  # [N, H]; once per valid sample
            rgb[r_of, s_of] = torch.sigmoid(self.fc3(F.relu(self.fc2(F.relu(x1v)))))
            return rgb, color_stats(r_of, R, [], [], [], 1, ann_macs, ann_macs, 1.0)
        # ---- SNN: fc1 has no bias, so its per-sample output is what a zero-padded sequence would give at
        # the valid steps; holes never reach a layer -------------------------------------------------------
        training = torch.is_grad_enabled() and feat.requires_grad
        layout = self.layout(mask, time_index, training)
        fanouts = [reader.out_features for _, reader in self.lif_layers()]
        widths = [self.hidden_dim] * len(fanouts)
        macs = float(n * self.in_dim * self.hidden_dim)  # fc1: the only real-valued input layer, once per sample
        if n == 0:
            empty = [r_of.new_zeros(0, dtype=rgb.dtype)] * len(fanouts)
            return rgb, color_stats(r_of, R, empty, fanouts, widths, layout.steps_per_sample, 0.0, 0.0, layout.density)
        logits, events, nonzero = self._spiking_rows(feat, dirs, r_of, layout, training)
        rgb[r_of, s_of] = torch.sigmoid(logits)  # non-spiking read-out, per sample
        return rgb, color_stats(r_of, R, events, fanouts, widths, layout.steps_per_sample, macs, ann_macs,
                                layout.density, nonzero)
