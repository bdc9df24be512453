#!/usr/bin/env bash
# driver_cli.sh - the CLI driver of the conformance suite (README.md).
#
#   bash driver_cli.sh PGSPOUT-BINARY CASES-FILE [CASE...]   (server: $PGSPOUT_TEST_DSN)
#
# Runs each case through the pgspout command, one process per case, and
# prints the same normalized line as the other drivers. Rows come as TSV
# (COPY's text format, which is the suite's canonical rendering: the
# checksum is md5sum of stdout) or, for rows=json, as NDJSON (each line
# escaped the same way). The outcome comes from the exit status and the
# error line "pgspout: <code>: <message> (SQLSTATE xxxxx)"; the metric from
# --metrics FILE. The SQL goes with -c, each parameter with --param (a NULL
# as a token named by --null-param), the options with --option KEY=VALUE.
# The command has no stream object: state, delivered and ev are "na"
# (README.md lists that).
#
# A case the command cannot run (a partial read, pause, cancel, close,
# threads, rows=dict) must say "na cli <reason>" in the case list; meeting
# such an action here is an error, never a silent skip.
#
# A partition case runs --partitions N --table T (with --column, --key,
# --bound, --where and the parameters) -o DIR/: the files concatenated in
# partition order are its rows. Its setup statements run first, each with
# -c. (A plan-from case is "na cli": the command reads no plan JSON.)
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: driver_cli.sh PGSPOUT-BINARY CASES-FILE [CASE...]" >&2; exit 2; }
cli=$1 casefile=$2
shift 2
: "${PGSPOUT_TEST_DSN:?PGSPOUT_TEST_DSN is not set}"
[ -x "$cli" ] || { echo "driver_cli.sh: $cli is not executable" >&2; exit 2; }

declare -A wanted=()
for n in "$@"; do wanted[$n]=1; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-conf-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
null_token="__pgspout_conformance_null_$$__"

die() { echo "driver_cli.sh: $*" >&2; exit 2; }

# COPY-escape NDJSON lines the way every driver escapes a value.
escape_lines() { LC_ALL=C sed -e 's/\\/\\\\/g' -e 's/\t/\\t/g' -e 's/\r/\\r/g'; }

# The case being read (reset by new_case).
name="" sql="" script="read-all" na=0
params=() nulls=() opts=()
setups=() parts=0 table="" columns=() part_key="" bounds=() where=""
seen=()

new_case() {
  name=$1 sql="" script="read-all" na=0
  params=() nulls=() opts=()
  setups=() parts=0 table="" columns=() part_key="" bounds=() where=""
}

run_case() {
  [ -n "$name" ] || return 0
  if [ ${#wanted[@]} -gt 0 ] && [ -z "${wanted[$name]:-}" ]; then return 0; fi
  seen+=("$name")
  if [ "$na" = 1 ]; then
    echo "$name na"
    return 0
  fi
  local fmt=tsv label="" metrics=0 a verb kv
  local args=(-d "$PGSPOUT_TEST_DSN" --no-header)
  IFS=';' read -ra acts <<<"$script"
  for a in "${acts[@]}"; do
    a=$(echo "$a" | sed 's/^ *//; s/ *$//')
    [ -n "$a" ] || continue
    verb=${a%% *}
    case "$verb" in
      read-all | reuse | stats | state | elapsed-min) ;;  # observations: ev is na here
      metrics) metrics=1 ;;
      *) die "case $name: action '$a' has no CLI equivalent: mark the case 'na cli <reason>'" ;;
    esac
  done
  for kv in "${opts[@]}"; do
    case "$kv" in
      rows=tuple) fmt=tsv ;;
      rows=json) fmt=ndjson ;;
      rows=*) die "case $name: $kv has no CLI equivalent: mark the case 'na cli <reason>'" ;;
      *)
        [ "${kv%%=*}" = label ] && label=${kv#*=}
        args+=(--option "$kv")
        ;;
    esac
  done
  args+=(-F "$fmt")
  if [ "$metrics" = 1 ]; then
    [ -n "$label" ] || die "case $name: the metrics action needs a label option"
    rm -f "$tmp/metrics"
    args+=(--metrics "$tmp/metrics")
  fi
  local i
  for i in "${!params[@]}"; do
    if [ "${nulls[$i]}" = 1 ]; then args+=(--param "$null_token"); else args+=(--param "${params[$i]}"); fi
  done
  [ ${#params[@]} -gt 0 ] && args+=(--null-param "$null_token")

  local status=0 stmt
  for stmt in ${setups[@]+"${setups[@]}"}; do
    "$cli" -d "$PGSPOUT_TEST_DSN" -c "$stmt" >/dev/null </dev/null || die "case $name: setup failed: $stmt"
  done
  if [ "$parts" -gt 0 ]; then
    [ "$script" = read-all ] || die "case $name: a partition case runs read-all only"
    args+=(--partitions "$parts" --table "$table")
    for i in ${columns[@]+"${!columns[@]}"}; do args+=(--column "${columns[$i]}"); done
    [ -z "$part_key" ] || args+=(--key "$part_key")
    for i in ${bounds[@]+"${!bounds[@]}"}; do args+=(--bound "${bounds[$i]}"); done
    [ -z "$where" ] || args+=(--where "$where")
    rm -rf "$tmp/parts"
    mkdir "$tmp/parts"
    "$cli" "${args[@]}" -o "$tmp/parts/" >/dev/null 2>"$tmp/err" </dev/null || status=$?
    # the files in partition order (zero-padded numbers sort)
    find "$tmp/parts" -type f -name 'part-*' | LC_ALL=C sort | xargs -r cat >"$tmp/out"
  else
    "$cli" "${args[@]}" -c "$sql" >"$tmp/out" 2>"$tmp/err" </dev/null || status=$?
  fi

  local rows sum end=done sqlstate=- msg=- metric=- line
  rows=$(wc -l <"$tmp/out")
  if [ "$fmt" = ndjson ]; then
    sum=$(escape_lines <"$tmp/out" | md5sum | cut -d' ' -f1)
  else
    sum=$(md5sum <"$tmp/out" | cut -d' ' -f1)
  fi
  if [ "$status" != 0 ]; then
    # the error line, and any line libpq's message continues on
    line=$(sed -n '/^pgspout: [a-z_]*: /,$p' "$tmp/err")
    if [ -n "$line" ]; then
      end=$(echo "$line" | sed -n '1s/^pgspout: \([a-z_]*\): .*/\1/p')
      msg=$(printf '%s' "$line" | sed '1s/^pgspout: [a-z_]*: //')
    else
      end="cli:exit$status"
      msg=$(cat "$tmp/err")
    fi
    sqlstate=$(printf '%s' "$msg" | grep -o '(SQLSTATE [0-9A-Z]\{5\})' | tail -1 | cut -c11-15 || true)
    [ -n "$sqlstate" ] || sqlstate=-
    [ -n "$msg" ] || msg=-
  fi
  if [ "$metrics" = 1 ]; then
    metric=0
    if [ -f "$tmp/metrics" ]; then
      metric=$(awk -v k="pgspout_rows_total{label=\"$label\"}" '$1 == k { print $2 }' "$tmp/metrics")
      [ -n "$metric" ] || metric=0
    fi
  fi
  msg=$(printf '%s' "$msg" | tr -d '\r' | awk 'NR > 1 { printf "\\n" } { gsub(/\t/, "\\t"); printf "%s", $0 }')
  echo "$name rows=$rows sum=$sum end=$end sqlstate=$sqlstate state=na delivered=na metric=$metric ev=na msg=$msg"
}

lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line=${line%$'\r'}
  [ -z "$line" ] && continue
  [ "${line:0:1}" = "#" ] && continue
  key=${line%% *}
  if [ "$key" = "$line" ]; then val=""; else val=${line#* }; fi
  case "$key" in
    case) run_case; new_case "$val" ;;
    sql) sql=$val ;;
    param) params+=("$val"); nulls+=(0) ;;
    null) params+=(""); nulls+=(1) ;;
    opt) opts+=("$val") ;;
    do) script=$val ;;
    na) [ "${val%% *}" = cli ] && na=1 ;;
    setup) setups+=("$val") ;;
    partitions) parts=$val ;;
    table) table=$val ;;
    column) columns+=("$val") ;;
    key) part_key=$val ;;
    bound) bounds+=("$val") ;;
    where) where=$val ;;
    plan-from) ;;  # such cases are na cli
    expect) ;;
    *) die "$casefile:$lineno: unknown key '$key'" ;;
  esac
  [ -n "$name" ] || die "$casefile:$lineno: '$key' before the first 'case'"
done <"$casefile"
run_case

for n in "$@"; do
  found=0
  for s in ${seen[@]+"${seen[@]}"}; do [ "$s" = "$n" ] && found=1; done
  [ "$found" = 1 ] || die "no case named '$n'"
done
