#!/usr/bin/env bash
# tests/python/run.sh - install pgspout into a fresh virtual environment and
# run the pytest suite against the installed package (never the build tree).
#
#   tests/python/run.sh [pytest args...]
#
# Environment:
#   PYTHON            interpreter for the venv (default: python3 on PATH,
#                     resolved with `command -v`; e.g. PYTHON=/usr/bin/python3
#                     for Debian's). Needs the venv module and Python.h
#                     (python3-dev) to build the extension.
#   PGSPOUT_TEST_DSN  server to test against (scripts/test.sh sets it). When
#                     unset, a throwaway server is started with
#                     scripts/pg-throwaway.sh and stopped at exit.
#   PGSPOUT_PY_WHEEL  1: build a wheel with `pip wheel .` and install that
#                     wheel instead of `pip install .` (the release path).
#   PGSPOUT_SKIP_SLOW 1: skip the 1M-vs-5M-row peak memory test.
#   KEEP_VENV         1: keep the temporary venv (its path is printed).
#   PGSPOUT_PY_VENV   make the venv in this directory instead (emptied first)
#                     and keep it: scripts/test.sh hands it to the
#                     conformance stage, which runs the same installed package.
#
# Exit status is pytest's, except that "no tests collected" (5) is a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

python=$(command -v "${PYTHON:-python3}") || {
  echo "run.sh: interpreter '${PYTHON:-python3}' not found" >&2; exit 2; }
python=$("$python" -c 'import sys; print(sys.executable)')  # through pyenv shims

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-py.XXXXXX")
pgdir=""
cleanup() {
  if [ -n "$pgdir" ]; then "$root/scripts/pg-throwaway.sh" stop "$pgdir" || true; fi
  if [ "${KEEP_VENV:-0}" = 1 ]; then echo "run.sh: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

echo "run.sh: $("$python" --version 2>&1) at $python"
venv=${PGSPOUT_PY_VENV:-$tmp/venv}
rm -rf "$venv"
"$python" -m venv "$venv"
venv=$(cd "$venv" && pwd)
venv_py="$venv/bin/python"
"$venv_py" -m pip install -q --upgrade pip >/dev/null

# The Arrow consumers test_arrow.py reads the stream with (the package's
# extras); PGSPOUT_REQUIRE_ARROW makes a missing one a failure, not a skip.
arrow_peers="pyarrow pandas polars duckdb"
export PGSPOUT_REQUIRE_ARROW=1
# test_prometheus.py: the prometheus extra; required here, as the Arrow peers.
prometheus_peers="prometheus_client"
export PGSPOUT_REQUIRE_PROMETHEUS=1
# test_dask.py: the dask extra plus dask.distributed (its LocalCluster runs
# the partitions in worker processes); required here too.
dask_peers="dask[dataframe,distributed]"
export PGSPOUT_REQUIRE_DASK=1

if [ "${PGSPOUT_PY_WHEEL:-0}" = 1 ]; then
  echo "run.sh: pip wheel $root"
  "$venv_py" -m pip wheel -q --no-deps -w "$tmp/dist" "$root"
  wheel=$(ls "$tmp"/dist/pgspout-*.whl)
  echo "run.sh: installing $(basename "$wheel")"
  "$venv_py" -m pip install -q "$wheel" pytest $arrow_peers $prometheus_peers "$dask_peers"
else
  echo "run.sh: pip install $root"
  "$venv_py" -m pip install -q "$root" pytest $arrow_peers $prometheus_peers "$dask_peers"
fi

# uvloop: test_aio.py runs every test under it too (skipped when missing,
# e.g. no network to PyPI)
"$venv_py" -m pip install -q uvloop || echo "run.sh: uvloop not installed: its test_aio.py runs skip"

# The installed package, not the source tree; the extension needs only libpq
# (the core is linked in statically).
so=$(cd "$tmp" && "$venv_py" -c 'import pgspout, pgspout._pgspout as m; print(m.__file__)')
case "$so" in
  "$venv"/*) ;;
  *) echo "run.sh: pgspout imported from $so, not from the venv" >&2; exit 1 ;;
esac
if command -v ldd >/dev/null; then
  if ldd "$so" | grep 'libpgspout' >/dev/null; then
    echo "run.sh: $so links libpgspout dynamically" >&2; exit 1
  fi
  ldd "$so" | grep 'libpq\.so' >/dev/null || { echo "run.sh: $so does not link libpq" >&2; exit 1; }
fi

if [ -z "${PGSPOUT_TEST_DSN:-}" ]; then
  # its own directory: as root the server runs as "postgres", which must be
  # able to reach it (mktemp -d directories are private)
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-py-pg.XXXXXX")
  env_lines=$("$root/scripts/pg-throwaway.sh" start "$pgdir") || {
    echo "run.sh: could not start PostgreSQL" >&2; exit 1; }
  eval "$env_lines"
  echo "run.sh: started a throwaway PostgreSQL: $PGSPOUT_TEST_DSN"
fi
export PGSPOUT_TEST_DSN

# Run from the temp dir so the repository is not on sys.path.
set +e
(cd "$tmp" && "$venv/bin/pytest" -p no:cacheprovider --rootdir "$here" -c /dev/null "$here" "$@")
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "run.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
