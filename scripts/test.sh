#!/usr/bin/env bash
# test.sh - build pgspout and run every test suite against a throwaway PostgreSQL.
#
#   bash scripts/test.sh            # everything (what CI runs through .ci/run)
#   bash scripts/test.sh --quick    # skip the sanitizer, valgrind and fuzz stages
#
# Stages, each reported on its own and all run even when one fails:
#   build      build/ with -Werror, the Lua module and the tests
#   c          ctest in build/ (cmocka unit + integration tests)
#   chunked    the C suites again with a libpq >= 17 preloaded (the one
#              psycopg-binary's wheel bundles, fetched from PyPI once into
#              build/libpq-wheel/): pgspout, built against Debian's libpq
#              15, must find chunked-rows mode at run time (`pgspout
#              --version` says "transport chunked") and pass them there;
#              and a module linking that libpq under its bundled name,
#              loaded RTLD_LOCAL as Python loads extensions, must too
#              (tests/c/transport_probe.c)
#   python     tests/python/run.sh (makes its own venv, installs the package)
#   sdist      python -m build in a fresh venv, with untracked junk in the
#              tree: the sdist is exactly `git ls-files` + PKG-INFO, and a
#              wheel builds from it
#   wheel      scripts/wheel.sh repairs the sdist stage's wheel into a
#              manylinux one with libpq bundled (auditwheel); installed in a
#              fresh venv, it streams rows (md5 against the server) in a mount
#              namespace where the system libpq.so.5 is an empty file, and the
#              libpq mapped is the bundled one (tests/python/wheel_check.py);
#              again with the chunked stage's libpq 18 bundled, where the
#              transport must be chunked; needs root (not run, and counted as
#              failed, otherwise)
#   types      tests/python/typecheck.sh: mypy and pyright (from PyPI, in a
#              fresh venv with the package installed; default settings) pass
#              examples/python/ and the package, and flag exactly the
#              marked misuses in tests/python/typing/wrong_rows.py
#   lua        tests/lua/run.sh (busted under LuaJIT, nginx integration and
#              fault tests, the example's live control: SSE and
#              pause/resume/cancel over HTTP, its status page in headless
#              Chromium via Selenium: deps.sh installs and requires chromium,
#              so it never skips here; run alone without chromium,
#              browser_test.sh says SKIP, or fails under CI=true)
#   conformance  tests/conformance/run.sh: one case list through the C,
#              Python, Lua (LuaJIT, Lua 5.1) and CLI drivers, their
#              normalized lines compared; any difference its README's table
#              does not list fails. Uses build/ (C driver, CLI, Lua module,
#              as the lua stage) and the venv the python stage installed
#   install    cmake --install, then examples/ built via find_package and via
#              pkg-config and run against the server; exported-symbol check
#   bench-cc   bench/*.c still compile (the benchmark itself is bench/run.sh)
#   no-cmocka  with cmocka hidden, the default configure builds the library
#              and CLI without tests; -DPGSPOUT_BUILD_TESTS=ON fails clearly
#   asan       build-asan/ with -DPGSPOUT_SANITIZE=address,undefined, ctest
#   python-asan  tests/python/run_asan.sh: the Python fault, race, GC and
#              bad-input tests against an ASan+UBSan build of the extension
#   lua-asan   tests/lua/run_asan.sh: every busted spec under LuaJIT (with
#              leak detection) and Lua 5.1, and the registry stress, against
#              an ASan+UBSan build of the Lua module (build-lua-asan/)
#   valgrind   every C suite (unit, integration, reliability) under valgrind
#              memcheck; the server suites scale their row and iteration
#              counts down there (tests/c/testutil.h: tu_valgrind)
#   tsan       build-tsan/ with -DPGSPOUT_SANITIZE=thread: test_stream,
#              test_limits, test_random (pause/resume from another thread), test_faults (the any-thread race tests),
#              test_load (64 streams) and the registry stress under
#              ThreadSanitizer; any report fails it (scaled down like
#              valgrind: tu_tsan)
#   faultinject  build-fi-asan/ with -DPGSPOUT_FAULT_INJECTION=ON and
#              ASan+UBSan: test_alloc_fail makes the N-th core allocation
#              fail for every N of a representative session (and every one
#              from N on); alloc_wrapped checks no core file allocates
#              around the counter
#   fuzz       tests/fuzz/run.sh: a short libFuzzer run of every target
# The last line is "suites: N passed, M failed"; the exit code is non-zero if
# any stage failed.
#
# Environment given to every suite:
#   PGSPOUT_TEST_DSN, PGHOST, PGPORT, PGUSER, PGDATABASE  the throwaway server
#   PGSPOUT_BUILD_DIR     absolute path of the build tree the suite should use
#   PGSPOUT_REQUIRE_DB=1  server-backed tests must not skip
#   PYTHON                interpreter for the Python suite's venv
#                         (default /usr/bin/python3, Debian's)
#   PGSPOUT_PG_THROWAWAY  path of scripts/pg-throwaway.sh (for suites that
#                         need a server of their own, e.g. TLS or restarts)
# Test labels honoured: "nosan" tests are skipped under sanitizers,
# "novalgrind" under valgrind; valgrind runs the tests labelled "unit",
# "integration" and "reliability".
# Knobs: PGSPOUT_JOBS (build parallelism, default nproc),
#        PGSPOUT_VALGRIND_LABELS (ctest -L regex for valgrind, default
#          'unit|integration|reliability'),
#        PGSPOUT_TSAN_STRESS (seconds of registry stress in the tsan
#          stage, default 30; 0 skips it),
#        PGSPOUT_FUZZ_SECONDS (per fuzz target, default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

jobs=${PGSPOUT_JOBS:-$(nproc 2>/dev/null || echo 2)}
started=$(date +%s)

banner() { printf '\n=== %s ===\n' "$*"; }
note() { echo "test.sh: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-test.XXXXXX")
pgdir=""
cleanup() {
  if [ -n "$pgdir" ]; then bash "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

names=()
statuses=()
times=()
record() { # name status seconds
  names+=("$1"); statuses+=("$2"); times+=("$3")
}

# run_stage NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell with errexit
# on (so a failing command inside fails the stage), records the outcome.
run_stage() {
  local name=$1 t0 rc
  shift
  banner "$name"
  t0=$(date +%s)
  set +e
  ( set -euo pipefail; "$@" )
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    record "$name" passed $(($(date +%s) - t0))
    echo "--- $name: PASSED"
  else
    record "$name" "FAILED (exit $rc)" $(($(date +%s) - t0))
    echo "--- $name: FAILED (exit $rc)"
  fi
}

skip_stage() { # name reason: counted as failed, never silently skipped
  banner "$1"
  echo "--- $1: FAILED ($2)"
  record "$1" "FAILED ($2)" 0
}

summary() {
  local i n_pass=0 n_fail=0
  banner "summary ($(($(date +%s) - started))s)"
  for i in "${!names[@]}"; do
    printf '  %-10s %-40s %5ss\n' "${names[$i]}" "${statuses[$i]}" "${times[$i]}"
    if [ "${statuses[$i]}" = passed ]; then n_pass=$((n_pass + 1)); else n_fail=$((n_fail + 1)); fi
  done
  echo "suites: $n_pass passed, $n_fail failed"
  [ "$n_fail" = 0 ]
}

configure_build() { # dir [cmake args...]
  local dir=$1 gen=()
  shift
  if [ ! -f "$dir/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
  cmake -S . -B "$dir" "${gen[@]}" "$@"
  cmake --build "$dir" -j "$jobs"
}

# ------------------------------------------------------------- the server
start_pg() {
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-pg.XXXXXX")
  local exports
  exports=$(bash scripts/pg-throwaway.sh start "$pgdir")
  eval "$exports"
  export PGHOST PGPORT PGUSER PGDATABASE PGSPOUT_TEST_DSN
  note "PostgreSQL on port $PGPORT (dir $pgdir)"
}
pg_alive() {
  psql -X -q -h 127.0.0.1 -p "$PGPORT" -U pgspout -d pgspout -tAc 'SELECT 1' >/dev/null 2>&1
}
# A suite may stop or break the shared server (fault tests); the next suite
# gets a fresh one rather than a cascade of connection errors.
ensure_pg() {
  if ! pg_alive; then
    note "the test server is gone (left so by the previous stage); starting a fresh one"
    bash scripts/pg-throwaway.sh stop "$pgdir" || true
    start_pg
  fi
}

# ------------------------------------------------------------------ stages
stage_c() {
  local n
  n=$(ctest --test-dir build -N | sed -n 's/^Total Tests: //p')
  if [ "${n:-0}" = 0 ]; then
    echo "no C tests registered in build/ (tests/CMakeLists.txt missing or empty)" >&2
    return 1
  fi
  ctest --test-dir build --output-on-failure --timeout 1200
}

# The chunked transport (libpq >= 17), which Debian 12's libpq 15 lacks: the
# libpq of a pinned psycopg-binary wheel from PyPI, kept in build/ so that
# later runs need no network.
chunked_wheel=psycopg-binary==3.3.9
stage_chunked() {
  local cache="$root/build/libpq-wheel" libpq out
  libpq=$(find "$cache/libs" -name 'libpq-*.so.5.*' 2>/dev/null | head -n 1 || true)
  if [ -z "$libpq" ]; then
    rm -rf "$cache"
    mkdir -p "$cache/libs"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$cache" "$chunked_wheel"
    # only its bundled libraries (libpq and what libpq needs)
    "$PYTHON" - "$cache" <<'PY'
import glob, os, sys, zipfile
cache = sys.argv[1]
(whl,) = glob.glob(os.path.join(cache, "*.whl"))
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith("psycopg_binary.libs/") and not name.endswith("/"):
            dest = os.path.join(cache, "libs", os.path.basename(name))
            with z.open(name) as src, open(dest + ".part", "wb") as dst:
                dst.write(src.read())
            os.rename(dest + ".part", dest)
PY
    libpq=$(find "$cache/libs" -name 'libpq-*.so.5.*' | head -n 1)
  fi
  [ -n "$libpq" ] || { echo "no libpq in $chunked_wheel" >&2; return 1; }
  echo "libpq: $libpq"
  out=$(LD_PRELOAD="$libpq" build/core/pgspout --version)
  echo "$out"
  [[ "$out" == *"(transport chunked)" ]] || { echo "want transport chunked" >&2; return 1; }
  # the module: the static core (whole: every symbol) on that libpq alone
  cc -shared -o "$work/chunked_module.so" -Wl,--whole-archive build/core/libpgspout.a \
    -Wl,--no-whole-archive "$libpq" -Wl,-rpath,"$(dirname "$libpq")" -pthread -lm
  cc -std=c11 -O2 -Wall -Wextra -Werror -o "$work/transport_probe" tests/c/transport_probe.c
  out=$("$work/transport_probe" "$work/chunked_module.so")
  echo "RTLD_LOCAL module on $(basename "$libpq"): transport $out"
  [ "$out" = chunked ] || { echo "want chunked" >&2; return 1; }
  # exact, not just eager: with Debian's libpq 15 preloaded, the module's
  # calls go to it (interposition), so its bundled libpq 18 must not be used
  out=$(LD_PRELOAD="$(pkg-config --variable=libdir libpq)/libpq.so.5" \
    "$work/transport_probe" "$work/chunked_module.so")
  echo "the same with libpq 15 preloaded: transport $out"
  [ "$out" = single-row ] || { echo "want single-row" >&2; return 1; }
  LD_PRELOAD="$libpq" ctest --test-dir build --output-on-failure --timeout 1200
}

# The conformance suite runs the Python package the python stage installed
# (its venv is kept in $work/py-venv for this); a fresh one if that stage
# did not get as far as making it.
stage_conformance() {
  if [ -x "$work/py-venv/bin/python" ]; then
    PGSPOUT_CONF_PYTHON="$work/py-venv/bin/python" stage_script tests/conformance/run.sh
  else
    note "conformance: no venv from the python stage; run.sh installs the package itself"
    stage_script tests/conformance/run.sh
  fi
}

stage_script() { # path [args...]
  if [ ! -f "$1" ]; then
    echo "$1 does not exist: this suite has not been written yet" >&2
    return 1
  fi
  bash "$@"
}

check_exports() { # libpgspout.so
  local bad
  # Version-node names (type A, e.g. PGSPOUT_0) are not symbols of the API.
  bad=$(nm -D --defined-only "$1" | awk '!($2 == "A" && $3 ~ /^PGSPOUT_/) && $3 !~ /^pgspout_/ { print $3 }')
  if [ -n "$bad" ]; then
    echo "$1 exports symbols outside pgspout_*:" >&2
    echo "$bad" | head -20 >&2
    return 1
  fi
  echo "exports: $(nm -D --defined-only "$1" | grep -c ' pgspout_') pgspout_* symbols, nothing else"
}

check_example() { # binary label
  local out="$work/example.out" err="$work/example.err" want got n
  # 2500 rows with a parameter; output compared with the server's own md5.
  "$1" "$PGSPOUT_TEST_DSN" "SELECT g, 'row ' || g, NULLIF(g % 7, 0) FROM generate_series(1, \$1::int) g" 2500 \
    >"$out" 2>"$err" || { cat "$err" >&2; echo "$2: example failed" >&2; return 1; }
  n=$(wc -l <"$out")
  want=$(psql -X -tAc "SELECT md5(string_agg(g || E'\t' || 'row ' || g || E'\t' || coalesce((NULLIF(g % 7, 0))::text, '\N'), E'\n' ORDER BY g) || E'\n') FROM generate_series(1, 2500) g")
  got=$(md5sum <"$out" | cut -d' ' -f1)
  if [ "$n" != 2500 ] || [ "$want" != "$got" ]; then
    echo "$2: got $n rows (md5 $got), want 2500 (md5 $want)" >&2
    return 1
  fi
  # An SQL error mid-stream: non-zero exit and the SQLSTATE on stderr.
  if "$1" "$PGSPOUT_TEST_DSN" "SELECT 1 / (g - 1500) FROM generate_series(1, 3000) g" >/dev/null 2>"$err"; then
    echo "$2: division by zero did not fail" >&2
    return 1
  fi
  grep -q 22012 "$err" || { cat "$err" >&2; echo "$2: SQLSTATE 22012 not reported" >&2; return 1; }
  echo "$2: 2500 rows, md5 matches the server; division by zero reported with 22012"
}

# examples/arrow_columns: the Arrow consumer sees every row and value the
# server sent (sum of an int8 column, bytes of a text one, NULLs counted).
check_arrow_example() {
  local out
  out=$("$1" "$PGSPOUT_TEST_DSN" "SELECT g::int8 AS n, CASE WHEN g % 10 = 0 THEN NULL \
ELSE md5(g::text) END AS t FROM generate_series(1, 3000) g") || return 1
  printf '%s\n' "$out"
  printf '%s\n' "$out" | grep -qx '3000 rows in .* record batches' &&
    printf '%s\n' "$out" | grep -qxF "$(printf 'n\tl\t3000 values\t0 NULLs\t4501500')" &&
    printf '%s\n' "$out" | grep -qxF "$(printf 't\tu\t2700 values\t300 NULLs\t86400')" || {
    echo "arrow_columns: unexpected output" >&2; return 1; }
  if "$1" "$PGSPOUT_TEST_DSN" "SELECT 1 / (g - 1500) FROM generate_series(1, 3000) g" \
    >/dev/null 2>"$work/arrow_err"; then
    echo "arrow_columns: division by zero did not fail" >&2; return 1
  fi
  grep -q 22012 "$work/arrow_err" || { echo "arrow_columns: no SQLSTATE 22012" >&2; return 1; }
  echo "arrow_columns: 3000 rows, sums match; division by zero reported with 22012"
}

stage_install() {
  local prefix="$work/prefix" lib pc
  rm -rf "$prefix"
  cmake --install build --prefix "$prefix"
  lib=$(find "$prefix" -name libpgspout.so -print -quit)
  pc=$(find "$prefix" -name pgspout.pc -print -quit)
  [ -n "$lib" ] || { echo "libpgspout.so was not installed" >&2; return 1; }
  [ -n "$pc" ] || { echo "pgspout.pc was not installed" >&2; return 1; }
  [ -f "$prefix/include/pgspout.h" ] || { echo "pgspout.h was not installed" >&2; return 1; }
  find "$prefix" -type f -o -type l | sed "s|^$prefix/|  installed: |" | sort

  check_exports "$lib"

  # The installed header compiles alone, strictly, as C and as C++.
  echo '#include <pgspout.h>' >"$work/hdr.c"
  cc -std=c99 -pedantic -Wall -Wextra -Werror -I"$prefix/include" -fsyntax-only "$work/hdr.c"
  if command -v c++ >/dev/null 2>&1; then
    c++ -x c++ -pedantic -Wall -Wextra -Werror -I"$prefix/include" -fsyntax-only "$work/hdr.c"
  fi

  # examples/ through the CMake package
  rm -rf "$work/ex-cmake"
  cmake -S examples -B "$work/ex-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
  cmake --build "$work/ex-cmake"
  check_example "$work/ex-cmake/stream_rows" "find_package build"
  check_arrow_example "$work/ex-cmake/arrow_columns"

  # examples/ through pkg-config, as examples/README.md shows
  local pc_inc
  pc_inc=$(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --variable=includedir pgspout)
  if [ ! -f "$pc_inc/pgspout.h" ]; then
    echo "pgspout.pc points at includedir=$pc_inc, but the install went to $prefix:" >&2
    echo "the .pc file must follow 'cmake --install --prefix' (e.g. prefix=\${pcfiledir}/../..)" >&2
    return 1
  fi
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Wextra -Werror -o "$work/stream_rows_pc" examples/stream_rows.c \
    $(PKG_CONFIG_PATH="$(dirname "$pc")" pkg-config --cflags --libs pgspout) \
    -Wl,-rpath,"$(dirname "$lib")"
  check_example "$work/stream_rows_pc" "pkg-config build"

  # the installed CLI finds its library through its rpath
  if [ -x "$prefix/bin/pgspout" ]; then
    local got
    got=$(env -u LD_LIBRARY_PATH "$prefix/bin/pgspout" -d "$PGSPOUT_TEST_DSN" -F csv \
      -c "SELECT g FROM generate_series(1, 10) g" | wc -l)
    [ "$got" -ge 10 ] || { echo "installed CLI printed $got lines for 10 rows" >&2; return 1; }
    # and its man page, which renders without warnings
    local man1="$prefix/share/man/man1/pgspout.1" warn
    [ -f "$man1" ] || { echo "pgspout.1 was not installed under share/man/man1" >&2; return 1; }
    warn=""
    if command -v man >/dev/null 2>&1; then warn=$(MANWIDTH=80 man --warnings -l "$man1" 2>&1 >/dev/null); fi
    [ -z "$warn" ] || { echo "pgspout.1 renders with warnings: $warn" >&2; return 1; }
    echo "installed CLI and man page: ok"
  fi
}

# The library alone, for a C user without cmocka: configuring with the
# defaults must not require it (tests are built only when it is found, with a
# STATUS line saying so), the library and the CLI must build, and asking for
# the tests explicitly (-DPGSPOUT_BUILD_TESTS=ON) must fail with a clear
# message. cmocka is hidden from both ways CMakeLists.txt looks for it:
# pkg-config (a PKG_CONFIG_LIBDIR holding every .pc file but cmocka.pc) and
# find_package (CMAKE_DISABLE_FIND_PACKAGE_cmocka).
stage_no_cmocka() {
  local pc="$work/pc-no-cmocka" dir="$work/build-no-cmocka" out="$work/no-cmocka.log" d f
  rm -rf "$pc" "$dir" "$dir-on"
  mkdir -p "$pc"
  for d in $(pkg-config --variable pc_path pkg-config | tr : ' '); do
    for f in "$d"/*.pc; do
      [ -e "$f" ] && [ "$(basename "$f")" != cmocka.pc ] && [ ! -e "$pc/$(basename "$f")" ] && ln -s "$f" "$pc/"
    done
  done
  local hide=(env PKG_CONFIG_LIBDIR="$pc" PKG_CONFIG_PATH=)
  if "${hide[@]}" pkg-config --exists cmocka; then
    echo "could not hide cmocka from pkg-config" >&2
    return 1
  fi
  "${hide[@]}" cmake -S . -B "$dir" -DCMAKE_DISABLE_FIND_PACKAGE_cmocka=ON -DPGSPOUT_WERROR=ON >"$out" 2>&1 \
    || { cat "$out" >&2; echo "configuring with the defaults failed without cmocka" >&2; return 1; }
  grep -q 'cmocka not found: the test suites are not built' "$out" \
    || { cat "$out" >&2; echo "no STATUS line saying the tests are not built" >&2; return 1; }
  grep 'cmocka not found' "$out"
  cmake --build "$dir" -j "$jobs"
  [ -f "$dir/core/libpgspout.so" ] || { echo "libpgspout.so not built" >&2; return 1; }
  [ ! -e "$dir/tests" ] || { echo "tests were configured although cmocka was not found" >&2; return 1; }
  echo "without cmocka, defaults: library built, tests not configured"
  if "${hide[@]}" cmake -S . -B "$dir-on" -DCMAKE_DISABLE_FIND_PACKAGE_cmocka=ON \
    -DPGSPOUT_BUILD_TESTS=ON >"$out" 2>&1; then
    cat "$out" >&2
    echo "-DPGSPOUT_BUILD_TESTS=ON configured although cmocka was not found" >&2
    return 1
  fi
  grep -q 'PGSPOUT_BUILD_TESTS=ON but cmocka was not found' "$out" \
    || { cat "$out" >&2; echo "-DPGSPOUT_BUILD_TESTS=ON failed, but not with the cmocka message" >&2; return 1; }
  echo "without cmocka, -DPGSPOUT_BUILD_TESTS=ON: configuring fails with the cmocka message"
  rm -rf "$dir" "$dir-on" "$pc"
}

# The Python sdist holds exactly the files git tracks (plus PKG-INFO), even
# with untracked directories lying around (scripts/pep517/pgspout_backend.py),
# and a wheel builds from it: `python -m build` in a fresh venv, as a release
# would run it.
stage_sdist() {
  local venv="$work/sdist-venv" dist="$work/dist" junk build_junk tarball
  git rev-parse --show-toplevel >/dev/null 2>&1 && [ "$(git rev-parse --show-toplevel)" = "$root" ] \
    || { echo "the sdist check needs a git checkout at $root" >&2; return 1; }
  # An untracked scratch directory and an untracked (and ignored) build-*
  # directory: neither may reach the sdist.
  junk=$(mktemp -d "$root/sdist-junk.XXXXXX")
  build_junk=$(mktemp -d "$root/build-sdist-junk.XXXXXX")
  # shellcheck disable=SC2064  # expanded now: the locals are gone at exit
  trap "rm -rf '$junk' '$build_junk'" EXIT
  echo junk >"$junk/file.txt"
  mkdir "$build_junk/CMakeFiles"
  echo junk >"$build_junk/CMakeFiles/object.o"
  rm -rf "$venv" "$dist"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check build
  "$venv/bin/python" -m build -o "$dist" . >"$work/sdist-build.log" 2>&1 \
    || { tail -40 "$work/sdist-build.log" >&2; echo "python -m build failed" >&2; return 1; }
  tarball=$(find "$dist" -name 'pgspout-*.tar.gz' -print -quit)
  [ -n "$tarball" ] || { echo "no sdist in $dist" >&2; return 1; }
  find "$dist" -name 'pgspout-*.whl' | grep . >/dev/null || { echo "no wheel built from the sdist" >&2; return 1; }
  # Files only (directory entries end with /), without the pgspout-X.Y.Z/ prefix.
  tar tzf "$tarball" | grep -v '/$' | sed 's|^[^/]*/||' | LC_ALL=C sort >"$work/sdist.files"
  { git ls-files | while IFS= read -r f; do [ -e "$f" ] && echo "$f"; done; echo PKG-INFO; } \
    | LC_ALL=C sort >"$work/sdist.want"
  if ! diff -u "$work/sdist.want" "$work/sdist.files" >"$work/sdist.diff"; then
    echo "the sdist is not exactly git ls-files + PKG-INFO ('-' missing, '+' extra):" >&2
    sed -n '3,$p' "$work/sdist.diff" | grep '^[-+]' | head -40 >&2
    return 1
  fi
  echo "sdist $(basename "$tarball"): $(wc -l <"$work/sdist.files") files = git ls-files + PKG-INFO" \
    "(untracked $(basename "$junk")/ and $(basename "$build_junk")/ left out); wheel built from it"
}

# ------------------------------------------------------------ wheel stage
# The manylinux wheel, libpq bundled (scripts/wheel.sh): repair the wheel the
# sdist stage built from its sdist (tracked files only, checked there; a
# fresh sdist and wheel when that stage left none), install it in a fresh venv
# and stream with the system libpq hidden: in a private mount namespace
# (unshare -m) an empty file is bind-mounted over every libpq.so.5 the
# dynamic loader could find, so only the wheel's copy can load.
# tests/python/wheel_check.py then checks the libpq mapped into the process is
# the bundled one, that pgspout.transport matches what that libpq supports,
# and the rows' md5 against the server's; then the same with the chunked
# stage's libpq 18 bundled instead. Needs root (mount): main below
# reports the stage as not run, and why, otherwise.
stage_wheel() {
  local venv="$work/wheel-venv" house="$work/wheelhouse" raw whl so want n=100000 empty="$work/empty" hide
  raw=$(find "$work/dist" -name 'pgspout-*-linux_x86_64.whl' -print -quit 2>/dev/null || true)
  [ -n "$raw" ] || note "wheel: no wheel from the sdist stage; scripts/wheel.sh builds one"
  rm -rf "$house" "$venv"
  bash scripts/wheel.sh -o "$house" ${raw:+"$raw"} >"$work/wheel.log"
  cat "$work/wheel.log"
  whl=$(tail -n 1 "$work/wheel.log")
  case "$whl" in
    */pgspout-*-manylinux_2_*_x86_64.whl) ;;
    *) echo "scripts/wheel.sh wrote no manylinux wheel (last line: $whl)" >&2; return 1 ;;
  esac
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$whl"
  so=$(cd "$work" && "$venv/bin/python" -c 'import pgspout._pgspout as m; print(m.__file__)')
  case "$so" in "$venv"/*) ;; *) echo "pgspout imported from $so, not the venv" >&2; return 1 ;; esac
  want=$(psql -X -tAc "SELECT md5(string_agg(g || E'\t' || 'row ' || g || E'\t' || coalesce((NULLIF(g % 7, 0))::text, '\N'), E'\n' ORDER BY g) || E'\n') FROM generate_series(1, $n) g")
  # every system libpq.so.5: the loader's cache and libpq's pkg-config libdir
  hide=$({ ldconfig -p | awk '$1 == "libpq.so.5" { print $NF }'
    ls "$(pkg-config --variable=libdir libpq)"/libpq.so.5* 2>/dev/null || true; } |
    xargs -r readlink -f | sort -u)
  [ -n "$hide" ] || { echo "no system libpq.so.5 found to hide" >&2; return 1; }
  : >"$empty"
  # shellcheck disable=SC2016  # expanded by the inner bash
  unshare -m bash -euo pipefail -c '
    empty=$1 py=$2 so=$3 dsn=$4 n=$5 want=$6 check=$7; shift 7
    for f in "$@"; do mount --bind "$empty" "$f"; echo "hidden: $f ($(stat -c %s "$f") bytes now)"; done
    if "$py" -c "import ctypes; ctypes.CDLL(\"libpq.so.5\")" 2>/dev/null; then
      echo "libpq.so.5 still loads from the system: hiding failed" >&2; exit 1
    fi
    echo "system libpq.so.5 no longer loads"
    deps=$(ldd "$so")  # (not piped into grep -q: pipefail and SIGPIPE)
    grep -E "libpq|not found" <<<"$deps" | sed "s/^/ldd: /"
    if grep -q "not found" <<<"$deps"; then echo "the extension has unresolved libraries" >&2; exit 1; fi
    grep -Eq "libpq(-[0-9a-f]+)+\.so\.5.* => .*/pgspout\.libs/" <<<"$deps" ||
      { echo "ldd does not resolve libpq to the bundled copy" >&2; exit 1; }
    cd "$(dirname "$empty")"
    "$py" "$check" "$dsn" "$n" "$want"
  ' wheel "$empty" "$venv/bin/python" "$so" "$PGSPOUT_TEST_DSN" "$n" "$want" \
    "$root/tests/python/wheel_check.py" $hide
  echo "wheel: $(basename "$whl") ($(stat -c %s "$whl") bytes) installs and streams with the system libpq hidden"

  # The same with the chunked stage's libpq 18 bundled instead
  # (PGSPOUT_WHEEL_LIBPQ): grafted under a second hashed name, its
  # chunked-rows mode must still be found (transport.c) and used.
  local pq18
  pq18=$(find "$root/build/libpq-wheel/libs" -name 'libpq-*.so.5.*' -print -quit 2>/dev/null || true)
  [ -n "$pq18" ] || { echo "no libpq >= 17 in build/libpq-wheel (left by the chunked stage)" >&2; return 1; }
  rm -rf "$house" "$venv"
  PGSPOUT_WHEEL_LIBPQ="$pq18" bash scripts/wheel.sh -o "$house" ${raw:+"$raw"} >"$work/wheel.log"
  grep -v '^  ' "$work/wheel.log" | grep -A2 -E 'bundl|constrains'
  whl=$(tail -n 1 "$work/wheel.log")
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$whl"
  # shellcheck disable=SC2016
  unshare -m bash -euo pipefail -c '
    empty=$1 py=$2 dsn=$3 n=$4 want=$5 check=$6; shift 6
    for f in "$@"; do mount --bind "$empty" "$f"; done
    cd "$(dirname "$empty")"
    "$py" "$check" "$dsn" "$n" "$want" chunked
  ' wheel "$empty" "$venv/bin/python" "$PGSPOUT_TEST_DSN" "$n" "$want" \
    "$root/tests/python/wheel_check.py" $hide
  echo "wheel: with $(basename "$pq18") bundled instead, transport chunked, system libpq hidden"
}
# -------------------------------------------------------- end wheel stage

stage_bench_cc() {
  local out="$work/bench-cc" f
  mkdir -p "$out"
  local cflags=(-std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE)
  # shellcheck disable=SC2046
  for f in bench/raw_libpq.c bench/transport.c; do
    cc "${cflags[@]}" -o "$out/$(basename "$f" .c)" "$f" $(pkg-config --cflags --libs libpq)
    echo "compiled $f"
  done
  # shellcheck disable=SC2046
  cc "${cflags[@]}" -Icore/include -o "$out/pgspout_c" bench/pgspout_c.c \
    -Lbuild/core -lpgspout -Wl,-rpath,"$root/build/core" $(pkg-config --cflags --libs libpq)
  echo "compiled bench/pgspout_c.c"
  # shellcheck disable=SC2046
  cc "${cflags[@]}" -pthread -Icore/include -o "$out/soak" bench/soak.c \
    -Lbuild/core -lpgspout -Wl,-rpath,"$root/build/core" $(pkg-config --cflags --libs libpq)
  echo "compiled bench/soak.c"
}

stage_asan() {
  configure_build build-asan -DPGSPOUT_WERROR=ON -DPGSPOUT_BUILD_TESTS=ON \
    -DPGSPOUT_SANITIZE=address,undefined
  ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    PGSPOUT_BUILD_DIR="$root/build-asan" \
    ctest --test-dir build-asan --output-on-failure --timeout 1800 -LE nosan
}

stage_valgrind() {
  # Every C suite, the server-backed ones included: under valgrind they keep
  # every code path but scale big row and iteration counts down and widen
  # their upper time bounds (they detect valgrind with RUNNING_ON_VALGRIND,
  # or PGSPOUT_UNDER_VALGRIND=1 when built without <valgrind/valgrind.h>).
  # About 5 minutes on 2 cores. headertest* run the compiler, not our code.
  local labels=${PGSPOUT_VALGRIND_LABELS:-unit|integration|reliability} n
  local select=(-L "$labels" -LE novalgrind -E '^headertest')
  n=$(ctest --test-dir build -N "${select[@]}" | sed -n 's/^Total Tests: //p')
  if [ "${n:-0}" = 0 ]; then
    echo "no tests labelled '$labels' to run under valgrind" >&2
    return 1
  fi
  rm -f build/Testing/Temporary/MemoryChecker.*.log
  if ! PGSPOUT_UNDER_VALGRIND=1 ctest --test-dir build -T memcheck --timeout 1800 --output-on-failure "${select[@]}" \
    --overwrite MemoryCheckCommand=/usr/bin/valgrind \
    --overwrite "MemoryCheckCommandOptions=--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --trace-children=no"; then
    local log
    for log in build/Testing/Temporary/MemoryChecker.*.log; do
      [ -s "$log" ] || continue
      echo "----- $log" >&2
      tail -60 "$log" >&2
    done
    return 1
  fi
}

# ThreadSanitizer over what runs pgspout from several threads at once: the
# C suites with the any-thread calls racing next (pause/resume/cancel/close,
# stats and metrics from other threads: test_stream, test_limits,
# test_faults), the 64-stream load test, and the registry stress. Any report
# fails the stage: halt_on_error stops the process (exit 66), and log_path
# collects reports from every process, forked children included, so none
# can hide behind an exit status nobody checks. The suites detect TSan
# (tests/c/testutil.h: tu_tsan) and scale their counts down as under
# valgrind. No suppressions: a report is a bug to fix, in core or in a test.
stage_faultinject() {
  configure_build build-fi-asan -DPGSPOUT_WERROR=ON -DPGSPOUT_BUILD_TESTS=ON \
    -DPGSPOUT_SANITIZE=address,undefined -DPGSPOUT_FAULT_INJECTION=ON
  ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    PGSPOUT_BUILD_DIR="$root/build-fi-asan" \
    ctest --test-dir build-fi-asan --output-on-failure --timeout 900 -L faultinject -V
}

stage_tsan() {
  local dir=build-tsan reports="$work/tsan" cc rt rc=0 f
  configure_build "$dir" -DPGSPOUT_WERROR=ON -DPGSPOUT_BUILD_TESTS=ON -DPGSPOUT_SANITIZE=thread
  rt=$(ldd "$dir/core/libpgspout.so" | awk '$1 ~ /^libtsan\.so/ && $3 ~ /^\// { print $3 }')
  [ -n "$rt" ] || { echo "$dir/core/libpgspout.so does not link libtsan: not a TSan build" >&2; return 1; }
  echo "TSan runtime: $rt"
  rm -rf "$reports"
  mkdir -p "$reports"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/report"

  # TSan's fixed memory layout does not fit every randomised mapping on
  # newer kernels ("FATAL: ThreadSanitizer: unexpected memory mapping"):
  # then everything runs with ASLR off (setarch -R, inherited by children).
  local run=()
  probe() { "$@" "$dir/tests/test_options" >/dev/null 2>"$work/tsan-probe.err"; }
  if ! probe; then
    if grep -qs 'unexpected memory mapping' "$work/tsan-probe.err" "$reports"/report.*; then
      note "TSan: unexpected memory mapping with ASLR on; running under setarch -R"
      run=(setarch "$(uname -m)" -R)
      rm -f "$reports"/report.*
    fi
    probe "${run[@]}" || {
      cat "$work/tsan-probe.err" "$reports"/report.* >&2 2>/dev/null || true
      echo "the TSan build of test_options does not run" >&2
      return 1
    }
  fi

  PGSPOUT_BUILD_DIR="$root/$dir" "${run[@]}" ctest --test-dir "$dir" --output-on-failure --timeout 1800 \
    -R '^(test_stream|test_limits|test_random|reliability_test_faults|reliability_test_load)$' || rc=1

  # The registry stress, built and run by tests/lua/lib.sh against the TSan
  # core, with the compiler the core was built with (matching runtimes).
  # 30 s: it must see a stream complete (registry_stress.c), and under TSan
  # on 2 busy cores 15 s saw 1 to 3 of them, 30 s 7 or 8.
  local secs=${PGSPOUT_TSAN_STRESS:-30}
  if [ "$secs" != 0 ]; then
    echo "=== registry stress under TSan (${secs}s)"
    cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
    # shellcheck disable=SC2016  # expanded by the inner bash
    "${run[@]}" env root="$root" here="$root/tests/lua" bash -c '
      set -euo pipefail
      . "$here/lib.sh"
      trap - EXIT
      lua_registry_stress "$@"' tsan "$secs" "$root/$dir/core/libpgspout.a" "${cc:-cc}" \
      -O1 -fsanitize=thread -fno-omit-frame-pointer || rc=1
  fi

  for f in "$reports"/report.*; do
    [ -e "$f" ] || continue
    echo "----- ThreadSanitizer report $f" >&2
    cat "$f" >&2
    rc=1
  done
  [ "$rc" = 0 ] && echo "tsan: no ThreadSanitizer report"
  return "$rc"
}

# ------------------------------------------------------------------- main
banner "dependencies"
bash scripts/deps.sh

export PGSPOUT_BUILD_DIR="$root/build"
# Integration tests skip (exit 77) without a server; here there is one, so a
# skip would hide a problem: make them fail instead.
export PGSPOUT_REQUIRE_DB=1
# The Python suite builds its venv from Debian's interpreter, whose headers
# and venv module deps.sh guarantees (python3 on PATH may be another one).
export PYTHON=${PYTHON:-/usr/bin/python3}
export PGSPOUT_PG_THROWAWAY="$root/scripts/pg-throwaway.sh"

run_stage build configure_build build -DPGSPOUT_WERROR=ON -DPGSPOUT_BUILD_LUA=ON -DPGSPOUT_BUILD_TESTS=ON
build_ok=0
[ "${statuses[0]}" = passed ] && build_ok=1

start_pg

if [ "$build_ok" = 1 ]; then
  ensure_pg; run_stage c stage_c
  ensure_pg; run_stage chunked stage_chunked
else
  skip_stage c "not run: the build failed"
  skip_stage chunked "not run: the build failed"
fi
ensure_pg; PGSPOUT_PY_VENV="$work/py-venv" run_stage python stage_script tests/python/run.sh
run_stage sdist stage_sdist
if [ "$(id -u)" = 0 ]; then
  ensure_pg; run_stage wheel stage_wheel
else
  skip_stage wheel "not run: hiding the system libpq (unshare -m, mount --bind) needs root"
fi
# --- types: the Python API's static types (its own stage, needs no server)
run_stage types stage_script tests/python/typecheck.sh
# ---
ensure_pg; run_stage lua stage_script tests/lua/run.sh
ensure_pg; run_stage conformance stage_conformance
if [ "$build_ok" = 1 ]; then
  ensure_pg; run_stage install stage_install
  run_stage bench-cc stage_bench_cc
else
  skip_stage install "not run: the build failed"
  skip_stage bench-cc "not run: the build failed"
fi
run_stage no-cmocka stage_no_cmocka
if [ "$quick" = 0 ]; then
  ensure_pg; run_stage asan stage_asan
  ensure_pg; run_stage python-asan stage_script tests/python/run_asan.sh
  ensure_pg; run_stage lua-asan stage_script tests/lua/run_asan.sh
  if [ "$build_ok" = 1 ]; then
    ensure_pg; run_stage valgrind stage_valgrind
  else
    skip_stage valgrind "not run: the build failed"
  fi
  ensure_pg; run_stage tsan stage_tsan
  ensure_pg; run_stage faultinject stage_faultinject
  run_stage fuzz stage_script tests/fuzz/run.sh "${PGSPOUT_FUZZ_SECONDS:-30}"
else
  note "--quick: sanitizer, valgrind and fuzz stages not run"
fi

summary
