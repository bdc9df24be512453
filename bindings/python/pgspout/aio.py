"""pgspout.aio: the streams of pgspout for asyncio (and uvloop).

    import pgspout.aio

    conn = await pgspout.aio.connect("host=... dbname=...")
    async with conn.stream("SELECT * FROM big WHERE day = $1", ["2024-01-31"],
                           chunk_rows=1000, max_memory="64MB") as s:
        async for row in s:        # the same rows as the sync API
            ...
    conn.close()

Nothing blocks the event loop on the network: connecting
(pgspout_connect_start), opening a stream (pgspout_stream_start: its
statement_timeout, savepoint and ``arrow`` describe steps included) and
reading rows (pgspout_stream_poll) return at once, and the waits are the
loop's own, on the stream's descriptor (``loop.add_reader``) and its
deadlines (``loop.call_later``): no thread per stream. Rows are converted in
C a whole chunk per call, exactly as in the sync API, and the loop gets a
turn between chunks, so a chunk's conversion bounds the loop's stall (about
a millisecond for 1000 rows of nine typed columns).

Cancelling the task that awaits a stream (``task.cancel()``,
``asyncio.wait_for`` or ``asyncio.timeout`` running out) cancels the server
query; the rest of the statement is read without blocking, and the
connection is ready for the next stream. Leaving ``async with`` early does
the same. Errors are the sync API's exception classes (pgspout.SQLError,
pgspout.TimeoutError ...).

One task at a time reads a stream (and opens streams on a connection);
``pause()``, ``resume()``, ``cancel()``, ``state``, ``stats`` may come from
any task.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import (Any, AsyncIterator, Deque, Dict, Generator, Generic, List, Literal,
                    Optional, Sequence, cast, overload)

from . import _pgspout as _c
from . import (
    Column,
    Error,
    OptionValue,
    StateError,
    TimeoutError,
    Param,
    R,
    Row,
    TupleRow,
    DictRow,
    JsonRow,
    _MODES,
    _json_option,
    _options,
    _params,
    _rows_mode,
)

__all__ = ["connect", "Connection", "Pool", "Stream"]

# pgspout_stream_poll / pgspout_conn_poll outcomes (pgspout.h)
_OK, _DONE, _AGAIN, _PAUSED = 0, 1, 2, 3
_LIVE = ("running", "paused")


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


async def _wait(fd: int, write: bool, ms: int) -> None:
    """Until fd is readable (writable), or ms milliseconds passed (-1: no
    limit), through the running loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, _wake, fut)
    else:
        loop.add_reader(fd, _wake, fut)
    timer = loop.call_later(ms / 1000.0, _wake, fut) if ms >= 0 else None
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()


class _ArrowExport:
    """The stream's Arrow C stream (one record batch per chunk, built in C),
    for pyarrow to import; read only once rows are ready, so that no
    get_next ever waits."""

    __slots__ = ("_s",)

    def __init__(self, s: "Stream") -> None:
        self._s = s

    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object:
        return self._s._raw.arrow_capsule(self._s)


class Stream(Generic[R]):
    """A running query for asyncio: ``async for row in s``, ``await
    s.fetch()``, ``async for batch in s.arrow_batches()``. Created by
    :meth:`Connection.stream`; ``await`` it or enter it with ``async with``
    to wait for the server's first answer (a SQL error raises there)."""

    __slots__ = ("_raw", "_conn", "_mode", "_held", "_lease", "__weakref__")
    _raw: _c.Stream
    _conn: "Connection"
    _mode: str
    _held: Optional[List[Any]]
    _lease: bool

    def __init__(self, raw: _c.Stream, conn: "Connection", mode: str,
                 lease: bool = False) -> None:
        self._raw = raw
        self._conn = conn
        self._mode = mode
        self._held = None
        self._lease = lease  # Pool.stream: the connection goes back at the end

    # ------------------------------------------------------------ waiting

    async def _ready(self) -> int:
        """Drive the stream until rows are buffered (_OK) or it ended
        (_DONE); the loop waits on its descriptor. An error raises; a
        cancelled task cancels the server query first."""
        raw = self._raw
        rc: int = raw.poll()
        while rc >= _AGAIN:
            try:
                await _wait(raw.fileno(), False, raw.wait_ms())
            except asyncio.CancelledError:
                await self._abort()
                raise
            rc = raw.poll()
        return rc

    async def _turn(self) -> None:
        """Give the loop a turn (between chunks): other tasks run even when
        the server is always ahead."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            await self._abort()
            raise

    async def _abort(self) -> None:
        """Cancel the server query (the request is sent from the loop's
        executor: it may wait for the server to take it) and read the rest
        of the statement without blocking, so the connection is idle."""
        raw = self._raw
        self._drop_held()
        if raw.state() in _LIVE:
            try:
                await asyncio.get_running_loop().run_in_executor(None, raw.cancel)
            except Error:
                pass  # it ended meanwhile
        while True:
            try:
                rc = raw.poll()
            except Error:
                return  # cancelled (or failed): the statement is over
            if rc < _AGAIN:
                return
            await _wait(raw.fileno(), False, raw.wait_ms())

    def _drop_held(self) -> None:
        # rows converted but not yet yielded are never handed out after a
        # cancel: emptying the list ends the loop that yields them
        if self._held is not None:
            self._held.clear()
            self._held = None

    async def _open(self) -> "Stream[R]":
        try:
            await self._ready()
        except BaseException:
            self._raw.close()
            await self._give_back()
            raise
        return self

    async def _give_back(self) -> None:
        """A Pool.stream's connection goes back to its pool (once)."""
        if self._lease:
            self._lease = False
            await self._conn.aclose()

    def __await__(self) -> Generator[Any, None, "Stream[R]"]:
        return self._open().__await__()

    async def __aenter__(self) -> "Stream[R]":
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # --------------------------------------------------------------- rows

    async def fetch(self) -> Optional[List[R]]:
        """The next rows as a list (the rest of the current chunk, or the
        next chunk); None at the end."""
        await self._turn()
        try:
            await self._ready()
            rows = self._raw.fetch()
        except Error:
            await self._give_back()
            raise
        if rows is None:
            await self._give_back()
        return rows

    def __aiter__(self) -> AsyncIterator[R]:
        # aiter.c: a row of the current chunk costs a list index, no
        # suspension; a used-up chunk calls _refill for the next one
        it = _c.aio_rows(lambda: self._refill(it))
        return cast(AsyncIterator[R], it)

    async def _refill(self, it: Any) -> Any:
        # let go of the used-up chunk before the next is converted, as the
        # sync iterator does: its memory is reused at once (holding it would
        # make every chunk take fresh memory from the system)
        self._held = None
        rows = await self.fetch()
        if not rows:
            raise StopAsyncIteration
        self._held = rows
        it.set(rows, 1)
        return rows[0]

    async def arrow_batches(self) -> AsyncIterator[Any]:
        """``pyarrow.RecordBatch`` objects, one per chunk, built in C
        (``pip install pgspout[arrow]``); with the option ``arrow`` the
        results come in binary where the types allow, as in the sync API."""
        import pyarrow  # type: ignore[import-not-found, import-untyped]

        reader = pyarrow.RecordBatchReader.from_stream(_ArrowExport(self))
        while True:
            await self._turn()
            await self._ready()
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            yield batch

    async def to_arrow(self) -> Any:
        """The rest of the rows as one ``pyarrow.Table``."""
        import pyarrow  # type: ignore[import-not-found, import-untyped]

        batches = [b async for b in self.arrow_batches()]
        if batches:
            return pyarrow.Table.from_batches(batches)
        reader = pyarrow.RecordBatchReader.from_stream(_ArrowExport(self))
        return reader.read_all()

    # ------------------------------------------------------------ control

    def pause(self) -> None:
        """Stop reading from the server; buffered rows stay readable."""
        self._raw.pause()

    def resume(self) -> None:
        """Undo pause()."""
        self._raw.resume()

    async def cancel(self) -> None:
        """Cancel the server query: the task reading the stream gets
        pgspout.CancelledError at its next row request (rows it has not
        received yet are dropped). Returns once the server took the
        request."""
        self._drop_held()
        if self._raw.state() in _LIVE:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._raw.cancel)
            except Error:
                pass

    async def aclose(self) -> None:
        """Close the stream; a query still running is cancelled first,
        without blocking the loop. Idempotent."""
        if self._raw.state() in _LIVE or self._raw.state() == "cancelled":
            await self._abort()
        self._raw.close()
        await self._give_back()

    def close(self) -> None:
        """Close now: a query still running is cancelled and drained with
        the sync API's bounded wait (prefer ``await aclose()``)."""
        self._raw.close()

    # ---------------------------------------------------------- about it

    @property
    def state(self) -> str:
        """running, paused, done, limited, failed, cancelled or closed."""
        return self._raw.state()

    @property
    def stats(self) -> Dict[str, Any]:
        """Snapshot of the stream's counters, as on pgspout.Stream."""
        return self._raw.stats()

    @property
    def command_tag(self) -> str:
        """The server's command tag once the statement completed, as on
        pgspout.Stream ("" before that)."""
        return self._raw.command_tag()

    @property
    def columns(self) -> List[Column]:
        """The result columns, known once the stream was awaited."""
        return [Column(n, t) for n, t in self._raw.columns()]

    @property
    def rows_mode(self) -> str:
        return self._mode

    @property
    def connection(self) -> "Connection":
        return self._conn

    def __repr__(self) -> str:
        return "<pgspout.aio.Stream %s>" % self.state


class Connection:
    """A connection for asyncio (use :func:`connect`). One stream at a time;
    ``async with`` closes it."""

    __slots__ = ("_raw", "_pool", "__weakref__")
    _raw: _c.Connection
    _pool: Optional["Pool"]

    def __init__(self, raw: _c.Connection, pool: Optional["Pool"] = None) -> None:
        self._raw = raw
        self._pool = pool  # lent by this pool: closing gives it back

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["tuple"] = "tuple", **options: OptionValue) -> Stream[TupleRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["dict"], **options: OptionValue) -> Stream[DictRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["json"], **options: OptionValue) -> Stream[JsonRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str, **options: OptionValue) -> Stream[Row]: ...

    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str = "tuple", **options: OptionValue) -> Stream[Any]:
        """Start sql ($1..$n bound to params) and return its Stream at once,
        without waiting: ``async with`` it, or ``await`` it, to wait for
        the server's answer. Options as in pgspout.Connection.stream
        (rows="tuple|dict|json", chunk_rows, timeout, arrow...)."""
        if not isinstance(sql, str):
            raise TypeError("sql must be str, not %s" % type(sql).__name__)
        mode = _rows_mode({"rows": rows})
        raw = self._raw.start(sql, _params(params), _options(_json_option(mode, options)),
                              _MODES[mode])
        return Stream(raw, self, mode)

    async def cancel(self) -> None:
        """Ask the server to cancel whatever runs on the connection."""
        await asyncio.get_running_loop().run_in_executor(None, self._raw.cancel)

    def close(self) -> None:
        """Close the connection (and its open stream); a pooled one goes
        back to its pool, reset there with a blocking round trip (prefer
        ``await aclose()``). Idempotent."""
        self._raw.close()
        if self._pool is not None:
            self._pool._wake_next()

    async def aclose(self) -> None:
        """Close as close() does, the pooled connection's reset (and the
        cancel of a stream still open on it) in the loop's executor, not on
        the loop. Idempotent."""
        if self._pool is None:
            self._raw.close()
            return
        if not self._raw.closed():
            await asyncio.get_running_loop().run_in_executor(None, self._raw.close)
        self._pool._wake_next()

    @property
    def closed(self) -> bool:
        return self._raw.closed()

    @property
    def ok(self) -> bool:
        """True if the connection can run a stream now."""
        return self._raw.ok()

    @property
    def server_version(self) -> int:
        return self._raw.server_version()

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "<pgspout.aio.Connection %s>" % ("closed" if self.closed else "open")


async def connect(dsn: str = "", **options: OptionValue) -> Connection:
    """Connect without blocking the loop (libpq's PQconnectPoll underneath;
    host names are looked up by libpq: give addresses where a slow lookup
    matters). Options as in pgspout.connect; connect_timeout bounds the whole
    connect. Raises pgspout.ConnectionError."""
    if not isinstance(dsn, str):
        raise TypeError("dsn must be str, not %s" % type(dsn).__name__)
    raw = _c.connect_start(dsn, _options(options))
    try:
        while True:
            done, fd, want_write, ms = raw.connect_poll()
            if done:
                return Connection(raw)
            await _wait(fd, bool(want_write), ms)
    except BaseException:
        raw.close()
        raise


class _Lease:
    """What Pool.connection() returns: ``async with`` it (the connection
    goes back at the block's end) or ``await`` it (give it back with
    ``await conn.aclose()``)."""

    __slots__ = ("_pool", "_timeout", "_conn")

    def __init__(self, pool: "Pool", timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Optional[Connection] = None

    async def _get(self) -> Connection:
        self._conn = Connection(await self._pool._acquire(self._timeout), self._pool)
        return self._conn

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._get().__await__()

    async def __aenter__(self) -> Connection:
        return await self._get()

    async def __aexit__(self, *exc: Any) -> None:
        if self._conn is not None:
            await self._conn.aclose()


class _PooledStream(Generic[R]):
    """What Pool.stream() returns: ``async with`` it, or ``await`` it, for
    the Stream once a connection is lent and the server answered."""

    __slots__ = ("_pool", "_sql", "_params", "_rows", "_options", "_timeout", "_stream")

    def __init__(self, pool: "Pool", sql: str, params: Optional[Sequence[Param]], rows: str,
                 options: Dict[str, OptionValue], timeout: Optional[float]) -> None:
        if not isinstance(sql, str):
            raise TypeError("sql must be str, not %s" % type(sql).__name__)
        self._pool = pool
        self._sql = sql
        self._params = params
        self._rows = rows
        self._options = options
        self._timeout = timeout
        self._stream: Optional[Stream[R]] = None

    async def _get(self) -> Stream[R]:
        mode = _rows_mode({"rows": self._rows})
        params = _params(self._params)
        options = _options(_json_option(mode, self._options))
        conn = Connection(await self._pool._acquire(self._timeout), self._pool)
        try:
            raw = conn._raw.start(self._sql, params, options, _MODES[mode])
        except BaseException:
            await conn.aclose()
            raise
        self._stream = Stream(raw, conn, mode, lease=True)
        return await self._stream._open()

    def __await__(self) -> Generator[Any, None, Stream[R]]:
        return self._get().__await__()

    async def __aenter__(self) -> Stream[R]:
        return await self._get()

    async def __aexit__(self, *exc: Any) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class Pool:
    """pgspout.Pool for asyncio: the same C pool (``pgspout_pool``: keys,
    checks, the reset between users, metrics) with waits that never block
    the loop.

        pool = pgspout.aio.Pool(dsn, max_size=10)
        async with pool.connection() as conn:
            async with conn.stream("SELECT ...") as s: ...
        async with pool.stream("SELECT ... $1", [x]) as s:
            async for row in s: ...
        await pool.aclose()

    An idle connection is taken on the loop (pgspout_pool_acquire_idle: no
    I/O wait). A new connection (while fewer than ``max_size`` are open)
    and the reset of a returned one (one round trip, or a cancel first)
    run in the loop's default executor. With every connection lent, tasks
    wait on the loop in arrival order for one to come back, up to
    ``timeout`` seconds (default: the pool's ``acquire_timeout``), then
    :class:`pgspout.TimeoutError`; a cancelled task leaves the queue, and a
    connection it was being given goes back. A stream of :meth:`stream`
    gives its connection back when read to its end, failed, or closed.
    Use the pool from one event loop.
    """

    __slots__ = ("_raw", "_queue", "_opening", "__weakref__")
    _raw: _c.Pool
    _queue: Deque["asyncio.Future[None]"]
    _opening: int

    def __init__(self, dsn: str = "", **options: OptionValue) -> None:
        if not isinstance(dsn, str):
            raise TypeError("dsn must be str, not %s" % type(dsn).__name__)
        self._raw = _c.Pool(dsn, _options(options))
        self._queue = collections.deque()
        self._opening = 0  # opens sent to the executor, not yet done

    def connection(self, timeout: Optional[float] = None) -> _Lease:
        """A pooled :class:`Connection`: ``async with pool.connection() as
        conn`` (given back at the block's end) or ``conn = await
        pool.connection()`` (give it back with ``await conn.aclose()``).
        timeout: seconds to wait for one (None: the pool's
        acquire_timeout; 0: do not wait)."""
        return _Lease(self, timeout)

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["tuple"] = "tuple", timeout: Optional[float] = None,
               **options: OptionValue) -> _PooledStream[TupleRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["dict"], timeout: Optional[float] = None,
               **options: OptionValue) -> _PooledStream[DictRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["json"], timeout: Optional[float] = None,
               **options: OptionValue) -> _PooledStream[JsonRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str, timeout: Optional[float] = None,
               **options: OptionValue) -> _PooledStream[Row]: ...

    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str = "tuple", timeout: Optional[float] = None,
               **options: OptionValue) -> _PooledStream[Any]:
        """Connection.stream on a pooled connection: ``async with
        pool.stream(sql) as s`` or ``s = await pool.stream(sql)``; the
        connection goes back when the stream ends or is closed. timeout: as
        for connection()."""
        return _PooledStream(self, sql, params, rows, options, timeout)

    def _wake_next(self) -> None:
        """A connection came back (or a place came free): the first waiter
        looks again."""
        for fut in self._queue:
            if not fut.done():
                fut.set_result(None)
                return

    async def _acquire(self, timeout: Optional[float]) -> _c.Connection:
        raw = self._raw
        if timeout is None:
            ms = raw.stats()["acquire_timeout_ms"]
            limit = ms / 1000.0 if ms > 0 else math.inf
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError("timeout must be None or a number of seconds >= 0")
        else:
            limit = float(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        fut: Optional["asyncio.Future[None]"] = None  # our place in the queue
        try:
            while True:
                if fut is None and self._queue:
                    pass  # others wait already: behind them
                else:
                    conn = raw.acquire_idle()
                    if conn is None:
                        # an open already counted in total may count twice
                        # here for a moment: that only makes a task wait
                        # for the open's end (it wakes the queue)
                        st = raw.stats()
                        if st["total"] + self._opening < st["max_size"]:
                            conn = await self._open(loop)
                    if conn is not None:
                        return conn
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(
                        "pool exhausted: no connection came free within the acquire timeout")
                if fut is None:
                    fut = loop.create_future()
                    self._queue.append(fut)
                elif fut.done():  # woken, but another took it: wait again, first in line
                    i = self._queue.index(fut)
                    fut = loop.create_future()
                    self._queue[i] = fut
                try:
                    await asyncio.wait_for(asyncio.shield(fut), None if math.isinf(left) else left)
                except asyncio.TimeoutError:
                    pass  # looks once more, then raises
        finally:
            if fut is not None:
                woken = fut.done()
                self._queue.remove(fut)
                if woken:
                    self._wake_next()  # whatever woke us may serve the next

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Optional[_c.Connection]:
        """A new connection (or one released meanwhile), opened in the
        executor; None when the pool filled up meanwhile."""
        cf = loop.run_in_executor(None, self._raw.acquire, 0)
        self._opening += 1
        cf.add_done_callback(self._opened)
        try:
            return await asyncio.shield(cf)
        except TimeoutError:
            return None
        except asyncio.CancelledError:
            cf.add_done_callback(self._give_back_late)
            raise

    def _opened(self, cf: "asyncio.Future[_c.Connection]") -> None:
        self._opening -= 1
        self._wake_next()

    def _give_back_late(self, cf: "asyncio.Future[_c.Connection]") -> None:
        # a connection opened for a task cancelled meanwhile
        if not cf.cancelled() and cf.exception() is None:
            c = cf.result()
            fut = asyncio.get_running_loop().run_in_executor(None, c.close)
            fut.add_done_callback(lambda _f: self._wake_next())

    @property
    def stats(self) -> Dict[str, int]:
        """As pgspout.Pool.stats, with ``waiting`` the tasks waiting here."""
        st = self._raw.stats()
        st["waiting"] += len(self._queue)
        return st

    async def maintain(self) -> None:
        """pgspout.Pool.maintain, in the executor."""
        await asyncio.get_running_loop().run_in_executor(None, self._raw.maintain)

    def close(self) -> None:
        """Close the pool: waiting tasks raise StateError, idle connections
        close now, lent ones when they come back. Idempotent."""
        self._raw.close()
        for fut in self._queue:
            if not fut.done():
                fut.set_result(None)

    async def aclose(self) -> None:
        """close(), its socket closes in the executor."""
        await asyncio.get_running_loop().run_in_executor(None, self._raw.close)
        self.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed()

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self.closed:
            return "<pgspout.aio.Pool closed>"
        st = self.stats
        return "<pgspout.aio.Pool %d/%d in use, %d idle, %d waiting>" % (
            st["in_use"], st["max_size"], st["idle"], st["waiting"])
