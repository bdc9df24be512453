"""pgspout: stream PostgreSQL query results without holding the whole result.

    import pgspout

    with pgspout.connect("host=... dbname=...") as conn:
        with conn.stream("SELECT * FROM big WHERE day = $1", ["2024-01-31"],
                         chunk_rows=1000, max_memory="64MB") as s:
            for row in s:          # tuples of Python values
                ...

Rows are converted in C, a whole chunk per call, by column type: int,
float, Decimal, bool, str, bytes, date/time/datetime (timestamptz with a
fixed-offset tzinfo), timedelta, UUID, json.loads for json/jsonb, lists for
arrays, None for NULL, and the server's text for anything else or for values
Python's types cannot hold (BC dates, years after 9999, 24:00:00); the full
table is in bindings/python/README.md.

``rows="dict"`` gives dicts keyed by column name (a later duplicate name
wins); ``rows="json"`` gives each row as JSON text (pgspout_row_json).

After ``cancel()`` (from any thread) or ``close()`` the next row request
raises CancelledError / StateError: rows converted before it are never
handed out, and ``stats["rows_delivered"]`` counts the rows you received.

Threads: the GIL is released around every call that can block. ``pause()``,
``resume()``, ``cancel()``, ``state`` and ``stats`` may be used from any
thread while another thread iterates; everything else on a connection and its
stream belongs to one thread at a time (a second thread gets StateError). A
connection used in a process forked after it connected raises
ConnectionError there (the parent keeps it).
"""

from __future__ import annotations

import builtins
import datetime as _dt
import decimal as _decimal
import json as _json
import logging as _logging
import math as _math
import os as _os
import threading as _threading
import uuid as _uuid
from itertools import islice
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterator,
    List,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
    overload,
)

from . import _pgspout as _c

__all__ = [
    "connect",
    "Connection",
    "Pool",
    "Stream",
    "Column",
    "Row",
    "TupleRow",
    "DictRow",
    "JsonRow",
    "Json",
    "Error",
    "SQLError",
    "ConnectionError",
    "MemoryLimitError",
    "TimeoutError",
    "CancelledError",
    "StateError",
    "OptionError",
    "NotFoundError",
    "metrics",
    "metrics_text",
    "metrics_reset",
    "registry",
    "version",
    "version_number",
    "transport",
]

#: Run-time version of the C library ("0.1.0").
version: str = _c.version()
__version__ = version
#: major * 10000 + minor * 100 + patch.
version_number: int = _c.version_number()
#: Row transport of this process: "chunked" (the libpq loaded is >= 17) or "single-row".
transport: str = _c.transport()

#: A row of rows="tuple" (the default), rows="dict" and rows="json".
TupleRow = Tuple[Any, ...]
DictRow = Dict[str, Any]
JsonRow = str
#: Any row: what a stream whose rows= is not a literal gives.
Row = Union[TupleRow, DictRow, JsonRow]
#: The row type of a Stream (Stream[TupleRow] ...); covariant, so that a
#: Stream[TupleRow] is a Stream[Row].
R = TypeVar("R", covariant=True)
_S = TypeVar("_S", bound="Stream[Any]")
Param = Union[
    None, str, bool, int, float, _decimal.Decimal, bytes, bytearray, memoryview,
    _dt.date, _dt.datetime, _dt.time, _dt.timedelta, _uuid.UUID, Dict[str, Any], List[Any],
    Tuple[Any, ...], "Json",
]
OptionValue = Union[str, bool, int, float, _dt.timedelta]


# ----------------------------------------------------------------- errors


class Error(Exception):
    """Base class of every pgspout error.

    ``code`` is the negative C code (pgspout.EOPTION ...), ``code_name`` its
    stable name ("eoption"), ``sqlstate`` the server's SQLSTATE or None.
    """

    code: int = 0
    code_name: str = ""
    sqlstate: Optional[str] = None

    def __init__(self, message: str = "", code: Optional[int] = None,
                 sqlstate: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
            self.code_name = _NAMES.get(code, "unknown")
        self.sqlstate = sqlstate

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class SQLError(Error):
    """The server reported an error; ``sqlstate`` says which (e.g. 57014)."""


class ConnectionError(Error):
    """Could not connect (ECONNECT) or the connection was lost (ECONN)."""


class MemoryLimitError(Error):
    """The stream buffered more than max_memory allows (EMEMORY)."""


class TimeoutError(Error, builtins.TimeoutError):
    """The stream's ``timeout`` passed (ETIMEOUT) or it was paused past
    ``pause_timeout`` with ``on_pause_timeout="cancel"`` (EPAUSE_TIMEOUT)."""

    def __str__(self) -> str:  # OSError's __str__ would add "[Errno ...]"
        return self.message


class CancelledError(Error):
    """The stream was cancelled (ECANCELLED)."""


class StateError(Error):
    """The call is not valid now: closed object, ended stream, or a
    connection/stream busy with another stream or thread (ESTATE, EBUSY)."""


class OptionError(Error, ValueError):
    """Unknown option key (EOPTION) or a bad value (EVALUE)."""


class NotFoundError(Error, LookupError):
    """Registry: no stream with that id (ENOTFOUND)."""


_BY_NAME: Dict[str, Type[Error]] = {
    "esql": SQLError,
    "econnect": ConnectionError,
    "econn": ConnectionError,
    "ememory": MemoryLimitError,
    "etimeout": TimeoutError,
    "epause_timeout": TimeoutError,
    "ecancelled": CancelledError,
    # A blocking call stopped by a signal handler raises that handler's
    # exception (KeyboardInterrupt); EINTR itself surfaces only from a
    # stream that such an interrupt already ended (a registry stream read
    # again): it was cancelled, and a second KeyboardInterrupt nobody typed
    # would mislead.
    "eintr": CancelledError,
    "estate": StateError,
    "ebusy": StateError,
    "eoption": OptionError,
    "evalue": OptionError,
    "enotfound": NotFoundError,
}

# The C error table: code -> name, and a module constant per code
# (pgspout.ETIMEOUT == -11 ...).
_NAMES: Dict[int, str] = {}
_BY_CODE: Dict[int, Type[Error]] = {}
#: {code: (name, static text)} for every error code of the C library.
error_codes: Dict[int, Tuple[str, str]] = {}
_code, _name = 0, ""  # (bound even if the loop ran no step, for type checkers)
for _code in range(-1, -1000, -1):
    _name = _c.code_name(_code)
    if _name == "unknown":
        break
    _NAMES[_code] = _name
    _BY_CODE[_code] = _BY_NAME.get(_name, Error)
    error_codes[_code] = (_name, _c.strerror(_code))
    globals()[_name.upper()] = _code
del _code, _name
_EVALUE: int = _c.PGSPOUT_EVALUE


def _make_error(code: int, message: str, sqlstate: Optional[str]) -> Error:
    cls = _BY_CODE.get(code, Error)
    return cls(message, code, sqlstate)


_c.set_error_factory(_make_error)

# The C library's log records (server NOTICEs and WARNINGs, memory_warn
# crossed, a COMMIT that ended in ROLLBACK...) go to the "pgspout" logger:
# server DEBUG -> DEBUG; LOG, INFO, NOTICE -> INFO; WARNING -> WARNING;
# pgspout's own messages by their weight. The message starts with
# "stream <label>: " when it is about a stream, and the record carries
# pgspout_label, pgspout_severity (the server's, or None) and
# pgspout_sqlstate (or None) as attributes (logging's `extra`).
_logger = _logging.getLogger("pgspout")
_LOG_LEVELS = {0: _logging.DEBUG, 1: _logging.INFO, 2: _logging.WARNING, 3: _logging.ERROR}


def _log_from_c(level: int, message: str, label: Optional[str], severity: Optional[str],
                sqlstate: Optional[str]) -> None:
    pylevel = _LOG_LEVELS.get(level, _logging.WARNING)
    if not _logger.isEnabledFor(pylevel):
        return
    extra = {"pgspout_label": label, "pgspout_severity": severity, "pgspout_sqlstate": sqlstate}
    if label is None:
        _logger.log(pylevel, "%s", message, extra=extra)
    else:
        _logger.log(pylevel, "stream %s: %s", label, message, extra=extra)


_c.set_log_function(_log_from_c)


# Ctrl-C: the C library runs Python's signal handlers while it waits on the
# thread that runs them.
def _main_thread() -> None:
    _c.set_main_thread(_threading.main_thread().ident or 0)


_main_thread()
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_main_thread)


# ------------------------------------------------------ values to text

_TRUE, _FALSE = "t", "f"
#: PostgreSQL's limit on array dimensions (MAXDIM).
_MAX_DIMS = 6


class Json:
    """Send a value as JSON text: ``conn.stream("SELECT $1::jsonb",
    [pgspout.Json([1, 2])])``. A list or tuple parameter is a PostgreSQL
    array, a dict is JSON already; wrap a value in Json to send a list (or
    any value json.dumps takes) as a JSON document instead. ``dumps`` is the
    encoder (default: json.dumps)."""

    __slots__ = ("obj", "dumps")

    def __init__(self, obj: Any, dumps: Optional[Callable[[Any], str]] = None) -> None:
        self.obj = obj
        self.dumps = dumps

    def text(self) -> str:
        """The JSON text that is sent."""
        text = (self.dumps or _json.dumps)(self.obj)
        if not isinstance(text, str):
            raise TypeError("Json: dumps returned %s, not str" % type(text).__name__)
        return text

    def __repr__(self) -> str:
        return "pgspout.Json(%r)" % (self.obj,)


def _scalar(v: Any) -> Optional[str]:
    """The text of a single value, None when it is not one we can send."""
    t = type(v)
    if t is str:
        return str(v)
    if t is bool:
        return _TRUE if v else _FALSE
    if t is int:
        return int.__repr__(v)
    if t is float:
        return float.__repr__(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, bool):
        return _TRUE if v else _FALSE
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return float.__repr__(v)
    if isinstance(v, _decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(v).hex()
    if isinstance(v, (_dt.date, _dt.time)):  # datetime is a date
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return "%d days %d seconds %d microseconds" % (v.days, v.seconds, v.microseconds)
    if isinstance(v, _uuid.UUID):
        return str(v)
    if isinstance(v, Json):
        return v.text()
    if isinstance(v, dict):
        return _json.dumps(v)
    return None


_ACCEPTED = ("str, int, float, bool, None, bytes, Decimal, date/time/datetime/timedelta, UUID, "
             "dict (JSON), pgspout.Json, or a list/tuple of those (an array)")


def _array(i: int, top: Union[List[Any], Tuple[Any, ...]]) -> str:
    """A list or tuple (nested for more dimensions) as a PostgreSQL array
    literal: every element double-quoted with backslash escapes, so that
    quotes, backslashes, commas, braces, whitespace, "" and the word NULL
    arrive as written; None is an unquoted NULL. Arrays are rectangular:
    every list at one depth has the same length, and a depth holds lists or
    values, never both (else ValueError). Lists of empty lists ([[], []])
    are the empty array "{}", as PostgreSQL's ARRAY[] constructor makes."""
    dims: List[int] = []   # the length of the lists at each depth
    kinds: List[str] = []  # what the lists at each depth hold: "list" or "value"
    out: List[str] = []

    def where(path: List[int]) -> str:
        return "parameter $%d%s" % (i + 1, "".join("[%d]" % k for k in path))

    def walk(a: Union[List[Any], Tuple[Any, ...]], depth: int, path: List[int]) -> None:
        if depth >= _MAX_DIMS:
            raise ValueError("%s: an array of more than %d dimensions (PostgreSQL's limit)"
                             % (where(path), _MAX_DIMS))
        n = len(a)
        if depth == len(dims):
            dims.append(n)
        elif dims[depth] != n:
            raise ValueError("%s: ragged array: a list of %d elements where the first at this "
                             "depth has %d (PostgreSQL arrays are rectangular)"
                             % (where(path), n, dims[depth]))
        out.append("{")
        for k, e in enumerate(a):
            if k:
                out.append(",")
            kind = "list" if isinstance(e, (list, tuple)) else "value"
            if depth == len(kinds):
                kinds.append(kind)
            elif kinds[depth] != kind:
                raise ValueError("%s: ragged array: a %s where the first element at this depth "
                                 "is a %s (PostgreSQL arrays are rectangular)"
                                 % (where(path + [k]), kind, kinds[depth]))
            if kind == "list":
                walk(e, depth + 1, path + [k])
            elif e is None:
                out.append("NULL")
            else:
                text = _scalar(e)
                if text is None:
                    raise TypeError("%s: cannot send %s in an array (use %s)"
                                    % (where(path + [k]), type(e).__name__, _ACCEPTED))
                out.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        out.append("}")

    walk(top, 0, [])
    if 0 in dims:  # no elements: PostgreSQL has only the one empty array
        return "{}"
    return "".join(out)


def _param(i: int, v: Any) -> Optional[str]:
    if v is None:
        return None
    text = _scalar(v)
    if text is not None:
        return text
    if isinstance(v, (list, tuple)):
        return _array(i, v)
    raise TypeError("parameter $%d: cannot send %s (use %s)" % (i + 1, type(v).__name__, _ACCEPTED))


def _params(params: Optional[Sequence[Param]]) -> Optional[List[Optional[str]]]:
    if params is None:
        return None
    if isinstance(params, (str, bytes, bytearray, memoryview)) or not isinstance(
            params, (list, tuple, Sequence)):
        raise TypeError("params must be a sequence (list or tuple) of values, not %s"
                        % type(params).__name__)
    return [_param(i, v) for i, v in enumerate(params)]


_ONE_US = _dt.timedelta(microseconds=1)


def _optval(key: str, v: Any) -> str:
    """The option text for a Python value. Durations: a timedelta becomes
    whole milliseconds rounded up, so that a positive duration never turns
    into "0" (which means "no limit"); a negative one is an OptionError
    (a ValueError). A float is written as a plain decimal ("0.00001", never
    "1e-05", which the C parser would refuse); the C library reads a
    positive number of seconds below 1 ms as 1 ms, never as 0."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        if v == 0:
            return "0"  # -0.0 too
        # the shortest repr's digits, positionally: exact, no exponent
        return format(_decimal.Decimal(float.__repr__(v)), "f")
    if isinstance(v, str):
        return v
    if isinstance(v, _dt.timedelta):
        us = v // _ONE_US  # exact: timedelta holds whole microseconds
        if us < 0:
            raise OptionError("invalid value for option %s: %s (a duration cannot be negative)"
                              % (key, v), _EVALUE, None)
        return "%dms" % -(-us // 1000)
    raise TypeError("option %s: expected str, int, float, bool or timedelta, not %s"
                    % (key, type(v).__name__))


def _options(options: Mapping[str, Any]) -> Dict[str, str]:
    return {k: _optval(k, v) for k, v in options.items()}


_MODES = {"tuple": 0, "dict": 1, "json": 2}


def _rows_mode(options: Dict[str, Any]) -> str:
    """Take the binding's own option rows=tuple|dict|json out of options."""
    mode = options.pop("rows", "tuple")
    if not isinstance(mode, str):
        raise TypeError("option rows: expected str, not %s" % type(mode).__name__)
    if mode not in _MODES:
        raise OptionError("invalid value for option rows: %r (tuple, dict or json)" % mode,
                          _EVALUE, None)
    return mode


def _json_option(mode: str, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """rows="json" opens the stream with the C library's option json (it
    looks the columns' types up, so that composites, domains, enums...
    render as row_to_json does) unless the caller set json."""
    if mode == "json" and "json" not in options:
        return dict(options, json=True)
    return options


# ------------------------------------------------------------- objects


class Column(NamedTuple):
    """A result column: its name and PostgreSQL type OID."""

    name: str
    type_oid: int

    @property
    def type_name(self) -> str:
        """Name of well-known types ("int4", "text"...), else the OID as text."""
        return _TYPE_NAMES.get(self.type_oid, str(self.type_oid))


_TYPE_NAMES = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4",
    25: "text", 26: "oid", 114: "json", 700: "float4", 701: "float8", 1042: "bpchar",
    1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
    1186: "interval", 1266: "timetz", 1700: "numeric", 2950: "uuid", 3802: "jsonb",
    1000: "bool[]", 1001: "bytea[]", 1005: "int2[]", 1007: "int4[]", 1009: "text[]",
    1015: "varchar[]", 1016: "int8[]", 1021: "float4[]", 1022: "float8[]", 1182: "date[]",
    1115: "timestamp[]", 1185: "timestamptz[]", 1187: "interval[]", 1231: "numeric[]",
    2951: "uuid[]", 199: "json[]", 3807: "jsonb[]",
}


def _to_pandas(table: Any, dtype_backend: str) -> Any:
    if dtype_backend == "numpy":
        return table.to_pandas()
    if dtype_backend == "pyarrow":
        import pandas  # type: ignore[import-not-found, import-untyped]

        return table.to_pandas(types_mapper=pandas.ArrowDtype)
    raise ValueError("dtype_backend must be 'numpy' or 'pyarrow'")


class Stream(Generic[R]):
    """A running query. Iterate it for rows; use it as a context manager.

    Created by :meth:`Connection.stream`. Holds a strong reference to its
    connection. Dropping it (even half-read) closes it, which cancels the
    server query. ``pause()``, ``resume()``, ``cancel()``, ``state`` and
    ``stats`` may be called from any thread.

    Typed by its rows: ``Stream[TupleRow]`` (tuples, the default),
    ``Stream[DictRow]`` (rows="dict"), ``Stream[JsonRow]`` (rows="json"),
    ``Stream[Row]`` when rows= is not a literal.
    """

    __slots__ = ("_raw", "_conn", "_mode", "__weakref__")
    _raw: _c.Stream
    _conn: "Connection"
    _mode: str

    def __init__(self, raw: _c.Stream, conn: "Connection", mode: str) -> None:
        self._raw = raw
        self._conn = conn
        self._mode = mode

    # iteration: the C object is the iterator (rows converted per chunk in C)
    def __iter__(self) -> Iterator[R]:
        return cast(Iterator[R], self._raw)

    def __next__(self) -> R:
        return cast(R, next(self._raw))

    def fetch(self) -> Optional[List[R]]:
        """The next rows as a list (the rest of the current chunk, or the
        next chunk); None at the end."""
        return self._raw.fetch()

    def batches(self, n: int) -> Iterator[List[R]]:
        """Lists of n rows (the last may be shorter)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError("batch size must be a positive int")
        it = self._raw
        while True:
            batch = cast(List[R], list(islice(it, n)))
            if not batch:
                return
            yield batch

    # Arrow: the core builds one record batch per chunk (pgspout_stream_arrow)
    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object:
        """The rest of the rows as an Arrow C stream (the Arrow PyCapsule
        interface), one record batch per chunk, built in C; limits, pause,
        cancel, stats and metrics apply. The stream lives as long as the
        reader; it is exported once. requested_schema is ignored (as the
        protocol allows): cast the batches instead."""
        return self._raw.arrow_capsule(self)

    def arrow_reader(self) -> Any:
        """A ``pyarrow.RecordBatchReader`` over the rest of the rows
        (pyarrow >= 14: ``pip install pgspout[arrow]``)."""
        import pyarrow  # type: ignore[import-not-found, import-untyped]

        return pyarrow.RecordBatchReader.from_stream(self)

    def arrow_batches(self) -> Iterator[Any]:
        return iter(self.arrow_reader())  # pyarrow.RecordBatch, one per chunk

    def to_arrow(self) -> Any:
        """The rest of the rows as one ``pyarrow.Table``."""
        return self.arrow_reader().read_all()

    def to_pandas(self, dtype_backend: str = "numpy") -> Any:
        """The rest of the rows as one ``pandas.DataFrame``: numpy dtypes, or
        Arrow-backed ones with ``dtype_backend="pyarrow"`` (``pip install
        pgspout[pandas]``)."""
        return _to_pandas(self.to_arrow(), dtype_backend)

    def dataframes(self, n: int, dtype_backend: str = "numpy") -> Iterator[Any]:
        """``pandas.DataFrame`` objects of at least n rows each (the last may
        be shorter): whole batches are joined, never split."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError("frame size must be a positive int")
        import pyarrow  # type: ignore[import-not-found, import-untyped]

        held: List[Any] = []
        rows = 0
        for batch in self.arrow_batches():
            held.append(batch)
            rows += batch.num_rows
            if rows >= n:
                yield _to_pandas(pyarrow.Table.from_batches(held), dtype_backend)
                held, rows = [], 0
        if held:
            yield _to_pandas(pyarrow.Table.from_batches(held), dtype_backend)

    def pause(self) -> None:
        """Stop reading from the server; buffered rows stay readable. Any thread."""
        self._raw.pause()

    def resume(self) -> None:
        """Undo pause(). Any thread."""
        self._raw.resume()

    def cancel(self) -> None:
        """Cancel the server query; iteration then raises CancelledError. Any thread."""
        self._raw.cancel()

    def close(self) -> None:
        """Close the stream (cancelling the query if it still runs). Idempotent."""
        self._raw.close()

    @property
    def state(self) -> str:
        """running, paused, done, limited, failed, cancelled or closed."""
        return self._raw.state()

    @property
    def stats(self) -> Dict[str, Any]:
        """Snapshot of the stream's counters (pgspout_stream_stats); times in
        seconds, -1 when unknown (as in C and the JSON)."""
        return self._raw.stats()

    @property
    def command_tag(self) -> str:
        """The server's command tag once the statement completed ("SELECT 3",
        "INSERT 0 1", "COMMIT"), "" before that and for a stream that failed
        or was stopped early. A COMMIT of a transaction that had already
        failed ends normally (no exception) with the tag "ROLLBACK": check
        it when the outcome of a COMMIT matters."""
        return self._raw.command_tag()

    @property
    def columns(self) -> List[Column]:
        return [Column(n, t) for n, t in self._raw.columns()]

    @property
    def rows_mode(self) -> str:
        """tuple, dict or json."""
        return self._mode

    @property
    def binary(self) -> bool:
        """True when the values came in binary (option binary=True and every
        column's type one it takes; else False: they came in text)."""
        return self._raw.binary()

    @property
    def connection(self) -> "Connection":
        return self._conn

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<pgspout.Stream %s>" % self.state


class Connection:
    """A connection to PostgreSQL (use :func:`connect`). Context manager;
    closing it closes its open stream first."""

    __slots__ = ("_raw", "__weakref__")
    _raw: _c.Connection

    def __init__(self, dsn: str = "", **options: OptionValue) -> None:
        if not isinstance(dsn, str):
            raise TypeError("dsn must be str, not %s" % type(dsn).__name__)
        self._raw = _c.Connection(dsn, _options(options))

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
        """Run sql ($1..$n bound to params, sent separately) and return its
        Stream once the server answered. Keyword options go straight to the
        C library (chunk_rows=1000, max_memory="64MB", timeout="30s",
        label="users" ...), except rows="tuple|dict|json", the shape of the
        rows (and of the Stream's type); unknown keys raise OptionError."""
        return self._open(sql, params, rows, options)

    def _open(self, sql: str, params: Optional[Sequence[Param]], rows: str,
              options: Mapping[str, Any]) -> Stream[Any]:
        if not isinstance(sql, str):
            raise TypeError("sql must be str, not %s" % type(sql).__name__)
        mode = _rows_mode({"rows": rows})
        raw = self._raw.open(sql, _params(params), _options(_json_option(mode, options)),
                             _MODES[mode])
        return Stream(raw, self, mode)

    def arrow(self, sql: str, params: Optional[Sequence[Param]] = None,
              **options: OptionValue) -> Any:
        """A pyarrow.RecordBatchReader of the rows, binary where types allow."""
        return self._open(sql, params, "tuple", dict(options, arrow=True)).arrow_reader()

    def close(self) -> None:
        """Close the connection (and its open stream); a connection from a
        :class:`Pool` goes back to it instead. Idempotent."""
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

    def cancel(self) -> None:
        """Ask the server to cancel whatever runs on the connection. Any thread."""
        self._raw.cancel()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<pgspout.Connection %s>" % ("closed" if self.closed else "open")


class Pool:
    """A thread-safe pool of connections to one server (``pgspout_pool``).

    ``pgspout.Pool(dsn, max_size=10, min_idle=0, idle_timeout="60s",
    max_lifetime="30min", acquire_timeout="30s", label="default", **conn)``
    takes the pool keys and the connection keys of :func:`connect`; it opens
    no connection until one is needed (:meth:`maintain` opens ``min_idle``).
    A context manager: leaving it closes the pool.

    ``with pool.connection() as conn:`` lends a :class:`Connection`; leaving
    the block (or ``conn.close()``, or dropping it) gives it back instead of
    closing it. ``pool.stream(sql, params, **options)`` returns a
    :class:`Stream` on a pooled connection, which goes back when the stream
    is closed or read to its end. What a user leaves behind (an open or
    failed transaction, SET, LISTEN, temp tables, advisory locks, prepared
    statements, a stream still open) is reset before the next user; a
    broken connection is closed instead. With every connection in use, a
    call waits up to ``timeout`` (default: the pool's ``acquire_timeout``),
    then raises :class:`TimeoutError`. Any thread; :meth:`close` stops the
    calls still waiting (:class:`StateError`). Its metrics are the
    ``pgspout_pool_*`` series of :func:`metrics_text`, labelled by ``label``.
    """

    __slots__ = ("_raw", "__weakref__")
    _raw: _c.Pool

    def __init__(self, dsn: str = "", **options: OptionValue) -> None:
        if not isinstance(dsn, str):
            raise TypeError("dsn must be str, not %s" % type(dsn).__name__)
        self._raw = _c.Pool(dsn, _options(options))

    def _acquire(self, timeout: Optional[float]) -> Connection:
        if timeout is None:
            ms = -1
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError("timeout must be None or a number of seconds >= 0")
        else:
            ms = int(_math.ceil(timeout * 1000))
        conn = Connection.__new__(Connection)
        conn._raw = self._raw.acquire(ms)
        return conn

    def connection(self, timeout: Optional[float] = None) -> Connection:
        """A pooled connection (a context manager: leaving it gives the
        connection back). timeout: seconds to wait for one (None: the pool's
        acquire_timeout; 0: do not wait)."""
        return self._acquire(timeout)

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["tuple"] = "tuple", timeout: Optional[float] = None,
               **options: OptionValue) -> Stream[TupleRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["dict"], timeout: Optional[float] = None,
               **options: OptionValue) -> Stream[DictRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: Literal["json"], timeout: Optional[float] = None,
               **options: OptionValue) -> Stream[JsonRow]: ...

    @overload
    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str, timeout: Optional[float] = None,
               **options: OptionValue) -> Stream[Row]: ...

    def stream(self, sql: str, params: Optional[Sequence[Param]] = None, *,
               rows: str = "tuple", timeout: Optional[float] = None,
               **options: OptionValue) -> Stream[Any]:
        """Connection.stream on a pooled connection; the connection goes back
        to the pool when the stream ends (read to its end, failed, cancelled)
        or is closed or dropped. timeout: as for connection()."""
        conn = self._acquire(timeout)
        try:
            s = conn._open(sql, params, rows, options)
        except BaseException:
            conn.close()  # back to the pool
            raise
        conn._raw.release()  # the stream's end gives it back
        return s

    def maintain(self) -> None:
        """Close idle connections past idle_timeout or max_lifetime (keeping
        min_idle), then open connections until min_idle are idle. The pool
        has no thread: call it from a timer if min_idle or idle_timeout
        matter."""
        self._raw.maintain()

    @property
    def stats(self) -> Dict[str, int]:
        """max_size, total, idle, in_use, waiting, acquires, waits, timeouts,
        created, closed, acquire_timeout_ms (the pool's setting)."""
        return self._raw.stats()

    def close(self) -> None:
        """Close the pool: waiting calls raise StateError, idle connections
        close now, connections still lent out close as they come back.
        Idempotent."""
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<pgspout.Pool closed>"
        st = self.stats
        return "<pgspout.Pool %d/%d in use, %d idle>" % (st["in_use"], st["max_size"], st["idle"])


def connect(dsn: str = "", **options: OptionValue) -> Connection:
    """Connect with a libpq conninfo string or URI ("" uses the PG*
    environment variables). Connection options: connect_timeout,
    keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout,
    application_name. Raises ConnectionError."""
    return Connection(dsn, **options)


# ------------------------------------------------------------- metrics


def _owned(text: Optional[str]) -> str:
    if text is None:  # the C library could not allocate it
        raise MemoryError("pgspout: out of memory")
    return text


def metrics_text() -> str:
    """Process-wide metrics in the Prometheus text format (0.0.4)."""
    return _owned(_c.metrics_prometheus())


def metrics() -> Dict[str, Any]:
    """Process-wide metrics as a dict (pgspout_metrics_json)."""
    return cast(Dict[str, Any], _json.loads(_owned(_c.metrics_json())))


def metrics_reset() -> None:
    """Zero every counter and histogram (for tests)."""
    _c.metrics_reset()


# ------------------------------------------------------------ registry


class Registry:
    """The process-wide stream registry: streams addressed by an int id, each
    with its own connection, usable from any thread. Rows come as NDJSON."""

    __slots__ = ()

    def open(self, dsn: str, sql: str, params: Optional[Sequence[Param]] = None,
             **options: OptionValue) -> int:
        """Connect, open the stream, register it; returns its id."""
        if not isinstance(dsn, str) or not isinstance(sql, str):
            raise TypeError("dsn and sql must be str")
        return _c.registry_open(dsn, sql, _params(params), _options(options))

    def fetch(self, id: int, max_rows: int = 0) -> Optional[str]:
        """The next chunk (at most max_rows rows; 0 = the stream's chunk) as
        NDJSON text, or None at the end."""
        if not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError("max_rows must be an int >= 0")
        return _c.registry_fetch(id, max_rows)

    def rows(self, id: int, max_rows: int = 0) -> Iterator[Any]:
        """Iterate the rows of a registry stream, each parsed from JSON."""
        # Documents are read one after the other rather than split at "\n":
        # a json (not jsonb) value keeps the newlines it was written with.
        decode = _json.JSONDecoder().raw_decode

        def skip_ws(text: str, pos: int) -> int:
            while pos < len(text) and text[pos] in " \t\n\r":
                pos += 1
            return pos

        while True:
            text = self.fetch(id, max_rows)
            if text is None:
                return
            pos = skip_ws(text, 0)
            while pos < len(text):
                obj, pos = decode(text, pos)
                yield obj
                pos = skip_ws(text, pos)

    def pause(self, id: int) -> None:
        _c.registry_pause(id)

    def resume(self, id: int) -> None:
        _c.registry_resume(id)

    def cancel(self, id: int) -> None:
        _c.registry_cancel(id)

    def close(self, id: int) -> None:
        """Close and forget the stream (cancelling a running query)."""
        _c.registry_close(id)

    def stats(self, id: int) -> Dict[str, Any]:
        text = _c.registry_stats_json(id)
        if text is None:
            raise NotFoundError("no registry stream with that id", _c.PGSPOUT_ENOTFOUND, None)
        return cast(Dict[str, Any], _json.loads(text))

    def list(self) -> List[Dict[str, Any]]:
        """Every registered stream: [{"id":..., "sql":..., "stats":{...}}]."""
        return cast(List[Dict[str, Any]], _json.loads(_owned(_c.registry_list_json())))

    def reap(self) -> int:
        """Reap streams idle past their idle_timeout now; returns how many."""
        return _c.registry_reap()


registry = Registry()
