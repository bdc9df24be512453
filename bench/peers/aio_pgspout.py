"""pgspout.aio: async for over conn.stream(sql, **options) with a 1 ms ticker
task; options as KEY=VALUE arguments (e.g. rows=json, chunk_rows=1000,
loop=uvloop). The rows are counted and touched as _common.touch does for the
sync clients (the first ten typed, then one tight loop), so that the sync and
async figures differ only by how the rows are iterated."""
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
    types = []
    async with conn.stream(sql, **opts) as s:
        it = aiter(s)
        head = []
        async for row in it:
            head.append(row)
            if len(head) == 10:
                break
        for row in head:
            note_types(types, row)
        rows = len(head)
        if head and isinstance(head[0], (str, bytes)):  # rows rendered as JSON text
            async for _ in it:
                rows += 1
            vals = None
        else:
            vals = sum(1 for row in head for v in row if v is not None)
            async for row in it:
                rows += 1
                for v in row:
                    if v is not None:
                        vals += 1
    conn.close()
    t.stop()
    report(rows, vals, types)
    print(t.fields())


run(main, {"loop": loop_kind})
