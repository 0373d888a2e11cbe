"""Plain references the NeRF wing's fast paths are tested against (test-only; never imported by the package).

- dense pack / unpack of ``[R, S, C]`` features into the packed ``[T, B, C]`` layouts of
  :func:`spikenerf.nerf.packing.pack_index` and back (exact inverses on the valid samples);
- :func:`uncontract`, the inverse of :func:`spikenerf.nerf.contraction.contract`;
- :func:`lif_per_ray` / :func:`lif_per_sample_repeated`: a LIF layer run one ray (one sample) at a time, the
  per-ray loops every time layout of :mod:`spikenerf.nerf.time_layout` must reproduce.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from spikenerf.nerf.packing import PackInfo, PackMode, pack_index, scatter_valid


def _check(x: Tensor, mask: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"features must be [R, S, C], got shape {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [R, S] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")


def pack(x: Tensor, mask: Tensor, mode: PackMode = "padding", flip: bool = False) -> tuple[Tensor, PackInfo]:
    """``[R, S, C]`` + mask ``[R, S]`` -> packed ``[T, B, C]`` (padding: ``[S, R, C]``; condensing:
    ``[Tmax, R', C]``, empty rays dropped) and its :class:`PackInfo`."""
    _check(x, mask)
    info = pack_index(mask, mode, flip)
    return scatter_valid(x[mask], info), info


def pack_padding(x: Tensor, mask: Tensor, flip: bool = False) -> tuple[Tensor, PackInfo]:
    return pack(x, mask, "padding", flip)


def pack_condensing(x: Tensor, mask: Tensor, flip: bool = False) -> tuple[Tensor, PackInfo]:
    return pack(x, mask, "condensing", flip)


def unpack(y: Tensor, info: PackInfo) -> Tensor:
    """Inverse of :func:`pack`: ``[T, B, C]`` -> ``[R, S, C]`` (zero holes)."""
    if y.dim() != 3 or y.shape[:2] != info.packed_mask.shape:
        raise ValueError(f"packed tensor must be [T, B, C] with [T, B] = {tuple(info.packed_mask.shape)}, "
                         f"got {tuple(y.shape)}")
    R, S = info.mask.shape
    out = y.new_zeros(R, S, y.shape[-1])
    out[info.mask] = y[info.t_idx, info.b_idx]
    return out


unpack_padding = unpack
unpack_condensing = unpack


def uncontract(y: Tensor, aabb: Tensor, bg_len: float) -> Tensor:
    """Inverse of ``contract`` for points with ``|v|_inf < 1 + b`` (the shell's outer face is infinity)."""
    aabb = aabb.to(y)
    c, h = (aabb[0] + aabb[1]) * 0.5, (aabb[1] - aabb[0]) * 0.5
    v = (y - c) / h
    m = v.abs().amax(-1, keepdim=True)
    n = bg_len / (1.0 + bg_len - m.clamp(1.0, 1.0 + bg_len - 1e-12))
    scale = torch.where(m <= 1.0, torch.ones_like(m), n / m.clamp_min(1.0))
    return c + h * (v * scale)


def lif_per_ray(layer: Callable[[Tensor], Tensor], xv: Tensor, mask: Tensor, mode: PackMode, flip: bool = False
                ) -> Tensor:
    """A LIF layer ``[T, 1, H] -> [T, 1, H]`` on the valid samples ``xv`` ``[N, H]`` (row-major order of
    ``mask`` ``[R, S]``), one ray at a time: padding runs the ray's ``S`` steps with zero input at its holes,
    condensing its valid samples back to back; ``flip`` runs the sequence far -> near. Returns ``[N, H]``."""
    out, row = [], 0
    for r in range(mask.shape[0]):
        cols = mask[r].nonzero(as_tuple=True)[0]
        if cols.numel() == 0:
            continue
        xr = xv[row:row + cols.numel()]
        row += cols.numel()
        if mode == "padding":
            seq = xv.new_zeros(mask.shape[1], xv.shape[1]).index_put((cols,), xr)
        else:
            seq = xr
        seq = seq.flip(0) if flip else seq
        y = layer(seq[:, None])[:, 0]
        y = y.flip(0) if flip else y
        out.append(y[cols] if mode == "padding" else y)
    return torch.cat(out) if out else xv.new_zeros(0, xv.shape[1])


def lif_per_sample_repeated(layer: Callable[[Tensor], Tensor], xv: Tensor, T: int) -> Tensor:
    """Spik-NeRF's time, one sample at a time: its ``[H]`` input repeated over ``T`` steps through ``layer``.
    ``xv`` ``[N, H]`` -> ``[T, N, H]``."""
    return torch.stack([layer(x.expand(T, 1, x.shape[0]))[:, 0] for x in xv], 1)
