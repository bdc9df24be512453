#!/usr/bin/env bash
# run.sh - the Lua test suite against a real PostgreSQL.
#
#   cmake -S . -B build -DPGSPOUT_BUILD_LUA=ON && cmake --build build
#   tests/lua/run.sh
#
# 1. busted specs (tests/lua/*_spec.lua) under LuaJIT, with package.path/cpath
#    pointing at the built module ($PGSPOUT_BUILD_DIR, default build);
# 2. the same specs under PUC Lua 5.1 when lua5.1 is installed (the module is
#    built against LuaJIT's headers; Lua 5.1 shares the ABI) - set
#    PGSPOUT_LUA51=0 to skip;
# 3. the registry stress (tests/lua/registry_stress.c: fetches, pause/resume,
#    cancel/close and reaping racing on shared ids from 11 threads; exactly-
#    once delivery checked) - PGSPOUT_REGISTRY_STRESS=<seconds>, 0 to skip;
# 4. the nginx integration test (tests/lua/nginx_test.sh) - PGSPOUT_NGINX=0
#    to skip.
# Starts a throwaway PostgreSQL (scripts/pg-throwaway.sh) unless
# PGSPOUT_TEST_DSN is set. Fails on any failure, error, or zero tests run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${PGSPOUT_BUILD_DIR:-build}
case "$build" in /*) ;; *) build=$root/$build ;; esac
export PGSPOUT_BUILD_DIR=$build
mod=$build/bindings/lua
LUAJIT=${LUAJIT:-luajit}
BUSTED=${BUSTED:-$(command -v busted || echo /usr/bin/busted)}

if [ ! -f "$mod/pgspout_core.so" ] || [ ! -f "$mod/pgspout.lua" ]; then
  echo "run.sh: $mod/pgspout_core.so not found; build it first:" >&2
  echo "  cmake -S . -B $build -DPGSPOUT_BUILD_LUA=ON && cmake --build $build" >&2
  exit 1
fi

pgdir=""
cleanup() {
  local rc=$?
  [ -n "$pgdir" ] && "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true
  exit $rc
}
trap cleanup EXIT
if [ -z "${PGSPOUT_TEST_DSN:-}" ]; then
  pgdir=$(mktemp -d /tmp/pgspout-lua-pg.XXXXXX)
  eval "$("$root/scripts/pg-throwaway.sh" start "$pgdir")"
fi
export PGSPOUT_TEST_DSN

export LUA_PATH="$mod/?.lua;$here/?.lua;;"
export LUA_CPATH="$mod/?.so;;"

# run_busted INTERPRETER LABEL: TAP output, fails on failures or zero tests
run_busted() {
  local lua=$1 label=$2 out
  out=$(mktemp)
  echo "=== busted under $label ($("$lua" -v 2>&1 | head -n1))"
  set +e
  (cd "$here" && "$lua" "$BUSTED" -o TAP --pattern=_spec "$here") 2>&1 | tee "$out"
  local status=${PIPESTATUS[0]}
  set -e
  local okc notok
  okc=$(grep -c '^ok ' "$out" || true)
  notok=$(grep -c '^not ok ' "$out" || true)
  rm -f "$out"
  echo "=== $label: $okc passed, $notok failed (busted exit $status)"
  [ "$status" -eq 0 ] && [ "$notok" -eq 0 ] && [ "$okc" -gt 0 ] || {
    echo "run.sh: FAIL under $label" >&2
    return 1
  }
}

run_busted "$LUAJIT" LuaJIT
if [ "${PGSPOUT_LUA51:-1}" != 0 ] && command -v lua5.1 >/dev/null; then
  run_busted "$(command -v lua5.1)" "Lua 5.1"
fi
stress_secs=${PGSPOUT_REGISTRY_STRESS:-8}
if [ "$stress_secs" != 0 ]; then
  echo "=== registry stress (${stress_secs}s)"
  lib=$build/core/libpgspout.a
  [ -f "$lib" ] || { echo "run.sh: $lib not built" >&2; exit 1; }
  bin=$(mktemp /tmp/pgspout-registry-stress.XXXXXX)
  pq_libs=$(pkg-config --libs libpq 2>/dev/null || echo -lpq)
  ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -I"$root/core/include" \
    "$here/registry_stress.c" "$lib" $pq_libs -lpthread -lm -o "$bin"
  "$bin" "$stress_secs" || { rm -f "$bin"; echo "run.sh: FAIL: registry stress" >&2; exit 1; }
  rm -f "$bin"
fi
if [ "${PGSPOUT_NGINX:-1}" != 0 ]; then
  echo "=== nginx integration test"
  "$here/nginx_test.sh"
fi
echo "run.sh: all Lua tests passed"
