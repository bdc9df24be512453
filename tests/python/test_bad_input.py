"""Bad input gives a clear exception, never a crash, and the next call works."""
import datetime as dt
import threading

import pytest

import pgspout
from conftest import one


class Opaque:
    pass


@pytest.mark.parametrize("params", [
    [Opaque()], [object()], [1, {1, 2}], [complex(1, 2)], [(1, {1, 2})], [[[object()]]], [Ellipsis], [len],
])
def test_param_wrong_types(conn, params):
    with pytest.raises(TypeError):
        conn.stream("SELECT $1::text", params)
    assert one(conn, "SELECT 1") == (1,)


@pytest.mark.parametrize("params", ["abc", b"abc", 5, {"a": 1}, object(), 1.5])
def test_params_not_a_sequence(conn, params):
    with pytest.raises(TypeError):
        conn.stream("SELECT $1::text", params)


def test_param_count_and_values(conn):
    with pytest.raises(pgspout.SQLError) as ei:
        conn.stream("SELECT $1::int, $2::int", [1])
    assert ei.value.sqlstate == "08P01" or ei.value.sqlstate is not None
    with pytest.raises(pgspout.SQLError) as ei:
        conn.stream("SELECT $1::int", ["not a number"])
    assert ei.value.sqlstate == "22P02"
    with pytest.raises(ValueError):
        conn.stream("SELECT $1::text", ["nul\x00inside"])
    with pytest.raises(UnicodeEncodeError):
        conn.stream("SELECT $1::text", ["\udcff"])
    big = "x" * (8 * 1024 * 1024)
    assert one(conn, "SELECT length($1)", [big]) == (len(big),)
    assert one(conn, "SELECT 2") == (2,)


def test_sql_wrong_types(conn):
    with pytest.raises(TypeError):
        conn.stream(b"SELECT 1")
    with pytest.raises(TypeError):
        conn.stream(None)
    with pytest.raises(ValueError):
        conn.stream("SELECT 1\x00")


@pytest.mark.parametrize("options", [
    {"chunk_rows": object()}, {"max_memory": [1]}, {"timeout": None}, {"label": b"x"}, {"rows": 1j},
])
def test_option_wrong_types(conn, options):
    with pytest.raises(TypeError):
        conn.stream("SELECT 1", **options)


@pytest.mark.parametrize("options,exc_code", [
    ({"no_such_option": 1}, pgspout.EOPTION),
    ({"chunkrows": 10}, pgspout.EOPTION),
    ({"chunk_rows": 0}, pgspout.EVALUE),
    ({"chunk_rows": -5}, pgspout.EVALUE),
    ({"chunk_rows": "lots"}, pgspout.EVALUE),
    ({"max_memory": "64XB"}, pgspout.EVALUE),
    ({"max_memory": "-1MB"}, pgspout.EVALUE),
    ({"timeout": "5 fortnights"}, pgspout.EVALUE),
    ({"rows": "list"}, pgspout.EVALUE),
    ({"on_pause_timeout": "explode"}, pgspout.EVALUE),
    ({"label": "has space"}, pgspout.EVALUE),
    ({"max_rows": "99999999999999999999999"}, pgspout.EVALUE),
])
def test_bad_options(conn, options, exc_code):
    with pytest.raises(pgspout.OptionError) as ei:
        conn.stream("SELECT 1", **options)
    assert ei.value.code == exc_code
    assert isinstance(ei.value, ValueError)
    key = next(iter(options))
    assert key in str(ei.value)
    assert one(conn, "SELECT 3") == (3,)


def test_option_value_conversions(conn):
    # bool -> on/off, numbers -> str, timedelta -> ms
    with conn.stream("SELECT generate_series(1, 10)", metrics=False, chunk_rows=3, max_memory=1 << 20,
                     memory_warn=0.5, timeout=dt.timedelta(seconds=30), label="conv") as s:
        assert len(list(s)) == 10


def test_connect_errors(dsn):
    with pytest.raises(pgspout.ConnectionError) as ei:
        pgspout.connect("host=127.0.0.1 port=1 connect_timeout=3")
    assert ei.value.code == pgspout.ECONNECT and "connect" in str(ei.value)
    with pytest.raises(pgspout.ConnectionError):
        pgspout.connect(dsn + " user=no_such_user_xyz")
    with pytest.raises((pgspout.ConnectionError, pgspout.OptionError)):
        pgspout.connect("this is not a conninfo")
    with pytest.raises(TypeError):
        pgspout.connect(None)
    with pytest.raises(TypeError):
        pgspout.connect(dsn, connect_timeout=object())
    with pytest.raises(pgspout.OptionError):
        pgspout.connect(dsn, no_such_option="1")


def test_password_not_in_errors():
    with pytest.raises(pgspout.ConnectionError) as ei:
        pgspout.connect("host=127.0.0.1 port=1 user=u password=SeCrEt_pw connect_timeout=2")
    assert "SeCrEt_pw" not in str(ei.value)


def test_iterating_a_closed_stream(conn):
    s = conn.stream("SELECT generate_series(1, 10)")
    s.close()
    s.close()  # idempotent
    with pytest.raises(pgspout.StateError):
        next(s)
    with pytest.raises(pgspout.StateError):
        list(s)
    with pytest.raises(pgspout.StateError):
        s.fetch()
    with pytest.raises(pgspout.StateError):
        s.pause()
    with pytest.raises(pgspout.StateError):
        s.cancel()
    assert s.state == "closed"
    assert s.stats["state"] == "closed"


def test_using_a_connection_after_close(dsn):
    c = pgspout.connect(dsn)
    c.close()
    c.close()  # idempotent
    assert c.closed
    with pytest.raises(pgspout.StateError):
        c.stream("SELECT 1")
    with pytest.raises(pgspout.StateError):
        c.cancel()
    with pytest.raises(pgspout.StateError):
        c.server_version


def test_closing_connection_closes_its_stream(dsn):
    c = pgspout.connect(dsn)
    s = c.stream("SELECT generate_series(1, 100000)", chunk_rows=100)
    next(s)
    c.close()
    assert s.state == "closed"
    with pytest.raises(pgspout.StateError) as ei:
        next(s)
    assert "connection" in str(ei.value)
    with pytest.raises(pgspout.StateError):
        s.pause()
    s.close()


def test_second_stream_on_busy_connection(conn):
    s = conn.stream("SELECT generate_series(1, 100000)")
    next(s)
    with pytest.raises(pgspout.StateError) as ei:
        conn.stream("SELECT 1")
    assert ei.value.code == pgspout.EBUSY
    # the first stream is undisturbed
    assert sum(1 for _ in s) == 99999
    assert one(conn, "SELECT 4") == (4,)


def test_stream_read_from_two_threads(conn):
    s = conn.stream("SELECT i, pg_sleep(CASE WHEN i = 200 THEN 1 ELSE 0 END), repeat('x', 1000) "
                    "FROM generate_series(1, 200) i", chunk_rows=1)
    next(s)
    errors = []
    started = threading.Event()

    def reader():
        started.set()
        list(s)  # blocks about a second in the last row

    t = threading.Thread(target=reader)
    t.start()
    started.wait()
    import time
    time.sleep(0.3)
    try:
        next(s)
    except pgspout.StateError as e:
        errors.append(e)
    try:
        s.close()
    except pgspout.StateError as e:
        errors.append(e)
    try:
        conn.close()
    except pgspout.StateError as e:
        errors.append(e)
    t.join()
    assert len(errors) == 3 and all(e.code == pgspout.EBUSY for e in errors)
    assert s.state == "done"


def test_registry_bad_input(dsn):
    reg = pgspout.registry
    with pytest.raises(pgspout.NotFoundError):
        reg.fetch(999999999)
    with pytest.raises(TypeError):
        reg.fetch("1")
    with pytest.raises((OverflowError, ValueError)):
        reg.fetch(-1)
    with pytest.raises(ValueError):
        reg.fetch(1, -5)
    with pytest.raises(TypeError):
        reg.open(dsn, "SELECT $1::text", [object()])
    with pytest.raises(pgspout.NotFoundError):
        reg.pause(123456789)
