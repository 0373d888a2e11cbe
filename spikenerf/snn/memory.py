"""The process's memory policy: keep freed memory for reuse instead of returning it to the system each step.

Why: a training step of the voxel-grid NeRFs allocates and frees a dozen tensors of 10-200 MB (per-sample
activations, the grid gradient). glibc serves every block above 32 MB with a fresh ``mmap`` and gives it
back with ``munmap`` when freed, so the next step faults every page in again and the kernel zeroes it:
measured on spiknerf-full (lego-400, fine stage, 2-core CPU), 380k page faults and 0.95 s of kernel time
per step beside 1.2 s of user time. With ``mmap`` off and the heap top kept, the same steps took 7 ms of
kernel time and one page fault each, and half the wall time (1.97x faster). Renders gain by model: 1.62x
on that Spik-NeRF model, none on a SpikingNeRF lego model (its saved kernel time came back as user time).
``tools/bench_memory.py`` runs both side by side; ``docs/benchmarks.md`` has its latest result.

What: on glibc, ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap too) and
``mallopt(M_TRIM_THRESHOLD, ...)`` (free memory at the top of the heap is returned to the system only above
:data:`TRIM_THRESHOLD_BYTES`). The cost: the process keeps up to that much freed memory (its resident size
stays near its peak), and values never change (only where memory comes from). Applied where a process starts,
by :func:`spikenerf.snn.process.configure_process` (never on import); set ``SPIKENERF_MALLOC=system`` to keep
glibc's defaults. Elsewhere (macOS, musl) nothing is changed; an allocator
preloaded in glibc's place (jemalloc, tcmalloc) ignores the calls. :func:`memory_policy` says what this
process runs with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["apply_memory_policy", "memory_policy", "TRIM_THRESHOLD_BYTES", "ENV_VAR"]

ENV_VAR = "SPIKENERF_MALLOC"
"""``keep`` (the default: keep freed memory) or ``system`` (glibc's own policy)."""
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def _physical_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


TRIM_THRESHOLD_BYTES = min((1 << 31) - 1, _physical_bytes() // 4)
"""Free memory above this at the top of the heap goes back to the system: 2 GiB (mallopt takes a C int), or
a quarter of RAM on a smaller machine."""

_state = "not applied"


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def apply_memory_policy(mode: str | None = None) -> str:
    """Apply ``mode`` (``keep`` | ``system``; default ``$SPIKENERF_MALLOC`` or ``keep``); returns the state
    (:func:`memory_policy`). ``system`` after ``keep`` does not undo it (glibc has no "reset")."""
    global _state
    mode = (mode or os.environ.get(ENV_VAR) or "keep").strip().lower()
    if mode not in ("keep", "system"):
        raise ValueError(f"{ENV_VAR}={mode!r}: use 'keep' (keep freed memory for reuse) or 'system'")
    if mode == "system":
        _state = _state if _state.startswith("keep") else "system (glibc defaults)"
        return _state
    libc = _glibc()
    if libc is None:
        _state = "system (not glibc: unchanged)"
        return _state
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, int(TRIM_THRESHOLD_BYTES)) == 1
    _state = f"keep (no mmap, trim above {TRIM_THRESHOLD_BYTES >> 20} MiB)" if ok else "system (mallopt refused)"
    return _state


def memory_policy() -> str:
    """What this process runs with, e.g. ``keep (no mmap, trim above 2047 MiB)`` or ``system (...)``."""
    return _state
