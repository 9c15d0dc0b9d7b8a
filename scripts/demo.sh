#!/usr/bin/env bash
# Installs semqa and runs the main job, `semqa demo`; arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/semqa demo "$@"
