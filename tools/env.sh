#!/usr/bin/env bash
# Creates ./.venv (if absent) and installs spikenerf into it, editable, with the extras given as $1
# (e.g. "test"). Sourced by tools/run.sh and tools/test.sh so both commands install the same way.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
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
