"""How a voxel-grid model's rays meet its scene: the parameterization (bounded box, contraction, NDC) chosen
once, the rays the samplers march (world rays or their NDC images), the look-up points of samples, their world
distances, and the density at world points. A mixin of :class:`~spikenerf.nerf.model.SpikingNeRFModel`: it reads
the model's ``config`` (``bg_len``), ``aabb``, grids, ``scene_code`` / ``ndc_camera`` buffers and ``ndc_cam``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .contraction import contract, contracted_box, looks_unbounded
from .ndc import ndc_rays_for_marching, ndc_t_to_world_t, world_to_ndc_points
from .scene import SCENE_BOUNDED, SCENE_NDC, SCENE_UNBOUNDED, SCENE_UNDECIDED, data_near_clip

__all__ = ["MarchingRays", "SceneRaysMixin"]


class MarchingRays(NamedTuple):
    """The rays the samplers march (:meth:`SpikingNeRFModel.marching_rays`), each ``[R, ...]``: the world rays,
    or in NDC scenes their NDC images (:func:`~.ndc.ndc_rays_for_marching`)."""

    origins: Tensor  # [R, 3]
    directions: Tensor  # [R, 3] unit
    length: Optional[Tensor]  # [R] NDC scenes: |d'| of the NDC ray (t' = distance / length); else None
    valid: Optional[Tensor]  # [R] bool NDC scenes: the ray faces the scene; else None (every ray)


class SceneRaysMixin:
    """The scene half of :class:`~spikenerf.nerf.model.SpikingNeRFModel` (module docstring)."""

    def set_scene(self, unbounded: bool) -> None:
        """Fix the parameterization (before training): the grids span the box, or the contracted box."""
        box = contracted_box(self.aabb, self.config.bg_len) if unbounded else self.aabb.clone()
        self.unbounded = bool(unbounded)
        self.scene_code.fill_(SCENE_UNBOUNDED if unbounded else SCENE_BOUNDED)
        for m in (self.coarse_density, self.coarse_color, self.field, self.field.density_grid, self.field.feature_grid):
            m.aabb.copy_(box)
        self._cache_extents()

    def set_ndc(self, camera: Tuple[float, float, float, float]) -> None:
        """Fix the NDC parameterization with the NDC camera ``(H, W, focal, near)``: the grids span the data
        parser's box, which is already in NDC space."""
        self.set_scene(False)
        self.scene_code.fill_(SCENE_NDC)
        self.ndc_camera.copy_(torch.tensor(camera, dtype=torch.float64))
        self.ndc_cam = tuple(float(v) for v in camera)  # type: ignore[assignment]

    @property
    def ndc(self) -> bool:
        """The scene is marched in NDC (forward-facing capture)."""
        return self.ndc_cam is not None


    def detect_scene(self, camera_origins: Tensor) -> bool:
        """``scene="auto"``: choose from the training camera centres ``[N, 3]`` unless already decided."""
        if int(self.scene_code) == SCENE_UNDECIDED:
            self.set_scene(looks_unbounded(camera_origins, self.aabb))
        return self.unbounded

    def data_near_clip(self, cameras: Any, points: Tensor | None) -> float:
        """``near_clip=-1``: :func:`~.scene.data_near_clip`, 0 in bounded scenes (DVGO has no near-clip loss)."""
        return data_near_clip(cameras, points) if self.unbounded else 0.0

    def marching_rays(self, origins: Tensor, dirs: Tensor) -> MarchingRays:
        """The one place world rays ``[R, 3]`` (unit ``dirs``) become the rays the samples lie on: themselves,
        or in NDC scenes their NDC images (:func:`~.ndc.ndc_rays_for_marching`: unit NDC directions, so a step
        is in NDC units and uniform in inverse depth; rays that do not face the scene are marked invalid and
        render as background). :meth:`sample` and :meth:`lookup_points` both go through it, so the cache's
        ray mask and the per-voxel lr's view counts do too."""
        if self.ndc_cam is None:
            return MarchingRays(origins, dirs, None, None)
        h, w, focal, near = self.ndc_cam
        nd = ndc_rays_for_marching(int(h), int(w), focal, near, origins, dirs)
        return MarchingRays(nd.origins, nd.directions, nd.length, nd.valid)

    def lookup_points(self, origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor:
        """``[R, S, 3]`` grid look-up points of samples at distances ``t`` ``[R, S]`` of :meth:`sample` along
        the world rays ``[R, 3]``: the world points, their contraction (:func:`~.contraction.contract`) in
        unbounded scenes, the NDC points in NDC scenes."""
        rays = self.marching_rays(origins, dirs)
        xyz = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
        return contract(xyz, self.aabb, self.config.bg_len) if self.unbounded else xyz

    def world_distance(self, origins: Tensor, dirs: Tensor, t: Tensor, valid: Tensor) -> Tensor:
        """``[R, S]`` world distances along the world rays ``[R, 3]`` (unit ``dirs``) of samples at distances
        ``t`` ``[R, S]`` of :meth:`sample` (only NDC scenes differ: :func:`~.ndc.ndc_t_to_world_t`); 0 where
        not ``valid``. A sample on the NDC box's far face (``t' = 1``) is at infinity: kept finite, far."""
        rays = self.marching_rays(origins, dirs)
        if rays.length is None:
            return t
        t_ndc = (t / rays.length[:, None]).clamp(0.0, 1.0 - 1e-6)
        world = ndc_t_to_world_t(t_ndc, origins, dirs, self.ndc_cam[3])  # type: ignore[index]
        return torch.where(valid, world, torch.zeros_like(world))

    @torch.no_grad()
    def world_density(self, xyz: Tensor) -> Tensor:
        """Fine density ``[N]`` at world points ``[N, 3]``: per world unit, contracted first in unbounded scenes;
        NDC scenes: mapped to NDC first (:func:`~.ndc.world_to_ndc_points`), per NDC unit, and 0 in front of
        the near plane. The density grid only, no colour network (``ns-export`` normals)."""
        if self.ndc_cam is not None:
            h, w, focal, near = self.ndc_cam
            ahead = xyz[:, 2] < -near
            pts = world_to_ndc_points(torch.where(ahead[:, None], xyz, torch.full_like(xyz, -2.0 * near)),
                                      int(h), int(w), focal, near)
            return torch.where(ahead, self.sigma(pts), torch.zeros(xyz.shape[0], dtype=xyz.dtype, device=xyz.device))
        return self.sigma(contract(xyz, self.aabb, self.config.bg_len) if self.unbounded else xyz)
