"""Option values from Python types: a positive duration never becomes
"no limit"; cancel_timeout."""
import datetime as dt

import pytest

import pgspout
from conftest import one


@pytest.mark.parametrize("value, text", [
    (dt.timedelta(0), "0ms"),
    (dt.timedelta(microseconds=1), "1ms"),
    (dt.timedelta(microseconds=499), "1ms"),
    (dt.timedelta(microseconds=500), "1ms"),
    (dt.timedelta(microseconds=999), "1ms"),
    (dt.timedelta(milliseconds=1), "1ms"),
    (dt.timedelta(microseconds=1001), "2ms"),  # rounded up: never shorter than asked
    (dt.timedelta(seconds=30), "30000ms"),
    (dt.timedelta(days=1, microseconds=1), "86400001ms"),
])
def test_timedelta_option_text(value, text):
    assert pgspout._optval("timeout", value) == text


@pytest.mark.parametrize("value", [dt.timedelta(microseconds=-1), dt.timedelta(days=-1)])
def test_negative_timedelta_is_value_error(value):
    with pytest.raises(ValueError) as ei:
        pgspout._optval("timeout", value)
    assert isinstance(ei.value, pgspout.OptionError)
    assert ei.value.code == pgspout.EVALUE
    assert "timeout" in str(ei.value)


@pytest.mark.parametrize("value, text", [
    (0.0001, "0.0001"),
    (1e-05, "0.00001"),  # repr gives "1e-05", which the C parser does not read
    (1e-07, "0.0000001"),
    (2.5, "2.5"),
    (1e16, "10000000000000000"),
    (0.0, "0"),
    (-0.0, "0"),
])
def test_float_option_text_is_plain_decimal(value, text):
    assert pgspout._optval("timeout", value) == text


def test_sub_millisecond_timedelta_timeout_still_limits(conn):
    # timedelta(microseconds=500) used to become "0ms", i.e. no limit at all
    with pytest.raises(pgspout.TimeoutError):
        list(conn.stream("SELECT pg_sleep(1)", timeout=dt.timedelta(microseconds=500)))
    assert one(conn, "SELECT 1") == (1,)


def test_tiny_float_timeout_still_limits(conn):
    # 1e-05 s used to be sent as "1e-05" and refused
    with pytest.raises(pgspout.TimeoutError):
        list(conn.stream("SELECT pg_sleep(1)", timeout=1e-05))
    assert one(conn, "SELECT 1") == (1,)


def test_negative_durations_are_value_errors(conn):
    for v in (dt.timedelta(milliseconds=-5), -0.5, -5):
        with pytest.raises(ValueError):
            conn.stream("SELECT 1", timeout=v)
    assert one(conn, "SELECT 1") == (1,)


def test_cancel_timeout_option(dsn):
    with pgspout.connect(dsn, cancel_timeout=dt.timedelta(seconds=2)) as c:
        assert one(c, "SELECT 1", cancel_timeout=dt.timedelta(seconds=3)) == (1,)
        assert one(c, "SELECT 1", cancel_timeout="750ms") == (1,)
        assert one(c, "SELECT 1", cancel_timeout=dt.timedelta(microseconds=10)) == (1,)
        with pytest.raises(pgspout.OptionError):
            c.stream("SELECT 1", cancel_timeout=0)  # at least 1 ms
        s = c.stream("SELECT generate_series(1, 1000000)", chunk_rows=10,
                     cancel_timeout=dt.timedelta(seconds=10))
        next(s)
        s.cancel()
        with pytest.raises(pgspout.CancelledError):
            list(s)
        assert one(c, "SELECT 2") == (2,)
