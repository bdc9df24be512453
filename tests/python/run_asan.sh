#!/usr/bin/env bash
# run_asan.sh - the Python fault, race, GC, interrupt, log hook, semantics and
# bad-input tests against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the extension (issue 6; the interrupt tests' child interpreters
# inherit the preloaded runtimes). Installs the package from the repo root
# into a fresh venv with PGSPOUT_SANITIZE=address,undefined and preloads the
# sanitizer runtimes into Python. Leak detection is off: CPython itself
# keeps memory until exit. Needs PGSPOUT_TEST_DSN (scripts/test.sh provides it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=$(command -v "${PYTHON:-python3}")
: "${PGSPOUT_TEST_DSN:?PGSPOUT_TEST_DSN is not set (scripts/test.sh starts a server)}"
work=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-pyasan.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip >/dev/null
"$work/venv/bin/pip" install -q --config-settings=cmake.define.PGSPOUT_SANITIZE=address,undefined \
  pytest "$root"
ext=$(ls "$work"/venv/lib/python*/site-packages/pgspout/_pgspout*.so)
ldd "$ext" | grep libasan >/dev/null || { echo "run_asan.sh: the extension is not built with ASan" >&2; exit 1; }
cd "$work" # import the installed package, not the source tree
rc=0
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/python/test_races.py" "$root/tests/python/test_control.py" \
  "$root/tests/python/test_gc_memory.py" "$root/tests/python/test_bad_input.py" \
  "$root/tests/python/test_interrupt.py" "$root/tests/python/test_command_tag.py" \
  "$root/tests/python/test_semantics.py" \
  -k "not rss and not peak" || rc=$?
[ "$rc" = 5 ] && { echo "run_asan.sh: pytest collected no tests" >&2; exit 1; }
exit "$rc"
