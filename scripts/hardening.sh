#!/usr/bin/env bash
# Hardening stage (issue 7): a segment or a peer can be hostile or dead, never fatal.
#   bash scripts/hardening.sh            (root on Debian 12; installs what it needs)
# 1. C++ tests under ASan+UBSan and, separately, TSan (incl. tests/cpp/test_stress.cpp)
# 2. libFuzzer targets (tests/fuzz/) for a bounded time each, executions counted
# 3. Python property fuzzing, soak/fault and security tests with large budgets
# Budgets (env): FUZZ_SECONDS (per target, default 60; FUZZ_JOBS targets at a time, default nproc), SST_FUZZ_EXAMPLES (20000),
# SST_SOAK_ROUNDS (100), SST_LEAK_CYCLES (20000), SST_STRESS_WRITES (50000),
# SST_STRESS_ROUNDS (30). Python: $PYTHON, else build/venv (scripts/test.sh's), else a
# fresh dev venv (scripts/dev-install.sh). Build trees go to ${HARDENING_BUILD:-build/hardening}.
# Prints one summary line per stage and a closing "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)
log() { echo "[hardening +$(( $(date +%s) - t0 ))s] $*"; }
out=${HARDENING_BUILD:-$root/build/hardening}
mkdir -p "$out"
passed=0
failed=()
summary=()
stage() {  # stage NAME STATUS DETAIL
  if [ "$2" = 0 ]; then passed=$((passed + 1)); else failed+=("$1"); fi
  summary+=("$1: $([ "$2" = 0 ] && echo ok || echo FAILED) - $3")
}

# ---------------------------------------------------------------- 0. tools
fuzzer_lib() { ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null | head -1; }
if ! command -v clang++-14 >/dev/null || [ -z "$(fuzzer_lib)" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install clang-14 libclang-rt-14-dev libfuzzer-14-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev libfuzzer-14-dev >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev libfuzzer-14-dev >/dev/null; }
  fi
fi
# Never the ambient python: it may hold a stale install of the package.
py=${PYTHON:-}
if [ -z "$py" ]; then
  venv=${SHAREDSTATE_VENV:-$root/build/venv}
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import sharedstate" >/dev/null 2>&1; then py=$venv/bin/python
  else
    log "installing the package into $out/venv"
    bash scripts/dev-install.sh "$out/venv" >/dev/null && py=$out/venv/bin/python
  fi
fi
[ -n "$py" ] && [ -x "$py" ] || { echo "hardening: no Python with sharedstate installed"; echo "hardening: 0 passed, 1 failed"; exit 1; }
log "python: $py ($("$py" -c 'import sharedstate; print(sharedstate.__file__)'))"
"$py" -c "import hypothesis" >/dev/null 2>&1 || { log "pip install hypothesis"; "$py" -m pip install -q hypothesis >/dev/null; }

# ---------------------------------------------------------------- 1. sanitizers
export SST_STRESS_WRITES=${SST_STRESS_WRITES:-50000} SST_STRESS_ROUNDS=${SST_STRESS_ROUNDS:-30}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/tsan-suppressions.txt}
for san in address thread; do
  b=$out/$san
  log "C++ tests with SHAREDSTATE_SANITIZE=$san ($b)"
  rc=0
  cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHAREDSTATE_TESTS=ON -DSHAREDSTATE_TOOLS=OFF \
        -DSHAREDSTATE_PYTHON=OFF -DSHAREDSTATE_SANITIZE=$san >"$b.log" 2>&1 &&
    cmake --build "$b" -j2 >>"$b.log" 2>&1 || { rc=1; tail -30 "$b.log"; }
  rm -f "$b.ctest.first.log"
  flaky=""
  if [ $rc = 0 ]; then
    # crash_is_detected checks that a SIGSEGV fails ctest; a sanitizer turns the fault into
    # its own report and exit code, so that harness self-check only means something natively.
    ctest --test-dir "$b" -V --output-on-failure -j2 -E '^crash_is_detected$' >"$b.ctest.log" 2>&1 || rc=1
    # Any failure fails the stage, even one that passes when run again: a race that fails one
    # run in three is exactly what this stage exists to find. The failed tests are rerun once,
    # serially, only to tell a flaky failure from a steady one; both runs' output is printed.
    if [ $rc != 0 ]; then
      echo "  [$san] FAILED tests (first run, -j2):"
      grep -E "^\s+[0-9]+ - " "$b.ctest.log" | sed 's/^/   /'
      mv "$b.ctest.log" "$b.ctest.first.log"
      if ctest --test-dir "$b" --output-on-failure --rerun-failed >"$b.ctest.log" 2>&1; then
        echo "  [$san] FLAKY: they passed when rerun serially; the stage fails all the same (fix the race or the test)"
        flaky=", FLAKY (failed, then passed when rerun)"
      else
        echo "  [$san] they failed again when rerun serially"
      fi
      echo "  ---- [$san] first run: output of the failed tests ($b.ctest.first.log)"
      for n in $(grep -oE "^\s+[0-9]+ - " "$b.ctest.first.log" | grep -oE "[0-9]+"); do
        grep -E "^$n: " "$b.ctest.first.log" | tail -80
      done
      grep -E "tests passed|tests failed|Failed|\*\*\*|runtime error|WARNING: ThreadSanitizer|ERROR: AddressSanitizer" \
        "$b.ctest.first.log" | head -20
      echo "  ---- [$san] serial rerun ($b.ctest.log)"
    fi
    grep -E "tests passed|tests failed|Failed|\*\*\*|runtime error|WARNING: ThreadSanitizer|ERROR: AddressSanitizer" "$b.ctest.log" | head -20
    [ $rc = 0 ] || tail -60 "$b.ctest.log"
    grep -hE "^([0-9]+: )?(threads|processes):" "$b.ctest.log" $( [ -f "$b.ctest.first.log" ] && echo "$b.ctest.first.log") |
      sed -E "s/^[0-9]+: //" | sort -u | sed "s/^/  [$san] /"
  fi
  first=$b.ctest.log
  [ -f "$b.ctest.first.log" ] && first=$b.ctest.first.log
  n=$(grep -oE "out of [0-9]+" "$first" 2>/dev/null | grep -oE "[0-9]+" || echo 0)
  stage "sanitize-$san" $rc "$n ctest tests$flaky"
done

# ---------------------------------------------------------------- 2. libFuzzer
fuzz_seconds=${FUZZ_SECONDS:-60}
fz=$out/fuzz
mkdir -p "$fz"
if command -v clang++-14 >/dev/null && [ -n "$(fuzzer_lib)" ]; then
  cflags=(-std=c++17 -g -O1 -Icpp/include -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  rc=0
  g++ -std=c++17 -O1 -Icpp/include tests/fuzz/make_seeds.cpp -o "$fz/make_seeds" && rm -rf "$fz/seeds" &&
    mkdir -p "$fz/seeds" && "$fz/make_seeds" "$fz/seeds" >/dev/null || rc=1
  # Each libFuzzer run is one thread: two run at a time (the machine's cores), each for the full
  # budget, so the stage costs half the wall time and no target gets fewer seconds.
  par=${FUZZ_JOBS:-$(nproc)}
  targets=() running=0
  for src in tests/fuzz/fuzz_*.cpp; do
    t=$(basename "$src" .cpp)
    if ! clang++-14 "${cflags[@]}" "$src" -o "$fz/$t" >"$fz/$t.build.log" 2>&1; then
      tail -20 "$fz/$t.build.log"; stage "$t" 1 "build failed"; continue
    fi
    targets+=("$t")
    mkdir -p "$fz/$t.corpus" "$fz/$t.artifacts"
    seeds=$fz/seeds
    [ -d "tests/fuzz/seeds-$t" ] && seeds="$seeds tests/fuzz/seeds-$t"
    rm -f "$fz/$t.rc"
    if [ "$running" -ge "$par" ]; then wait -n; running=$((running - 1)); fi
    log "libFuzzer $t (${fuzz_seconds}s)"
    # shellcheck disable=SC2086
    ( "$fz/$t" -max_total_time="$fuzz_seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix="$fz/$t.artifacts/" "$fz/$t.corpus" $seeds >"$fz/$t.log" 2>&1
      echo $? >"$fz/$t.rc" ) &
    running=$((running + 1))
  done
  wait
  for t in "${targets[@]}"; do
    trc=$(cat "$fz/$t.rc" 2>/dev/null || echo 1)
    [ "$trc" = 0 ] || trc=1
    execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$fz/$t.log" | tail -1 | grep -oE "[0-9]+$" || echo "?")
    cov=$(grep -oE "cov: [0-9]+" "$fz/$t.log" | tail -1)
    if [ $trc != 0 ]; then
      grep -E "ERROR|SUMMARY|runtime error|Test unit written|deadly signal" "$fz/$t.log" | head -20
      ls "$fz/$t.artifacts"
    fi
    echo "  $t: $execs executions, $cov, corpus $(ls "$fz/$t.corpus" | wc -l) inputs"
    stage "$t" $trc "$execs executions in ${fuzz_seconds}s, $cov"
  done
  ls /dev/shm | grep -q '^sst-fuzz-' && { echo "fuzz left /dev/shm entries"; rm -f /dev/shm/sst-fuzz-*; }
else
  stage "libfuzzer" 1 "clang-14 / libFuzzer not available"
fi

# ---------------------------------------------------------------- 3. Python, large budgets
export SST_FUZZ_EXAMPLES=${SST_FUZZ_EXAMPLES:-20000} SST_SOAK_ROUNDS=${SST_SOAK_ROUNDS:-100}
export SST_LEAK_CYCLES=${SST_LEAK_CYCLES:-20000}
log "pytest fuzz (segments, pipe records)/faults/security (examples=$SST_FUZZ_EXAMPLES rounds=$SST_SOAK_ROUNDS cycles=$SST_LEAK_CYCLES)"
rc=0
"$py" -m pytest tests/test_fuzz_segments.py tests/test_fuzz_pipe.py tests/test_faults.py tests/test_security.py \
  -q -s -p no:cacheprovider \
  >"$out/pytest.log" 2>&1 || rc=1
grep -E "^(fuzz|pipe fuzz|soak|queue soak|pipe|creators killed|leaks)" "$out/pytest.log" | sed 's/^/  /'
tail -1 "$out/pytest.log"
[ $rc = 0 ] || grep -E "^(FAILED|ERROR)|Error" "$out/pytest.log" | head -30
stage "python-hardening" $rc "$(tail -1 "$out/pytest.log" | tr -d '=')"

# ---------------------------------------------------------------- summary
log "summary"
for s in "${summary[@]}"; do echo "  $s"; done
echo "hardening: ${passed} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
