"""Shared bits of the Python peer clients (stdlib only).

Every client is run as `python CLIENT.py DSN SQL [KEY=VALUE...]`, reads the
whole result, touches every value (counts the non-NULL ones) and prints
"rows=N values=V types=T1,T2,..." on stdout: T is the Python type of each
column's first non-NULL value in the first 10 rows (what the driver converted
it to). Rows that arrive as one JSON text each print "rows=N types=str"
without values=. `python CLIENT.py --version` prints the version of the
driver it measures.
"""
import itertools
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


def note_types(types, row):
    """Fill the None entries of types (a list) from row's non-NULL values."""
    if isinstance(row, (str, bytes)):
        row = (row,)
    if not types:
        types.extend([None] * len(row))
    for i, v in enumerate(row):
        if types[i] is None and v is not None:
            types[i] = type(v).__name__


def touch(rows_iter):
    """Count rows and non-NULL values of an iterable of rows; returns (rows,
    values, types), values None when rows are JSON texts."""
    it = iter(rows_iter)
    head = list(itertools.islice(it, 10))
    types = []
    for row in head:
        note_types(types, row)
    if head and isinstance(head[0], (str, bytes)):  # rows rendered as JSON text
        return len(head) + sum(1 for _ in it), None, types
    rows = vals = 0
    for row in itertools.chain(head, it):
        rows += 1
        for v in row:
            if v is not None:
                vals += 1
    return rows, vals, types


async def atouch(rows_aiter):
    """touch() for an asynchronous iterable of rows: the first ten rows'
    types, then one tight loop, so the async clients do per row exactly what
    the sync ones do."""
    it = aiter(rows_aiter)
    head = []
    async for row in it:
        head.append(row)
        if len(head) == 10:
            break
    types = []
    for row in head:
        note_types(types, row)
    rows = len(head)
    if head and isinstance(head[0], (str, bytes)):  # rows rendered as JSON text
        async for _ in it:
            rows += 1
        return rows, None, types
    vals = sum(1 for row in head for v in row if v is not None)
    async for row in it:
        rows += 1
        for v in row:
            if v is not None:
                vals += 1
    return rows, vals, types


def report(rows, vals, types=()):
    out = f"rows={rows}"
    if vals is not None:
        out += f" values={vals}"
    out += " types=" + ",".join(t or "NULL" for t in types)
    print(out)
