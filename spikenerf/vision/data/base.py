"""What every dataset module shares: the not-found error, the dataset description, the data root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DatasetNotFoundError", "DatasetFormatError", "DatasetInfo", "InputKind", "default_data_root"]

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


