"""psycopg2: server-side (named) cursor, itersize 10000."""
import psycopg2

from _common import args, report, touch

a = args()
if a is None:
    print(f"psycopg2 {psycopg2.__version__.split()[0]} (libpq {psycopg2.extensions.libpq_version()})")
    raise SystemExit
dsn, sql, opts = a
conn = psycopg2.connect(dsn)
cur = conn.cursor(name="bench")
cur.itersize = opts.get("itersize", 10000)
cur.execute(sql)
report(*touch(cur))
cur.close()
conn.close()
