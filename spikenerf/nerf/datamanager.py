"""nerfstudio's ``VanillaDataManager`` with up-front checks of the scene on disk, for every data parser.

nerfstudio's parsers report bad input late and without the file at fault: a truncated ``transforms*.json`` is
a bare ``JSONDecodeError``, a missing image is named one at a time deep in a loader, a COLMAP folder without
``images.bin`` is an ``AssertionError`` or a ``FileNotFoundError``, and an image of the wrong size is
``RuntimeError: stack expects each tensor to be equal size ... at entry 22`` (a batch index, not the image).
Here every problem ends in one :class:`SceneError` that names the file(s) and says what to do:

- :func:`check_scene` (before any parser runs, also called by the trainer config before ``config.yml`` is
  written): ``blender-data`` (:func:`check_blender_scene`), ``nerfstudio-data`` and ``instant-ngp-data``
  (:func:`check_transforms_scene`), ``colmap`` (:func:`check_colmap_scene`), ``llff-data``
  (:func:`~.llff_dataparser.check_llff_scene`); every listed image that is
  missing, unreadable or of another size than the frame says is listed (all of them, not only the first).
- :func:`check_dataset_images` (after parsing): every image of a split opens and has its camera's size.
- :class:`CheckedInputDataset`: an image that fails to decode while loading names its file and index.

Frames of a ``transforms.json`` whose images are missing are reported, never skipped: a real capture with
dropped frames should be fixed (remove the frames or restore the files) rather than trained on silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Type

import numpy as np
import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataParserConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParserConfig
from nerfstudio.data.dataparsers.instant_ngp_dataparser import InstantNGPDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.utils import colmap_parsing_utils as colmap_io
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError

from .errors import SceneError
from .llff_dataparser import LLFFDataParserConfig, check_llff_scene

__all__ = ["SceneError", "check_blender_scene", "check_transforms_scene", "check_colmap_scene", "check_scene",
           "check_dataset_images", "CheckedInputDataset", "SpikingNeRFDataManager", "SpikingNeRFDataManagerConfig"]

MAX_LISTED = 5
"""How many files a message lists before "and N more"."""


def _listing(paths: Sequence[Any]) -> str:
    more = f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return ", ".join(str(p) for p in paths[:MAX_LISTED]) + more


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SceneError(f"{path} is not valid JSON ({e}): fix or regenerate it") from None


def _image_size(path: Path) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from the file's header, or ``None`` when PIL cannot identify it."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _check_image_files(where: Path, images: Iterable[Tuple[Path, Optional[Tuple[int, int]]]], total: int) -> None:
    """Raise one :class:`SceneError` for the missing, unreadable and wrong-size files among ``images``
    (``(path, expected (w, h) or None)``); ``where`` is the file that lists them."""
    missing: List[Path] = []
    unreadable: List[Path] = []
    wrong: List[str] = []
    for path, expected in images:
        if not path.is_file():
            missing.append(path)
            continue
        size = _image_size(path)
        if size is None:
            unreadable.append(path)
        elif expected is not None and tuple(size) != tuple(expected):
            wrong.append(f"{path} ({size[0]}x{size[1]}, expected {expected[0]}x{expected[1]})")
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {total} image files not found: {_listing(missing)}")
    if unreadable:
        problems.append(f"{len(unreadable)} image files are not readable images: {_listing(unreadable)}")
    if wrong:
        problems.append(f"{len(wrong)} images have the wrong size: {_listing(wrong)}")
    if problems:
        raise SceneError(f"{where}: " + "; ".join(problems) +
                         ". Restore or re-export these files, or remove their frames from the list")


def _check_matrix(where: Path, i: int, name: str, mat: Any) -> None:
    if not (isinstance(mat, list) and len(mat) in (3, 4)
            and all(isinstance(r, list) and len(r) == 4 for r in mat)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for r in mat for v in r)):
        raise SceneError(f"{where}: frames[{i}] ('{name}') needs a finite 4x4 'transform_matrix'")


def _frames(where: Path, meta: Any) -> List[Dict[str, Any]]:
    if not isinstance(meta, dict):
        raise SceneError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneError(f"{where}: 'frames' must be a non-empty list, got {frames!r:.80}")
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
            raise SceneError(f"{where}: frames[{i}] has no 'file_path' string")
        _check_matrix(where, i, fr["file_path"], fr.get("transform_matrix"))
    return frames


# ----------------------------------------------------------------------------- blender-data
def _blender_image_path(root: Path, file_path: str) -> Path:
    # the same rule as nerfstudio's blender parser: strip "./", append ".png"
    return root / Path(file_path.replace("./", "") + ".png")


def check_blender_scene(root: Path, splits: Sequence[str]) -> None:
    """Raise :class:`SceneError` unless each ``transforms_{split}.json`` under ``root`` is usable.

    Every image of a split must exist, be readable and have the size of the split's first image (the
    parser takes the camera size from it).
    """
    root = Path(root)
    if not root.is_dir():
        raise SceneError(f"scene folder {root} does not exist (pass a Blender-format scene with --data)")
    for split in splits:
        meta_path = root / f"transforms_{split}.json"
        if not meta_path.is_file():
            raise SceneError(f"{meta_path} not found: a Blender-format scene has transforms_train.json, "
                             "transforms_val.json and transforms_test.json")
        meta = _read_json(meta_path)
        if isinstance(meta, dict):
            angle = meta.get("camera_angle_x")
            if not isinstance(angle, (int, float)) or not (0.0 < float(angle) < math.pi):
                raise SceneError(f"{meta_path}: 'camera_angle_x' must be a field of view in radians in (0, pi), "
                                 f"got {angle!r}")
        frames = _frames(meta_path, meta)
        paths = [_blender_image_path(root, fr["file_path"]) for fr in frames]
        first = next((s for s in (_image_size(p) for p in paths if p.is_file()) if s is not None), None)
        _check_image_files(meta_path, [(p, first) for p in paths], len(paths))


# ----------------------------------------------------------------------------- nerfstudio-data / instant-ngp-data
def _transforms_file(data: Path, kind: str) -> Tuple[Path, Path]:
    """``(transforms.json, the folder its paths are relative to)`` as the parser of ``kind`` resolves them."""
    data = Path(data)
    if data.suffix == ".json":
        if not data.is_file():
            raise SceneError(f"{data} not found: pass the {kind} scene folder or its transforms.json with --data")
        return data, data.parent
    if not data.is_dir():
        raise SceneError(f"scene folder {data} does not exist (pass a {kind} scene with --data)")
    meta_path = data / "transforms.json"
    if not meta_path.is_file():
        raise SceneError(f"{meta_path} not found: a {kind} scene is a folder with transforms.json "
                         "(ns-process-data writes one)")
    return meta_path, data


def check_transforms_scene(data: Path, kind: Literal["nerfstudio-data", "instant-ngp-data"] = "nerfstudio-data",
                           downscale_factor: Optional[int] = None) -> None:
    """Raise :class:`SceneError` unless the ``transforms.json`` scene at ``data`` is usable.

    Checks the JSON, each frame's ``file_path`` and ``transform_matrix``, the intrinsics the parser needs,
    and that every listed image exists, is readable, and has the ``w`` x ``h`` the file gives (per frame or
    global). ``downscale_factor`` > 1 (nerfstudio-data) checks ``images_<factor>/`` instead, as the parser does.
    """
    meta_path, base = _transforms_file(Path(data), kind)
    meta = _read_json(meta_path)
    frames = _frames(meta_path, meta)
    if kind == "instant-ngp-data":
        if not any(k in meta for k in ("fl_x", "camera_angle_x")):
            raise SceneError(f"{meta_path}: needs 'fl_x' or 'camera_angle_x' (the focal length)")
    else:
        for i, fr in enumerate(frames):
            missing = [k for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if k not in meta and k not in fr]
            if missing:
                raise SceneError(f"{meta_path}: frames[{i}] ('{fr['file_path']}') has no {', '.join(missing)} "
                                 "(neither in the frame nor at the top level)")
    images = []
    for fr in frames:
        rel = Path(fr["file_path"])
        path = base / rel
        if kind == "instant-ngp-data" and not path.exists() and rel.suffix == "":
            path = base / Path(fr["file_path"] + ".png")  # the parser's fallback
        expected = None
        if downscale_factor and downscale_factor > 1:
            path = base / f"images_{downscale_factor}" / rel.name
        elif "w" in fr or "w" in meta:
            try:
                expected = (int(fr.get("w", meta.get("w"))), int(fr.get("h", meta.get("h"))))
            except (TypeError, ValueError):
                raise SceneError(f"{meta_path}: 'w' / 'h' of frame '{fr['file_path']}' are not integers") from None
        images.append((path, expected))
    _check_image_files(meta_path, images, len(images))


# ----------------------------------------------------------------------------- colmap
def check_colmap_scene(data: Path, colmap_path: Path = Path("colmap/sparse/0"), images_path: Path = Path("images"),
                       downscale_factor: Optional[int] = None, load_3d_points: bool = True) -> None:
    """Raise :class:`SceneError` unless ``data`` holds a COLMAP model the ``colmap`` parser can read.

    The model folder ``data / colmap_path`` needs ``cameras`` and ``images`` (``.bin`` or ``.txt``) and, for
    ``load_3d_points``, ``points3D``; every image the model names must be in ``images_path`` (or
    ``images_<factor>`` when downscaled).
    """
    data = Path(data)
    if not data.is_dir():
        raise SceneError(f"scene folder {data} does not exist (pass a COLMAP scene with --data)")
    model = data / colmap_path
    if not model.is_dir():
        found = sorted(str(p.parent.relative_to(data)) for p in data.rglob("cameras.bin"))
        hint = f" (found a model in {', '.join(found)}: pass --colmap-path {found[0]})" if found else ""
        raise SceneError(f"COLMAP model folder {model} does not exist{hint}")
    needed = ["cameras", "images"] + (["points3D"] if load_3d_points else [])
    ext = ".bin" if (model / "cameras.bin").exists() else ".txt"
    absent = [model / f"{n}{ext}" for n in needed if not (model / f"{n}{ext}").is_file()]
    if absent:
        raise SceneError(f"{_listing(absent)} not found: a COLMAP model has cameras{ext}, images{ext} and "
                         f"points3D{ext} (re-run COLMAP's mapper, or pass --colmap-path to the right folder)")
    try:
        ims = (colmap_io.read_images_binary if ext == ".bin" else colmap_io.read_images_text)(model / f"images{ext}")
    except Exception as e:  # truncated / not a COLMAP file
        raise SceneError(f"{model / f'images{ext}'} could not be read ({type(e).__name__}: {e}): "
                         "re-export the COLMAP model") from None
    if not ims:
        raise SceneError(f"{model / f'images{ext}'} lists no images: COLMAP registered none")
    folder = data / (f"{images_path}_{downscale_factor}" if downscale_factor and downscale_factor > 1
                     else images_path)
    _check_image_files(model / f"images{ext}", [(folder / im.name, None) for im in ims.values()], len(ims))


# ----------------------------------------------------------------------------- dispatch
def _data_of(dataparser: DataParserConfig, data: Optional[Path]) -> Optional[Path]:
    return Path(data) if data is not None else getattr(dataparser, "data", None)


def check_scene(dataparser: DataParserConfig, data: Optional[Path] = None,
                splits: Sequence[str] = ("train", "val")) -> None:
    """Check the scene ``dataparser`` is about to read (``data`` overrides its ``data``); other parsers pass."""
    root = _data_of(dataparser, data)
    if root is None:
        return
    if isinstance(dataparser, BlenderDataParserConfig):
        check_blender_scene(root, list(splits))
    elif isinstance(dataparser, NerfstudioDataParserConfig):
        check_transforms_scene(root, "nerfstudio-data", dataparser.downscale_factor)
    elif isinstance(dataparser, InstantNGPDataParserConfig):
        check_transforms_scene(root, "instant-ngp-data")
    elif isinstance(dataparser, LLFFDataParserConfig):
        check_llff_scene(root, dataparser.downscale_factor)
    elif isinstance(dataparser, ColmapDataParserConfig):
        check_colmap_scene(root, dataparser.colmap_path, dataparser.images_path, dataparser.downscale_factor,
                           dataparser.load_3D_points)


def check_dataset_images(dataset: InputDataset, split: str) -> None:
    """After parsing: every image of ``dataset`` opens and has the size of its camera (times the dataset's
    scale factor, as nerfstudio resizes it)."""
    outputs = dataset._dataparser_outputs  # noqa: SLF001 (nerfstudio keeps the file names only there)
    cams = dataset.cameras
    widths = cams.width.reshape(-1).tolist()
    heights = cams.height.reshape(-1).tolist()
    images = []
    for i, path in enumerate(outputs.image_filenames):
        expected = None
        if i < len(widths):
            expected = (int(widths[i]), int(heights[i]))
            size = _image_size(Path(path))
            if size is not None and dataset.scale_factor != 1.0:  # nerfstudio's resize rule
                if (int(size[0] * dataset.scale_factor), int(size[1] * dataset.scale_factor)) == expected:
                    expected = size
        images.append((Path(path), expected))
    _check_image_files(Path(f"the {split} split"), images, len(images))


class CheckedInputDataset(InputDataset):
    """``InputDataset`` whose image loading names the file (and index) that fails to decode."""

    def get_numpy_image(self, image_idx: int) -> np.ndarray:
        try:
            return super().get_numpy_image(image_idx)
        except (OSError, ValueError, SyntaxError, AssertionError) as e:
            path = self._dataparser_outputs.image_filenames[image_idx]
            raise SceneError(f"image {image_idx} ({path}) could not be read ({type(e).__name__}: {e}): "
                             "restore or re-export it") from None


class SpikingNeRFDataManager(VanillaDataManager[CheckedInputDataset]):
    """``VanillaDataManager`` that checks the scene before nerfstudio's parser reads it and every image of
    each split after (see the module docstring)."""

    def __init__(self, config: VanillaDataManagerConfig, device="cpu",
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1,
                 local_rank: int = 0, **kwargs):
        check_scene(config.dataparser, config.data,
                    ["train", "test" if test_mode in ("test", "inference") else "val"])
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size,
                         local_rank=local_rank, **kwargs)

    ray_mask: Optional[torch.Tensor] = None
    """``[N, H, W, 1]`` bool over the training images, or None: when set, training rays are drawn only where it
    is True (ANDed with the dataset's own masks); the model sets it (:meth:`set_ray_mask`)."""

    def set_ray_mask(self, mask: Optional[torch.Tensor]) -> None:
        """Draw training rays only from the pixels where ``mask`` ``[N, H, W, 1]`` is True (None: all pixels).
        A mask that keeps fewer pixels than one batch is ignored (nerfstudio's sampler draws without
        replacement)."""
        kept = 0 if mask is None else int(mask.sum())
        if mask is not None and kept < self.config.train_num_rays_per_batch:
            CONSOLE.print(f"[yellow]ray mask keeps {kept} pixels, fewer than a batch: sampling every pixel[/yellow]")
            mask = None
        self.ray_mask = mask

    def next_train(self, step: int):
        if self.ray_mask is None:
            return super().next_train(step)
        self.train_count += 1
        image_batch = dict(next(self.iter_train_image_dataloader))
        own = image_batch["image_idx"]
        mask = self.ray_mask[own.to(self.ray_mask.device)].to(image_batch["image"].device)
        if image_batch.get("mask") is not None:
            mask = mask & image_batch["mask"].bool()
        image_batch["mask"] = mask
        batch = self.train_pixel_sampler.sample(image_batch)
        return self.train_ray_generator(batch["indices"]), batch

    def create_train_dataset(self) -> CheckedInputDataset:
        dataset = super().create_train_dataset()
        check_dataset_images(dataset, "train")
        return dataset

    def create_eval_dataset(self) -> CheckedInputDataset:
        dataset = super().create_eval_dataset()
        check_dataset_images(dataset, self.test_split)
        return dataset


@dataclass
class SpikingNeRFDataManagerConfig(VanillaDataManagerConfig):
    """``VanillaDataManagerConfig`` whose data manager checks the scene first (every parser)."""

    _target: Type = field(default_factory=lambda: SpikingNeRFDataManager)
