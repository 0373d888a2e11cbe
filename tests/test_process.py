"""No import changes the process; :func:`configure_process` / :func:`start_process` do, where a process starts.

Each check runs in a fresh interpreter with ``OMP_WAIT_POLICY`` and ``SPIKENERF_MALLOC`` unset (the test
session's own policy must not hide a change) and records every look-up of glibc's ``mallopt`` through ctypes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# spy on ctypes before anything of spikenerf loads: CDLL.__getattr__ goes through __getitem__
_SPY = r"""
import ctypes, json, os, sys, warnings
mallopt_lookups = []
_getitem = ctypes.CDLL.__getitem__
def _spy(self, name):
    if name == "mallopt":
        mallopt_lookups.append(name)
    return _getitem(self, name)
ctypes.CDLL.__getitem__ = _spy
"""

_IMPORT_SPIKENERF = r"""
import importlib, pkgutil
import spikenerf, spikenerf.snn, spikenerf.nerf, spikenerf.nerf.method_configs, spikenerf.vision, spikenerf.vision.cli
failed = []
for m in pkgutil.walk_packages(spikenerf.__path__, "spikenerf.", onerror=lambda name: None):
    try:
        importlib.import_module(m.name)
    except ImportError:  # an optional dependency (triton): test_architecture says which
        failed.append(m.name)
"""

# the third-party modules the package pulls in, in the order they load (cv2, torch, ... set variables of
# their own when imported: not this package's doing)
_THIRD_PARTY = _IMPORT_SPIKENERF + r"""
import json, sys
print("@@" + json.dumps([m for m in sys.modules if m.split(".")[0] != "spikenerf"]))
"""

_IMPORTS = _SPY + r"""
import importlib
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:  # a module that only imports as part of its package's own start
        pass
env0, hook0, filters0 = dict(os.environ), sys.excepthook, list(warnings.filters)
from nerfstudio.cameras import camera_utils
viewmatrix0 = camera_utils.viewmatrix
""" + _IMPORT_SPIKENERF + r"""
from spikenerf.snn import memory
changed = {k: [env0.get(k), os.environ.get(k)] for k in set(env0) | set(os.environ) if env0.get(k) != os.environ.get(k)}
print("@@" + json.dumps({
    "env_changed": changed, "mallopt_lookups": len(mallopt_lookups), "memory_policy": memory.memory_policy(),
    "excepthook_same": sys.excepthook is hook0, "warning_filters_same": list(warnings.filters) == filters0,
    "viewmatrix_same": camera_utils.viewmatrix is viewmatrix0, "not_imported": failed}))
"""

_CONFIGURE = _SPY + r"""
from spikenerf.snn import configure_process, memory
state = configure_process()
print("@@" + json.dumps({"state": state, "omp": os.environ.get("OMP_WAIT_POLICY"),
                         "mallopt_lookups": len(mallopt_lookups), "glibc": memory._glibc() is not None}))
"""


def _run(code: str, *args: str, **env: str):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "SPIKENERF_MALLOC")}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env={**base, **env}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.split("@@")[-1])


def test_importing_every_module_changes_nothing_of_the_process():
    res = _run(_IMPORTS, json.dumps(_run(_THIRD_PARTY)))
    assert res["env_changed"] == {}, res  # PATH, OMP_WAIT_POLICY, ...
    assert res["mallopt_lookups"] == 0 and res["memory_policy"] == "not applied", res
    assert res["excepthook_same"] and res["warning_filters_same"] and res["viewmatrix_same"], res


def test_configure_process_sets_the_defaults_and_a_user_setting_wins():
    res = _run(_CONFIGURE)
    assert res["omp"] == "PASSIVE" == res["state"]["omp_wait_policy"], res
    if res["glibc"]:
        assert res["state"]["malloc"].startswith("keep") and res["mallopt_lookups"] >= 1, res
    mine = _run(_CONFIGURE, OMP_WAIT_POLICY="ACTIVE", SPIKENERF_MALLOC="system")
    assert mine["omp"] == "ACTIVE" and mine["state"]["malloc"].startswith("system"), mine
    assert mine["mallopt_lookups"] == 0, mine


def test_openmp_wait_policy_reports_what_the_process_started_with():
    code = "import json; from spikenerf.snn import openmp_wait_policy as p; print('@@' + json.dumps(p()))"
    assert _run(code) == "default"
    assert _run(code, OMP_WAIT_POLICY="passive") == "PASSIVE"


@pytest.mark.parametrize("name", ["nerfstudio.utils.eval_utils"])
def test_start_process_installs_the_nerf_settings(name):
    code = _SPY + f"""
import importlib, shutil
importlib.import_module({name!r})  # as ns-eval has, before it builds the pipeline
from nerfstudio.cameras import camera_utils
from spikenerf.nerf.startup import start_process
start_process()
from spikenerf.nerf import nerfstudio_patches
from nerfstudio.utils import eval_utils
print("@@" + json.dumps({{"omp": os.environ.get("OMP_WAIT_POLICY"), "ffmpeg": shutil.which("ffmpeg"),
    "hook": getattr(sys.excepthook, "spikenerf", False),
    "patched": camera_utils.viewmatrix is nerfstudio_patches.viewmatrix
               and eval_utils.eval_load_checkpoint is nerfstudio_patches.eval_load_checkpoint}}))
"""
    res = _run(code)
    assert res["omp"] == "PASSIVE" and res["hook"] and res["patched"], res
    assert res["ffmpeg"], res  # a system ffmpeg or imageio-ffmpeg's, linked onto PATH
