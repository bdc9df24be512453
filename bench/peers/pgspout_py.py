"""pgspout's Python module: conn.stream(sql, **options); options as KEY=VALUE
arguments (e.g. chunk_rows=10000 rows=json)."""
import pgspout

from _common import args, report, touch

a = args()
if a is None:
    print(f"pgspout {getattr(pgspout, '__version__', '?')}")
    raise SystemExit
dsn, sql, opts = a
conn = pgspout.connect(dsn)
report(*touch(conn.stream(sql, **opts)))
conn.close()
