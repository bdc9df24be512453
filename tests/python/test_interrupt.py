"""Ctrl-C (SIGINT) while pgspout blocks: in connect, in stream open, while a
paused stream waits, in registry open. Each case runs in a child Python
process that the test sends SIGINT to; the child must raise
KeyboardInterrupt, the server query it waited for must be cancelled, and
the connection must stay usable.

Time bounds here are only the harness's patience, never the property under
test: every query sleeps far longer (600 s) than the test waits for the
child (CHILD_WAIT), and the silent listener never answers at all, so a child
that finishes within CHILD_WAIT can only have been interrupted."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pgspout
from conftest import one, query_running

# Generous: the child is a fresh interpreter importing pgspout, connecting
# and cancelling on a machine shared with other builds; still an order of
# magnitude below the 600 s the server would sleep without a cancel.
CHILD_WAIT = 60.0


def _sigint_default():
    """A child of a background job (CI, `cmd &` in a script) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler: give the
    child the disposition an interactive shell gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """A Python child running script; lines it prints are collected."""

    def __init__(self, script, **env):
        e = dict(os.environ)
        e.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(script)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
            preexec_fn=_sigint_default)
        self.lines = []
        self.err = ""
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, prefix, timeout=CHILD_WAIT):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("child never printed %r; output %r, stderr %r" % (
                        prefix, self.lines, self._stderr()))
                self._cv.wait(min(left, 0.2))

    def _stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        if not self.err:
            self.err = self.proc.stderr.read()
        return self.err

    def sigint(self):
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout=CHILD_WAIT):
        """Wait for the child to exit; kill it if it does not (and fail)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("child still running %.0f s after SIGINT; output %r"
                                 % (timeout, self.lines))
        self._reader.join(5)
        assert rc == 0, (rc, self.lines, self._stderr())
        return self.lines

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


def wait_active(admin, marker, timeout=CHILD_WAIT):
    """Wait until a backend runs a query containing marker (the child is
    blocked waiting for its answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (n,) = one(admin, "SELECT count(*)::int FROM pg_stat_activity "
                          "WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                   ["%" + marker + "%"])
        if n:
            return
        time.sleep(0.05)
    raise AssertionError("the query %s never showed in pg_stat_activity" % marker)


def cancel_leftovers(admin, marker):
    # only when the child failed to cancel: do not leave a 600 s sleep behind
    one(admin, "SELECT count(pg_cancel_backend(pid))::int FROM pg_stat_activity "
               "WHERE query LIKE $1 AND pid <> pg_backend_pid()", ["%" + marker + "%"])


def test_sigint_while_stream_waits_for_first_rows(dsn, admin):
    marker = "pgspout_sigint_open_%d" % os.getpid()
    child = Child("""
        import os, pgspout
        conn = pgspout.connect(os.environ["PGSPOUT_TEST_DSN"])
        print("ready", flush=True)
        try:
            conn.stream("SELECT pg_sleep(600) /* %s */")
            print("not interrupted", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("ok", conn.ok, flush=True)
        print("after", list(conn.stream("SELECT 1")), flush=True)
    """ % marker)
    try:
        child.wait_line("ready")
        wait_active(admin, marker)
        child.sigint()
        lines = child.finish()
    finally:
        child.kill()
        cancel_leftovers(admin, marker)
    assert lines == ["ready", "interrupted", "ok True", "after [(1,)]"]
    # the child's SELECT 1 ran on the same connection, so the sleep was
    # cancelled, not merely abandoned; and no backend still runs it
    assert query_running(admin, marker) == 0


def test_sigint_during_connect_to_silent_server(dsn):
    # a "server" that accepts and never answers: libpq waits for ever
    # (no connect_timeout), so only the interrupt can end the connect
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    accepted = []
    got = threading.Event()

    def accept():
        try:
            while True:
                c, _ = lsock.accept()
                accepted.append(c)
                got.set()
        except OSError:
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    child = Child("""
        import pgspout
        print("ready", flush=True)
        try:
            pgspout.connect("host=127.0.0.1 port=%d user=nobody dbname=nothing "
                            "gssencmode=disable")
            print("connected?", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        except pgspout.Error as e:
            print("error", type(e).__name__, e, flush=True)
        print("done", flush=True)
    """ % port)
    try:
        child.wait_line("ready")
        assert got.wait(CHILD_WAIT), "the child never connected to the listener"
        child.sigint()
        lines = child.finish()
    finally:
        child.kill()
        lsock.close()
        for c in accepted:
            c.close()
        t.join(5)
    assert lines == ["ready", "interrupted", "done"]


def test_sigint_while_paused_stream_waits(dsn):
    child = Child("""
        import os, pgspout
        conn = pgspout.connect(os.environ["PGSPOUT_TEST_DSN"])
        s = conn.stream("SELECT generate_series(1, 1000000)", chunk_rows=100,
                        pause_timeout="1h")
        next(s)
        s.pause()
        print("ready", flush=True)
        n = 1
        try:
            for _ in s:
                n += 1
            print("not interrupted", flush=True)
        except KeyboardInterrupt:
            print("interrupted", n < 1000000, s.state, flush=True)
        s.close()
        print("after", list(conn.stream("SELECT 2")), flush=True)
    """)
    try:
        child.wait_line("ready")
        # not a bound: only makes it likely that the child is already in the
        # paused wait (a SIGINT before it raises at once, which passes too)
        time.sleep(0.5)
        child.sigint()
        lines = child.finish()
    finally:
        child.kill()
    assert lines == ["ready", "interrupted True paused", "after [(2,)]"]


def test_sigint_during_registry_open(dsn, admin):
    marker = "pgspout_sigint_reg_%d" % os.getpid()
    child = Child("""
        import os, pgspout
        print("ready", flush=True)
        try:
            pgspout.registry.open(os.environ["PGSPOUT_TEST_DSN"],
                                  "SELECT pg_sleep(600) /* %s */")
            print("not interrupted", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("streams", len(pgspout.registry.list()), flush=True)
    """ % marker)
    try:
        child.wait_line("ready")
        wait_active(admin, marker)
        child.sigint()
        lines = child.finish()
    finally:
        child.kill()
        cancel_leftovers(admin, marker)
    assert lines == ["ready", "interrupted", "streams 0"]
    assert query_running(admin, marker) == 0


def test_sigint_during_registry_fetch_cancels_that_stream(dsn, admin):
    # 49 rows of 1 kB (enough for the server to flush most), then a sleep
    marker = "pgspout_sigint_fetch_%d" % os.getpid()
    child = Child("""
        import os, pgspout
        reg = pgspout.registry
        sid = reg.open(os.environ["PGSPOUT_TEST_DSN"],
                       "SELECT i, repeat('x', 1000) FROM generate_series(1, 50) i, "
                       "pg_sleep(CASE WHEN i = 50 THEN 600 ELSE 0 END) /* %s */",
                       chunk_rows=1)
        n = 0
        while True:
            try:
                text = reg.fetch(sid)
                n += text.count("\\n")
                if n == 1:
                    print("fetching", flush=True)
            except KeyboardInterrupt:
                if reg.stats(sid)["state"] == "cancelled":
                    print("interrupted", n, flush=True)
                    break
                print("too early", flush=True)  # not inside a fetch: again
        try:
            reg.fetch(sid)
        except pgspout.CancelledError as e:
            print("then", e.code_name, flush=True)
        reg.close(sid)
        print("streams", len(reg.list()), flush=True)
    """ % marker)
    try:
        child.wait_line("fetching")
        for _ in range(20):
            time.sleep(0.5)  # not a bound: lets the child reach the blocked fetch
            with child._cv:
                seen = len(child.lines)
            child.sigint()
            with child._cv:
                child._cv.wait_for(lambda: len(child.lines) > seen, CHILD_WAIT)
                last = child.lines[-1]
            if last != "too early":
                break
        lines = child.finish()
    finally:
        child.kill()
        cancel_leftovers(admin, marker)
    lines = [x for x in lines if x != "too early"]
    # how many of the 49 rows reached the child depends on the server's
    # output buffering (it flushes every 8 kB), not on pgspout
    assert len(lines) == 4 and lines[0] == "fetching", lines
    word, n = lines[1].split()
    assert word == "interrupted" and 1 <= int(n) <= 49, lines
    assert lines[2:] == ["then eintr", "streams 0"]
    assert query_running(admin, marker) == 0


def test_signal_handler_that_does_not_raise_does_not_interrupt(conn, admin):
    # a handler that returns normally (SIGWINCH in a terminal app, a
    # reload signal...) must not cancel anything
    marker = "pgspout_quiet_signal_%d" % os.getpid()
    calls = []
    old = signal.signal(signal.SIGUSR1, lambda *a: calls.append(1))

    def poke():
        try:
            wait_active(admin, marker)
        finally:
            os.kill(os.getpid(), signal.SIGUSR1)

    t = threading.Thread(target=poke)
    try:
        t.start()
        rows = list(conn.stream("SELECT 'slept' FROM pg_sleep(2) /* %s */" % marker))
        t.join()
        time.sleep(0)  # let a late handler run
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert rows == [("slept",)]
    assert calls
    assert one(conn, "SELECT 3") == (3,)


def test_eintr_maps_to_cancelled_error():
    # EINTR without a pending Python exception (a registry stream that an
    # earlier Ctrl-C stopped keeps reporting it) is a CancelledError
    assert pgspout.EINTR == -16
    e = pgspout._make_error(pgspout.EINTR, "interrupted", "57014")
    assert isinstance(e, pgspout.CancelledError)
    assert e.code_name == "eintr"
