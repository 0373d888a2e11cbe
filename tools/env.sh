#!/usr/bin/env bash
# Creates ./.venv (if absent) and installs spikenerf into it, editable, with the extras given as $1
# (e.g. "test"). Sourced by tools/run.sh and tools/test.sh so both commands install the same way.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
# ns-export imports open3d (a nerfstudio dependency), which needs the system's libusb; install it where we can
libs=$(ldconfig -p 2>/dev/null || true)
if [[ "$libs" != *libusb-1.0.so.0* ]] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null 2>&1 \
    || echo "note: could not install libusb-1.0-0; ns-export's open3d parts will be unavailable" >&2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
extras=${1:-}
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q -e ".[${extras}]"
else
  .venv/bin/python -m pip install -q -e .
fi
