"""Server notices and warnings and pgspout's own messages reach the
"pgspout" logger at matching levels, with the stream's label."""
import logging

import pytest

import pgspout

from conftest import one

RAISE_ALL = """DO $$ BEGIN
  PERFORM set_config('client_min_messages', 'debug1', true);
  RAISE DEBUG 'pgs-debug %', 1;
  RAISE LOG 'pgs-log %', 2;
  RAISE INFO 'pgs-info %', 3;
  RAISE NOTICE 'pgs-notice %', 4;
  RAISE WARNING 'pgs-warning %', 5;
  RAISE NOTICE USING MESSAGE = 'pgs-coded', ERRCODE = '01XYZ';
END $$"""


def ours(caplog):
    return [(r.levelno, r.getMessage(), r.pgspout_label, r.pgspout_severity, r.pgspout_sqlstate)
            for r in caplog.records if r.name == "pgspout" and "pgs-" in r.getMessage()]


def test_server_messages_at_matching_levels_with_label(conn, caplog):
    caplog.set_level(logging.DEBUG, logger="pgspout")
    with conn.stream(RAISE_ALL, label="etl_users") as s:
        assert list(s) == []
    assert ours(caplog) == [
        (logging.DEBUG, "stream etl_users: server DEBUG: pgs-debug 1", "etl_users", "DEBUG", "00000"),
        (logging.INFO, "stream etl_users: server LOG: pgs-log 2", "etl_users", "LOG", "00000"),
        (logging.INFO, "stream etl_users: server INFO: pgs-info 3", "etl_users", "INFO", "00000"),
        (logging.INFO, "stream etl_users: server NOTICE: pgs-notice 4", "etl_users", "NOTICE", "00000"),
        (logging.WARNING, "stream etl_users: server WARNING: pgs-warning 5", "etl_users", "WARNING", "01000"),
        (logging.INFO, "stream etl_users: server NOTICE: pgs-coded", "etl_users", "NOTICE", "01XYZ"),
    ]


def test_label_follows_the_stream(conn, caplog):
    caplog.set_level(logging.INFO, logger="pgspout")
    assert one(conn, "SELECT 1") == (1,)  # nothing logged by a plain query
    assert ours(caplog) == []
    conn.stream("DO $$ BEGIN RAISE NOTICE 'pgs-a'; END $$", label="a").close()
    conn.stream("DO $$ BEGIN RAISE WARNING 'pgs-b'; END $$").close()  # the default label
    assert ours(caplog) == [
        (logging.INFO, "stream a: server NOTICE: pgs-a", "a", "NOTICE", "00000"),
        (logging.WARNING, "stream default: server WARNING: pgs-b", "default", "WARNING", "01000"),
    ]


def test_level_threshold_is_respected(conn, caplog):
    caplog.set_level(logging.WARNING, logger="pgspout")
    conn.stream(RAISE_ALL, label="quiet").close()
    assert [(r[0], r[1]) for r in ours(caplog)] == [
        (logging.WARNING, "stream quiet: server WARNING: pgs-warning 5")]


def test_pgspout_own_warning_has_the_label(conn, caplog):
    caplog.set_level(logging.INFO, logger="pgspout")
    assert list(conn.stream("BEGIN")) == []
    with pytest.raises(pgspout.SQLError):
        list(conn.stream("SELECT 1 / 0"))
    with conn.stream("COMMIT", label="tx") as s:
        list(s)
        assert s.command_tag == "ROLLBACK"
    recs = [(r.levelno, r.getMessage(), r.pgspout_label, r.pgspout_severity)
            for r in caplog.records if r.name == "pgspout"]
    assert (logging.WARNING, "stream tx: COMMIT ended in ROLLBACK (the transaction had failed)",
            "tx", None) in recs
