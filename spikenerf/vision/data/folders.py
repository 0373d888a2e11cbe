"""A user's own data: class folders of images (``image-folder``) or of event recordings (``event-folder``).

Layout (torchvision's ImageFolder layout, for both)::

    DIR/train/<class>/<any name>.<ext>
    DIR/test/<class>/<any name>.<ext>

Class names are the sorted sub-folder names of ``train``; ``test`` must hold the same ones (clear error otherwise).
Evaluating a trained model (``spikenerf-vision eval --data-root DIR``) reads the test split only, against the
classes saved with the model: ``DIR`` may then hold ``test/`` alone, or be a folder of class folders itself
(``DIR/<class>/...``, no ``train/`` or ``test/``).

- ``image-folder``: any image file PIL reads, any size or mode. Channels: 1 if the first training image is
  single-band (``L``, ``1``, ``I``, ``F``, ``LA``), else 3 (RGB); every image is converted to that. Side: the first
  training image's larger side unless ``image_size`` is given; images are resized to ``side x side``. Values are
  scaled to [0, 1] and normalized with mean 0.5, std 0.5; training augmentation is a random crop (padding
  ``side / 8``) and a horizontal flip.
- ``event-folder``: ``.npy`` / ``.npz`` event recordings. A ``.npy`` holds a structured array with fields
  ``x, y, p, t`` (tonic's layout) or a plain ``[N, 4]`` array with columns ``x, y, t, p``; a ``.npz`` holds arrays
  ``x, y, p, t``. Polarity ``p`` is 0/1 (or -1/1, or a boolean); ``t`` in any unit. The sensor is the largest
  ``x + 1``, ``y + 1`` over the training recordings, padded to a square of side ``S``; each recording is binned
  into ``T`` equal time bins of ON/OFF counts ``[T, 2, S, S]`` (:func:`bin_events`), cached after the first read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T

from .augment import pil_augment, tensor_augment
from .base import DatasetFormatError, DatasetInfo, DatasetNotFoundError, ReadRequest, register_dataset

__all__ = ["class_folders", "image_folder_info", "ImageFolderSet", "read_events", "event_folder_info",
           "EventFolderSet", "bin_events", "IMAGE_EXTENSIONS", "EVENT_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EVENT_EXTENSIONS = (".npy", ".npz")
_GRAY_MODES = {"L", "1", "I", "F", "LA", "I;16", "P;L"}


def _need_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DatasetNotFoundError(f"--dataset {name} needs --data-root DIR, the folder holding train/<class>/ and "
                                   "test/<class>/ sub-folders.")
    return Path(root)


def class_folders(root: Path, split: str, exts: tuple[str, ...], name: str) -> list[tuple[str, list[Path]]]:
    """``[(class, sorted files)]`` of ``root/split``; errors on a missing split, no classes or an empty class."""
    d = root / split
    if not d.is_dir():
        raise DatasetNotFoundError(f"dataset {name!r}: {d} not found; {root} must hold train/<class>/ and "
                                   f"test/<class>/ folders of {'/'.join(exts)} files.")
    classes = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetFormatError(f"dataset {name!r}: {d} has no class sub-folders; put each class's files in "
                                 f"{d}/<class>/.")
    out = []
    for c in classes:
        files = sorted(f for f in (d / c).rglob("*") if f.is_file() and f.suffix.lower() in exts)
        if not files:
            raise DatasetFormatError(f"dataset {name!r}: class folder {d / c} holds no {'/'.join(exts)} files; "
                                     "remove the folder or add samples to it.")
        out.append((c, files))
    return out


def _check_same_classes(train: list, test: list, root: Path, name: str) -> None:
    a, b = [c for c, _ in train], [c for c, _ in test]
    if a != b:
        only_train, only_test = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise DatasetFormatError(f"dataset {name!r} at {root}: train and test classes differ (only in train: "
                                 f"{only_train or '-'}; only in test: {only_test or '-'}); both splits need the same "
                                 "class folders.")


def _test_split(root: Path) -> str:
    """The test split's folder under ``root``: ``test``, or ``root`` itself (``""``) when it has neither ``test/``
    nor ``train/`` (a folder of class folders to evaluate)."""
    if (root / "test").is_dir() or (root / "train").is_dir():
        return "test"
    return ""


def _split_samples(root: str | Path | None, train: bool, info: DatasetInfo, exts: tuple[str, ...],
                   name: str) -> list[tuple[Path, int]]:
    """``[(file, label)]`` of one split; the test split must have the train split's classes (when ``train/`` is
    there), and both the model's (``info.classes``, when the model was trained on class folders)."""
    root = _need_root(name, root)
    split = "train" if train else _test_split(root)
    folders = class_folders(root, split, exts, name)
    if not train and (root / "train").is_dir():
        _check_same_classes(class_folders(root, "train", exts, name), folders, root, name)
    if info.classes and tuple(c for c, _ in folders) != info.classes:
        raise DatasetFormatError(f"dataset {name!r} at {root / split}: classes {[c for c, _ in folders]} differ "
                                 f"from the model's {list(info.classes)}; evaluate a folder with the same class "
                                 "sub-folders.")
    return [(f, i) for i, (_, files) in enumerate(folders) for f in files]


# ----------------------------------------------------------------------------- images
def image_folder_info(root: str | Path | None, image_size: int | None = None) -> DatasetInfo:
    """Classes, channels and side of an image folder (from its first training image unless ``image_size``)."""
    root = _need_root("image-folder", root)
    train = class_folders(root, "train", IMAGE_EXTENSIONS, "image-folder")
    first = train[0][1][0]
    try:
        with Image.open(first) as im:
            mode, size = im.mode, im.size
    except OSError as e:
        raise DatasetFormatError(f"dataset 'image-folder': cannot read {first} ({e}).") from None
    channels = 1 if mode in _GRAY_MODES else 3
    side = int(image_size) if image_size else max(size)
    return DatasetInfo("image-folder", len(train), channels, side, "static", tuple(c for c, _ in train))


class ImageFolderSet(Dataset):
    """``(image [C, S, S] normalized, label)`` from ``root/<split>/<class>/*``."""

    def __init__(self, root: str | Path | None, train: bool, info: DatasetInfo, augment: bool | str = False) -> None:
        self.samples = _split_samples(root, train, info, IMAGE_EXTENSIONS, "image-folder")
        self.mode = "L" if info.in_channels == 1 else "RGB"
        side = info.input_size
        aug = augment if train else False
        ops = [T.Resize((side, side))] + pil_augment(aug, side)
        ops += [T.ToTensor(), T.Normalize([0.5] * info.in_channels, [0.5] * info.in_channels)]
        self.transform = T.Compose(ops + tensor_augment(aug, side))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert(self.mode)
        except OSError as e:
            raise DatasetFormatError(f"dataset 'image-folder': cannot read {path} ({e}).") from None
        return self.transform(img), label


@register_dataset("image-folder", info_of=image_folder_info)
def _read_image_folder(req: ReadRequest, info: DatasetInfo) -> ImageFolderSet:
    return ImageFolderSet(req.root, req.train, info, req.augment)


# ----------------------------------------------------------------------------- events
def read_events(path: str | Path) -> dict[str, np.ndarray]:
    """``{x, y, p, t}`` int64 arrays of one ``.npy`` / ``.npz`` recording (layouts in the module docstring)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                missing = [k for k in "xypt" if k not in z.files]
                if missing:
                    raise DatasetFormatError(f"{path}: an event .npz needs arrays x, y, p, t (missing {missing}).")
                ev = {k: np.asarray(z[k]) for k in "xypt"}
        else:
            a = np.load(path, allow_pickle=False)
            if a.dtype.names is not None:
                missing = [k for k in "xypt" if k not in a.dtype.names]
                if missing:
                    raise DatasetFormatError(f"{path}: a structured event array needs fields x, y, p, t "
                                             f"(missing {missing}).")
                ev = {k: np.asarray(a[k]) for k in "xypt"}
            elif a.ndim == 2 and a.shape[1] == 4:
                ev = {"x": a[:, 0], "y": a[:, 1], "t": a[:, 2], "p": a[:, 3]}
            else:
                raise DatasetFormatError(f"{path}: expected a structured array (x, y, p, t) or an [N, 4] array of "
                                         f"columns x, y, t, p, got shape {a.shape}.")
    except (OSError, ValueError) as e:
        if isinstance(e, DatasetFormatError):
            raise
        raise DatasetFormatError(f"{path}: not a readable event file ({e}).") from None
    out = {k: np.asarray(v).astype(np.int64) for k, v in ev.items() if k != "p"}
    out["p"] = (np.asarray(ev["p"]) > 0).astype(np.int64)  # {0,1}, {-1,1} or bool -> OFF 0 / ON 1
    return out


def bin_events(ev: dict[str, np.ndarray], T: int, size: int = 34) -> Tensor:
    """Event counts in ``T`` equal time bins over the recording: ``[T, 2, size, size]`` (channel = polarity)."""
    frames = np.zeros((T, 2, size, size), dtype=np.float32)
    if len(ev["t"]) == 0:
        return torch.from_numpy(frames)
    t = ev["t"] - ev["t"].min()
    span = max(int(t.max()) + 1, 1)
    tb = np.minimum(t * T // span, T - 1)
    keep = (ev["x"] >= 0) & (ev["y"] >= 0) & (ev["x"] < size) & (ev["y"] < size)
    np.add.at(frames, (tb[keep], ev["p"][keep], ev["y"][keep], ev["x"][keep]), 1.0)
    return torch.from_numpy(frames)


def event_folder_info(root: str | Path | None) -> DatasetInfo:
    """Classes and sensor side (largest ``x + 1``, ``y + 1`` over the training recordings) of an event folder."""
    root = _need_root("event-folder", root)
    train = class_folders(root, "train", EVENT_EXTENSIONS, "event-folder")
    side = 1
    for _, files in train:
        for f in files:
            ev = read_events(f)
            if len(ev["x"]):
                side = max(side, int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    return DatasetInfo("event-folder", len(train), 2, side, "events", tuple(c for c, _ in train))


class EventFolderSet(Dataset):
    """``(frames [T, 2, S, S], label)`` from ``root/<split>/<class>/*.npy|npz``; frames cached after the first read."""

    def __init__(self, root: str | Path | None, train: bool, info: DatasetInfo, steps: int = 10) -> None:
        self.samples = _split_samples(root, train, info, EVENT_EXTENSIONS, "event-folder")
        self.T, self.size = steps, info.input_size
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        if i not in self._cache:
            self._cache[i] = bin_events(read_events(path), self.T, self.size)
        return self._cache[i], label


@register_dataset("event-folder", info_of=lambda root, image_size: event_folder_info(root))
def _read_event_folder(req: ReadRequest, info: DatasetInfo) -> EventFolderSet:
    return EventFolderSet(req.root, req.train, info, req.T)
