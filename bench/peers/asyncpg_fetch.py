"""asyncpg: conn.fetch() - the whole result in memory at once (not streaming)."""
import asyncio

import asyncpg

from _common import args, report, touch

a = args()
if a is None:
    print(f"asyncpg {asyncpg.__version__}")
    raise SystemExit
dsn, sql, opts = a


async def main():
    conn = await asyncpg.connect(dsn)
    result = await conn.fetch(sql)
    await conn.close()
    report(*touch(result))


asyncio.run(main())
