#!/usr/bin/env bash
# Install with the test extra and run the whole test suite (what CI runs through .ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/env.sh test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
