"""Normalized device coordinates (NDC) for forward-facing captures, as NeRF, DVGO and TensoRF use on LLFF.

A forward-facing capture has every camera on one side of the scene, looking the same way (down ``-z`` once the
``llff-data`` parser has recentred the poses). NeRF's appendix C maps the frustum of that average camera,
from the plane ``z = -near`` out to infinity, onto the cube ``[-1, 1]^3`` with the perspective projection of a
pinhole camera of focal ``focal`` and size ``H`` x ``W`` (principal point at the centre):

    x' = -(2 f / W) x / z,    y' = -(2 f / H) y / z,    z' = 1 + 2 near / z

(:func:`world_to_ndc_points`; :func:`ndc_to_world_points` inverts it). A straight line stays straight under a
projective map, so a world ray ``o + t d`` whose origin is first moved to the near plane (``t0``,
:func:`near_plane_t`) becomes the NDC ray ``o' + t' d'`` (:func:`ndc_rays`, the paper's equations 25-26) with

    t' = 1 - o_z / (o_z + s d_z)    (s = t - t0, o_z = -near after the shift)

so ``t'`` runs over ``[0, 1)`` from the near plane to infinity and grows with ``t`` (:func:`ndc_t_to_world_t`,
:func:`world_t_to_ndc_t`): uniform steps in ``t'`` are uniform in inverse depth, dense near the cameras.

What the NDC renderers feed where (read from their code):

- samples: NeRF, TensoRF and DVGO's ``DirectMPIGO`` all sample ``t'`` uniformly in ``[0, 1]`` on the NDC ray
  (:func:`ndc_sample_t`); densities act per NDC unit, the interval being the step times ``|d'|``;
- the view direction fed to the colour net: NeRF and DVGO take the *world* ray direction, normalized before
  the NDC map; TensoRF (``dataLoader/llff.py`` stores NDC rays, ``tensorBase.forward`` normalizes them)
  encodes the *NDC* direction. The world direction is the physically meaningful one (the same surface point
  seen from the same direction gets the same input whatever the camera's position), so this project follows
  NeRF and DVGO;
- the ``depth`` output: NeRF composites the NDC ``t'`` itself (a depth in NDC units). Here each sample's
  ``t'`` is turned into its world distance along the original ray (:func:`ndc_t_to_world_t`) before
  compositing, so ``depth`` keeps the world units it has in the other scene kinds.

Rays that do not head into the scene (``d_z >= 0``, e.g. a viewer camera turned round) never reach the near
plane and have no NDC form; :func:`faces_scene` marks the ones that do.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["NDC_BOX", "NDCRays", "ndc_rays_for_marching", "ndc_frustum_box", "faces_scene", "near_plane_t",
           "ndc_rays", "world_to_ndc_points", "ndc_to_world_points", "ndc_t_to_world_t", "world_t_to_ndc_t",
           "ndc_sample_t"]

NDC_BOX: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
"""The cube NDC maps the average camera's frustum onto (``[2, 3]`` as a box: min corner, max corner). The
other cameras of a capture sit beside the average one, so their frusta reach past it in ``x'`` / ``y'``
(:func:`ndc_frustum_box`)."""


def faces_scene(rays_d: Tensor, eps: float = 1e-6) -> Tensor:
    """``[...]`` bool: the rays ``rays_d`` ``[..., 3]`` head into the scene (``d_z < -eps`` relative to
    ``|d|``), so they cross the near plane ahead and have an NDC form."""
    return rays_d[..., 2] < -eps * rays_d.norm(dim=-1)


def near_plane_t(rays_o: Tensor, rays_d: Tensor, near: float = 1.0) -> Tensor:
    """``[...]`` ray parameter (units of ``|rays_d|``) where ``rays_o + t rays_d`` ``[..., 3]`` meets the plane
    ``z = -near``: NeRF's shift of the origin. Negative when the camera is already beyond the plane."""
    return -(near + rays_o[..., 2]) / rays_d[..., 2]


def ndc_rays(height: int, width: int, focal: float, near: float, rays_o: Tensor,
             rays_d: Tensor) -> Tuple[Tensor, Tensor]:
    """NeRF's ``ndc_rays``: world rays ``rays_o`` / ``rays_d`` ``[..., 3]`` -> NDC origins and directions
    ``[..., 3]``, with ``o' + t' d'`` (``t'`` in ``[0, 1)``) the NDC image of the ray from the plane
    ``z = -near`` to infinity. ``rays_d`` needs ``d_z < 0`` (:func:`faces_scene`); its length does not matter.

    >>> o, d = ndc_rays(4, 6, 3.0, 1.0, torch.tensor([0.1, -0.2, 0.5]), torch.tensor([0.2, 0.1, -1.0]))
    >>> [round(v, 4) for v in o.tolist()], [round(v, 4) for v in d.tolist()]
    ([0.4, -0.075, -1.0], [-0.2, 0.225, 2.0])
    """
    o = rays_o + near_plane_t(rays_o, rays_d, near)[..., None] * rays_d  # on the near plane: o_z = -near
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = rays_d.unbind(-1)
    sx, sy = 2.0 * focal / width, 2.0 * focal / height  # the projection's x / y scales
    origins = torch.stack([-sx * ox / oz, -sy * oy / oz, 1.0 + 2.0 * near / oz], -1)
    # d' = (image of the point at infinity) - o'; the point at infinity projects to -s (d_x / d_z), z' = 1
    directions = torch.stack([-sx * (dx / dz - ox / oz), -sy * (dy / dz - oy / oz), -2.0 * near / oz], -1)
    return origins, directions


def world_to_ndc_points(xyz: Tensor, height: int, width: int, focal: float, near: float = 1.0) -> Tensor:
    """World points ``[..., 3]`` (``z < 0``, in front of the average camera) -> NDC points ``[..., 3]``: the
    projective map at the top of the module. ``z = -near`` maps to ``z' = -1``, infinity to ``z' = 1``."""
    x, y, z = xyz.unbind(-1)
    return torch.stack([-(2.0 * focal / width) * x / z, -(2.0 * focal / height) * y / z, 1.0 + 2.0 * near / z], -1)


def ndc_to_world_points(xyz_ndc: Tensor, height: int, width: int, focal: float, near: float = 1.0) -> Tensor:
    """Inverse of :func:`world_to_ndc_points` for NDC points ``[..., 3]`` with ``z' < 1`` (``z' = 1`` is
    infinity): ``z = 2 near / (z' - 1)``, ``x = -x' z W / (2 f)``, ``y = -y' z H / (2 f)``."""
    xn, yn, zn = xyz_ndc.unbind(-1)
    z = 2.0 * near / (zn - 1.0)
    return torch.stack([-xn * z * width / (2.0 * focal), -yn * z * height / (2.0 * focal), z], -1)


def ndc_t_to_world_t(t_ndc: Tensor, rays_o: Tensor, rays_d: Tensor, near: float = 1.0) -> Tensor:
    """``[R, S]`` parameters ``t`` along the world rays ``rays_o + t rays_d`` (``[R, 3]``; world distance when
    ``rays_d`` is a unit vector) of the NDC parameters ``t_ndc`` ``[R, S]`` of :func:`ndc_rays`.

    From the near plane (``s = t - t0``, origin ``z = -near``) the point's depth is ``-near / (1 - t')``,
    so ``s = -near t' / ((1 - t') d_z)``. ``t' = 1`` is infinity (``inf``): keep samples below it.
    """
    t0 = near_plane_t(rays_o, rays_d, near)[:, None]
    dz = rays_d[:, 2:3]
    return t0 - near * t_ndc / ((1.0 - t_ndc) * dz)


def world_t_to_ndc_t(t: Tensor, rays_o: Tensor, rays_d: Tensor, near: float = 1.0) -> Tensor:
    """Inverse of :func:`ndc_t_to_world_t`: ``t' = 1 - near / (near - s d_z)`` with ``s = t - t0``, for ``t``
    ``[R, S]`` at or beyond the near plane (``t' >= 0``); ``t -> inf`` gives ``t' -> 1``."""
    s = t - near_plane_t(rays_o, rays_d, near)[:, None]
    return 1.0 - near / (near - s * rays_d[:, 2:3])


def ndc_sample_t(num_rays: int, num_samples: int, stratified: bool = False,
                 generator: Optional[torch.Generator] = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """``[R, S]`` NDC parameters ``t'`` of ``S`` samples per ray, one in each of the ``S`` equal bins of
    ``[0, 1)`` (NeRF / TensoRF's uniform NDC spacing): the bin centres, or (``stratified``, training) a
    uniform random point in each bin. Strictly increasing along each ray and always below 1 (infinity)."""
    edges = torch.arange(num_samples, device=device, dtype=dtype) / num_samples  # [S] left bin edges
    if stratified:
        u = torch.rand(num_rays, num_samples, generator=generator, dtype=dtype, device="cpu").to(edges.device)
    else:
        u = torch.full((num_rays, num_samples), 0.5, device=device, dtype=dtype)
    return edges + u / num_samples


def ndc_frustum_box(camera_to_worlds: Tensor, height: int, width: int, focal: float, near: float = 1.0) -> Tensor:
    """``[2, 3]`` NDC box of everything the pinhole cameras ``camera_to_worlds`` ``[N, 3, 4]`` (OpenGL axes,
    the NDC camera's ``height`` x ``width`` and ``focal``, principal point at the centre) see beyond the near
    plane: DVGO's ``compute_bbox_by_cam_frustrm_ndc``. A camera's frustum is the convex hull of its four corner
    rays, and the projective map keeps it convex (it lies on one side of ``z = 0``), so the box of the corner
    rays' NDC images at ``t' = 0`` and ``t' = 1`` bounds it; ``z'`` spans ``[-1, 1]``. On fern the side
    cameras reach ``|x'|`` ~ 1.44, which ``[-1, 1]^3`` would cut off (TensoRF sets ``[-1.5, 1.5] x
    [-1.67, 1.67] x [-1, 1]`` by hand)."""
    c2w = camera_to_worlds.to(torch.float64)
    u = torch.tensor([0.0, width, 0.0, width], dtype=c2w.dtype, device=c2w.device)
    v = torch.tensor([0.0, 0.0, height, height], dtype=c2w.dtype, device=c2w.device)
    cam = torch.stack([(u - width / 2.0) / focal, -(v - height / 2.0) / focal, -torch.ones_like(u)], -1)  # [4, 3]
    dirs = torch.einsum("nij,kj->nki", c2w[:, :, :3], cam)  # [N, 4, 3]
    origins = c2w[:, None, :, 3].expand_as(dirs)
    if not bool(faces_scene(dirs).all()):
        raise ValueError("a camera's frustum does not face the scene (-z of the average camera): NDC needs a "
                         "forward-facing capture")
    o, d = ndc_rays(height, width, focal, near, origins, dirs)
    pts = torch.cat([o, o + d]).reshape(-1, 3)
    return torch.stack([pts.amin(0), pts.amax(0)]).to(camera_to_worlds.dtype)


class NDCRays(NamedTuple):
    """NDC rays in the form a box-marching sampler takes (:func:`ndc_rays_for_marching`), each ``[R, ...]``."""

    origins: Tensor
    """``[R, 3]`` NDC origins, on the face ``z' = -1``."""
    directions: Tensor
    """``[R, 3]`` unit NDC directions: a sample ``r`` NDC units along the ray is at ``origins + r directions``."""
    length: Tensor
    """``[R]`` ``|d'|``: the sample ``r`` units along is at ``t' = r / length`` (:func:`ndc_t_to_world_t`)."""
    valid: Tensor
    """``[R]`` bool, :func:`faces_scene`: rays that never reach the near plane have no NDC form; they are
    given the centre ray (finite numbers) and should be rendered as empty."""


def ndc_rays_for_marching(height: int, width: int, focal: float, near: float, rays_o: Tensor,
                          rays_d: Tensor) -> NDCRays:
    """World rays ``[R, 3]`` -> :class:`NDCRays`: :func:`ndc_rays` with unit directions, so a sampler that
    steps a fixed distance in a box (the voxel-grid models' ``march``) steps in NDC units, and DVGO's alpha
    interval (step over voxel size) keeps its meaning. Rays that do not face the scene get the centre ray
    ``(0, 0, -1) + t' (0, 0, 2)`` and ``valid = False``."""
    valid = faces_scene(rays_d)
    centre = torch.tensor([0.0, 0.0, -1.0], dtype=rays_d.dtype, device=rays_d.device)
    d = torch.where(valid[:, None], rays_d, centre)  # finite numbers for the rays masked out
    o = torch.where(valid[:, None], rays_o, torch.zeros_like(rays_o))
    origins, directions = ndc_rays(height, width, focal, near, o, d)
    length = directions.norm(dim=-1)
    return NDCRays(origins, directions / length[:, None], length, valid)
