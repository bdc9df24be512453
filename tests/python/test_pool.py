"""pgspout.Pool: reuse (one backend), reset between users (SET, an open
transaction, LISTEN, a stream left open), streams whose connection goes
back at their end or close, exhaustion -> TimeoutError, close() stopping
waiters, threads sharing a pool, and the pool's metrics."""
import threading
import time
import uuid

import pytest

import pgspout

from conftest import one


def app_name():
    return "pgs_py_pool_" + uuid.uuid4().hex[:10]


def backend_count(admin, app):
    (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = $1",
               [app])
    return n


def test_reuse_one_backend(dsn, admin):
    app = app_name()
    with pgspout.Pool(dsn, application_name=app) as pool:
        with pool.connection() as conn:
            (pid,) = one(conn, "SELECT pg_backend_pid()")
        for _ in range(20):
            with pool.connection() as conn:
                assert one(conn, "SELECT pg_backend_pid()") == (pid,)
            with pool.stream("SELECT pg_backend_pid()") as s:
                assert list(s) == [(pid,)]
        assert pool.stats["created"] == 1
        assert pool.stats["acquires"] == 41
        assert backend_count(admin, app) == 1
    assert pool.closed
    deadline = time.monotonic() + 30
    while backend_count(admin, app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend_count(admin, app) == 0  # closed with the pool


def test_reset_between_users(dsn):
    with pgspout.Pool(dsn, max_size=1) as pool:
        with pool.connection() as conn:
            (pid,) = one(conn, "SELECT pg_backend_pid()")
            list(conn.stream("SET work_mem = '7MB'"))
            list(conn.stream("LISTEN pgs_py_pool"))
            list(conn.stream("CREATE TEMP TABLE pgs_py_pool_tmp (x int)"))
            list(conn.stream("BEGIN ISOLATION LEVEL SERIALIZABLE"))
            list(conn.stream("SELECT 1"))
        with pool.connection() as conn:
            row = one(conn, """SELECT pg_backend_pid(), current_setting('work_mem'),
                                      (SELECT count(*)::int FROM pg_listening_channels()),
                                      current_setting('transaction_isolation'),
                                      to_regclass('pg_temp.pgs_py_pool_tmp') IS NULL""")
        assert row == (pid, row[1], 0, "read committed", True)
        assert row[1] != "7MB"
        # a stream left open mid-result: cancelled and drained, not seen later
        conn = pool.connection()
        s = conn.stream("SELECT generate_series(1, 100000000)", chunk_rows=100)
        next(iter(s))
        conn.close()
        with pytest.raises(pgspout.StateError):
            list(s)
        with pool.connection() as conn:
            assert one(conn, "SELECT pg_backend_pid(), 7") == (pid, 7)
        assert pool.stats["created"] == 1


def test_stream_gives_back(dsn):
    with pgspout.Pool(dsn, max_size=1, acquire_timeout="5s") as pool:
        s = pool.stream("SELECT g FROM generate_series(1, 2500) g", rows="dict")
        assert pool.stats["in_use"] == 1
        assert [r["g"] for r in s] == list(range(1, 2501))
        assert pool.stats["in_use"] == 0  # read to its end
        s = pool.stream("SELECT generate_series(1, 100000000)", chunk_rows=100)
        next(iter(s))
        s.close()
        assert pool.stats["in_use"] == 0
        s = pool.stream("SELECT generate_series(1, 100000000)", chunk_rows=100)
        next(iter(s))
        del s  # dropped half-read
        assert pool.stats["in_use"] == 0
        with pytest.raises(pgspout.SQLError):
            pool.stream("SELECT * FROM pgs_no_such_table")
        assert pool.stats["in_use"] == 0
        with pytest.raises(pgspout.SQLError):
            pool.stream("SELECT 1/0 FROM generate_series(1, 3)")  # fails at the open
        assert pool.stats["in_use"] == 0
        with pool.stream("SELECT CASE WHEN g = 2000 THEN 1 / (g - g) ELSE g END "
                         "FROM generate_series(1, 3000) g", chunk_rows=100) as s:
            with pytest.raises(pgspout.SQLError):
                list(s)  # fails mid-stream
        assert pool.stats["in_use"] == 0
        assert pool.stats["created"] == 1


def test_exhaustion_timeout(dsn):
    with pgspout.Pool(dsn, max_size=1, acquire_timeout="200ms") as pool:
        held = pool.connection()
        t0 = time.monotonic()
        with pytest.raises(pgspout.TimeoutError) as e:
            pool.connection()
        assert time.monotonic() - t0 >= 0.19
        assert "pool exhausted" in str(e.value)
        assert isinstance(e.value, TimeoutError)  # the builtin too
        with pytest.raises(pgspout.TimeoutError):
            pool.stream("SELECT 1", timeout=0)
        with pytest.raises(pgspout.TimeoutError):
            pool.connection(timeout=0.05)
        assert pool.stats["timeouts"] == 3
        held.close()
        with pool.connection(timeout=0) as conn:
            assert one(conn, "SELECT 1") == (1,)
    with pytest.raises(ValueError):
        pgspout.Pool(dsn).connection(timeout=-1)


def test_close_stops_waiters(dsn):
    pool = pgspout.Pool(dsn, max_size=1, acquire_timeout="60s")
    held = pool.connection()
    got = []

    def wait():
        try:
            pool.connection()
        except pgspout.Error as e:
            got.append(e)

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 10
    while pool.stats["waiting"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.stats["waiting"] == 1
    pool.close()
    t.join(10)
    assert not t.is_alive()
    assert len(got) == 1 and isinstance(got[0], pgspout.StateError), got
    held.close()  # back to a closed pool: closed
    with pytest.raises(pgspout.StateError):
        pool.connection()
    pool.close()


def test_threads_share_a_pool(dsn, admin):
    app = app_name()
    errors = []
    with pgspout.Pool(dsn, max_size=3, application_name=app) as pool:
        def work(k):
            try:
                for i in range(15):
                    if i % 2:
                        with pool.connection() as conn:
                            assert one(conn, "SELECT $1::int + 1", [k]) == (k + 1,)
                    else:
                        with pool.stream("SELECT g FROM generate_series(1, 200) g") as s:
                            assert sum(r[0] for r in s) == 20100
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        st = pool.stats
        assert st["created"] <= 3
        assert st["acquires"] == 8 * 15
        assert st["in_use"] == 0
        assert backend_count(admin, app) <= 3


def test_pool_metrics(dsn):
    label = "pypool" + uuid.uuid4().hex[:6]
    with pgspout.Pool(dsn, max_size=2, label=label) as pool:
        for _ in range(3):
            with pool.connection() as conn:
                one(conn, "SELECT 1")
        text = pgspout.metrics_text()

    def value(name):
        for line in text.splitlines():
            if line.startswith('%s{label="%s"} ' % (name, label)):
                return float(line.split()[-1])
        raise AssertionError("%s{label=%s} not in metrics_text()" % (name, label))

    assert value("pgspout_pool_acquires_total") == 3
    assert value("pgspout_pool_connections_created_total") == 1
    assert value("pgspout_pool_idle_connections") == 1
    assert value("pgspout_pool_in_use_connections") == 0
    assert value("pgspout_pool_max_connections") == 2


def test_bad_arguments(dsn):
    with pytest.raises(pgspout.OptionError):
        pgspout.Pool(dsn, max_size=0)
    with pytest.raises(pgspout.OptionError):
        pgspout.Pool(dsn, max_size=1, min_idle=2)
    with pytest.raises(pgspout.OptionError):
        pgspout.Pool(dsn, nope=1)
    with pytest.raises(TypeError):
        pgspout.Pool(None)  # type: ignore[arg-type]
    p = pgspout.Pool("host=127.0.0.1 port=1 connect_timeout=2", max_size=1)
    with pytest.raises(pgspout.ConnectionError):
        p.connection()
    assert p.stats["in_use"] == 0  # the failed handle gave its place back
    p.close()
    with pgspout.Pool("host=127.0.0.1 port=1 connect_timeout=2", min_idle=1) as p:
        with pytest.raises(pgspout.ConnectionError):
            p.maintain()
