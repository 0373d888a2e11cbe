"""Ray-aligned time for SpikingNeRF: turning per-sample features into SNN sequences and back.

Every ray is one batch element and its samples, near to far, are the SNN time steps, so the membrane of a
neuron is carried along the ray. Samples dropped by masking leave holes; two layouts handle them
(SpikingNeRF, Sec. 3.3):

- **padding**: ``T`` = the sample index; masked samples stay in place as zero inputs (holes), so the
  membrane keeps leaking across them. Output ``[S, R, C]``.
- **condensing**: each ray's valid samples are packed from ``t = 0`` with the tail zero-padded and rays
  with no valid sample dropped. Output ``[Tmax, R', C]`` - denser, fewer (and shorter) sequences.

Both take nerfacc-style inputs: features ``[R, S, C]`` and a boolean valid mask ``[R, S]``; ``flip=True``
reverses time (far -> near). ``unpack_*`` are exact inverses on valid samples (holes come back as zeros).
All functions are pure and differentiable w.r.t. the features.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "PackInfo",
    "pack",
    "unpack",
    "pack_padding",
    "unpack_padding",
    "pack_condensing",
    "unpack_condensing",
    "pack_index",
    "scatter_valid",
    "sequence_lengths",
    "TimeBuckets",
    "time_buckets",
    "RaggedRows",
    "ragged_rows",
    "condensed_rows",
    "tensor_density",
]

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


def _check(x: Tensor, mask: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"features must be [R, S, C], got shape {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [R, S] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")


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

    With :func:`scatter_valid` this packs per-sample values that exist only for the valid samples
    (``[N, C]`` in row-major order of ``mask``), so nothing is computed for the holes.

    ``time_index`` (``[R, S]`` int, padding only): the sample index of each entry when the columns are not
    the samples themselves (rays whose empty space was already dropped); padding then has ``T = max + 1``
    steps, with holes wherever an index is missing. Condensing needs only the order, which is the same.

    Example: 2 rays of 3 samples, 3 valid samples (``N = 3``), 4 channels each:

    >>> mask = torch.tensor([[True, False, True], [False, False, True]])
    >>> info = pack_index(mask, "condensing")
    >>> info.packed_mask.shape, info.t_idx.tolist(), info.b_idx.tolist()  # [T, B]: T = longest ray's count
    (torch.Size([2, 2]), [0, 1, 0], [0, 0, 1])
    >>> scatter_valid(torch.ones(3, 4), info).shape  # [N, C] -> [T, B, C]
    torch.Size([2, 2, 4])
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


def pack_padding(x: Tensor, mask: Tensor, flip: bool = False) -> tuple[Tensor, PackInfo]:
    """Padding layout: time = sample index, masked samples become zero holes.

    Args:
        x: ``[R, S, C]`` per-sample features.
        mask: ``[R, S]`` bool valid mask.
        flip: run time far -> near.

    Returns:
        ``([S, R, C], info)``.
    """
    _check(x, mask)
    info = _info_padding(mask, flip)
    return scatter_valid(x[mask], info), info


def pack_condensing(x: Tensor, mask: Tensor, flip: bool = False) -> tuple[Tensor, PackInfo]:
    """Condensing layout: each ray's valid samples from ``t = 0``, tail zero-padded, empty rays dropped.

    Args:
        x: ``[R, S, C]`` per-sample features.
        mask: ``[R, S]`` bool valid mask.
        flip: run time far -> near (the farthest valid sample is ``t = 0``).

    Returns:
        ``([Tmax, R', C], info)`` with ``Tmax`` the largest valid count and ``R'`` the non-empty rays
        (``Tmax = R' = 0`` when nothing is valid).
    """
    _check(x, mask)
    info = _info_condensing(mask, flip)
    return scatter_valid(x[mask], info), info


def unpack(y: Tensor, info: PackInfo) -> Tensor:
    """Inverse of :func:`pack_padding` / :func:`pack_condensing`: ``[T, B, C]`` -> ``[R, S, C]`` (zero holes)."""
    if y.dim() != 3 or y.shape[:2] != info.packed_mask.shape:
        raise ValueError(f"packed tensor must be [T, B, C] with [T, B] = {tuple(info.packed_mask.shape)}, "
                         f"got {tuple(y.shape)}")
    R, S = info.mask.shape
    out = y.new_zeros(R, S, y.shape[-1])
    out[info.mask] = y[info.t_idx, info.b_idx]
    return out


def unpack_padding(y: Tensor, info: PackInfo) -> Tensor:
    """``[S, R, C]`` -> ``[R, S, C]``; see :func:`unpack`."""
    return unpack(y, info)


def unpack_condensing(y: Tensor, info: PackInfo) -> Tensor:
    """``[Tmax, R', C]`` -> ``[R, S, C]``; see :func:`unpack`."""
    return unpack(y, info)


def pack(x: Tensor, mask: Tensor, mode: PackMode = "padding", flip: bool = False) -> tuple[Tensor, PackInfo]:
    """Dispatch to :func:`pack_padding` or :func:`pack_condensing`."""
    if mode == "padding":
        return pack_padding(x, mask, flip)
    if mode == "condensing":
        return pack_condensing(x, mask, flip)
    raise ValueError(f"unknown packing mode {mode!r}; use 'padding' or 'condensing'")


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


@dataclass
class TimeBuckets:
    """The valid samples of a packed layout, grouped by sequence length for a recurrence over time.

    Sequences are sorted by length (last valid step + 1) and cut into groups; group ``j`` is a dense
    ``[steps[j], widths[j], C]`` block holding its sequences' valid samples at their time steps (holes of
    the padding layout stay zero inside the block). A recurrence then runs on blocks that are nearly full
    instead of on the whole ``[T, B, C]`` layout, where a few long rays make every short ray run ``T`` steps
    (condensed lego rays: tensor density ~0.26, so ~4x wasted work) - and no ``[T, B, C]`` tensor is built.

    All blocks live back to back in one flat ``[sum_j steps[j] * widths[j], C]`` buffer: block ``j`` starts at
    row ``offsets[j]`` and holds step ``t``, column ``c`` at row ``offsets[j] + t * widths[j] + c``; ``pos``
    ``[N]`` is that row for each valid sample (row-major order of ``info.mask``), so moving the samples in and
    out is one ``index_copy`` and one ``index_select`` whatever the number of groups.
    """

    steps: list
    widths: list
    offsets: list
    pos: Tensor

    @property
    def rows(self) -> int:
        return self.offsets[-1] + self.steps[-1] * self.widths[-1] if self.steps else 0

    def apply(self, fn, xv: Tensor) -> Tensor:
        """``fn`` (a recurrence over the leading time axis, e.g. a LIF layer, ``[T, B, C]`` -> same shape) on
        the valid samples ``xv`` ``[N, C]`` -> ``[N, C]``. Exact: every sequence is a lane of its own, and the
        block's extra steps come after its last valid sample, so they never feed one."""
        if xv.shape[0] != self.pos.numel():
            raise ValueError(f"expected [{self.pos.numel()}, C] valid-sample values, got {tuple(xv.shape)}")
        if not self.steps:
            return xv.new_zeros(xv.shape)
        flat = xv.new_zeros(self.rows, *xv.shape[1:]).index_copy(0, self.pos, xv)
        outs = [fn(flat[o:o + s * w].view(s, w, *xv.shape[1:])).reshape(s * w, *xv.shape[1:])
                for s, w, o in zip(self.steps, self.widths, self.offsets)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.index_select(0, self.pos)


def time_buckets(info: PackInfo, groups: int = 8) -> TimeBuckets:
    """Group the sequences of ``info`` by length into at most ``groups`` blocks (see :class:`TimeBuckets`)."""
    dev = info.t_idx.device
    B = info.num_sequences
    lengths = sequence_lengths(info)
    order = torch.argsort(lengths, descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(B, device=dev)
    groups = max(1, min(groups, B))
    bounds = [round(B * k / groups) for k in range(groups + 1)]
    sorted_len = lengths[order][torch.tensor(bounds[:-1], device=dev).clamp_max(max(B - 1, 0))].tolist() if B else []
    steps, widths, offsets, starts = [], [], [], []
    off = 0
    for j in range(groups if B else 0):
        w = bounds[j + 1] - bounds[j]
        if w == 0 or sorted_len[j] == 0:
            continue
        steps.append(int(sorted_len[j]))
        widths.append(w)
        offsets.append(off)
        starts.append(bounds[j])
        off += steps[-1] * w
    if not steps:
        return TimeBuckets([], [], [], info.t_idx.new_zeros(0))
    r = rank[info.b_idx]  # [N] rank of each sample's sequence
    g = torch.bucketize(r, torch.tensor(starts[1:], device=dev), right=True)  # [N] block of each sample
    t_off = torch.tensor(offsets, device=dev)[g]
    w_of = torch.tensor(widths, device=dev)[g]
    s_of = torch.tensor(starts, device=dev)[g]
    pos = t_off + info.t_idx * w_of + (r - s_of)
    return TimeBuckets(steps, widths, offsets, pos)


@dataclass
class RaggedRows:
    """The valid samples of a packed layout as ragged sequences, in place: for inference, where the neuron
    layers run row by row on ``[N, C]`` values (:meth:`~spikenerf.snn.BaseNode.forward_ragged`) and nothing
    is copied into time blocks and back (:class:`TimeBuckets` does that, with gradients, for training).

    The valid samples of one packed sequence are consecutive rows (row-major order of ``info.mask``: ray by
    ray, near -> far). ``starts`` ``[B + 1]``: first row of each sequence; ``steps`` ``[N]``: each row's time
    step (``info.t_idx``); ``reverse``: time runs far -> near (``flip``), so the rows are read last to first.
    """

    starts: Tensor
    steps: Tensor
    reverse: bool

    def blocks(self, rows: int):
        """Yield ``(r0, r1, block)``: consecutive runs of whole sequences of about ``rows`` rows each (a
        sequence is never split), ``block`` the :class:`RaggedRows` of rows ``r0 .. r1 - 1``."""
        st = self.starts.tolist()
        qa, B = 0, len(st) - 1
        while qa < B:
            qb = min(B, max(qa + 1, bisect.bisect_left(st, st[qa] + rows)))  # first boundary past r0 + rows
            r0, r1 = st[qa], st[qb]
            if r1 > r0:
                yield r0, r1, RaggedRows(self.starts[qa:qb + 1] - r0, self.steps[r0:r1], self.reverse)
            qa = qb


def ragged_rows(info: PackInfo) -> RaggedRows:
    """The :class:`RaggedRows` of ``info`` (its sequences' valid samples, where they already are)."""
    counts = torch.bincount(info.b_idx, minlength=info.num_sequences)
    starts = torch.zeros(info.num_sequences + 1, dtype=torch.long, device=info.t_idx.device)
    torch.cumsum(counts, 0, out=starts[1:])
    return RaggedRows(starts, info.t_idx, info.flip)


def condensed_rows(mask: Tensor, flip: bool = False) -> tuple[RaggedRows, Tensor]:
    """``ragged_rows(pack_index(mask, "condensing", flip))`` and that layout's :func:`tensor_density`, straight
    from the per-ray counts of ``mask`` ``[R, S]``: what inference needs, without the ``[R, S]`` position
    cumsum, the second ``nonzero`` and the packed ``[T, B]`` mask of :func:`pack_index`.

    >>> rows, density = condensed_rows(torch.tensor([[True, False, True], [False, False, False], [True, False, False]]))
    >>> rows.starts.tolist(), rows.steps.tolist(), float(density)  # 2 sequences (the empty ray dropped), T = 2
    ([0, 2, 3], [0, 1, 0], 0.75)
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a [R, S] bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    counts = mask.sum(1)
    counts = counts[counts > 0]  # the sequences: rays with a valid sample, in ray order
    starts = torch.zeros(counts.numel() + 1, dtype=torch.long, device=mask.device)
    torch.cumsum(counts, 0, out=starts[1:])
    n = int(starts[-1])
    steps = torch.arange(n, device=mask.device) - torch.repeat_interleave(starts[:-1], counts, output_size=n)
    if flip:
        steps = torch.repeat_interleave(counts, counts, output_size=n) - 1 - steps
    total = int(counts.max()) * counts.numel() if counts.numel() else 0
    density = torch.tensor(n / total if total else 0.0, dtype=torch.float32, device=mask.device)
    return RaggedRows(starts, steps, flip), density
