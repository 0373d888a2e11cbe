"""SpikingNeRF field: DVGO-style voxel grids + a spiking (or ANN) colour network.

- density: a 1-channel real-valued grid, ``alpha = 1 - exp(-softplus(d + shift) * interval)`` with the
  DVGO shift so that an all-zero grid starts at ``alpha_init`` (:mod:`spikenerf.nerf.rendering`). Density never spikes: it is a plain lookup.
- colour: a ``feature_channels`` grid, concatenated with a positional encoding of the view direction and
  fed to ``Linear(no bias) -> LIF -> Linear -> LIF -> Linear -> sigmoid`` (``spiking=True``) or the same
  with ReLU (the ANN twin). In the SNN the samples of a ray are the time steps (``spikenerf.nerf.packing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikenerf.snn import BaseNode, LIFNode, PLIFNode

from .grid import DenseGrid
from .packing import (PackInfo, RaggedRows, TimeBuckets, condensed_rows, pack_index, ragged_rows, tensor_density,
                      time_buckets)
from .rendering import density_activation, density_shift

__all__ = ["SpikingNeRFField", "positional_encoding", "ColorStats"]


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
    samples x width. ``macs`` / ``sops`` count the whole pass; ``ann_macs`` what the ANN twin would need on
    the same samples. ``ray_spikes`` ``[R]`` / ``ray_neurons`` ``[R]`` give the per-ray firing rate;
    ``ray_sops`` ``[R]`` and ``ray_spikes_per_layer`` (each ``[R]``) the per-ray counts.
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


def colour_neuron(neuron: str, tau: float, **kw) -> BaseNode:
    """One colour-net neuron of the core: ``lif`` with a fixed ``tau`` or ``plif`` starting from it."""
    return PLIFNode(init_tau=tau, **kw) if neuron == "plif" else LIFNode(tau=tau, **kw)


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

    rows_per_block: int = 1 << 14
    """Samples per block of the inference path (:meth:`_rows_net`)."""
    in_place: bool = True
    """Run the LIF layers on the valid samples where they are (:class:`~.packing.RaggedRows`) when the CPU
    kernels can: at inference, and in training for the condensing layout (no holes). ``False`` always copies
    them into time blocks (:class:`~.packing.TimeBuckets`), the reference the in-place paths are tested and
    timed against (``tools/bench_nerf.py --render-compare`` / ``--step-compare``)."""

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
            self.lif1 = colour_neuron(neuron, tau, **kw)
            self.lif2 = colour_neuron(neuron, tau, **kw)

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

    def _spiking_net(self, x1: Tensor, layout: TimeBuckets | None = None) -> tuple[Tensor, Tensor]:
        """First-layer currents -> LIF1 / LIF2 spikes, the same shape.

        With ``layout``, ``x1`` holds the valid samples ``[N, H]``: the LIF layers run along each ray's
        packed time axis (holes of the padding layout are zero input), the linear layers per sample, so fc2
        on valid samples with zero LIF2 input at the holes is exactly ``fc2(s1) * mask`` on the packed
        sequence. Without it, ``x1`` is already a ``[T, B, H]`` block with no holes.
        """
        s1 = self._over_time(self.lif1, x1, layout)
        s2 = self._over_time(self.lif2, self._consumer(self.fc2, self.lif1)(s1), layout)
        return s1, s2

    def _over_time(self, node: nn.Module, x: Tensor, layout: TimeBuckets | RaggedRows | None) -> Tensor:
        if layout is None:
            return self._lif(node, x)
        if isinstance(layout, RaggedRows):
            return self._lif_rows(node, x, layout)
        return layout.apply(partial(self._lif, node), x)

    def _lif(self, node: nn.Module, x: Tensor) -> Tensor:
        """A LIF layer on a ``[T, B, H]`` block (subclasses send a re-parameterized code)."""
        return node(x)

    def _lif_rows(self, node: nn.Module, xv: Tensor, rows: RaggedRows) -> Tensor:
        """The same layer on the valid samples ``[N, H]`` in place (subclasses as :meth:`_lif`): with
        gradients on segments without holes (training, condensing), else the ragged inference scan."""
        if torch.is_grad_enabled() and xv.requires_grad:
            return node.forward_segments(xv, rows.starts, rows.reverse)
        return node.forward_ragged(xv, rows.starts, rows.steps, rows.reverse)

    def _runs_in_place(self, feat: Tensor, mode: str) -> bool:
        """The LIF layers run in place on the CPU (the C kernels; on CUDA the time blocks run on the Triton
        scan) at inference, or in training when no sequence has holes (condensing), for neurons the in-place
        scans reproduce; else in time blocks."""
        training = torch.is_grad_enabled() and feat.requires_grad
        return (self.in_place and feat.device.type == "cpu" and (not training or mode == "condensing")
                and all(n.supports_ragged() for n in (self.lif1, self.lif2)))

    def _layout(self, info: PackInfo, feat: Tensor) -> TimeBuckets | RaggedRows:
        """Where the LIF layers run (:meth:`_runs_in_place`): the valid samples in place, or time blocks."""
        return ragged_rows(info) if self._runs_in_place(feat, info.mode) else time_buckets(info)

    def _rows_net(self, feat: Tensor, dirs: Tensor, r_of: Tensor, rows: RaggedRows) -> tuple[Tensor, Tensor, Tensor]:
        """Inference: fc1 -> LIF1 -> fc2 -> LIF2 -> read-out on the valid samples in place, in blocks of whole
        rays of about ``rows_per_block`` samples, so one block's layer outputs are still in the CPU cache
        when the next layer reads them (a 4,096-ray chunk of a real capture is ~160 MB per layer), and no
        spike tensor outlives its block. Returns the read-out ``[N, 3]`` and the spikes per sample of LIF1
        and LIF2 ``[N]`` (for the op counts)."""
        n = feat.shape[0]
        logits, sp1, sp2 = feat.new_empty(n, 3), feat.new_empty(n), feat.new_empty(n)
        readout = self._readout()
        for r0, r1, block in rows.blocks(self.rows_per_block):
            a, b = self._spiking_net(self.first_layer(feat[r0:r1], dirs, r_of[r0:r1]), block)
            logits[r0:r1] = readout(b)
            torch.sum(self._events(a), -1, out=sp1[r0:r1])
            torch.sum(self._events(b), -1, out=sp2[r0:r1])
        return logits, sp1, sp2

    def _consumer(self, layer: nn.Module, node: nn.Module) -> nn.Module:
        """The layer that reads ``node``'s spikes (subclasses return a re-parameterized copy)."""
        return layer

    def _readout(self) -> nn.Module:
        """The read-out layer on LIF2's spikes."""
        return self._consumer(self.fc3, self.lif2)

    def _events(self, s: Tensor) -> Tensor:
        """Spike events counted for SOPs from LIF outputs of valid samples (binary: the spikes)."""
        return s

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
        zeros_r = torch.zeros(R, device=mask.device)
        rgb = xyz.new_zeros(R, S, 3)
        if not self.spiking:
            x1v = self.first_layer(feat, dirs, r_of)  # [N, H]; once per valid sample
            h = F.relu(self.fc2(F.relu(x1v)))
            rgb[r_of, s_of] = torch.sigmoid(self.fc3(h))
            macs = float(n * self.ann_macs_per_sample())
            stats = ColorStats(n, [], [], macs, 0.0, macs, 1.0, zeros_r, zeros_r, zeros_r, [])
            return rgb, stats
        # ---- SNN: rays are the batch, samples the time steps -------------------------------------
        if n == 0:
            return rgb, ColorStats(0, [0.0, 0.0], [0.0, 0.0], 0.0, 0.0, 0.0, 0.0, zeros_r, zeros_r, zeros_r,
                                   [zeros_r, zeros_r])
        # fc1 has no bias: its per-sample output is what the zero-padded sequence would give at valid steps;
        # holes never reach a layer. Inference runs the LIF layers on the samples in place, training groups
        # them into time blocks (or runs them in place on hole-free segments).
        training = torch.is_grad_enabled() and feat.requires_grad
        if not training and self.pack_mode == "condensing" and self._runs_in_place(feat, "condensing"):
            layout, density = condensed_rows(mask, self.flip)  # the same rows as from pack_index, fewer passes
        else:
            rows = mask.any(1).nonzero(as_tuple=True)[0]
            sub_mask = mask[rows]  # same valid samples in the same row-major order, so [N, ...] tensors line up
            sub_time = None
            if self.pack_mode == "padding":
                # drop steps no ray uses at the start/end: exact, a zero-input LIF from rest stays at rest
                if time_index is None:
                    time_index = torch.arange(S, device=mask.device).expand(R, S)
                sub_time = time_index[rows] - time_index[mask].min()
            info = pack_index(sub_mask, self.pack_mode, self.flip, sub_time)
            layout, density = self._layout(info, feat), tensor_density(info)
        if isinstance(layout, RaggedRows) and not training:
            logits, sp1, sp2 = self._rows_net(feat, dirs, r_of, layout)
        else:
            s1_, s2_ = self._spiking_net(self.first_layer(feat, dirs, r_of), layout)
            logits = self._readout()(s2_)
            with torch.no_grad():
                sp1, sp2 = self._events(s1_).sum(-1), self._events(s2_).sum(-1)  # [N] spikes per sample
        rgb[r_of, s_of] = torch.sigmoid(logits)  # non-spiking read-out, per sample
        # ---- op accounting: spikes drive accumulates (SOPs), the real-valued input layer is MACs -----
        with torch.no_grad():
            n_spk1, n_spk2 = sp1.sum(), sp2.sum()  # 0-d tensors: no host-device sync per step
            ray_sp1 = zeros_r.index_add(0, r_of, sp1.to(zeros_r.dtype))
            ray_sp2 = zeros_r.index_add(0, r_of, sp2.to(zeros_r.dtype))
            ray_spikes = ray_sp1 + ray_sp2
            ray_neurons = mask.sum(1).to(zeros_r.dtype) * (2 * self.hidden_dim)
        stats = ColorStats(
            num_samples=n,
            spikes_per_layer=[n_spk1, n_spk2],
            neurons_per_layer=[float(n * self.hidden_dim)] * 2,
            macs=float(n * self.in_dim * self.hidden_dim),
            sops=n_spk1 * self.hidden_dim + n_spk2 * 3,
            ann_macs=float(n * self.ann_macs_per_sample()),
            tensor_density=density,
            ray_spikes=ray_spikes,
            ray_neurons=ray_neurons,
            ray_sops=ray_sp1 * self.hidden_dim + ray_sp2 * 3,
            ray_spikes_per_layer=[ray_sp1, ray_sp2],
        )
        return rgb, stats
