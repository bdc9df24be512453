"""asyncio: pgspout.aio streams on a connection of a pool, typed as the sync
API (tuples by default, rows="dict" dicts, rows="json" str).

    python examples/python/aio_rows.py "host=localhost dbname=app"

Several tasks share a pool of two connections; each streams its rows with
``async for`` while the event loop stays free for other work.
"""
import asyncio
import sys
from typing import Dict, List

import pgspout.aio


async def total(pool: pgspout.aio.Pool, n: int) -> int:
    acc = 0
    async with pool.stream("SELECT g FROM generate_series(1, $1::int) g", [n],
                           chunk_rows=1000) as s:
        async for row in s:
            acc += row[0]  # row: Tuple[Any, ...]
    return acc


async def names(pool: pgspout.aio.Pool) -> Dict[int, str]:
    out: Dict[int, str] = {}
    async with pool.connection() as conn:
        async with conn.stream("SELECT g AS id, 'n' || g AS name FROM generate_series(1, 3) g",
                               rows="dict") as s:
            async for d in s:  # d: Dict[str, Any]
                out[d["id"]] = d["name"]
    return out


async def main(dsn: str) -> None:
    async with pgspout.aio.Pool(dsn, max_size=2) as pool:
        sums: List[int] = await asyncio.gather(*(total(pool, 10_000 * k) for k in range(1, 5)))
        print("sums", sums)
        print("names", await names(pool))
        print("pool", pool.stats)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))
