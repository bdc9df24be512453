"""HTTP-level checks of the example server's live-control endpoints
(bindings/lua/examples/pgspout_ngx_sse.lua), standard library only.

    python3 sse_check.py BASE_URL      (PGSPOUT_TEST_DSN for pg_stat_activity, via psql)

1. /sse?n=2500: the events are `stream` (with the id) first, then `rows`
   batches holding exactly rows 1..2500 in order with the right md5, a last
   `progress` and `end` (state done, sent 2500, progress 1); the registry
   stream is gone afterwards.
2. /sse?n=..&rate=2000&every=200: `progress` events come every ~0.2 s with
   rows growing, expected_rows and an ETA; the rows sent never run ahead of
   the rate (generously: 1.5x + two batches); when the client disconnects
   the registry stream, its server query (pg_stat_activity) and its pooled
   connection (pgspout_pool_in_use_connections) are all released.
3. Control endpoints: pause (stats and `progress` events show "paused", the
   rows stop), resume (they move again), cancel (the events end with state
   "cancelled", the query is gone); a backend terminated mid-stream ends the
   events with `error`, never `end`; 404 JSON for an unknown id or path, 405
   with Allow for a wrong method, 400 for bad /sse arguments.
4. /status is the HTML page, with nothing loaded from another host; /
   redirects there.
"""
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = sys.argv[1].rstrip("/")
URL = urllib.parse.urlsplit(BASE)
DSN = os.environ["PGSPOUT_TEST_DSN"]
QUERY_LIKE = "%generate_series(1, $1::int)%"


def ok(msg):
    print("sse_check: ok - " + msg, flush=True)


def until(fn, timeout, what, every=0.2):
    """fn() until it returns a true value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(every)


def request(method, path):
    """(status, headers, parsed JSON or text) of a request."""
    req = urllib.request.Request(BASE + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req) as r:
            status, headers, body = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, e.headers, e.read()
    if (headers.get("Content-Type") or "").startswith("application/json"):
        return status, headers, json.loads(body)
    return status, headers, body.decode()


def streams():
    return request("GET", "/streams")[2]


def active_queries():
    """pids of the example's demo queries the server is running."""
    out = subprocess.run(
        ["psql", DSN, "-XtAc",
         "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
         "AND query LIKE '%s'" % QUERY_LIKE],
        check=True, capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def pool_in_use():
    with urllib.request.urlopen(BASE + "/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith('pgspout_pool_in_use_connections{label="registry"}'):
                return int(float(line.split()[1]))
    return 0


class Events:
    """A /sse response read event by event: next() -> (event, data, t)."""

    def __init__(self, query):
        self.conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
        self.conn.request("GET", "/sse?" + query, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, (self.resp.status, self.resp.read())
        ctype = self.resp.getheader("Content-Type")
        assert ctype.startswith("text/event-stream"), ctype

    def next(self):
        event, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if event or data:
                    return event, json.loads("\n".join(data)), time.monotonic()
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)

    def close(self):
        self.conn.close()  # the client goes away mid-stream


# 1. a whole stream -------------------------------------------------------
ev = Events("n=2500")
kind, first, _ = ev.next()
assert kind == "stream" and first["n"] == 2500 and first["expected_rows"] == 2500, (kind, first)
sid = first["id"]
rows, kinds = [], []
while True:
    e = ev.next()
    assert e is not None, "the response ended without an end event"
    kind, data, _ = e
    kinds.append(kind)
    if kind == "rows":
        assert isinstance(data, list) and data, data
        rows.extend(data)
    elif kind == "end":
        break
    else:
        assert kind == "progress", (kind, data)
assert ev.next() is None, "events after end"
ev.close()
assert [r["id"] for r in rows] == list(range(1, 2501)), "rows out of order or missing"
assert all(r["h"] == hashlib.md5(str(r["id"]).encode()).hexdigest() for r in rows), "wrong md5"
assert data["state"] == "done" and data["sent"] == 2500 and data["id"] == sid, data
assert data["stats"]["progress"] == 1 and data["stats"]["rows_delivered"] == 2500, data
assert kinds[-2] == "progress", kinds
until(lambda: all(s["id"] != sid for s in streams()), 10, "stream %d to leave /streams" % sid)
ok("/sse?n=2500: stream(id %d), %d rows events with rows 1..2500 in order (md5 right), "
   "progress, end(done); registry stream closed" % (sid, kinds.count("rows")))

# 2. throttled: progress events, then the client leaves -----------------
base_pids = set(active_queries())
ev = Events("n=1000000&rate=2000&every=200")
kind, first, t0 = ev.next()
assert kind == "stream", kind
sid = first["id"]
progress, sent, worst = [], 0, 0.0
while len(progress) < 8:
    kind, data, t = ev.next()
    if kind == "rows":
        sent += len(data)
        # the rate holds: never more than 1.5x, plus two batches of rate/10
        allowed = 1.5 * 2000 * (t - t0) + 400
        worst = max(worst, sent / allowed)
        assert sent <= allowed, (sent, t - t0)
    else:
        assert kind == "progress", (kind, data)
        progress.append((t, data))
gaps = [b[0] - a[0] for a, b in zip(progress, progress[1:])]
assert max(gaps) < 5, gaps  # every ~0.2 s; generous for a loaded machine
sents = [p["sent"] for _, p in progress]
assert sents == sorted(sents) and sents[-1] > sents[0], sents
last = progress[-1][1]["stats"]
assert last["expected_rows"] == 1000000 and last["state"] == "running", last
assert 0 < last["progress"] < 1 and last["eta"] > 0 and last["rows_per_sec"] > 0, last
assert abs(last["rows_delivered"] - progress[-1][1]["sent"]) <= 400, last  # within two batches
ours = until(lambda: set(active_queries()) - base_pids, 10, "the throttled stream's query")
ok("throttled /sse: %d progress events %.2f-%.2f s apart, sent %d..%d rows, "
   "eta %.0f s, rows/s %.0f (<= %.0f%% of 1.5x the rate)"
   % (len(progress), min(gaps), max(gaps), sents[0], sents[-1], last["eta"],
      last["rows_per_sec"], 100 * worst))
ev.close()
until(lambda: all(s["id"] != sid for s in streams()), 10, "the registry stream to go")
until(lambda: not (set(active_queries()) & ours), 30, "the query to leave pg_stat_activity")
until(lambda: pool_in_use() == 0, 10, "the pooled connection back (in use 0)")
ok("client gone: registry stream %d closed, its query gone, pool in_use 0" % sid)

# 3. control endpoints ---------------------------------------------------
ev = Events("n=1000000&rate=2000&every=200")
kind, first, _ = ev.next()
sid = first["id"]


def delivered():
    status, _, body = request("GET", "/streams/%d" % sid)
    assert status == 200 and body["id"] == sid, (status, body)
    return body["stats"]["rows_delivered"], body["stats"]["state"]


def next_progress():
    while True:
        kind, data, _ = ev.next()
        if kind != "rows":
            return kind, data


until(lambda: delivered()[0] > 0, 10, "rows")
status, _, a = request("POST", "/streams/%d/pause" % sid)
assert status == 200 and a == {"id": sid, "action": "pause", "ok": True, "state": "paused"}, a
status, _, a = request("POST", "/streams/%d/pause" % sid)
assert status == 200 and a["state"] == "paused", a  # idempotent


def settled():
    """a fetch under way when the pause came may still hand out what it
    holds: two equal readings 0.6 s apart"""
    a = delivered()
    time.sleep(0.6)
    return a == delivered()


until(settled, 20, "the rows to settle")
held = delivered()
# the events read now were sent earlier (this client was busy with the
# requests above): skip to the first progress showing the held rows, then
# the next ones must show them too - progress events go on while paused
kind, data = next_progress()
while data["stats"]["rows_delivered"] != held[0]:
    kind, data = next_progress()
for _ in range(4):
    kind, data = next_progress()
    assert kind == "progress" and data["stats"]["state"] == "paused", (kind, data)
    assert data["stats"]["rows_delivered"] == held[0], (held, data["stats"])
assert delivered() == (held[0], "paused")
ok("pause: state paused, rows held at %d over 4 progress events" % held[0])
status, _, a = request("POST", "/streams/%d/resume" % sid)
assert status == 200 and a["state"] == "running", a
until(lambda: delivered()[0] > held[0], 20, "rows to move after the resume")
ok("resume: rows move again (%d)" % delivered()[0])
status, _, a = request("POST", "/streams/%d/cancel" % sid)
assert status == 200 and a["action"] == "cancel" and a["state"] == "cancelled", a
kind, data = next_progress()
while kind == "progress":
    kind, data = next_progress()
assert kind == "end" and data["state"] == "cancelled", (kind, data)
assert ev.next() is None
ev.close()
until(lambda: not active_queries(), 30, "no demo query left in pg_stat_activity")
status, _, a = request("POST", "/streams/%d/cancel" % sid)
assert status == 404 and a["error"] == "no registry stream with that id", (status, a)
ok("cancel: end event with state cancelled, query gone; a second cancel is 404")

# a failure mid-stream (the backend terminated) is an `error` event, never
# an end; the pool lets the broken connection go
ev = Events("n=3000000")
kind, first, _ = ev.next()
sid = first["id"]
kind, data, _ = ev.next()
assert kind == "rows", kind
pids = until(active_queries, 10, "the stream's query")
subprocess.run(["psql", DSN, "-XtAqc", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid IN (%s)" % ",".join(map(str, pids))], check=True, capture_output=True)
sent = len(data)
while True:  # the rows the socket buffers held come first
    e = ev.next()
    assert e is not None, "the response ended without an error event"
    kind, data, _ = e
    if kind == "rows":
        sent += len(data)
    elif kind != "progress":
        break
assert kind == "error" and data["error"] and data["code"] not in ("ok", "ecancelled"), (kind, data)
assert data["stats"]["state"] == "failed" and data["sent"] == sent < 3000000, (sent, data)
assert ev.next() is None, "events after the error"
ev.close()
until(lambda: all(s["id"] != sid for s in streams()), 10, "the failed stream to go")
until(lambda: pool_in_use() == 0, 10, "no pooled connection in use")
ok("backend terminated after %d rows: event error, code %s (%s...)"
   % (sent, data["code"], data["error"][:40]))

for method, path, want, allow in [
        ("POST", "/streams/987654/pause", 404, None),
        ("POST", "/streams/987654/resume", 404, None),
        ("POST", "/streams/987654/cancel", 404, None),
        ("GET", "/streams/987654", 404, None),
        ("POST", "/streams/1/stop", 404, None),
        ("GET", "/streams/abc", 404, None),
        ("GET", "/streams/1/pause", 405, "POST"),
        ("DELETE", "/streams/1", 405, "GET, HEAD"),
        ("GET", "/sse?n=abc", 400, None),
        ("GET", "/sse?rate=-1", 400, None),
        ("GET", "/sse?every=5", 400, None),
        ("GET", "/sse?n=1&n=2", 400, None)]:
    status, headers, body = request(method, path)
    assert status == want and isinstance(body, dict) and body.get("error"), (method, path, status, body)
    if allow:
        assert headers["Allow"] == allow, (path, headers["Allow"])
ok("unknown id or path -> 404 JSON, wrong method -> 405 JSON with Allow, bad /sse args -> 400 JSON")

# 4. the page ------------------------------------------------------------
status, headers, page = request("GET", "/status")
assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, headers)
assert "EventSource" in page and "/streams" in page
assert "://" not in page, "the page refers to another host"
conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=10)
conn.request("GET", "/")
r = conn.getresponse()
assert r.status == 302 and r.getheader("Location").endswith("/status"), (r.status, r.getheaders())
conn.close()
assert streams() == [], streams()
ok("/status: the page (%d bytes, nothing from another host); / redirects to it" % len(page))
