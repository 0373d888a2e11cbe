"""The process memory policy (spikenerf/snn/memory.py): freed large blocks are reused without page faults."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from spikenerf.snn import memory

glibc = pytest.mark.skipif(memory._glibc() is None, reason="the policy only changes glibc's allocator")

# allocate, touch and free a 64 MB tensor 20 times (what a training step does with its activations); count
# the page faults of the last eight. Why so many warm-ups: small allocations between the big ones (Python's,
# torch's) can land in a freed block, so the heap takes a few rounds to hold enough blocks; how many depends on
# the process's layout (even on the size of its environment): 2 to 5 rounds here over 30 environments, 6 in CI
_PROBE = """
import json, resource, torch
import spikenerf.snn as s
s.configure_process()  # where a process starts (never on import)
for _ in range(12):
    x = torch.ones(16 << 20); del x
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    x = torch.ones(16 << 20); del x
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"policy": s.memory_policy(), "faults": r1 - r0}))
"""


def _probe(mode: str) -> dict:
    env = dict(os.environ, SPIKENERF_MALLOC=mode, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_keep_reuses_freed_memory_and_system_faults_it_in_again():
    keep, system = _probe("keep"), _probe("system")
    assert keep["policy"].startswith("keep") and system["policy"].startswith("system")
    pages = 8 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")  # 8 x 64 MB, every page new each time
    assert system["faults"] > 0.9 * pages, (keep, system)  # glibc's default: mmap / munmap per block
    assert keep["faults"] <= pages // 8, (keep, system)  # kept: the same memory again (at most one block re-faulted)


def test_bad_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="SPIKENERF_MALLOC='fast'"):
        memory.apply_memory_policy("fast")


def test_policy_is_reported():
    state = memory.memory_policy()
    if memory._glibc() is not None and os.environ.get(memory.ENV_VAR, "keep") == "keep":
        assert state.startswith("keep") and f"{memory.TRIM_THRESHOLD_BYTES >> 20} MiB" in state
    else:
        assert state.startswith("system") or platform.system() != "Linux"
