#!/usr/bin/env bash
# bench/partitions/run.sh - partitioned reads of one table in one run (issue
# 16, "Measure"): pgspout.dask.read_table and pgspout --partitions against
# dask.dataframe.read_sql_table (SQLAlchemy + psycopg2) and ConnectorX
# partition_on, at 1, 2 and 4 partitions. Not a test: see README.md here.
#
#   bash bench/partitions/run.sh                    # 5M rows, 2 runs (about 15 minutes on 2 cores)
#   bash bench/partitions/run.sh --rows 200000 --runs 1 --parts 1,2   # quick look
#
# Options:
#   --rows N        rows of bench_part (default 5000000; reloaded when it differs)
#   --runs N        runs per client and partition count, best reported (default 2)
#   --parts LIST    partition counts (default 1,2,4)
#   --clients LIST  pgspout_dask,pgspout_cli,dask_read_sql_table,connectorx (default all)
#   --dsn URI       use this server (postgresql://user@host:port/db; its bench_part
#                   table is replaced) instead of a throwaway one
#   --no-install    use bench/partitions/.venv as it is
#
# The venv bench/partitions/.venv (/usr/bin/python3 -m venv, untracked) gets
# dask[dataframe,distributed], SQLAlchemy, psycopg2-binary, ConnectorX,
# pyarrow and pandas from PyPI at their current releases, and `pip install .`
# of this repository. The CLI is build/core/pgspout ($PGSPOUT_BUILD_DIR),
# built when missing. Writes bench/partitions/results.md and results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

rows=5000000
runs=2
parts=1,2,4
clients=pgspout_dask,pgspout_cli,dask_read_sql_table,connectorx
dsn=""
install=1
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift ;;
    --runs) runs=$2; shift ;;
    --parts) parts=$2; shift ;;
    --clients) clients=$2; shift ;;
    --dsn) dsn=$2; shift ;;
    --no-install) install=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "partitions-bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
say() { echo "partitions-bench: $*" >&2; }

bash scripts/deps.sh # the server, /usr/bin/time, a compiler for pip install .

venv=$root/bench/partitions/.venv
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  /usr/bin/python3 -m venv "$venv"
  install=1
fi
if [ "$install" = 1 ]; then
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q "dask[dataframe,distributed]" sqlalchemy psycopg2-binary \
    connectorx pyarrow pandas
  "$venv/bin/pip" install -q "$root"
fi

build=${PGSPOUT_BUILD_DIR:-$root/build}
if [ ! -x "$build/core/pgspout" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target pgspout_cli
fi

pgdir=""
cleanup() { if [ -n "$pgdir" ]; then bash scripts/pg-throwaway.sh stop "$pgdir" || true; rm -rf "$pgdir"; fi; }
trap cleanup EXIT
if [ -z "$dsn" ]; then
  pgdir=$(mktemp -d /tmp/pgspout-partbench-pg.XXXXXX)
  chmod 755 "$pgdir"
  eval "$(bash scripts/pg-throwaway.sh start "$pgdir")"
  # as bench/run.sh: no parallel workers (each partition is one backend)
  psql -qc "ALTER SYSTEM SET max_parallel_workers_per_gather = 0" -c "SELECT pg_reload_conf()" >/dev/null
  dsn="postgresql://$PGUSER@127.0.0.1:$PGPORT/$PGDATABASE"
  say "throwaway PostgreSQL: $dsn"
fi

"$venv/bin/python" bench/partitions/bench.py --dsn "$dsn" --cli "$build/core/pgspout" \
  --rows "$rows" --runs "$runs" --parts "$parts" --clients "$clients"
