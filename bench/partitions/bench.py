"""bench/partitions/bench.py - partitioned reads of one table (issue 16,
"Measure"): pgspout.dask.read_table and the pgspout CLI (--partitions)
against dask.dataframe.read_sql_table (SQLAlchemy + psycopg2) and ConnectorX
partition_on, at 1, 2 and 4 partitions, in one run on one server.

    bench/partitions/.venv/bin/python bench/partitions/bench.py --dsn URI --cli PATH
        [--rows N] [--runs N] [--parts 1,2,4] [--clients LIST] [--out DIR]

See bench/partitions/README.md. Writes DIR/results.md and DIR/results.json.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TABLE = "bench_part"
CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------- server CPU

def _proc_cpu(pid, children=False):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the comm: state is fields[0]; utime 11, stime 12, cutime 13, cstime 14
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t


def server_cpu(postmaster):
    """Seconds of CPU the server used so far: the postmaster's own and its
    exited children's (backends are reaped by it: cutime/cstime), plus the
    children alive now (checkpointer, walwriter, open backends)."""
    total = _proc_cpu(postmaster, children=True)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK


def postmaster_pid(dsn):
    import pgspout
    with pgspout.connect(dsn) as c:
        (datadir,) = list(c.stream("SHOW data_directory"))[0]
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        return int(f.readline())


# ----------------------------------------------------------------- dask

def _rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _warm():
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pgspout.dask  # noqa: F401
    import sqlalchemy  # noqa: F401
    import psycopg2  # noqa: F401
    return _rss_kb()


def run_dask(client_name, dsn, sa_uri, nparts):
    """One Dask run in a fresh LocalCluster of nparts worker processes (one
    thread each): the table read into nparts pandas partitions, their lengths
    summed. Returns rows, seconds, per-worker peak RSS (MB) and its growth
    over the worker's baseline (imports done)."""
    import dask.dataframe as dd
    import pgspout.dask
    from dask.distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=nparts, threads_per_worker=1,
                      dashboard_address=None, memory_limit=0) as cluster, Client(cluster) as client:
        base = client.run(_warm)
        if client_name == "pgspout_dask":
            with pgspout.dask.snapshot(dsn) as snap:
                t0 = time.perf_counter()
                df = pgspout.dask.read_table(dsn, TABLE, npartitions=nparts, snapshot=snap,
                                             max_memory="64MB")
                rows = int(df.map_partitions(len).sum().compute())
                secs = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            df = dd.read_sql_table(TABLE, sa_uri, index_col="id", npartitions=nparts)
            rows = int(df.map_partitions(len).sum().compute())
            secs = time.perf_counter() - t0
        peak = client.run(_rss_kb)
    peaks = sorted(peak.values())
    growth = sorted(peak[w] - base[w] for w in peak)
    return {"rows": rows, "secs": secs, "worker_peak_mb": peaks[-1] / 1024,
            "worker_growth_mb": growth[-1] / 1024, "workers": nparts}


# ---------------------------------------------------- separate processes

CX_CODE = r"""
import resource, sys, time, json
import connectorx as cx
uri, table, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
sql = "SELECT * FROM %s" % table
if n > 1:
    t = cx.read_sql(uri, sql, partition_on="id", partition_num=n, return_type="arrow")
else:
    t = cx.read_sql(uri, sql, return_type="arrow")
secs = time.perf_counter() - t0
print(json.dumps({"rows": t.num_rows, "secs": secs, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_connectorx(cx_uri, nparts):
    out = subprocess.run([sys.executable, "-c", CX_CODE, cx_uri, TABLE, str(nparts)],
                         check=True, capture_output=True, text=True)
    r = json.loads(out.stdout)
    return {"rows": r["rows"], "secs": r["secs"], "worker_peak_mb": r["peak_kb"] / 1024,
            "worker_growth_mb": (r["peak_kb"] - r["base_kb"]) / 1024, "workers": 1}


def run_cli(cli, dsn, nparts, outdir):
    """pgspout --partitions N --table T -F csv -o DIR: one process, N threads
    and connections; /usr/bin/time -v gives its peak RSS. Rows: the lines of
    the files (no header)."""
    d = tempfile.mkdtemp(dir=outdir)
    args = ["/usr/bin/time", "-f", "%M", cli, "-d", dsn, "--partitions", str(nparts),
            "--table", TABLE, "-F", "csv", "--no-header", "--option", "max_memory=64MB",
            "-o", d + "/"]
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError("pgspout CLI: %s" % p.stderr)
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    rows = 0
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            rows += sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    return {"rows": rows, "secs": secs, "worker_peak_mb": peak_kb / 1024,
            "worker_growth_mb": None, "workers": 1}


# ------------------------------------------------------ fixed costs

def fixed_costs(dsn, out, n=200):
    """What a partition costs besides its rows, medians of n: a connection;
    a stream that imports a snapshot (BEGIN REPEATABLE READ; SET
    TRANSACTION SNAPSHOT before it, ROLLBACK after) against the same stream
    without; a plan of 64 block ranges and of 64 key ranges (histogram);
    exporting a snapshot. Written to DIR/fixed.md."""
    import statistics
    import pgspout
    import pgspout.partitions as parts

    def median_ms(fn):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
        return statistics.median(ts)

    snap = parts.Snapshot(dsn)
    conn = pgspout.connect(dsn)
    rows = {
        "connect + close": median_ms(lambda: pgspout.connect(dsn).close()),
        "stream SELECT 1 (plain)": median_ms(lambda: list(conn.stream("SELECT 1"))),
        "stream SELECT 1 importing the snapshot": median_ms(
            lambda: list(conn.stream("SELECT 1", snapshot=snap.id))),
        "export a snapshot (connect, BEGIN, pg_export_snapshot, close)": median_ms(
            lambda: parts.Snapshot(dsn).close()),
        "plan: 64 block ranges": median_ms(lambda: parts.plan(conn, TABLE, npartitions=64)),
        "plan: 64 key ranges (pg_stats histogram)": median_ms(
            lambda: parts.plan(conn, TABLE, npartitions=64, key="id")),
    }
    snap.close()
    conn.close()
    lines = ["| step | median ms (of %d) |" % n, "|---|---:|"]
    lines += ["| %s | %.2f |" % (k, v) for k, v in rows.items()]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "fixed.md"), "w") as f:
        f.write(text)
    print(text)


# ------------------------------------------------------------------ main

def load(dsn, rows):
    import pgspout
    with pgspout.connect(dsn) as c:
        have = list(c.stream("SELECT count(*) FROM pg_class WHERE relname = $1", [TABLE]))[0][0]
        if have:
            (n,) = list(c.stream("SELECT count(*) FROM %s" % TABLE))[0]
            if n == rows:
                return
        for sql in ("DROP TABLE IF EXISTS %s" % TABLE,
                    "CREATE TABLE %s (id bigint PRIMARY KEY, k int NOT NULL, "
                    "v double precision NOT NULL, t text NOT NULL, at timestamptz NOT NULL)" % TABLE,
                    "INSERT INTO %s SELECT g, (g::bigint * 7919) %% 1000003, g * 0.5, "
                    "'row ' || md5(g::text), timestamptz '2026-01-01' + g * interval '1 s' "
                    "FROM generate_series(1, %d) g" % (TABLE, rows),
                    "VACUUM ANALYZE %s" % TABLE):
            list(c.stream(sql, timeout="30min"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True, help="postgresql:// URI (host, port, user, db)")
    ap.add_argument("--cli", required=True)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--parts", default="1,2,4")
    ap.add_argument("--clients", default="pgspout_dask,pgspout_cli,dask_read_sql_table,connectorx")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--fixed-only", action="store_true", help="only the fixed costs (fixed.md)")
    a = ap.parse_args()
    load(a.dsn, a.rows)
    if a.fixed_only:
        fixed_costs(a.dsn, a.out)
        return
    pm = postmaster_pid(a.dsn)
    sa_uri = a.dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    parts = [int(x) for x in a.parts.split(",")]
    clients = a.clients.split(",")
    scratch = tempfile.mkdtemp(prefix="pgspout-partbench-", dir="/dev/shm"
                               if os.path.isdir("/dev/shm") else None)
    results = []
    for run in range(a.runs):
        for n in parts:
            for name in clients:
                time.sleep(1)
                cpu0 = server_cpu(pm)
                try:
                    if name in ("pgspout_dask", "dask_read_sql_table"):
                        r = run_dask(name, a.dsn, sa_uri, n)
                    elif name == "connectorx":
                        r = run_connectorx(a.dsn, n)
                    else:
                        r = run_cli(a.cli, a.dsn, n, scratch)
                    err = None
                except Exception as e:  # reported in the table
                    r, err = {}, "%s: %s" % (type(e).__name__, str(e)[:300])
                time.sleep(0.5)  # backends exit and are reaped
                r.update(client=name, partitions=n, run=run, error=err,
                         server_cpu_s=server_cpu(pm) - cpu0)
                if not err and r["rows"] != a.rows:
                    r["error"] = "read %d rows, not %d" % (r["rows"], a.rows)
                results.append(r)
                print(json.dumps(r), flush=True)
    os.rmdir(scratch)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"rows": a.rows, "results": results}, f, indent=1)
    best = {}
    for r in results:
        k = (r["client"], r["partitions"])
        if r.get("error"):
            best.setdefault(k, r)
        elif k not in best or best[k].get("error") or r["secs"] < best[k]["secs"]:
            best[k] = r
    lines = ["| client | partitions | rows/s | seconds | per-worker peak RSS MB (growth) | "
             "server CPU s | server CPU s per M rows |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in clients:
        for n in parts:
            r = best.get((name, n))
            if r is None:
                continue
            if r.get("error"):
                lines.append("| %s | %d | failed: %s | | | | |" % (name, n, r["error"]))
                continue
            growth = "" if r["worker_growth_mb"] is None else " (+%.0f)" % r["worker_growth_mb"]
            lines.append("| %s | %d | %.0f | %.2f | %.0f%s | %.1f | %.2f |" % (
                name, n, r["rows"] / r["secs"], r["secs"], r["worker_peak_mb"], growth,
                r["server_cpu_s"], r["server_cpu_s"] / (r["rows"] / 1e6)))
    text = "%d rows of %s; best of %d run(s)\n\n%s\n" % (a.rows, TABLE, a.runs, "\n".join(lines))
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    fixed_costs(a.dsn, a.out)


if __name__ == "__main__":
    main()
