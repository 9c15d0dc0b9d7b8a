#!/usr/bin/env bash
# Installs semqa into ./.venv on a fresh Debian machine. With --test, also what the tests
# need: Debian's postgresql (MLflow team-server test), chromium + chromium-driver
# (dashboard browser test).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--test" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in postgresql chromium chromium-driver; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch 2.13.0 is the CPU build on this machine's disk; name it so pip never fetches a CUDA one.
extra=""; [ "${1:-}" = "--test" ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e ".${extra}" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import semqa, torch; print('semqa installed; torch', torch.__version__)"
