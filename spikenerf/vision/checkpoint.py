"""Checkpoint files: written atomically, read with ``weights_only=True``, with errors a user can act on.

This module knows nothing of configs, models or methods (the engine, the CLI and the own-loop methods all use
it; building a model from a checkpoint is :func:`spikenerf.vision.build.restore`).

- :func:`save_checkpoint`: ``torch.save`` to a temporary file in the same folder, ``fsync``, ``os.replace``;
  a crash leaves the old checkpoint or the new one, never a torn file.
- :func:`load_checkpoint`: ``torch.load(..., weights_only=True)``; a missing, truncated or foreign file raises
  :class:`CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spikenerf.files import atomic_save

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not what the command needs (the CLI prints it, exit 2)."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    return atomic_save(state, path)


def load_checkpoint(path: str | Path, need: tuple[str, ...] = ()) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU; ``need``: keys the caller requires."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: pass the checkpoint.pt (or last.pt / best.pt) that "
                              "`spikenerf-vision train` wrote in its --output-dir.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        what = str(e).split(".")[0][:90]
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {what}); it is truncated or "
                              "not a torch file: use a checkpoint written by `spikenerf-vision train` or "
                              "`export`.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a spikenerf-vision checkpoint dict.")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a spikenerf-vision checkpoint (no {', '.join(missing)}); use one "
                              "written by `spikenerf-vision train` or `export`.")
    return state
