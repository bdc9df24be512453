"""Shared fixtures: a real PostgreSQL from PGSPOUT_TEST_DSN (tests/python/run.sh
or scripts/test.sh start one) and the installed pgspout package."""
import os
import time

import pytest

import pgspout


def pytest_report_header(config):
    return "pgspout %s (%s) from %s" % (pgspout.version, pgspout.transport,
                                         os.path.dirname(pgspout.__file__))


@pytest.fixture(scope="session")
def dsn():
    value = os.environ.get("PGSPOUT_TEST_DSN")
    if not value:
        pytest.fail("PGSPOUT_TEST_DSN is not set (run tests/python/run.sh)")
    return value


@pytest.fixture
def conn(dsn):
    c = pgspout.connect(dsn)
    yield c
    c.close()


@pytest.fixture(scope="session")
def admin(dsn):
    """A second connection for looking at pg_stat_activity."""
    c = pgspout.connect(dsn, application_name="pgspout_test_admin")
    yield c
    c.close()


def one(conn, sql, params=None, **options):
    """The single row of a query."""
    rows = list(conn.stream(sql, params, **options))
    assert len(rows) == 1, rows
    return rows[0]


def query_running(admin, marker, timeout=60.0):
    """Wait until no backend runs a query containing marker; return the
    remaining count (0 when it is gone). The timeout is a hang guard, not a
    latency bound (the wait ends as soon as the query is gone): on a loaded
    machine a cancel may legitimately take its whole cancel_timeout (5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity "
                          "WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                   ["%" + marker + "%"])
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.05)
