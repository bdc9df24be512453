"""psycopg 3: server-side (named) cursor, itersize 10000."""
import psycopg

from _common import args, report, touch

a = args()
if a is None:
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
    raise SystemExit
dsn, sql, opts = a
with psycopg.connect(dsn) as conn:
    with conn.cursor(name="bench") as cur:
        cur.itersize = opts.get("itersize", 10000)
        cur.execute(sql)
        report(*touch(cur))
