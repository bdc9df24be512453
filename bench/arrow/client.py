"""One client of the Arrow benchmark (bench/arrow/arrow_bench.py runs it).

    python client.py CLIENT --uri URI --sql SQL [--check KINDS_JSON] [--baseline]
        [--pgspout-opts k=v,...]

CLIENT is one of:
  pgspout_reader  conn.stream(sql, **opts).arrow_reader(), batch by batch
  pgspout_table   conn.stream(sql, **opts).to_arrow(): one pyarrow.Table
  adbc            adbc_driver_postgresql.dbapi: cursor.execute(sql);
                  cursor.fetch_record_batch(), batch by batch
  connectorx      connectorx.read_sql(uri, sql, return_type="arrow"): one
                  pyarrow.Table (ConnectorX holds the whole result)
  pandas          pandas.read_sql(sql, psycopg 3 connection, chunksize=50000,
                  coerce_float=False), frame by frame

Prints one JSON line on stdout: rows, fetch wall seconds, fetch CPU seconds
(time.process_time: every thread of the process) and, with --check, per
column the Arrow type the client produced and the canonical checksum (see
checksum_spec() in arrow_bench.py for the server's side). A timed run only
counts rows, so it measures the client, not the checksum; --check runs the
same fetch and checksums every batch as it arrives (streaming clients stay
streaming). --baseline imports the client's modules, connects and runs
SELECT 1: the process's memory before any result.

Imports are lazy: each process loads only its own peer's modules.
"""

import argparse
import json
import sys
import time

PANDAS_CHUNK = 50000


# ---------------------------------------------------------------- checksums
#
# Canonical per-column aggregates, by the PostgreSQL kind of the column (the
# runner passes the kinds: the Arrow types differ between clients). 64-bit
# quantities are summed as their low and high 32-bit halves (two's
# complement), so no sum can overflow and the comparison is exact:
#   int, bool   the integer value (bool: 0/1)
#   float       the IEEE-754 bit pattern of the float8 value
#   ts          microseconds since 1970-01-01 UTC
#   date        days since 1970-01-01
#   uuid        the 16 bytes as four big-endian 32-bit words, each summed
#   numeric     the exact sum and the exact sum of squares (Decimal)
#   text        the total UTF-8 length and the sum of the first 32 bits of
#               each value's MD5
#   json        per document, the MD5 of its sorted tokens (object keys,
#               scalars with numbers normalised: trailing zeros dropped), so
#               that key order, spacing and 1.0000 vs 1.0 do not matter; the
#               sum of their first 32 bits and the total token count
# and for every column the count of non-null values.

M32 = 0xFFFFFFFF


class Column:
    def __init__(self, name, kind):
        self.name = name
        self.kind = kind
        self.types = []  # Arrow types seen (in order, distinct)
        self.count = 0
        self.sums = [0, 0, 0, 0]  # meaning depends on kind
        self.dsum = None
        self.dsq = None

    def seen_type(self, t):
        s = str(t)
        if s not in self.types:
            self.types.append(s)

    def result(self):
        out = {"count": self.count, "types": self.types}
        if self.kind == "numeric":
            out["sum"] = _dec_text(self.dsum)
            out["sumsq"] = _dec_text(self.dsq)
        elif self.kind == "uuid":
            out["w"] = self.sums
        elif self.kind in ("text", "json"):
            out["len"] = self.sums[0]
            out["md5"] = self.sums[1]
        elif self.kind in ("bool", "date"):
            out["sum"] = self.sums[0]
        else:  # int, float, ts
            out["lo"] = self.sums[0]
            out["hi"] = self.sums[1]
        return out


def _dec_text(d):
    import decimal

    if d is None:
        return "0"
    d = decimal.Decimal(d)
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


def _storage(arr):
    """An extension array's storage (arrow.uuid, arrow.json, ADBC's opaque
    numeric): the checksum reads the values, whatever they are labelled."""
    import pyarrow as pa

    while isinstance(arr.type, pa.BaseExtensionType):
        arr = arr.storage
    return arr


def _int64_halves(arr):
    """(sum of low 32 bits, sum of high 32 bits) of non-null int64 values
    read as two's complement uint64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = arr.drop_null()
    if len(arr) == 0:
        return 0, 0
    u = arr.view(pa.uint64()) if arr.type == pa.int64() else pc.cast(arr, pa.uint64())
    lo = pc.sum(pc.bit_wise_and(u, pa.scalar(M32, pa.uint64()))).as_py() or 0
    hi = pc.sum(pc.shift_right(u, pa.scalar(32, pa.uint64()))).as_py() or 0
    return lo, hi


def _uuid_bytes(value):
    import uuid

    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return value.bytes
    return uuid.UUID(str(value)).bytes


def _json_tokens(v, out):
    import decimal

    if isinstance(v, dict):
        for k, x in v.items():
            out.append("k:" + k)
            _json_tokens(x, out)
    elif isinstance(v, list):
        for x in v:
            _json_tokens(x, out)
    elif v is None:
        out.append("z")
    elif v is True or v is False:
        out.append("b:" + ("true" if v else "false"))
    elif isinstance(v, str):
        out.append("s:" + v)
    elif isinstance(v, int):
        out.append("n:" + str(v))
    elif isinstance(v, float):
        out.append("n:" + _dec_text(decimal.Decimal(repr(v))))
    else:  # Decimal
        out.append("n:" + _dec_text(v))


def _md5_32(data):
    import hashlib

    return int.from_bytes(hashlib.md5(data).digest()[:4], "big")


def add_array(col, arr):
    """Fold one Arrow array (a batch's column) into col's aggregates."""
    import decimal

    import pyarrow as pa
    import pyarrow.compute as pc

    col.seen_type(arr.type)
    arr = _storage(arr)
    col.count += len(arr) - arr.null_count
    k = col.kind
    t = arr.type
    if k == "int":
        lo, hi = _int64_halves(pc.cast(arr, pa.int64()))
        col.sums[0] += lo
        col.sums[1] += hi
    elif k == "bool":
        col.sums[0] += pc.sum(pc.cast(arr, pa.int64())).as_py() or 0
    elif k == "float":
        f = pc.cast(arr, pa.float64())
        lo, hi = _int64_halves(f.view(pa.int64()))
        col.sums[0] += lo
        col.sums[1] += hi
    elif k == "ts":
        if not pa.types.is_timestamp(t):
            raise TypeError(f"{col.name}: timestamp column as {t}")
        us = pc.cast(arr, pa.timestamp("us", tz=t.tz))  # refuses to truncate
        lo, hi = _int64_halves(us.view(pa.int64()))
        col.sums[0] += lo
        col.sums[1] += hi
    elif k == "date":
        d = pc.cast(arr, pa.date32()).view(pa.int32())
        col.sums[0] += pc.sum(pc.cast(d, pa.int64())).as_py() or 0
    elif k == "uuid":
        for v in arr.to_pylist():
            if v is None:
                continue
            b = _uuid_bytes(v)
            for i in range(4):
                col.sums[i] += int.from_bytes(b[4 * i : 4 * i + 4], "big")
    elif k == "numeric":
        ctx = decimal.Context(prec=80)
        s = decimal.Decimal(0) if col.dsum is None else col.dsum
        q = decimal.Decimal(0) if col.dsq is None else col.dsq
        for v in arr.to_pylist():
            if v is None:
                continue
            d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
            s = ctx.add(s, d)
            q = ctx.add(q, ctx.multiply(d, d))
        col.dsum, col.dsq = s, q
    elif k == "text":
        for v in arr.to_pylist():
            if v is None:
                continue
            b = v.encode() if isinstance(v, str) else bytes(v)
            col.sums[0] += len(b)
            col.sums[1] += _md5_32(b)
    elif k == "json":
        for v in arr.to_pylist():
            if v is None:
                continue
            doc = json.loads(v, parse_float=decimal.Decimal) if isinstance(v, str) else v
            toks = []
            _json_tokens(doc, toks)
            toks.sort(key=lambda x: x.encode())
            col.sums[0] += len(toks)
            col.sums[1] += _md5_32("\x1f".join(toks).encode())
    else:
        raise ValueError(f"unknown kind {k}")


class Checker:
    def __init__(self, kinds):
        self.cols = [Column(n, k) for n, k in kinds]

    def add_batch(self, batch):
        names = batch.schema.names
        if names != [c.name for c in self.cols]:
            raise ValueError(f"columns {names} != {[c.name for c in self.cols]}")
        for i, c in enumerate(self.cols):
            add_array(c, batch.column(i))

    def result(self):
        return {c.name: c.result() for c in self.cols}


# ------------------------------------------------------------------ clients


def pgspout_opts(text):
    opts = {}
    for kv in filter(None, (text or "").split(",")):
        k, _, v = kv.partition("=")
        opts[k] = int(v) if v.isdigit() else v
    return opts


def _pgspout_stats(s):
    st = s.stats
    return {k: st[k] for k in ("chunks", "peak_buffered_bytes", "rows_delivered")}


def run_pgspout_reader(a, checker, binary=False):
    import pgspout
    import pyarrow  # noqa: F401  (imported before the clock starts)

    with pgspout.connect(a.uri) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = 0
        opts = pgspout_opts(a.pgspout_opts)
        if binary:
            opts["arrow"] = True  # binary results where every column's type allows
        with conn.stream(a.sql, **opts) as s:
            for batch in s.arrow_reader():
                rows += batch.num_rows
                if checker:
                    checker.add_batch(batch)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            a.extra = _pgspout_stats(s)
        return rows, wall, cpu


def run_pgspout_table(a, checker):
    import pgspout
    import pyarrow  # noqa: F401  (imported before the clock starts)

    with pgspout.connect(a.uri) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        with conn.stream(a.sql, **pgspout_opts(a.pgspout_opts)) as s:
            table = s.to_arrow()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            a.extra = _pgspout_stats(s)
        if checker:
            for batch in table.to_batches():
                checker.add_batch(batch)
        return table.num_rows, wall, cpu


def run_adbc(a, checker):
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(a.uri) as conn:
        with conn.cursor() as cur:
            t0, c0 = time.perf_counter(), time.process_time()
            cur.execute(a.sql)
            rows = 0
            for batch in cur.fetch_record_batch():
                rows += batch.num_rows
                if checker:
                    checker.add_batch(batch)
            return rows, time.perf_counter() - t0, time.process_time() - c0


def run_connectorx(a, checker):
    import connectorx as cx
    import pyarrow  # noqa: F401  (imported before the clock starts)

    t0, c0 = time.perf_counter(), time.process_time()
    table = cx.read_sql(a.uri, a.sql, return_type="arrow")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if checker:
        for batch in table.to_batches():
            checker.add_batch(batch)
    return table.num_rows, wall, cpu


def _pandas_conn(uri):
    import psycopg
    from psycopg.types.string import TextLoader

    conn = psycopg.connect(uri)
    # json/jsonb as their text, as every Arrow client gives them (utf8),
    # rather than parsed into dicts
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    return conn


def run_pandas(a, checker):
    import warnings

    import pandas as pd

    warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy")
    with _pandas_conn(a.uri) as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = 0
        # coerce_float=False keeps numeric as Decimal (the default makes it
        # float64, which does not hold the server's values)
        for frame in pd.read_sql(a.sql, conn, chunksize=PANDAS_CHUNK, coerce_float=False):
            rows += len(frame)
            if checker:
                import pyarrow as pa

                checker.add_batch(
                    pa.RecordBatch.from_pandas(frame, preserve_index=False)
                )
        return rows, time.perf_counter() - t0, time.process_time() - c0


CLIENTS = {
    "pgspout_reader": run_pgspout_reader,
    "pgspout_binary": lambda a, checker: run_pgspout_reader(a, checker, binary=True),
    "pgspout_table": run_pgspout_table,
    "adbc": run_adbc,
    "connectorx": run_connectorx,
    "pandas": run_pandas,
}


def baseline(a):
    """Import what the client imports, connect, SELECT 1."""
    if a.client.startswith("pgspout"):
        import pgspout
        import pyarrow  # noqa: F401

        with pgspout.connect(a.uri) as conn:
            with conn.stream("SELECT 1") as s:
                s.arrow_reader().read_all()
    elif a.client == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(a.uri) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
    elif a.client == "connectorx":
        import connectorx as cx

        cx.read_sql(a.uri, "SELECT 1", return_type="arrow")
    elif a.client == "pandas":
        import pandas as pd

        with _pandas_conn(a.uri) as conn:
            import warnings

            warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy")
            pd.read_sql("SELECT 1", conn)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=sorted(CLIENTS))
    p.add_argument("--uri", required=True)
    p.add_argument("--sql", default="SELECT 1")
    p.add_argument("--check", help="JSON list of [column, kind]: compute checksums")
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--pgspout-opts", default="")
    a = p.parse_args()
    if a.baseline:
        baseline(a)
        print(json.dumps({"rows": 0}))
        return 0
    checker = Checker(json.loads(a.check)) if a.check else None
    rows, wall, cpu = CLIENTS[a.client](a, checker)
    out = {"rows": rows, "wall": wall, "cpu": cpu}
    out.update(getattr(a, "extra", {}))
    if checker:
        out["columns"] = checker.result()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
