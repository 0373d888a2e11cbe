"""Make ``ns-render`` videos work without a system ffmpeg.

``ns-render interpolate`` / ``spiral`` / ``camera-path`` look for an ``ffmpeg`` executable on ``PATH`` and
exit with "Could not find ffmpeg" otherwise. The ``imageio-ffmpeg`` wheel (a dependency of this package)
ships a static ffmpeg binary; when there is no ffmpeg on ``PATH``, :func:`ensure_ffmpeg_on_path` links it
as ``ffmpeg`` in a per-user cache folder and appends that folder to this process's ``PATH`` (a system
ffmpeg always wins). It runs where one of this package's runs starts (:func:`~.startup.start_process`:
``ns-render`` builds the pipeline of a ``spikingnerf`` config before it renders), never on import.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

__all__ = ["ensure_ffmpeg_on_path"]


def ensure_ffmpeg_on_path() -> Optional[str]:
    """Path of the ``ffmpeg`` that ``PATH`` now finds, or ``None`` if there is none (never raises)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        exe = Path(imageio_ffmpeg.get_ffmpeg_exe())
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikenerf" / "bin"
        cache.mkdir(parents=True, exist_ok=True)
        link = cache / "ffmpeg"
        if not (link.is_symlink() and link.resolve() == exe.resolve()):
            tmp = cache / f".ffmpeg.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(exe)
            os.replace(tmp, link)  # atomic: concurrent processes never see a half-made link
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(cache)
        return shutil.which("ffmpeg")
    except Exception:  # no imageio-ffmpeg, read-only home, ...: nerfstudio then says "install ffmpeg"
        return None
