#!/usr/bin/env bash
# deps.sh - install (as root) or check (as anyone) what pgspout needs on Debian 12.
#
#   bash scripts/deps.sh          # idempotent; quiet when everything is present
#
# As root: when a package is missing, one `apt-get update` and ONE
# `apt-get install -y` of the whole list (luajit2/libluajit2-5.1-dev replace
# Debian's luajit/libluajit-5.1-dev, so they must come in the same call as the
# rest). As a normal user: only checks, and says what to run when something is
# missing. Either way it then verifies the files the build and the tests rely
# on, and fails with a clear message if one is absent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config time
  libpq-dev postgresql
  swig python3-dev python3-venv
  libcmocka-dev clang clang-format libclang-rt-14-dev valgrind
  libtsan2 # gcc ThreadSanitizer runtime (tsan stage; libgcc-12-dev pulls it in too)
  curl openssl
  wrk # HTTP load generator (bench/openresty)
  nginx-light libnginx-mod-http-lua lua-resty-core
  luajit2 libluajit2-5.1-dev lua5.1 liblua5.1-0-dev
  lua-busted lua-cjson lua-sql-postgres luarocks
  chromium chromium-driver # the example server's status page in a headless browser (browser_test.sh)
)

say() { echo "deps: $*" >&2; }
die() { echo "deps: ERROR: $*" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$status" in
    ii*) ;;
    *) missing+=("$p") ;;
  esac
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    die "missing Debian packages: ${missing[*]}
  run as root:  bash scripts/deps.sh
  (or: sudo apt-get update && sudo apt-get install -y ${packages[*]})"
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  # One call for everything: luajit2 conflicts with Debian's luajit, and apt
  # can only resolve that when it sees the whole set at once.
  apt-get install -y -q "${packages[@]}" >&2 \
    || die "apt-get install failed"
fi

# The files the build and the test suites rely on.
problems=()
need() { [ -e "$1" ] || problems+=("$1 ($2)"); }
need /usr/include/luajit-2.1/lua.h libluajit2-5.1-dev
need /usr/bin/luajit luajit2
need /usr/bin/lua5.1 lua5.1
need /usr/bin/busted lua-busted
need /usr/lib/nginx/modules/ngx_http_lua_module.so libnginx-mod-http-lua
need /usr/share/lua/5.1/resty/core.lua lua-resty-core
need /usr/bin/swig swig
need /usr/include/cmocka.h libcmocka-dev
need /usr/include/postgresql/libpq-fe.h libpq-dev
need /usr/bin/valgrind valgrind
need /usr/bin/setarch util-linux
need /usr/bin/time time
need /usr/bin/wrk wrk
need /usr/bin/python3 python3
need /usr/bin/chromium chromium
need /usr/bin/chromedriver chromium-driver
pg_ctl=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && pg_ctl=$d/pg_ctl; done
[ -n "$pg_ctl" ] || problems+=("/usr/lib/postgresql/*/bin/pg_ctl (postgresql)")
for tool in cmake pkg-config cc clang nginx curl; do
  command -v "$tool" >/dev/null 2>&1 || problems+=("$tool on PATH")
done
if ! /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  problems+=("/usr/bin/python3 -m venv with ensurepip (python3-venv)")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  for p in "${problems[@]}"; do say "missing: $p"; done
  die "dependencies incomplete (run 'bash scripts/deps.sh' as root on Debian 12)"
fi
exit 0
