"""Scene parameterization of the voxel-grid models: bounded boxes and unbounded real captures.

A Blender scene sits inside its box and the cameras look at it from outside; a phone capture has the cameras
inside the scene, and the floor, walls and sky run out of any box. For those the grids live in a contracted
space (DVGOv2's unbounded inward-facing parameterization, with the L-inf norm so that the contracted space is
a box the dense grids fill):

- the data parser's scene box is the *inner* box: ``u = (x - c) / h`` (``c`` its centre, ``h`` its half size
  per axis) is left as it is where ``|u|_inf <= 1``;
- outside, ``u -> (1 + b - b / |u|_inf) * u / |u|_inf``, so all of space maps into ``|u|_inf < 1 + b``
  (``b`` = ``bg_len``); the contracted box is ``c +- (1 + b) h`` in world units.

Samples (:func:`contracted_lattice`): uniform steps of ``step`` inside the inner box (dense near the cameras'
region of interest), then uniform in inverse distance from where the ray leaves it, which makes them about
``step`` apart in the contracted space (sparse far away, none wasted), out to infinity. Forward-facing (LLFF)
captures use the same contraction: their cameras are inside the box and look out of it, and far content
lands in the contracted shell in front of them (no NDC warp, so one code path serves both).

:func:`looks_unbounded` is the ``auto`` rule: the scene is a real capture when most training cameras sit
inside the data parser's scene box (nerfstudio's ``colmap``, ``nerfstudio-data`` and ``instant-ngp-data``
parsers scale the poses into it), bounded when they look in from outside (Blender's cameras at radius 4
around the ``[-1.5, 1.5]^3`` box).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["contract", "contracted_box", "looks_unbounded", "near_clip_from_points", "ray_box",
           "outer_ratio", "contracted_lattice", "contracted_sample_count"]


def _frame(aabb: Tensor) -> tuple[Tensor, Tensor]:
    return (aabb[0] + aabb[1]) * 0.5, (aabb[1] - aabb[0]) * 0.5


def contract(x: Tensor, aabb: Tensor, bg_len: float) -> Tensor:
    """World points ``[..., 3]`` -> contracted points ``[..., 3]`` (world units, inside :func:`contracted_box`).

    Identity inside the inner box ``aabb`` ``[2, 3]``; outside, ``u -> (1 + b - b / n) u / n`` with
    ``n = |u|_inf`` of the box-normalized point ``u``.

    >>> box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    >>> contract(torch.tensor([[0.5, 0, 0], [2.0, 0, 0], [1e9, 0, 0]]), box, 1.0)[:, 0].tolist()
    [0.5, 1.5, 2.0]
    """
    c, h = _frame(aabb.to(x))
    u = (x - c) / h
    n = u.abs().amax(-1, keepdim=True)
    scale = torch.where(n <= 1.0, torch.ones_like(n), (1.0 + bg_len - bg_len / n.clamp_min(1.0)) / n.clamp_min(1.0))
    return c + h * (u * scale)


def contracted_box(aabb: Tensor, bg_len: float) -> Tensor:
    """``[2, 3]`` box of the contracted space: the inner box scaled by ``1 + bg_len`` about its centre."""
    c, h = _frame(aabb)
    return torch.stack([c - (1.0 + bg_len) * h, c + (1.0 + bg_len) * h])


def looks_unbounded(camera_origins: Tensor, aabb: Tensor) -> bool:
    """The ``auto`` rule: True when at least half of the camera centres ``[N, 3]`` lie inside ``aabb``.

    >>> box = torch.tensor([[-1.5] * 3, [1.5] * 3])
    >>> looks_unbounded(torch.tensor([[4.0, 0, 0], [0, -4.0, 0.5]]), box)  # Blender: cameras outside
    False
    >>> looks_unbounded(torch.tensor([[0.9, 0, 0.1], [0, -0.7, 0.3]]), box)  # a phone capture
    True
    """
    if camera_origins.numel() == 0:
        return False
    o = camera_origins.reshape(-1, 3).float()
    box = aabb.float().to(o.device)
    inside = ((o >= box[0]) & (o <= box[1])).all(-1)
    return bool(inside.float().mean() >= 0.5)


def near_clip_from_points(camera_to_worlds: Tensor, fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor,
                          width: Tensor, height: Tensor, points: Tensor, quantile: float = 0.001,
                          scale: float = 0.9) -> float:
    """DVGOv2's ``near_clip`` of a real capture from its sparse 3D points: ``scale`` x the smallest, over the
    cameras, of each camera's near bound, the ``quantile`` of the depths of the points in its view frustum
    (LLFF's ``bds``: the 0.1th percentile). Nothing real is closer to any camera, so density there is a floater.

    Cameras are nerfstudio's (OpenGL: looking along -z, y up), ``camera_to_worlds`` ``[N, 3, 4]``, intrinsics
    ``[N]`` or ``[N, 1]``; ``points`` ``[P, 3]`` in the same (data-parser) frame. Returns 0 when no camera sees
    a point (no near bound: the caller turns the penalty off).
    """
    c2w = camera_to_worlds.reshape(-1, 3, 4).float()
    pts = points.reshape(-1, 3).float().to(c2w.device)
    intr = [v.reshape(-1).float().to(c2w.device) for v in (fx, fy, cx, cy, width, height)]
    nears = []
    for i in range(c2w.shape[0]):
        rot, t = c2w[i, :, :3], c2w[i, :, 3]
        p = (pts - t) @ rot  # camera frame: R^T (x - t)
        depth = -p[:, 2]
        f_x, f_y, c_x, c_y, w, h = (v[i] for v in intr)
        front = depth > 1e-6
        u = c_x + f_x * p[:, 0] / depth.clamp_min(1e-6)
        v = c_y - f_y * p[:, 1] / depth.clamp_min(1e-6)
        seen = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        if bool(seen.any()):
            nears.append(torch.quantile(depth[seen], quantile))
    if not nears:
        return 0.0
    return float(scale * torch.stack(nears).min())


def ray_box(origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Slab test: entry and exit distance ``[R]`` of the rays with the box ``[lo, hi]`` (exit < entry: miss)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


def outer_ratio(step: float, aabb: Tensor, bg_len: float) -> float:
    """``q`` of the outer samples ``t_k = t_exit / (1 - k q)``: about ``step`` apart in the contracted space
    (``step`` normalized by the box's largest half size, divided by ``bg_len``)."""
    h = float(((aabb[1] - aabb[0]) * 0.5).max())
    return min(0.5, step / h / bg_len)


def contracted_sample_count(step: float, aabb: Tensor, bg_len: float) -> tuple[int, int]:
    """Most inner lattice samples of any ray (the inner box's diagonal over ``step``) and outer ones."""
    diag = float((aabb[1] - aabb[0]).norm())
    q = outer_ratio(step, aabb, bg_len)
    return max(1, int(math.ceil(diag / step)) + 1), int(math.floor(1.0 / q))


def contracted_lattice(origins: Tensor, dirs: Tensor, aabb: Tensor, bg_len: float, step: float,
                       near_plane: float) -> tuple[Tensor, Tensor]:
    """Every lattice sample of each ray, near -> far (the torch reference of the C marcher's contracted mode).

    Inner samples ``t = t0 + step * s`` while ``t < t_exit`` (``t0 = max(t_entry, near_plane)``), then outer
    samples ``t_exit' / (1 - k q)``, ``k = 0 .. floor(1 / q) - 1`` (``t_exit' = max(t_exit, near_plane)``, or
    ``near_plane`` when the ray misses the inner box). Returns ``t`` ``[R, S]`` and ``valid`` ``[R, S]``;
    the lattice index of a sample is its column.
    """
    R = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    box = aabb.to(device=dev, dtype=dt)
    t_in, t_out = ray_box(origins, dirs, box[0], box[1])
    hit = t_out > t_in
    t0 = t_in.clamp_min(near_plane)
    n_inner_max, n_outer = contracted_sample_count(step, aabb, bg_len)
    s = torch.arange(n_inner_max, device=dev, dtype=dt)
    t_inner = t0[:, None] + step * s  # [R, Si]
    in_ok = hit[:, None] & (t_inner < t_out[:, None])
    n_in = in_ok.sum(1)  # [R] inner samples of each ray (contiguous from s = 0)
    t_e = torch.where(hit & (t_out > near_plane), t_out, torch.full_like(t_out, near_plane))
    q = outer_ratio(step, aabb, bg_len)
    k = torch.arange(n_outer, device=dev, dtype=dt)
    t_outer = t_e[:, None] / (1.0 - k * q)  # [R, So]
    S = n_inner_max + n_outer
    col = torch.arange(S, device=dev)
    # ray r: columns [0, n_in) inner, [n_in, n_in + n_outer) outer
    ko = (col[None, :] - n_in[:, None]).clamp(0, n_outer - 1)
    t = torch.where(col[None, :] < n_in[:, None], t_inner.gather(1, col[None, :].clamp_max(n_inner_max - 1)
                                                                .expand(R, S)),
                    t_outer.gather(1, ko))
    valid = col[None, :] < (n_in + n_outer)[:, None]
    return t * valid, valid
