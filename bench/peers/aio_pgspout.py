"""pgspout.aio: async for over conn.stream(sql, **options) with a 1 ms ticker
task; options as KEY=VALUE arguments (e.g. rows=json, chunk_rows=1000,
loop=uvloop)."""
import pgspout
import pgspout.aio

from _common import args, note_types, report
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
    rows = vals = 0
    types = []
    json_rows = opts.get("rows") == "json"
    async with conn.stream(sql, **opts) as s:
        async for row in s:
            rows += 1
            if rows <= 10:
                note_types(types, row)
            if not json_rows:
                for v in row:
                    if v is not None:
                        vals += 1
    conn.close()
    t.stop()
    report(rows, None if json_rows else vals, types)
    print(t.fields())


run(main, {"loop": loop_kind})
