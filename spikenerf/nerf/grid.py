"""Dense voxel grid with a fast CPU trilinear look-up (``csrc/grid.c``), channels last.

``DenseGrid`` stores ``[X, Y, Z, C]`` vertex values over a box and reads them by trilinear interpolation
(``F.grid_sample`` with ``align_corners=True`` and zeros padding, same numbers). On the CPU in float32 the
look-up and its backward run in C: a point's 8 corners are 8 contiguous ``C``-float reads, and the
backward writes the grid gradient without atomics. Elsewhere (CUDA, float64, no C compiler) it falls back
to ``F.grid_sample`` on a channels-first view, so every device works with the same parameters.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikenerf.snn.fused import CKernel

from .contraction import contract, contracted_box, contracted_lattice, contracted_sample_count, outer_ratio

__all__ = ["DenseGrid", "trilinear", "trilinear_reference", "c_grid_available", "march", "march_reference",
           "march_contracted", "march_contracted_reference", "Marched", "occupied"]

_SRC = Path(__file__).with_name("csrc") / "grid.c"


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    for fn in (lib.grid_forward, lib.grid_backward):
        fn.argtypes = [p, p, p, i64, i32, i32, i32, i32, p, p, i32]
        fn.restype = i32
    lib.march.argtypes = [p, p, i64, p, p, f32, f32, i32, p, p, i32, i32, i32, i32, p, i32, p, p, p, i32]
    lib.march.restype = i32
    lib.march_contracted.argtypes = [p, p, i64, p, p, f32, f32, f32, i32, i32, f32, p, p, i32, i32, i32, i32, p, i32,
                                     p, p, p, i32]
    lib.march_contracted.restype = i32
    lib.occupancy_blocks.argtypes = [p, i32, i32, i32, p, p]
    lib.occupancy_blocks.restype = i32


_KERNEL = CKernel(_SRC, "grid", "grid_sample / torch marching (slower)", _declare)
_load = _KERNEL.load


def c_grid_available() -> bool:
    """Whether the C look-up kernel compiled and loaded here."""
    return _load() is not None


def _box(aabb: Tensor, res: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    lo = aabb[0].detach().float().cpu().contiguous()
    sc = ((torch.tensor(res, dtype=torch.float32) - 1) / (aabb[1] - aabb[0]).detach().float().cpu()).contiguous()
    return lo, sc


class _TrilinearC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: Tensor, xyz: Tensor, aabb: Tensor) -> Tensor:  # type: ignore[override]
        lib = _load()
        assert lib is not None
        X, Y, Z, C = grid.shape
        g, p = grid.contiguous(), xyz.contiguous()
        lo, sc = _box(aabb, (X, Y, Z))
        out = torch.empty(p.shape[0], C, dtype=grid.dtype)
        rc = lib.grid_forward(g.data_ptr(), p.data_ptr(), out.data_ptr(), p.shape[0], X, Y, Z, C, lo.data_ptr(),
                              sc.data_ptr(), torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"grid_forward failed with code {rc}")
        ctx.save_for_backward(p, lo, sc)
        ctx.shape = (X, Y, Z, C)
        return out

    @staticmethod
    def backward(ctx, gout: Tensor):  # type: ignore[override]
        p, lo, sc = ctx.saved_tensors
        X, Y, Z, C = ctx.shape
        lib = _load()
        ggrid = torch.zeros(X, Y, Z, C, dtype=gout.dtype)
        go = gout.contiguous()
        rc = lib.grid_backward(go.data_ptr(), p.data_ptr(), ggrid.data_ptr(), p.shape[0], X, Y, Z, C,  # type: ignore[union-attr]
                               lo.data_ptr(), sc.data_ptr(), torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"grid_backward failed with code {rc}")
        return ggrid, None, None


def trilinear_reference(grid: Tensor, xyz: Tensor, aabb: Tensor) -> Tensor:
    """``F.grid_sample`` look-up of a channels-last grid ``[X, Y, Z, C]`` at ``xyz`` ``[N, 3]`` -> ``[N, C]``."""
    C = grid.shape[-1]
    u = (xyz - aabb[0]) / (aabb[1] - aabb[0]) * 2.0 - 1.0
    g = u.flip(-1).reshape(1, 1, 1, -1, 3).to(grid.dtype)  # grid_sample wants (z, y, x) order
    out = F.grid_sample(grid.permute(3, 0, 1, 2)[None], g, mode="bilinear", align_corners=True,
                        padding_mode="zeros")
    out = out.reshape(C, -1).t()
    inside = ((u >= -1) & (u <= 1)).all(-1, keepdim=True)
    return out * inside


def trilinear(grid: Tensor, xyz: Tensor, aabb: Tensor) -> Tensor:
    """Trilinear look-up ``[X, Y, Z, C]`` x ``[N, 3]`` -> ``[N, C]``; C kernel on CPU float32, else grid_sample."""
    if (grid.device.type == "cpu" and grid.dtype == torch.float32 and xyz.dtype == torch.float32
            and not xyz.requires_grad and min(grid.shape[:3]) >= 2 and _load() is not None):
        return _TrilinearC.apply(grid, xyz, aabb)
    return trilinear_reference(grid, xyz, aabb)


class DenseGrid(nn.Module):
    """Dense trilinear voxel grid.

    Args:
        channels: C.
        resolution: ``(X, Y, Z)`` vertices per axis over ``aabb`` (vertex-aligned, like ``align_corners``).
        aabb: ``[2, 3]`` min / max corner.

    Example: a 2-channel grid of ``5 x 5 x 3`` vertices over the unit cube, read at 10 points:

    >>> aabb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> g = DenseGrid(2, (5, 5, 3), aabb)
    >>> g.grid.shape  # [X, Y, Z, C], channels last
    torch.Size([5, 5, 3, 2])
    >>> with torch.no_grad():
    ...     _ = g.grid.fill_(1.0)
    >>> out = g(torch.rand(10, 3))  # [N, 3] -> [N, C]
    >>> out.shape, bool(torch.allclose(out, torch.ones(10, 2)))
    (torch.Size([10, 2]), True)
    >>> g.scale_to((9, 9, 5)); g.resolution
    (9, 9, 5)
    """

    def __init__(self, channels: int, resolution: tuple[int, int, int], aabb: Tensor) -> None:
        super().__init__()
        self.channels = int(channels)
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.grid = nn.Parameter(torch.zeros(*[int(r) for r in resolution], self.channels))
        self._register_load_state_dict_pre_hook(self._take_checkpoint_shape)

    def _take_checkpoint_shape(self, state_dict, prefix, *args) -> None:
        """Loading: a checkpoint's grid may have another resolution (up-scaling, a tightened fine box); the
        grid takes its shape first (a new zero Parameter; optimisers are re-pointed by the model)."""
        q = state_dict.get(prefix + "grid")
        if q is not None and tuple(q.shape) != tuple(self.grid.shape) and q.dim() == 4:
            self.grid = nn.Parameter(torch.zeros(q.shape, dtype=self.grid.dtype, device=self.grid.device))

    def set_box(self, aabb: Tensor, resolution: tuple[int, int, int]) -> None:
        """Move the grid to the box ``aabb`` at ``resolution``, all values zero (a new Parameter)."""
        self.aabb.copy_(aabb)
        self.grid = nn.Parameter(torch.zeros(*[int(r) for r in resolution], self.channels,
                                             dtype=self.grid.dtype, device=self.grid.device))

    @property
    def resolution(self) -> tuple[int, int, int]:
        return tuple(int(r) for r in self.grid.shape[:3])  # type: ignore[return-value]

    def forward(self, xyz: Tensor) -> Tensor:
        """``xyz`` ``[N, 3]`` -> ``[N, C]`` (zero outside the box)."""
        return trilinear(self.grid, xyz, self.aabb)

    def scale_to(self, resolution: tuple[int, int, int]) -> None:
        """Trilinear re-sampling of the values to a new resolution (a new Parameter, as DVGO does)."""
        g = self.grid.detach().permute(3, 0, 1, 2)[None]
        new = F.interpolate(g, size=tuple(int(r) for r in resolution), mode="trilinear", align_corners=True)
        self.grid = nn.Parameter(new[0].permute(1, 2, 3, 0).contiguous())

    def total_variation(self) -> Tensor:
        """DVGO's total variation: the sum over neighbouring vertex pairs (x, y, z) of ``huber(v_i - v_j)``
        (delta 1), so each vertex's gradient is DVGO's ``sum_neighbours clamp(v_i - v_j, -1, 1)``."""
        g = self.grid
        return sum(F.huber_loss(d, torch.zeros_like(d), reduction="sum", delta=1.0)
                   for d in (g[1:] - g[:-1], g[:, 1:] - g[:, :-1], g[:, :, 1:] - g[:, :, :-1]))


# ----------------------------------------------------------------------------- ray marching
class Marched(NamedTuple):
    """Kept samples of each ray, packed from column 0: ``[R, Smax]`` each (``Smax`` >= 1)."""

    t: Tensor  # distance along the ray (0 in unused columns)
    index: Tensor  # int64, the sample's index s on the full uniform lattice t = near + step * s
    valid: Tensor  # bool, False in unused columns


def _ray_box(origins: Tensor, dirs: Tensor, aabb: Tensor, near_plane: float) -> tuple[Tensor, Tensor]:
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(near_plane)  # [R]
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def occupied(occupancy: Tensor, xyz: Tensor, aabb: Tensor) -> Tensor:
    """``[N, 3]`` -> ``[N]`` bool: nearest-vertex look-up in a boolean ``[X, Y, Z]`` occupancy cache."""
    res = torch.tensor(occupancy.shape, device=xyz.device, dtype=xyz.dtype)
    idx = ((xyz - aabb[0]) / (aabb[1] - aabb[0]) * (res - 1)).round().long()
    idx = torch.minimum(idx.clamp_min(0), (res - 1).long())
    return occupancy[idx[:, 0], idx[:, 1], idx[:, 2]]


def march_reference(origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, num_steps: int, near_plane: float,
                    occupancy: Optional[Tensor] = None) -> Marched:
    """Torch version of :func:`march` (any device): every lattice sample, then the kept ones packed left."""
    near, far = _ray_box(origins, dirs, aabb, near_plane)
    t = near[:, None] + step * torch.arange(num_steps, device=origins.device, dtype=origins.dtype)  # [R, S]
    keep = (t < far[:, None]) & (far > near)[:, None]
    if occupancy is not None:
        xyz = origins[:, None] + dirs[:, None] * t[..., None]
        occ = torch.zeros_like(keep)
        occ[keep] = occupied(occupancy, xyz[keep], aabb)
        keep = keep & occ
    return _pack_kept(t, keep)


def _pack_kept(t: Tensor, keep: Tensor) -> Marched:
    """Lattice ``t`` / ``keep`` ``[R, S]`` -> the kept samples packed from column 0 (index = lattice column)."""
    counts = keep.sum(1)
    smax = max(1, int(counts.max())) if counts.numel() else 1
    r, s = keep.nonzero(as_tuple=True)
    col = (torch.cumsum(keep.long(), 1) - 1)[r, s]
    R = t.shape[0]
    t_out = t.new_zeros(R, smax)
    idx = torch.zeros(R, smax, dtype=torch.long, device=t.device)
    valid = torch.zeros(R, smax, dtype=torch.bool, device=t.device)
    t_out[r, col], idx[r, col], valid[r, col] = t[r, s], s, True
    return Marched(t_out, idx, valid)


SKIP_BLOCK = 8
"""Edge, in vertices, of the occupancy blocks the C marchers skip empty space by (``SKIP`` in ``csrc/grid.c``)."""

_occ_cache: dict = {}


def _c_occupancy(occupancy: Tensor) -> tuple[Tensor, Tensor]:
    """The cache as the C marchers read it: stored block by block (``uint8`` bricks of ``SKIP_BLOCK^3``
    vertices, for locality along a ray) and the block flags ``[bx, by, bz]`` (a block or its one-vertex shell
    has a set vertex). Kept while the same tensor is unchanged (its version counter), so the dozens of chunks
    of a render convert it once, not per chunk."""
    hit = _occ_cache.get("last")
    if hit is not None and hit[0] is occupancy and hit[1] == occupancy._version:
        return hit[2], hit[3]
    occ = occupancy.detach().cpu().to(torch.uint8).contiguous()
    nb = [-(-int(n) // SKIP_BLOCK) for n in occ.shape]
    blk = torch.empty(nb, dtype=torch.uint8)
    bricks = torch.empty(nb[0] * nb[1] * nb[2] * SKIP_BLOCK ** 3, dtype=torch.uint8)
    _load().occupancy_blocks(occ.data_ptr(), *occ.shape, blk.data_ptr(), bricks.data_ptr())  # type: ignore[union-attr]
    _occ_cache["last"] = (occupancy, occupancy._version, bricks, blk)
    return bricks, blk


_march_width: dict[str, int] = {}
"""Per C marcher, the ``[R, S']`` width its last call needed: the next call's guess for a one-pass march."""


def _march_c(fn, origins: Tensor, dirs: Tensor, head: tuple, occupancy: Optional[Tensor], threads: int,
             skip_empty: bool = True) -> Marched:
    """A C marcher into a ``[R, S']`` layout. The kernel counts every ray's kept samples while it writes the
    first ``cap`` of them, so one pass does when no ray keeps more than ``cap``, a guess from the marcher's
    previous call (the chunks of a render, the steps of training, are alike); else (the first call, a longer
    ray than before) a second pass at the exact width. Either way the same samples: the kernel's walk does
    not depend on the width."""
    o, d = origins.contiguous(), dirs.contiguous()
    R = o.shape[0]
    occ, blk = _c_occupancy(occupancy) if occupancy is not None else (None, None)
    X, Y, Z = (tuple(occupancy.shape) if occupancy is not None else (1, 1, 1))
    counts = torch.empty(R, dtype=torch.int32)
    args = (o.data_ptr(), d.data_ptr(), R, *head, occ.data_ptr() if occ is not None else None,
            blk.data_ptr() if blk is not None else None, int(skip_empty), X, Y, Z, counts.data_ptr())

    def run(width: int) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.zeros(R, width)
        idx = torch.zeros(R, width, dtype=torch.int32)
        valid = torch.zeros(R, width, dtype=torch.uint8)
        fn(*args, width, t.data_ptr(), idx.data_ptr(), valid.data_ptr(), threads)
        return t, idx, valid

    key = fn.__name__
    cap = _march_width.get(key, 0)
    if cap > 0:
        out = run(cap)
    else:
        fn(*args, 0, None, None, None, threads)  # counts only
    smax = max(1, int(counts.max())) if R else 1
    _march_width[key] = smax + smax // 4 + 1  # room for the next call's longer rays
    if cap > 0 and smax <= cap:
        t, idx, valid = out
        return Marched(t[:, :smax].contiguous(), idx[:, :smax].long(), valid[:, :smax].bool())
    t, idx, valid = run(smax)
    return Marched(t, idx.long(), valid.bool())


def march(origins: Tensor, dirs: Tensor, aabb: Tensor, step: float, num_steps: int, near_plane: float,
          occupancy: Optional[Tensor] = None, skip_empty: bool = True) -> Marched:
    """Uniform samples ``t = near + step * s`` (``s < num_steps``) inside the box and, when given, the
    occupancy cache; only those are returned, packed per ray (C kernel on the CPU, else the torch version).

    Empty space never becomes a ``[R, S]`` tensor: at DVGO's 160^3 grid ``S`` is ~550 per ray, of which a
    trained occupancy cache keeps a few tens.

    Args: ``origins`` / unit ``dirs`` ``[R, 3]``, ``aabb`` ``[2, 3]``, ``occupancy`` bool ``[X, Y, Z]`` over
    ``aabb`` (nearest vertex); ``skip_empty``: the C kernel jumps over empty blocks of the cache (the same
    samples, fewer look-ups; ``False`` checks every step). Returns :class:`Marched` (``t``, ``index``,
    ``valid``, each ``[R, S']``).

    Example: 2 rays along +x through the box ``[0, 1]^3``, one of them starting at its middle:

    >>> aabb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> origins = torch.tensor([[-1.0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    >>> dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    >>> m = march(origins, dirs, aabb, step=0.25, num_steps=8, near_plane=0.0)
    >>> m.t.shape, m.valid.sum(1).tolist()  # [R, S'], S' = the longest ray's kept samples
    (torch.Size([2, 4]), [4, 2])
    >>> m.t[0].tolist(), m.index[1].tolist(), m.valid[1].tolist()
    ([1.0, 1.25, 1.5, 1.75], [0, 1, 0, 0], [True, True, False, False])
    >>> occ = torch.zeros(5, 5, 5, dtype=torch.bool); occ[:3] = True  # only x <= 0.5 is occupied
    >>> march(origins, dirs, aabb, 0.25, 8, 0.0, occ).valid.sum(1).tolist()
    [3, 1]
    """
    lib = _load() if origins.device.type == "cpu" and origins.dtype == torch.float32 else None
    if lib is None:
        return march_reference(origins, dirs, aabb, step, num_steps, near_plane, occupancy)
    lo = aabb[0].detach().float().cpu().contiguous()
    hi = aabb[1].detach().float().cpu().contiguous()
    head = (lo.data_ptr(), hi.data_ptr(), float(step), float(near_plane), int(num_steps))
    return _march_c(lib.march, origins, dirs, head, occupancy, torch.get_num_threads(), skip_empty)


def march_contracted_reference(origins: Tensor, dirs: Tensor, aabb: Tensor, bg_len: float, step: float,
                               near_plane: float, occupancy: Optional[Tensor] = None) -> Marched:
    """Torch version of :func:`march_contracted` (any device)."""
    t, keep = contracted_lattice(origins, dirs, aabb, bg_len, step, near_plane)
    if occupancy is not None:
        xyz = contract(origins[:, None] + dirs[:, None] * t[..., None], aabb, bg_len)
        occ = torch.zeros_like(keep)
        occ[keep] = occupied(occupancy, xyz[keep], contracted_box(aabb, bg_len).to(xyz))
        keep = keep & occ
    return _pack_kept(t, keep)


def march_contracted(origins: Tensor, dirs: Tensor, aabb: Tensor, bg_len: float, step: float, near_plane: float,
                     occupancy: Optional[Tensor] = None, skip_empty: bool = True) -> Marched:
    """Samples of unbounded scenes (:mod:`~.contraction`): ``step`` apart inside the inner box ``aabb``, then
    about ``step`` apart in the contracted space out to infinity; kept where the occupancy cache (``[X, Y, Z]``
    over the contracted box, nearest vertex of the contracted point) is set (``skip_empty``: empty blocks are
    jumped over inside the inner box, where the contraction is linear). Same outputs as :func:`march`
    (``t`` is the world distance; look the grids up at ``contract(o + t d)``).

    >>> box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    >>> m = march_contracted(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]]), box, 1.0, 0.25, 0.0)
    >>> m.t[0, :4].tolist(), int(m.valid.sum())  # 4 inner samples, then 4 outer ones from t = 1
    ([0.0, 0.25, 0.5, 0.75], 8)
    >>> [round(v, 3) for v in m.t[0, 4:].tolist()]  # t_exit / (1 - k q), q = step / bg_len = 0.25
    [1.0, 1.333, 2.0, 4.0]
    """
    lib = _load() if origins.device.type == "cpu" and origins.dtype == torch.float32 else None
    if lib is None:
        return march_contracted_reference(origins, dirs, aabb, bg_len, step, near_plane, occupancy)
    lo = aabb[0].detach().float().cpu().contiguous()
    hi = aabb[1].detach().float().cpu().contiguous()
    n_in, n_out = contracted_sample_count(step, aabb, bg_len)
    head = (lo.data_ptr(), hi.data_ptr(), float(bg_len), float(step), float(near_plane), n_in, n_out,
            float(outer_ratio(step, aabb, bg_len)))
    return _march_c(lib.march_contracted, origins, dirs, head, occupancy, torch.get_num_threads(), skip_empty)
