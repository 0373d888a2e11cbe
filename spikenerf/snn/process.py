"""The core's process policy, applied where a process starts, never on import: :func:`configure_process`.

Two settings make the package's CPU kernels fast on a shared machine; both change the whole process, so
importing a library must not make them. The programs of the project call :func:`configure_process` first
thing (``spikenerf-vision``, ``spikenerf-quickstart``, ``spikenerf-viewer``, the nerfstudio trainer and
pipeline through :func:`spikenerf.nerf.startup.start_process`, the benchmarks in ``tools/``, the test
session); a program that embeds the library calls it itself if it wants them.

- **OpenMP wait policy** (``OMP_WAIT_POLICY``, default :data:`DEFAULT_WAIT_POLICY` = ``PASSIVE``): every C
  kernel of the package runs on torch's own libgomp (one OpenMP runtime per process), whose default lets idle
  threads spin ~300k iterations after each parallel region and takes cores from the other processes of a
  shared CPU (a busy 2-core machine showed 44 % of a profile in libgomp; measured in docs/nerf.md, "Speed").
  libgomp reads the variable once, when it loads (when ``torch`` is imported), so setting it here reaches
  the processes this one starts (``spikenerf-quickstart``'s ``ns-train`` / ``ns-eval`` / ``ns-render``, the
  benchmarks' children, the tests' subprocesses), not this one. For a plain ``ns-train`` on a shared machine
  export ``OMP_WAIT_POLICY=PASSIVE`` first; :func:`openmp_wait_policy` says what this process runs with.
- **Allocator policy** (``SPIKENERF_MALLOC``, default ``keep``): glibc keeps freed large blocks for reuse
  instead of unmapping them (:mod:`spikenerf.snn.memory`; 1.97x faster fine-stage steps). It applies at once.

A value the user set in the environment wins: ``OMP_WAIT_POLICY=ACTIVE`` (a dedicated machine),
``SPIKENERF_MALLOC=system`` (glibc's defaults).
"""

from __future__ import annotations

import os
from typing import Dict

from .memory import apply_memory_policy

__all__ = ["configure_process", "openmp_wait_policy", "DEFAULT_WAIT_POLICY", "WAIT_POLICY_VAR"]

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"
"""The project's OpenMP wait policy for the processes it starts: idle threads sleep, do not spin."""

# torch (hence libgomp) is loaded before this module (the core's package imports it), so this is what the
# OpenMP runtime of this process read
_POLICY_AT_START = os.environ.get(WAIT_POLICY_VAR)


def openmp_wait_policy() -> str:
    """The OpenMP wait policy of this process: ``PASSIVE``, ``ACTIVE`` or ``default`` (libgomp's spinning)."""
    return _POLICY_AT_START.upper() if _POLICY_AT_START else "default"


def configure_process() -> Dict[str, str]:
    """Apply the core's process policy (the module docstring); idempotent, a user's setting wins.

    Returns ``{"omp_wait_policy": <for child processes>, "malloc": <this process's allocator state>}``."""
    os.environ.setdefault(WAIT_POLICY_VAR, DEFAULT_WAIT_POLICY)
    return {"omp_wait_policy": os.environ[WAIT_POLICY_VAR], "malloc": apply_memory_policy()}
