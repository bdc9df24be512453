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
#    to skip - and the nginx fault tests under load (tests/lua/
#    nginx_fault_test.py: aborted requests, connection state isolation, a
#    server restart, killed idle backends, an exhausted pool; ~45 s, on a
#    PostgreSQL of their own) - PGSPOUT_NGINX_FAULT=0 to skip them;
# 5. the live-control test (tests/lua/browser_test.sh): the example's
#    Server-Sent Events and pause/resume/cancel endpoints over HTTP, then its
#    status page in headless Chromium (Selenium) - PGSPOUT_BROWSER=0 to skip;
#    without chromium it prints SKIP, and fails under CI=true.
# Starts a throwaway PostgreSQL (scripts/pg-throwaway.sh) unless
# PGSPOUT_TEST_DSN is set. Fails on any failure, error, or zero tests run.
# The server, the TAP verdict and the stress build are shared with
# run_asan.sh (tests/lua/lib.sh).
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

. "$here/lib.sh"
lua_server lua

export LUA_PATH="$mod/?.lua;$here/?.lua;;"
export LUA_CPATH="$mod/?.so;;"

lua_busted LuaJIT "$LUAJIT"
if [ "${PGSPOUT_LUA51:-1}" != 0 ] && command -v lua5.1 >/dev/null; then
  lua_busted "Lua 5.1" "$(command -v lua5.1)"
fi
stress_secs=${PGSPOUT_REGISTRY_STRESS:-8}
if [ "$stress_secs" != 0 ]; then
  echo "=== registry stress (${stress_secs}s)"
  lua_registry_stress "$stress_secs" "$build/core/libpgspout.a" "${CC:-cc}" -O2
fi
if [ "${PGSPOUT_NGINX:-1}" != 0 ]; then
  echo "=== nginx integration test"
  "$here/nginx_test.sh"
  if [ "${PGSPOUT_NGINX_FAULT:-1}" != 0 ]; then
    echo "=== nginx fault tests (a PostgreSQL of their own, restarted)"
    "${PYTHON:-python3}" "$here/nginx_fault_test.py"
  fi
fi
if [ "${PGSPOUT_BROWSER:-1}" != 0 ]; then
  echo "=== live control: SSE, pause/resume/cancel, the status page in headless Chromium"
  "$here/browser_test.sh"
fi
echo "run.sh: all Lua tests passed"
