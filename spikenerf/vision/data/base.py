"""What every dataset module shares: the not-found error, the dataset description, the data root, and the
registry of readers (:func:`register_dataset`: each reader registers itself beside its code)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from torch.utils.data import Dataset

__all__ = ["DatasetNotFoundError", "DatasetFormatError", "DatasetInfo", "InputKind", "default_data_root",
           "ReadRequest", "Reader", "register_dataset", "DATASETS", "READERS", "FOLDER_INFO"]

InputKind = Literal["static", "events", "points"]


class DatasetNotFoundError(FileNotFoundError):
    """The requested dataset is not on disk (this package never downloads)."""


class DatasetFormatError(ValueError):
    """The data is there but not in the layout the dataset reads (empty class folder, mismatched classes...)."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    input_size: int  # spatial side (images), or number of points
    kind: InputKind
    classes: tuple[str, ...] = ()  # class names, when the data names them (class folders)


def default_data_root() -> Path:
    """``$SPIKENERF_DATA`` if set, else ``../shared/data`` relative to the repository root."""
    env = os.environ.get("SPIKENERF_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def _missing(name: str, where: Path, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} not found at {where}. {how} (nothing is downloaded; set --data-root or "
        f"$SPIKENERF_DATA to the folder that holds it)."
    )




# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class ReadRequest:
    """What :func:`~spikenerf.vision.data.get_dataset` asks a reader for."""

    root: Path | None  # the data root (named sets) or the folder itself (class-folder sets; None: not given)
    train: bool
    T: int = 10  # time bins of event sets
    augment: bool | str = True  # training augmentation: on / off / a recipe of .augment
    n_points: int = 1024  # points per cloud
    seed: int = 0


Reader = Callable[[ReadRequest, DatasetInfo], Dataset]
"""``reader(request, info) -> dataset`` of ``(x, label)`` samples of ``info``'s kind."""

DATASETS: dict[str, DatasetInfo] = {}
"""Named datasets of fixed shape: name -> description (points sets: ``input_size`` is the default 1024)."""
READERS: dict[str, Reader] = {}
"""Every dataset name -> its reader."""
FOLDER_INFO: dict[str, Callable[[Path | None, int | None], DatasetInfo]] = {}
"""Class-folder datasets: name -> ``(folder, image_size) -> DatasetInfo`` read from the data."""


def register_dataset(name: str, info: DatasetInfo | None = None, *,
                     info_of: Callable[[Path | None, int | None], DatasetInfo] | None = None
                     ) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader`` under ``name``, with a fixed ``info`` or, for a user's class folders,
    ``info_of`` that reads it from the data (exactly one of the two)."""
    if (info is None) == (info_of is None):
        raise ValueError(f"dataset {name!r}: give a fixed info or an info_of reader, not {'both' if info else 'neither'}")

    def add(reader: Reader) -> Reader:
        if name in READERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        READERS[name] = reader
        if info is not None:
            DATASETS[name] = info
        else:
            FOLDER_INFO[name] = info_of  # type: ignore[assignment]
        return reader

    return add
