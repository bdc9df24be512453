#!/usr/bin/env bash
# tests/python/typecheck.sh - the Python API's types, checked as a user's
# project would: install pgspout, mypy and pyright (all from PyPI) into a
# fresh venv and run both with their default settings on
#   - examples/python/*.py: must pass (tuple rows index as tuples,
#     rows="dict" rows as Dict[str, Any], rows="json" rows as str);
#   - the installed package (its own code and _pgspout.pyi): must pass;
#   - tests/python/typing/wrong_rows.py: every line marked "# error" must get
#     an error from each checker, and no other line may: proves the row types
#     are precise, not Any.
# pyright from PyPI runs the pyright npm package on Node.js: the system's
# node when there is one (Debian: nodejs), else it downloads one (nodeenv).
#
#   tests/python/typecheck.sh        (PYTHON: the venv's interpreter, default python3)
# KEEP_VENV=1 keeps the temporary venv. It is the `types` stage of scripts/test.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=$(command -v "${PYTHON:-python3}")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-types.XXXXXX")
cleanup() { if [ "${KEEP_VENV:-0}" = 1 ]; then echo "typecheck.sh: kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

"$python" -m venv "$tmp/venv"
py=$tmp/venv/bin/python
"$py" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
# with the small typed extra (prometheus_client) its module is checked
# against it; pyarrow/pandas/polars stay out (large, untyped where used)
echo "typecheck.sh: pip install $root[prometheus] mypy pyright"
"$py" -m pip install -q --disable-pip-version-check "$root[prometheus]" mypy pyright
pkg=$(cd "$tmp" && "$py" -c 'import os, pgspout; print(os.path.dirname(pgspout.__file__))')
[ -f "$pkg/py.typed" ] || { echo "typecheck.sh: $pkg has no py.typed" >&2; exit 1; }
echo "typecheck.sh: $("$tmp/venv/bin/mypy" --version); pyright $("$tmp/venv/bin/pyright" --version 2>&1 | tail -1)" \
     "on node $(command -v node >/dev/null && node --version || echo '(downloaded)')"

# From an empty directory: no configuration file of the repository applies.
mkdir "$tmp/run"
cd "$tmp/run"
mypy() { "$tmp/venv/bin/mypy" --cache-dir "$tmp/mypy-cache" "$@"; }
pyright() { "$tmp/venv/bin/pyright" --pythonpath "$py" "$@"; }
examples=("$root"/examples/python/*.py)

echo "--- mypy: examples and the package"
mypy "${examples[@]}"
mypy -p pgspout
echo "--- pyright: examples and the package"
pyright "${examples[@]}" "$pkg"

# The misuse file: the set of lines with an error must be exactly the
# marked lines, for each checker.
wrong=$here/typing/wrong_rows.py
want=$(grep -n '# error$' "$wrong" | cut -d: -f1 | sort -n | tr '\n' ' ')
[ -n "$want" ] || { echo "typecheck.sh: no '# error' lines in $wrong" >&2; exit 1; }
got_mypy=$(mypy "$wrong" 2>&1 | sed -n 's|^[^:]*wrong_rows\.py:\([0-9]*\): error:.*|\1|p' | sort -nu | tr '\n' ' ' || true)
got_pyright=$(pyright "$wrong" 2>&1 | sed -n 's|^ *[^:]*wrong_rows\.py:\([0-9]*\):[0-9]* - error:.*|\1|p' | sort -nu | tr '\n' ' ' || true)
echo "--- misuses (lines of $wrong): marked [$want] mypy [$got_mypy] pyright [$got_pyright]"
[ "$got_mypy" = "$want" ] || { echo "typecheck.sh: mypy did not flag exactly the marked lines" >&2; exit 1; }
[ "$got_pyright" = "$want" ] || { echo "typecheck.sh: pyright did not flag exactly the marked lines" >&2; exit 1; }
echo "typecheck.sh: mypy and pyright pass the examples and the package and flag every misuse"
