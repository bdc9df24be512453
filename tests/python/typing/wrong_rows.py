"""Misuses mypy and pyright must both report (scripts/test.sh, stage types):
each line marked `# error` must get an error and no other line may, which
proves the row types are precise rather than Any."""
import pgspout
import pgspout.aio


def misuse(conn: pgspout.Connection) -> None:
    for row in conn.stream("SELECT 1"):
        row["a"]  # error
    for d in conn.stream("SELECT 1 AS a", rows="dict"):
        d[0]  # error
    for text in conn.stream("SELECT 1", rows="json"):
        text + 1  # error
    for r in conn.stream("SELECT 1", rows="tuple"):
        r.keys()  # error
    s = conn.stream("SELECT 1", rows="dict")
    rows = s.fetch()
    if rows is not None:
        rows[0][1]  # error


async def misuse_aio(conn: pgspout.aio.Connection, pool: pgspout.aio.Pool) -> None:
    async with conn.stream("SELECT 1") as s:
        async for row in s:
            row["a"]  # error
    async with conn.stream("SELECT 1", rows="json") as t:
        async for text in t:
            text + 1  # error
    async with pool.stream("SELECT 1 AS a", rows="dict") as d:
        rows = await d.fetch()
        if rows is not None:
            rows[0][1]  # error
