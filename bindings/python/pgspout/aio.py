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
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, cast

from . import _pgspout as _c
from . import (
    Column,
    Error,
    OptionValue,
    Param,
    Row,
    _MODES,
    _json_option,
    _options,
    _params,
    _rows_mode,
)

__all__ = ["connect", "Connection", "Stream"]

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


class Stream:
    """A running query for asyncio: ``async for row in s``, ``await
    s.fetch()``, ``async for batch in s.arrow_batches()``. Created by
    :meth:`Connection.stream`; ``await`` it or enter it with ``async with``
    to wait for the server's first answer (a SQL error raises there)."""

    __slots__ = ("_raw", "_conn", "_mode", "_held", "__weakref__")
    _raw: _c.Stream
    _conn: "Connection"
    _mode: str
    _held: Optional[List[Row]]

    def __init__(self, raw: _c.Stream, conn: "Connection", mode: str) -> None:
        self._raw = raw
        self._conn = conn
        self._mode = mode
        self._held = None

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

    async def _open(self) -> "Stream":
        try:
            await self._ready()
        except BaseException:
            self._raw.close()
            raise
        return self

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> "Stream":
        return await self._open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # --------------------------------------------------------------- rows

    async def fetch(self) -> Optional[List[Row]]:
        """The next rows as a list (the rest of the current chunk, or the
        next chunk); None at the end."""
        await self._turn()
        await self._ready()
        return self._raw.fetch()

    def __aiter__(self) -> AsyncIterator[Row]:
        # aiter.c: a row of the current chunk costs a list index, no
        # suspension; a used-up chunk calls _refill for the next one
        it = _c.aio_rows(lambda: self._refill(it))
        return cast(AsyncIterator[Row], it)

    async def _refill(self, it: Any) -> Row:
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

    __slots__ = ("_raw", "__weakref__")
    _raw: _c.Connection

    def __init__(self, raw: _c.Connection) -> None:
        self._raw = raw

    def stream(self, sql: str, params: Optional[Sequence[Param]] = None,
               **options: OptionValue) -> Stream:
        """Start sql ($1..$n bound to params) and return its Stream at once,
        without waiting: ``async with`` it, or ``await`` it, to wait for
        the server's answer. Options as in pgspout.Connection.stream
        (rows="tuple|dict|json", chunk_rows, timeout, arrow...)."""
        if not isinstance(sql, str):
            raise TypeError("sql must be str, not %s" % type(sql).__name__)
        mode = _rows_mode(options)
        raw = self._raw.start(sql, _params(params), _options(_json_option(mode, options)),
                              _MODES[mode])
        return Stream(raw, self, mode)

    async def cancel(self) -> None:
        """Ask the server to cancel whatever runs on the connection."""
        await asyncio.get_running_loop().run_in_executor(None, self._raw.cancel)

    def close(self) -> None:
        """Close the connection (and its open stream). Idempotent."""
        self._raw.close()

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
        self.close()

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
