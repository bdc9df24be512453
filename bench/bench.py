#!/usr/bin/python3
"""bench.py - time every client on the bench datasets; called by bench/run.sh.

Each client is a separate process run under /usr/bin/time -v (wall clock,
user+sys CPU, peak RSS). Runs are interleaved (run 1 of every client, then
run 2...) so that drift on the machine hits every client alike; a client's
figure is its best wall time of N runs, the lowest CPU time of those runs and
the highest peak RSS. Every client prints "rows=N" and a run whose count is
not the dataset's row count is a failure, not a number (the CLI writes to
/dev/null, so its output is counted in one extra untimed run). Clients that
also print "values=V" (non-NULL values they received) must agree with raw
libpq's count, and the C clients' "bytes=B check=C" with raw libpq's: a
client that skipped or lost values fails. The Python and Lua clients also
print "types=..." (the type each column's values arrived as), shown under
the table.

Adding a client: append a Client(...) to clients() below; it needs a key, a
label, an argv builder and an availability check. Clients that are not
available (module not built yet, package missing) are listed under the table
with the reason, never dropped silently.

With --baseline DIR (made by bench/baseline.sh), an earlier commit's CLI,
Python (tuples and rows="json") and Lua clients (keys KEY@base) run the same
peer scripts in the same rounds, and the report adds a before/after table.

Stdlib only: run it with /usr/bin/python3.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PEERS = os.path.join(BENCH, "peers")

DATASETS = {
    "json": "SELECT data FROM bench_json",
    "typed": "SELECT * FROM bench_typed",
    "wide": "SELECT * FROM bench_wide",
}
# Column types of each dataset (bench/datasets.sql); wide repeats its ten
# four times.
KINDS = {
    "json": ["jsonb"],
    "typed": ["int4", "int8", "float8", "numeric", "text", "bool", "timestamptz", "uuid", "date"],
    "wide": ["int4", "int8", "float8", "numeric", "text", "bool", "timestamptz", "date", "uuid",
             "varchar"],
}
# Output fields that must equal raw libpq's for the same dataset.
CHECKED = ("values", "bytes", "check")


class Client:
    def __init__(self, key, label, group, argv, check, version=None,
                 env=None, datasets=None, counts=True, note=""):
        self.key = key
        self.label = label
        self.group = group
        self.argv = argv          # function(sql) -> list
        self.check = check        # function() -> None if usable, else reason
        self.version = version    # function() -> str
        self.env = env or {}
        self.datasets = datasets or list(DATASETS)
        self.counts = counts      # prints rows=N (else stdout -> /dev/null)
        self.note = note
        self.version_text = ""


def run_quiet(argv, env=None, timeout=60):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    out = (p.stdout + p.stderr).strip()
    return p.returncode, out


def exists(path, what):
    return lambda: None if os.path.exists(path) else f"{what} not built ({os.path.relpath(path, ROOT)} missing)"


def importable(python, module, env=None):
    def check():
        if not os.path.exists(python):
            return f"bench venv missing ({python})"
        rc, out = run_quiet([python, "-c", f"import {module}"], env=env)
        if rc != 0:
            return f"python module {module} not importable: {out.splitlines()[-1] if out else rc}"
        return None
    return check


def lua_requires(lua, module, env=None):
    def check():
        if shutil.which(lua) is None:
            return f"{lua} not installed"
        full = dict(os.environ, **(env or {}))
        rc, out = run_quiet([lua, "-e", f'require "{module}"'], env=full)
        if rc != 0:
            return f"{lua}: require '{module}' failed: {out.splitlines()[0] if out else rc}"
        return None
    return check


def script_version(argv, env=None):
    def version():
        full = dict(os.environ, **(env or {}))
        rc, out = run_quiet(argv + ["--version"], env=full)
        return out.splitlines()[-1] if rc == 0 and out else "?"
    return version


def find_lua_module(build):
    """Directory of the built Lua module (pgspout.so or a core .so) or None."""
    base = os.path.join(build, "bindings", "lua")
    for dirpath, _, files in os.walk(base):
        for f in files:
            if f.endswith(".so") and "pgspout" in f:
                return dirpath
    return None


def clients(a):
    py = os.path.join(a.venv, "bin", "python")
    raw = os.path.join(a.bin, "raw_libpq")
    pc = os.path.join(a.bin, "pgspout_c")
    cli = os.path.join(a.build, "core", "pgspout")
    libpq = subprocess.run(["pkg-config", "--modversion", "libpq"], capture_output=True,
                           text=True).stdout.strip()
    pgspout_version = "pgspout " + read_project_version()

    lua_dir = find_lua_module(a.build)
    lua_env = {}
    if lua_dir:
        lua_env = {
            "LUA_CPATH": f"{lua_dir}/?.so;;",
            "LUA_PATH": f"{lua_dir}/?.lua;{ROOT}/bindings/lua/?.lua;;",
        }

    def peer(script):
        return lambda sql: [py, os.path.join(PEERS, script), a.dsn, sql]

    def peer_uri(script):
        return lambda sql: [py, os.path.join(PEERS, script), a.uri, sql]

    out = [
        Client("raw_libpq", "raw libpq, single-row mode (C)", "C",
               lambda sql: [raw, a.dsn, sql], exists(raw, "bench/raw_libpq.c"),
               lambda: f"libpq {libpq}"),
        Client("pgspout_cli", "pgspout CLI, ndjson to /dev/null", "C",
               lambda sql: cli_argv(cli, a.dsn, sql),
               exists(cli, "the pgspout CLI"), lambda: pgspout_version, counts=False),
        Client("pgspout_c", "pgspout C API, stream_next", "C",
               lambda sql: [pc, a.dsn, sql], exists(pc, "bench/pgspout_c.c"),
               lambda: pgspout_version),
        Client("pgspout_c_chunk", "pgspout C API, stream_next_chunk", "C",
               lambda sql: [pc, "--chunk", a.dsn, sql], exists(pc, "bench/pgspout_c.c"),
               lambda: pgspout_version),
        Client("psycopg2_named", "psycopg2 named cursor, itersize 10000", "Python",
               peer("psycopg2_named.py"), importable(py, "psycopg2"),
               script_version([py, os.path.join(PEERS, "psycopg2_named.py")])),
        Client("psycopg3_stream", "psycopg 3 cursor.stream()", "Python",
               peer("psycopg3_stream.py"), importable(py, "psycopg"),
               script_version([py, os.path.join(PEERS, "psycopg3_stream.py")])),
        Client("psycopg3_stream_size", "psycopg 3 cursor.stream(size=10000)", "Python",
               lambda sql: peer("psycopg3_stream.py")(sql) + ["size=10000"],
               importable(py, "psycopg"),
               script_version([py, os.path.join(PEERS, "psycopg3_stream.py")]),
               note="chunked-rows mode when psycopg's libpq is >= 17"),
        Client("psycopg3_named", "psycopg 3 named cursor, itersize 10000", "Python",
               peer("psycopg3_named.py"), importable(py, "psycopg"),
               script_version([py, os.path.join(PEERS, "psycopg3_named.py")])),
        Client("asyncpg_cursor", "asyncpg cursor(prefetch=10000)", "Python",
               peer_uri("asyncpg_cursor.py"), importable(py, "asyncpg"),
               script_version([py, os.path.join(PEERS, "asyncpg_cursor.py")])),
        Client("asyncpg_fetch", "asyncpg fetch() (whole result)", "Python",
               peer_uri("asyncpg_fetch.py"), importable(py, "asyncpg"),
               script_version([py, os.path.join(PEERS, "asyncpg_fetch.py")])),
        Client("pgspout_py", "pgspout Python, tuples", "Python",
               peer("pgspout_py.py"), importable(py, "pgspout"),
               script_version([py, os.path.join(PEERS, "pgspout_py.py")])),
        Client("pgspout_py_binary", "pgspout Python, tuples, binary=on", "Python",
               lambda sql: peer("pgspout_py.py")(sql) + ["binary=on"],
               importable(py, "pgspout"),
               script_version([py, os.path.join(PEERS, "pgspout_py.py")])),
        Client("pgspout_py_json", "pgspout Python, rows=\"json\"", "Python",
               lambda sql: peer("pgspout_py.py")(sql) + ["rows=json"],
               importable(py, "pgspout"),
               script_version([py, os.path.join(PEERS, "pgspout_py.py")])),
    ]
    # asyncio (issue 13): every client runs a 1 ms ticker task beside its
    # stream and prints the loop's max stall (stall_ms=); loop=uvloop runs
    # the same script on uvloop
    aio = [
        ("aio_asyncpg_cursor", "asyncpg cursor(prefetch=10000), asyncio", "aio_asyncpg_cursor.py",
         "asyncpg", [], True),
        ("aio_asyncpg_cursor_uvloop", "asyncpg cursor(prefetch=10000), uvloop",
         "aio_asyncpg_cursor.py", "asyncpg, uvloop", ["loop=uvloop"], True),
        ("aio_psycopg3_stream", "psycopg 3 AsyncCursor.stream(), asyncio",
         "aio_psycopg3_stream.py", "psycopg", [], False),
        ("aio_pgspout", "pgspout.aio async for, tuples, asyncio", "aio_pgspout.py",
         "pgspout.aio", [], False),
        ("aio_pgspout_uvloop", "pgspout.aio async for, tuples, uvloop", "aio_pgspout.py",
         "pgspout.aio, uvloop", ["loop=uvloop"], False),
        ("aio_pgspout_json", "pgspout.aio async for, rows=\"json\", asyncio", "aio_pgspout.py",
         "pgspout.aio", ["rows=json"], False),
    ]
    for key, label, script, modules, extra, uri in aio:
        argv = peer_uri(script) if uri else peer(script)
        out.append(Client(key, label, "Python asyncio",
                          (lambda argv, extra: lambda sql: argv(sql) + extra)(argv, extra),
                          importable(py, modules),
                          script_version([py, os.path.join(PEERS, script)])))
    for lua in ("lua5.1", "luajit"):
        out.append(Client(
            f"luasql_{lua}", f"luasql-postgres ({lua}, whole result)", "Lua",
            (lambda lua: lambda sql: [lua, os.path.join(PEERS, "luasql.lua"), a.uri, sql])(lua),
            lua_requires(lua, "luasql.postgres"),
            script_version([lua, os.path.join(PEERS, "luasql.lua")])))
    for lua in ("luajit", "lua5.1"):
        check = lua_requires(lua, "pgspout", lua_env) if lua_dir else (
            lambda: "Lua module not built (no pgspout*.so under build/bindings/lua)")
        out.append(Client(
            f"pgspout_{lua}", f"pgspout Lua ({lua}), s:rows()", "Lua",
            (lambda lua: lambda sql: [lua, os.path.join(PEERS, "pgspout_lua.lua"), a.dsn, sql])(lua),
            check, script_version([lua, os.path.join(PEERS, "pgspout_lua.lua")], lua_env),
            env=lua_env))
    if a.baseline:
        for c in baseline_clients(a):
            i = next(i for i, o in enumerate(out) if o.key == c.key.split("@")[0])
            out.insert(i + 1, c)
    return out


_CLI_OLD = {}


def cli_argv(cli, dsn, sql):
    """The pgspout CLI's command line for sql as NDJSON: psql's options
    (-d, -F, -c) since issue 15, the old --dsn/--format/"SQL" form for a
    baseline built before it (its help has no --command; asked once)."""
    if cli not in _CLI_OLD:
        try:
            help_text = subprocess.run([cli, "--help"], capture_output=True, text=True,
                                       check=False).stdout
            _CLI_OLD[cli] = "--command" not in help_text
        except OSError:
            _CLI_OLD[cli] = False
    if _CLI_OLD[cli]:
        return [cli, "--dsn", dsn, "--format", "ndjson", sql]
    return [cli, "-d", dsn, "-F", "ndjson", "-c", sql]


def baseline_clients(a):
    """The pgspout CLI, Python and Lua clients of the build bench/baseline.sh
    made in a.baseline, keyed KEY@base and labelled with its commit."""
    rev = read_baseline_rev(a.baseline)
    py = os.path.join(a.baseline, "venv", "bin", "python")
    cli = os.path.join(a.baseline, "build", "core", "pgspout")
    lua_dir = find_lua_module(os.path.join(a.baseline, "build"))
    lua_env = {
        "LUA_CPATH": f"{lua_dir}/?.so;;",
        "LUA_PATH": f"{lua_dir}/?.lua;{a.baseline}/src/bindings/lua/?.lua;;",
    }
    script = os.path.join(PEERS, "pgspout_py.py")
    out = [
        Client("pgspout_cli@base", f"pgspout CLI, ndjson to /dev/null ({rev})", "C",
               lambda sql: cli_argv(cli, a.dsn, sql),
               exists(cli, "the baseline's CLI"),
               lambda: f"pgspout {read_project_version(os.path.join(a.baseline, 'src'))} ({rev})",
               counts=False),
        Client("pgspout_py@base", f"pgspout Python, tuples ({rev})", "Python",
               lambda sql: [py, script, a.dsn, sql], importable(py, "pgspout"),
               lambda: f"{script_version([py, script])()} ({rev})"),
        Client("pgspout_py_json@base", f"pgspout Python, rows=\"json\" ({rev})", "Python",
               lambda sql: [py, script, a.dsn, sql, "rows=json"], importable(py, "pgspout"),
               lambda: f"{script_version([py, script])()} ({rev})"),
    ]
    for lua in ("luajit", "lua5.1"):
        argv = [lua, os.path.join(PEERS, "pgspout_lua.lua")]
        check = lua_requires(lua, "pgspout", lua_env) if lua_dir else (
            lambda: f"baseline Lua module not built (no pgspout*.so under {a.baseline}/build)")
        out.append(Client(
            f"pgspout_{lua}@base", f"pgspout Lua ({lua}), s:rows() ({rev})", "Lua",
            (lambda argv: lambda sql: argv + [a.dsn, sql])(argv), check,
            (lambda argv: lambda: f"{script_version(argv, lua_env)()} ({rev})")(argv),
            env=lua_env))
    return out


def read_baseline_rev(d):
    try:
        with open(os.path.join(d, "rev")) as f:
            return f.read().strip()
    except OSError:
        return "baseline"


def read_project_version(root=ROOT):
    try:
        with open(os.path.join(root, "CMakeLists.txt")) as f:
            m = re.search(r"project\(pgspout VERSION ([0-9.]+)", f.read())
            return m.group(1) if m else "?"
    except OSError:
        return "?"


TIME_FIELDS = {
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall",
    "User time (seconds)": "user",
    "System time (seconds)": "sys",
    "Maximum resident set size (kbytes)": "rss_kb",
}


def parse_time(path):
    got = {}
    with open(path) as f:
        for line in f:
            key, _, val = line.strip().rpartition(": ")
            if key in TIME_FIELDS:
                name = TIME_FIELDS[key]
                if name == "wall":
                    secs = 0.0
                    for part in val.split(":"):
                        secs = secs * 60 + float(part)
                    got[name] = secs
                else:
                    got[name] = float(val)
    return got


def run_timed(client, sql, expected, timeout, ref=None):
    """One timed run: dict(wall, cpu, rss_mb, out) or raise RuntimeError.
    out holds the client's key=value output; the CHECKED ones it prints must
    equal ref's (raw libpq's output on the same dataset)."""
    with tempfile.NamedTemporaryFile(prefix="pgspout-bench-time.", delete=False) as t:
        tpath = t.name
    try:
        argv = ["/usr/bin/time", "-v", "-o", tpath] + client.argv(sql)
        env = dict(os.environ, **client.env)
        stdout = subprocess.PIPE if client.counts else subprocess.DEVNULL
        try:
            p = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, env=env,
                               timeout=timeout, text=True)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout}s")
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-500:]}")
        out = {}
        if client.counts:
            out = dict(re.findall(r"(\w+)=(\S+)", p.stdout))
            if out.get("rows") != str(expected):
                raise RuntimeError(f"row count {out.get('rows', '?')} != {expected}: "
                                   f"{p.stdout.strip()[-200:]}")
            for k in CHECKED:
                if ref and k in out and k in ref and out[k] != ref[k]:
                    raise RuntimeError(f"{k}={out[k]} where raw libpq has {k}={ref[k]}")
        t = parse_time(tpath)
        return {"wall": t["wall"], "cpu": t["user"] + t["sys"], "rss_mb": t["rss_kb"] / 1024,
                "out": out}
    finally:
        os.unlink(tpath)


def count_lines(client, sql, timeout):
    """Untimed run of a client that writes rows to stdout: count the lines."""
    p = subprocess.Popen(client.argv(sql), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, **client.env))
    n = 0
    while True:
        buf = p.stdout.read(1 << 20)
        if not buf:
            break
        n += buf.count(b"\n")
    err = p.stderr.read().decode(errors="replace")
    if p.wait(timeout=timeout) != 0:
        raise RuntimeError(f"exit {p.returncode}: {err.strip()[-500:]}")
    return n


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem} RAM, {platform.platform()}"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def fmt_ratio(x):
    return f"{x:.2f}x" if x is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", required=True, help="libpq key=value conninfo")
    ap.add_argument("--uri", required=True, help="the same server as a postgresql:// URI")
    ap.add_argument("--rows", type=int, required=True, help="rows in the json and typed datasets")
    ap.add_argument("--wide-rows", type=int, default=200000, help="rows in the wide dataset")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--datasets", default="json,typed,wide")
    ap.add_argument("--only", default="", help="regex on client keys")
    ap.add_argument("--bin", required=True, help="directory of the compiled bench clients")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--venv", default=os.path.join(BENCH, ".peers", "venv"))
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "latest.md"))
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--header", default="", help="extra Markdown put above the table")
    ap.add_argument("--baseline", default="",
                    help="a directory made by bench/baseline.sh: also measure its clients")
    a = ap.parse_args()

    datasets = [d for d in a.datasets.split(",") if d]
    for d in datasets:
        if d not in DATASETS:
            sys.exit(f"bench.py: unknown dataset {d}")
    nrows = {d: a.wide_rows if d == "wide" else a.rows for d in DATASETS}
    all_clients = [c for c in clients(a) if re.search(a.only, c.key)]
    usable, missing = [], []
    for c in all_clients:
        reason = c.check()
        if reason:
            missing.append((c, reason))
            print(f"bench: not measured: {c.key}: {reason}", file=sys.stderr)
        else:
            c.version_text = c.version() if c.version else ""
            usable.append(c)
    if not any(c.key == "raw_libpq" for c in usable):
        sys.exit("bench.py: the raw libpq client is the baseline and is not available")

    load_start = loadavg()
    failures = {}
    ref = {}
    # Correctness of clients that do not count their own rows, then warm-up,
    # which also gives raw libpq's counts every other client must match.
    for d in datasets:
        sql = DATASETS[d]
        for c in usable:
            if not c.counts and d in c.datasets:
                try:
                    n = count_lines(c, sql, a.timeout)
                    if n != nrows[d]:
                        failures[(c.key, d)] = f"printed {n} lines for {nrows[d]} rows"
                except RuntimeError as e:
                    failures[(c.key, d)] = str(e)
        raw = next(c for c in usable if c.key == "raw_libpq")
        ref[d] = run_timed(raw, sql, nrows[d], a.timeout)["out"]  # also warms the caches

    runs = {}
    for r in range(a.runs):
        for d in datasets:
            for c in usable:
                if d not in c.datasets or (c.key, d) in failures:
                    continue
                try:
                    m = run_timed(c, DATASETS[d], nrows[d], a.timeout, ref[d])
                except RuntimeError as e:
                    failures[(c.key, d)] = str(e)
                    print(f"bench: {c.key} {d} run {r + 1}: FAILED {e}", file=sys.stderr)
                    continue
                runs.setdefault((c.key, d), []).append(m)
                print(f"bench: {c.key:20} {d:6} run {r + 1}: {m['wall']:7.2f} s wall "
                      f"{m['cpu']:7.2f} s cpu {m['rss_mb']:8.1f} MB", file=sys.stderr)

    best = {}
    for key, ms in runs.items():
        if key in failures:
            continue
        best[key] = {
            "wall": min(m["wall"] for m in ms),
            "cpu": min(m["cpu"] for m in ms),
            "rss_mb": max(m["rss_mb"] for m in ms),
            "runs": len(ms),
            "types": ms[0]["out"].get("types", ""),
        }
        stalls = [float(m["out"]["stall_ms"]) for m in ms if "stall_ms" in m["out"]]
        if stalls:  # the asyncio clients' loop: worst and median of the runs
            best[key]["stall_ms"] = max(stalls)
            best[key]["stall_median_ms"] = statistics.median(stalls)

    lines = []
    lines.append(f"# pgspout benchmark ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})")
    lines.append("")
    lines.append(f"- machine: {machine()}")
    described = {
        "json": f"json = `{DATASETS['json']}`, {a.rows:,} rows (one jsonb column, ~400 bytes/row)",
        "typed": f"typed = `{DATASETS['typed']}`, {a.rows:,} rows ({', '.join(KINDS['typed'])}; "
                 "NULL numeric and text every 100th row)",
        "wide": f"wide = `{DATASETS['wide']}`, {a.wide_rows:,} rows (40 columns: "
                f"{', '.join(KINDS['wide'])} four times; each text column 10% NULL; "
                "~770 bytes/row)",
    }
    lines.append("- datasets: " + "; ".join(described[d] for d in datasets))
    lines.append(f"- each client a separate process under /usr/bin/time -v; best wall of "
                 f"{a.runs} interleaved runs, lowest CPU (user+sys) of those runs, highest peak RSS; "
                 "median CPU vs raw = median over the rounds of the client's CPU over raw "
                 "libpq's in the same round (steadier when the machine's speed drifts)")
    if a.header:
        lines.append(a.header)
    lines.append(f"- load average (1 min) at the start {load_start} and at the end {loadavg()} "
                 "(other work on the machine makes wall times noisy; CPU seconds are steadier)")
    lines.append("")
    lines.append("| client | version | dataset | rows/s | vs raw libpq | CPU s | CPU vs raw "
                 "| median CPU vs raw | peak RSS MB |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    results = []
    for d in datasets:
        base = best.get(("raw_libpq", d))
        for c in usable:
            if d not in c.datasets:
                continue
            b = best.get((c.key, d))
            if b is None:
                lines.append(f"| {c.label} | {c.version_text} | {d} | failed | | | | | |")
                continue
            rps = nrows[d] / b["wall"]
            ratio = rps / (nrows[d] / base["wall"]) if base else None
            cpu_ratio = b["cpu"] / base["cpu"] if base and base["cpu"] > 0 else None
            med_ratio = paired_cpu_ratio(runs.get((c.key, d)), runs.get(("raw_libpq", d)))
            lines.append(f"| {c.label} | {c.version_text} | {d} | {rps:,.0f} | {fmt_ratio(ratio)} "
                         f"| {b['cpu']:.2f} | {fmt_ratio(cpu_ratio)} | {fmt_ratio(med_ratio)} "
                         f"| {b['rss_mb']:.1f} |")
            results.append({"client": c.key, "label": c.label, "version": c.version_text,
                            "dataset": d, "rows": nrows[d], "rows_per_sec": rps,
                            "ratio_vs_raw": ratio, "cpu_s": b["cpu"], "cpu_ratio": cpu_ratio,
                            "cpu_median_ratio": med_ratio,
                            "peak_rss_mb": b["rss_mb"], "wall_s": b["wall"],
                            "types": b["types"], "stall_ms": b.get("stall_ms"),
                            "stall_median_ms": b.get("stall_median_ms")})
    lines.extend(ratio_lines(results))
    lines.extend(aio_lines(results))
    if a.baseline:
        lines.extend(baseline_lines(results, runs, read_baseline_rev(a.baseline)))
    lines.extend(type_lines(results))
    if failures:
        lines.append("")
        lines.append("Failed (no figure reported):")
        for (k, d), why in sorted(failures.items()):
            lines.append(f"- {k} on {d}: {why}")
    if missing:
        lines.append("")
        lines.append("Not measured in this run:")
        for c, why in missing:
            lines.append(f"- {c.label}: {why}")
    goals = goal_lines(results)
    if goals:
        lines.append("")
        lines.append("Goals from the issues:")
        lines.extend(goals)
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"rows": a.rows, "wide_rows": a.wide_rows, "runs": a.runs, "results": results,
                   "baseline": read_baseline_rev(a.baseline) if a.baseline else None,
                   "failures": {f"{k}/{d}": v for (k, d), v in failures.items()},
                   "missing": {c.key: why for c, why in missing}}, f, indent=1)
    print(text)
    return 1 if failures else 0


def paired_cpu_ratio(ms, raw):
    """Median of per-round CPU ratios (client / raw libpq), or None."""
    if not ms or not raw or len(ms) != len(raw):
        return None
    ratios = [m["cpu"] / r["cpu"] for m, r in zip(ms, raw) if r["cpu"] > 0]
    return statistics.median(ratios) if ratios else None


STREAMING_PY = ("psycopg2_named", "psycopg3_stream", "psycopg3_stream_size", "psycopg3_named",
                "asyncpg_cursor")
ALL_PY = STREAMING_PY + ("asyncpg_fetch",)
LUASQL = ("luasql_lua5.1", "luasql_luajit")


def fastest(by, keys, d):
    """The result with the most rows/s among keys on dataset d, or None."""
    got = [by[(k, d)] for k in keys if (k, d) in by]
    return max(got, key=lambda r: r["rows_per_sec"]) if got else None


def ratio_lines(results):
    """pgspout's clients against their fastest peer in the same run."""
    by = {(r["client"], r["dataset"]): r for r in results}
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    pairs = []  # (client key, peer keys, what the peers are)
    for key in ("pgspout_c", "pgspout_c_chunk", "pgspout_cli"):
        pairs.append((key, ("raw_libpq",), "raw libpq"))
    for key in ("pgspout_py", "pgspout_py_binary", "pgspout_py_json"):
        pairs.append((key, STREAMING_PY, "fastest streaming Python peer"))
        pairs.append((key, ALL_PY, "fastest Python peer"))
    pairs.append(("pgspout_luajit", ("luasql_luajit",), "luasql on LuaJIT"))
    pairs.append(("pgspout_luajit", LUASQL, "faster luasql"))
    pairs.append(("pgspout_lua5.1", ("luasql_lua5.1",), "luasql on Lua 5.1"))
    rows, seen = [], set()
    for d in datasets:
        for key, peers, what in pairs:
            r = by.get((key, d))
            top = fastest(by, peers, d)
            if r is None or top is None or (d, key, top["client"]) in seen:
                continue  # fastest streaming peer = fastest peer: one line
            seen.add((d, key, top["client"]))
            rows.append(f"| {d} | {r['label']} | {r['rows_per_sec']:,.0f} | {what}: {top['label']} "
                        f"| {top['rows_per_sec']:,.0f} "
                        f"| {r['rows_per_sec'] / top['rows_per_sec']:.2f}x "
                        f"| {fmt_ratio(r['cpu_s'] / top['cpu_s'] if top['cpu_s'] > 0 else None)} "
                        f"| {r['peak_rss_mb']:.1f} / {top['peak_rss_mb']:.1f} |")
    if not rows:
        return []
    return ["", "pgspout against its fastest peer in this run (rows/s and CPU: pgspout / peer):", "",
            "| dataset | client | rows/s | peer | peer rows/s | rows/s ratio | CPU ratio "
            "| peak RSS MB (client / peer) |",
            "|---|---|---:|---|---:|---:|---:|---:|"] + rows


AIO_PEERS = ("aio_asyncpg_cursor", "aio_asyncpg_cursor_uvloop", "aio_psycopg3_stream")


def aio_lines(results):
    """The asyncio clients: rows/s, CPU, peak RSS and the loop's max stall."""
    rows = []
    for r in results:
        if r.get("stall_ms") is None:
            continue
        rows.append(f"| {r['dataset']} | {r['label']} | {r['rows_per_sec']:,.0f} | {r['cpu_s']:.2f} "
                    f"| {r['peak_rss_mb']:.1f} | {r['stall_ms']:.1f} | {r['stall_median_ms']:.1f} |")
    if not rows:
        return []
    return ["", "asyncio clients, each with a 1 ms ticker task beside the stream (the loop's max "
            "stall: the longest gap between two ticks, worst and median of the runs; asyncio "
            "runs a due timer's task two loop iterations later, so a gap spans about three "
            "steps of the streaming task):", "",
            "| dataset | client | rows/s | CPU s | peak RSS MB | max stall ms (worst) "
            "| max stall ms (median) |",
            "|---|---|---:|---:|---:|---:|---:|"] + rows


def baseline_lines(results, runs, rev):
    """The baseline's clients (before) against this tree's (after)."""
    by = {(r["client"], r["dataset"]): r for r in results}
    pairs = [("pgspout_py", "Python tuples", ALL_PY), ("pgspout_py_json", "Python rows=\"json\"", ALL_PY),
             ("pgspout_luajit", "LuaJIT", LUASQL),
             ("pgspout_lua5.1", "Lua 5.1", ("luasql_lua5.1",)), ("pgspout_cli", "CLI", ("raw_libpq",))]
    rows = []
    for d in dict.fromkeys(r["dataset"] for r in results):
        for key, what, peers in pairs:
            before, after = by.get((key + "@base", d)), by.get((key, d))
            if before is None or after is None:
                continue
            top = fastest(by, peers, d)
            vs = [fmt_ratio(x["rows_per_sec"] / top["rows_per_sec"] if top else None)
                  for x in (before, after)]
            med = paired_cpu_ratio(runs.get((key, d)), runs.get((key + "@base", d)))
            rows.append(f"| {d} | {what} | {before['rows_per_sec']:,.0f} | {after['rows_per_sec']:,.0f} "
                        f"| {after['rows_per_sec'] / before['rows_per_sec']:.2f}x "
                        f"| {before['cpu_s']:.2f} | {after['cpu_s']:.2f} "
                        f"| {fmt_ratio(after['cpu_s'] / before['cpu_s'] if before['cpu_s'] > 0 else None)} "
                        f"| {fmt_ratio(med)} | {top['label'] if top else '-'} | {vs[0]} | {vs[1]} |")
    if not rows:
        return []
    return ["", f"before (baseline {rev}) vs after (this tree), measured interleaved in this run "
            "(median CPU after/before: median over the rounds):", "",
            "| dataset | client | rows/s before | rows/s after | after/before | CPU s before "
            "| CPU s after | CPU after/before | median CPU after/before | fastest peer "
            "| before vs peer | after vs peer |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"] + rows


def type_lines(results):
    """What each Python and Lua client received, per column type."""
    out = []
    for d in dict.fromkeys(r["dataset"] for r in results):
        kinds = KINDS[d]
        rows = [r for r in results if r["dataset"] == d and r.get("types")]
        if not rows:
            continue
        out += ["", f"Value types on {d} (first non-NULL value of each column in the first 10 rows"
                + (f"; columns 1-{len(kinds)} of {4 * len(kinds)}" if d == "wide" else "") + "):", "",
                "| client | " + " | ".join(kinds) + " |",
                "|---|" + "---|" * len(kinds)]
        for r in rows:
            t = r["types"].split(",")
            if len(t) == 1 and len(kinds) > 1:  # one JSON text per row
                t = [f"{t[0]} (the row as JSON text)"] + [""] * (len(kinds) - 1)
            out.append(f"| {r['label']} | " + " | ".join(t[:len(kinds)]) + " |")
    return out


def goal_lines(results):
    by = {(r["client"], r["dataset"]): r for r in results}
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    out = []

    def check(desc, ok):
        out.append(f"- [{'x' if ok else ' '}] {desc}")

    for key in ("pgspout_cli", "pgspout_c"):
        for d in ("json", "typed"):
            r = by.get((key, d))
            if r and r["ratio_vs_raw"] is not None:
                check(f"{r['label']} on {d}: rows/s {r['ratio_vs_raw']:.2f}x raw (goal >= 0.95x), "
                      f"CPU {fmt_ratio(r['cpu_ratio'])} (median {fmt_ratio(r['cpu_median_ratio'])}; "
                      f"goal <= 1.2x), peak RSS {r['peak_rss_mb']:.1f} MB (goal < 16 MB)",
                      r["ratio_vs_raw"] >= 0.95 and (r["cpu_ratio"] or 0) <= 1.2
                      and r["peak_rss_mb"] < 16)
    for d in datasets:
        r = by.get(("pgspout_py", d))
        top = fastest(by, STREAMING_PY, d)
        if r and top:
            ratio = r["rows_per_sec"] / top["rows_per_sec"]
            check(f"pgspout Python tuples on {d}: {ratio:.2f}x the fastest streaming Python peer "
                  f"({top['label']}) (issue 11 goal >= 1.5x), peak RSS {r['peak_rss_mb']:.1f} MB vs "
                  f"{top['peak_rss_mb']:.1f} MB", ratio >= 1.5 and r["peak_rss_mb"] <= top["peak_rss_mb"])
    for key in ("pgspout_py", "pgspout_py_binary"):
        r = by.get((key, "typed"))
        if r and r["ratio_vs_raw"] is not None:
            check(f"{r['label']} on typed: {r['ratio_vs_raw']:.2f}x raw libpq (issue 12 goal >= 0.8x)",
                  r["ratio_vs_raw"] >= 0.8)
    for d in datasets:
        r = by.get(("aio_pgspout", d))
        top = fastest(by, AIO_PEERS, d)
        sync = by.get(("pgspout_py", d))
        if r and top:
            ratio = r["rows_per_sec"] / top["rows_per_sec"]
            desc = (f"pgspout.aio async for on {d}: {ratio:.2f}x the faster async peer "
                    f"({top['label']})")
            ok = True
            if d == "typed":
                desc += " (issue 13 goal >= 1.25x)"
                ok = ratio >= 1.25
            desc += f"; loop max stall {r['stall_ms']:.1f} ms vs {top['stall_ms']:.1f} ms"
            if sync:
                s_ratio = r["rows_per_sec"] / sync["rows_per_sec"]
                desc += (f"; {s_ratio:.2f}x the sync iterator's rows/s, CPU "
                         f"{r['cpu_s'] / sync['cpu_s']:.2f}x (goal: within 10%)")
                ok = ok and s_ratio >= 0.9
            check(desc, ok)
    r = by.get(("pgspout_py_json", "json"))
    if r and r["ratio_vs_raw"] is not None:
        check(f"pgspout Python rows=\"json\" on json: {r['ratio_vs_raw']:.2f}x raw libpq (goal >= 0.9x)",
              r["ratio_vs_raw"] >= 0.9)
    for d in datasets:
        r = by.get(("pgspout_luajit", d))
        top = fastest(by, LUASQL, d)
        if r and top:
            ratio = r["rows_per_sec"] / top["rows_per_sec"]
            desc = (f"pgspout Lua (LuaJIT) on {d}: {ratio:.2f}x the faster luasql "
                    f"({top['label']}) (issue 11 goal >= 1.2x)")
            ok = ratio >= 1.2
            if d == "json":
                share = r["peak_rss_mb"] / top["peak_rss_mb"]
                desc += f", peak RSS {100 * share:.1f}% of luasql's (goal < 5%)"
                ok = ok and share < 0.05
            check(desc, ok)
    return out


if __name__ == "__main__":
    sys.exit(main())
