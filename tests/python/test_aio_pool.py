"""pgspout.aio.Pool: the C pool for asyncio. Reuse (one backend), the reset
between users, streams that give their connection back at their end,
exhaustion (TimeoutError, waiters served in arrival order), cancelled
waiters, close() stopping waiters, a backend killed while idle, and the
loop kept ticking while tasks share a small pool."""
import asyncio
import hashlib
import time
import uuid

import pytest

import pgspout
import pgspout.aio as aio
from conftest import one
from test_aio import STALL_BOUND, Ticker


def app_name():
    return "pgs_aio_pool_" + uuid.uuid4().hex[:10]


async def scalar(conn, sql, params=None):
    async with conn.stream(sql, params) as s:
        rows = [r async for r in s]
    assert len(rows) == 1
    return rows[0]


def test_reuse_one_backend(dsn, admin):
    app = app_name()

    async def main():
        async with aio.Pool(dsn, application_name=app) as pool:
            async with pool.connection() as conn:
                (pid,) = await scalar(conn, "SELECT pg_backend_pid()")
            for _ in range(10):
                async with pool.connection() as conn:
                    assert await scalar(conn, "SELECT pg_backend_pid()") == (pid,)
                async with pool.stream("SELECT pg_backend_pid()") as s:
                    assert [r async for r in s] == [(pid,)]
            st = pool.stats
            assert (st["created"], st["acquires"], st["in_use"], st["idle"]) == (1, 21, 0, 1)
            (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity "
                              "WHERE application_name = $1", [app])
            assert n == 1
        assert pool.closed

    asyncio.run(main())


def test_reset_between_users(dsn):
    async def main():
        async with aio.Pool(dsn, max_size=1) as pool:
            async with pool.connection() as conn:
                (pid,) = await scalar(conn, "SELECT pg_backend_pid()")
                for sql in ("SET work_mem = '7MB'", "LISTEN pgs_aio_pool",
                            "BEGIN ISOLATION LEVEL SERIALIZABLE"):
                    async with conn.stream(sql) as s:
                        assert [r async for r in s] == []
            async with pool.connection() as conn:
                row = await scalar(conn, """SELECT pg_backend_pid(), current_setting('work_mem'),
                        (SELECT count(*)::int FROM pg_listening_channels()),
                        current_setting('transaction_isolation')""")
            assert row[0] == pid and row[1] != "7MB" and row[2:] == (0, "read committed")
            # a stream left open mid-result: cancelled and drained
            conn = await pool.connection()
            s = await conn.stream("SELECT generate_series(1, 100000000)", chunk_rows=100)
            assert await s.fetch()
            await conn.aclose()
            async with pool.connection() as conn:
                assert await scalar(conn, "SELECT pg_backend_pid(), 7") == (pid, 7)
            assert pool.stats["created"] == 1

    asyncio.run(main())


def test_streams_give_back(dsn):
    async def main():
        async with aio.Pool(dsn, max_size=1, acquire_timeout="10s") as pool:
            async with pool.stream("SELECT g FROM generate_series(1, 2500) g",
                                   rows="dict") as s:
                assert pool.stats["in_use"] == 1
                assert [r["g"] async for r in s] == list(range(1, 2501))
                assert pool.stats["in_use"] == 0  # read to its end
            s = await pool.stream("SELECT generate_series(1, 3000)", chunk_rows=1000)
            got = []
            while (rows := await s.fetch()) is not None:
                got.extend(rows)
            assert len(got) == 3000 and pool.stats["in_use"] == 0
            s = await pool.stream("SELECT generate_series(1, 100000000)", chunk_rows=100)
            assert await s.fetch()
            await s.aclose()  # half-read
            assert pool.stats["in_use"] == 0
            with pytest.raises(pgspout.SQLError):
                await pool.stream("SELECT * FROM pgs_no_such_table")
            assert pool.stats["in_use"] == 0
            with pytest.raises(pgspout.SQLError):
                s = await pool.stream("SELECT CASE WHEN g = 2000 THEN 1 / (g - g) ELSE g END "
                                      "FROM generate_series(1, 3000) g", chunk_rows=100)
                async for _ in s:  # fails mid-stream, no aclose
                    pass
            assert pool.stats["in_use"] == 0
            with pytest.raises(pgspout.OptionError):
                await pool.stream("SELECT 1", chunk_rows=-3)
            assert pool.stats["in_use"] == 0
            async with pool.connection() as conn:
                assert await scalar(conn, "SELECT 1") == (1,)
            assert pool.stats["created"] == 1

    asyncio.run(main())


def test_exhaustion_and_arrival_order(dsn):
    async def main():
        async with aio.Pool(dsn, max_size=1, acquire_timeout="200ms") as pool:
            held = await pool.connection()
            t0 = time.monotonic()
            with pytest.raises(pgspout.TimeoutError) as e:
                await pool.connection()
            assert time.monotonic() - t0 >= 0.19
            assert "pool exhausted" in str(e.value)
            with pytest.raises(pgspout.TimeoutError):
                await pool.stream("SELECT 1", timeout=0)
            with pytest.raises(ValueError):
                await pool.connection(timeout=-1)

            order = []

            async def user(i):
                async with pool.connection(timeout=60) as conn:
                    order.append(i)
                    await scalar(conn, "SELECT 1")

            tasks = []
            for i in range(5):
                tasks.append(asyncio.ensure_future(user(i)))
                while pool.stats["waiting"] < i + 1:  # queued in this order
                    await asyncio.sleep(0.001)
            await held.aclose()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            assert order == [0, 1, 2, 3, 4]
            assert pool.stats["created"] == 1 and pool.stats["waiting"] == 0

    asyncio.run(main())


def test_cancelled_waiter_and_cancelled_open(dsn):
    async def main():
        async with aio.Pool(dsn, max_size=1, acquire_timeout="60s") as pool:
            held = await pool.connection()
            waiter = asyncio.ensure_future(pool.connection().__aenter__())
            while pool.stats["waiting"] == 0:
                await asyncio.sleep(0.001)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.stats["waiting"] == 0
            await held.aclose()
            async with pool.connection(timeout=0) as conn:  # nobody took it
                assert await scalar(conn, "SELECT 2") == (2,)
        # cancelled while its new connection is being opened (executor):
        # the connection, once open, goes back
        async with aio.Pool(dsn, max_size=1) as pool:
            t = asyncio.ensure_future(pool.connection().__aenter__())
            await asyncio.sleep(0)  # started: now in the executor
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            deadline = time.monotonic() + 30
            while pool.stats["idle"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            st = pool.stats
            assert (st["created"], st["idle"], st["in_use"]) == (1, 1, 0)
            async with pool.connection(timeout=30) as conn:
                assert await scalar(conn, "SELECT 3") == (3,)

    asyncio.run(main())


def test_close_stops_waiters(dsn):
    async def main():
        pool = aio.Pool(dsn, max_size=1, acquire_timeout="60s")
        held = await pool.connection()
        waiter = asyncio.ensure_future(pool.connection().__aenter__())
        while pool.stats["waiting"] == 0:
            await asyncio.sleep(0.001)
        await pool.aclose()
        with pytest.raises(pgspout.StateError):
            await asyncio.wait_for(waiter, 30)
        await held.aclose()  # back to a closed pool: closed
        with pytest.raises(pgspout.StateError):
            await pool.connection()

    asyncio.run(main())


def test_backend_killed_while_idle(dsn, admin):
    async def main():
        async with aio.Pool(dsn, max_size=2) as pool:
            async with pool.connection() as conn:
                (pid,) = await scalar(conn, "SELECT pg_backend_pid()")
            assert one(admin, "SELECT pg_terminate_backend($1::int, 10000)", [pid]) == (True,)
            async with pool.connection() as conn:
                (pid2,) = await scalar(conn, "SELECT pg_backend_pid()")
            assert pid2 != pid
            assert pool.stats["created"] == 2

    asyncio.run(main())


SUMS = "SELECT sum(g)::int8, md5(string_agg(md5(g::text), '' ORDER BY g)) FROM generate_series(1, $1::int) g"


def test_tasks_share_a_small_pool_without_stalling_the_loop(dsn, conn):
    n = 20_000
    want = one(conn, SUMS, [n])

    pool = None

    async def user():
        async with pool.stream("SELECT g, md5(g::text) FROM generate_series(1, $1::int) g "
                               "ORDER BY g", [n], chunk_rows=1000) as s:
            total, parts = 0, []
            async for g, h in s:
                total += g
                parts.append(h)
        return total, hashlib.md5("".join(parts).encode()).hexdigest()

    async def main():
        nonlocal pool
        pool = aio.Pool(dsn, max_size=3, acquire_timeout="120s")
        with Ticker() as t:
            results = await asyncio.wait_for(asyncio.gather(*(user() for _ in range(12))), 300)
        st = pool.stats
        await pool.aclose()
        return results, st, t

    results, st, t = asyncio.run(main())
    assert all(r == tuple(want) for r in results)
    assert st["created"] <= 3 and st["acquires"] == 12 and st["in_use"] == 0
    assert st["timeouts"] == 0  # no task's open raced another's
    assert t.ticks > 0
    assert t.max_stall < STALL_BOUND, "loop stalled %.1f ms" % (t.max_stall * 1000)


def test_json_rows_as_row_to_json(dsn, conn):
    """rows="json" on a pooled stream renders composites as row_to_json does
    (the option json), like Connection.stream's."""
    sql = ("SELECT g AS id, ROW(g, 'x' || g)::pgs_aio_pool_t AS c, ARRAY[g, NULL] AS a "
           "FROM generate_series(1, 30) g")
    list(conn.stream("DROP TYPE IF EXISTS pgs_aio_pool_t"))
    list(conn.stream("CREATE TYPE pgs_aio_pool_t AS (n int, s text)"))
    try:
        async def main():
            async with aio.Pool(dsn, max_size=1) as pool:
                async with pool.stream(sql, rows="json") as s:
                    return [r async for r in s]
        ours = asyncio.run(main())
        theirs = [r for (r,) in conn.stream("SELECT row_to_json(q)::text FROM (%s) q" % sql)]
        assert len(ours) == 30
        assert ours == theirs
    finally:
        list(conn.stream("DROP TYPE pgs_aio_pool_t"))
