"""Partitioned reads on one snapshot (the C library's pgspout_snapshot_* and
pgspout_plan_*; ``pgspout.h`` documents them).

A :class:`Snapshot` exports a snapshot from a REPEATABLE READ transaction it
holds open on a connection of its own; every stream opened with
``snapshot=snap.id`` (on any connection, in any process) sees exactly the
rows that transaction sees. :func:`plan` splits a table into partitions (block
ranges, or a key's ranges), each one SQL text with its parameters, which a
:class:`Plan` ships as JSON to workers that read them as ordinary streams::

    with pgspout.partitions.Snapshot(dsn) as snap, pgspout.connect(dsn) as conn:
        p = pgspout.partitions.plan(conn, "events", npartitions=8, snapshot=snap)
        text = p.json()                       # ... to a worker, which does:
        part = pgspout.partitions.Plan.from_json(text)
        with pgspout.connect(dsn) as wconn, part.open(wconn, 3, arrow=True) as s:
            table = s.to_arrow()

Identifiers are resolved and quoted by the server; values, bounds included,
are always parameters. ``where`` is SQL (the caller's own, like the sql of
``Connection.stream``) and uses $1..$n for ``params``.
"""

import json as _json
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from . import Connection, OptionValue, Param, Stream, _options, _params
from . import _pgspout as _c

__all__ = ["Snapshot", "Partition", "Plan", "plan"]


class Snapshot:
    """A snapshot held open by a transaction on a connection of its own
    (``pg_export_snapshot()``), until :meth:`close` (or the end of a
    ``with`` block, or garbage collection). Keep it open while partitions
    import it: once closed, opening a stream with its id fails with
    SQLError. Holding it open keeps VACUUM from removing rows it can still
    see, as any long transaction does. Connection options
    (connect_timeout...) and ``timeout`` (bounds the export) are accepted."""

    __slots__ = ("_raw", "_id")

    def __init__(self, dsn: str = "", **options: OptionValue) -> None:
        if not isinstance(dsn, str):
            raise TypeError("dsn must be str, not %s" % type(dsn).__name__)
        self._raw = _c.Snapshot(dsn, _options(options))
        self._id: str = self._raw.id()

    @property
    def id(self) -> str:
        """The snapshot id ("00000003-0000001B-1"), also after close."""
        return self._id

    @property
    def ok(self) -> bool:
        """True while the holder's transaction is open as far as the client knows."""
        return bool(self._raw.ok())

    def close(self) -> None:
        """End the holder's transaction: the snapshot can no longer be
        imported (streams that did keep reading). Idempotent."""
        self._raw.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<pgspout.partitions.Snapshot %s %s>" % (self._id, "open" if self.ok else "closed")


class Partition(NamedTuple):
    """One partition: its SQL and its parameters (text or None)."""

    sql: str
    params: List[Optional[str]]


def _snapshot_id(snapshot: Union[None, str, Snapshot]) -> Optional[str]:
    if snapshot is None or isinstance(snapshot, str):
        return snapshot
    if isinstance(snapshot, Snapshot):
        return snapshot.id
    raise TypeError("snapshot must be a Snapshot, a snapshot id (str) or None, not %s"
                    % type(snapshot).__name__)


class Plan:
    """The partitions of a table and the snapshot they import ("" for none)."""

    __slots__ = ("snapshot", "table", "partitions")

    def __init__(self, snapshot: str, table: str, partitions: Sequence[Partition]) -> None:
        self.snapshot = snapshot
        self.table = table
        self.partitions = list(partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def json(self) -> str:
        """The plan as the C library's pgspout_plan_json writes it."""
        return _json.dumps({"pgspout_plan": 1, "snapshot": self.snapshot, "table": self.table,
                            "partitions": [{"sql": p.sql, "params": p.params}
                                           for p in self.partitions]},
                           separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        d = _json.loads(text)
        if not isinstance(d, dict) or d.get("pgspout_plan") != 1:
            raise ValueError("not a pgspout plan of version 1")
        parts = d.get("partitions")
        if not isinstance(parts, list) or not parts:
            raise ValueError("a plan without partitions")
        out = []
        for p in parts:
            params = p.get("params", [])
            if not isinstance(p.get("sql"), str) or not isinstance(params, list) or not all(
                    v is None or isinstance(v, str) for v in params):
                raise ValueError("a partition needs sql (str) and params (str or null)")
            out.append(Partition(p["sql"], params))
        snapshot = d.get("snapshot", "")
        table = d.get("table", "")
        if not isinstance(snapshot, str) or not isinstance(table, str):
            raise ValueError("snapshot and table must be strings")
        return cls(snapshot, table, out)

    def open(self, conn: Connection, i: int, **options: Any) -> Stream[Any]:
        """Open partition i on conn as ``conn.stream`` does (keyword options
        as there: rows=, arrow=True, chunk_rows=...), importing the plan's
        snapshot when it has one."""
        p = self.partitions[i]
        if self.snapshot:
            options = dict(options, snapshot=self.snapshot)
        return conn.stream(p.sql, p.params, **options)

    def __repr__(self) -> str:
        return "<pgspout.partitions.Plan %s: %d partitions, snapshot %s>" % (
            self.table, len(self.partitions), self.snapshot or "none")


def plan(conn: Connection, table: str, *, npartitions: int = 1,
         columns: Optional[Sequence[str]] = None, where: Optional[str] = None,
         params: Optional[Sequence[Param]] = None, key: Optional[str] = None,
         bounds: Optional[Sequence[Param]] = None,
         snapshot: Union[None, str, Snapshot] = None) -> Plan:
    """Partition ``table`` (SQL's name for it: ``"app.events"``,
    ``'"MixedCase"'``) into ``npartitions``: by block ranges (ctid range
    scans) without ``key``; by ranges of the column ``key`` with it, cut at
    ``bounds`` (values of the key's type) or, without them, at even steps of
    its pg_stats histogram. ``columns``: exact column names (default all).
    Catalog queries run on ``conn``. Raises OptionError (pgspout.Error) for
    unknown tables and columns, names that are not names, and bad bounds."""
    if columns is not None and (isinstance(columns, str) or not all(
            isinstance(c, str) for c in columns)):
        raise TypeError("columns must be a sequence of str")
    spec: Dict[str, Any] = {
        "table": table, "npartitions": npartitions, "where": where,
        "columns": list(columns) if columns is not None else None,
        "params": _params(params), "key": key,
        "bounds": _params(bounds) if bounds is not None else None,
        "snapshot": _snapshot_id(snapshot),
    }
    d = _json.loads(_c.plan_json(conn._raw, spec))
    return Plan(d["snapshot"], d["table"],
                [Partition(p["sql"], p["params"]) for p in d["partitions"]])
