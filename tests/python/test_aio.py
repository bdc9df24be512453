"""pgspout.aio: asyncio (and uvloop, when installed) over the core's
non-blocking connect, open and poll.

The event loop's stalls are measured with a 1 ms ticker task. A stall is the
time between two ticks, less the time the loop's thread waited for a CPU
(the run delay in /proc/thread-self/schedstat): on a shared machine another
process may take the CPU for tens of milliseconds, which is not the loop
being blocked; a loop blocked in a system call (a wait on the network) or
busy in C does count."""
import asyncio
import gc
import socket
import time

import pytest

import pgspout
import pgspout.aio as aio
from conftest import one, query_running

# The property: the loop keeps ticking with a max gap well under
# 50 ms while streams run.
STALL_BOUND = 0.050


def _uvloop():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a coroutine to completion on a fresh loop of each kind."""
    if request.param == "asyncio":
        return asyncio.run
    uvloop = _uvloop()
    if uvloop is None:
        pytest.skip("uvloop is not installed")

    def run_uv(coro):
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    return run_uv


def _run_delay():
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class Ticker:
    """A task waking every millisecond; max_stall is the longest gap
    between two wake-ups less the CPU run delay (see the module doc)."""

    def __init__(self):
        self.ticks = 0
        self.max_gap = 0.0
        self.max_stall = 0.0
        self.task = None

    async def _run(self):
        last, delay = time.monotonic(), _run_delay()
        while True:
            await asyncio.sleep(0.001)
            now, d = time.monotonic(), _run_delay()
            gap = now - last
            self.max_gap = max(self.max_gap, gap)
            self.max_stall = max(self.max_stall, gap - (d - delay))
            self.ticks += 1
            last, delay = now, d

    def __enter__(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc):
        self.task.cancel()


TYPED = """SELECT g::int8 AS id, md5(g::text) AS h, (g * 0.25)::numeric(12,2) AS n,
                  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS t,
                  md5(g::text)::uuid AS u, g % 3 = 0 AS b,
                  CASE WHEN g % 100 = 0 THEN NULL ELSE g::float8 / 7 END AS f
           FROM generate_series(1, $1::int) g ORDER BY g"""
SERVER_SUMS = """SELECT sum(g)::int8, md5(string_agg(md5(g::text), '' ORDER BY g)),
                        sum((g * 0.25)::numeric(12,2))
                 FROM generate_series(1, $1::int) g"""


# ------------------------------------------------------------------ rows

def test_rows_and_checksums_match_the_server(conn, dsn, run):
    n = 60_000
    want = one(conn, SERVER_SUMS, [n])

    async def main():
        c = await aio.connect(dsn)
        total, parts, nsum, count = 0, [], 0, 0
        async with c.stream(TYPED, [n], chunk_rows=1000) as s:
            assert [col.name for col in s.columns] == ["id", "h", "n", "t", "u", "b", "f"]
            async for row in s:
                total += row[0]
                parts.append(row[1])
                nsum += row[2]
                count += 1
            assert s.state == "done"
            assert s.command_tag == "SELECT %d" % n
            assert s.stats["rows_delivered"] == n
        c.close()
        return count, total, "".join(parts), nsum

    import hashlib
    count, total, digest, nsum = run(main())
    assert count == n
    assert (total, hashlib.md5(digest.encode()).hexdigest(), nsum) == tuple(want)


MANY_TYPES = """SELECT g, g::text AS t, (g / 3.0)::numeric AS n, g::float4 / 3 AS f4,
                       '2024-02-29'::date + g AS d, '13:05:00.25'::time AS tm,
                       timestamptz '2024-01-01 12:00:00+05' + g * interval '1 min' AS ts,
                       interval '1 year 2 mons -3 days' * g AS iv,
                       md5(g::text)::uuid AS u, ('\\x' || md5(g::text))::bytea AS by,
                       jsonb_build_object('g', g, 'a', jsonb_build_array(g, 'x', null)) AS j,
                       ARRAY[g, NULL, g + 1] AS arr, ARRAY['a b', NULL, '"q"'] AS ta,
                       CASE WHEN g % 2 = 0 THEN NULL ELSE g END AS maybe
                FROM generate_series(1, 3000) g ORDER BY g"""


@pytest.mark.parametrize("mode", ["tuple", "dict", "json"])
def test_rows_equal_the_sync_api(conn, dsn, run, mode):
    want = list(conn.stream(MANY_TYPES, rows=mode))

    async def main():
        c = await aio.connect(dsn)
        got = [r async for r in c.stream(MANY_TYPES, rows=mode, chunk_rows=257)]
        c.close()
        return got

    got = run(main())
    assert len(got) == 3000
    assert got == want


def test_fetch_gives_chunks_then_none(dsn, run):
    async def main():
        c = await aio.connect(dsn)
        s = await c.stream("SELECT g FROM generate_series(1, 2500) g", chunk_rows=1000)
        sizes, seen = [], []
        while True:
            rows = await s.fetch()
            if rows is None:
                break
            sizes.append(len(rows))
            seen.extend(v for (v,) in rows)
        assert await s.fetch() is None  # and again
        await s.aclose()
        assert s.state == "closed"
        c.close()
        return sizes, seen

    sizes, seen = run(main())
    assert sum(sizes) == 2500 and max(sizes) <= 1000
    assert seen == list(range(1, 2501))


def test_statement_without_rows(dsn, run):
    async def main():
        c = await aio.connect(dsn)
        async with c.stream("CREATE TEMP TABLE aio_t (a int)") as s:
            assert [r async for r in s] == []
            assert s.command_tag == "CREATE TABLE"
        async with c.stream("INSERT INTO aio_t SELECT generate_series(1, 5)") as s:
            assert await s.fetch() is None
            assert s.command_tag == "INSERT 0 5"
        async with c.stream("SELECT sum(a)::int FROM aio_t") as s:
            rows = [r async for r in s]
        c.close()
        return rows

    assert run(main()) == [(15,)]


# ---------------------------------------------------------------- errors

def test_errors_are_the_sync_classes(dsn, run):
    async def main():
        c = await aio.connect(dsn)
        with pytest.raises(pgspout.SQLError) as e:
            async with c.stream("SELECT 1/0"):
                pass
        assert e.value.sqlstate == "22012"
        # mid-stream, after rows were delivered
        got = []
        with pytest.raises(pgspout.SQLError) as e:
            async with c.stream("SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g",
                                chunk_rows=100) as s:
                async for row in s:
                    got.append(row)
        assert e.value.sqlstate == "22012" and 0 < len(got) < 5000
        # option errors raise at once, before anything is sent
        with pytest.raises(pgspout.OptionError):
            c.stream("SELECT 1", chunk_rows="lots")
        with pytest.raises(pgspout.OptionError):
            c.stream("SELECT 1", rows="xml")
        with pytest.raises(TypeError):
            c.stream("SELECT $1", [object()])
        # the stream's own timeout, while the server has not answered
        with pytest.raises(pgspout.TimeoutError):
            await c.stream("SELECT pg_sleep(5)", timeout="200ms")
        # one stream at a time
        s = await c.stream("SELECT generate_series(1, 10)")
        with pytest.raises(pgspout.StateError):
            c.stream("SELECT 2")
        assert len([r async for r in s]) == 10
        await s.aclose()
        async with c.stream("SELECT 3") as s:
            rows = [r async for r in s]
        c.close()
        with pytest.raises(pgspout.StateError):
            c.stream("SELECT 4")
        return rows

    assert run(main()) == [(3,)]


def test_connect_errors(run):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def refused():
        await aio.connect("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable" % port)

    with pytest.raises(pgspout.ConnectionError, match="refused"):
        run(refused())

    async def malformed():
        await aio.connect("host=a =b")

    with pytest.raises(pgspout.ConnectionError, match="invalid connection string"):
        run(malformed())
    with pytest.raises(pgspout.OptionError):
        run(aio.connect("", connect_timeout="soon"))


def test_silent_listener_times_out_without_blocking_the_loop(run):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)  # never accepts: the kernel completes the handshake, nobody answers
    port = lsock.getsockname()[1]

    async def main():
        with Ticker() as t:
            t0 = time.monotonic()
            with pytest.raises(pgspout.ConnectionError, match="timeout expired"):
                await aio.connect("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable" % port,
                                  connect_timeout=0.8)
            took = time.monotonic() - t0
        return took, t

    try:
        took, t = run(main())
    finally:
        lsock.close()
    assert 0.75 <= took < 10
    assert t.ticks > 100  # the loop went on ticking while it waited
    assert t.max_stall < STALL_BOUND, t.max_stall


# ---------------------------------------------------------- cancellation

def test_cancelling_the_task_cancels_the_query(dsn, admin, run):
    async def main():
        c = await aio.connect(dsn)

        async def waits_for_first_rows():
            async with c.stream("SELECT pg_sleep(30) AS aio_marker_first"):
                pass

        task = asyncio.ensure_future(waits_for_first_rows())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone_first = query_running(admin, "aio_marker_first")

        seen = []

        async def reads_rows():
            async with c.stream("SELECT g, 'aio_marker_rows' FROM (SELECT generate_series(1, 100000000) AS g) x",
                                chunk_rows=500) as s:
                async for row in s:
                    seen.append(row[0])
                    if len(seen) % 500 == 0:
                        await asyncio.sleep(0)

        task = asyncio.ensure_future(reads_rows())
        while len(seen) < 5000:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone_rows = query_running(admin, "aio_marker_rows")

        # wait_for running out cancels the same way
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.stream("SELECT pg_sleep(30) AS aio_marker_wait"), 0.3)
        gone_wait = query_running(admin, "aio_marker_wait")

        assert c.ok
        async with c.stream("SELECT 42") as s:  # the connection is reusable
            rows = [r async for r in s]
        c.close()
        return gone_first, gone_rows, gone_wait, seen, rows

    gone_first, gone_rows, gone_wait, seen, rows = run(main())
    assert (gone_first, gone_rows, gone_wait) == (0, 0, 0)
    assert seen[:5000] == list(range(1, 5001))
    assert rows == [(42,)]


def test_cancel_method_and_leaving_early(dsn, admin, run):
    async def main():
        c = await aio.connect(dsn)
        s = await c.stream("SELECT g, 'aio_marker_cancel' FROM (SELECT generate_series(1, 100000000) AS g) x")
        first = await s.fetch()
        await s.cancel()
        assert s.state == "cancelled"
        with pytest.raises(pgspout.CancelledError):
            await s.fetch()
        await s.aclose()
        gone = query_running(admin, "aio_marker_cancel")
        # cancel while iterating: no row converted before it is handed out
        got = 0
        async with c.stream("SELECT g FROM (SELECT generate_series(1, 100000000) AS g) x") as s:
            with pytest.raises(pgspout.CancelledError):
                async for _ in s:
                    got += 1
                    if got == 10:
                        await s.cancel()
        # leaving async with early cancels the rest
        async with c.stream("SELECT g, 'aio_marker_break' FROM (SELECT generate_series(1, 100000000) AS g) x") as s:
            async for row in s:
                break
        gone_break = query_running(admin, "aio_marker_break")
        assert s.state == "closed"
        async with c.stream("SELECT 7") as s:
            rows = [r async for r in s]
        c.close()
        return first, gone, got, gone_break, rows

    first, gone, got, gone_break, rows = run(main())
    assert len(first) > 0 and gone == 0 and gone_break == 0
    assert got == 10
    assert rows == [(7,)]


def test_pause_and_resume(dsn, run):
    async def main():
        c = await aio.connect(dsn)
        async with c.stream("SELECT g FROM generate_series(1, 5000) g", chunk_rows=100) as s:
            first = await s.fetch()
            s.pause()
            assert s.state == "paused"
            waiting = asyncio.ensure_future(s.fetch())
            await asyncio.sleep(0.3)
            # paused: the fetch waits (on the loop) for the resume
            assert not waiting.done()
            s.resume()
            second = await asyncio.wait_for(waiting, 10)
            rest = [r async for r in s]
            stats = s.stats
        c.close()
        return first, second, rest, stats

    first, second, rest, stats = run(main())
    assert [v for (v,) in first + second + rest] == list(range(1, 5001))
    assert stats["pauses"] == 1 and stats["paused_time"] >= 0.25


# -------------------------------------------------------------- the loop

def test_loop_keeps_ticking_while_streams_run(conn, dsn, run):
    """Four streams at once (one waits on the server before its rows) and a
    1 ms ticker: the loop never stalls for anything near 50 ms.

    Between two ticks the loop may run a step of every stream, each the
    conversion of one chunk: the stall grows with the number of streams
    times chunk_rows (about 1 ms per 1000 of these rows on an idle core,
    several times that on a saturated shared machine), hence 500-row chunks
    here. The cyclic GC is off while measuring: its full collections pause
    any Python program in proportion to its live objects (pytest's
    included), which is not the library's doing."""
    n = 60_000
    want = tuple(one(conn, SERVER_SUMS, [n]))
    # the server sleeps 0.3 s before this one's first row
    slow = ("WITH z AS MATERIALIZED (SELECT pg_sleep(0.3)) "
            + TYPED.replace("FROM generate_series", "FROM z, generate_series"))

    async def consume(sql):
        import hashlib
        c = await aio.connect(dsn)
        total, parts, nsum = 0, [], 0
        async with c.stream(sql, [n], chunk_rows=500) as s:
            async for row in s:
                total += row[0]
                parts.append(row[1])
                nsum += row[2]
        c.close()
        return total, hashlib.md5("".join(parts).encode()).hexdigest(), nsum

    async def main():
        with Ticker() as t:
            await asyncio.sleep(0.05)
            t0 = time.monotonic()
            results = await asyncio.gather(consume(TYPED), consume(TYPED), consume(TYPED),
                                           consume(slow))
            took = time.monotonic() - t0
        return results, t, took

    gc.disable()
    try:
        results, t, took = run(main())
    finally:
        gc.enable()
    assert all(r == want for r in results)
    assert t.ticks >= 50, (t.ticks, took)
    assert t.max_stall < STALL_BOUND, (t.max_stall, t.max_gap)


# ----------------------------------------------------------------- Arrow

def test_arrow_batches(conn, dsn, run):
    pa = pytest.importorskip("pyarrow")
    n = 20_000
    want = one(conn, "SELECT sum(g)::int8, count(*)::int8 FROM generate_series(1, $1::int) g", [n])

    async def main():
        c = await aio.connect(dsn)
        sql = ("SELECT g::int8 AS g, md5(g::text)::uuid AS u, now() AS t "
               "FROM generate_series(1, $1::int) g")
        s = await c.stream(sql, [n], arrow=True, chunk_rows=3000)
        batches = [b async for b in s.arrow_batches()]
        await s.aclose()
        table = await (await c.stream(sql, [n], chunk_rows=5000)).to_arrow()
        # a server error ends the batches with the sync API's exception
        with pytest.raises(pgspout.SQLError):
            s = await c.stream("SELECT 1 / (10 - g) FROM generate_series(1, 20) g",
                               arrow=True, chunk_rows=2)
            async for _ in s.arrow_batches():
                pass
        await s.aclose()
        c.close()
        return batches, table

    batches, table = run(main())
    assert len(batches) >= 7 and all(0 < b.num_rows <= 3000 for b in batches)
    col = pa.concat_arrays([b.column(0) for b in batches])
    assert (col.to_pylist()[-1], sum(col.to_pylist()), len(col)) == (n, want[0], want[1])
    assert "uuid" in str(batches[0].schema.field("u").type)
    assert table.num_rows == n and table.column("g").to_pylist() == list(range(1, n + 1))
