"""``spikenerf-viewer``: nerfstudio's ``ns-viewer`` bound to this machine only (127.0.0.1) unless told otherwise.

``ns-viewer`` takes its host from its own ``--viewer.websocket-host`` (nerfstudio's default ``0.0.0.0``: every
network interface), not from the run's config. ``spikenerf-viewer`` is ``ns-viewer`` with
``--viewer.websocket-host 127.0.0.1`` added when the command line does not name a host; every other
option is ``ns-viewer``'s (``spikenerf-viewer --help``). Share it with ``--viewer.websocket-host 0.0.0.0``.

    spikenerf-viewer --load-config outputs/.../config.yml      # then open http://127.0.0.1:7007
"""

from __future__ import annotations

import sys
from typing import List, Optional

from nerfstudio.scripts.viewer import run_viewer

from .startup import start_process

__all__ = ["LOCAL_HOST", "viewer_argv", "viewer_main"]

LOCAL_HOST = "127.0.0.1"
HOST_FLAGS = ("--viewer.websocket-host", "--viewer.websocket_host")


def viewer_argv(argv: List[str]) -> List[str]:
    """``argv`` (without the program name) with ``--viewer.websocket-host 127.0.0.1`` unless it names a host."""
    if any(a.split("=", 1)[0] in HOST_FLAGS for a in argv):
        return list(argv)
    return [*argv, HOST_FLAGS[0], LOCAL_HOST]


def viewer_main(argv: Optional[List[str]] = None) -> None:
    """Run ``ns-viewer`` with :func:`viewer_argv` (the console script ``spikenerf-viewer``)."""
    start_process()
    args = viewer_argv(sys.argv[1:] if argv is None else argv)
    sys.argv = ["spikenerf-viewer", *args]
    run_viewer.entrypoint()


if __name__ == "__main__":
    viewer_main()
