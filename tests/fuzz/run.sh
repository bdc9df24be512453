#!/usr/bin/env bash
# run.sh [SECONDS] - build the libFuzzer targets with clang into build-fuzz and
# run each for SECONDS (default 30), starting from the seed corpus committed
# in tests/fuzz/corpus/<target>/. New inputs go to build-fuzz/corpus/<target>
# (the committed seeds stay as they are); crashes are written to
# build-fuzz/artifacts/<target>/ and make the script fail.
#
#   tests/fuzz/run.sh 30          # CI: a short run
#   tests/fuzz/run.sh 3600        # a longer run, by hand
#   FUZZ_TARGETS="fuzz_json" tests/fuzz/run.sh 600
#   FUZZ_JOBS=2 ...               # libFuzzer -fork workers per target
#
# Reproduce a crash: build-fuzz/tests/fuzz/<target> build-fuzz/artifacts/<target>/crash-...
set -euo pipefail

secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-"fuzz_options fuzz_json fuzz_csv fuzz_values fuzz_sqlwrap"}
cc=${FUZZ_CC:-clang}

command -v "$cc" >/dev/null || { echo "run.sh: $cc not found (apt-get install clang)" >&2; exit 1; }
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DPGSPOUT_BUILD_FUZZ=ON \
  -DPGSPOUT_BUILD_TESTS=OFF -DPGSPOUT_BUILD_CLI=OFF -DPGSPOUT_BUILD_PYTHON=OFF \
  -DPGSPOUT_BUILD_LUA=OFF >/dev/null
cmake --build "$build" --target pgspout_fuzz -j"$(nproc)" >/dev/null

status=0
for t in $targets; do
  work=$build/corpus/$t
  art=$build/artifacts/$t
  mkdir -p "$work" "$art"
  log=$build/$t.log
  echo "== $t: ${secs}s"
  set +e
  extra=()
  [ -n "${FUZZ_JOBS:-}" ] && extra+=("-fork=$FUZZ_JOBS" "-ignore_crashes=0")
  "$build/tests/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 -max_len=4096 \
    -artifact_prefix="$art/" "${extra[@]}" "$work" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 || true)
  echo "   exit $rc, ${execs:-?} executions, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) inputs"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E 'check failed|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
  fi
done
exit $status
