"""A grid model's scene parameterization and DVGOv2's near clip, decided from the data when training starts.

- :class:`SceneConfig`: ``scene`` (bounded / unbounded / auto), ``bg_len``, ``near_clip`` (inherited by the
  grid model's config: ``--pipeline.model.<name>``).
- :func:`fit_scene_to_data`: ``scene="auto"`` from the training camera centres, ``near_clip=-1`` from the sparse
  points (nerfstudio's data parser outputs), on a model that says how to apply them (:class:`SceneModel`).
- :func:`data_near_clip`: the near clip of a capture from its cameras and sparse points.
- :func:`checked_box`: the data parser's box as the model keeps it, refused when it or ``bg_len`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol

from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

from .contraction import near_clip_from_points

__all__ = ["SCENE_UNDECIDED", "SCENE_BOUNDED", "SCENE_UNBOUNDED", "SceneConfig", "SceneModel", "fit_scene_to_data",
           "data_near_clip", "checked_box"]

SCENE_UNDECIDED, SCENE_BOUNDED, SCENE_UNBOUNDED = 0, 1, 2
"""Values of a model's ``scene_code`` buffer (saved with the checkpoint, so a resumed run keeps its choice)."""


@dataclass
class SceneConfig:
    """The scene options of a grid model's config."""

    scene: Literal["auto", "bounded", "unbounded"] = "auto"
    """Scene parameterization. ``bounded``: the grids span the data parser's box (Blender scenes).
    ``unbounded``: that box is the inner box of a contraction and the grids span the contracted space, which
    holds everything outside it (real captures: floor, walls, sky). ``auto``: unbounded when at least half of
    the training cameras are inside the box (nerfstudio's colmap / nerfstudio-data / instant-ngp-data parsers
    scale the poses into it), else bounded; decided when training starts and saved with the checkpoint."""
    bg_len: float = 0.5
    """Unbounded scenes: thickness of the contracted shell (everything outside the inner box) in inner
    half-sizes; the grids span ``(1 + bg_len)`` times the inner box (DVGOv2's ``bg_len``)."""
    near_clip: float = -1.0
    """Unbounded scenes: training samples closer than this to their camera have their density pushed down
    (DVGOv2's near-clip loss, weight ``nearclip_loss``): nothing real is that close to a training camera, and
    density there is a floater that fits one view and fogs its neighbours. ``-1``: from the data, 0.9 x the
    nearest sparse 3D point of any training camera (:func:`~.contraction.near_clip_from_points`; the ``colmap``
    parser loads them), off when the parser gives no points; ``0``: off; ``> 0``: this distance."""


class SceneModel(Protocol):
    """What :func:`fit_scene_to_data` reads and sets on a model."""

    config: Any  # a SceneConfig
    scene_code: Tensor
    aabb: Tensor
    near_clip: float

    def detect_scene(self, camera_origins: Tensor) -> bool: ...
    def data_near_clip(self, cameras: Any, points: Optional[Tensor]) -> float: ...


def fit_scene_to_data(model: SceneModel, outputs: Any) -> None:
    """``scene="auto"``: decide from the training camera centres unless a checkpoint already did;
    ``near_clip=-1``: from the data (recomputed on resume, so it is the same). ``outputs``: nerfstudio's
    ``DataparserOutputs`` of the training split."""
    if int(model.scene_code) == SCENE_UNDECIDED:
        model.detect_scene(outputs.cameras.camera_to_worlds[..., :3, 3].to(model.aabb.device))
    if model.config.near_clip < 0:
        model.near_clip = model.data_near_clip(outputs.cameras, (outputs.metadata or {}).get("points3D_xyz"))


def data_near_clip(cameras: Any, points: Optional[Tensor]) -> float:
    """0.9 x the nearest sparse point ``[P, 3]`` of any camera (nerfstudio ``Cameras``); 0 (off) without points."""
    if points is None or len(points) == 0:
        return 0.0
    clip = near_clip_from_points(cameras.camera_to_worlds, cameras.fx, cameras.fy, cameras.cx, cameras.cy,
                                 cameras.width, cameras.height, points)
    CONSOLE.log(f"spikingnerf: near clip {clip:.4g} (0.9 x the nearest of {len(points)} sparse points)")
    return clip


def checked_box(aabb: Tensor, bg_len: float) -> Tensor:
    """A float copy of the scene box ``[2, 3]`` (the inner box of unbounded scenes), checked with ``bg_len``."""
    box = aabb.detach().clone().float()
    if not bool((box[1] > box[0]).all()):
        raise ValueError(f"scene box must have positive extent, got {box.tolist()}")
    if bg_len <= 0:
        raise ValueError("bg_len must be > 0")
    return box
