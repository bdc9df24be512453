"""The Arrow benchmark's runner (bench/arrow/run.sh starts it; see README.md).

For each dataset: the server's per-column checksums (SQL, once), one checked
run of every client (bench/arrow/client.py --check: its checksums must equal
the server's), then --runs timed runs of every client, interleaved, each its
own process under /usr/bin/time -v. Then the typed set 10x larger
(bench_typed CROSS JOIN generate_series(1, 10), nothing more loaded) for
peak RSS, and each client's baseline process (imports, connect, SELECT 1).
Writes the tables to --out and prints them.
"""

import argparse
import datetime
import decimal
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "client.py")

CLIENT_DESC = {
    "pgspout_reader": "pgspout `conn.stream(sql).arrow_reader()`, batch by batch (text results)",
    "pgspout_binary": "pgspout `conn.stream(sql, arrow=True).arrow_reader()`: binary results where every column allows",
    "pgspout_table": "pgspout `conn.stream(sql).to_arrow()` (whole result)",
    "adbc": "ADBC `cursor.execute(sql); cursor.fetch_record_batch()`, batch by batch",
    "connectorx": 'ConnectorX `read_sql(uri, sql, return_type="arrow")` (whole result)',
    "pandas": "`pandas.read_sql(sql, psycopg_conn, chunksize=50000, coerce_float=False)`",
}

DATASETS = {
    "typed": "SELECT * FROM bench_typed",
    "json": "SELECT * FROM bench_json",
    "wide": "SELECT * FROM bench_wide",
}
BIG_SQL = "SELECT t.* FROM bench_typed t CROSS JOIN generate_series(1, {n}) AS g"

KINDS = {
    "smallint": "int", "integer": "int", "bigint": "int", "oid": "int",
    "boolean": "bool",
    "real": "float", "double precision": "float",
    "numeric": "numeric",
    "text": "text", "character varying": "text", "character": "text",
    "json": "json", "jsonb": "json",
    "timestamp with time zone": "ts", "timestamp without time zone": "ts",
    "date": "date",
    "uuid": "uuid",
}


def log(*a):
    print("arrow-bench:", *a, file=sys.stderr, flush=True)


def psql(uri, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def columns(uri, table):
    rows = psql(uri, f"""
        SELECT attname, regexp_replace(format_type(atttypid, atttypmod), '\\(.*\\)', '')
        FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0
        AND NOT attisdropped ORDER BY attnum""")
    cols = []
    for name, typ in rows:
        if typ not in KINDS:
            raise SystemExit(f"arrow-bench: {table}.{name}: no checksum for type {typ}")
        cols.append((name, KINDS[typ], typ))
    return cols


# ------------------------------------------------------ server's checksums


def q(name):
    return '"' + name.replace('"', '""') + '"'


def _halves(expr):
    return [f"sum(({expr}) & 4294967295)", f"sum((({expr}) >> 32) & 4294967295)"]


def _md5_32(expr):
    return f"('x' || left(md5({expr}), 8))::bit(32)::int8"


# Tokens of one JSON document, as client.py's _json_tokens makes them: keys,
# then scalars (numbers without trailing zeros), sorted bytewise.
JSON_TOKENS = """
    SELECT 'k:' || k AS t
      FROM jsonb_path_query({d}, 'strict $.** ? (@.type() == "object")') AS o(v),
           jsonb_object_keys(o.v) AS k
    UNION ALL
    SELECT CASE jsonb_typeof(v)
             WHEN 'string' THEN 's:' || (v #>> '{{}}')
             WHEN 'number' THEN 'n:' || trim_scale((v #>> '{{}}')::numeric)::text
             WHEN 'boolean' THEN 'b:' || (v #>> '{{}}')
             ELSE 'z' END
      FROM jsonb_path_query({d}, 'strict $.** ? (@.type() != "object" && @.type() != "array")') AS s(v)
"""


def checksum_spec(cols, sql):
    """(SQL computing every column's aggregates, list of (column, key) in
    the order of its output)."""
    sel, keys, laterals = [], [], []
    for i, (name, kind, _) in enumerate(cols):
        c = "q." + q(name)
        sel.append(f"count({c})")
        keys.append((name, "count"))
        if kind == "int":
            sel += _halves(f"{c}::int8")
            keys += [(name, "lo"), (name, "hi")]
        elif kind == "float":
            sel += _halves(f"('x' || encode(float8send({c}::float8), 'hex'))::bit(64)::int8")
            keys += [(name, "lo"), (name, "hi")]
        elif kind == "ts":
            sel += _halves(f"(extract(epoch FROM {c}) * 1000000)::int8")
            keys += [(name, "lo"), (name, "hi")]
        elif kind == "bool":
            sel.append(f"sum({c}::int)")
            keys.append((name, "sum"))
        elif kind == "date":
            sel.append(f"sum({c} - date '1970-01-01')")
            keys.append((name, "sum"))
        elif kind == "uuid":
            for w in range(4):
                sel.append(f"sum(('x' || substr(replace({c}::text, '-', ''), {1 + 8 * w}, 8))::bit(32)::int8)")
                keys.append((name, f"w{w}"))
        elif kind == "numeric":
            sel += [f"sum({c})", f"sum({c} * {c})"]
            keys += [(name, "sum"), (name, "sumsq")]
        elif kind == "text":
            sel += [f"sum(octet_length({c}))", f"sum({_md5_32(c)})"]
            keys += [(name, "len"), (name, "md5")]
        elif kind == "json":
            j = f"j{i}"
            doc_md5 = _md5_32("coalesce(string_agg(t, chr(31) ORDER BY t COLLATE \"C\"), '')")
            tokens = JSON_TOKENS.format(d=c + "::jsonb")
            laterals.append(
                f"LEFT JOIN LATERAL (SELECT count(*) AS n, "
                f"CASE WHEN {c} IS NULL THEN NULL ELSE {doc_md5} END AS h "
                f"FROM ({tokens}) AS toks) AS {j} ON true")
            sel += [f"sum(CASE WHEN {c} IS NULL THEN NULL ELSE {j}.n END)", f"sum({j}.h)"]
            keys += [(name, "len"), (name, "md5")]
    text = f"SELECT count(*), {', '.join(sel)} FROM ({sql}) AS q {' '.join(laterals)}"
    return text, keys


def server_checksums(uri, cols, sql):
    text, keys = checksum_spec(cols, sql)
    row = psql(uri, text)[0]
    out = {"rows": int(row[0]), "columns": {}}
    for (name, key), v in zip(keys, row[1:]):
        col = out["columns"].setdefault(name, {})
        col[key] = v if v != "" else "0"
    return out


def norm(v):
    """A checksum value as a comparable number (ints and decimals alike)."""
    d = decimal.Decimal(str(v))
    return d.normalize() if d != 0 else decimal.Decimal(0)


def compare(server, client):
    """List of mismatches (empty when every checksum equals the server's)."""
    bad = []
    if client.get("rows") != server["rows"]:
        bad.append(f"rows {client.get('rows')} != {server['rows']}")
    for name, want in server["columns"].items():
        got = client.get("columns", {}).get(name)
        if got is None:
            bad.append(f"{name}: missing")
            continue
        got = dict(got)
        if "w" in got:
            for w, x in enumerate(got.pop("w")):
                got[f"w{w}"] = x
        for key, v in want.items():
            if key not in got or norm(got[key]) != norm(v):
                bad.append(f"{name}.{key}: {got.get(key)} != server {v}")
    return bad


# ------------------------------------------------------------------ runs

TIME_FIELDS = {
    "Maximum resident set size (kbytes)": "rss_kb",
    "User time (seconds)": "user",
    "System time (seconds)": "sys",
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "elapsed",
}


def parse_time_v(stderr):
    out = {}
    for line in stderr.splitlines():
        line = line.strip()
        for label, key in TIME_FIELDS.items():
            if line.startswith(label + ":"):
                v = line[len(label) + 1:].strip()
                if key == "elapsed":
                    secs = 0.0
                    for part in v.split(":"):
                        secs = secs * 60 + float(part)
                    out[key] = secs
                elif key == "rss_kb":
                    out[key] = int(v)
                else:
                    out[key] = float(v)
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def run_client(a, client, sql, check=None, baseline=False, timeout=1800):
    cmd = ["/usr/bin/time", "-v", sys.executable, CLIENT, client, "--uri", a.uri, "--sql", sql]
    if client.startswith("pgspout"):
        cmd += ["--pgspout-opts", a.pgspout_opts]
    if check is not None:
        cmd += ["--check", json.dumps(check)]
    if baseline:
        cmd += ["--baseline"]
    load = loadavg()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "load": load}
    tv = parse_time_v(p.stderr)
    if p.returncode != 0:
        tail = [ln for ln in p.stderr.splitlines() if not ln.startswith("\t")][-6:]
        return {"error": f"exit {p.returncode}: " + " | ".join(tail), "load": load, **tv}
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"no result line: {p.stdout[-300:]!r}", "load": load, **tv}
    res.update(tv)
    res["load"] = load
    return res


def best(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    b = dict(min(ok, key=lambda r: r["wall"]))
    b["rss_kb_max"] = max(r["rss_kb"] for r in ok)
    b["n_ok"] = len(ok)
    return b


# ---------------------------------------------------------------- report


def mb(kb):
    return kb / 1024.0


def fmt_rate(r):
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.0f} k"


def ratio(x, y):
    if x is None or y is None or y == 0:
        return "-"
    return f"{x / y:.2f}x"


def peer_versions():
    from importlib import metadata

    out = []
    for dist in ("pgspout", "pyarrow", "adbc-driver-postgresql", "adbc-driver-manager",
                 "connectorx", "pandas", "psycopg", "psycopg-binary", "numpy", "polars"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--wide-rows", type=int, default=200000)
    p.add_argument("--big-factor", type=int, default=10)
    p.add_argument("--big-runs", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--datasets", default="typed,json,wide")
    p.add_argument("--clients",
                   default="pgspout_binary,pgspout_reader,pgspout_table,adbc,connectorx,pandas")
    p.add_argument("--big-clients",
                   default="pgspout_binary,pgspout_reader,pgspout_table,adbc,connectorx,pandas")
    p.add_argument("--max-memory", default="64MB")
    p.add_argument("--pgspout-opts", default="", help="more stream options, k=v,...")
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()
    a.pgspout_opts = ",".join(filter(None, [f"max_memory={a.max_memory}", a.pgspout_opts]))
    clients = [c for c in a.clients.split(",") if c]
    big_clients = [c for c in a.big_clients.split(",") if c]
    datasets = [d for d in a.datasets.split(",") if d]

    started = datetime.datetime.now()
    load_start = loadavg()
    failures = []
    results = {}  # dataset -> client -> best
    types = {}  # dataset -> client -> {column: [types]}
    checks = {}  # dataset -> client -> "ok" | mismatch text
    allruns = []

    for ds in datasets:
        sql = DATASETS[ds]
        cols = columns(a.uri, "bench_" + ds)
        kinds = [[n, k] for n, k, _ in cols]
        results[ds], types[ds], checks[ds] = {}, {}, {}
        if not a.no_check:
            log(f"{ds}: server checksums")
            t0 = time.time()
            server = server_checksums(a.uri, cols, sql)
            log(f"{ds}: {server['rows']} rows, checksums in {time.time() - t0:.1f} s")
            for c in clients:
                log(f"{ds}: checked run of {c}")
                r = run_client(a, c, sql, check=kinds)
                if "error" in r:
                    checks[ds][c] = "FAILED: " + r["error"]
                    failures.append(f"{ds}/{c} checked run: {r['error']}")
                    continue
                types[ds][c] = {n: v["types"] for n, v in r["columns"].items()}
                bad = compare(server, r)
                checks[ds][c] = "identical" if not bad else "MISMATCH: " + "; ".join(bad)
                if bad:
                    failures.append(f"{ds}/{c} checksums differ from the server's: " + "; ".join(bad))
        for i in range(a.runs):
            for c in clients:
                r = run_client(a, c, sql)
                r["dataset"], r["client"], r["run"] = ds, c, i + 1
                allruns.append(r)
                if "error" in r:
                    failures.append(f"{ds}/{c} run {i + 1}: {r['error']}")
                    log(f"{ds} run {i + 1} {c}: FAILED {r['error']}")
                else:
                    log(f"{ds} run {i + 1} {c}: {r['rows']} rows in {r['wall']:.2f} s, "
                        f"cpu {r['cpu']:.2f} s, rss {mb(r['rss_kb']):.0f} MB, load {r['load'][0]}")
        for c in clients:
            results[ds][c] = best(runs_of(allruns, ds, c))
        results[ds]["_cols"] = cols

    big = {}
    big_sql = BIG_SQL.format(n=a.big_factor)
    if a.big_factor > 1 and big_clients:
        for i in range(a.big_runs):
            for c in big_clients:
                r = run_client(a, c, big_sql)
                r["dataset"], r["client"], r["run"] = "big", c, i + 1
                allruns.append(r)
                if "error" in r:
                    failures.append(f"typed x{a.big_factor}/{c} run {i + 1}: {r['error']}")
                    log(f"big {c}: FAILED {r['error']}")
                else:
                    log(f"big {c}: {r['rows']} rows in {r['wall']:.2f} s, rss {mb(r['rss_kb']):.0f} MB")
                    if r["rows"] != a.rows * a.big_factor:
                        failures.append(f"typed x{a.big_factor}/{c}: {r['rows']} rows, "
                                        f"expected {a.rows * a.big_factor}")
        for c in big_clients:
            big[c] = best(runs_of(allruns, "big", c))

    base = {}
    for c in sorted(set(clients) | set(big_clients)):
        r = run_client(a, c, "SELECT 1", baseline=True)
        if "error" in r:
            failures.append(f"baseline {c}: {r['error']}")
        else:
            base[c] = r["rss_kb"]
    load_end = loadavg()

    md = report(a, started, load_start, load_end, clients, big_clients, datasets,
                results, types, checks, big, base, failures, allruns)
    with open(a.out, "w") as f:
        f.write(md)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"runs": allruns, "baseline_rss_kb": base, "checks": checks,
                   "types": types, "failures": failures}, f, indent=1, default=str)
    print(md)
    return 1 if failures else 0


def runs_of(allruns, ds, c):
    return [r for r in allruns if r["dataset"] == ds and r["client"] == c]


def report(a, started, load_start, load_end, clients, big_clients, datasets,
           results, types, checks, big, base, failures, allruns):
    L = []
    w = L.append
    loads = [r["load"][0] for r in allruns if "load" in r]
    w(f"# pgspout Arrow benchmark ({started:%Y-%m-%d %H:%M})")
    w("")
    for h in a.header:
        w(h)
    w(f"- {os.cpu_count()} cores, shared with other work: load average (1/5/15 min) "
      f"{'/'.join(map(str, load_start))} at the start, {'/'.join(map(str, load_end))} at the end; "
      f"1-min load at the start of each run {min(loads):.2f}..{max(loads):.2f}"
      if loads else "")
    w(f"- peers from PyPI: {', '.join(peer_versions())}")
    w(f"- pgspout options: `{a.pgspout_opts}`, the rest at their defaults (chunk_rows 1000, "
      f"chunk_bytes 1MB: a batch per chunk); datasets: typed and json {a.rows} rows, "
      f"wide {a.wide_rows} rows; typed x{a.big_factor}: `{BIG_SQL.format(n=a.big_factor)}`")
    w(f"- best of {a.runs} interleaved runs (x{a.big_factor}: {a.big_runs}); every client is its own "
      "process under `/usr/bin/time -v`")
    w("- rows/s and fetch CPU: from the client's call to its last batch (time.perf_counter, "
      "time.process_time: all threads), imports and connect excluded; process CPU and peak RSS: "
      "`/usr/bin/time -v` of the whole process (peak RSS: the largest of the runs); "
      "baseline: the same process importing its modules, connecting and running SELECT 1; "
      "over base = peak RSS - baseline")
    w("")
    w("Clients:")
    w("")
    for c in clients:
        w(f"- `{c}`: {CLIENT_DESC[c]}")
    w("")
    w("Baseline RSS (imports + connect + SELECT 1): " + ", ".join(
        f"{c} {mb(base[c]):.0f} MB" for c in sorted(base)))
    w("")
    for ds in datasets:
        res = results[ds]
        cols = res["_cols"]
        n = a.wide_rows if ds == "wide" else a.rows
        w(f"## {ds} ({n} rows, {len(cols)} column{'s' if len(cols) != 1 else ''})")
        w("")
        w("| client | rows/s | vs ADBC | fetch s | fetch CPU s | process CPU s | peak RSS MB | over base MB | RSS vs ADBC | values |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        ref = res.get("adbc")
        ref_rate = ref["rows"] / ref["wall"] if ref else None
        for c in clients:
            b = res.get(c)
            chk = checks.get(ds, {}).get(c, "not checked")
            chk = chk if len(chk) < 90 else chk[:87] + "..."
            if b is None:
                w(f"| {c} | failed | | | | | | | | {chk} |")
                continue
            rate = b["rows"] / b["wall"]
            over = (b["rss_kb_max"] - base[c]) if c in base else None
            w(f"| {c} | {fmt_rate(rate)} | {ratio(rate, ref_rate)} | {b['wall']:.2f} | {b['cpu']:.2f} "
              f"| {b['user'] + b['sys']:.2f} | {mb(b['rss_kb_max']):.0f} "
              f"| {'-' if over is None else f'{mb(over):.0f}'} "
              f"| {ratio(b['rss_kb_max'], ref['rss_kb_max'] if ref else None)} | {chk} |")
        w("")
        if types.get(ds):
            tc = [c for c in clients if c in types[ds]]
            w(f"Arrow types ({ds}):")
            w("")
            w("| column | PostgreSQL | " + " | ".join(tc) + " |")
            w("|---|---|" + "---|" * len(tc))
            shown = 0
            seen = set()
            for name, _, pgtype in cols:
                row = tuple("/".join(types[ds][c].get(name, ["?"])) for c in tc)
                # the wide set repeats each type four times: show each distinct row once
                if (pgtype, row) in seen:
                    continue
                seen.add((pgtype, row))
                shown += 1
                w(f"| {name} | {pgtype} | " + " | ".join(f"`{t}`" for t in row) + " |")
            w("")
    if big:
        w(f"## typed x{a.big_factor} ({a.rows * a.big_factor} rows): peak RSS against the 1x result")
        w("")
        w("| client | rows/s | fetch s | peak RSS MB 1x | peak RSS MB 10x | 10x / 1x | over base 1x | over base 10x |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in big_clients:
            b = big.get(c)
            one = results.get("typed", {}).get(c)
            if b is None:
                w(f"| {c} | failed | | | | | | |")
                continue
            r1 = one["rss_kb_max"] if one else None
            bs = base.get(c)
            o10 = "-" if bs is None else f"{mb(b['rss_kb_max'] - bs):.0f}"
            w(f"| {c} | {fmt_rate(b['rows'] / b['wall'])} | {b['wall']:.2f} "
              f"| {'-' if r1 is None else f'{mb(r1):.0f}'} | {mb(b['rss_kb_max']):.0f} "
              f"| {ratio(b['rss_kb_max'], r1)} "
              f"| {'-' if r1 is None or bs is None else f'{mb(r1 - bs):.0f}'} "
              f"| {o10} |")
        w("")
        pr = big.get("pgspout_reader")
        if pr:
            w(f"pgspout_reader, typed x{a.big_factor}: {pr.get('chunks')} batches, "
              f"peak_buffered_bytes {pr.get('peak_buffered_bytes', 0) / 1048576:.1f} MB "
              f"(max_memory {a.max_memory})")
            w("")
    w(goal(a, results, big, base))
    w("")
    if failures:
        w("## Failures")
        w("")
        for f in failures:
            w(f"- {f}")
    else:
        w("No failures: every client's rows and per-column checksums equal the server's.")
    w("")
    return "\n".join(L)


def goal(a, results, big, base):
    """The issue's goal on the typed set, stated with numbers."""
    t = results.get("typed", {})
    key = "pgspout_binary" if "pgspout_binary" in t else "pgspout_reader"
    p, r = t.get(key), t.get("adbc")
    if not p or not r:
        return "Goal: not evaluated (typed results of pgspout_reader or adbc missing)."
    speed = (p["rows"] / p["wall"]) / (r["rows"] / r["wall"])
    mem = p["rss_kb_max"] / r["rss_kb_max"]
    lines = [f"## Goal (typed rows, {key} against ADBC)", ""]
    lines.append(f"- rows/s: {speed:.2f}x ADBC's (goal >= 1.5x): {'met' if speed >= 1.5 else 'NOT met'}")
    lines.append(f"- peak RSS: {mb(p['rss_kb_max']):.0f} MB against {mb(r['rss_kb_max']):.0f} MB, "
                 f"{mem:.2f} of ADBC's (goal <= 0.20): {'met' if mem <= 0.2 else 'NOT met'}")
    if key in base and "adbc" in base:
        po = p["rss_kb_max"] - base[key]
        ro = r["rss_kb_max"] - base["adbc"]
        lines.append(f"- above each process's baseline: {mb(po):.0f} MB against {mb(ro):.0f} MB, "
                     f"{po / ro:.2f} of ADBC's" if ro > 0 else "- above baseline: ADBC's is 0")
    pb = big.get(key)
    if pb:
        grow = pb["rss_kb_max"] / p["rss_kb_max"]
        lines.append(f"- peak RSS flat in the result's size: x{a.big_factor} rows "
                     f"{mb(pb['rss_kb_max']):.0f} MB against {mb(p['rss_kb_max']):.0f} MB ({grow:.2f}x): "
                     f"{'flat (within 10%)' if grow <= 1.10 else 'NOT flat'}")
        if key in base:
            over = pb["rss_kb_max"] - base[key]
            mm = parse_size(a.max_memory)
            lines.append(f"- within max_memory={a.max_memory}: {mb(over):.0f} MB above the baseline "
                         f"process at x{a.big_factor}: {'yes' if over <= mm else 'NO'}; the stream's own "
                         f"peak_buffered_bytes {pb.get('peak_buffered_bytes', 0) / 1048576:.1f} MB")
    return "\n".join(lines)


def parse_size(s):
    m = re.fullmatch(r"(\d+)\s*([kKMGT]?B?)", s.strip())
    if not m:
        return 0
    mult = {"": 1, "B": 1, "kB": 1024, "KB": 1024, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    return int(m.group(1)) * mult.get(m.group(2), 1)


if __name__ == "__main__":
    sys.exit(main())
