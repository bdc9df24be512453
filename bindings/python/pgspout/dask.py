"""Read a PostgreSQL table into a ``dask.dataframe``, partitions in parallel
on the workers, all in one snapshot (``pip install pgspout[dask]``).

    import pgspout.dask

    with pgspout.dask.snapshot(dsn) as snap:           # the holder, in this process
        df = pgspout.dask.read_table(dsn, "events", npartitions=8, snapshot=snap,
                                     columns=["id", "day", "amount"],
                                     where="day >= $1", params=["2026-11-01"])
        totals = df.groupby("day").amount.sum().compute()
    # the snapshot is released here, also when compute() raised

Each partition is read on a worker through pgspout's Arrow path (one stream
with ``arrow=True``, importing the snapshot; limits and options as for
``Connection.stream``) into a pandas DataFrame. Every partition sees exactly
the rows the snapshot sees, whatever commits meanwhile: together they read
each row of the table once.

The snapshot is an explicit argument: its holder's transaction stays open
(keeping VACUUM from removing what it can see) until the ``with`` block ends
or ``close()`` is called, never for as long as some scheduler happens to keep
a reference. A partition read after the holder was released fails
(pgspout.SQLError, "could not import snapshot"), never silently outside the
snapshot.
"""

import importlib
from typing import Any, Dict, Optional, Sequence, Union

from . import OptionValue, Param, connect
from .partitions import Partition, Snapshot, plan

__all__ = ["read_table", "snapshot", "Snapshot"]


def snapshot(dsn: str = "", **options: OptionValue) -> Snapshot:
    """Export a snapshot (a context manager: released at the end of the
    ``with`` block, whether the computation succeeded or raised)."""
    return Snapshot(dsn, **options)


class _ReadPartition:
    """The function dd.from_map calls per partition, on a worker: one
    connection and one Arrow stream importing the snapshot."""

    def __init__(self, dsn: str, snapshot_id: str, options: Dict[str, Any],
                 dtype_backend: str) -> None:
        self.dsn = dsn
        self.snapshot_id = snapshot_id
        self.options = options
        self.dtype_backend = dtype_backend

    def __call__(self, part: Partition) -> Any:
        options = dict(self.options, arrow=True)
        if self.snapshot_id:
            options["snapshot"] = self.snapshot_id
        with connect(self.dsn) as conn, conn.stream(part.sql, part.params, **options) as s:
            return s.to_pandas(self.dtype_backend)


def read_table(dsn: str, table: str, npartitions: int = 1, *,
               snapshot: Union[str, Snapshot],
               columns: Optional[Sequence[str]] = None, where: Optional[str] = None,
               params: Optional[Sequence[Param]] = None, key: Optional[str] = None,
               bounds: Optional[Sequence[Param]] = None,
               dtype_backend: str = "numpy", **options: OptionValue) -> Any:
    """A ``dask.dataframe.DataFrame`` of ``table`` in ``npartitions``
    partitions: block ranges (ctid range scans) by default, or ranges of the
    column ``key`` (cut at ``bounds``, or at its pg_stats histogram).
    ``columns``: exact column names (default all); ``where``: an SQL
    condition using $1..$n for ``params``. ``snapshot``: the
    :class:`Snapshot` (from :func:`snapshot`; or its id) every partition
    imports; keep it open until the computation ended.
    ``dtype_backend``: "numpy" or "pyarrow". Other keyword options go to each
    partition's stream (chunk_rows, max_memory, timeout, label...)."""
    if not isinstance(snapshot, (str, Snapshot)) or not snapshot:
        raise TypeError("read_table needs snapshot=, a pgspout.dask.snapshot(dsn) (with "
                        "pgspout.dask.snapshot(dsn) as snap: ... read_table(..., snapshot=snap)) "
                        "or a snapshot id")
    dd = importlib.import_module("dask.dataframe")
    with connect(dsn) as conn:
        p = plan(conn, table, npartitions=npartitions, columns=columns, where=where,
                 params=params, key=key, bounds=bounds, snapshot=snapshot)
    # the columns and their dtypes: the first partition's query with no
    # rows, through the same Arrow path, in the same snapshot
    fn = _ReadPartition(dsn, p.snapshot, dict(options), dtype_backend)
    first = p.partitions[0]
    meta = fn(Partition("SELECT * FROM (%s\n) pgspout_meta LIMIT 0" % first.sql, first.params))
    return dd.from_map(fn, p.partitions, meta=meta, divisions=None, label="pgspout-read-table",
                       enforce_metadata=False)
