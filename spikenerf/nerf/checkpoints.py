"""Crash-safe checkpoint files: atomic writes, and loading that skips torn files.

nerfstudio writes ``step-*.ckpt`` in place, so a process killed during a save leaves a torn file (0 bytes,
or cut off) that the next ``--load-dir`` / ``ns-eval`` picks as the newest and fails on with a bare
``EOFError``. Here:

- :func:`atomic_save` writes a hidden temporary file in the same folder, flushes and fsyncs it, then
  renames it over the target (``os.replace`` is atomic on POSIX), so ``step-*.ckpt`` is always complete.
- :func:`load_latest_checkpoint` tries the ``step-*.ckpt`` files newest first, warns about each one that
  does not load (naming it) and returns the newest good one; :func:`load_checkpoint` loads one file
  (``weights_only=True``) or raises :class:`~.errors.CheckpointError` naming it.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from spikenerf.files import TEMP_PREFIX, atomic_save

from .errors import CheckpointError

__all__ = ["CHECKPOINT_RE", "checkpoint_step", "checkpoint_files", "atomic_save", "remove_stale_temporaries",
           "load_checkpoint", "load_latest_checkpoint"]

CHECKPOINT_RE = re.compile(r"^step-(\d+)\.ckpt$")
"""nerfstudio's checkpoint file name (``step-000000600.ckpt``)."""


def checkpoint_step(path: Path) -> Optional[int]:
    """The step in a checkpoint file name, ``None`` for any other file."""
    m = CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def checkpoint_files(folder: Path) -> List[Path]:
    """The ``step-*.ckpt`` files of ``folder``, newest step first (temporaries and other files ignored)."""
    folder = Path(folder)
    found = [(checkpoint_step(p), p) for p in folder.iterdir()] if folder.is_dir() else []
    return [p for s, p in sorted(((s, p) for s, p in found if s is not None), reverse=True)]


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporaries that killed processes left in ``folder`` (never this process's own)."""
    own = f"{TEMP_PREFIX}{os.getpid()}-"
    for p in Path(folder).glob(f"{TEMP_PREFIX}*"):
        if not p.name.startswith(own):
            p.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """The state saved in ``path`` (``weights_only=True``, on the CPU), checked to be a nerfstudio checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # EOFError, RuntimeError (zip), UnpicklingError, ...
        size = path.stat().st_size
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is torn or not a checkpoint "
                              f"({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "step" not in state or "pipeline" not in state:
        raise CheckpointError(f"checkpoint {path} has no 'step' / 'pipeline': not a nerfstudio checkpoint")
    return state


def load_latest_checkpoint(folder: Path, step: Optional[int] = None) -> Tuple[Path, Dict[str, Any]]:
    """``(path, state)`` of the newest ``step-*.ckpt`` in ``folder`` that loads (or of ``step`` exactly).

    Each newer file that does not load is skipped with a warning naming it; :class:`~.errors.CheckpointError`
    when none loads.
    """
    folder = Path(folder)
    if step is not None:
        path = folder / f"step-{step:09d}.ckpt"
        return path, load_checkpoint(path)
    files = checkpoint_files(folder)
    if not files:
        what = "does not exist" if not folder.is_dir() else "holds no step-*.ckpt file"
        raise CheckpointError(f"checkpoint folder {folder} {what}: train first, or pass the run's "
                              "nerfstudio_models folder")
    skipped = []
    for path in files:
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            warnings.warn(f"skipping {e}; trying an older one", RuntimeWarning, stacklevel=2)
            skipped.append(str(path))
            continue
        return path, state
    raise CheckpointError(f"no checkpoint in {folder} loads (all torn: {', '.join(skipped)}): "
                          "train again from scratch")
