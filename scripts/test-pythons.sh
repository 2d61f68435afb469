#!/usr/bin/env bash
# The Python test suite on the other CPythons our Debian 12 machines can have (root needed):
#   3.12   the machine's pyenv build (/root/.pyenv/versions/3.12.*), where present, no chroot
#   3.14   Debian sid's python3.14, in a debootstrap'd sid chroot
#   3.13t  free-threaded CPython 3.13 built in that chroot from Debian's python3.13 source
#          (./configure --disable-gil), the suite run with PYTHON_GIL=0, plus an import check
#          (without PYTHON_GIL) that `import sharedstate` leaves the GIL off
#
#   bash scripts/test-pythons.sh            prepare what is missing from the cache, then test
#   bash scripts/test-pythons.sh prepare    only build the cache (chroot, 3.13t, venvs)
#   bash scripts/test-pythons.sh bench      bench/compare.py on each instead of pytest
#        (BENCH_ARGS, default "--only access,cxx,roundtrip,throughput,torn,arrays,frames";
#        the peers that are not in the cached venvs are reported as skipped; results in the logs)
#   bash scripts/test-pythons.sh clean      unmount and delete the cache
#
# The expensive parts live OUTSIDE the clone, in $SHAREDSTATE_PYTHONS_CACHE
# (default /var/cache/sharedstate-pythons), and are reused by the next run on the machine:
#   sid/                 the chroot (~1.4 GB with compilers), stamp sid/.sharedstate-ready
#   sid/opt/py313t/      the free-threaded interpreter (~0.4 GB), stamp .sharedstate-built
#   sid/root/venv-*      venvs with the test extra and the build requirements installed
#   host/venv-3.12       the same for the pyenv 3.12;  pip caches: host/pip, sid/root/.cache/pip
#   src/                 the verified python3.13 orig tarball
# What each run rebuilds: a copy of the working tree, the extension per interpreter (-j$JOBS),
# the C++ test peers once (or SHAREDSTATE_TEST_BIN's, when given, as scripts/test.sh does).
#
# Measured (2 vCPUs shared with ~8 other builds, load 12-17, so slow): cold = debootstrap + apt
# 600 s (916 MB), venvs 231 s (3.12) + 183 s (3.14) + 313 s (3.13t), CPython 3.13t at that load
# ~55 min of make (4-7 min at -j1 on a quiet machine: ../shared/pythons/README.md); warm =
# prepare 54 s (mounts), then per interpreter the extension build (268-723 s at this load)
# and the suite. A quiet machine: ~30 min cold, ~12-15 min warm for the three.
# env: PYTHONS="3.12 3.14 3.13t" (a subset runs only those), JOBS=$(nproc), NICE=10, MIRROR (default:
#      the host's Debian mirror), PYTEST_ARGS (default "tests -q"; PYTEST_ARGS_313T: the same minus the mypy tests), SHAREDSTATE_PYTHONS_LOGS
#      (default build/pythons/logs in the clone).  Every stage prints its time; exit 1 if any
#      interpreter's run failed (or its environment could not be built).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmd=${1:-run}
C=$(readlink -m "${SHAREDSTATE_PYTHONS_CACHE:-/var/cache/sharedstate-pythons}")
R=$C/sid
PYTHONS=${PYTHONS:-3.12 3.14 3.13t} JOBS=${JOBS:-$(nproc)} NICE=${NICE:-10}
PYTEST_ARGS=${PYTEST_ARGS:-tests -q}
# 3.13t: the type checks (mypy over the package, the stubs and the guide) are left to 3.12 and
# 3.14. They test our annotations, not the interpreter, and free-threaded mypy has no compiled
# wheel: pure-Python mypy took 290 of the 510 s of the 3.13t suite.
PYTEST_ARGS_313T=${PYTEST_ARGS_313T:-$PYTEST_ARGS --ignore=tests/test_typing.py --ignore=tests/test_package_types.py}
L=$(readlink -m "${SHAREDSTATE_PYTHONS_LOGS:-$root/build/pythons/logs}")
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}
CHROOT_V=1  # bump when the chroot's package set or layout changes (the next run re-checks it)
TEST_DEPS='"pytest>=7" "pytest-benchmark>=4" "numpy>=1.22" "pytest-timeout>=2" "hypothesis>=6" "mypy>=1.5"'
BUILD_DEPS='"scikit-build-core>=0.10" "pybind11>=2.13" ninja "cmake>=3.16"'
t00=$(date +%s)
say() { echo "[pythons +$(( $(date +%s) - t00 ))s] $*"; }
want() { [[ " $PYTHONS " == *" $1 "* ]]; }
mkdir -p "$L"

[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, mount namespaces): skipped"; exit 0; }

# ------------------------------------------------------------------ chroot mounts
mount_chroot() {  # idempotent. $R bound onto itself: `unshare -m --propagation private` works inside
  mountpoint -q "$R"         || { mount --rbind "$R" "$R" && mount --make-rprivate "$R"; }
  mountpoint -q "$R/proc"    || mount -t proc proc "$R/proc"
  mountpoint -q "$R/dev"     || { mount --bind /dev "$R/dev" && mount --make-private "$R/dev"; }
  mountpoint -q "$R/dev/pts" || mount --bind /dev/pts "$R/dev/pts"
  mountpoint -q "$R/dev/shm" || mount -t tmpfs -o size=4g,mode=1777 shm "$R/dev/shm"  # private /dev/shm
}
mounts_under() { awk -v r="$1" '$2==r || index($2, r"/")==1 {print $2}' /proc/mounts | sort -ru; }
umount_chroot() {  # repeated: mounts can be stacked on one path
  local p m; for p in 1 2 3 4; do
    for m in $(mounts_under "$R"); do umount -l "$m" 2>/dev/null; done
  done; }
in_chroot() {  # in_chroot [VAR=value...] -- CMD   (a clean environment, niced)
  local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "${envs[@]}" nice -n "$NICE" bash -c "$*"
}

if [ "$cmd" = clean ]; then
  umount_chroot
  left=$(mounts_under "$C" | wc -l)
  [ "$left" = 0 ] || { say "mounts left under $C, not deleting: $(mounts_under "$C" | tr '\n' ' ')"; exit 1; }
  rm -rf --one-file-system "$C" && say "removed $C"
  exit 0
fi
[ "$cmd" = run ] || [ "$cmd" = prepare ] || [ "$cmd" = bench ] || { echo "usage: test-pythons.sh [run|prepare|bench|clean]"; exit 2; }

# one run at a time per cache (the chroot's mounts, venvs and /dev/shm are shared)
mkdir -p "$C"
exec 9>"$C/.lock"
flock -w 7200 9 || { say "cache $C is locked by another run"; exit 1; }
failed=()

# ------------------------------------------------------------------ cache: the sid chroot
need_sid=0; want 3.14 && need_sid=1; want 3.13t && need_sid=1
prepare_chroot() {
  local t=$(date +%s)
  if [ ! -x "$R/usr/bin/apt-get" ]; then
    [ -n "$MIRROR" ] || { say "no Debian mirror in /etc/apt/sources.list.d/debian.sources: set MIRROR"; return 1; }
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    umount_chroot; rm -rf --one-file-system "$R"
    say "cache: debootstrap sid from $MIRROR"
    nice -n "$NICE" debootstrap --variant=minbase sid "$R.tmp" "$MIRROR" > "$L/debootstrap.log" 2>&1 ||
      { say "debootstrap failed (see $L/debootstrap.log)"; rm -rf --one-file-system "$R.tmp"; return 1; }
    mv "$R.tmp" "$R"
  fi
  mount_chroot
  cp -f /etc/resolv.conf "$R/etc/resolv.conf"
  local cas_changed=0
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then  # the host's extra CAs (pip needs them)
    mkdir -p "$R/usr/local/share/ca-certificates"
    for f in /usr/local/share/ca-certificates/*.crt; do
      cmp -s "$f" "$R/usr/local/share/ca-certificates/${f##*/}" || { cp -f "$f" "$R/usr/local/share/ca-certificates/"; cas_changed=1; }
    done
  fi
  if [ "$(cat "$R/.sharedstate-ready" 2>/dev/null)" != "$CHROOT_V" ]; then
    printf 'deb %s sid main\ndeb-src %s sid main\n' "$MIRROR" "$MIRROR" > "$R/etc/apt/sources.list"
    # a frozen mirror snapshot: sid's Release file has expired
    echo 'Acquire::Check-Valid-Until "false";' > "$R/etc/apt/apt.conf.d/99no-valid-until"
    local pkgs="ca-certificates g++ make cmake git python3.14-dev python3.14-venv"
    pkgs+=" libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev pkg-config xz-utils curl"
    say "cache: apt-get install in the chroot"
    in_chroot -- "apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null && apt-get clean" \
      > "$L/apt.log" 2>&1 || { say "apt-get in the chroot failed: $(tail -3 "$L/apt.log")"; return 1; }
    echo "$CHROOT_V" > "$R/.sharedstate-ready"
    say "cache: chroot ready in $(( $(date +%s) - t ))s ($(du -sxh "$R" | cut -f1))"
  fi
  if [ $cas_changed = 1 ]; then in_chroot -- "update-ca-certificates >/dev/null 2>&1" || true; fi
  say "cache: chroot mounted ($(( $(date +%s) - t ))s)"
}

# ------------------------------------------------------------------ cache: free-threaded 3.13
# Debian packages no free-threaded interpreter: build one from the newest python3.13 source
# version whose orig tarball the mirror serves (checked against the .dsc's SHA256).
prepare_313t() {
  local t=$(date +%s)
  [ -f "$R/opt/py313t/.sharedstate-built" ] && [ -x "$R/opt/py313t/bin/python3.13t" ] && return 0
  say "cache: building free-threaded CPython 3.13 (configure --disable-gil, make -j$JOBS)"
  mkdir -p "$C/src" "$R/root/cpython"
  in_chroot -- '
    set -e; cd /root/cpython
    if [ ! -s src.tar.xz ]; then
      for ver in $(apt-cache showsrc python3.13 | awk "/^Version:/{print \$2}" | sort -rV); do
        line=$(apt-get source --print-uris "python3.13=$ver" 2>/dev/null | grep "orig.tar.xz'"'"'" || true)
        [ -n "$line" ] || continue
        url=$(echo "$line" | cut -d"'"'"'" -f2); sha=$(echo "$line" | awk "{print \$4}" | sed s/SHA256://)
        rm -f dl.tar.xz
        curl -sf -o dl.tar.xz "$url" && echo "$sha  dl.tar.xz" | sha256sum -c --quiet && { mv dl.tar.xz src.tar.xz; echo "$url" > src.url; break; }
      done
    fi
    [ -s src.tar.xz ] || { echo "no python3.13 orig tarball reachable on the mirror"; exit 1; }
    echo "source $(cat src.url)"
    rm -rf build /opt/py313t && mkdir build && tar -C build --strip-components=1 -xf src.tar.xz && cd build
    ./configure --disable-gil --prefix=/opt/py313t --with-ensurepip=install --without-static-libpython > ../configure.log 2>&1
    make -j'"$JOBS"' > ../make.log 2>&1
    make altinstall > ../install.log 2>&1
    /opt/py313t/bin/python3.13t -c "import sys, sysconfig; assert sysconfig.get_config_var(\"Py_GIL_DISABLED\") == 1; print(sys.version)"
    cd /root/cpython && rm -rf build' > "$L/ft-build.log" 2>&1 ||
    { say "3.13t build failed: $(tail -3 "$L/ft-build.log") (logs: $L/ft-build.log, $R/root/cpython/*.log)"; return 1; }
  cp -f "$R/root/cpython/src.tar.xz" "$C/src/python3.13.orig.tar.xz" 2>/dev/null
  grep ^source "$L/ft-build.log" > "$R/opt/py313t/.sharedstate-built"
  say "cache: 3.13t built in $(( $(date +%s) - t ))s: $(tail -1 "$L/ft-build.log") ($(du -sh "$R/opt/py313t" | cut -f1))"
}

# ------------------------------------------------------------------ cache: venvs with the deps
# The test extra and the build requirements are installed once; each run builds only sharedstate
# (--no-build-isolation). Free-threaded: wheels only (the newest hypothesis and mypy's
# ast-serialize have only sdists that need a Rust toolchain; pip backtracks to releases with
# cp313t wheels, e.g. numpy < 2.5).
venv_script='
  set -e; PY=$1 V=$2
  [ -x "$V/bin/python" ] || "$PY" -m venv "$V"
  "$V/bin/python" -m pip install -q --upgrade pip
  if [ "$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_config_var(\"Py_GIL_DISABLED\") or 0)")" = 1 ]; then
    "$V/bin/python" -m pip install -q --only-binary=:all: '"$TEST_DEPS $BUILD_DEPS"'
  else
    "$V/bin/python" -m pip install -q --only-binary=numpy '"$TEST_DEPS $BUILD_DEPS"'
  fi
  echo "$DEPS_KEY" > "$V/.sharedstate-deps"'
DEPS_KEY="$TEST_DEPS $BUILD_DEPS"  # a venv whose stamp differs gets the deps (re)installed
prepare_venv() {  # TAG PY VENV (chroot paths for chroot tags)
  local tag=$1 py=$2 v=$3 t=$(date +%s) rc
  case $tag in
    3.12) [ "$(cat "$v/.sharedstate-deps" 2>/dev/null)" = "$DEPS_KEY" ] && return 0
          PIP_CACHE_DIR=$C/host/pip DEPS_KEY=$DEPS_KEY nice -n "$NICE" bash -c "$venv_script" _ "$py" "$v" > "$L/venv-$tag.log" 2>&1; rc=$? ;;
    *)    [ "$(cat "$R$v/.sharedstate-deps" 2>/dev/null)" = "$DEPS_KEY" ] && return 0
          printf '%s\n' "$venv_script" > "$R/root/venv.sh"
          in_chroot DEPS_KEY="$DEPS_KEY" -- "bash /root/venv.sh $py $v" > "$L/venv-$tag.log" 2>&1; rc=$? ;;
  esac
  [ $rc = 0 ] || { say "venv $tag failed: $(tail -3 "$L/venv-$tag.log")"; return 1; }
  say "cache: venv $tag ready in $(( $(date +%s) - t ))s"
}

py312=$(ls -d /root/.pyenv/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -1)
want 3.12 && [ -z "$py312" ] && say "3.12: no pyenv build on this machine: skipped"
tp=$(date +%s)
chroot_ok=0
if [ $need_sid = 1 ]; then
  if prepare_chroot; then chroot_ok=1; trap umount_chroot EXIT; else failed+=("chroot"); fi
fi
ok312=0 ok314=0 ok313t=0
if want 3.12 && [ -n "$py312" ]; then prepare_venv 3.12 "$py312" "$C/host/venv-3.12" && ok312=1 || failed+=("3.12 venv"); fi
if [ $chroot_ok = 1 ] && want 3.14; then prepare_venv 3.14 python3.14 /root/venv-3.14 && ok314=1 || failed+=("3.14 venv"); fi
if [ $chroot_ok = 1 ] && want 3.13t; then
  if prepare_313t; then prepare_venv 3.13t /opt/py313t/bin/python3.13t /root/venv-3.13t && ok313t=1 || failed+=("3.13t venv")
  else failed+=("3.13t build"); fi
fi
say "stage prepare (cache $C): $(( $(date +%s) - tp ))s"
if [ "$cmd" = prepare ]; then
  ((${#failed[@]})) && { say "FAILED: ${failed[*]}"; exit 1; }
  exit 0
fi

# ------------------------------------------------------------------ the run
if [ "$cmd" = bench ]; then
  export BENCH_ARGS=${BENCH_ARGS:---only access,cxx,roundtrip,throughput,torn,arrays,frames}
  NICE=0
fi
# the C++ peers of the cross-language tests: Python-independent, built once (host glibc/libstdc++
# are older than sid's, so the same binaries run in the chroot)
tc=$(date +%s)
bin=${SHAREDSTATE_TEST_BIN:-}
if [ -z "$bin" ] || [ ! -x "$bin/test_queue" ]; then
  bin=$root/build/pythons/cpp/tests/cpp
  nice -n "$NICE" cmake -S . -B build/pythons/cpp -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHAREDSTATE_TESTS=ON \
      -DSHAREDSTATE_PYTHON=OFF > "$L/cpp.log" 2>&1 &&
    nice -n "$NICE" cmake --build build/pythons/cpp -j"$JOBS" >> "$L/cpp.log" 2>&1 ||
    say "C++ peers failed to build (cross-language tests will skip; $L/cpp.log)"
fi
say "stage C++ peers: $(( $(date +%s) - tc ))s ($bin)"

copy_src() {  # the working tree's tracked (and new, unignored) files, as they are now
  rm -rf "$1" && mkdir -p "$1" &&
    (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$1/" 2>/dev/null; true)
}
# one interpreter: build sharedstate into the cached venv, the GIL check, pytest
one_script='
  V=$1 TAG=$2 SRC=$3 LOGS=$4 JOBS=$5; shift 5
  cd "$SRC"; t0=$(date +%s)
  CMAKE_BUILD_PARALLEL_LEVEL=$JOBS "$V/bin/python" -m pip install -v --no-build-isolation --no-deps \
    -Cbuild-dir="$SRC/build/skb" . > "$LOGS/$TAG.install.log" 2>&1 || { echo "[$TAG] BUILD FAILED (see $TAG.install.log)"; exit 1; }
  t1=$(date +%s); echo "[$TAG] extension built in $((t1-t0))s"
  ver=$("$V/bin/python" -c "import sys; print(sys.version.split()[0] + (\"t\" if \"free-threading\" in sys.version else \"\"))")
  rc=0
  if [ "${GIL_CHECK:-0}" = 1 ]; then
    # without PYTHON_GIL: the GIL must stay off after the import (no RuntimeWarning, no re-enable)
    env -u PYTHON_GIL "$V/bin/python" -W error::RuntimeWarning -c "
import sys
assert not sys._is_gil_enabled(), \"GIL on before the import\"
import sharedstate, sharedstate._core
sys.exit(0 if not sys._is_gil_enabled() else 3)" > "$LOGS/$TAG.gilcheck.log" 2>&1
    g=$?
    if [ $g = 0 ]; then echo "[$TAG] import check: GIL stays off after import sharedstate"
    else echo "[$TAG] import check FAILED (rc=$g): the GIL was re-enabled: $(tail -2 "$LOGS/$TAG.gilcheck.log")"; rc=1; fi
  fi
  cd "$SRC"; export PATH=$V/bin:$PATH
  if [ -n "${BENCH_ARGS:-}" ]; then  # bench mode: compare.py instead of the suite, not niced
    renice -n 0 $$ >/dev/null 2>&1
    "$V/bin/python" bench/compare.py $BENCH_ARGS --out "$LOGS/bench-$TAG" > "$LOGS/$TAG.bench.log" 2>&1 || rc=1
    echo "[$TAG] $ver PYTHON_GIL=${PYTHON_GIL:-unset} bench/compare.py $BENCH_ARGS: $(tail -1 "$LOGS/$TAG.bench.log")"
    exit $rc
  fi
  "$V/bin/python" -m pytest "$@" -p no:cacheprovider -rfEx --junitxml="$LOGS/$TAG.xml" > "$LOGS/$TAG.pytest.log" 2>&1 || rc=1
  echo "[$TAG] $ver PYTHON_GIL=${PYTHON_GIL:-unset} pytest $(( $(date +%s)-t1 ))s :: $(tail -1 "$LOGS/$TAG.pytest.log")"
  if [ $rc != 0 ]; then  # the failures themselves, not only the count: CI keeps stdout, not the logs
    grep -E "^(FAILED|ERROR) " "$LOGS/$TAG.pytest.log" | head -20 | sed "s/^/[$TAG]   /"
    awk "/^=+ FAILURES =+/{p=1} /^=+ short test summary/{p=0} p" "$LOGS/$TAG.pytest.log" | tail -120 | sed "s/^/[$TAG] | /"
  fi
  exit $rc'

if [ $ok312 = 1 ]; then
  t=$(date +%s); W=$root/build/pythons/host
  copy_src "$W/src"; printf '%s\n' "$one_script" > "$W/one.sh"
  # a private mount namespace with its own /dev/shm (like the chroot): no clash with the host's
  unshare -m --propagation private bash -c "mount -t tmpfs -o size=4g,mode=1777 shm /dev/shm &&
    SHAREDSTATE_TEST_BIN=$bin PIP_CACHE_DIR=$C/host/pip nice -n $NICE bash $W/one.sh $C/host/venv-3.12 py3.12 $W/src $L $JOBS $PYTEST_ARGS" \
    || failed+=("3.12")
  say "stage 3.12: $(( $(date +%s) - t ))s"
fi
if [ $ok314 = 1 ] || [ $ok313t = 1 ]; then
  rm -rf "$R/root/run"; mkdir -p "$R/root/run/logs" "$R/root/run/bin"
  copy_src "$R/root/run/src"; printf '%s\n' "$one_script" > "$R/root/run/one.sh"
  cp -a "$bin"/. "$R/root/run/bin/" 2>/dev/null
  chroot_env=(SHAREDSTATE_TEST_BIN=/root/run/bin)
  [ -n "${BENCH_ARGS:-}" ] && chroot_env+=("BENCH_ARGS=$BENCH_ARGS")
  if [ $ok314 = 1 ]; then
    t=$(date +%s)
    in_chroot "${chroot_env[@]}" -- "bash /root/run/one.sh /root/venv-3.14 py3.14 /root/run/src /root/run/logs $JOBS $PYTEST_ARGS" \
      || failed+=("3.14")
    say "stage 3.14: $(( $(date +%s) - t ))s"
  fi
  if [ $ok313t = 1 ]; then
    t=$(date +%s)
    in_chroot "${chroot_env[@]}" PYTHON_GIL=0 GIL_CHECK=1 -- \
      "bash /root/run/one.sh /root/venv-3.13t py3.13t-gil0 /root/run/src /root/run/logs $JOBS $PYTEST_ARGS_313T" || failed+=("3.13t")
    say "stage 3.13t (PYTHON_GIL=0): $(( $(date +%s) - t ))s"
  fi
  cp -rf "$R"/root/run/logs/* "$L/" 2>/dev/null
fi

say "done in $(( $(date +%s) - t00 ))s (cache: $(du -sxh "$C" 2>/dev/null | cut -f1); logs: $L)"
if ((${#failed[@]})); then say "FAILED: ${failed[*]}"; exit 1; fi
exit 0
