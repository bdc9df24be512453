"""psycopg 3: AsyncCursor.stream() (single-row mode; chunked with libpq >= 17
and size=N), with a 1 ms ticker task (loop=uvloop: on uvloop)."""
import psycopg

from _common import args, note_types, report
from _ticker import Ticker, run

a = args()
if a is None:
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
    raise SystemExit
dsn, sql, opts = a


async def main():
    t = Ticker()
    t.start()
    rows = vals = 0
    types = []
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            kw = {}
            if "size" in opts and psycopg.pq.version() >= 170000:
                kw["size"] = int(opts["size"])
            async for row in cur.stream(sql, **kw):
                rows += 1
                if rows <= 10:
                    note_types(types, row)
                for v in row:
                    if v is not None:
                        vals += 1
    t.stop()
    report(rows, vals, types)
    print(t.fields())


run(main, opts)
