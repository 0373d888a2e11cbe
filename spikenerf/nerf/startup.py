"""Where a NeRF-wing process starts: :func:`start_process`, the one place its process-wide settings are made.

Nothing of ``spikenerf.nerf`` changes the process when imported (nerfstudio imports the method configs for
every ``ns-*`` command, including ``--help``). The settings are made when one of this package's runs starts:

- ``ns-train``: :meth:`~.trainer.SpikingNeRFTrainerConfig.check_inputs` (before the config is printed) and
  :class:`~.trainer.SpikingNeRFTrainer` (each training process, DDP workers included);
- ``ns-eval`` / ``ns-render`` / ``ns-viewer`` / ``ns-export``: :class:`~.trainer.SpikingNeRFPipeline`, built by
  nerfstudio's ``eval_setup`` before it loads the checkpoint;
- ``spikenerf-quickstart`` and ``spikenerf-viewer``: first thing in their ``main``.

What it sets, each overridable as its module says:

- the core's OpenMP wait and allocator policies (:func:`spikenerf.snn.process.configure_process`);
- ``PATH``: imageio-ffmpeg's ffmpeg appended when there is none, for ``ns-render`` videos
  (:func:`~.video.ensure_ffmpeg_on_path`; a system ffmpeg wins);
- the nerfstudio 1.1.5 fixes (:func:`~.nerfstudio_patches.install`: short errors, known warnings, checkpoint
  loading, the spiral path, the viewer's start).
"""

from __future__ import annotations

from spikenerf.snn.process import configure_process

from . import nerfstudio_patches
from .video import ensure_ffmpeg_on_path

__all__ = ["start_process"]


def start_process() -> None:
    """Make the NeRF wing's process settings (the module docstring). Idempotent: each call installs only the
    patches whose nerfstudio modules finished importing since the last."""
    configure_process()
    ensure_ffmpeg_on_path()
    nerfstudio_patches.install()
