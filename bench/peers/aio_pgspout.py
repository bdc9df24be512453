"""pgspout.aio: async for over conn.stream(sql, **options) with a 1 ms ticker
task; options as KEY=VALUE arguments (e.g. rows=json, chunk_rows=1000,
loop=uvloop)."""
import pgspout
import pgspout.aio

from _common import args, atouch, report
from _ticker import Ticker, run

a = args()
if a is None:
    print(f"pgspout.aio {getattr(pgspout, '__version__', '?')}")
    raise SystemExit
dsn, sql, opts = a
loop_kind = opts.pop("loop", "asyncio")


async def main():
    t = Ticker()
    t.start()
    conn = await pgspout.aio.connect(dsn)
    async with conn.stream(sql, **opts) as s:
        counted = await atouch(s)
    conn.close()
    t.stop()
    report(*counted)
    print(t.fields())


run(main, {"loop": loop_kind})
