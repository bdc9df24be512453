"""Calls from other threads racing with iteration, close and GC: only
pgspout errors, never a crash, and the connection stays usable."""
import gc
import random
import threading

import pgspout
from conftest import one


def test_any_thread_calls_race_with_iteration_and_close(conn):
    rnd = random.Random(1)
    outcomes = {"done": 0, "cancelled": 0, "closed": 0, "other": 0}
    for k in range(80):
        s = conn.stream("SELECT generate_series(1, $1)", [rnd.choice([10, 1000, 20000])],
                        chunk_rows=rnd.choice([1, 10, 100]))
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
                        s.state
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
        try:
            n = 0
            for _ in s:
                n += 1
                if rnd.random() < 0.0005:
                    s.close()
                    break
            outcomes["done"] += 1
        except pgspout.CancelledError:
            outcomes["cancelled"] += 1
        except pgspout.StateError:
            outcomes["closed"] += 1
        finally:
            try:
                s.resume()
            except pgspout.StateError:
                pass
            stop.set()
            t.join()
        assert not errors, errors
        s.close()
        if k % 7 == 0:
            del s
            gc.collect()
    assert one(conn, "SELECT 'still fine'") == ("still fine",)
    assert outcomes["done"] > 0


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
