#!/usr/bin/env bash
# Installs what the tests need (see setup.sh) and runs them; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export GX_ANALYTICS_ENABLED=false MLFLOW_ENABLE_TELEMETRY=false DO_NOT_TRACK=1 BENTOML_DO_NOT_TRACK=true
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
