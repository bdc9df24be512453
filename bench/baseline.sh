#!/usr/bin/env bash
# bench/baseline.sh - build an earlier commit of pgspout for
# `bench/run.sh --baseline DIR`, which measures its Python, Lua and CLI
# clients interleaved with this tree's in one run.
#
#   bash bench/baseline.sh REV DIR
#
# DIR/src    `git archive REV` of this repository
# DIR/build  its CMake build (Release, Lua module and CLI)
# DIR/venv   a venv with DIR/src's Python package installed (`pip install`,
#            as bench/run.sh installs this tree's into bench/.peers/venv)
# DIR/rev    the commit's short hash, the baseline's label in the report
# DIR is emptied first.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '5p' "$0" | sed 's/^# *//' >&2; exit 2; }
rev=$1
dir=$2
cd "$(dirname "$0")/.."
short=$(git rev-parse --short "$rev^{commit}")
say() { echo "baseline: $*" >&2; }

rm -rf "$dir"
mkdir -p "$dir/src"
dir=$(cd "$dir" && pwd)
say "git archive $short into $dir/src"
git archive "$short" | tar -x -C "$dir/src"

gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cmake -S "$dir/src" -B "$dir/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DPGSPOUT_BUILD_LUA=ON -DPGSPOUT_BUILD_TESTS=OFF >&2
cmake --build "$dir/build" -j "$(nproc 2>/dev/null || echo 2)" >&2

say "venv with $short's Python package"
/usr/bin/python3 -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install -q --upgrade pip >&2
"$dir/venv/bin/python" -m pip install -q "$dir/src" >&2
echo "$short" >"$dir/rev"
say "ready: bash bench/run.sh --baseline $dir"
