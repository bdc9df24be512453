#!/usr/bin/env bash
# run.sh - wrk against the OpenResty example server (bindings/lua/examples),
# pgspout pooled vs unpooled. See README.md.
#
#   bash bench/openresty/run.sh                 # ~4 minutes: 8 runs of 10 s + a 60 s long run
#   bash bench/openresty/run.sh --duration 5 --long 0 --modes pooled   # a quick look
#   bash bench/openresty/run.sh --dsn 'host=... dbname=...'   # an existing server (table typed replaced)
#
# Options (passed on to measure.py): --duration S, --warmup S, --conns 16,64,
# --modes pooled,unpooled, --endpoints row,stream, --long S (0: none),
# --long-conns N, --long-every S, --out DIR (default bench/openresty/results).
# Build dir: $PGSPOUT_BUILD_DIR or build/ (built here with the Lua module
# when absent).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
build=${PGSPOUT_BUILD_DIR:-$root/build}
say() { echo "openresty-bench: $*" >&2; }

dsn=""
pass=()
out=$here/results
while [ $# -gt 0 ]; do
  case "$1" in
    --dsn) dsn=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --duration|--warmup|--conns|--modes|--endpoints|--long|--long-conns|--long-every) pass+=("$1" "$2"); shift 2 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

bash scripts/deps.sh
command -v wrk >/dev/null || { say "wrk not installed (apt-get install wrk; scripts/deps.sh does as root)"; exit 1; }

if [ ! -f "$build/bindings/lua/pgspout_core.so" ]; then
  say "building $build with the Lua module"
  cmake -S . -B "$build" -G Ninja -DPGSPOUT_BUILD_LUA=ON >&2
  cmake --build "$build" -j "$(nproc)" >&2
fi

pgdir=""
cleanup() {
  local rc=$?
  [ -n "$pgdir" ] && bash scripts/pg-throwaway.sh stop "$pgdir" >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
pglog=""
if [ -z "$dsn" ]; then
  pgdir=$(mktemp -d /tmp/pgspout-orbench-pg.XXXXXX)
  # log_connections: the backends the example opens are counted from the log
  eval "$(PGSPOUT_PG_CONF=$'log_connections = on\nmax_connections = 300' bash scripts/pg-throwaway.sh start "$pgdir")"
  dsn=$PGSPOUT_TEST_DSN
  pglog=$pgdir/server.log
fi

say "loading table typed (1,000,000 rows, primary key on id)"
psql -X -q -v ON_ERROR_STOP=1 -d "$dsn" <<'SQL'
DROP TABLE IF EXISTS typed;
CREATE TABLE typed (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2) NOT NULL);
INSERT INTO typed SELECT g, 'name-' || md5(g::text), round((g % 100000) / 7.0, 2)
  FROM generate_series(1, 1000000) g;
VACUUM (FREEZE, ANALYZE) typed;
SQL

python3 "$here/measure.py" --root "$root" --build "$build" --dsn "$dsn" --pglog "$pglog" \
  --out "$out" "${pass[@]}"
