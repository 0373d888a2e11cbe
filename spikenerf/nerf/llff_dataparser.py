"""``llff-data``: LLFF's forward-facing captures (``poses_bounds.npy``) as a nerfstudio data parser.

``ns-train spikingnerf llff-data --data ../shared/data/llff-fern`` (registered on nerfstudio's
``nerfstudio.dataparser_configs`` entry point by :data:`llff_data`). What it does, as NeRF's
``load_llff_data`` with its defaults (``factor=8``, ``recenter=True``, ``bd_factor=0.75``) and the papers'
``llffhold=8``:

1. ``poses_bounds.npy`` ``[N, 17]``: per image a 3x5 matrix (camera-to-world rotation columns in LLFF's
   ``[down, right, back]`` axes, the translation, and the column ``[H, W, focal]`` of the full-resolution
   images), then the near / far depth bounds of that view's scene points.
2. Frames: ``images_<factor>/`` in sorted file-name order (``.png``, ``.jpg``, ``.jpeg``). Where that folder
   is missing, ``images/`` is downscaled into it (PIL Lanczos, ``floor(size / factor)``), the folder where
   nerfstudio's and LLFF's own parsers put their copies; written to a temporary folder and renamed, so an
   interrupted run leaves no half folder. The focal length is divided by ``factor``; ``H`` and ``W`` are those
   of the images read (which must be within a pixel of the full size over ``factor``).
3. Axes: ``[down, right, back]`` -> OpenGL's ``[right, up, back]`` (nerfstudio's camera convention):
   ``[c1, -c0, c2]`` (:func:`llff_to_opengl`).
4. Scale: translations and bounds times ``1 / (0.75 min(near bounds))``, so the nearest scene point sits at
   depth ``1 / 0.75`` (:func:`bounds_scale`), just beyond NDC's near plane ``z = -1``.
5. Recentre: every pose is expressed in the frame of the average pose (:func:`average_pose`: mean centre,
   normalized summed ``z`` axis, ``x`` from the summed ``y`` axis), so the cameras look down ``-z`` from around
   the origin, the frame NDC needs (:func:`recenter_poses`).
6. Split: frame ``i`` is held out (``val`` / ``test``) when ``i % llffhold == 0`` (0, 8, 16 on fern); the rest
   train.

The outputs (every split the same) say how the scene is to be parameterized, for the model:

- ``metadata``: ``scene_kind = "ndc"``, ``ndc_near`` (1.0, the plane ``z = -1`` of the recentred, rescaled
  frame, as NeRF / TensoRF / DVGO), ``ndc_focal`` (pixels) and ``ndc_hw`` ``(H, W)`` of the training camera
  (the arguments of :func:`~.ndc.ndc_rays`), ``near_far`` (the scaled bounds over all frames) and
  ``llffhold``;
- ``scene_box``: a box in NDC space (not in the cameras' world frame): the NDC box of the training
  cameras' frusta (:func:`~.ndc.ndc_frustum_box`, DVGO's rule; ``z'`` in ``[-1, 1]``, ``x'`` / ``y'``
  past ``[-1, 1]`` where the side cameras see past the average one: fern ``[-1.44, -1.30, -1] ..
  [1.44, 1.26, 1]``), the same for every split. A model that does not read ``scene_kind`` sees a
  box of about 2.9 x 2.6 x 2 units around cameras whose scene starts 1.33 units in front of them;
- ``dataparser_transform`` (the inverse of the average pose) and ``dataparser_scale`` in nerfstudio's
  convention (transform first, then scale), so ``ns-export`` and friends can map back to LLFF's world.

Bad input ends in one :class:`~.errors.SceneError` naming the file (:func:`check_llff_scene`, also run by the
data manager's up-front scene check before anything is written).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError

from .errors import ConfigError, SceneError
from .ndc import ndc_frustum_box

__all__ = ["LLFFDataParserConfig", "LLFFDataParser", "LLFFScene", "llff_data", "check_llff_scene",
           "read_poses_bounds", "llff_to_opengl", "average_pose", "recenter_poses", "bounds_scale",
           "holdout_split", "downscale_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files LLFF's loaders read (any case)."""

POSES_FILE = "poses_bounds.npy"


@dataclass
class LLFFDataParserConfig(DataParserConfig):
    """LLFF forward-facing scene (``poses_bounds.npy`` + ``images_<factor>/``); see the module docstring."""

    _target: Type = field(default_factory=lambda: LLFFDataParser)
    data: Path = Path()
    """The scene folder: ``poses_bounds.npy`` and ``images_<factor>/`` (or ``images/`` to downscale)."""
    downscale_factor: int = 8
    """Read ``images_<factor>/`` (1: ``images/`` itself). 8 is the resolution of the papers' LLFF tables."""
    llffhold: int = 8
    """Every ``llffhold``-th frame (``i % llffhold == 0``) is held out for evaluation."""
    bd_factor: float = 0.75
    """Scale so that the nearest bound lands at ``1 / bd_factor`` (LLFF's ``bd_factor``)."""
    ndc_near: float = 1.0
    """Depth of the NDC near plane in the recentred, rescaled frame (``metadata["ndc_near"]``)."""


@dataclass(frozen=True)
class LLFFScene:
    """What :func:`check_llff_scene` found: the arrays of ``poses_bounds.npy`` and the frames to read."""

    poses: np.ndarray
    """``[N, 3, 5]`` LLFF pose matrices (rotation in ``[down, right, back]`` axes, translation, ``[H, W, f]``)."""
    bounds: np.ndarray
    """``[N, 2]`` near / far depth bounds."""
    image_files: Tuple[Path, ...]
    """The ``N`` frames in sorted name order: in ``images_<factor>/``, or in ``images/`` when they are still to
    be downscaled (:attr:`needs_downscale`)."""
    image_size: Tuple[int, int]
    """``(width, height)`` of the frames as they will be read (after downscaling)."""
    needs_downscale: bool


def read_poses_bounds(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """``poses_bounds.npy`` -> LLFF poses ``[N, 3, 5]`` and bounds ``[N, 2]`` (float64), or one
    :class:`SceneError` naming the file: missing, unreadable, not ``[N, 17]``, not finite, bounds not
    ``0 < near <= far``, ``[H, W, focal]`` not positive or not the same for every frame."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path} not found: an LLFF scene folder holds poses_bounds.npy (LLFF's imgs2poses.py "
                         "writes it from a COLMAP model); pass that folder with --data")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise SceneError(f"{path} could not be read as a .npy array ({type(e).__name__}: {e}): "
                         "regenerate it with LLFF's imgs2poses.py") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise SceneError(f"{path} has shape {list(arr.shape)}, expected [N, 17] (per image a 3x5 pose matrix "
                         "flattened row by row, then its near and far bounds)")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        rows = sorted({int(i) for i in np.nonzero(~np.isfinite(arr))[0]})
        raise SceneError(f"{path}: rows {rows[:5]} hold NaN or infinite values; regenerate the file")
    poses, bounds = arr[:, :15].reshape(-1, 3, 5), arr[:, 15:]
    bad = np.nonzero((bounds[:, 0] <= 0) | (bounds[:, 1] < bounds[:, 0]))[0]
    if len(bad):
        raise SceneError(f"{path}: the bounds of rows {bad[:5].tolist()} are not 0 < near <= far "
                         f"(got {bounds[bad[0]].tolist()}); LLFF's rescaling needs positive depths")
    hwf = poses[:, :, 4]
    if (hwf <= 0).any() or not np.allclose(hwf, hwf[:1], rtol=1e-6):
        raise SceneError(f"{path}: the [H, W, focal] column must be positive and the same for every frame "
                         f"(one camera, as NDC needs); got {np.unique(hwf, axis=0)[:3].tolist()}")
    return poses, bounds


def _list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_sizes(files: Sequence[Path]) -> List[Tuple[int, int]]:
    """``(width, height)`` of each file from its header; one :class:`SceneError` listing the unreadable ones."""
    sizes, unreadable = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
        except (UnidentifiedImageError, OSError, ValueError):
            unreadable.append(f)
    if unreadable:
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        raise SceneError(f"{', '.join(map(str, unreadable[:3]))}{more}: not a readable image; restore or "
                         "re-export it (its frame's pose is in poses_bounds.npy, so it cannot just be dropped)")
    return sizes


def check_llff_scene(data: Path, factor: int = 8) -> LLFFScene:
    """Check the LLFF scene at ``data`` for a parser reading ``images_<factor>/`` and say what it will read.

    One :class:`SceneError` naming the file for: a missing folder, a bad ``poses_bounds.npy``
    (:func:`read_poses_bounds`), neither ``images_<factor>/`` nor ``images/``, a pose count that differs from
    the image count, an unreadable image, frames of different sizes, or frames that are not the full size
    over ``factor``.
    """
    data = Path(data)
    if factor < 1:
        raise ConfigError(f"--downscale-factor must be >= 1, got {factor}")
    if not data.is_dir():
        raise SceneError(f"scene folder {data} does not exist (pass an LLFF scene folder with --data)")
    poses, bounds = read_poses_bounds(data / POSES_FILE)
    folder = data / ("images" if factor == 1 else f"images_{factor}")
    needs_downscale = not folder.is_dir() and factor > 1
    if needs_downscale:
        folder = data / "images"
    if not folder.is_dir():
        wanted = f"images_{factor}/ or images/" if factor > 1 else "images/"
        raise SceneError(f"{data / ('images' if factor == 1 else f'images_{factor}')} not found: an LLFF scene "
                         f"needs its frames in {wanted} (images/ is downscaled by {factor} on first use)")
    files = _list_images(folder)
    if len(files) != len(poses):
        raise SceneError(f"{folder} holds {len(files)} images ({', '.join(IMAGE_SUFFIXES)}) but "
                         f"{data / POSES_FILE} has {len(poses)} poses: each pose pairs with one image in sorted "
                         "name order; restore the missing frames or regenerate poses_bounds.npy")
    sizes = _image_sizes(files)
    if len(set(sizes)) > 1:
        odd = [f"{f.name} ({w}x{h})" for f, (w, h) in zip(files, sizes) if (w, h) != sizes[0]]
        raise SceneError(f"{folder}: frames differ in size ({files[0].name} is {sizes[0][0]}x{sizes[0][1]}, "
                         f"{', '.join(odd[:3])}); LLFF scenes are one camera: re-export them at one size")
    w, h = sizes[0]
    if needs_downscale:
        w, h = w // factor, h // factor
    full_h, full_w = poses[0, 0, 4], poses[0, 1, 4]
    if abs(w - full_w / factor) > 1 or abs(h - full_h / factor) > 1:
        raise SceneError(f"{files[0]} is {sizes[0][0]}x{sizes[0][1]} but {data / POSES_FILE} gives "
                         f"{full_w:g}x{full_h:g} frames, {full_w / factor:g}x{full_h / factor:g} at 1/{factor}: "
                         f"{folder.name}/ does not hold 1/{factor} copies (pass the matching --downscale-factor)")
    return LLFFScene(poses, bounds, tuple(files), (w, h), needs_downscale)


def downscale_images(files: Sequence[Path], dst: Path, factor: int) -> List[Path]:
    """Write ``files`` downscaled by ``factor`` (``floor(size / factor)``, Lanczos) as PNGs named by their
    stem into the new folder ``dst``; returns the new files in the order of ``files``. Written into a sibling
    temporary folder first and renamed, so ``dst`` either holds every copy or does not exist."""
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for f in files:
            with Image.open(f) as im:
                size = (im.width // factor, im.height // factor)
                im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(tmp / f"{f.stem}.png")
        tmp.rename(dst)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SceneError(f"could not write the 1/{factor} copies of {files[0].parent} to {dst} "
                         f"({type(e).__name__}: {e}): make the scene folder writable, or create {dst.name}/ "
                         "yourself") from None
    return [dst / f"{f.stem}.png" for f in files]


def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """``[N, 3, 4]`` camera-to-world matrices with LLFF's ``[down, right, back]`` rotation columns ->
    OpenGL's ``[right, up, back]`` (``up = -down``); the translation column is unchanged."""
    return np.concatenate([poses[..., 1:2], -poses[..., 0:1], poses[..., 2:4]], -1)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """LLFF's average camera ``[3, 4]`` of OpenGL camera-to-world matrices ``[N, 3, 4]``: the mean centre,
    ``z`` the normalized sum of the ``z`` axes, ``x = normalize(up x z)`` with ``up`` the summed ``y`` axes,
    ``y = z x x`` (orthonormal, right-handed)."""
    z = _normalize(c2w[:, :, 2].sum(0))
    x = _normalize(np.cross(c2w[:, :, 1].sum(0), z))
    y = np.cross(z, x)
    return np.stack([x, y, z, c2w[:, :, 3].mean(0)], 1)


def recenter_poses(c2w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``[N, 3, 4]`` poses expressed in the frame of their :func:`average_pose` ``A``: ``A^-1 P`` (rotation
    ``R_A^T R``, centre ``R_A^T (t - c_A)``); returns them and ``A^-1`` ``[3, 4]``."""
    avg = average_pose(c2w)
    rot_t = avg[:, :3].T
    inv = np.concatenate([rot_t, -rot_t @ avg[:, 3:4]], 1)
    out = np.concatenate([rot_t @ c2w[:, :, :3], rot_t @ (c2w[:, :, 3:4] - avg[:, 3:4])], -1)
    return out, inv


def bounds_scale(bounds: np.ndarray, bd_factor: float = 0.75) -> float:
    """LLFF's scene scale ``1 / (bd_factor * min(bounds))``: the nearest scene point lands at depth
    ``1 / bd_factor``."""
    return 1.0 / (bd_factor * float(bounds.min()))


def holdout_split(count: int, llffhold: int, split: str) -> List[int]:
    """Frame indices of ``split`` among ``count``: ``i % llffhold == 0`` for ``val`` / ``test``, the others
    for ``train`` (the papers' LLFF protocol)."""
    if split == "train":
        return [i for i in range(count) if i % llffhold != 0]
    if split in ("val", "test"):
        return [i for i in range(count) if i % llffhold == 0]
    raise ValueError(f"unknown split {split!r}: llff-data has train, val and test")


@dataclass
class LLFFDataParser(DataParser):
    """Reads an LLFF scene (the module docstring)."""

    config: LLFFDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        cfg = self.config
        if cfg.llffhold < 2:
            raise ConfigError(f"--llffhold must be >= 2 (every llffhold-th frame is held out), got {cfg.llffhold}")
        if not cfg.bd_factor > 0:
            raise ConfigError(f"--bd-factor must be > 0, got {cfg.bd_factor}")
        factor = cfg.downscale_factor
        scene = check_llff_scene(cfg.data, factor)
        files = list(scene.image_files)
        if scene.needs_downscale:
            dst = Path(cfg.data) / f"images_{factor}"
            if not dst.is_dir():  # another split of this run may have written it since the check
                CONSOLE.log(f"llff-data: downscaling {len(files)} frames of {files[0].parent} by {factor} "
                            f"into {dst}")
                downscale_images(files, dst, factor)
            files = [dst / f"{f.stem}.png" for f in files]
        width, height = scene.image_size
        focal = float(scene.poses[0, 2, 4]) / factor
        scale = bounds_scale(scene.bounds, cfg.bd_factor)
        c2w = llff_to_opengl(scene.poses[:, :, :4])
        c2w, inv_avg = recenter_poses(c2w)
        c2w[:, :, 3] *= scale  # recentring is linear in the translations, so scaling after it is the same
        bounds = scene.bounds * scale
        try:
            box = ndc_frustum_box(torch.from_numpy(c2w[holdout_split(len(files), cfg.llffhold, "train")]),
                                  height, width, focal, cfg.ndc_near)
        except ValueError as e:
            raise SceneError(f"{Path(cfg.data) / POSES_FILE}: {e}") from None
        idx = holdout_split(len(files), cfg.llffhold, split)
        n = len(idx)
        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(c2w[idx]).float(),
            fx=torch.full((n, 1), focal), fy=torch.full((n, 1), focal),
            cx=torch.full((n, 1), width / 2.0), cy=torch.full((n, 1), height / 2.0),
            width=torch.full((n, 1), width, dtype=torch.long), height=torch.full((n, 1), height, dtype=torch.long),
            camera_type=CameraType.PERSPECTIVE,
        )
        metadata = {"scene_kind": "ndc", "ndc_near": float(cfg.ndc_near), "ndc_focal": focal,
                    "ndc_hw": (int(height), int(width)), "near_far": (float(bounds.min()), float(bounds.max())),
                    "llffhold": int(cfg.llffhold)}
        return DataparserOutputs(
            image_filenames=[files[i] for i in idx],
            cameras=cameras,
            scene_box=SceneBox(aabb=box.float()),
            dataparser_transform=torch.from_numpy(inv_avg).float(),
            dataparser_scale=scale,
            metadata=metadata,
        )


llff_data = DataParserSpecification(
    config=LLFFDataParserConfig(),
    description="LLFF forward-facing scene (poses_bounds.npy + images_8/): recentred, rescaled (bd_factor 0.75), "
                "every 8th frame held out, NDC scene",
)
"""The ``llff-data`` entry point (``pyproject.toml``, ``nerfstudio.dataparser_configs``)."""
