"""A grid model's scene parameterization and DVGOv2's near clip, decided from the data when training starts.

- :class:`SceneConfig`: ``scene`` (bounded / unbounded / ndc / auto), ``bg_len``, ``near_clip``, ``ndc``
  (:class:`NDCSettings`, what forward-facing scenes train with) (inherited by the grid model's config:
  ``--pipeline.model.<name>``).
- :func:`ndc_camera_of`: the NDC camera ``[H, W, focal, near]`` a data parser's metadata names (``llff-data``).
- :func:`fit_scene_to_data`: ``scene="auto"`` from the training camera centres, ``near_clip=-1`` from the sparse
  points (nerfstudio's data parser outputs), on a model that says how to apply them (:class:`SceneModel`).
- :func:`data_near_clip`: the near clip of a capture from its cameras and sparse points.
- :func:`checked_box`: the data parser's box as the model keeps it, refused when it or ``bg_len`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Protocol, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.utils.rich_utils import CONSOLE

from .contraction import near_clip_from_points

__all__ = ["SCENE_UNDECIDED", "SCENE_BOUNDED", "SCENE_UNBOUNDED", "SCENE_NDC", "NDCSettings", "SceneConfig",
           "SceneModel", "fit_scene_to_data", "ndc_camera_of", "register_ndc_camera", "data_near_clip", "checked_box"]

SCENE_UNDECIDED, SCENE_BOUNDED, SCENE_UNBOUNDED, SCENE_NDC = 0, 1, 2, 3
"""Values of a model's ``scene_code`` buffer (saved with the checkpoint, so a resumed run keeps its choice)."""


@dataclass
class NDCSettings:
    """What a grid model trains with in an NDC (forward-facing) scene instead of its own options of the same
    names: DVGO's LLFF configs (``configs/llff/*.py``) train without a coarse stage and keep the whole NDC box,
    whose far face is infinity (tightening it round the coarse geometry would cut the far background off).
    ``None``: the model's own value."""

    coarse_steps: Optional[int] = 100
    """A short coarse stage (DVGO's LLFF configs have none, ``coarse_train.N_iters = 0``; ``0`` here is that). Its
    direct-colour grids cost ~15 ms a step, and the occupancy cache it leaves keeps the fine stage's samples to the
    occupied depths (without it a 512-ray fine step took 1 s on this CPU while the density is still a fog). 100
    steps leave the fine stage the rest: on fern the first look scored 21.7 dB with 400 coarse steps, 22.05 with
    200 and 22.18 with 100 (docs/benchmarks.md)."""
    tighten_fine_box: bool = False
    fine_resolution: Optional[int] = 128
    """Vertices along the NDC box's longest axis (``x'``, ~2.9 NDC units on fern): 128 gives ~88 along
    ``z'``, the inverse-depth axis (DVGO's LLFF: 128 MPI planes at 4x these images' pixels)."""
    pg_scale_steps: Optional[Tuple[int, ...]] = None
    step_ratio: Optional[float] = None
    weight_threshold: Optional[float] = 1e-3
    """DVGO's LLFF ``fast_color_thres`` (1e-3, 10x the bounded scenes' 1e-4): every ray of a forward-facing
    scene hits something, and the samples below it never reach the colour net."""
    distortion_loss: Optional[float] = 0.01
    """DVGO's LLFF ``weight_distortion`` (0.01), on the samples' NDC distance over the box's depth 2."""
    tv_density: Optional[float] = 1e-5
    """DVGO's LLFF ``weight_tv_density`` (1e-5): 17 views from one side leave floaters the views do not see."""

    def loss_overrides(self) -> dict[str, float]:
        """The loss weights these settings replace (those not ``None``)."""
        return {n: getattr(self, n) for n in ("distortion_loss", "tv_density") if getattr(self, n) is not None}

    def overrides(self) -> dict[str, Any]:
        """The model options these settings replace (those not ``None``)."""
        names = ("coarse_steps", "tighten_fine_box", "fine_resolution", "pg_scale_steps", "step_ratio",
                 "weight_threshold")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass
class SceneConfig:
    """The scene options of a grid model's config."""

    scene: Literal["auto", "bounded", "unbounded", "ndc"] = "auto"
    """Scene parameterization. ``bounded``: the grids span the data parser's box (Blender scenes).
    ``unbounded``: that box is the inner box of a contraction and the grids span the contracted space, which
    holds everything outside it (real captures: floor, walls, sky). ``ndc``: forward-facing captures (LLFF):
    rays are marched in normalized device coordinates (:mod:`~.ndc`, uniform in inverse depth out to
    infinity) and the grids span the data parser's NDC box; it needs the parser's NDC camera
    (:func:`ndc_camera_of`, which ``llff-data`` gives) and trains with :class:`NDCSettings`. ``auto``: ``ndc``
    when the parser says ``scene_kind = "ndc"``; otherwise unbounded when at least half of the training
    cameras are inside the box (nerfstudio's colmap / nerfstudio-data / instant-ngp-data parsers scale the
    poses into it), else bounded, decided when training starts. The choice is saved with the checkpoint."""
    bg_len: float = 0.5
    """Unbounded scenes: thickness of the contracted shell (everything outside the inner box) in inner
    half-sizes; the grids span ``(1 + bg_len)`` times the inner box (DVGOv2's ``bg_len``)."""
    near_clip: float = -1.0
    """Unbounded scenes: training samples closer than this to their camera have their density pushed down
    (DVGOv2's near-clip loss, weight ``nearclip_loss``): nothing real is that close to a training camera, and
    density there is a floater that fits one view and fogs its neighbours. ``-1``: from the data, 0.9 x the
    nearest sparse 3D point of any training camera (:func:`~.contraction.near_clip_from_points`; the ``colmap``
    parser loads them), off when the parser gives no points; ``0``: off; ``> 0``: this distance."""
    ndc: NDCSettings = field(default_factory=NDCSettings)
    """NDC scenes: the options they train with (``--pipeline.model.ndc.<name>``)."""


class SceneModel(Protocol):
    """What :func:`fit_scene_to_data` reads and sets on a model."""

    config: Any  # a SceneConfig
    scene_code: Tensor
    aabb: Tensor
    near_clip: float

    def detect_scene(self, camera_origins: Tensor) -> bool: ...
    def data_near_clip(self, cameras: Any, points: Optional[Tensor]) -> float: ...


def ndc_camera_of(metadata: Optional[Mapping[str, Any]]) -> Optional[Tuple[float, float, float, float]]:
    """The NDC camera ``(H, W, focal, near)`` of a data parser's ``metadata`` (``scene_kind = "ndc"``,
    ``ndc_hw``, ``ndc_focal``, ``ndc_near``: what ``llff-data`` writes), or None when it names none."""
    if not metadata or metadata.get("scene_kind") != "ndc":
        return None
    missing = [k for k in ("ndc_hw", "ndc_focal", "ndc_near") if k not in metadata]
    if missing:
        raise ValueError(f"the data parser says scene_kind='ndc' but its metadata lacks {missing}")
    (h, w), focal, near = metadata["ndc_hw"], float(metadata["ndc_focal"]), float(metadata["ndc_near"])
    if min(h, w) <= 0 or focal <= 0 or near <= 0:
        raise ValueError(f"the data parser's NDC camera needs H, W, focal, near > 0, got {(h, w, focal, near)}")
    return float(h), float(w), focal, near


def register_ndc_camera(model: nn.Module) -> None:
    """Give ``model`` the buffer ``ndc_camera`` ``[4]`` (``H, W, focal, near`` of an NDC scene, zeros otherwise:
    saved, so a checkpoint renders without its data parser) and a load pre-hook that keeps the buffer's value
    where a state has none: checkpoints from before NDC scenes, and nerfstudio's pipeline, which loads the model
    and then the pipeline's other keys with ``strict=False`` (a second pass through the model)."""
    model.register_buffer("ndc_camera", torch.zeros(4, dtype=torch.float64))

    def fill(state_dict: dict, prefix: str, *args: Any) -> None:
        state_dict.setdefault(prefix + "ndc_camera", model.ndc_camera.detach().clone())

    model._register_load_state_dict_pre_hook(fill)


def fit_scene_to_data(model: SceneModel, outputs: Any) -> None:
    """``scene="auto"``: decide from the training camera centres unless a checkpoint (or the data parser's NDC
    metadata, read when the model was built) already did; ``near_clip=-1``: from the data (recomputed on
    resume, so it is the same). ``outputs``: nerfstudio's ``DataparserOutputs`` of the training split.
    ``scene="ndc"`` on a parser without an NDC camera is refused here."""
    if model.config.scene == "ndc" and int(model.scene_code) != SCENE_NDC:
        raise ValueError(
            "--pipeline.model.scene ndc needs a forward-facing capture in the recentred frame of LLFF, whose "
            "data parser names the NDC camera (metadata scene_kind='ndc', ndc_hw, ndc_focal, ndc_near) and gives "
            "the NDC box; this data parser gives none. Use the llff-data parser "
            "(ns-train <method> llff-data --data <scene with poses_bounds.npy>), or --pipeline.model.scene auto")
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
