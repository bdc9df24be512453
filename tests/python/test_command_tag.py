"""Stream.command_tag, and the C library's log messages on Python's
"pgspout" logger."""
import logging

import pytest

import pgspout


def test_command_tag(conn):
    s = conn.stream("SELECT generate_series(1, 100000)", chunk_rows=10)
    assert s.command_tag == ""  # the server is still sending
    assert sum(1 for _ in s) == 100000
    assert s.command_tag == "SELECT 100000"
    s.close()
    assert s.command_tag == "SELECT 100000"  # kept after close
    with conn.stream("CREATE TEMP TABLE tag_t (x int)") as s:
        assert list(s) == []
        assert s.command_tag == "CREATE TABLE"
    with conn.stream("INSERT INTO tag_t VALUES (1), (2)") as s:
        list(s)
        assert s.command_tag == "INSERT 0 2"


def test_command_tag_of_failed_or_closed_stream(conn):
    s = conn.stream("SELECT generate_series(1, 100000)", chunk_rows=10)
    next(s)
    s.close()
    assert s.command_tag == ""
    s = conn.stream("SELECT 1/(i - 3) FROM generate_series(1, 5) i", chunk_rows=1)
    with pytest.raises(pgspout.SQLError):
        list(s)
    assert s.command_tag == ""


def test_commit_of_failed_transaction_shows_rollback(conn, caplog):
    assert list(conn.stream("BEGIN")) == []
    with pytest.raises(pgspout.SQLError):
        list(conn.stream("SELECT 1/0"))
    with caplog.at_level(logging.WARNING, logger="pgspout"):
        s = conn.stream("COMMIT", label="tagtest")
        assert list(s) == []  # not an error ...
    assert s.command_tag == "ROLLBACK"  # ... but not a commit either
    # and the C library's warning reaches Python's logging
    assert any(r.name == "pgspout" and r.levelno == logging.WARNING
               and "COMMIT ended in ROLLBACK" in r.getMessage() and "tagtest" in r.getMessage()
               for r in caplog.records), caplog.records
    s = conn.stream("BEGIN")
    list(s)
    s = conn.stream("COMMIT")
    list(s)
    assert s.command_tag == "COMMIT"
