#!/usr/bin/env bash
# Installs what the tests need (see setup.sh) and runs them; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export GX_ANALYTICS_ENABLED=false MLFLOW_ENABLE_TELEMETRY=false DO_NOT_TRACK=1 BENTOML_DO_NOT_TRACK=true
# Two worker processes, each test file on one of them (its module fixtures made once), the
# longest files first (tests/conftest.py); pass `-n 0` to run in this process (a debugger, `-x`).
exec .venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder "$@"
