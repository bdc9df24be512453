"""The repaired wheel at work: run by scripts/test.sh's wheel stage with the
venv the wheel was installed into, inside a mount namespace where every
system libpq.so.5 is an empty file.

    python wheel_check.py DSN ROWS WANT_MD5 [TRANSPORT]

Checks that the one libpq mapped into the process is the wheel's own
(site-packages/pgspout.libs/libpq-<hash>.so.5*), that pgspout.transport is
what that libpq supports (chunked exactly when it has PQsetChunkedRowsMode:
transport.c finds it under the bundled name), and that ROWS rows of
generate_series stream with the md5 the server computed for them (taken with
psql outside the namespace). With TRANSPORT, pgspout.transport must also be
that ("chunked" for a wheel that bundles a libpq >= 17)."""
import ctypes
import hashlib
import os
import re
import sys

import pgspout


def mapped_libpq():
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and re.match(r"libpq[-.]", os.path.basename(fields[5].strip())):
                paths.add(fields[5].strip())
    return sorted(paths)


def main():
    dsn, n, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    site = os.path.dirname(os.path.dirname(os.path.abspath(pgspout.__file__)))
    libs = os.path.join(site, "pgspout.libs")

    paths = mapped_libpq()
    if len(paths) != 1:
        sys.exit("want exactly one libpq mapped, got %s" % paths)
    lib = paths[0]
    if os.path.dirname(lib) != libs or not re.match(r"libpq(-[0-9a-f]+)+\.so\.5", os.path.basename(lib)):
        sys.exit("the libpq loaded is %s, not the wheel's (%s/libpq-<hash>.so.5*)" % (lib, libs))
    pq = ctypes.CDLL(lib)  # already loaded: the same handle
    version = pq.PQlibVersion()
    has_chunked = hasattr(pq, "PQsetChunkedRowsMode")
    want_transport = "chunked" if has_chunked else "single-row"
    if pgspout.transport != want_transport:
        sys.exit("pgspout.transport is %r, but the libpq loaded (%s, version %d) wants %r"
                 % (pgspout.transport, lib, version, want_transport))
    if len(sys.argv) > 4 and pgspout.transport != sys.argv[4]:
        sys.exit("pgspout.transport is %r with %s (version %d), want %r"
                 % (pgspout.transport, lib, version, sys.argv[4]))
    print("libpq loaded: %s (version %d); transport %s" % (lib, version, pgspout.transport))

    md5 = hashlib.md5()
    rows = 0
    with pgspout.connect(dsn) as conn:
        for g, text, mod in conn.stream(
                "SELECT g, 'row ' || g, NULLIF(g % 7, 0) FROM generate_series(1, $1::int) g", [n]):
            md5.update(("%d\t%s\t%s\n" % (g, text, "\\N" if mod is None else mod)).encode())
            rows += 1
    if rows != n or md5.hexdigest() != want:
        sys.exit("streamed %d rows (md5 %s), want %d (md5 %s)" % (rows, md5.hexdigest(), n, want))
    # still the one bundled libpq after connecting (nothing loaded another)
    if mapped_libpq() != paths:
        sys.exit("libpq mappings changed while streaming: %s" % mapped_libpq())
    print("%d rows streamed, md5 %s matches the server" % (rows, want))


if __name__ == "__main__":
    main()
