# lib.sh - sourced by tests/lua/run.sh and tests/lua/run_asan.sh: the
# throwaway server, busted's TAP verdict and the registry stress, once.
# Expects $root (repository), $here (tests/lua) and $BUSTED to be set.

_lua_pgdir=""
_lua_cleanup() {
  local rc=$?
  [ -n "$_lua_pgdir" ] && "$root/scripts/pg-throwaway.sh" stop "$_lua_pgdir" || true
  exit $rc
}
trap _lua_cleanup EXIT

# lua_server TAG: export PGSPOUT_TEST_DSN, starting a throwaway PostgreSQL
# (stopped when the script exits) unless it is set already.
lua_server() {
  if [ -z "${PGSPOUT_TEST_DSN:-}" ]; then
    _lua_pgdir=$(mktemp -d "/tmp/pgspout-$1-pg.XXXXXX")
    eval "$("$root/scripts/pg-throwaway.sh" start "$_lua_pgdir")"
  fi
  export PGSPOUT_TEST_DSN
}

# lua_busted LABEL INTERPRETER [VAR=VALUE...]: every spec under INTERPRETER
# (with the variables in its environment), TAP output; fails on a failure, a
# non-zero exit (a sanitizer abort) or zero tests run.
lua_busted() {
  local label=$1 lua=$2 out status okc notok
  shift 2
  out=$(mktemp)
  echo "=== busted under $label ($("$lua" -v 2>&1 | head -n1)${*:+; $*})"
  set +e
  (cd "$here" && env "$@" "$lua" "$BUSTED" -o TAP --pattern=_spec "$here") 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  okc=$(grep -c '^ok ' "$out" || true)
  notok=$(grep -c '^not ok ' "$out" || true)
  rm -f "$out"
  echo "=== $label: $okc passed, $notok failed (busted exit $status)"
  [ "$status" -eq 0 ] && [ "$notok" -eq 0 ] && [ "$okc" -gt 0 ] || {
    echo "$(basename "$0"): FAIL under $label" >&2
    return 1
  }
}

# lua_registry_stress SECONDS CORE_LIB CC [CFLAGS...]: build
# tests/lua/registry_stress.c against CORE_LIB (a static libpgspout) and run
# it for SECONDS; fails if it does.
lua_registry_stress() {
  local secs=$1 lib=$2 cc=$3 bin pq_libs rc=0
  shift 3
  [ -f "$lib" ] || { echo "$(basename "$0"): $lib not built" >&2; return 1; }
  bin=$(mktemp /tmp/pgspout-registry-stress.XXXXXX)
  pq_libs=$(pkg-config --libs libpq 2>/dev/null || echo -lpq)
  # shellcheck disable=SC2086
  "$cc" -std=c11 -D_GNU_SOURCE -g "$@" -Wall -Wextra -Werror -I"$root/core/include" \
    "$here/registry_stress.c" "$lib" $pq_libs -lpthread -lm -o "$bin" \
    && "$bin" "$secs" || rc=1
  rm -f "$bin"
  [ "$rc" = 0 ] || echo "$(basename "$0"): FAIL: registry stress" >&2
  return "$rc"
}
