#!/usr/bin/env bash
# bench/arrow/run.sh - pgspout's Arrow path against ADBC, ConnectorX and
# pandas.read_sql on psycopg 3, one run on one server (issue 12, "Measure").
# Not a test: see bench/arrow/README.md.
#
#   bash bench/arrow/run.sh                 # everything (about 10 minutes on 2 cores)
#   bash bench/arrow/run.sh --rows 100000 --wide-rows 20000 --runs 1   # quick look
#
# Options:
#   --rows N          rows of the typed and json datasets (default 1000000)
#   --wide-rows N     rows of the wide dataset (default 200000)
#   --runs N          timed runs per client and dataset, best reported (default 3)
#   --big-factor N    the typed result N times larger for peak RSS (default 10;
#                     1 skips it): bench_typed CROSS JOIN generate_series(1, N)
#   --big-runs N      runs of the larger result (default 1)
#   --datasets LIST   typed,json,wide (default all three)
#   --clients LIST    pgspout_binary,pgspout_reader,pgspout_table,adbc,connectorx,pandas
#                     (default all; bench/arrow/client.py describes them)
#   --max-memory SIZE pgspout's max_memory (default 64MB)
#   --no-install      use bench/arrow/.venv as it is (no pip)
#   --no-load         the bench_* tables are there already: do not (re)load
#   --dsn URI         use this server (postgresql://...) instead of a
#                     throwaway one; its bench_json/typed/wide tables are replaced
#
# The venv bench/arrow/.venv (/usr/bin/python3 -m venv) gets the peers from
# PyPI at their current releases and `pip install .` of this repository (the
# only C built here). Writes bench/arrow/results.md (+ results.json, every
# run) and prints it. Exit status 1 if a client failed or any checksum
# differs from the server's.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

rows=1000000
wide_rows=200000
runs=3
big_factor=10
big_runs=1
datasets=typed,json,wide
clients=pgspout_binary,pgspout_reader,pgspout_table,adbc,connectorx,pandas
max_memory=64MB
install=1
load=1
dsn=""
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift ;;
    --wide-rows) wide_rows=$2; shift ;;
    --runs) runs=$2; shift ;;
    --big-factor) big_factor=$2; shift ;;
    --big-runs) big_runs=$2; shift ;;
    --datasets) datasets=$2; shift ;;
    --clients) clients=$2; shift ;;
    --max-memory) max_memory=$2; shift ;;
    --no-install) install=0 ;;
    --no-load) load=0 ;;
    --dsn) dsn=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "arrow-bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { echo "arrow-bench: $*" >&2; }
venv=$root/bench/arrow/.venv
py=$venv/bin/python

bash scripts/deps.sh # psql, the server, /usr/bin/time, a compiler for pip install .

# ------------------------------------------------------------------ venv
if [ ! -x "$py" ]; then
  say "creating $venv"
  /usr/bin/python3 -m venv "$venv"
fi
# client -> the PyPI packages it needs; a client whose packages do not
# install is reported and left out, the others still run
declare -A needs=(
  [pgspout_binary]="pyarrow"
  [pgspout_reader]="pyarrow"
  [pgspout_table]="pyarrow"
  [adbc]="pyarrow adbc-driver-manager adbc-driver-postgresql"
  [connectorx]="pyarrow connectorx"
  [pandas]="pyarrow pandas psycopg[binary]"
)
missing=" "
if [ "$install" = 1 ]; then
  "$py" -m pip install -q --upgrade pip >&2
  # polars: the issue's Arrow consumers; only its version is reported
  for pkg in pyarrow pandas polars adbc-driver-manager adbc-driver-postgresql connectorx 'psycopg[binary]'; do
    say "pip install --upgrade $pkg"
    "$py" -m pip install -q --upgrade "$pkg" >&2 || { say "WARNING: $pkg did not install from PyPI"; missing+="$pkg "; }
  done
  say "pip install . (pgspout, the C core and the Python extension) into $venv"
  if ! "$py" -m pip install -q --force-reinstall --no-deps . >&2; then
    say "WARNING: pip install . failed: pgspout's clients are left out"
    missing+="pgspout "
  fi
fi
IFS=, read -r -a client_list <<<"$clients"
run_clients=()
for c in "${client_list[@]}"; do
  [ -n "${needs[$c]+x}" ] || { say "unknown client $c"; exit 2; }
  deps=${needs[$c]}
  [[ $c == pgspout* ]] && deps+=" pgspout"
  ok=1
  for d in $deps; do [[ $missing == *" $d "* ]] && ok=0; done
  if [ "$ok" = 1 ]; then run_clients+=("$c"); else say "WARNING: $c left out (a package it needs is missing)"; fi
done
[ "${#run_clients[@]}" -gt 0 ] || { say "no client can run"; exit 1; }
run_clients_csv=$(IFS=,; echo "${run_clients[*]}")

# ---------------------------------------------------------------- server
pgdir=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() { if [ -n "$pgdir" ]; then bash "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "$dsn" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-arrow-bench.XXXXXX")
  # as bench/run.sh: the datasets fit in shared_buffers; no JIT or parallel
  # plans to vary the server's side between runs
  exports=$(PGSPOUT_PG_CONF=$'shared_buffers = 1GB\njit = off\nmax_parallel_workers_per_gather = 0' \
    bash scripts/pg-throwaway.sh start "$pgdir")
  eval "$exports"
  dsn="postgresql://pgspout@127.0.0.1:$PGPORT/pgspout"
  say "PostgreSQL on port $PGPORT"
fi

has() { if [[ ",$datasets," == *",$1,"* ]]; then echo 1; else echo 0; fi; }
IFS=, read -r -a dataset_list <<<"$datasets"
for d in "${dataset_list[@]}"; do
  case "$d" in json | typed | wide) ;; *) say "unknown dataset $d (typed, json, wide)"; exit 2 ;; esac
done
typed=$(has typed)
[ "$big_factor" -gt 1 ] && typed=1 # the larger result is bench_typed
if [ "$load" = 1 ]; then
  say "loading $datasets ($rows rows; wide: $wide_rows rows)"
  psql -X -q -d "$dsn" -v rows="$rows" -v wide_rows="$wide_rows" -v json="$(has json)" \
    -v typed="$typed" -v wide="$(has wide)" -f bench/datasets.sql >&2
fi

server=$(psql -X -d "$dsn" -tAc 'SHOW server_version')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
where='given by --dsn'
[ -n "$pgdir" ] && where='scripts/pg-throwaway.sh with shared_buffers=1GB, jit=off, no parallel workers'
headers=(--header "- PostgreSQL $server on the same machine over TCP loopback ($where); commit $rev")
headers+=(--header "- machine: $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2}') GB RAM")
[ "$missing" != " " ] && headers+=(--header "- NOT installable from PyPI here, left out:$missing")
"$py" bench/arrow/arrow_bench.py --uri "$dsn" --rows "$rows" --wide-rows "$wide_rows" \
  --runs "$runs" --big-factor "$big_factor" --big-runs "$big_runs" --datasets "$datasets" \
  --clients "$run_clients_csv" --big-clients "$run_clients_csv" --max-memory "$max_memory" \
  --out bench/arrow/results.md "${headers[@]}"
