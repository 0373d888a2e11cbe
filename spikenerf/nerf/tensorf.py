"""TensoRF's VM-split backbone (Chen et al., ECCV 2022), the real-valued half of SpikingNeRF-T.

A scene is two VM-split tensors over a box: for plane/line pair ``i`` a matrix (plane) over two axes and a
vector (line) along the third, ``f_c(x) = sum_i P_i[c](x_a, x_b) * L_i[c](x_w)``.

- density: components ``(16, 16, 16)``; the raw density is the sum of all ``48`` products and
  ``sigma = softplus(raw - 10)`` (TensoRF's ``density_shift``; ``relu`` for its LLFF config), per sample
  ``alpha = 1 - exp(-sigma * dist * distance_scale)``;
- appearance: components ``(48, 48, 48)``, the ``144`` products mapped by ``basis_mat`` (no bias) to 27
  features, which the (spiking) colour net reads with the view direction (:func:`tensorf_color_input`).

Look-ups are ``F.grid_sample``: one batched call for the three planes (and one for the lines) while they
share a shape, as nerfstudio's ``TensorVMEncoding`` does (``tools/bench_tensorf.py``: the same time on this
CPU), one per plane once they do not. nerfstudio's class itself is not used: its stacked ``[3, C, R, R]``
planes force one cubic resolution and equal components, so they can be neither cropped by
:meth:`TensoRFBackbone.shrink` nor hold TensoRF's LLFF ``(16, 4, 4)``. The training-time rules are small methods here, as in TensoRF: ``upsample``, ``shrink``,
``update_alpha_mask`` (:class:`AlphaGridMask`), ``tv_loss`` / ``l1_loss``, and the schedule helpers
:func:`n_to_reso`, :func:`n_samples_for`, :func:`upsampling_voxel_counts`, :func:`tensorf_lr`.

SpikingNeRF-T's only TensoRF-specific colour pieces are the 150 input features
(:func:`tensorf_color_input`) and the weight mask (:func:`tensorf_color_mask`); the spiking colour net, the
time layout (condensing) and the op counts are the package's shared ones.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .field import positional_encoding
from .grid import trilinear
from .rendering import density_activation
from .sampling import grid_vertices

__all__ = ["Activation", "MAT_MODE", "VEC_MODE", "VMSplit", "AlphaGridMask", "TensoRFBackbone", "n_to_reso", "n_samples_for",
           "upsampling_voxel_counts", "tensorf_lr", "tv_weight_at", "tensorf_pe", "tensorf_color_input",
           "tensorf_color_mask", "sample_ray", "TENSORF_DENSITY_SHIFT"]

MAT_MODE = ((0, 1), (0, 2), (1, 2))
"""Plane ``i`` spans axes ``(a, b)``: its width runs along ``a`` (grid_sample's x), its height along ``b``."""
VEC_MODE = (2, 1, 0)
"""Line ``i`` runs along the axis its plane leaves out."""
TENSORF_DENSITY_SHIFT = -10.0
"""TensoRF's ``density_shift``: an all-zero tensor starts at ``softplus(-10) ~ 4.5e-5``, nearly empty."""

Activation = Literal["softplus", "relu"]


def _plane_coords(xyz_n: Tensor, i: int) -> Tensor:
    """``[N, 3]`` normalised points -> ``[1, N, 1, 2]`` grid_sample coordinates on plane ``i``."""
    return xyz_n[:, list(MAT_MODE[i])].reshape(1, -1, 1, 2)


def _line_coords(xyz_n: Tensor, i: int) -> Tensor:
    """``[N, 3]`` -> ``[1, N, 1, 2]`` coordinates on line ``i`` (stored ``[1, C, L, 1]``: x = 0, y = the axis)."""
    w = xyz_n[:, VEC_MODE[i]]
    return torch.stack([torch.zeros_like(w), w], -1).reshape(1, -1, 1, 2)


class VMSplit(nn.Module):
    """One VM-split tensor: planes ``[1, C_i, R_b, R_a]`` and lines ``[1, C_i, R_w, 1]`` (TensoRF's layout).

    Args:
        components: ``(C_0, C_1, C_2)`` components per plane/line pair.
        resolution: ``(X, Y, Z)`` vertices per axis (vertex-aligned: ``align_corners=True``).
        init_scale: the planes and lines start as ``init_scale * N(0, 1)`` (TensoRF: 0.1).
    """

    def __init__(self, components: Sequence[int], resolution: Sequence[int], init_scale: float = 0.1) -> None:
        super().__init__()
        if len(components) != 3 or len(resolution) != 3 or min(resolution) < 2 or min(components) < 1:
            raise ValueError(f"VMSplit needs 3 components >= 1 and 3 resolutions >= 2, got components "
                             f"{tuple(components)} and resolution {tuple(resolution)}")
        self.components = tuple(int(c) for c in components)
        res = [int(r) for r in resolution]
        self.planes = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(1, c, res[b], res[a])) for c, (a, b) in zip(self.components, MAT_MODE))
        self.lines = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(1, c, res[w], 1)) for c, w in zip(self.components, VEC_MODE))

    @property
    def resolution(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` read from the parameters (they change size when up-sampled or cropped)."""
        return tuple(int(self.lines[VEC_MODE.index(ax)].shape[2]) for ax in range(3))  # type: ignore[return-value]

    def products(self, xyz_n: Tensor) -> Tensor:
        """``xyz_n`` ``[N, 3]`` in ``[-1, 1]`` -> ``[N, C_0 + C_1 + C_2]``, plane-times-line per component
        (pair 0's components first); zero padding outside the box, as ``grid_sample``."""
        xyz_n = xyz_n.detach()  # positions never take gradients (TensoRF detaches them too)
        if len({tuple(p.shape) for p in self.planes}) == 1:  # cubic, equal components: one batched call each
            pc = torch.cat([_plane_coords(xyz_n, i) for i in range(3)])  # [3, N, 1, 2]
            lc = torch.cat([_line_coords(xyz_n, i) for i in range(3)])
            pl = F.grid_sample(torch.cat(list(self.planes)), pc, align_corners=True)  # [3, C, N, 1]
            ll = F.grid_sample(torch.cat(list(self.lines)), lc, align_corners=True)
            return (pl * ll).reshape(-1, xyz_n.shape[0]).t()
        out = []
        for i in range(3):
            p = F.grid_sample(self.planes[i], _plane_coords(xyz_n, i), align_corners=True)  # [1, C, N, 1]
            l = F.grid_sample(self.lines[i], _line_coords(xyz_n, i), align_corners=True)
            out.append((p * l)[0, :, :, 0])
        return torch.cat(out, 0).t()

    def sum(self, xyz_n: Tensor) -> Tensor:
        """``[N, 3]`` -> ``[N]``: the sum of all products (the raw density)."""
        return self.products(xyz_n).sum(-1)

    @torch.no_grad()
    def upsample(self, resolution: Sequence[int]) -> None:
        """TensoRF's ``up_sampling_VM``: bilinear re-sampling of each plane, linear of each line, to
        ``resolution`` ``(X, Y, Z)`` (``align_corners=True``, so a field linear along each axis is kept
        exactly); new Parameters, so the optimiser must be rebuilt."""
        res = [int(r) for r in resolution]
        for i, ((a, b), w) in enumerate(zip(MAT_MODE, VEC_MODE)):
            self.planes[i] = nn.Parameter(F.interpolate(self.planes[i].data, size=(res[b], res[a]), mode="bilinear",
                                                        align_corners=True))
            self.lines[i] = nn.Parameter(F.interpolate(self.lines[i].data, size=(res[w], 1), mode="bilinear",
                                                       align_corners=True))

    @torch.no_grad()
    def crop(self, lo: Sequence[int], hi: Sequence[int]) -> None:
        """Keep vertices ``lo[ax] <= index < hi[ax]`` on each axis (TensoRF's ``shrink``); new Parameters."""
        for i, ((a, b), w) in enumerate(zip(MAT_MODE, VEC_MODE)):
            self.planes[i] = nn.Parameter(self.planes[i].data[..., lo[b]:hi[b], lo[a]:hi[a]].contiguous())
            self.lines[i] = nn.Parameter(self.lines[i].data[..., lo[w]:hi[w], :].contiguous())

    def tv(self) -> Tensor:
        """TensoRF's ``TV_loss_*``: ``1e-2 x TVLoss(plane)`` summed over the planes, where
        ``TVLoss(x) = 2 (sum dH^2 / (C (H-1) W) + sum dW^2 / (C H (W-1)))``. TensoRF's line term
        (``1e-3 x TVLoss(line)``) divides 0 by 0 on a ``W = 1`` line, a NaN, so only the planes count."""
        total = self.planes[0].new_zeros(())
        for p in self.planes:
            _, c, h, w = p.shape
            dh = (p[:, :, 1:] - p[:, :, :-1]).square().sum() / (c * (h - 1) * w)
            dw = (p[..., 1:] - p[..., :-1]).square().sum() / (c * h * (w - 1))
            total = total + 2.0 * (dh + dw) * 1e-2
        return total

    def l1(self) -> Tensor:
        """TensoRF's ``density_L1``: ``sum_i mean|P_i| + mean|L_i|``."""
        return sum(p.abs().mean() + l.abs().mean() for p, l in zip(self.planes, self.lines))  # type: ignore


class AlphaGridMask(nn.Module):
    """TensoRF's ``AlphaGridMask``: a coarse bool occupancy volume over its own box; a point is kept where
    the trilinear look-up of the volume is ``> 0`` (so any occupied corner keeps it).

    Empty (``volume`` ``[0, 0, 0]``) until the first :meth:`TensoRFBackbone.update_alpha_mask`: then every
    point is kept. Checkpoints hold the bool volume (1 byte a voxel) and its box; loading takes their shape.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("volume", torch.zeros(0, 0, 0, dtype=torch.bool))
        self.register_buffer("aabb", torch.zeros(2, 3))
        self._register_load_state_dict_pre_hook(self._take_checkpoint_shape)
        self._lookup: Optional[tuple[tuple[int, int], Tensor]] = None

    def _take_checkpoint_shape(self, state_dict, prefix, *args) -> None:
        v = state_dict.get(prefix + "volume")
        if v is not None and v.shape != self.volume.shape:
            self.volume = torch.zeros(v.shape, dtype=torch.bool, device=self.volume.device)

    @property
    def active(self) -> bool:
        return self.volume.numel() > 0

    def set(self, volume: Tensor, aabb: Tensor) -> None:
        """New bool ``volume`` ``[X, Y, Z]`` over ``aabb`` ``[2, 3]``."""
        self.volume = volume.detach().to(torch.bool).clone()
        self.aabb = aabb.detach().to(self.aabb).clone()

    def _float_volume(self) -> Tensor:
        key = (self.volume.data_ptr(), self.volume._version)
        if self._lookup is None or self._lookup[0] != key:  # one float copy per mask, not per call
            self._lookup = (key, self.volume.float()[..., None].contiguous())
        return self._lookup[1]

    def keep(self, xyz: Tensor) -> Tensor:
        """``xyz`` ``[N, 3]`` world points -> bool ``[N]`` (all True while the mask is empty)."""
        if not self.active:
            return torch.ones(xyz.shape[0], dtype=torch.bool, device=xyz.device)
        return trilinear(self._float_volume(), xyz.detach().float().contiguous(), self.aabb)[:, 0] > 0


class TensoRFBackbone(nn.Module):
    """TensoRF's ``TensorVMSplit`` without its renderer: per-sample raw density and appearance features.

    Args:
        aabb: ``[2, 3]`` scene box.
        resolution: ``(X, Y, Z)`` initial vertices per axis (:func:`n_to_reso` of ``N_voxel_init``).
        density_components / app_components: per plane/line pair (lego: 16s / 48s; LLFF: (16, 4, 4) /
            (48, 12, 12)).
        app_dim: features out of ``basis_mat`` (27).
        activation: ``softplus`` (``softplus(raw + density_shift)``) or ``relu`` (TensoRF's LLFF config).
        density_shift: TensoRF's -10.
        step_ratio: sampling step as a fraction of the mean voxel size (TensoRF's 0.5).
        alpha_mask_threshold: alpha (over one step) above which a voxel stays in the alpha mask.
    """

    def __init__(self, aabb: Tensor, resolution: Sequence[int], density_components: Sequence[int] = (16, 16, 16),
                 app_components: Sequence[int] = (48, 48, 48), app_dim: int = 27,
                 activation: Activation = "softplus", density_shift: float = TENSORF_DENSITY_SHIFT,
                 step_ratio: float = 0.5, alpha_mask_threshold: float = 1e-4, init_scale: float = 0.1) -> None:
        super().__init__()
        if activation not in ("softplus", "relu"):
            raise ValueError(f"activation must be 'softplus' or 'relu', got {activation!r}")
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.density = VMSplit(density_components, resolution, init_scale)
        self.app = VMSplit(app_components, resolution, init_scale)
        self.basis_mat = nn.Linear(sum(self.app.components), app_dim, bias=False)
        self.alpha_mask = AlphaGridMask()
        self.activation = activation
        self.density_shift = float(density_shift)
        self.step_ratio = float(step_ratio)
        self.alpha_mask_threshold = float(alpha_mask_threshold)
        self._register_load_state_dict_pre_hook(self._take_checkpoint_shapes)

    def _take_checkpoint_shapes(self, state_dict, prefix, *args) -> None:
        """Loading: up-sampled or cropped planes / lines in a checkpoint; each Parameter takes its shape
        first (the optimisers are rebuilt by the model)."""
        for name, plist in (("density.planes", self.density.planes), ("density.lines", self.density.lines),
                            ("app.planes", self.app.planes), ("app.lines", self.app.lines)):
            for i in range(3):
                q = state_dict.get(f"{prefix}{name}.{i}")
                if q is not None and q.shape != plist[i].shape:
                    plist[i] = nn.Parameter(torch.zeros(q.shape, dtype=plist[i].dtype, device=plist[i].device))

    # ------------------------------------------------------------------ geometry of the grid
    @property
    def resolution(self) -> tuple[int, int, int]:
        return self.density.resolution

    @property
    def units(self) -> Tensor:
        """``[3]`` voxel size per axis: ``(aabb[1] - aabb[0]) / (resolution - 1)``."""
        return (self.aabb[1] - self.aabb[0]) / (torch.tensor(self.resolution, device=self.aabb.device) - 1)

    @property
    def step_size(self) -> float:
        """TensoRF's ``stepSize``: mean voxel size x ``step_ratio`` (world units)."""
        return float(self.units.mean()) * self.step_ratio

    @property
    def n_samples(self) -> int:
        """TensoRF's ``nSamples``: enough steps to cross the box diagonal, ``int(diag / step) + 1``."""
        return int(float((self.aabb[1] - self.aabb[0]).norm()) / self.step_size) + 1

    def normalize(self, xyz: Tensor) -> Tensor:
        """World ``[N, 3]`` -> ``[-1, 1]`` over the box."""
        return (xyz - self.aabb[0]) * (2.0 / (self.aabb[1] - self.aabb[0])) - 1.0

    # ------------------------------------------------------------------ per-sample values
    def density_features(self, xyz: Tensor) -> Tensor:
        """World points ``[N, 3]`` -> raw density ``[N]`` (TensoRF's ``compute_densityfeature``)."""
        return self.density.sum(self.normalize(xyz))

    def feature2density(self, raw: Tensor) -> Tensor:
        """Raw density ``[...]`` -> ``sigma`` ``[...]`` (``softplus(raw + shift)`` or ``relu(raw)``)."""
        if self.activation == "relu":
            return F.relu(raw)
        return density_activation(raw, self.density_shift)

    def app_features(self, xyz: Tensor) -> Tensor:
        """World points ``[N, 3]`` -> appearance features ``[N, app_dim]`` (TensoRF's ``compute_appfeature``)."""
        return self.basis_mat(self.app.products(self.normalize(xyz)))

    # ------------------------------------------------------------------ training-time rules
    @torch.no_grad()
    def upsample(self, resolution: Sequence[int]) -> None:
        """Re-sample both tensors to ``resolution`` ``(X, Y, Z)`` (TensoRF's ``upsample_volume_grid``)."""
        self.density.upsample(resolution)
        self.app.upsample(resolution)

    @torch.no_grad()
    def dense_alpha(self, resolution: Sequence[int], chunk: int = 1 << 18) -> Tensor:
        """TensoRF's ``getDenseAlpha``: ``[X, Y, Z]`` alpha over one sampling step (``1 - exp(-sigma *
        step_size)``, without ``distance_scale``, as TensoRF) at the vertices of a ``resolution`` grid over
        the box; zero where the current alpha mask already drops the vertex."""
        res = tuple(int(r) for r in resolution)
        xyz = grid_vertices(self.aabb, res).to(self.aabb)  # type: ignore[arg-type]
        sigma = torch.zeros(xyz.shape[0], device=xyz.device, dtype=self.density.planes[0].dtype)
        for s in range(0, xyz.shape[0], chunk):
            c = xyz[s:s + chunk]
            keep = self.alpha_mask.keep(c)
            sigma[s:s + chunk][keep] = self.feature2density(self.density_features(c[keep]))
        return (1.0 - torch.exp(-sigma * self.step_size)).reshape(res)

    @torch.no_grad()
    def update_alpha_mask(self, resolution: Sequence[int]) -> Tensor:
        """TensoRF's ``updateAlphaMask``: the dense alpha, max-pooled over 3x3x3 vertices, kept where
        ``>= alpha_mask_threshold``, becomes the alpha mask over the current box. Returns the ``[2, 3]`` box of
        the kept vertices (the box :meth:`shrink` crops to); the whole box, and an all-kept mask, when no
        vertex is kept (an empty mask would blank the scene for good)."""
        alpha = self.dense_alpha(resolution)
        alpha = F.max_pool3d(alpha[None, None], 3, stride=1, padding=1)[0, 0]
        keep = alpha >= self.alpha_mask_threshold
        if not bool(keep.any()):
            self.alpha_mask.set(torch.ones_like(keep), self.aabb)
            return self.aabb.clone()
        self.alpha_mask.set(keep, self.aabb)
        kept = grid_vertices(self.aabb, tuple(keep.shape)).to(self.aabb)[keep.reshape(-1)]  # type: ignore[arg-type]
        return torch.stack([kept.amin(0), kept.amax(0)])

    @torch.no_grad()
    def shrink(self, new_aabb: Tensor) -> None:
        """TensoRF's ``shrink``: crop the planes and lines to the vertices spanning ``new_aabb`` (rounded to
        the nearest vertex, at least to the end of the grid) and move the box to those vertices exactly, so
        every kept vertex stays where it was."""
        res = torch.tensor(self.resolution, device=self.aabb.device)
        units = self.units  # of the grid before the crop
        lo = torch.round((new_aabb[0] - self.aabb[0]) / units).long().clamp(0)
        hi = torch.minimum(torch.round((new_aabb[1] - self.aabb[0]) / units).long() + 1, res)
        hi = torch.maximum(hi, lo + 2)  # a look-up needs two vertices per axis
        if bool((hi > res).any()):
            lo = torch.minimum(lo, res - 2)
            hi = torch.minimum(hi, res)
        self.density.crop(lo.tolist(), hi.tolist())
        self.app.crop(lo.tolist(), hi.tolist())
        self.aabb = torch.stack([self.aabb[0] + lo * units, self.aabb[0] + (hi - 1) * units])

    def tv_loss(self) -> tuple[Tensor, Tensor]:
        """(density, appearance) TensoRF TV terms (:meth:`VMSplit.tv`), to be weighted by ``TV_weight_*``."""
        return self.density.tv(), self.app.tv()

    def l1_loss(self) -> Tensor:
        """TensoRF's density L1 (:meth:`VMSplit.l1`), to be weighted by ``L1_weight_*``."""
        return self.density.l1()


# ---------------------------------------------------------------------- TensoRF's schedule
def n_to_reso(n_voxels: int, aabb: Tensor) -> list[int]:
    """TensoRF's ``N_to_reso``: per-axis vertices for about ``n_voxels`` cubic voxels over ``aabb`` ``[2, 3]``
    (``floor(size / (prod(size) / n)^(1/3))``)."""
    size = (aabb[1] - aabb[0]).double()
    voxel = (size.prod() / n_voxels) ** (1.0 / 3.0)
    return (size / voxel).long().tolist()


def n_samples_for(resolution: Sequence[int], step_ratio: float = 0.5, cap: int = 1_000_000) -> int:
    """TensoRF's ``cal_n_samples`` capped by ``nSamples``: ``min(cap, int(|resolution| / step_ratio))``."""
    return min(int(cap), int(math.sqrt(sum(float(r) ** 2 for r in resolution)) / step_ratio))


def upsampling_voxel_counts(n_init: int, n_final: int, num_upsamples: int) -> list[int]:
    """Voxel counts after each up-sampling, log-spaced from ``n_init`` to ``n_final`` (TensoRF's
    ``N_voxel_list``: ``round(exp(linspace(log n_init, log n_final, num + 1)))[1:]``)."""
    # schedule arithmetic on the host (Python ints out), never on the model's device
    ts = torch.linspace(math.log(n_init), math.log(n_final), num_upsamples + 1, dtype=torch.float64,
                        device="cpu")
    return torch.round(torch.exp(ts)).long().tolist()[1:]


def tensorf_lr(step: int, lr_init: float, upsample_steps: Sequence[int], num_steps: int,
               target_ratio: float = 0.1) -> float:
    """TensoRF's learning rate at ``step`` (0-based): decayed by ``target_ratio^(1 / num_steps)`` after every
    step and reset to ``lr_init`` after each up-sampling step (``lr_upsample_reset``), so
    ``lr_init * ratio^((step - s0) / num_steps)`` with ``s0`` one past the last up-sampling before ``step``."""
    start = max([u + 1 for u in upsample_steps if u < step], default=0)
    return lr_init * target_ratio ** ((step - start) / num_steps)


def tv_weight_at(step: int, weight_init: float, num_steps: int, target_ratio: float = 0.1) -> float:
    """TensoRF's TV weight at ``step``: multiplied by the lr factor before each use, never reset."""
    return weight_init * target_ratio ** ((step + 1) / num_steps)


# ---------------------------------------------------------------------- SpikingNeRF-T's colour input
def tensorf_pe(x: Tensor, num_freqs: int) -> Tensor:
    """TensoRF's ``positional_encoding``: ``[N, D]`` -> ``[N, 2 D F]``, all sines then all cosines of
    ``x_d 2^k`` (``d`` slowest). The package's :func:`~.field.positional_encoding` is the same after its
    leading copy of ``x``, so it is reused without that copy."""
    if num_freqs <= 0:
        return x[:, :0]
    return positional_encoding(x, num_freqs)[:, x.shape[-1]:]


def tensorf_color_input(app_feat: Tensor, viewdirs: Tensor, feat_pe: int = 2, view_pe: int = 2) -> Tensor:
    """SpikingNeRF-T's colour-net input (``MLPRender_Fea_Spiking``): ``[features, viewdirs, PE(features),
    PE(viewdirs)]``, ``[N, 27]`` + ``[N, 3]`` -> ``[N, 27 + 3 + 2*2*27 + 2*2*3] = [N, 150]``."""
    if app_feat.shape[0] != viewdirs.shape[0] or viewdirs.shape[-1] != 3:
        raise ValueError(f"expected app_feat [N, C] and viewdirs [N, 3], got {tuple(app_feat.shape)} and "
                         f"{tuple(viewdirs.shape)}")
    return torch.cat([app_feat, viewdirs, tensorf_pe(app_feat, feat_pe), tensorf_pe(viewdirs, view_pe)], -1)


def tensorf_color_mask(weights: Tensor, valid: Optional[Tensor] = None, threshold: float = 1e-4) -> Tensor:
    """The samples SpikingNeRF-T's colour net sees: ``weights`` ``[R, S]`` (computed with zero density where
    the box or the alpha mask drops a sample) ``> threshold`` (``rayMarch_weight_thres``), and ``valid``.

    The official code then condenses them (``condenser``): each ray's kept samples are consecutive time steps
    near -> far from step 0, rays without one dropped, rays in order; that is
    ``packing.pack_index(mask, "condensing")``. A dropped sample keeps its weight in the accumulation and
    adds no colour, so it darkens the pixel as the official code does (``rgb`` 0 there).
    """
    keep = weights > threshold
    return keep if valid is None else keep & valid


def sample_ray(origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, n_samples: int, near: float, far: float,
               jitter: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """TensoRF's ``sample_ray``: ``n_samples`` steps of ``step`` (world units) from where each ray enters the
    box (clamped to ``[near, far]``), shifted by one ``jitter`` ``[R]`` in ``[0, 1)`` per ray when training.

    ``origins`` / ``dirs`` ``[R, 3]`` -> points ``[R, S, 3]``, ``t`` ``[R, S]``, ``inside`` ``[R, S]`` bool.
    """
    vec = torch.where(dirs == 0, torch.full_like(dirs, 1e-6), dirs)
    t_a, t_b = (aabb[1] - origins) / vec, (aabb[0] - origins) / vec
    t_min = torch.minimum(t_a, t_b).amax(-1).clamp(min=near, max=far)  # [R]
    rng = torch.arange(n_samples, device=origins.device, dtype=origins.dtype)[None]
    if jitter is not None:
        rng = rng + jitter[:, None]
    t = t_min[:, None] + step * rng
    pts = origins[:, None] + dirs[:, None] * t[..., None]
    inside = ((pts >= aabb[0]) & (pts <= aabb[1])).all(-1)
    return pts, t, inside
