"""Threads: pause/resume/cancel from another thread, the GIL, limits."""
import threading
import time

import pytest

import pgspout
from conftest import one, query_running


def test_pause_from_another_thread_then_resume(conn):
    n = 200_000
    s = conn.stream("SELECT generate_series(1, $1)", [n], chunk_rows=1000)
    seen = []
    paused_at = {}
    resumed = threading.Event()

    def controller():
        while len(seen) < 20_000:
            time.sleep(0.001)
        s.pause()
        s.pause()  # idempotent
        paused_at["state"] = s.state
        paused_at["rows"] = len(seen)
        time.sleep(0.5)
        paused_at["rows_after"] = len(seen)
        paused_at["stats"] = s.stats
        resumed.set()
        s.resume()
        s.resume()

    t = threading.Thread(target=controller)
    t.start()
    for (v,) in s:
        seen.append(v)
    t.join()
    assert resumed.is_set()
    assert paused_at["state"] == "paused"
    # while paused only rows already buffered were delivered; then the
    # iterating thread blocked until resume()
    assert paused_at["rows_after"] < n
    assert paused_at["stats"]["pauses"] >= 1
    assert seen == list(range(1, n + 1))
    assert s.state == "done"
    assert s.stats["paused_time"] >= 0.3


def test_pause_resume_same_thread(conn):
    with conn.stream("SELECT generate_series(1, 50000)", chunk_rows=100) as s:
        next(s)
        s.pause()
        assert s.state == "paused"
        s.resume()
        assert s.state == "running"
        assert sum(1 for _ in s) == 49999
        with pytest.raises(pgspout.StateError):
            s.pause()
        with pytest.raises(pgspout.StateError):
            s.resume()


def test_cancel_from_another_thread(conn, admin):
    s = conn.stream("SELECT i, pg_sleep(0.001) FROM generate_series(1, 100000) i /* cancel_marker */",
                    chunk_rows=10)
    count = [0]
    timer = threading.Timer(0.5, s.cancel)
    timer.start()
    with pytest.raises(pgspout.CancelledError) as ei:
        for _ in s:
            count[0] += 1
    timer.join()
    assert ei.value.code == pgspout.ECANCELLED
    assert 0 < count[0] < 100000
    assert s.state == "cancelled"
    with pytest.raises(pgspout.CancelledError):
        next(s)
    with pytest.raises(pgspout.StateError):
        s.cancel()
    assert query_running(admin, "cancel_marker") == 0
    # the connection works afterwards
    assert one(conn, "SELECT 'after cancel'") == ("after cancel",)


def test_cancel_while_blocked_on_server(conn):
    # the iterating thread blocks in next() waiting for the last row while the
    # server sleeps (the server sends its output in 8kB blocks: the first
    # rows are big enough to leave it)
    s = conn.stream("SELECT i, repeat('x', 1000), pg_sleep(CASE WHEN i = 200 THEN 30 ELSE 0 END) "
                    "FROM generate_series(1, 200) i", chunk_rows=1)
    assert next(s)[0] == 1
    t0 = time.monotonic()
    threading.Timer(0.3, s.cancel).start()
    with pytest.raises(pgspout.CancelledError):
        list(s)
    assert 0.25 < time.monotonic() - t0 < 10
    assert one(conn, "SELECT 5") == (5,)


def test_conn_cancel_while_opening(conn):
    # open() waits for the first row; Connection.cancel() from another thread
    # stops it (the server reports 57014)
    threading.Timer(0.3, conn.cancel).start()
    t0 = time.monotonic()
    with pytest.raises((pgspout.CancelledError, pgspout.SQLError)) as ei:
        conn.stream("SELECT pg_sleep(30)")
    assert time.monotonic() - t0 < 10
    assert isinstance(ei.value, pgspout.CancelledError) or ei.value.sqlstate == "57014"
    time.sleep(0.1)
    assert one(conn, "SELECT 13") == (13,)


def test_cancel_paused_stream_from_another_thread(conn):
    s = conn.stream("SELECT generate_series(1, 1000000)", chunk_rows=100)
    next(s)
    s.pause()
    threading.Timer(0.3, s.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(pgspout.CancelledError):
        for _ in s:  # drains the buffer, then blocks while paused until cancel
            pass
    assert time.monotonic() - t0 < 10
    assert one(conn, "SELECT 6") == (6,)


def test_gil_released_while_blocked(conn):
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks[0]
        t0 = time.monotonic()
        rows = list(conn.stream("SELECT pg_sleep(1), 1"))  # blocks in open / next
        elapsed = time.monotonic() - t0
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    assert rows == [("", 1)] and elapsed >= 0.9
    # with the GIL held the other thread would not tick at all
    assert during > 100, during


def test_close_cancels_promptly(conn, admin):
    s = conn.stream("SELECT i, repeat('x', 1000), pg_sleep(CASE WHEN i = 200 THEN 30 ELSE 0 END) "
                    "FROM generate_series(1, 200) i /* close_marker */", chunk_rows=1)
    assert next(s)[0] == 1
    t0 = time.monotonic()
    s.close()  # cancels the running query instead of waiting for it
    assert time.monotonic() - t0 < 5
    assert query_running(admin, "close_marker") == 0
    assert one(conn, "SELECT 12") == (12,)


def test_two_threads_two_connections(dsn):
    results = {}

    def work(k):
        with pgspout.connect(dsn) as c:
            results[k] = sum(r[0] for r in c.stream("SELECT generate_series(1, 200000)"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: 200000 * 200001 // 2 for k in range(4)}


# ------------------------------------------------------------------ limits


def test_max_memory(conn):
    with pytest.raises(pgspout.MemoryLimitError) as ei:
        for _ in conn.stream("SELECT jsonb_build_object('blob', repeat('x', 4000000)) "
                             "FROM generate_series(1, 3)", max_memory="1MB"):
            pass
    assert ei.value.code == pgspout.EMEMORY
    assert "max_memory" in str(ei.value) or "memory" in str(ei.value)
    assert one(conn, "SELECT 7") == (7,)


def test_timeout(conn):
    t0 = time.monotonic()
    with pytest.raises(pgspout.TimeoutError) as ei:
        list(conn.stream("SELECT pg_sleep(10)", timeout="300ms"))
    assert time.monotonic() - t0 < 5
    assert ei.value.code == pgspout.ETIMEOUT and isinstance(ei.value, TimeoutError)
    assert "timeout" in str(ei.value)
    assert one(conn, "SELECT 8") == (8,)


def test_timeout_mid_stream(conn):
    with pytest.raises(pgspout.TimeoutError):
        for _ in conn.stream("SELECT i, pg_sleep(0.01) FROM generate_series(1, 1000) i",
                             timeout="400ms", chunk_rows=5):
            pass
    assert one(conn, "SELECT 9") == (9,)


def test_statement_timeout_is_sql_error(conn):
    with pytest.raises(pgspout.SQLError) as ei:
        list(conn.stream("SELECT pg_sleep(5)", statement_timeout="200ms"))
    assert ei.value.sqlstate == "57014"
    assert one(conn, "SELECT 10") == (10,)


def test_pause_timeout_resume(conn):
    with conn.stream("SELECT generate_series(1, 300000)", chunk_rows=100, pause_timeout="300ms",
                     on_pause_timeout="resume") as s:
        next(s)
        s.pause()
        t0 = time.monotonic()
        total = 1 + sum(1 for _ in s)  # resumes by itself after 300ms
        assert total == 300000 and time.monotonic() - t0 >= 0.25
        assert s.state == "done"


def test_pause_timeout_cancel(conn):
    with conn.stream("SELECT generate_series(1, 300000)", chunk_rows=100, pause_timeout="300ms",
                     on_pause_timeout="cancel") as s:
        next(s)
        s.pause()
        with pytest.raises(pgspout.TimeoutError) as ei:
            for _ in s:
                pass
        assert ei.value.code == pgspout.EPAUSE_TIMEOUT
        assert ei.value.code_name == "epause_timeout"
    assert one(conn, "SELECT 11") == (11,)


def test_signal_interrupts_blocked_iteration(conn):
    # Python signal handlers run while next() waits (Ctrl-C works); the
    # stream is left as it was and can be closed or read on.
    import os
    import signal

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        s = conn.stream("SELECT i, repeat('x', 1000), pg_sleep(CASE WHEN i = 200 THEN 30 ELSE 0 END) "
                        "FROM generate_series(1, 200) i", chunk_rows=1)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        n = 0
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            for _ in s:
                n += 1
        assert time.monotonic() - t0 < 5
        assert 0 < n < 200 and s.state == "running"
        s.close()
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert one(conn, "SELECT 14") == (14,)
