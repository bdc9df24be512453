"""pgspout.partitions and pgspout.dask (issue 16): partitions read by Dask
worker processes (dask.distributed LocalCluster, processes=True) in one
exported snapshot, while another connection commits inserts, deletes and
updates. The oracle is one serial read in the same snapshot; the table as it
is now must differ from it (the snapshot was shared, not each partition's
own). tests/python/run.sh installs dask[dataframe,distributed] and sets
PGSPOUT_REQUIRE_DASK=1; elsewhere these skip without dask."""
import hashlib
import os
import threading
import time

import pytest

import pgspout
import pgspout.partitions as parts

if os.environ.get("PGSPOUT_REQUIRE_DASK") == "1":
    import dask  # noqa: F401  (must be importable here)
else:
    pytest.importorskip("dask.dataframe")
    pytest.importorskip("dask.distributed")
import dask  # noqa: E402
import pgspout.dask  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

ORACLE = ("SELECT count(*)::int, coalesce(sum(id), 0)::bigint, coalesce(sum(v), 0)::bigint, "
          "md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM part_py")


@pytest.fixture(scope="module")
def client():
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def table(conn):
    for sql in ("DROP TABLE IF EXISTS part_py",
                "CREATE TABLE part_py (id bigint PRIMARY KEY, k int, v int, t text)",
                "INSERT INTO part_py SELECT g, (g * 7919) % 30000, g % 1000, 'row ' || g "
                "FROM generate_series(1, 30000) g",
                "ANALYZE part_py"):
        list(conn.stream(sql))
    return "part_py"


class Writer(threading.Thread):
    """Commits changes batch after batch until stopped."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.batches = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            with pgspout.connect(self.dsn) as c:
                b = 0
                while not self.halt.is_set() and b < 2000:
                    list(c.stream("INSERT INTO part_py SELECT 1000000 + $1 * 100 + g, g, 7, 'new' "
                                  "FROM generate_series(1, 50) g", [b]))
                    list(c.stream("DELETE FROM part_py WHERE id IN (SELECT id FROM part_py "
                                  "WHERE id < 1000000 AND id % 89 = $1 % 89 LIMIT 20)", [b]))
                    list(c.stream("UPDATE part_py SET v = v + 1 WHERE id IN (SELECT id FROM "
                                  "part_py WHERE id < 1000000 ORDER BY id DESC LIMIT 10 "
                                  "OFFSET $1 * 10)", [b]))
                    b += 1
                    self.batches = b
        except BaseException as e:  # reported by stop()
            self.error = e

    def started(self, n=2):
        self.start()
        while self.batches < n and self.error is None:
            time.sleep(0.005)
        return self

    def stop(self):
        self.halt.set()
        self.join(60)
        assert self.error is None, self.error
        return self.batches


def oracle(conn, snap=None):
    opts = {"snapshot": snap.id} if snap is not None else {}
    (row,) = list(conn.stream(ORACLE, **opts))
    return tuple(row)


@pytest.mark.parametrize("how", [{"npartitions": 4}, {"npartitions": 3, "key": "k"}],
                         ids=["blocks", "key"])
def test_partitions_share_one_snapshot(dsn, conn, table, client, how):
    with pgspout.dask.snapshot(dsn) as snap:
        writer = Writer(dsn).started()
        try:
            df = pgspout.dask.read_table(dsn, table, columns=["id", "v"], snapshot=snap,
                                         chunk_rows=500, **how)
            assert df.npartitions == how["npartitions"]
            count, idsum, vsum, ids, sizes = dask.compute(
                df.id.count(), df.id.sum(), df.v.sum(), df.id,
                df.map_partitions(len), scheduler=client.get)
            serial = oracle(conn, snap)
        finally:
            batches = writer.stop()
        now = oracle(conn)
    ids = sorted(int(i) for i in ids)
    md5 = hashlib.md5(",".join(map(str, ids)).encode()).hexdigest()
    assert batches >= 2
    assert (int(count), int(idsum)) == (len(ids), sum(ids))  # every row once
    assert (int(count), int(idsum), int(vsum), md5) == serial
    assert serial != now  # the writer's commits are not in the snapshot
    assert all(n > 0 for n in sizes)  # the ranges split the rows
    assert not snap.ok


def test_where_params_and_plan_json(dsn, conn, table):
    with parts.Snapshot(dsn) as snap:
        p = parts.plan(conn, table, npartitions=3, columns=["id"], where="id % $1 = 0",
                       params=[7], snapshot=snap)
        assert p.table == "public.part_py" and p.snapshot == snap.id and len(p) == 3
        shipped = parts.Plan.from_json(p.json())
        ids = []
        for i in range(len(shipped)):
            with pgspout.connect(dsn) as c, shipped.open(c, i, arrow=True) as s:
                ids.extend(s.to_arrow().column("id").to_pylist())
        (n,) = list(conn.stream("SELECT count(*)::int FROM part_py WHERE id % 7 = 0",
                                snapshot=snap.id))[0]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == n


def test_bad_names_refused(dsn, conn, table):
    with pgspout.dask.snapshot(dsn) as snap:
        for bad in ("part_py; DROP TABLE part_py", "no_such_table", '"part_py'):
            with pytest.raises(pgspout.Error, match="table"):
                pgspout.dask.read_table(dsn, bad, npartitions=2, snapshot=snap)
        with pytest.raises(pgspout.Error, match="no column named"):
            pgspout.dask.read_table(dsn, table, npartitions=2, snapshot=snap,
                                    columns=["id; DROP TABLE part_py"])
        with pytest.raises(pgspout.Error, match="no column named"):
            pgspout.dask.read_table(dsn, table, npartitions=2, snapshot=snap, key="K")
        with pytest.raises(TypeError, match="needs snapshot="):
            pgspout.dask.read_table(dsn, table, npartitions=2, snapshot=None)  # type: ignore
    assert list(conn.stream("SELECT count(*)::int FROM part_py"))[0][0] == 30000


def test_closed_snapshot_fails_loudly(dsn, table, client):
    snap = parts.Snapshot(dsn)
    df = pgspout.dask.read_table(dsn, table, npartitions=2, snapshot=snap)
    snap.close()
    with pytest.raises(Exception, match="could not import snapshot"):
        df.id.sum().compute(scheduler=client.get)


def test_holder_released_on_failure(dsn, table):
    with pytest.raises(RuntimeError):
        with pgspout.dask.snapshot(dsn) as snap:
            assert snap.ok
            raise RuntimeError("the computation failed")
    assert not snap.ok
