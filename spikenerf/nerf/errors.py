"""The errors a user of the NeRF commands can fix, each printed as one short line by the commands.

:mod:`spikenerf.nerf.nerfstudio_patches` prints an uncaught one of these as ``Name: message`` without a
traceback (``SPIKENERF_TRACEBACK=1`` shows it); every other exception keeps Python's full report.
"""

from __future__ import annotations

__all__ = ["SceneError", "ConfigError", "CheckpointError", "TrainingDiverged", "USER_ERRORS"]


class SceneError(ValueError):
    """A scene on disk that cannot be trained on, with the file at fault in the message."""


class ConfigError(ValueError):
    """A command-line value that breaks the method's preset (the option and the reason in the message)."""


class CheckpointError(RuntimeError):
    """No loadable checkpoint where one was asked for (every candidate named)."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient stopped training (the step and the loss terms in the message)."""


USER_ERRORS = (SceneError, ConfigError, CheckpointError, TrainingDiverged)
