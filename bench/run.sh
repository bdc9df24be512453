#!/usr/bin/env bash
# bench/run.sh - the pgspout benchmark: its own PostgreSQL, two 1M-row
# datasets and a 200k-row, 40-column one, every client measured in one run.
# Not a test: see bench/README.md.
#
#   bash bench/run.sh                  # everything (about 15 minutes on 2 cores)
#   bash bench/run.sh --rows 100000 --runs 1 --only 'raw|pgspout_c'   # quick look
#
# Options:
#   --rows N          rows of the json and typed datasets (default 1000000)
#   --wide-rows N     rows of the wide dataset (default 200000)
#   --runs N          timed runs per client, best reported (default 3)
#   --datasets LIST   json,typed,wide (default all three)
#   --only REGEX      clients whose key matches (see bench/bench.py)
#   --no-peers        do not create/update the Python peers' venv
#   --no-transport    skip the transport probe (bench/transport.c)
#   --transport-only  only the transport probe
#   --soak SECONDS    only the soak (bench/soak.c): concurrent streams for
#                     SECONDS, RSS sampled; fails if memory grows (issue 6)
#   --soak-threads N  threads for --soak (default 16)
#   --dsn URI         use this server (postgresql://...) instead of a throwaway
#                     one; the bench_json/typed/wide tables there are replaced
#   --baseline DIR    also measure the CLI, Python and Lua clients of an earlier
#                     commit built by `bash bench/baseline.sh REV DIR`,
#                     interleaved with these; adds a before/after table
#
# Writes bench/results/latest.md (+ latest.json), bench/results/transport.md
# and, with --soak, bench/results/soak.md.
# Build dir: $PGSPOUT_BUILD_DIR or build/ (built here when needed). Python
# peers live in bench/.peers/venv, installed from PyPI at their current
# releases (plus `pip install .` of pgspout itself once pyproject.toml exists).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

rows=1000000
wide_rows=200000
runs=3
datasets=json,typed,wide
only=""
peers=1
transport=1
clients=1
soak=0
soak_threads=16
dsn=""
baseline=""
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift ;;
    --wide-rows) wide_rows=$2; shift ;;
    --runs) runs=$2; shift ;;
    --datasets) datasets=$2; shift ;;
    --only) only=$2; shift ;;
    --no-peers) peers=0 ;;
    --no-transport) transport=0 ;;
    --transport-only) clients=0 ;;
    --soak) soak=$2; shift ;;
    --soak-threads) soak_threads=$2; shift ;;
    --dsn) dsn=$2; shift ;;
    --baseline) baseline=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { echo "bench: $*" >&2; }
py=/usr/bin/python3
build=${PGSPOUT_BUILD_DIR:-$root/build}
bin=$build/bench
venv=$root/bench/.peers/venv
results=$root/bench/results
mkdir -p "$results" "$bin"

bash scripts/deps.sh

# ---------------------------------------------------------------- build
jobs=$(nproc 2>/dev/null || echo 2)
lib_ok=1
if [ ! -f "$build/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S . -B "$build" "${gen[@]}" -DPGSPOUT_BUILD_LUA=ON >&2 || lib_ok=0
fi
if [ "$lib_ok" = 1 ]; then
  cmake --build "$build" -j "$jobs" >&2 || lib_ok=0
fi
[ "$lib_ok" = 1 ] || say "WARNING: the pgspout build failed; only clients that do not need it can run"

base_args=()
if [ -n "$baseline" ]; then
  [ -f "$baseline/rev" ] || { say "--baseline $baseline: not made by bench/baseline.sh"; exit 2; }
  base_args=(--baseline "$(cd "$baseline" && pwd)")
  bt() { sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$1/CMakeCache.txt" 2>/dev/null; }
  [ "$(bt "$build")" = "$(bt "$baseline/build")" ] \
    || say "WARNING: $build is a $(bt "$build") build, the baseline's a $(bt "$baseline/build") one"
fi

cflags=(-std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE)
read -r -a pq_flags <<<"$(pkg-config --cflags --libs libpq)"
cc "${cflags[@]}" -o "$bin/raw_libpq" bench/raw_libpq.c "${pq_flags[@]}"
cc "${cflags[@]}" -o "$bin/transport" bench/transport.c "${pq_flags[@]}"
rm -f "$bin/pgspout_c"
if [ -e "$build/core/libpgspout.so" ]; then
  cc "${cflags[@]}" -Icore/include -o "$bin/pgspout_c" bench/pgspout_c.c \
    -L"$build/core" -lpgspout -Wl,-rpath,"$build/core" "${pq_flags[@]}" \
    || say "WARNING: bench/pgspout_c.c did not compile"
  cc "${cflags[@]}" -Icore/include -o "$bin/overhead" bench/overhead.c \
    -L"$build/core" -lpgspout -Wl,-rpath,"$build/core" "${pq_flags[@]}" \
    || say "WARNING: bench/overhead.c did not compile"
fi

if [ "$soak" != 0 ]; then
  [ -e "$build/core/libpgspout.so" ] || { say "--soak needs the library built"; exit 1; }
  cc "${cflags[@]}" -pthread -Icore/include -o "$bin/soak" bench/soak.c \
    -L"$build/core" -lpgspout -Wl,-rpath,"$build/core" "${pq_flags[@]}"
  transport=0
  clients=0
  peers=0
fi

# ------------------------------------------------------ Python peers venv
if [ "$clients" = 1 ] && [ "$peers" = 1 ]; then
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$py" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --upgrade psycopg2-binary 'psycopg[binary]' asyncpg uvloop >&2
  if [ -f pyproject.toml ]; then
    say "pip install . (pgspout's Python package) into the bench venv"
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps . >&2 \
      || say "WARNING: pip install . failed; the pgspout Python client will not be measured"
  fi
fi

# ---------------------------------------------------------------- server
pgdir=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() { if [ -n "$pgdir" ]; then bash "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -z "$dsn" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-bench.XXXXXX")
  # Both datasets fit in shared_buffers; no JIT or parallel plans to vary the
  # server's side between runs.
  exports=$(PGSPOUT_PG_CONF=$'shared_buffers = 1GB\njit = off\nmax_parallel_workers_per_gather = 0' \
    bash scripts/pg-throwaway.sh start "$pgdir")
  eval "$exports"
  dsn="postgresql://pgspout@127.0.0.1:$PGPORT/pgspout"
  say "PostgreSQL on port $PGPORT"
fi
kv_dsn=$dsn
if [ -n "$pgdir" ]; then kv_dsn=$PGSPOUT_TEST_DSN; fi

server=$(psql -X -d "$dsn" -tAc 'SHOW server_version')
if [ "$soak" != 0 ]; then
  say "soak: $soak_threads threads for $soak s"
  interval=$((soak / 60 > 5 ? soak / 60 : 5))
  {
    echo "# pgspout soak ($(date '+%Y-%m-%d %H:%M'))"
    echo
    echo "PostgreSQL $server; bench/soak.c --threads $soak_threads --seconds $soak"
    echo
    "$bin/soak" --threads "$soak_threads" --seconds "$soak" --interval "$interval" "$kv_dsn"
  } | tee "$results/soak.md"
  exit "${PIPESTATUS[0]}"
fi
has() { if [[ ",$datasets," == *",$1,"* ]]; then echo 1; else echo 0; fi; }
IFS=, read -r -a dataset_list <<<"$datasets"
for d in "${dataset_list[@]}"; do
  case "$d" in json | typed | wide) ;; *) say "unknown dataset $d (json, typed, wide)"; exit 2 ;; esac
done
say "loading $datasets ($rows rows; wide: $wide_rows rows)"
psql -X -q -d "$dsn" -v rows="$rows" -v wide_rows="$wide_rows" -v json="$(has json)" \
  -v typed="$(has typed)" -v wide="$(has wide)" -f bench/datasets.sql >&2
libpq=$(pkg-config --modversion libpq)
rev=${PGSPOUT_BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}

status=0
if [ "$transport" = 1 ]; then
  say "transport probe"
  queries=()
  [ "$(has json)" = 1 ] && queries+=("json=SELECT data FROM bench_json")
  [ "$(has typed)" = 1 ] && queries+=("typed=SELECT * FROM bench_typed")
  [ "$(has wide)" = 1 ] && queries+=("wide=SELECT * FROM bench_wide")
  {
    echo "# libpq transport probe ($(date '+%Y-%m-%d %H:%M'), commit $rev)"
    echo
    echo "PostgreSQL $server, client libpq $libpq, $rows rows per dataset (wide: $wide_rows), $(nproc) cores."
    echo "Client CPU and peak RSS from the client process; server CPU from the backend's /proc entry; see bench/transport.c."
    echo
    "$bin/transport" --runs "$runs" "$kv_dsn" "${queries[@]}"
  } >"$results/transport.md.tmp" || status=1
  mv "$results/transport.md.tmp" "$results/transport.md"
  cat "$results/transport.md"
fi

if [ "$clients" = 1 ] && [ -x "$bin/overhead" ] && [ "$(has json)" = 1 ]; then
  # issue 3: metrics and every limit on, against the same stream without them
  say "metrics and limits overhead"
  "$bin/overhead" "$kv_dsn" "SELECT data FROM bench_json" "$runs" | tee "$results/overhead.md" \
    || status=1
fi

if [ "$clients" = 1 ]; then
  say "clients"
  "$py" bench/bench.py --dsn "$kv_dsn" --uri "$dsn" --rows "$rows" --wide-rows "$wide_rows" --runs "$runs" \
    --datasets "$datasets" --only "$only" --bin "$bin" --build "$build" --venv "$venv" \
    --out "$results/latest.md" "${base_args[@]}" \
    --header "- PostgreSQL $server on the same machine over TCP loopback; client libpq $libpq; commit $rev" \
    || status=1
fi
exit "$status"
