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
# pip's own output runs to hundreds of lines: show it as one line counting the packages
# resolved, the build and install steps, and any warning or error in full. A failing pip
# still fails this script (pipefail; awk itself always succeeds).
tty=0; [ -t 1 ] && tty=1
echo "installing semqa and its dependencies into .venv (a few minutes on a fresh machine)"
# --no-compile: byte-compiling every installed module (some 17,000 files: 35 s of CPU for the
# first 8,242 here, so about 75 s in all) is work most of which no run uses; Python compiles,
# and caches, the modules a run actually imports on first import instead.
.venv/bin/pip install --disable-pip-version-check --progress-bar off --no-compile torch==2.13.0 -e ".${extra}" 2>&1 | awk -v tty="$tty" '
  # On a terminal the count is one line rewritten in place; in a log (CI) it is printed once,
  # when pip moves on, so the log does not hold hundreds of carriage-return updates on one line.
  function endline() { if (open) { if (!tty) counts_line(); printf "\n"; open = 0 } }
  function counts_line() { printf "  resolved %d packages, downloaded %d (%.0f MB)", n, d, mb }
  /is ignored/ { next }
  function counts() { if (tty) { printf "\r"; counts_line(); fflush() } open = 1 }
  /^(Collecting|Requirement already satisfied)/ { n++; counts(); next }
  # "Downloading x.whl (12.3 MB)": the download, which is most of a fresh install, counted in MB.
  /^ *Downloading / { d++; if (match($0, /\(([0-9.]+) (kB|MB|GB)\)/)) { split(substr($0, RSTART + 1, RLENGTH - 2), v, " ");
      mb += v[1] * (v[2] == "kB" ? 0.001 : v[2] == "GB" ? 1000 : 1) } counts(); next }
  /^Building editable|^Building wheel/ { if (!b++) { endline(); print "  building semqa"; fflush() } next }
  # pip shows no progress while it unpacks: say how many packages, so the wait is not silent.
  /^Installing collected packages/ { endline(); k = split(substr($0, index($0, ":") + 2), names, ", ");
      printf "  installing %d packages (pip prints nothing more until they are unpacked)\n", k; fflush(); next }
  /^Successfully installed/ { endline(); printf "  installed %d packages\n", NF - 2; next }
  /ERROR|WARNING|[Ee]rror:/ { endline(); print; fflush() }
  END { endline() }'
.venv/bin/python -c "import semqa, torch; print('semqa installed; torch', torch.__version__)"
# Byte-compile, once, the modules semqa's commands import: Python caches what it compiles on
# import, except where PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines), where
# every start recompiles them (`semqa demo`: 27 s of imports instead of 11). Written into our
# own .venv only; the modules no run imports stay uncompiled (see --no-compile above).
echo "byte-compiling the modules semqa's commands import"
modules="semqa.cli, semqa.demo, semqa.analysis, semqa.evaluation, dashboard.report, training.train, training.segmenter.train, validation.run, service.service"
[ "${1:-}" = "--test" ] && modules="$modules, pytest, streamlit, selenium"
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -c "import $modules" >/dev/null
