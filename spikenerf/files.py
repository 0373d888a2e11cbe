"""Crash-safe file writes shared by both wings (NeRF checkpoints, vision checkpoints).

:func:`atomic_save` writes ``torch.save(obj)`` to a hidden temporary file in the target's folder, flushes
and fsyncs it, renames it over the target (``os.replace`` is atomic on POSIX) and fsyncs the folder, so a
process killed at any moment leaves either the old file or the complete new one, never a torn file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["TEMP_PREFIX", "temporary_path", "atomic_save"]

TEMP_PREFIX = ".tmp-"
"""Temporaries are ``.tmp-<pid>-<name>``: hidden, and attributable to the process that wrote them."""


def temporary_path(path: Path) -> Path:
    """The temporary this process writes before renaming it to ``path``."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems do not fsync folders
        pass
    return path
