"""asyncpg: cursor(prefetch=10000) inside a transaction, with a 1 ms ticker
task (loop=uvloop: on uvloop)."""
import asyncpg

from _common import args, atouch, report
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
    async with conn.transaction():
        counted = await atouch(conn.cursor(sql, prefetch=int(opts.get("prefetch", 10000))))
    await conn.close()
    t.stop()
    report(*counted)
    print(t.fields())


run(main, opts)
