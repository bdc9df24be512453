"""The semantics every language shares (issue 11): after cancel or close the
next row request reports it and no row converted before is handed out;
rows_delivered and pgspout_rows_total count the rows the caller received;
closing in any order; errors with code, message and SQLSTATE; -1 for
unknown stats."""
import gc
import threading

import pytest

import pgspout
from conftest import one

SQL = "SELECT generate_series(1, 100000)"


def rows_total(label):
    return pgspout.metrics()["labels"][label]["rows_total"]


def test_no_row_after_cancel_from_another_thread(conn):
    # the first chunk (1000 rows) is converted at once; only 10 are read
    s = conn.stream(SQL, chunk_rows=1000, label="py_sem_cancel")
    got = [next(s)[0] for _ in range(10)]
    t = threading.Thread(target=s.cancel)
    t.start()
    t.join()
    with pytest.raises(pgspout.CancelledError) as ei:
        next(s)
    assert ei.value.code_name == "ecancelled" and ei.value.sqlstate == "57014"
    with pytest.raises(pgspout.CancelledError):
        s.fetch()
    assert got == list(range(1, 11)) and s.state == "cancelled"
    assert s.stats["rows_delivered"] == 10
    s.close()
    assert rows_total("py_sem_cancel") == 10
    assert one(conn, "SELECT 1") == (1,)


def test_no_row_after_close(conn):
    s = conn.stream(SQL, chunk_rows=1000, label="py_sem_close")
    for _ in range(10):
        next(s)
    s.close()
    with pytest.raises(pgspout.StateError) as ei:
        next(s)
    assert ei.value.code_name == "estate"
    assert s.stats["rows_delivered"] == 10 and s.stats["state"] == "closed"
    assert rows_total("py_sem_close") == 10


def test_no_row_after_connection_close(dsn):
    c = pgspout.connect(dsn)
    s = c.stream(SQL, chunk_rows=1000)
    for _ in range(10):
        next(s)
    c.close()
    with pytest.raises(pgspout.StateError) as ei:
        next(s)
    assert "connection was closed" in str(ei.value)
    assert s.stats["rows_delivered"] == 10


def test_fetch_counts_what_it_hands_out(conn):
    with conn.stream("SELECT generate_series(1, 250)", chunk_rows=100, label="py_sem_fetch") as s:
        next(s)
        assert len(s.fetch()) == 99
        assert s.stats["rows_delivered"] == 100
    assert rows_total("py_sem_fetch") == 100


def test_stream_outlives_an_unreferenced_connection(dsn, admin):
    rows = [r for (r,) in pgspout.connect(dsn).stream(SQL, chunk_rows=500)]
    assert rows == list(range(1, 100001))
    # the raw objects too, destroyed in either order
    raw = pgspout._pgspout
    for first in ("conn", "stream"):
        c = raw.Connection(dsn, {"application_name": "py_sem_release"})
        s = c.open(SQL, None, {"chunk_rows": "100"}, 0)
        assert next(s) == (1,)
        if first == "conn":
            del c
            gc.collect()
            assert sum(1 for _ in s) == 99999
            del s
        else:
            del s
            gc.collect()
            assert c.ok()
            del c
        gc.collect()
    (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity "
                      "WHERE application_name = 'py_sem_release'")
    assert n == 0


def test_unknown_stats_are_minus_one(conn):
    with conn.stream("SELECT 1") as s:
        st = s.stats
        assert st["progress"] == -1 and st["eta"] == -1 and st["expected_rows"] == 0
        list(s)


def test_errors_carry_sqlstate(conn):
    with pytest.raises(pgspout.MemoryLimitError) as ei:
        list(conn.stream("SELECT repeat('x', 4000000) FROM generate_series(1, 3)",
                         max_memory="1MB"))
    assert ei.value.code_name == "ememory" and ei.value.sqlstate == "53200"


def test_connection_cancel_and_closed_handles(dsn):
    c = pgspout.connect(dsn)
    c.cancel()  # nothing runs: harmless
    assert one(c, "SELECT 2") == (2,)
    s = c.stream(SQL)
    c.close()
    for call in (c.cancel, lambda: c.stream("SELECT 1"), s.pause, s.resume, s.cancel):
        with pytest.raises(pgspout.StateError):
            call()
    assert s.state == "closed" and c.closed and not c.ok
    s.close()
    s.close()
    del c
    gc.collect()
    with pytest.raises(pgspout.StateError):
        next(s)
