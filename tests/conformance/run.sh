#!/usr/bin/env bash
# run.sh - the cross-language conformance suite: every case of cases.txt
# through the C, Python, Lua (LuaJIT, and PUC Lua 5.1 when installed) and CLI
# drivers, each printing one normalized line per case. Every line is compared
# field by field with the reference (C, or the first language the case
# applies to) and with the case's "expect" fields; a difference fails the run
# unless README.md's table of intended differences lists it.
#
#   tests/conformance/run.sh [CASE...]
#
# Environment:
#   PGSPOUT_BUILD_DIR    build tree (default build): tests/conformance_driver,
#                        core/pgspout (the CLI), bindings/lua (the Lua module),
#                        as `cmake -DPGSPOUT_BUILD_LUA=ON -DPGSPOUT_BUILD_TESTS=ON`
#                        builds them (tests/lua/run.sh uses the same module)
#   PGSPOUT_TEST_DSN     the server; unset: a throwaway one is started with
#                        scripts/pg-throwaway.sh and stopped at exit
#   PGSPOUT_CONF_PYTHON  an interpreter whose `import pgspout` is the
#                        installed package (scripts/test.sh passes the venv
#                        its python stage made); unset: a fresh venv with
#                        `pip install .` as tests/python/run.sh makes one,
#                        from PYTHON (default python3)
#   LUAJIT               LuaJIT (default luajit)
#   PGSPOUT_LUA51        0: no Lua 5.1 run (default: when lua5.1 is installed)
#   PGSPOUT_CONF_OUT     a directory to keep each driver's lines in
#   PGSPOUT_CONF_TIMEOUT seconds a driver may run (default 900): a hang guard
# Exit status 0 when every driver printed a line for every case and nothing
# differs that the table does not list.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${PGSPOUT_BUILD_DIR:-build}
case "$build" in /*) ;; *) build=$root/$build ;; esac
cases_file=$here/cases.txt
readme=$here/README.md

work=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-conf.XXXXXX")
pgdir=""
cleanup() {
  if [ -n "$pgdir" ]; then "$root/scripts/pg-throwaway.sh" stop "$pgdir" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

note() { echo "run.sh: $*" >&2; }

# ------------------------------------------------------------ the drivers
c_driver=$build/tests/conformance_driver
cli=$build/core/pgspout
luamod=$build/bindings/lua
for f in "$c_driver" "$cli" "$luamod/pgspout_core.so" "$luamod/pgspout.lua"; do
  if [ ! -e "$f" ]; then
    note "$f not found; build it first:"
    note "  cmake -S . -B build -DPGSPOUT_BUILD_LUA=ON -DPGSPOUT_BUILD_TESTS=ON && cmake --build build"
    exit 1
  fi
done

if [ -z "${PGSPOUT_TEST_DSN:-}" ]; then
  # its own directory: as root the server runs as "postgres", which must be
  # able to reach it (mktemp -d directories are private)
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-conf-pg.XXXXXX")
  eval "$("$root/scripts/pg-throwaway.sh" start "$pgdir")"
  note "started a throwaway PostgreSQL: $PGSPOUT_TEST_DSN"
fi
export PGSPOUT_TEST_DSN
# Every driver's session in a zone with a half-hour offset (and, for 1900,
# a local mean time offset in seconds): timestamptz and timetz values then
# test how each language keeps offsets. libpq sends PGTZ at connect.
export PGTZ=Asia/Kolkata

pyexe=${PGSPOUT_CONF_PYTHON:-}
if [ -z "$pyexe" ]; then
  python=$(command -v "${PYTHON:-python3}") || { note "no ${PYTHON:-python3}"; exit 1; }
  note "pip install $root into a fresh venv ($("$python" --version 2>&1))"
  "$python" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$work/venv/bin/python" -m pip install -q "$root"
  pyexe=$work/venv/bin/python
fi
# the installed package, never the source tree
pymod=$(cd "$work" && "$pyexe" -c 'import pgspout; print(pgspout.__file__)') \
  || { note "$pyexe cannot import pgspout"; exit 1; }
case "$pymod" in
  "$root"/bindings/*) note "$pyexe imports pgspout from the source tree ($pymod)"; exit 1 ;;
esac

langs=(c python lua)
cmds=()
run_driver() { # lang command...
  local lang=$1 rc=0
  shift
  note "$lang: $*"
  (cd "$work" && timeout -k 10 "${PGSPOUT_CONF_TIMEOUT:-900}" "$@" "$cases_file" ${cases[@]+"${cases[@]}"}) \
    >"$work/$lang.txt" 2>"$work/$lang.err" || rc=$?
  if [ -s "$work/$lang.err" ]; then sed "s/^/  $lang stderr: /" "$work/$lang.err" | head -20 >&2; fi
  if [ "$rc" != 0 ]; then
    note "$lang: the driver failed (exit $rc)"
    failed_drivers+=("$lang")
  fi
}
cases=("$@")
failed_drivers=()

export LUA_PATH="$luamod/?.lua;;" LUA_CPATH="$luamod/?.so;;"
# Plans one language writes for every language to read (cases with
# "plan-from LANG"): each driver's --write-plans, before the runs.
plans=$work/plans
mkdir "$plans"
export PGSPOUT_CONF_PLANS=$plans
write_plans() { # lang command...
  local lang=$1 rc=0
  shift
  (cd "$work" && timeout -k 10 "${PGSPOUT_CONF_TIMEOUT:-900}" "$@" --write-plans "$plans" \
    "$cases_file" ${cases[@]+"${cases[@]}"}) >"$work/$lang.plans.err" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    sed "s/^/  $lang --write-plans: /" "$work/$lang.plans.err" | head -20 >&2
    note "$lang: writing plans failed (exit $rc)"
    failed_drivers+=("$lang")
  fi
}
write_plans c "$c_driver"
write_plans python "$pyexe" "$here/driver.py"
write_plans lua "${LUAJIT:-luajit}" "$here/driver.lua"
run_driver c "$c_driver"
run_driver python "$pyexe" "$here/driver.py"
run_driver lua "${LUAJIT:-luajit}" "$here/driver.lua"
if [ "${PGSPOUT_LUA51:-1}" != 0 ] && command -v lua5.1 >/dev/null; then
  langs+=(lua5.1)
  run_driver lua5.1 lua5.1 "$here/driver.lua"
fi
langs+=(cli)
run_driver cli bash "$here/driver_cli.sh" "$cli"
if [ -n "${PGSPOUT_CONF_OUT:-}" ]; then
  mkdir -p "$PGSPOUT_CONF_OUT"
  for l in "${langs[@]}"; do cp "$work/$l.txt" "$PGSPOUT_CONF_OUT/$l.txt"; done
fi

# ----------------------------------------------------------- the case list
# names in order, the languages each is "na" for, and its expectations
names=()
declare -A na=() expect=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}
  case "$line" in
    "case "*) name=${line#case }; names+=("$name") ;;
    "na "*) l=${line#na }; na["$name|${l%% *}"]=1 ;;
    "expect "*) expect[$name]="${expect[$name]:-} ${line#expect }" ;;
  esac
done <"$cases_file"
if [ ${#cases[@]} -gt 0 ]; then names=("${cases[@]}"); fi

# A case's "na lua" holds for every Lua interpreter.
is_na() { # lang case
  local l=$1
  [ "$l" = lua5.1 ] && l=lua
  [ -n "${na["$2|$l"]:-}" ]
}

# ------------------------------------------------------------- the lines
# V[lang|case|field]; the message is compared without the SQLSTATE (its own
# field) and with decimal fractions (timings) as '#'.
fields=(rows sum end sqlstate state delivered metric ev msg)
declare -A V=()
set -f
for lang in "${langs[@]}"; do
  while IFS= read -r line; do
    name=${line%% *}
    rest=${line#* }
    if [ "$rest" = na ]; then
      V["$lang|$name|na"]=1
      continue
    fi
    V["$lang|$name|line"]=$((${V["$lang|$name|line"]:-0} + 1))
    for kv in ${rest%% msg=*}; do V["$lang|$name|${kv%%=*}"]=${kv#*=}; done
    V["$lang|$name|msg"]=${rest#* msg=}
  done < <(awk '{
      i = index($0, " msg=")
      if (i == 0) { print; next }
      m = substr($0, i + 5)
      gsub(/ ?\(SQLSTATE [0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]\)/, "", m)
      gsub(/[0-9]+\.[0-9]+/, "#", m)
      sub(/ +$/, "", m)
      print substr($0, 1, i + 4) m
    }' "$work/$lang.txt")
done
set +f

# -------------------------------------------- README's table of differences
# | language | case (glob) | field(s), comma-separated or * | reason |
tl=() tc=() tf=() used=()
while IFS='|' read -r _ l c f _; do
  l=$(echo "$l" | xargs) c=$(echo "$c" | tr -d ' `') f=$(echo "$f" | tr -d ' `')
  case "$l" in "" | language | -*) continue ;; esac
  tl+=("$l") tc+=("$c") tf+=("$f") used+=(0)
done < <(sed -n '/<!-- differences:start -->/,/<!-- differences:end -->/p' "$readme" | grep '^|')

listed() { # lang case field: 0 when a table row covers it (and marks it used)
  local l=$1 i hit=1
  [ "$l" = lua5.1 ] && l=lua
  for i in "${!tl[@]}"; do
    [ "${tl[$i]}" = "$l" ] || continue
    # shellcheck disable=SC2053  # the case column is a glob
    [[ $2 == ${tc[$i]} ]] || continue
    [[ ",${tf[$i]}," == *",$3,"* || ${tf[$i]} == "*" ]] || continue
    used[$i]=1
    hit=0
  done
  return $hit
}

# ------------------------------------------------------------ compare
problems=0 n_listed=0
problem() { echo "FAIL $*"; problems=$((problems + 1)); }
declare -A listed_by=() reported=() by_case=()
# an unlisted difference in FIELD of LANG's line for NAME (for the summary)
differs() { # lang name field
  reported["$1|$2|$3"]=1
  by_case["$1 $2"]="${by_case["$1 $2"]:+${by_case["$1 $2"]},}$3"
}
for name in "${names[@]}"; do
  ref=""
  for lang in "${langs[@]}"; do
    if ! is_na "$lang" "$name"; then ref=$lang; break; fi
  done
  [ -n "$ref" ] || { problem "$name: no language runs it"; continue; }
  for lang in "${langs[@]}"; do
    if is_na "$lang" "$name"; then
      [ -n "${V["$lang|$name|na"]:-}" ] || problem "$lang $name: marked na in cases.txt, but the driver did not say na"
      continue
    fi
    if [ -n "${V["$lang|$name|na"]:-}" ]; then
      problem "$lang $name: the driver says na, cases.txt does not"
      continue
    fi
    case "${V["$lang|$name|line"]:-0}" in
      1) ;;
      0) problem "$lang $name: no line"; differs "$lang" "$name" line; continue ;;
      *) problem "$lang $name: ${V["$lang|$name|line"]} lines"; differs "$lang" "$name" line ;;
    esac
    for f in "${fields[@]}"; do
      a=${V["$ref|$name|$f"]:-} b=${V["$lang|$name|$f"]:-}
      [ "$lang" = "$ref" ] || [ "$a" = "$b" ] && continue
      if listed "$lang" "$name" "$f"; then
        n_listed=$((n_listed + 1))
        listed_by[$lang]=$((${listed_by[$lang]:-0} + 1))
      else
        problem "$lang $name $f: $ref has '$a', $lang '$b'"
        differs "$lang" "$name" "$f"
      fi
    done
    # expectations: reported once, not again for a field that differs already
    for kv in ${expect[$name]:-}; do
      f=${kv%%=*} want=${kv#*=} b=${V["$lang|$name|${kv%%=*}"]:-}
      [ "$b" = "$want" ] || [ -n "${reported["$lang|$name|$f"]:-}" ] && continue
      if ! listed "$lang" "$name" "$f"; then
        problem "$lang $name $f: '$b', the case expects '$want'"
        differs "$lang" "$name" "$f"
      fi
    done
  done
done

if [ ${#cases[@]} = 0 ]; then # (a subset of the cases proves nothing stale)
  for i in "${!tl[@]}"; do
    [ "${used[$i]}" = 1 ] || note "README lists ${tl[$i]} ${tc[$i]} ${tf[$i]}, which no longer differs"
  done
fi
if [ ${#by_case[@]} -gt 0 ]; then
  echo "unlisted differences (language case: fields):"
  for lang in "${langs[@]}"; do
    for name in "${names[@]}"; do
      [ -z "${by_case["$lang $name"]:-}" ] || echo "  $lang $name: ${by_case["$lang $name"]}"
    done
  done
fi
summary="${#names[@]} cases, languages: ${langs[*]}; $n_listed listed differences"
for lang in "${!listed_by[@]}"; do summary+=" ($lang ${listed_by[$lang]})"; done
echo "conformance: $summary; $problems unlisted"
if [ ${#failed_drivers[@]} -gt 0 ]; then
  echo "conformance: driver(s) failed: ${failed_drivers[*]}"
  exit 1
fi
[ "$problems" = 0 ]
