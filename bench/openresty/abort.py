#!/usr/bin/env python3
"""abort.py - how long the OpenResty example takes to release aborted requests.

    PGSPOUT_BUILD_DIR=build python3 bench/openresty/abort.py [REPS]

Starts its own PostgreSQL and the example server as the fault tests do
(tests/lua/nginx_fault_test.py: its Server, Nginx, Leaver and Load), then
 - 3 single aborts: a client reads 100 kB of /stream?n=5000000 and leaves
   (RST);
 - REPS (default 5) mass aborts: 64 such clients (28-32 streaming with a
   connection slot, the rest queued) leave at once while 4 clients run
   small queries.
Prints, for each: seconds until every aborted stream is gone from the
registry and its query from pg_stat_activity, seconds until the pool has no
connection in use (after the load stopped, for a mass abort), the pool's
connections closed as "discarded" meanwhile, and the load average.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lua"))
import nginx_fault_test as T  # noqa: E402

DISCARDED = 'pgspout_pool_connections_closed_total{reason="discarded"}'


def released(ngx, psql):
    return T.active_streams(psql) == 0 and not ngx.streams()


def pool_idle(ngx):
    return T.metric(ngx.metrics(), "pgspout_pool_in_use_connections") == 0


def single(ngx, psql):
    c = T.Leaver(ngx.port)
    c.read(100000)
    T.wait_until(lambda: T.active_streams(psql) == 1, 10)
    time.sleep(0.3)
    t0 = time.monotonic()
    c.leave()
    gone = T.wait_until(lambda: released(ngx, psql), 30, step=0.01)
    T.wait_until(lambda: pool_idle(ngx), 30, step=0.01)
    return gone, time.monotonic() - t0


def mass(ngx, psql):
    def pick(rnd):
        n = rnd.choice([10, 1000])
        return f"/t/sql?q=small&n={n}", T.ndjson_ids(n)

    with T.Load(ngx, 4, pick) as load:
        time.sleep(0.5)
        leavers = [T.Leaver(ngx.port) for _ in range(64)]
        t_wait = time.monotonic()
        while time.monotonic() - t_wait < 20 and T.active_streams(psql) < 28:
            time.sleep(0.1)
        time.sleep(0.3)
        active = T.active_streams(psql)
        t0 = time.monotonic()
        for c in leavers:
            c.leave()
        gone = T.wait_until(lambda: released(ngx, psql), 30, step=0.02)
    T.wait_until(lambda: pool_idle(ngx), 30, step=0.02)
    back = time.monotonic() - t0
    failed = sum(1 for r in load.results if not r[3])
    return active, gone, back, failed


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    server = T.Server()
    psql = T.Psql(server.dsn)
    ngx = T.Nginx(server.dsn, {"PGSPOUT_POOL_WAIT": "30"})
    try:
        for _ in range(3):
            gone, back = single(ngx, psql)
            print(f"single abort: gone in {gone:.3f} s, pool back in {back:.3f} s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        for _ in range(reps):
            d0 = ngx.metrics().get(DISCARDED, 0)
            active, gone, back, failed = mass(ngx, psql)
            d = ngx.metrics().get(DISCARDED, 0) - d0
            print(f"64 aborts ({active} streaming): gone in {gone:.3f} s, pool back in {back:.3f} s "
                  f"(after the load), {d:.0f} discarded, {failed} load requests failed, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(1)
    finally:
        ngx.stop()
        ngx.cleanup()
        psql.close()
        server.stop()


if __name__ == "__main__":
    main()
