"""asyncpg: cursor(prefetch=10000) inside a transaction, with a 1 ms ticker
task (loop=uvloop: on uvloop)."""
import asyncpg

from _common import args, note_types, report
from _ticker import Ticker, run

a = args()
if a is None:
    print(f"asyncpg {asyncpg.__version__}")
    raise SystemExit
dsn, sql, opts = a


async def main():
    t = Ticker()
    t.start()
    conn = await asyncpg.connect(dsn)
    rows = vals = 0
    types = []
    async with conn.transaction():
        async for row in conn.cursor(sql, prefetch=int(opts.get("prefetch", 10000))):
            rows += 1
            if rows <= 10:
                note_types(types, row)
            for v in row:
                if v is not None:
                    vals += 1
    await conn.close()
    t.stop()
    report(rows, vals, types)
    print(t.fields())


run(main, opts)
