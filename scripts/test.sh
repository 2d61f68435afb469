#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh Debian 12 machine (root):
#   bash scripts/test.sh
# 1. system packages  2. the package + test extra in a fresh venv  3. the C++ build
# 4. pytest, ctest, the wheel  5. hardening (sanitizers, fuzzing)  5b. MSVC mode (clang-cl)
# 6. Windows build + tests under Wine, and at the same time
# 7. the suite on other CPythons (3.12, 3.14, free-threaded 3.13t; SHAREDSTATE_SKIP_PYTHONS=1 skips)
# Each stage prints a summary line; the script fails if any stage fails.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)
log() { echo "[test +$(( $(date +%s) - t0 ))s] $*"; }
failed=()

# ---------------------------------------------------------------- 1. system packages
need=()
# the qt extra's PySide6 (tests/test_aio.py runs examples/qt_controller.py offscreen) needs GL,
# EGL, fontconfig, GLib, xkbcommon and D-Bus from the system
for p in cmake g++ python3-venv libegl1 libgl1 libfontconfig1 libglib2.0-0 libxkbcommon0 libdbus-1-3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
command -v cmake >/dev/null && need=("${need[@]/cmake}")
if [ -n "$(echo "${need[@]}" | tr -d ' ')" ] && [ "$(id -u)" = 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${need[*]} >/dev/null
fi

# ---------------------------------------------------------------- 2. install
venv=${SHAREDSTATE_VENV:-$root/build/venv}
if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  python3 -m venv "$venv" || exit 1
fi
log "pip install .[test,zenoh,qt]"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install -q ".[test,zenoh,qt]" || { echo "pip install failed"; exit 1; }
export PATH="$venv/bin:$PATH"

# ---------------------------------------------------------------- 3. C++ build (the tests' helpers too)
log "C++ build"
cmake -S . -B build/cpp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHAREDSTATE_TESTS=ON >/dev/null &&
  cmake --build build/cpp -j2 >/dev/null || failed+=("C++ build")
export SHAREDSTATE_TEST_BIN=$root/build/cpp/tests/cpp  # C++ peers for the cross-language tests

# ---------------------------------------------------------------- 4. Python tests, C++ tests
log "pytest"
( cd "$root" && "$venv/bin/python" -m pytest tests -q -p no:cacheprovider ) || failed+=("pytest")
log "C++ tests (ctest)"
ctest --test-dir build/cpp --output-on-failure -j2 || failed+=("ctest")

# ---------------------------------------------------------------- 4b. the wheel
# sdist -> wheel -> fresh venv -> tests against the installed wheel (what a user gets).
if [ -f scripts/wheel-test.sh ] && [ "${SHAREDSTATE_SKIP_WHEEL:-0}" != 1 ]; then
  log "wheel (sdist -> wheel -> fresh venv)"
  bash scripts/wheel-test.sh tests/test_state.py tests/test_cli.py tests/test_typing.py tests/cpp_consumer -q \
    -p no:cacheprovider || failed+=("wheel")
fi

# ---------------------------------------------------------------- 5. hardening
if [ -f scripts/hardening.sh ] && [ "${SHAREDSTATE_SKIP_HARDENING:-0}" != 1 ]; then
  log "hardening"
  bash scripts/hardening.sh || failed+=("hardening")
fi

# ---------------------------------------------------------------- 5b. MSVC mode (clang-cl syntax check)
# clang 19 as clang-cl over every header, include order, test, tool, example and the Python
# extension sources: x64/ARM64/x86, C++17/C++20 (scripts/check-msvc-mode.sh; PyPI downloads are
# cached outside the clone, in /var/cache/sharedstate-msvc).
if [ -f scripts/check-msvc-mode.sh ] && [ "${SHAREDSTATE_SKIP_MSVC:-0}" != 1 ]; then
  log "MSVC mode (clang-cl)"
  ms0=$(date +%s)
  # every header alone and every include order on all six configs; the sources (tests, tools,
  # examples, the extension: most of the stage's 750 s) once per axis: x64 C++17 and C++20, ARM64,
  # 32-bit x86 (MSVC_SOURCE_CONFIGS= for all six, as a plain check-msvc-mode.sh run does)
  MSVC_SOURCE_CONFIGS=${MSVC_SOURCE_CONFIGS-x64:17 x64:20 arm64:17 x86:17} \
    bash scripts/check-msvc-mode.sh build/msvc || failed+=("msvc-mode")
  log "MSVC mode stage took $(( $(date +%s) - ms0 ))s"
fi

# ---------------------------------------------------------------- 6 + 7, side by side
# 6. Windows under Wine. 7. other CPythons: 3.12 (pyenv), 3.14 (Debian sid chroot), free-threaded
# 3.13t with PYTHON_GIL=0; the chroot and the built interpreter are cached outside the clone
# (/var/cache/sharedstate-pythons): a cold run builds them once (scripts/test-pythons.sh says what
# each stage cost).
# The two run at the same time: the Wine stage mostly waits (measured: 190 s of CPU in 809 s), so
# the other CPythons' builds and suites use the cores it leaves. Stage 7 writes to a log that is
# printed when it ends; stage 6 prints as it goes.
py_pid=""
if [ -f scripts/test-pythons.sh ] && [ "${SHAREDSTATE_SKIP_PYTHONS:-0}" != 1 ]; then
  log "other CPythons (3.12, 3.14, 3.13t free-threaded): started, beside the Windows stage"
  mkdir -p build
  tp=$(date +%s)
  # its own process group (setsid), so that Ctrl-C or a stopped run takes it and its children along
  setsid bash scripts/test-pythons.sh >build/test-pythons.log 2>&1 </dev/null &
  py_pid=$!
  trap 'kill -TERM -- "-$py_pid" 2>/dev/null' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
if [ -f scripts/test-windows.sh ] && [ "${SHAREDSTATE_SKIP_WINDOWS:-0}" != 1 ]; then
  log "Windows (mingw-w64 + Wine)"
  tw=$(date +%s)
  bash scripts/test-windows.sh || failed+=("windows")
  log "Windows stage took $(( $(date +%s) - tw ))s"
fi
if [ -n "$py_pid" ]; then
  wait "$py_pid"; py_rc=$?
  trap - EXIT INT TERM
  log "other CPythons took $(( $(date +%s) - tp ))s (its output follows)"
  cat build/test-pythons.log
  [ "$py_rc" = 0 ] || failed+=("pythons")
fi

log "done"
if ((${#failed[@]})); then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
