#!/usr/bin/env bash
# Incremental developer install: builds sharedstate._core into a venv of your own.
#   scripts/dev-install.sh [VENV_DIR]   (default: .venv)   -> then VENV_DIR/bin/python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --no-build-isolation -Cbuild-dir="$venv/skbuild" ".[test]"
