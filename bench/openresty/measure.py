#!/usr/bin/env python3
"""measure.py - wrk against the OpenResty example server, pooled and unpooled.

Run by bench/openresty/run.sh (which builds, starts PostgreSQL and loads the
`typed` table); see README.md there. Standard library only.

For every mode (pooled, unpooled = PGSPOUT_POOL=off), endpoint (/row: one
row of `typed` by a random id; /stream?n=10000: 10,000 NDJSON rows) and
connection count, a fresh nginx (one worker) is started, warmed up with wrk
for a few seconds at the same concurrency, then measured with
`wrk -t2 -cN -dD --latency`. Meanwhile:
  - the worker's VmRSS is sampled every 0.25 s (peak), and read again 3 s
    after the run (after);
  - pg_stat_activity is sampled every 0.5 s through one psql session: the
    example's backends (application_name pgspout_ngx), peak;
  - backends created during the measured run: the server log's
    "connection authorized ... application_name=pgspout_ngx" lines
    (log_connections, our own server only) and the pool's
    pgspout_pool_connections_created_total (/metrics);
  - nginx's error.log: errors, "no available Lua vm";
  - CPU per request (/proc/PID/stat, user + system): the nginx worker with
    its thread pool, and, pooled, the example's backends (unpooled ones
    exit during the run: n/a).
Then a long run (pooled, 10,000-row requests) with RSS sampled every 5 s.
Writes OUT/results.md and OUT/results.json.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tests", "lua"))
from ngx_example import ExampleServer  # noqa: E402

APP = "pgspout_ngx"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Nginx(ExampleServer):
    """The example server (bindings/lua/examples/nginx.conf.in) plus /row."""

    def __init__(self, root, build, dsn, env):
        super().__init__(build, dsn, env, os.path.join(root, "bench", "openresty"),
                         "        location = /row {\n"
                         "            content_by_lua_block { require(\"bench_ngx\").row() }\n"
                         "        }\n",
                         tag="pgspout-bench-ngx")
        self.worker = self._worker_pid()

    def _worker_pid(self):
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        for _ in range(50):
            with open(path) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
            time.sleep(0.1)
        raise RuntimeError("no nginx worker process")

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.read()

    def status(self, key):
        """VmRSS / VmHWM of the worker, in kB"""
        with open(f"/proc/{self.worker}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def metric(self, name, label):
        text = self.get("/metrics").decode()
        m = re.search(r"^%s\{label=\"%s\"\} (\S+)$" % (re.escape(name), re.escape(label)), text, re.M)
        return float(m.group(1)) if m else 0.0

    def closed(self):
        """pool connections closed so far, by reason"""
        text = self.get("/metrics").decode()
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^pgspout_pool_connections_closed_total\{label="registry",reason="(\w+)"\} (\S+)$', text, re.M)}

    def errors(self):
        with open(self.errlog, errors="replace") as f:
            text = f.read()
        lines = [l for l in text.splitlines() if re.search(r"\[(error|crit|alert|emerg)\]", l)]
        novm = sum("no available Lua vm" in l for l in text.splitlines())
        return lines, novm

    def stop(self):
        super().stop()
        self.cleanup()


class Psql:
    """One psql session fed line by line (no backend per sample)."""

    def __init__(self, dsn):
        self.p = subprocess.Popen(["psql", "-X", "-At", "-q", "-d", dsn], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def one(self, sql):
        self.p.stdin.write(sql.rstrip(";") + ";\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait()


class Sampler(threading.Thread):
    def __init__(self, ngx, dsn, rss_every=0.25, db_every=0.5):
        super().__init__(daemon=True)
        self.ngx, self.rss_every, self.db_every = ngx, rss_every, db_every
        self.psql = Psql(dsn)
        self.stop_ev = threading.Event()
        self.rss, self.backends = [], []

    def run(self):
        next_db = 0.0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            self.rss.append((now, self.ngx.status("VmRSS")))
            if now >= next_db:
                n = self.psql.one(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'")
                self.backends.append(int(n or 0))
                next_db = now + self.db_every
            self.stop_ev.wait(self.rss_every)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.psql.close()


def log_connections(pglog):
    """example backends authorized so far, per the server log"""
    if not pglog or not os.path.exists(pglog):
        return None
    n = 0
    with open(pglog, errors="replace") as f:
        for line in f:
            if "connection authorized" in line and f"application_name={APP}" in line:
                n += 1
    return n


def wrk(url, conns, secs, script=None):
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    r = {"raw": out}

    def ms(v):
        m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
        x, u = float(m.group(1)), m.group(2)
        return x * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]

    r["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    r["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for p in ("50", "75", "90", "99"):
        r["p" + p] = ms(re.search(r"^\s+%s%%\s+(\S+)" % p, out, re.M).group(1))
    r["max"] = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sockerr"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def cpu_s(pid):
    """user + system CPU seconds of a process (all its threads); None once gone"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def backend_pids(dsn):
    """the example's PostgreSQL backends now (application_name APP)"""
    out = subprocess.run(["psql", "-X", "-At", "-q", "-d", dsn, "-c",
                          f"SELECT pid FROM pg_stat_activity WHERE application_name = '{APP}'"],
                         capture_output=True, text=True, check=True).stdout
    return [int(p) for p in out.split()]


def cpu_per_request(before, requests):
    """microseconds of CPU per request since before ({pid: seconds}); None
    when a process is gone (its CPU can no longer be read)"""
    total = 0.0
    for pid, t0 in before.items():
        t1 = cpu_s(pid)
        if t0 is None or t1 is None:
            return None
        total += t1 - t0
    return total * 1e6 / max(requests, 1)


def check_content(ngx):
    row = json.loads(ngx.get("/row?id=424242"))
    assert row["id"] == 424242 and row["name"].startswith("name-"), row
    body = ngx.get("/stream?n=10000").splitlines()
    assert len(body) == 10000 and json.loads(body[-1])["id"] == 10000, len(body)


def one_run(args, mode, endpoint, conns):
    env = {"PGSPOUT_POOL": "off"} if mode == "unpooled" else {}
    ngx = Nginx(args.root, args.build, args.dsn, env)
    try:
        check_content(ngx)
        url, script = (ngx.base + "/row", args.row_script) if endpoint == "row" \
            else (ngx.base + "/stream?n=10000", None)
        wrk(url, conns, args.warmup, script)
        time.sleep(1)
        logc0 = log_connections(args.pglog)
        made0 = ngx.metric("pgspout_pool_connections_created_total", "registry")
        acq0 = ngx.metric("pgspout_pool_acquires_total", "registry")
        closed0 = ngx.closed()
        rss0 = ngx.status("VmRSS")
        load0 = loadavg()
        # CPU per request: the nginx worker (its thread pool included) and,
        # pooled, the backends serving it (unpooled ones come and go)
        ngx_cpu0 = {ngx.worker: cpu_s(ngx.worker)}
        pg_cpu0 = {p: cpu_s(p) for p in backend_pids(args.dsn)} if mode == "pooled" else {}
        s = Sampler(ngx, args.dsn)
        s.start()
        r = wrk(url, conns, args.duration, script)
        ngx_us = cpu_per_request(ngx_cpu0, r["requests"])
        pg_us = cpu_per_request(pg_cpu0, r["requests"]) if pg_cpu0 else None
        s.finish()
        logc1 = log_connections(args.pglog)
        made = ngx.metric("pgspout_pool_connections_created_total", "registry") - made0
        acq = ngx.metric("pgspout_pool_acquires_total", "registry") - acq0
        closed = {k: int(v - closed0.get(k, 0)) for k, v in ngx.closed().items() if v - closed0.get(k, 0)}
        time.sleep(3)
        r.update({
            "mode": mode, "endpoint": endpoint, "conns": conns, "duration": args.duration,
            "load_before": load0, "load_after": loadavg(),
            "rss_start_kb": rss0,
            "rss_peak_kb": max(v for _, v in s.rss),
            "rss_after_kb": ngx.status("VmRSS"),
            "hwm_kb": ngx.status("VmHWM"),
            "backends_peak": max(s.backends) if s.backends else None,
            "backends_created_log": None if logc0 is None else logc1 - logc0,
            "pool_created": int(made), "pool_acquires": int(acq), "pool_closed": closed,
            "nginx_cpu_us_per_request": ngx_us, "backends_cpu_us_per_request": pg_us,
        })
        errs, novm = ngx.errors()
        r["errors"] = len(errs)
        r["error_sample"] = errs[:3]
        r["no_vm"] = novm
        del r["raw"]
        return r
    finally:
        ngx.stop()


def long_run(args):
    ngx = Nginx(args.root, args.build, args.dsn, {})
    try:
        url = ngx.base + "/stream?n=10000"
        wrk(url, args.long_conns, args.warmup)
        samples = []
        t0 = time.monotonic()
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((round(time.monotonic() - t0, 1), ngx.status("VmRSS")))
                stop.wait(args.long_every)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        load0 = loadavg()
        r = wrk(url, args.long_conns, args.long, None)
        stop.set()
        th.join()
        time.sleep(3)
        del r["raw"]
        errs, novm = ngx.errors()
        r.update({"conns": args.long_conns, "duration": args.long, "samples": samples,
                  "rss_after_kb": ngx.status("VmRSS"), "hwm_kb": ngx.status("VmHWM"),
                  "load_before": load0, "load_after": loadavg(), "errors": len(errs), "no_vm": novm})
        return r
    finally:
        ngx.stop()


def closed_txt(r):
    c = r.get("pool_closed") or {}
    return " (" + ", ".join(f"{v} {k}" for k, v in sorted(c.items())) + ")" if c else ""


def us(v):
    return "n/a" if v is None else f"{v:.0f}"


def mb(kb):
    return f"{kb / 1024:.0f}"


def write(args, runs, lng, meta):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "long": lng}, f, indent=1)
    L = []
    L.append("# OpenResty example under wrk: pgspout pooled vs unpooled\n")
    L.append(f"Measured {meta['date']} on {meta['machine']}; {meta['versions']}.")
    L.append(f"wrk -t2, {args.duration} s per run after a {args.warmup} s warm-up at the same "
             "concurrency, a fresh nginx (1 worker, the example's nginx.conf.in) per run, loopback. "
             "Load average (1/5/15 min) before the first run: " + meta["load_start"] + ".\n")
    if runs:
        L.append("| mode | endpoint | conns | req/s | p50 ms | p99 ms | max ms | non-2xx | sock err "
                 "| backends created | per request | pool created (closed) | peak backends "
                 "| RSS peak MB | RSS after MB | no Lua VM | errors | CPU us/request: nginx, backends "
                 "| load before |")
        L.append("|" + "---|" * 19)
        for r in runs:
            created = r["backends_created_log"]
            per = "n/a" if created is None else f"{created / max(r['requests'], 1):.3f}"
            L.append(f"| {r['mode']} | {'1 row' if r['endpoint'] == 'row' else '10,000 rows'} | {r['conns']} "
                     f"| {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['non2xx']} "
                     f"| {r['sockerr']} | {'n/a' if created is None else created} | {per} "
                     f"| {r['pool_created']}{closed_txt(r)} "
                     f"| {r['backends_peak']} | {mb(r['rss_peak_kb'])} | {mb(r['rss_after_kb'])} "
                     f"| {r['no_vm']} | {r['errors']} | {us(r['nginx_cpu_us_per_request'])}, "
                     f"{us(r['backends_cpu_us_per_request'])} | {r['load_before']} |")
    L.append("")
    if lng:
        L.append(f"## Long run: pooled, 10,000-row requests, {lng['conns']} connections, {lng['duration']} s\n")
        L.append(f"{lng['rps']:.0f} req/s, p50 {lng['p50']:.0f} ms, p99 {lng['p99']:.0f} ms, "
                 f"non-2xx {lng['non2xx']}, socket errors {lng['sockerr']}, no Lua VM {lng['no_vm']}, "
                 f"errors {lng['errors']}; load {lng['load_before']} -> {lng['load_after']}.\n")
        L.append("| t (s) | " + " | ".join(str(t) for t, _ in lng["samples"]) + " |")
        L.append("|---|" + "---|" * len(lng["samples"]))
        L.append("| worker RSS MB | " + " | ".join(mb(v) for _, v in lng["samples"]) + " |")
        vals = [v for _, v in lng["samples"]]
        half = len(vals) // 2
        if half:
            L.append("")
            L.append(f"First half max {mb(max(vals[:half]))} MB, second half max {mb(max(vals[half:]))} MB, "
                     f"after the run {mb(lng['rss_after_kb'])} MB (VmHWM {mb(lng['hwm_kb'])} MB).")
        L.append("")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--pglog", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--modes", default="pooled,unpooled")
    ap.add_argument("--endpoints", default="row,stream")
    ap.add_argument("--long", type=int, default=60)
    ap.add_argument("--long-conns", type=int, default=64)
    ap.add_argument("--long-every", type=float, default=5)
    args = ap.parse_args()
    args.row_script = os.path.join(args.root, "bench", "openresty", "row.lua")
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    pg_v = Psql(args.dsn)
    server = pg_v.one("SHOW server_version")
    pg_v.close()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores (shared)",
        "versions": f"{nginx_v.replace('nginx version: ', '')}, {wrk_v.split(' [')[0]}, PostgreSQL {server}",
        "load_start": loadavg(),
    }
    runs = []
    for endpoint in filter(None, args.endpoints.split(",")):
        for mode in args.modes.split(","):
            for c in [int(x) for x in args.conns.split(",")]:
                print(f"measure: {mode} {endpoint} {c} conns (load {loadavg()})", file=sys.stderr)
                r = one_run(args, mode, endpoint, c)
                print(f"measure:   {r['rps']:.0f} req/s p99 {r['p99']:.1f} ms, created "
                      f"{r['backends_created_log']}, RSS peak {mb(r['rss_peak_kb'])} MB", file=sys.stderr)
                runs.append(r)
    lng = None
    if args.long > 0:
        print(f"measure: long run {args.long} s (load {loadavg()})", file=sys.stderr)
        lng = long_run(args)
    write(args, runs, lng, meta)


if __name__ == "__main__":
    main()
