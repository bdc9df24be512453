"""The stream API: iteration, columns, batches, state, stats, big results."""
import hashlib

import pytest

import pgspout
from conftest import one


def test_package_surface():
    assert pgspout.version == "%d.%d.%d" % (pgspout.version_number // 10000,
                                           pgspout.version_number // 100 % 100,
                                           pgspout.version_number % 100)
    assert pgspout.transport in ("chunked", "single-row")
    assert pgspout._pgspout.__name__ == "pgspout._pgspout"
    # error classes come from the C table
    assert pgspout.ESQL == -7 and pgspout.EOPTION == -2 and pgspout.ETIMEOUT == -11
    assert pgspout.error_codes[pgspout.EMEMORY][0] == "ememory"
    assert issubclass(pgspout.TimeoutError, TimeoutError)
    assert issubclass(pgspout.OptionError, ValueError)
    for cls in (pgspout.SQLError, pgspout.ConnectionError, pgspout.MemoryLimitError, pgspout.TimeoutError,
                pgspout.CancelledError, pgspout.StateError, pgspout.OptionError):
        assert issubclass(cls, pgspout.Error)


def test_iterate_and_context_managers(dsn):
    with pgspout.connect(dsn) as c:
        assert not c.closed and c.ok and c.server_version >= 100000
        with c.stream("SELECT i, 'r' || i FROM generate_series(1, 2500) i", chunk_rows=100) as s:
            assert s.state == "running"
            assert s.columns == [("i", 23), ("?column?", 25)]
            assert s.columns[0].name == "i" and s.columns[0].type_name == "int4"
            first = next(s)
            assert first == (1, "r1")
            rest = list(s)
            assert rest == [(i, "r%d" % i) for i in range(2, 2501)]
            assert s.state == "done"
            st = s.stats
            assert st["rows_delivered"] == 2500 and st["state"] == "done" and st["chunks"] >= 25
            assert list(s) == []  # ended: stays ended
        assert s.state == "closed"
    assert c.closed


def test_connection_reusable_after_streams(conn):
    for k in range(5):
        assert one(conn, "SELECT $1::int * 2", [k]) == (2 * k,)
    # a half-read stream closed explicitly frees the connection
    s = conn.stream("SELECT generate_series(1, 100000)")
    next(s)
    s.close()
    assert s.state == "closed"
    assert one(conn, "SELECT 1") == (1,)


def test_empty_result_and_commands(conn):
    with conn.stream("SELECT 1 WHERE false") as s:
        assert list(s) == [] and s.state == "done"
    with conn.stream("SELECT 1 AS a, 'x' AS b LIMIT 0") as s:
        assert s.columns == [("a", 23), ("b", 25)] and list(s) == []
    # statements without rows
    list(conn.stream("CREATE TEMP TABLE t_cmd (a int)"))
    list(conn.stream("INSERT INTO t_cmd SELECT generate_series(1, 10)"))
    assert one(conn, "SELECT sum(a)::int FROM t_cmd") == (55,)


def test_batches_and_fetch(conn):
    with conn.stream("SELECT generate_series(1, 1050)", chunk_rows=100) as s:
        batches = list(s.batches(250))
    assert [len(b) for b in batches] == [250, 250, 250, 250, 50]
    assert [r[0] for b in batches for r in b] == list(range(1, 1051))
    with conn.stream("SELECT generate_series(1, 250)", chunk_rows=100) as s:
        assert next(s) == (1,)
        got = [s.fetch() for _ in range(4)]
    assert [r[0] for r in got[0]] == list(range(2, 101))
    assert len(got[1]) == 100 and len(got[2]) == 50 and got[3] is None
    with pytest.raises(ValueError):
        list(conn.stream("SELECT 1").batches(0))


def test_one_million_rows_checksum(conn):
    n = 1_000_000
    (want,) = one(conn, "SELECT md5(string_agg(i || ':' || md5(i::text) || E'\\n', '' ORDER BY i)) "
                        "FROM generate_series(1, $1) i", [n])
    h = hashlib.md5()
    count = 0
    with conn.stream("SELECT i, md5(i::text) FROM generate_series(1, $1) i", [n], chunk_rows=5000) as s:
        for i, m in s:
            count += 1
            h.update(b"%d:%s\n" % (i, m.encode()))
        assert s.stats["rows_delivered"] == n
    assert count == n
    assert h.hexdigest() == want


def test_stats_and_expected_rows(conn):
    with conn.stream("SELECT generate_series(1, 5000)", expected_rows=5000, chunk_rows=500,
                     label="stats_test") as s:
        for _ in range(1000):
            next(s)
        st = s.stats
        assert st["state"] == "running" and st["expected_rows"] == 5000
        assert st["rows_delivered"] >= 1000 and 0 < st["progress"] <= 1
        assert st["time_to_first_row"] is not None and st["elapsed"] > 0
        list(s)
        assert s.stats["rows_delivered"] == 5000 and s.stats["progress"] == 1


def test_max_rows_limited(conn):
    with conn.stream("SELECT generate_series(1, 100000)", max_rows=1234, chunk_rows=100) as s:
        rows = list(s)
        assert len(rows) == 1234 and rows[-1] == (1234,)
        assert s.state == "limited"
    assert one(conn, "SELECT 2") == (2,)


def test_sql_error_mid_stream_is_raised(conn):
    # the error arrives after rows were delivered: never a silent end
    s = conn.stream("SELECT 1 / (5000 - i) FROM generate_series(1, 10000) i", chunk_rows=100)
    got = 0
    with pytest.raises(pgspout.SQLError) as ei:
        for _ in s:
            got += 1
    assert ei.value.sqlstate == "22012" and ei.value.code == pgspout.ESQL
    assert ei.value.code_name == "esql" and "division by zero" in str(ei.value)
    assert 0 < got < 5000 or got == 0
    assert s.state == "failed"
    with pytest.raises(pgspout.SQLError):  # and again: still an error
        next(s)
    with pytest.raises(pgspout.SQLError):
        list(s)
    s.close()
    assert one(conn, "SELECT 3") == (3,)


def test_sql_error_at_open(conn):
    with pytest.raises(pgspout.SQLError) as ei:
        conn.stream("SELECT * FROM no_such_table")
    assert ei.value.sqlstate == "42P01"
    with pytest.raises(pgspout.SQLError) as ei:
        conn.stream("SELEC 1")
    assert ei.value.sqlstate == "42601"
    assert one(conn, "SELECT 4") == (4,)


def test_metrics(conn):
    list(conn.stream("SELECT generate_series(1, 10)", label="py_metrics"))
    text = pgspout.metrics_text()
    assert "pgspout_" in text
    assert any(line.startswith("pgspout_") for line in text.splitlines())
    assert 'py_metrics' in text
    m = pgspout.metrics()
    assert isinstance(m, dict) and m
    pgspout.metrics_reset()
    assert isinstance(pgspout.metrics(), dict)


def test_registry_round_trip(dsn):
    reg = pgspout.registry
    sid = reg.open(dsn, "SELECT i, 'v' || i AS v FROM generate_series(1, $1) i", [2500], chunk_rows=1000)
    assert isinstance(sid, int) and sid > 0
    assert any(e["id"] == sid for e in reg.list())
    first = reg.fetch(sid, 10)
    lines = first.splitlines()
    assert len(lines) == 10
    import json
    assert json.loads(lines[0]) == {"i": 1, "v": "v1"}
    reg.pause(sid)
    reg.resume(sid)
    rows = list(reg.rows(sid))
    assert len(rows) == 2490 and rows[-1] == {"i": 2500, "v": "v2500"}
    assert reg.fetch(sid) is None
    st = reg.stats(sid)
    assert st["rows_delivered"] == 2500
    reg.close(sid)
    with pytest.raises(pgspout.NotFoundError):
        reg.fetch(sid)
    with pytest.raises(pgspout.NotFoundError):
        reg.close(sid)
    with pytest.raises(pgspout.NotFoundError):
        reg.stats(sid)


def test_registry_errors(dsn):
    reg = pgspout.registry
    with pytest.raises(pgspout.SQLError):
        reg.open(dsn, "SELECT * FROM no_such_table")
    with pytest.raises(pgspout.OptionError):
        reg.open(dsn, "SELECT 1", nope=1)
    with pytest.raises(pgspout.ConnectionError):
        reg.open("host=127.0.0.1 port=1 connect_timeout=2", "SELECT 1")
    sid = reg.open(dsn, "SELECT pg_sleep(0.2), generate_series(1, 3)")
    reg.cancel(sid)
    with pytest.raises(pgspout.CancelledError):
        while reg.fetch(sid) is not None:
            pass
    reg.close(sid)


def test_registry_rows_with_multiline_json(dsn):
    # a json value keeps its newlines in the NDJSON text; rows() still parses
    sid = pgspout.registry.open(dsn, "SELECT E'{\\n  \"a\": [1,\\n 2]\\n}'::json FROM generate_series(1, 3)")
    try:
        assert list(pgspout.registry.rows(sid)) == [{"a": [1, 2]}] * 3
    finally:
        pgspout.registry.close(sid)
