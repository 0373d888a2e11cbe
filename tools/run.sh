#!/usr/bin/env bash
# The main job on a fresh machine: install, then train spikingnerf on the bundled scene and render a video.
# Extra arguments go to spikenerf-quickstart (e.g. --iterations 2000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/env.sh
exec .venv/bin/spikenerf-quickstart "$@"
