"""Shared bits of the Python peer clients (stdlib only).

Every client is run as `python CLIENT.py DSN SQL [KEY=VALUE...]`, reads the
whole result, touches every value (counts the non-NULL ones) and prints
"rows=N values=V" on stdout. `python CLIENT.py --version` prints the version
of the driver it measures.
"""
import sys


def args():
    if len(sys.argv) >= 2 and sys.argv[1] == "--version":
        return None
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} DSN SQL [KEY=VALUE...] | --version")
    opts = {}
    for kv in sys.argv[3:]:
        k, _, v = kv.partition("=")
        opts[k] = int(v) if v.isdigit() else v
    return sys.argv[1], sys.argv[2], opts


def touch(rows_iter):
    """Count rows and non-NULL values of an iterable of rows."""
    rows = vals = 0
    for row in rows_iter:
        rows += 1
        if isinstance(row, (str, bytes)):  # a row rendered as one JSON text
            vals += 1
            continue
        for v in row:
            if v is not None:
                vals += 1
    return rows, vals


def report(rows, vals):
    print(f"rows={rows} values={vals}")
