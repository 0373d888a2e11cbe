"""Where the spiking colour net's time runs: one object per time layout, chosen in one place.

The colour net sees the valid samples of a chunk of rays as ``[N, H]`` rows (row-major order of the sample
mask: ray by ray, near -> far). A LIF layer needs them as sequences; each layout says how:

- :class:`TimeBuckets` (padding; any layout with gradients off the CPU): the sequences sorted by length
  and copied into a few nearly full ``[T, B, H]`` time blocks (padding's holes are zero steps), run, and read
  back at the rows.
- :class:`RaggedRows` (inference on the CPU): the rows in place, scanned sequence by sequence by the C
  kernel (:meth:`~spikenerf.snn.BaseNode.forward_ragged`), in blocks of whole rays so each block stays in
  the CPU cache; holes are steps with no row.
- :class:`Segments` (training with condensing on the CPU): hole-free sequences in place, with gradients
  (:meth:`~spikenerf.snn.BaseNode.forward_segments`).
- :class:`RepeatSteps` (Spik-NeRF's time): every sample is its own sequence of ``T`` steps with the same
  input; the read-out is averaged over the steps.
- :class:`DenseBlock`: a ``[T, B, H]`` block without holes given as it is; :class:`RayBlock` the ``R`` rays of
  ``S`` samples each as one such block (the NeRF MLP's ray time, every sample runs).

Each has :meth:`~TimeLayout.enter_input` (a net's real-valued per-sample input, before its first layer),
:meth:`~TimeLayout.enter` (first-layer currents ``[N, H]`` -> what ``run`` takes),
:meth:`~TimeLayout.run` (one LIF layer, same shape in and out), :meth:`~TimeLayout.read_out` (a per-step
output -> per sample) and :meth:`~TimeLayout.per_sample` (a count -> ``[N]``). :func:`choose_layout` is the
one decision; :func:`time_steps_of` the one rule for Spik-NeRF's ``time_mode``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator, Literal, Optional, Protocol, Sequence

import torch
from torch import Tensor

from .packing import PackInfo, PackMode, pack_index, sequence_lengths, tensor_density

__all__ = ["Neuron", "TimeLayout", "TimeBuckets", "RaggedRows", "Segments", "RepeatSteps", "DenseBlock", "RayBlock",
           "time_buckets", "ragged_rows", "condensed_rows", "segment_steps", "choose_layout", "time_steps_of",
           "TimeMode", "PackMode"]

TimeMode = Literal["repeat", "ray"]


class Neuron(Protocol):
    """What a layout runs: a core neuron (:class:`~spikenerf.snn.BaseNode`) or its deployed view."""

    def __call__(self, x: Tensor) -> Tensor: ...
    def forward_ragged(self, xv: Tensor, starts: Tensor, steps: Tensor, reverse: bool = False) -> Tensor: ...
    def forward_segments(self, xv: Tensor, starts: Tensor, reverse: bool = False) -> Tensor: ...


class TimeLayout:
    """One-step-per-sample layouts: ``enter`` / ``read_out`` are the identity, a count sums its channels."""

    density: Tensor | float = 1.0
    """Tensor density of the packed ``[T, B]`` layout this stands for (valid entries / entries)."""
    steps_per_sample: int = 1
    """Time steps each valid sample spends in a LIF layer."""

    def enter_input(self, x: Tensor) -> Tensor:
        """A net's per-sample input ``[N, C]`` -> what its first layer takes: as it is where the input is the
        same at every step (the first layer's output is :meth:`enter`-ed instead, computed once)."""
        return x

    def enter(self, x1: Tensor) -> Tensor:
        """First-layer currents of the valid samples ``[N, H]`` -> the input of :meth:`run`."""
        return x1

    def run(self, neuron: Neuron, x: Tensor) -> Tensor:
        raise NotImplementedError

    def read_out(self, y: Tensor) -> Tensor:
        """A layer output in :meth:`run`'s shape -> one value per valid sample ``[N, C]``."""
        return y

    def per_sample(self, c: Tensor) -> Tensor:
        """Per-neuron counts in :meth:`run`'s shape -> their sum per valid sample ``[N]``."""
        return c.sum(-1)

    @property
    def blockwise(self) -> bool:
        """Whether the rows can be cut into blocks of whole sequences (``blocks(rows)``, :class:`RaggedRows`)
        that inference runs one after the other."""
        return False


@dataclass
class TimeBuckets(TimeLayout):
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
    density: Tensor | float = 1.0

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

    def run(self, neuron: Neuron, x: Tensor) -> Tensor:
        """``neuron`` on every time block; ``x`` / result ``[N, H]``, valid samples only."""
        return self.apply(neuron, x)


def time_buckets(info: PackInfo, groups: int = 8) -> TimeBuckets:
    """Group the sequences of ``info`` by length into at most ``groups`` blocks (see :class:`TimeBuckets`)."""
    dev = info.t_idx.device
    B = info.num_sequences
    density = tensor_density(info)
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
        return TimeBuckets([], [], [], info.t_idx.new_zeros(0), density)
    r = rank[info.b_idx]  # [N] rank of each sample's sequence
    g = torch.bucketize(r, torch.tensor(starts[1:], device=dev), right=True)  # [N] block of each sample
    t_off = torch.tensor(offsets, device=dev)[g]
    w_of = torch.tensor(widths, device=dev)[g]
    s_of = torch.tensor(starts, device=dev)[g]
    pos = t_off + info.t_idx * w_of + (r - s_of)
    return TimeBuckets(steps, widths, offsets, pos, density)


@dataclass
class RaggedRows(TimeLayout):
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
    density: Tensor | float = 1.0

    def run(self, neuron: Neuron, x: Tensor) -> Tensor:
        """The ragged inference scan (no gradient); ``x`` / result ``[N, H]``."""
        return neuron.forward_ragged(x, self.starts, self.steps, self.reverse)

    @property
    def blockwise(self) -> bool:
        return True

    def blocks(self, rows: int) -> Iterator[tuple[int, int, "RaggedRows"]]:
        """Yield ``(r0, r1, block)``: consecutive runs of whole sequences of about ``rows`` rows each (a
        sequence is never split), ``block`` the layout of rows ``r0 .. r1 - 1``."""
        st = self.starts.tolist()
        qa, B = 0, len(st) - 1
        while qa < B:
            qb = min(B, max(qa + 1, bisect.bisect_left(st, st[qa] + rows)))  # first boundary past r0 + rows
            r0, r1 = st[qa], st[qb]
            if r1 > r0:
                yield r0, r1, type(self)(self.starts[qa:qb + 1] - r0, self.steps[r0:r1], self.reverse, self.density)
            qa = qb


@dataclass
class Segments(RaggedRows):
    """Hole-free sequences in place with gradients (training, condensing; :meth:`~spikenerf.snn.BaseNode.
    forward_segments`). ``steps`` as :class:`RaggedRows` (a deployed neuron, which has no gradient, reads them)."""

    def run(self, neuron: Neuron, x: Tensor) -> Tensor:
        return neuron.forward_segments(x, self.starts, self.reverse)

    @property
    def blockwise(self) -> bool:
        return False


@dataclass
class DenseBlock(TimeLayout):
    """A ``[T, B, H]`` block with no holes, run as it is (every ray's samples are its steps)."""

    density: Tensor | float = 1.0

    def run(self, neuron: Neuron, x: Tensor) -> Tensor:
        return neuron(x)

    def per_sample(self, c: Tensor) -> Tensor:
        """``[T, B, H]`` -> ``[B]``: summed over the steps and channels."""
        return c.sum((0, 2))


@dataclass
class RayBlock(DenseBlock):
    """``R`` rays of ``S`` samples, every sample valid, as one ``[S, R, C]`` block (ray time without masks).
    Per-sample tensors are ``[R * S, ...]`` in ray-major order."""

    R: int = 0
    S: int = 0

    def enter_input(self, x: Tensor) -> Tensor:
        """``[R * S, C]`` -> ``[S, R, C]``."""
        return x.reshape(self.R, self.S, -1).transpose(0, 1)

    def read_out(self, y: Tensor) -> Tensor:
        """``[S, R, C]`` -> ``[R * S, C]``."""
        return y.transpose(0, 1).reshape(self.R * self.S, -1)

    def per_sample(self, c: Tensor) -> Tensor:
        """``[S, R, H]`` -> ``[R * S]``."""
        return c.sum(-1).transpose(0, 1).reshape(-1)


@dataclass
class RepeatSteps(DenseBlock):
    """Spik-NeRF's time: each valid sample is a sequence of ``T`` steps with the same input current, the
    samples the batch (a ``[T, N, H]`` block, no holes); the read-out is the mean over the steps."""

    T: int = 1

    @property
    def steps_per_sample(self) -> int:  # type: ignore[override]
        return self.T

    def enter(self, x1: Tensor) -> Tensor:
        """``[N, H]`` -> ``[T, N, H]`` (a broadcast view: the input is computed once)."""
        return x1.expand(self.T, *x1.shape)

    def read_out(self, y: Tensor) -> Tensor:
        """``[T, N, C]`` -> ``[N, C]``: averaged over the T steps."""
        return y.mean(0)


def segment_steps(starts: Tensor, reverse: bool = False) -> Tensor:
    """``[N]`` time step of every row of hole-free sequences stored row by row (``starts`` ``[B + 1]``):
    ``0, 1, ..`` within each sequence, or ``.., 1, 0`` with ``reverse``."""
    counts = starts.diff()
    n = int(starts[-1]) if starts.numel() else 0
    steps = torch.arange(n, device=starts.device) - torch.repeat_interleave(starts[:-1], counts, output_size=n)
    if reverse:
        steps = torch.repeat_interleave(counts, counts, output_size=n) - 1 - steps
    return steps


def ragged_rows(info: PackInfo) -> RaggedRows:
    """The :class:`RaggedRows` of ``info`` (its sequences' valid samples, where they already are)."""
    counts = torch.bincount(info.b_idx, minlength=info.num_sequences)
    starts = torch.zeros(info.num_sequences + 1, dtype=torch.long, device=info.t_idx.device)
    torch.cumsum(counts, 0, out=starts[1:])
    return RaggedRows(starts, info.t_idx, info.flip, tensor_density(info))


def condensed_rows(mask: Tensor, flip: bool = False) -> RaggedRows:
    """``ragged_rows(pack_index(mask, "condensing", flip))`` with that layout's tensor density, straight
    from the per-ray counts of ``mask`` ``[R, S]``: what inference needs, without the ``[R, S]`` position
    cumsum, the second ``nonzero`` and the packed ``[T, B]`` mask of :func:`~.packing.pack_index`.

    >>> rows = condensed_rows(torch.tensor([[True, False, True], [False, False, False], [True, False, False]]))
    >>> rows.starts.tolist(), rows.steps.tolist(), float(rows.density)  # 2 sequences (empty ray dropped), T = 2
    ([0, 2, 3], [0, 1, 0], 0.75)
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a [R, S] bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    counts = mask.sum(1)
    counts = counts[counts > 0]  # the sequences: rays with a valid sample, in ray order
    starts = torch.zeros(counts.numel() + 1, dtype=torch.long, device=mask.device)
    torch.cumsum(counts, 0, out=starts[1:])
    n = int(starts[-1])
    total = int(counts.max()) * counts.numel() if counts.numel() else 0
    density = torch.tensor(n / total if total else 0.0, dtype=torch.float32, device=mask.device)
    return RaggedRows(starts, segment_steps(starts, flip), flip, density)


def time_steps_of(spiking: bool, time_mode: str, steps: int) -> int:
    """The one rule for Spik-NeRF's time: ``T`` steps per sample with ``time_mode="repeat"`` on a spiking
    net, else 1 (ray time: one sample per step; the ANN: no time). Refuses an unknown mode or ``steps < 1``."""
    if time_mode not in ("repeat", "ray"):
        raise ValueError(f"time_mode must be 'repeat' or 'ray', got {time_mode!r}")
    if steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {steps}")
    return int(steps) if (spiking and time_mode == "repeat") else 1


def choose_layout(mask: Optional[Tensor], *, time_mode: TimeMode = "ray", T: int = 1, pack_mode: PackMode = "padding",
                  flip: bool = False, time_index: Optional[Tensor] = None, training: bool = False,
                  in_place: bool = True, neurons: Sequence = (), rays: tuple[int, int] = (0, 0)) -> TimeLayout:
    """The one decision of where the LIF layers' time runs.

    Args:
        mask: ``[R, S]`` bool, the samples that reach the colour net; ``None``: every sample of the
            ``rays = (R, S)`` runs (:class:`RayBlock`, ray time without masking).
        time_mode: ``repeat`` -> :class:`RepeatSteps` ``(T)`` whatever the rest; ``ray``: the samples of a
            ray are its steps, laid out by ``pack_mode`` (``padding``: step = sample index, skipped samples
            are holes; ``condensing``: the valid samples from step 0), ``flip`` far -> near.
        time_index: ``[R, S]`` lattice index of each entry when the columns are not consecutive samples
            (padding only; ``None``: the column).
        training: gradients will flow (the in-place scans then run only on hole-free segments).
        in_place: allow the in-place CPU scans (``False``: time blocks always, the reference).
        neurons: the LIF layers; the in-place scans need ``supports_ragged()`` of each.

    In place (:class:`RaggedRows` at inference, :class:`Segments` in training with condensing) on the CPU,
    where the C kernels run; time blocks (:class:`TimeBuckets`) otherwise (on CUDA they run the Triton scan).
    """
    if time_mode == "repeat":
        return RepeatSteps(T=T)
    if mask is None:
        return RayBlock(R=rays[0], S=rays[1])
    if not bool(mask.any()):
        return TimeBuckets([], [], [], mask.new_zeros(0, dtype=torch.long), 0.0)
    in_place = (in_place and mask.device.type == "cpu" and (not training or pack_mode == "condensing")
                and all(n.supports_ragged() for n in neurons))
    if in_place and not training and pack_mode == "condensing":
        return condensed_rows(mask, flip)  # the same rows as from pack_index, fewer passes
    rows = mask.any(1).nonzero(as_tuple=True)[0]
    sub_mask = mask[rows]  # same valid samples in the same row-major order, so [N, ...] tensors line up
    sub_time = None
    if pack_mode == "padding":
        # drop steps no ray uses at the start/end: exact, a zero-input LIF from rest stays at rest
        R, S = mask.shape
        if time_index is None:
            time_index = torch.arange(S, device=mask.device).expand(R, S)
        sub_time = time_index[rows] - time_index[mask].min()
    info = pack_index(sub_mask, pack_mode, flip, sub_time)
    if not in_place:
        return time_buckets(info)
    rows_ = ragged_rows(info)
    return Segments(rows_.starts, rows_.steps, rows_.reverse, rows_.density) if training else rows_
