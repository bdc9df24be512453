#!/usr/bin/env bash
# demo.sh - the main job: build pgspout, load demo data, stream it with the CLI.
#
#   bash scripts/demo.sh [DSN]
#
# Installs what is missing (as root, Debian 12), builds build/core/pgspout,
# and without a DSN starts a throwaway PostgreSQL in a temporary directory
# (removed at exit). It loads ROWS (default 100000) rows of typed columns and
# jsonb into the table pgspout_demo_events (with a DSN: created there, dropped
# at exit), streams them with
#   pgspout -d DSN -F ndjson --progress -o $OUT -c "SELECT ..."
# (OUT defaults to /tmp/pgspout-demo.ndjson; -o writes it atomically: only a
# stream that ended well leaves it) and checks the rows against the
# server: count, an md5 of every typed value, and a byte-exact md5 of the
# jsonb column streamed on its own. Exit code 0 only if everything matched.
# The progress line names its two byte counts: the values' bytes received
# from the server and the (larger) bytes of NDJSON written; so does the
# summary.
# PGSPOUT_CLI=/path/to/pgspout uses that binary (e.g. installed) and skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

case "${1:-}" in -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
dsn=${1:-}
rows=${ROWS:-100000}
out=${OUT:-/tmp/pgspout-demo.ndjson}
py=/usr/bin/python3

say() { echo "demo: $*" >&2; }

bash scripts/deps.sh

# ------------------------------------------------------------------ build
cli=${PGSPOUT_CLI:-}
if [ -z "$cli" ]; then
  if [ ! -f build/CMakeCache.txt ]; then
    gen=()
    command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
    cmake -S . -B build "${gen[@]}" >&2
  fi
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target pgspout_cli >&2
  cli=$root/build/core/pgspout
fi
[ -x "$cli" ] || { say "no pgspout CLI at $cli"; exit 1; }

# ----------------------------------------------------------------- server
bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/psql" ] && bindir=$d; done
psql_bin=${bindir:+$bindir/}psql
pgdir=""
own_table=0
metrics=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [ -n "$metrics" ]; then rm -f "$metrics"; fi
  if [ "$own_table" = 1 ] && [ -z "$pgdir" ]; then
    "$psql_bin" -X -q -d "$dsn" -c "DROP TABLE IF EXISTS pgspout_demo_events" >/dev/null 2>&1 || true
  fi
  if [ -n "$pgdir" ]; then bash "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$dsn" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-demo.XXXXXX")
  exports=$(bash scripts/pg-throwaway.sh start "$pgdir")
  eval "$exports"
  dsn=$PGSPOUT_TEST_DSN
  say "started a throwaway PostgreSQL: $dsn"
else
  say "using the given server; table pgspout_demo_events is created there and dropped at exit"
fi
sql() { "$psql_bin" -X -q -v ON_ERROR_STOP=1 -d "$dsn" "$@"; }

# ------------------------------------------------------------------- data
say "loading $rows rows into pgspout_demo_events"
own_table=1
sql -v rows="$rows" >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS pgspout_demo_events;
CREATE TABLE pgspout_demo_events (
    id         bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    kind       text NOT NULL,
    amount     numeric(12, 2),
    score      float8,
    ok         boolean,
    user_id    uuid,
    day        date,
    note       text,
    payload    jsonb
);
INSERT INTO pgspout_demo_events
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
       (ARRAY['click', 'view', 'purchase', 'signup'])[1 + g % 4],
       CASE WHEN g % 10 = 0 THEN NULL ELSE round((g % 100000) / 100.0, 2) END,
       CASE g WHEN 7 THEN 'NaN'::float8 WHEN 8 THEN 'Infinity'::float8
              WHEN 9 THEN '-0'::float8 ELSE g / 3.0::float8 END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE g % 3 <> 0 END,
       md5(g::text)::uuid,
       date '2024-01-01' + g % 366,
       CASE WHEN g % 1000 = 1 THEN E'tab\there, "quotes", back\\slash, ünïcödé ✓ 🐘\nsecond line'
            ELSE 'note ' || g END,
       jsonb_build_object('user', 'user' || g % 1000,
                          'items', jsonb_build_array(g % 7, g % 11, 'x' || g % 13),
                          'meta', jsonb_build_object('source', 'demo', 'n', g, 'even', g % 2 = 0))
FROM generate_series(1, :rows) g;
ANALYZE pgspout_demo_events;
SQL

# ----------------------------------------------------------------- stream
query="SELECT id, created_at, kind, amount, score, ok, user_id, day, note, payload FROM pgspout_demo_events ORDER BY id"
metrics=$(mktemp "${TMPDIR:-/tmp}/pgspout-demo-metrics.XXXXXX")
say "streaming: pgspout -d ... -F ndjson --progress -o $out -c \"$query\""
t0=$(date +%s.%N)
"$cli" -d "$dsn" -F ndjson --progress --expected-rows "$rows" --metrics "$metrics" \
  -o "$out" -c "$query"
t1=$(date +%s.%N)
# value bytes received from the server, as counted by the progress line
value_bytes=$(awk '/^pgspout_bytes_total[{ ]/ { s += $NF } END { printf "%.0f", s }' "$metrics")

# ------------------------------------------------------------------ check
server_count=$(sql -tAc "SELECT count(*) FROM pgspout_demo_events")
# Every typed value as the server's text output (the timestamp as the
# server's own to_json writes it, as JSON rows carry it), '|'-joined per row;
# the client side rebuilds the same text from the NDJSON (numbers verbatim).
server_md5=$(sql -tAc "SELECT md5(string_agg(concat_ws('|', id::text, to_json(created_at) #>> '{}', kind,
    coalesce(amount::text, '\\N'), coalesce(score::text, '\\N'), coalesce(ok::text, '\\N'),
    coalesce(user_id::text, '\\N'), coalesce(day::text, '\\N'), coalesce(note, '\\N')),
    E'\\n' ORDER BY id)) FROM pgspout_demo_events")
read -r file_rows client_md5 bad < <("$py" - "$out" <<'PY'
import hashlib, json, sys
cols = ["id", "created_at", "kind", "amount", "score", "ok", "user_id", "day", "note"]
def text(v):
    if v is None: return "\\N"
    if v is True: return "true"  # as bool::text
    if v is False: return "false"
    return v  # strings, and numbers kept as the literal text (parse_*=str)
h, n, bad = hashlib.md5(), 0, 0
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        try:
            row = json.loads(line, parse_float=str, parse_int=str)
            vals = "|".join(text(row[c]) for c in cols)
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        h.update((("\n" if n else "") + vals).encode())
        n += 1
print(n, h.hexdigest(), bad)
PY
)
json_server=$(sql -tAc "SELECT md5(string_agg(payload::text || E'\\n', '' ORDER BY id)) FROM pgspout_demo_events")
json_client=$("$cli" -d "$dsn" -F ndjson -c "SELECT payload FROM pgspout_demo_events ORDER BY id" | md5sum | cut -d' ' -f1)

secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
size=$(du -h "$out" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
out_bytes=$(wc -c <"$out")
ok=1
verdict() { if [ "$1" = "$2" ]; then echo OK; else echo MISMATCH; fi; }
v_count=$(verdict "$server_count" "$file_rows")
v_typed=$(verdict "$server_md5" "$client_md5")
v_json=$(verdict "$json_server" "$json_client")
case "$v_count$v_typed$v_json" in *MISMATCH*) ok=0 ;; esac
[ "$bad" = 0 ] || ok=0
echo
echo "pgspout demo"
echo "  streamed     $file_rows rows ($size) in ${secs}s to $out"
echo "  bytes        $(mib "$value_bytes") of values received from the server, $(mib "$out_bytes") of"
echo "               NDJSON written (keys, quotes, separators added): the progress line's two figures"
echo "  first row    $(head -n 1 "$out" | cut -c 1-300)"
echo "  row count    server $server_count, file $file_rows: $v_count"
[ "$bad" = 0 ] || echo "  invalid JSON lines: $bad"
echo "  typed values md5 server $server_md5, file $client_md5: $v_typed"
echo "  jsonb column md5 server $json_server, stream $json_client: $v_json"
if [ "$ok" = 1 ]; then
  echo "  every row arrived, in order, byte for byte"
else
  echo "  FAILED: the stream and the server disagree"
  exit 1
fi
