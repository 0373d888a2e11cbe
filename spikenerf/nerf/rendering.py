"""Volume rendering steps of the voxel-grid models, one pure function each (nerfacc style, ``[R, S]`` samples).

``raw density -> alpha -> masks -> compositing weights -> rgb / depth / accumulation``:

- :func:`density_shift` / :func:`density_activation` / :func:`density_to_alpha`: the one density activation
  of the package, DVGO's shifted softplus ``sigma = softplus(raw + shift)`` (per base-voxel unit) and
  ``alpha = 1 - exp(-sigma * interval)`` (:func:`sigma_to_alpha`, the one place it is written).
- :func:`compositing_weights`: ``alpha`` -> weights and the transmittance left after the last sample.
- :func:`sample_masks`: the alpha and weight masks (samples that never reach the colour network).
- :func:`composite`: weights + per-sample colours -> ``rgb``, ``depth``, ``accumulation`` per ray.
- :func:`distortion_loss`: mip-NeRF 360's distortion loss (DVGOv2 uses it for unbounded scenes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["density_shift", "density_activation", "density_to_alpha", "sigma_to_alpha", "compositing_weights", "Masked",
           "sample_masks", "Composited", "composite", "background_rgb", "distortion_loss"]


def density_shift(alpha_init: float) -> float:
    """DVGO's activation shift: an all-zero grid starts at ``alpha_init`` per base voxel,
    ``softplus(shift) * 1 = -log(1 - alpha_init)``.

    >>> round(density_shift(1e-2), 4)
    -4.5951
    """
    return math.log(1.0 / (1.0 - alpha_init) - 1.0)


def density_activation(raw: Tensor, shift: float) -> Tensor:
    """Raw grid density ``[...]`` -> volume density ``softplus(raw + shift)`` (per base-voxel unit)."""
    return F.softplus(raw + shift)


def density_to_alpha(raw: Tensor, shift: float, interval: Tensor | float) -> Tensor:
    """Raw density ``[...]`` -> alpha ``1 - exp(-softplus(raw + shift) * interval)``; ``interval`` is the
    step length in base-voxel units.

    >>> a = density_to_alpha(torch.zeros(4), density_shift(1e-2), 1.0)
    >>> a.shape, round(float(a[0]), 6)
    (torch.Size([4]), 0.01)
    """
    return sigma_to_alpha(density_activation(raw, shift), interval)


def sigma_to_alpha(sigma: Tensor, delta: Tensor | float) -> Tensor:
    """Volume density ``[...]`` over a step of length ``delta`` -> alpha ``1 - exp(-sigma * delta)``, the
    opacity of that step (in whatever unit ``sigma`` and ``delta`` share).

    >>> round(float(sigma_to_alpha(torch.tensor(2.0), 0.5)), 6)  # 1 - e^-1
    0.632121
    """
    return 1.0 - torch.exp(-sigma * delta)


def compositing_weights(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """``alpha`` ``[R, S]`` -> weights ``[R, S]`` and the transmittance left after the last sample ``[R]``."""
    trans = torch.cumprod(1.0 - alpha + 1e-10, dim=1)
    excl = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], 1)
    return alpha * excl, trans[:, -1]


class Masked(NamedTuple):
    """Samples that survive the alpha and weight masks, their compositing weights (zero elsewhere) and the
    background weight of each ray."""

    keep: Tensor  # [R, S] bool
    weights: Tensor  # [R, S]
    background: Tensor  # [R, 1] transmittance left after the alpha-kept samples


def sample_masks(alpha: Tensor, valid: Tensor, alpha_threshold: float, weight_threshold: float) -> Masked:
    """Masks after sampling: ``valid`` -> ``alpha > alpha_threshold`` -> weight ``> weight_threshold``.

    ``alpha`` ``[R, S]`` (anything where ``valid`` ``[R, S]`` is False is ignored). The weights are those of
    the alpha-masked samples, zeroed where the weight mask drops a sample (DVGO's ``fast_color_thres``); the
    background weight is the transmittance after every alpha-kept sample (DVGO's ``alphainv_last``), so a
    sample dropped by the weight mask darkens nothing and lends the background nothing.

    >>> m = sample_masks(torch.tensor([[0.5, 0.5, 1e-5]]), torch.ones(1, 3, dtype=torch.bool), 1e-4, 0.3)
    >>> m.keep.tolist(), m.weights.tolist(), m.background.tolist()  # the 2nd weight is 0.25 < 0.3
    ([[True, False, False]], [[0.5, 0.0, 0.0]], [[0.25]])
    """
    keep = valid & (alpha > alpha_threshold)
    weights, trans_last = compositing_weights(alpha * keep)
    keep = keep & (weights > weight_threshold)
    return Masked(keep, weights * keep, trans_last.clamp_max(1.0)[:, None])


class Composited(NamedTuple):
    """Per-ray results of alpha compositing, each ``[R, k]``."""

    rgb: Tensor  # [R, 3]
    depth: Tensor  # [R, 1]
    accumulation: Tensor  # [R, 1]


def background_rgb(color: str, ref: Tensor) -> Tensor:
    """``"white"`` | ``"black"`` -> ``[3]`` on ``ref``'s device and dtype."""
    v = 1.0 if color == "white" else 0.0
    return torch.full((3,), v, dtype=ref.dtype, device=ref.device)


def composite(weights: Tensor, rgb: Tensor, t: Tensor, background: Tensor,
              background_weight: Tensor | None = None) -> Composited:
    """``weights`` ``[R, S]``, per-sample ``rgb`` ``[R, S, 3]``, distances ``t`` ``[R, S]``, ``background``
    ``[3]`` -> rgb ``[R, 3]``, depth and accumulation ``[R, 1]``.

    ``background_weight`` ``[R, 1]`` (:attr:`Masked.background`) is how much of the background shows through;
    accumulation is ``1 - background_weight``. Without it, ``1 - sum(weights)``.
    """
    acc = weights.sum(1, keepdim=True)
    bg_w = (1.0 - acc) if background_weight is None else background_weight
    w = weights[:, None, :]  # per-ray weighted sums as [1, S] x [S, k] products: no [R, S, 3] temporary
    out_rgb = torch.bmm(w, rgb)[:, 0] + bg_w * background
    depth = torch.bmm(w, t[..., None])[:, 0] / acc.clamp_min(1e-10)
    return Composited(out_rgb, depth, 1.0 - bg_w)


def distortion_loss(weights: Tensor, s: Tensor, interval: float) -> Tensor:
    """mip-NeRF 360's distortion loss per ray, averaged: ``sum_ij w_i w_j |s_i - s_j| + sum_i w_i^2 d / 3``.

    ``weights`` ``[R, S]`` (zero for dropped samples), ``s`` ``[R, S]`` the samples' positions, increasing along
    each ray (for the contracted lattice: its index times ``interval``, uniform in the contracted space),
    ``interval`` their spacing. The double sum in O(S): ``2 sum_i w_i (s_i W_<i - (w s)_<i)``.

    >>> w = torch.tensor([[0.5, 0.0, 0.5]]); s = torch.tensor([[0.0, 1.0, 2.0]])
    >>> round(float(distortion_loss(w, s, 1.0)), 4)  # 2 * 0.25 * 2 + (0.25 + 0.25) / 3
    1.1667
    """
    ws = weights * s
    w_before = torch.cumsum(weights, 1) - weights
    ws_before = torch.cumsum(ws, 1) - ws
    bi = 2.0 * (weights * (s * w_before - ws_before)).sum(1)
    uni = (weights ** 2).sum(1) * interval / 3.0
    return (bi + uni).mean()

