#!/usr/bin/env bash
# browser_test.sh - the OpenResty example's live control (Server-Sent
# Events, pause/resume/cancel, the status page) in a real nginx, then the
# status page in a real headless browser.
#
#   PGSPOUT_TEST_DSN=... [PGSPOUT_BUILD_DIR=build] tests/lua/browser_test.sh
#
# 1. tests/lua/sse_check.py (Python standard library): /sse events (rows in
#    order, progress with ETA, end), the rate, a client that leaves (stream,
#    query and pooled connection released), pause/resume/cancel, a backend
#    terminated mid-stream (an error event), 404/405/400 answers, the page.
# 2. tests/lua/browser_test.py: Debian's chromium, driven through
#    chromium-driver by Selenium (from PyPI, in a venv kept in
#    $PGSPOUT_BUILD_DIR/browser-venv): open /status, start a stream, watch
#    its progress move, pause (no progress, the backend waits in
#    ClientWrite), resume (progress again), cancel (the query is gone).
# Part 2 needs /usr/bin/chromium and /usr/bin/chromedriver (scripts/deps.sh
# installs them): without them it is skipped with a SKIP line, except under
# CI=true, where that is a failure. Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${PGSPOUT_BUILD_DIR:-build}
case "$build" in /*) ;; *) build=$root/$build ;; esac
mod=$build/bindings/lua
examples=$root/bindings/lua/examples
: "${PGSPOUT_TEST_DSN:?PGSPOUT_TEST_DSN is not set}"
NGINX=${NGINX:-nginx}
PY=${PYTHON:-/usr/bin/python3}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
SELENIUM=selenium==4.51.0

fail() { echo "browser_test: FAIL: $*" >&2; exit 1; }
[ -f "$mod/pgspout_core.so" ] || fail "$mod/pgspout_core.so not built"
command -v psql >/dev/null || fail "psql not found (postgresql-client)"

prefix=$(mktemp -d /tmp/pgspout-browser.XXXXXX)
mkdir -p "$prefix/logs" "$prefix/tmp"
nginx_pid=""
cleanup() {
  local rc=$?
  if [ -n "$nginx_pid" ]; then
    kill "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ]; then
    echo "--- nginx error.log (last 40 lines)" >&2
    tail -n 40 "$prefix/logs/error.log" >&2 || true
  fi
  rm -rf "$prefix"
  exit $rc
}
trap cleanup EXIT

# shellcheck source=tests/lua/ngx_lib.sh
. "$here/ngx_lib.sh"
ngx_example_start "$prefix" "$mod" "$examples"
echo "browser_test: nginx up on port $port"

"$PY" "$here/sse_check.py" "$base" || fail "sse_check.py"

# --- part 2: the page in headless Chromium
missing=""
for b in "$CHROMIUM" "$CHROMEDRIVER"; do [ -x "$b" ] || missing="$missing $b"; done
if [ -n "$missing" ]; then
  if [ "${CI:-}" = true ]; then
    fail "no$missing: the browser test cannot run (bash scripts/deps.sh installs chromium and chromium-driver)"
  fi
  echo "browser_test: SKIP: headless browser test: no$missing (bash scripts/deps.sh, or apt-get install chromium chromium-driver)"
  exit 0
fi
venv=$build/browser-venv
if ! "$venv/bin/python" -c 'import selenium' 2>/dev/null ||
   [ "$("$venv/bin/python" -c 'import selenium; print(selenium.__version__)')" != "${SELENIUM#*==}" ]; then
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$SELENIUM" \
    || fail "pip install $SELENIUM into $venv"
fi
echo "browser_test: $("$CHROMIUM" --version 2>/dev/null), $("$CHROMEDRIVER" --version | cut -d' ' -f1-2), selenium ${SELENIUM#*==}"
# SE_OFFLINE: Selenium must use the chromium and driver given, never fetch any
SE_OFFLINE=true CHROMIUM=$CHROMIUM CHROMEDRIVER=$CHROMEDRIVER \
  "$venv/bin/python" "$here/browser_test.py" "$base" || fail "browser_test.py"

grep -E '\[(alert|emerg|crit)\]|signal [0-9]+|core dumped' "$prefix/logs/error.log" \
  && fail "nginx logged a crash"
echo "browser_test: all checks passed"
