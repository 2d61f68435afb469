#!/usr/bin/env bash
# Build an sdist and, from it, a wheel (python -m build, isolated), install the wheel into a
# fresh venv with the test extra, and run the test suite against the installed wheel (not
# the checkout). What cibuildwheel does per platform, for the machine we are on.
#   scripts/wheel-test.sh [pytest args...]      (default: tests -q -x)
#   WHEEL_TEST_DIR=/tmp/wt keeps the dist/ and venvs there (default: a fresh temp dir, removed)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
py=${PYTHON:-python3}
work=${WHEEL_TEST_DIR:-$(mktemp -d)}
[ -n "${WHEEL_TEST_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
echo "wheel-test: working in $work"

# 1. build (the frontend lives in its own venv; the build itself is isolated by `build`)
"$py" -m venv "$work/buildenv"
"$work/buildenv/bin/pip" install -q build
rm -rf "$work/dist"
"$work/buildenv/bin/python" -m build --outdir "$work/dist" "$repo"
sdist=$(ls "$work"/dist/sharedstate-*.tar.gz)
wheel=$(ls "$work"/dist/sharedstate-*.whl)
echo "wheel-test: built $(basename "$sdist") and $(basename "$wheel")"

# 2. the wheel carries the compiled core, its stubs, py.typed and the demo's simulator
"$work/buildenv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["sharedstate/__init__.py", "sharedstate/_core.pyi", "sharedstate/py.typed", "sharedstate/_cli.py"]
missing = [n for n in need if n not in names]
if not any(n.startswith("sharedstate/_core.") and n.endswith((".so", ".pyd")) for n in names):
    missing.append("sharedstate/_core.<ext>")
if not any(n.startswith("sharedstate/bin/sharedstate-sim") for n in names):
    missing.append("sharedstate/bin/sharedstate-sim")
if missing:
    sys.exit(f"wheel-test: the wheel lacks {missing}")
print(f"wheel-test: wheel contents ok ({len(names)} files)")
PY

# 3. a fresh venv (no system site-packages), the wheel with its test extra
rm -rf "$work/venv"
"$py" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "${wheel}[test]"
# mypy makes tests/test_typing.py run instead of skip (until the test extra carries it)
"$work/venv/bin/pip" install -q mypy || echo "wheel-test: mypy not installable; typing checks will skip"

# 4. the suite, against the installed package: run from outside the checkout's python/ dir,
#    so `import sharedstate` can only find the wheel
cd "$repo"
"$work/venv/bin/python" - <<'PY'
import sharedstate, sys
assert "site-packages" in sharedstate.__file__, sharedstate.__file__
print(f"wheel-test: testing {sharedstate.__file__}")
PY
[ -x "$work/venv/bin/sharedstate" ] && "$work/venv/bin/sharedstate" --help >/dev/null
if [ $# -eq 0 ]; then set -- tests -q -x; fi
exec "$work/venv/bin/python" -m pytest "$@"
