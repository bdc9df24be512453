"""Calls from other threads racing with iteration, close and GC: only
pgspout errors, never a crash, every row of a finished stream, and a
connection that is usable or says it is not."""
import gc
import random
import threading

import pytest

import pgspout
from conftest import one


# cancel_timeout=1ms: the server (almost) never takes a cancel in time, as
# on a machine loaded enough: the connection is then closed for safety
# after most cancels and closes, and the test must still hold.
@pytest.mark.parametrize("cancel_timeout", [None, "1ms"], ids=["default", "cancel-late"])
def test_any_thread_calls_race_with_iteration_and_close(dsn, cancel_timeout):
    # What must hold whatever the timing (this runs on loaded machines, where
    # a cancel may take seconds to reach the server): every stream ends as
    # done (with every row), cancelled or closed, with the matching state
    # and exception; the other thread only ever sees StateError; and the
    # connection is either usable, or unusable with a message saying so
    # (a cancel the server did not take within cancel_timeout closes it for
    # safety), in which case a new connection works.
    opts = {} if cancel_timeout is None else {"cancel_timeout": cancel_timeout}
    rnd = random.Random(1)
    outcomes = {"done": 0, "cancelled": 0, "closed": 0, "reconnected": 0}
    conn = pgspout.connect(dsn)
    try:
        for k in range(80):
            if not conn.ok:
                with pytest.raises(pgspout.ConnectionError) as ei:
                    conn.stream("SELECT 1")
                assert "not usable" in str(ei.value) and "reconnect" in str(ei.value), ei.value
                conn.close()
                conn = pgspout.connect(dsn)
                outcomes["reconnected"] += 1
            want = rnd.choice([10, 1000, 20000])
            s = conn.stream("SELECT generate_series(1, $1)", [want],
                            chunk_rows=rnd.choice([1, 10, 100]), **opts)
            stop = threading.Event()
            errors = []

            def poke(s=s, seed=k):
                r = random.Random(seed)
                while not stop.is_set():
                    op = r.choice(["pause", "resume", "resume", "stats", "state", "cancel"])
                    try:
                        if op == "stats":
                            s.stats
                        elif op == "state":
                            st = s.state
                            if st not in ("running", "paused", "done", "cancelled", "closed"):
                                errors.append("state %r" % st)
                        elif op == "cancel":
                            if r.random() < 0.05:
                                s.cancel()
                        else:
                            getattr(s, op)()
                    except pgspout.StateError:
                        pass
                    except Exception as e:  # pragma: no cover - reported below
                        errors.append(e)

            t = threading.Thread(target=poke)
            t.start()
            n = 0
            closed_by_us = False
            try:
                for _ in s:
                    n += 1
                    if rnd.random() < 0.0005:
                        s.close()
                        closed_by_us = True
                        break
                outcome = "closed" if closed_by_us else "done"
            except pgspout.CancelledError:
                outcome = "cancelled"
            finally:
                try:
                    s.resume()
                except pgspout.StateError:
                    pass
                stop.set()
                t.join()
            assert not errors, errors
            outcomes[outcome] += 1
            if outcome == "done":  # every row, exactly once
                assert n == want and s.state == "done", (n, want, s.state)
            else:
                assert n <= want and s.state == outcome, (n, want, s.state, outcome)
            s.close()
            if k % 7 == 0:
                del s
                gc.collect()
        if not conn.ok:
            conn.close()
            conn = pgspout.connect(dsn)
        assert one(conn, "SELECT 'still fine'") == ("still fine",)
    finally:
        conn.close()
    assert outcomes["done"] > 0, outcomes
    print(outcomes)


def test_close_from_gc_while_other_thread_pauses(dsn):
    for k in range(30):
        c = pgspout.connect(dsn)
        s = c.stream("SELECT generate_series(1, 100000)", chunk_rows=100)
        next(s)
        ready = threading.Event()

        def hammer(s=s):
            ready.set()
            for _ in range(200):
                try:
                    s.pause()
                    s.resume()
                    s.stats
                except pgspout.StateError:
                    pass

        t = threading.Thread(target=hammer)
        t.start()
        ready.wait()
        if k % 2:
            c.close()  # closes the stream under the other thread's feet
        else:
            s.close()
        t.join()
        del s, c
        gc.collect()
