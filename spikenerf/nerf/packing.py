"""Ray-aligned time for SpikingNeRF: where each valid sample goes when the samples of a ray become the SNN
time steps.

Every ray is one batch element and its samples, near to far, are the SNN time steps, so the membrane of a
neuron is carried along the ray. Samples dropped by masking leave holes; two layouts handle them
(SpikingNeRF, Sec. 3.3):

- **padding**: ``T`` = the sample index; masked samples stay in place as zero inputs (holes), so the
  membrane keeps leaking across them: a ``[S, R]`` layout.
- **condensing**: each ray's valid samples are packed from ``t = 0`` with the tail zero-padded and rays
  with no valid sample dropped: ``[Tmax, R']`` - denser, fewer (and shorter) sequences.

:func:`pack_index` computes that place (:class:`PackInfo`) from a boolean valid mask ``[R, S]``
(``flip=True`` reverses time, far -> near) without moving data; the time layouts that run the LIF layers on
it are :mod:`spikenerf.nerf.time_layout`. The dense pack / unpack of ``[R, S, C]`` features, the reference
these are tested against, lives in the tests (``tests/nerf/reference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["PackInfo", "PackMode", "pack_index", "scatter_valid", "sequence_lengths", "tensor_density"]

PackMode = Literal["padding", "condensing"]


@dataclass
class PackInfo:
    """Where every valid sample went.

    Attributes:
        mode: ``padding`` or ``condensing``.
        mask: ``[R, S]`` bool, the valid mask the sequence was packed from.
        t_idx: ``[N]`` time index of each valid sample (``N = mask.sum()``, row-major order of ``mask``).
        b_idx: ``[N]`` batch (sequence) index of each valid sample.
        ray_idx: ``[B]`` the original ray of each packed sequence (all rays for padding).
        packed_mask: ``[T, B]`` bool, True where the packed tensor holds a valid sample.
        flip: whether time runs far -> near.
    """

    mode: str
    mask: Tensor
    t_idx: Tensor
    b_idx: Tensor
    ray_idx: Tensor
    packed_mask: Tensor
    flip: bool

    @property
    def num_steps(self) -> int:
        return int(self.packed_mask.shape[0])

    @property
    def num_sequences(self) -> int:
        return int(self.packed_mask.shape[1])


def _info_padding(mask: Tensor, flip: bool, time_index: Tensor | None = None) -> PackInfo:
    R, S = mask.shape
    r, s = mask.nonzero(as_tuple=True)
    if time_index is None:
        steps, times = S, s
    else:  # explicit step of each entry (columns of a compacted layout)
        times = time_index[r, s]
        steps = int(times.max()) + 1 if times.numel() else 0
    t = (steps - 1 - times) if flip else times
    packed_mask = torch.zeros(steps, R, dtype=torch.bool, device=mask.device)
    packed_mask[t, r] = True
    return PackInfo("padding", mask, t, r, torch.arange(R, device=mask.device), packed_mask, flip)


def _info_condensing(mask: Tensor, flip: bool) -> PackInfo:
    counts = mask.sum(1)  # [R]
    keep = counts > 0
    ray_idx = keep.nonzero(as_tuple=True)[0]  # [R']
    new_ray = torch.cumsum(keep.long(), 0) - 1  # [R] rank among kept rays
    pos = torch.cumsum(mask.long(), 1) - 1  # [R, S] position of each valid sample within its ray
    r, s = mask.nonzero(as_tuple=True)
    t = pos[r, s]
    if flip:
        t = counts[r] - 1 - t
    b = new_ray[r]
    t_max = int(counts.max()) if counts.numel() > 0 else 0
    packed_mask = torch.zeros(t_max, ray_idx.numel(), dtype=torch.bool, device=mask.device)
    packed_mask[t, b] = True
    return PackInfo("condensing", mask, t, b, ray_idx, packed_mask, flip)


def pack_index(mask: Tensor, mode: PackMode = "padding", flip: bool = False,
               time_index: Tensor | None = None) -> PackInfo:
    """Where each valid sample of ``mask`` ``[R, S]`` goes in the packed layout, without moving any data.

    ``time_index`` (``[R, S]`` int, padding only): the sample index of each entry when the columns are not
    the samples themselves (rays whose empty space was already dropped); padding then has ``T = max + 1``
    steps, with holes wherever an index is missing. Condensing needs only the order, which is the same.

    Example: 2 rays of 3 samples, 3 valid samples (``N = 3``):

    >>> mask = torch.tensor([[True, False, True], [False, False, True]])
    >>> info = pack_index(mask, "condensing")
    >>> info.packed_mask.shape, info.t_idx.tolist(), info.b_idx.tolist()  # [T, B]: T = longest ray's count
    (torch.Size([2, 2]), [0, 1, 0], [0, 0, 1])
    >>> pad = pack_index(mask, "padding")  # T = sample index: the hole at s = 1 stays a zero step
    >>> pad.packed_mask.shape, pad.t_idx.tolist()
    (torch.Size([3, 2]), [0, 2, 2])
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a [R, S] bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    if time_index is not None and time_index.shape != mask.shape:
        raise ValueError(f"time_index must be [R, S] = {tuple(mask.shape)}, got {tuple(time_index.shape)}")
    if mode == "padding":
        return _info_padding(mask, flip, time_index)
    if mode == "condensing":
        return _info_condensing(mask, flip)
    raise ValueError(f"unknown packing mode {mode!r}; use 'padding' or 'condensing'")


def scatter_valid(xv: Tensor, info: PackInfo) -> Tensor:
    """``[N, C]`` values of the valid samples (row-major order of ``info.mask``) -> packed ``[T, B, C]``."""
    if xv.dim() != 2 or xv.shape[0] != info.t_idx.numel():
        raise ValueError(f"expected [{info.t_idx.numel()}, C] valid-sample values, got {tuple(xv.shape)}")
    out = xv.new_zeros(info.num_steps, info.num_sequences, xv.shape[-1])
    out[info.t_idx, info.b_idx] = xv  # index_put keeps autograd to xv
    return out


def tensor_density(mask_or_info: Tensor | PackInfo) -> Tensor:
    """Fraction of valid entries in a packed ``[T, B]`` mask (or a :class:`PackInfo`), a 0-d tensor on its
    device (no host sync; ``float()`` it to log); 0 for an empty one."""
    m = mask_or_info.packed_mask if isinstance(mask_or_info, PackInfo) else mask_or_info
    total = m.numel()
    return m.sum() / total if total > 0 else m.new_zeros((), dtype=torch.float32)


def sequence_lengths(info: PackInfo) -> Tensor:
    """``[B]`` last valid step + 1 of every packed sequence (0 for a sequence without valid steps)."""
    out = torch.zeros(info.num_sequences, dtype=torch.long, device=info.t_idx.device)
    if info.t_idx.numel():
        out.scatter_reduce_(0, info.b_idx, info.t_idx + 1, reduce="amax")
    return out
