"""What nerfstudio's tools need from a model beyond training: ``ns-export`` normals and alpha, viewer outputs.

:class:`NerfstudioToolsMixin` is the first base of every model of this package
(``class SpikingNeRFModel(NerfstudioToolsMixin, Model)``, likewise ``NeRFMLPModel``):

- ``normals`` (``[R, 3]`` in [0, 1], nerfstudio's convention for ``ns-export --normal-method model_output``):
  in eval mode only, the negative gradient of the density at each ray's expected depth, by central
  differences of the model's ``world_density`` (the density grid alone for the voxel-grid models, a fine
  voxel apart), normalised
  (:func:`density_normals`); a ray that rendered nothing gets the zero normal (0.5 in every channel).
  ``ns-export pointcloud`` and ``poisson`` use it.
- :meth:`get_rgba_image`: rgb with the accumulation as alpha (nerfstudio's default needs a
  ``renderer_rgb`` and calls every background pixel opaque, so exported point clouds got background points).
- :meth:`viewer_hidden_outputs`: per-ray op counters (``ray_*``, ``num_*``) are for the metrics, not the
  viewer's output menu (``rgb``, ``depth``, ``accumulation``, ``spike_rate``, ``normals`` remain).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List

import torch
from torch import Tensor

__all__ = ["HIDDEN_OUTPUT_PREFIXES", "density_normals", "viewer_max_res", "NerfstudioToolsMixin"]

HIDDEN_OUTPUT_PREFIXES = ("ray_", "num_", "_")
"""Outputs whose names start with these are not offered in the viewer."""


def density_normals(density: Callable[[Tensor], Tensor], points: Tensor, h: float) -> Tensor:
    """Unit normals ``[N, 3]``: ``-grad density / |grad density|`` at ``points`` ``[N, 3]`` by central
    differences of step ``h`` (zero where the gradient vanishes). ``density`` maps ``[M, 3]`` -> ``[M]``."""
    n = points.shape[0]
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * h  # [3, 3]
    probes = torch.cat([points[:, None] + offsets, points[:, None] - offsets], 1)  # [N, 6, 3]
    d = density(probes.reshape(-1, 3)).reshape(n, 6).to(points.dtype)
    grad = (d[:, :3] - d[:, 3:]) / (2.0 * h)
    return -grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def viewer_max_res(width: int, height: int) -> int:
    """The viewer's default maximum render size: twice the training images' longest side, 128..512."""
    return int(min(512, max(128, 2 * max(width, height))))


class NerfstudioToolsMixin:
    """Model-side hooks for ``ns-export`` and the viewer (see the module docstring); put it first in the bases."""

    compute_normals: bool = True
    """Add ``normals`` to the outputs in eval mode."""

    def normal_step(self) -> float:
        """Central-difference step: the current fine voxel of a voxel-grid model, else 1/256 of the box."""
        voxel = getattr(self, "fine_voxel", None)
        voxel = voxel() if callable(voxel) else voxel
        if isinstance(voxel, (int, float)) and voxel > 0:
            return float(voxel)
        aabb = self.scene_box.aabb  # type: ignore[attr-defined]
        return float((aabb[1] - aabb[0]).max()) / 256.0

    def forward(self, ray_bundle) -> Dict[str, Tensor]:  # type: ignore[no-untyped-def]
        outputs = super().forward(ray_bundle)  # type: ignore[misc]
        if self.training or not self.compute_normals:  # type: ignore[attr-defined]
            return outputs
        origins = ray_bundle.origins.reshape(-1, 3)
        dirs = ray_bundle.directions.reshape(-1, 3)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        points = origins + dirs * outputs["depth"].reshape(-1, 1)
        # a ray that rendered nothing (no colour sample; else no accumulation) has no surface: the zero normal,
        # and no density look-ups spent on it (most of a Blender scene's pixels are background)
        hit = outputs["num_color_samples"] > 0 if "num_color_samples" in outputs else outputs["accumulation"] > 0
        hit = hit.reshape(-1)
        normals = torch.zeros_like(points)
        with torch.no_grad():  # world points: the model contracts them itself in unbounded scenes
            if bool(hit.any()):
                normals[hit] = density_normals(self.world_density, points[hit].detach(),  # type: ignore
                                               self.normal_step())
        outputs["normals"] = ((normals + 1.0) * 0.5).clamp(0.0, 1.0).to(outputs["rgb"].dtype)
        return outputs

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """``[..., 4]``: ``outputs[output_name]`` and the accumulation as alpha."""
        rgb = outputs[output_name]
        acc = outputs[output_name.replace("rgb", "accumulation")]
        if acc.dim() < rgb.dim():
            acc = acc.unsqueeze(-1)
        return torch.cat([rgb, acc.to(rgb.dtype)], dim=-1)

    def viewer_hidden_outputs(self, names: Iterable[str]) -> List[str]:
        """The output names the viewer's menu leaves out (internal counters)."""
        return [n for n in names if n.startswith(HIDDEN_OUTPUT_PREFIXES)]
