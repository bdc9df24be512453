"""Load and integrity (issue 6): 64 concurrent streams on 64 threads, each on
its own connection, 100,000 rows each. Every stream's rows arrive exactly once
and in order (a client-side md5 equals the server's own md5(string_agg(...))),
and the process-wide metrics add up exactly to what was delivered."""
import hashlib
import threading

import pgspout

STREAMS = 64
ROWS = 100_000
SQL = "SELECT i, md5(i::text) FROM generate_series(1, $1::int) i ORDER BY i"
SERVER_MD5 = ("SELECT md5(string_agg(i::text || ',' || md5(i::text), E'\\n' ORDER BY i)) "
              "FROM generate_series(1, $1::int) i")


def test_64_concurrent_streams(dsn):
    with pgspout.connect(dsn) as c:
        (want,) = next(iter(c.stream(SERVER_MD5, [ROWS])))
    pgspout.metrics_reset()
    results = [None] * STREAMS
    errors = []
    start = threading.Barrier(STREAMS)

    def worker(k):
        try:
            with pgspout.connect(dsn) as conn:
                start.wait()
                h = hashlib.md5()
                n = 0
                expect = 1
                with conn.stream(SQL, [ROWS], chunk_rows=500 + 37 * k, label="pyload") as s:
                    for i, m in s:
                        if i != expect:  # exactly once, in order
                            raise AssertionError("stream %d: row %d where %d was due" % (k, i, expect))
                        expect += 1
                        if n:
                            h.update(b"\n")
                        h.update(b"%d,%s" % (i, m.encode()))
                        n += 1
                    assert s.state == "done"
                results[k] = (n, h.hexdigest())
        except Exception as e:  # reported below, with the stream's number
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:5]
    assert all(r == (ROWS, want) for r in results), [r for r in results if r != (ROWS, want)][:3]

    m = pgspout.metrics()["labels"]["pyload"]
    assert m["rows_total"] == STREAMS * ROWS
    assert m["streams_started_total"] == STREAMS
    assert m["streams_completed_total"] == STREAMS
    assert m["streams_failed_total"] == 0 and m["streams_cancelled_total"] == 0
    assert m["active_streams"] == 0 and m["buffered_bytes"] == 0
