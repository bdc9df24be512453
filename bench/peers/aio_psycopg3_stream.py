"""psycopg 3: AsyncCursor.stream() (single-row mode; chunked with libpq >= 17
and size=N), with a 1 ms ticker task (loop=uvloop: on uvloop)."""
import psycopg

from _common import args, atouch, report
from _ticker import Ticker, run

a = args()
if a is None:
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})")
    raise SystemExit
dsn, sql, opts = a


async def main():
    t = Ticker()
    t.start()
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            kw = {}
            if "size" in opts and psycopg.pq.version() >= 170000:
                kw["size"] = int(opts["size"])
            counted = await atouch(cur.stream(sql, **kw))
    t.stop()
    report(*counted)
    print(t.fields())


run(main, opts)
