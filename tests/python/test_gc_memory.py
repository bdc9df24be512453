"""Garbage collection at any point, and memory that does not grow with the
result."""
import gc
import os
import subprocess
import sys
import textwrap
import weakref

import pytest

import pgspout
from conftest import one, query_running


def test_gc_half_read_stream(dsn, admin):
    c = pgspout.connect(dsn)
    s = c.stream("SELECT i, pg_sleep(0.0005) FROM generate_series(1, 1000000) i /* gc_marker_1 */",
                 chunk_rows=10)
    for _ in range(50):
        next(s)
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None
    assert query_running(admin, "gc_marker_1") == 0
    # the connection can run the next stream at once
    assert one(c, "SELECT 1") == (1,)
    c.close()


def test_gc_connection_with_half_read_stream(dsn, admin):
    c = pgspout.connect(dsn)
    s = c.stream("SELECT i, pg_sleep(0.0005) FROM generate_series(1, 1000000) i /* gc_marker_2 */",
                 chunk_rows=10)
    next(s)
    del c  # the stream keeps its connection alive
    assert next(s)[0] == 2
    assert not s.connection.closed
    del s
    gc.collect()
    assert query_running(admin, "gc_marker_2") == 0


def test_gc_in_a_reference_cycle(dsn, admin):
    class Holder:
        pass

    h = Holder()
    h.self = h
    h.conn = pgspout.connect(dsn)
    h.stream = h.conn.stream("SELECT i, pg_sleep(0.0005) FROM generate_series(1, 1000000) i "
                             "/* gc_marker_3 */", chunk_rows=10)
    next(h.stream)
    del h
    gc.collect()
    assert query_running(admin, "gc_marker_3") == 0


def test_gc_stream_after_connection_closed(dsn):
    c = pgspout.connect(dsn)
    s = c.stream("SELECT generate_series(1, 100000)", chunk_rows=100)
    next(s)
    c.close()
    del c
    gc.collect()
    with pytest.raises(pgspout.StateError):
        next(s)
    del s
    gc.collect()


def test_many_abandoned_streams_leak_nothing(dsn, admin):
    c = pgspout.connect(dsn)

    def abandon():
        s = c.stream("SELECT generate_series(1, 100000) /* gc_marker_4 */", chunk_rows=100)
        return next(s)

    for k in range(200):
        assert abandon() == (1,)
    gc.collect()
    assert query_running(admin, "gc_marker_4") == 0
    (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() "
                      "AND backend_type = 'client backend'")
    assert n < 20
    c.close()


def test_rows_outlive_everything(dsn):
    c = pgspout.connect(dsn)
    rows = list(c.stream("SELECT i, 'x' || i, ARRAY[i], jsonb_build_object('i', i) FROM generate_series(1, 1000) i"))
    c.close()
    del c
    gc.collect()
    assert rows[999] == (1000, "x1000", [1000], {"i": 1000})


PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys, pgspout
    n = int(sys.argv[2])
    total = 0
    with pgspout.connect(sys.argv[1]) as c:
        for row in c.stream("SELECT i, md5(i::text), i * 1.5::float8, now(), '{\\"k\\": 1}'::jsonb "
                            "FROM generate_series(1, $1) i", [n], chunk_rows=1000, max_memory="16MB"):
            total += row[0]
    assert total == n * (n + 1) // 2
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def peak_rss_kb(dsn, n):
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, dsn, str(n)], check=True,
                         capture_output=True, text=True, timeout=600)
    return int(out.stdout.strip())


@pytest.mark.skipif(os.environ.get("PGSPOUT_SKIP_SLOW") == "1", reason="PGSPOUT_SKIP_SLOW=1")
def test_peak_memory_flat_1m_vs_5m(dsn):
    small = peak_rss_kb(dsn, 1_000_000)
    big = peak_rss_kb(dsn, 5_000_000)
    assert big <= small * 1.10, (small, big)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_leaves_parent_connection_alone(dsn):
    c = pgspout.connect(dsn)
    s = c.stream("SELECT generate_series(1, 200000)", chunk_rows=1000)
    total = next(s)[0]
    pid = os.fork()
    if pid == 0:  # child: use and drop the inherited objects
        # The C library's fork rule (issue 11): a connection used in a fork
        # child raises ConnectionError (econn) there, the stream too.
        code = 0
        try:
            try:
                next(s)
                next(s)  # the rest of the buffered chunk may be handed out...
                for _ in s:  # ...but never a read from the parent's socket
                    pass
                code = 2
            except pgspout.ConnectionError as e:
                if e.code_name != "econn":
                    code = 5
            try:
                c.stream("SELECT 1")
                code = 3
            except pgspout.ConnectionError as e:
                if e.code_name != "econn":
                    code = 6
            s.close()
            c.close()
            del s
            gc.collect()
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    # the parent's stream and connection are intact
    total += sum(r[0] for r in s)
    assert total == 200000 * 200001 // 2
    assert one(c, "SELECT 'parent ok'") == ("parent ok",)
    c.close()
