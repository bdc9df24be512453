#!/usr/bin/env bash
# run_asan.sh - the Lua specs against an AddressSanitizer + UndefinedBehavior-
# Sanitizer build of the Lua module (issue 6); tests/python/run_asan.sh is
# the Python counterpart.
#
#   tests/lua/run_asan.sh       # PGSPOUT_TEST_DSN=... to use a running server
#
# 1. configures and builds $PGSPOUT_LUA_ASAN_DIR (default build-lua-asan) with
#    -DPGSPOUT_SANITIZE=address,undefined, which compiles and links the core
#    and pgspout_core.so with -fsanitize; fails unless the module links
#    libasan. The sanitizer runtimes are preloaded into the interpreter (the
#    exact ones the module links, as ldd reports them), since luajit and
#    lua5.1 are not built with ASan themselves.
# 2. every busted spec (tests/lua/*_spec.lua: fault, bad input, GC, limits,
#    registry, streams, types) under LuaJIT, with leak detection ON. LuaJIT
#    runs fine under ASan: its allocator is its own, on mmap (luajit does
#    not even import malloc), so the two never share memory. The leak check
#    is exact because busted ends with os.exit(code, true), which in LuaJIT
#    closes the state: every stream's and connection's __gc has run, so
#    whatever LSan still finds was leaked by pgspout. The catch: the memory
#    LuaJIT hands out (userdata, strings) is invisible to ASan, hence
# 3. the same specs under PUC Lua 5.1 (the same ABI; run.sh also uses it),
#    whose allocator is realloc, so ASan also checks the module's accesses
#    to the interpreter's strings and userdata. Leak detection is off there:
#    Lua 5.1's os.exit ignores "close", so objects a spec still references
#    at exit would be reported although nothing leaked. PGSPOUT_LUA51=0
#    skips this pass.
# 4. the registry stress (tests/lua/registry_stress.c) built with the
#    sanitizers against the ASan static core, with leak detection on -
#    PGSPOUT_REGISTRY_STRESS=<seconds> (default 8, as in run.sh: it fails
#    unless a stream completes, which takes a few seconds under ASan), 0 to
#    skip.
# Starts a throwaway PostgreSQL (scripts/pg-throwaway.sh) unless
# PGSPOUT_TEST_DSN is set. Fails on any failure, error, sanitizer report, or
# zero tests run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${PGSPOUT_LUA_ASAN_DIR:-build-lua-asan}
case "$build" in /*) ;; *) build=$root/$build ;; esac
mod=$build/bindings/lua
jobs=${PGSPOUT_JOBS:-$(nproc 2>/dev/null || echo 2)}
LUAJIT=${LUAJIT:-luajit}
BUSTED=${BUSTED:-$(command -v busted || echo /usr/bin/busted)}

. "$here/lib.sh"

# ------------------------------------------------------------------ build
gen=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
# The cmocka suites already run under the sanitizers in build-asan/ (the
# asan stage): only the core and the Lua module are built here.
(cd "$root" && cmake -S . -B "$build" "${gen[@]}" -DPGSPOUT_WERROR=ON -DPGSPOUT_BUILD_LUA=ON \
  -DPGSPOUT_BUILD_TESTS=OFF -DPGSPOUT_BUILD_CLI=OFF -DPGSPOUT_SANITIZE=address,undefined)
cmake --build "$build" -j "$jobs" --target pgspout_lua pgspout_static

so=$mod/pgspout_core.so
asan_rt=$(ldd "$so" | awk '$1 ~ /^libasan\.so/ && $3 ~ /^\// { print $3 }')
ubsan_rt=$(ldd "$so" | awk '$1 ~ /^libubsan\.so/ && $3 ~ /^\// { print $3 }')
if [ -z "$asan_rt" ] || [ -z "$ubsan_rt" ]; then
  echo "run_asan.sh: $so does not link libasan and libubsan: not a sanitizer build" >&2
  echo "(check PGSPOUT_SANITIZE in CMakeLists.txt and $build/CMakeCache.txt)" >&2
  ldd "$so" >&2
  exit 1
fi
echo "=== $so links $asan_rt and $ubsan_rt"

# ----------------------------------------------------------------- server
lua_server luaasan

export LUA_PATH="$mod/?.lua;$here/?.lua;;"
export LUA_CPATH="$mod/?.so;;"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

preload="LD_PRELOAD=$asan_rt $ubsan_rt"
lua_busted "LuaJIT + ASan/UBSan" "$LUAJIT" "$preload" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
if [ "${PGSPOUT_LUA51:-1}" != 0 ]; then
  command -v lua5.1 >/dev/null || { echo "run_asan.sh: lua5.1 not installed (PGSPOUT_LUA51=0 skips)" >&2; exit 1; }
  lua_busted "Lua 5.1 + ASan/UBSan" "$(command -v lua5.1)" "$preload" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
fi

stress_secs=${PGSPOUT_REGISTRY_STRESS:-8}
if [ "$stress_secs" != 0 ]; then
  echo "=== registry stress under ASan/UBSan (${stress_secs}s)"
  # the compiler the core was built with, so the sanitizer runtimes match
  cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 lua_registry_stress "$stress_secs" \
    "$build/core/libpgspout.a" "${cc:-cc}" -O1 -fsanitize=address,undefined \
    -fno-omit-frame-pointer -fno-sanitize-recover=all
fi
echo "run_asan.sh: all Lua tests passed under ASan/UBSan"
