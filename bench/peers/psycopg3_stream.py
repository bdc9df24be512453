"""psycopg 3: cursor.stream() (single-row mode; chunked with libpq >= 17 and size=N)."""
import psycopg

from _common import args, report, touch

a = args()
if a is None:
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
    raise SystemExit
dsn, sql, opts = a
with psycopg.connect(dsn) as conn:
    with conn.cursor() as cur:
        kw = {}
        if "size" in opts and psycopg.pq.version() >= 170000:
            kw["size"] = opts["size"]
        report(*touch(cur.stream(sql, **kw)))
