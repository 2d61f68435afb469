#!/usr/bin/env bash
# Install sharedstate with its bench extra into a venv and run the comparison with the peers.
#   scripts/bench.sh [VENV_DIR] [compare.py args...]     e.g. scripts/bench.sh .venv-bench --quick
# Results: bench/results/compare.md, compare.json, roundtrip.png.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-bench}
shift || true
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q ".[bench]"
exec "$venv/bin/python" bench/compare.py "$@"
