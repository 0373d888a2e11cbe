"""tools/gpu_check.py end to end on the CPU (``--device cpu --quick``), so the GPU check stays runnable.

Triton's interpreter is on (``TRITON_INTERPRET=1``, read at start-up, hence the subprocess). A short budget:
rows past it are written as skipped, which is part of what is checked (every section is reported, the JSON is
whole, and no row failed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_cpu(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(REPO / "tools" / "gpu_check.py"), "--device", "cpu", "--quick", "--out",
           str(tmp_path), "--budget-s", "50", "--data-root", str(REPO.parent / "shared" / "data")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(data["sections"]) == {"triton", "nerf", "speed", "paper"}
    rows = [row for sec in data["sections"].values() for row in sec["rows"]]
    assert not [row for row in rows if row["status"] == "FAIL"]
    assert any(row["status"] == "ok" for row in data["sections"]["triton"]["rows"])
    assert any(row["status"] == "ok" for row in data["sections"]["nerf"]["rows"])
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## nerf" in md and "| row | status | values |" in md
