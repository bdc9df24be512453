"""driver.py - the Python driver of the conformance suite (README.md).

    python driver.py CASES-FILE [CASE...]        (server: $PGSPOUT_TEST_DSN)

Runs every case through the public Python API (``import pgspout``) and prints
one normalized line per case, as the C driver does. Values come back as
Python objects (int, float, Decimal, datetime, UUID, bytes, parsed JSON,
lists); each is rendered back into the server's text form, so that a value
the mapping kept exactly gives the checksum the C driver computes from the
text itself. A value of a Python type other than the one the binding
documents for its column renders as "?type:repr", which no server text
matches.

A case with "partitions N" reads a table in partitions (pgspout.partitions)
in one snapshot this driver exports: see Run.run_partitions. With
--write-plans DIR it only writes the plans of the cases whose "plan-from" is
python, as DIR/<case>.json, for the other drivers to read.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import json

import re

import pgspout
import pgspout.partitions as parts

# ------------------------------------------------------------------ cases


def load_cases(path: str) -> List[Dict[str, Any]]:
    cases: List[Dict[str, Any]] = []
    c: Optional[Dict[str, Any]] = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            key, _, val = line.partition(" ")
            if key == "case":
                c = {"name": val, "sql": "", "params": [], "opts": [], "do": "read-all",
                     "na": set(), "setup": [], "partitions": 0, "columns": [], "bounds": [],
                     "table": None, "key": None, "where": None, "plan-from": None}
                cases.append(c)
                continue
            if c is None:
                sys.exit("%s:%d: '%s' before the first 'case'" % (path, lineno, key))
            if key == "sql":
                c["sql"] = val
            elif key == "param":
                c["params"].append(val)
            elif key == "null":
                c["params"].append(None)
            elif key == "opt":
                k, eq, v = val.partition("=")
                if not eq:
                    sys.exit("%s:%d: opt wants KEY=VALUE" % (path, lineno))
                c["opts"].append((k, v))
            elif key == "do":
                c["do"] = val
            elif key == "na":
                c["na"].add(val.split(" ", 1)[0])
            elif key == "setup":
                c["setup"].append(val)
            elif key == "partitions":
                c["partitions"] = int(val)
            elif key in ("column", "bound"):
                c[key + "s"].append(val)
            elif key in ("table", "key", "where", "plan-from"):
                c[key] = val
            elif key != "expect":
                sys.exit("%s:%d: unknown key '%s'" % (path, lineno, key))
    return cases


# -------------------------------------------------------------- rendering
# Every value back to the text PostgreSQL sends for it (DateStyle ISO,
# IntervalStyle postgres, extra_float_digits 3).

KINDS = {
    16: "bool", 17: "bytea", 18: "text", 19: "text", 20: "int", 21: "int", 23: "int",
    25: "text", 26: "int", 114: "json", 700: "float4", 701: "float8", 1042: "text",
    1043: "text", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
    1186: "interval", 1266: "timetz", 1700: "numeric", 2950: "uuid", 3802: "json",
}
ARRAYS = {
    1000: "bool", 1001: "bytea", 1002: "text", 1003: "text", 1005: "int", 1007: "int",
    1009: "text", 1014: "text", 1015: "text", 1016: "int", 1021: "float4", 1022: "float8",
    1028: "int", 1182: "date", 1183: "time", 1115: "timestamp", 1185: "timestamptz",
    1187: "interval", 1231: "numeric", 1270: "timetz", 2951: "uuid", 199: "json", 3807: "json",
}


def wrong(v: Any) -> str:
    return "?%s:%r" % (type(v).__name__, v)


def pg_float(v: float, fixed_below: int) -> str:
    """A double as float4out/float8out print it: the shortest digits that
    read back exactly, positional for exponents in [-4, fixed_below)."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    r = repr(v)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    allds = ip + fp
    lead = len(allds) - len(allds.lstrip("0"))
    digits = allds.strip("0")
    e10 = len(ip) - lead - 1 + (int(exp) if exp else 0)
    return sign + pg_digits(digits, e10, fixed_below)


def pg_digits(digits: str, e10: int, fixed_below: int) -> str:
    if -4 <= e10 < fixed_below:
        if e10 < 0:
            return "0." + "0" * (-e10 - 1) + digits
        if len(digits) <= e10 + 1:
            return digits + "0" * (e10 + 1 - len(digits))
        return digits[:e10 + 1] + "." + digits[e10 + 1:]
    m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return "%se%s%02d" % (m, "+" if e10 >= 0 else "-", abs(e10))


def pg_frac(us: int) -> str:
    return ("." + ("%06d" % us).rstrip("0")) if us else ""


def pg_offset(off: Optional[dt.timedelta]) -> str:
    if off is None:
        return "?naive"
    s = int(off.total_seconds())
    sign = "+" if s >= 0 else "-"
    h, rest = divmod(abs(s), 3600)
    m, sec = divmod(rest, 60)
    out = "%s%02d" % (sign, h)
    if m or sec:
        out += ":%02d" % m
    if sec:
        out += ":%02d" % sec
    return out


def pg_time(t: Any) -> str:
    return "%02d:%02d:%02d%s" % (t.hour, t.minute, t.second, pg_frac(t.microsecond))


def pg_interval(td: dt.timedelta) -> str:
    total = td // dt.timedelta(microseconds=1)
    neg = total < 0
    days, rest = divmod(abs(total), 86400 * 10**6)
    parts = []
    if days:
        parts.append("%s%d day%s" % ("-" if neg else "", days, "" if days == 1 and not neg else "s"))
    if rest or not days:
        secs, us = divmod(rest, 10**6)
        h, secs = divmod(secs, 3600)
        m, secs = divmod(secs, 60)
        parts.append("%s%02d:%02d:%02d%s" % ("-" if neg and rest else "", h, m, secs, pg_frac(us)))
    return " ".join(parts)


def scalar(v: Any, kind: str) -> str:
    t = type(v)
    if kind == "text":
        return v if t is str else wrong(v)
    if kind == "int":
        return str(v) if t is int else wrong(v)
    if kind == "bool":
        return ("t" if v else "f") if t is bool else wrong(v)
    if kind in ("float4", "float8"):
        return pg_float(v, 6 if kind == "float4" else 15) if t is float else wrong(v)
    if kind == "numeric":
        if t is not decimal.Decimal:
            return wrong(v)
        return format(v, "f") if v.is_finite() else str(v)
    if kind == "bytea":
        return "\\x" + v.hex() if t is bytes else wrong(v)
    if kind == "uuid":
        return str(v) if t is uuid.UUID else wrong(v)
    if kind == "json":
        return json.dumps(v, ensure_ascii=False)
    # date/time kinds: the server's text when Python cannot hold the value
    if t is str:
        return v
    if kind == "date":
        return v.isoformat() if t is dt.date else wrong(v)
    if kind == "time":
        return pg_time(v) if t is dt.time and v.tzinfo is None else wrong(v)
    if kind == "timetz":
        return pg_time(v) + pg_offset(v.utcoffset()) if t is dt.time and v.tzinfo else wrong(v)
    if kind == "timestamp":
        if t is not dt.datetime or v.tzinfo is not None:
            return wrong(v)
        return v.date().isoformat() + " " + pg_time(v)
    if kind == "timestamptz":
        if t is not dt.datetime or v.tzinfo is None:
            return wrong(v)
        return v.date().isoformat() + " " + pg_time(v) + pg_offset(v.utcoffset())
    if kind == "interval":
        return pg_interval(v) if t is dt.timedelta else wrong(v)
    return wrong(v)


ARRAY_SPECIAL = set('{},"\\ \t\n\r\v\f')


def array(v: Any, kind: str, top: bool = True) -> str:
    if v is None:
        return "NULL"
    # lists are dimensions, except inside a json[]: there only the outer
    # list is (a JSON array element is a list too)
    if isinstance(v, list) and (top or kind != "json"):
        return "{" + ",".join(array(x, kind, False) for x in v) + "}"
    s = scalar(v, kind)
    if s == "" or s.upper() == "NULL" or any(ch in ARRAY_SPECIAL for ch in s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def render(v: Any, oid: int) -> str:
    if v is None:
        return "\\N"
    if oid in ARRAYS:
        s = array(v, ARRAYS[oid]) if isinstance(v, list) else wrong(v)
    else:
        s = scalar(v, KINDS.get(oid, "text"))
    return escape(s)


def escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# ------------------------------------------------------------------ a run


def code_of(e: BaseException) -> Tuple[str, str, str]:
    """(code name, SQLSTATE or "-", message) of an exception."""
    if isinstance(e, pgspout.Error):
        return e.code_name or "?", e.sqlstate or "-", str(e)
    return "py:" + type(e).__name__, "-", str(e)


def call(fn: Callable[[], Any]) -> str:
    try:
        fn()
        return "ok"
    except Exception as e:  # noqa: BLE001 - every failure is an outcome here
        return code_of(e)[0]


def attempt(fn: Callable[[], Any]) -> str:
    """str(fn()), or "?code" when it raises."""
    try:
        return str(fn())
    except Exception as e:  # noqa: BLE001
        return "?" + code_of(e)[0]


def rows_metric(label: str) -> int:
    key = 'pgspout_rows_total{label="%s"} ' % label
    for line in pgspout.metrics_text().splitlines():
        if line.startswith(key):
            return int(float(line[len(key):]))
    return 0


def fmt_stat(v: Any, exact: bool) -> str:
    if v is None:
        return "none"
    if v < 0:
        return "%g" % v
    return "%.2f" % v if exact else "set"


def setup(conn: pgspout.Connection, case: Dict[str, Any]) -> None:
    for sql in case["setup"]:
        list(conn.stream(sql))


def case_plan(conn: pgspout.Connection, case: Dict[str, Any],
              snapshot: Optional[parts.Snapshot]) -> parts.Plan:
    """The case's plan: made from its spec (importing snapshot), or, in a
    reading run, the one plan-from's driver wrote."""
    if case["plan-from"] and snapshot is not None:
        path = os.path.join(os.environ["PGSPOUT_CONF_PLANS"], case["name"] + ".json")
        with open(path, encoding="utf-8") as f:
            p = parts.Plan.from_json(f.read())
        p.snapshot = snapshot.id
        return p
    return parts.plan(conn, case["table"], npartitions=case["partitions"],
                      columns=case["columns"] or None, where=case["where"],
                      params=case["params"], key=case["key"],
                      bounds=case["bounds"] or None, snapshot=snapshot)


def write_plan(dsn: str, plans: str, case: Dict[str, Any]) -> None:
    """--write-plans: the plan of a case whose plan-from is python, made
    without a snapshot (each reader imports its own)."""
    if case["plan-from"] != "python":
        return
    with pgspout.connect(dsn) as conn:
        setup(conn, case)
        text = case_plan(conn, case, None).json()
    with open(os.path.join(plans, case["name"] + ".json"), "w", encoding="utf-8") as f:
        f.write(text)


class Run:
    def __init__(self, case: Dict[str, Any], dsn: str) -> None:
        self.case = case
        self.dsn = dsn
        self.conn = pgspout.connect(dsn)
        setup(self.conn, case)
        self.s: Optional[pgspout.Stream] = None
        self.cols: List[Any] = []
        self.mode = "tuple"
        self.rows = 0
        self.md5 = hashlib.md5()
        self.end, self.sqlstate, self.msg = "-", "-", "-"
        self.ev: List[str] = []
        self.later: List[Tuple[threading.Thread, int, List[str]]] = []

    def set_end(self, code: str, sqlstate: str = "-", msg: str = "-") -> None:
        self.end, self.sqlstate, self.msg = code, sqlstate or "-", msg or "-"

    def add_row(self, row: Any) -> None:
        if self.mode == "json":
            line = escape(row) if isinstance(row, str) else escape(wrong(row))
        elif self.mode == "dict":
            if not isinstance(row, dict):
                line = escape(wrong(row))
            else:
                line = "\t".join(escape(c.name) + "=" + render(row.get(c.name, "?missing"),
                                                               c.type_oid)
                                 for c in self.cols)
        else:
            if not isinstance(row, tuple):
                line = escape(wrong(row))
            else:
                line = "\t".join(render(v, c.type_oid) for v, c in zip(row, self.cols))
        self.md5.update((line + "\n").encode("utf-8", "surrogateescape"))
        self.rows += 1

    def read_one(self) -> Optional[str]:
        """None with a row, else the code that ended the read."""
        assert self.s is not None
        try:
            row = next(self.s)
        except StopIteration:
            self.set_end("done")
            return "done"
        except Exception as e:  # noqa: BLE001
            code, sqlstate, msg = code_of(e)
            self.set_end(code, sqlstate, msg)
            return code
        self.add_row(row)
        return None

    def reuse(self) -> None:
        if self.conn.closed:
            self.ev.append("reuse=-")
            return
        try:
            with self.conn.stream("SELECT 42") as s2:
                got = list(s2)
            self.ev.append("reuse=" + ("ok" if got == [(42,)] else "bad"))
        except Exception as e:  # noqa: BLE001
            self.ev.append("reuse=" + code_of(e)[0])

    def stats(self) -> None:
        assert self.s is not None
        st = self.s.stats
        self.ev.append("stats=%s/%s/%s/%s/%s/%s/%s" % (
            st["state"], st["rows_delivered"], st["pauses"], st["expected_rows"],
            fmt_stat(st["progress"], True), fmt_stat(st["eta"], False),
            fmt_stat(st["time_to_first_row"], False)))

    def join_later(self) -> None:
        for t, _, _ in self.later:
            t.join()
        for _, i, box in self.later:
            self.ev[i] += "=" + box[0]
        self.later = []

    def action(self, verb: str, arg: Optional[str]) -> None:
        s = self.s
        if s is None and verb not in ("reuse", "conn-close", "conn-cancel", "conn-cancel-thread",
                                      "metrics"):
            self.ev.append(verb + "=-")
            return
        if verb in ("read", "read-all"):
            want = -1 if verb == "read-all" else int(arg or 1)
            got, code = 0, None
            while want < 0 or got < want:
                code = self.read_one()
                if code is not None:
                    break
                got += 1
            if verb == "read-all":
                self.ev.append("all=%d:%s" % (got, code))
            elif got == want:
                self.ev.append("read=%d" % got)
            else:
                self.ev.append("read=%d:%s" % (got, code))
        elif verb in ("pause", "resume", "cancel"):
            self.ev.append("%s=%s" % (verb, call(getattr(s, verb))))
        elif verb in ("pause-thread", "resume-thread", "cancel-thread", "conn-cancel-thread"):
            fn = self.conn.cancel if verb == "conn-cancel-thread" else getattr(
                s, verb.split("-")[0])
            box = ["?"]
            t = threading.Thread(target=lambda: box.__setitem__(0, call(fn)))
            t.start()
            t.join()
            self.ev.append("%s=%s" % (verb, box[0]))
        elif verb in ("resume-later", "cancel-later"):
            fn = getattr(s, verb.split("-")[0])
            delay = int(arg or 0) / 1000.0
            box = ["?"]

            def later() -> None:
                time.sleep(delay)
                box[0] = call(fn)

            t = threading.Thread(target=later)
            t.start()
            self.later.append((t, len(self.ev), box))
            self.ev.append(verb)
        elif verb == "close":
            self.join_later()
            s.close()
            self.ev.append("close")
        elif verb == "conn-close":
            self.join_later()
            self.conn.close()
            self.ev.append("conn-close")
        elif verb == "conn-cancel":
            self.ev.append("conn-cancel=" + call(self.conn.cancel))
        elif verb == "reuse":
            self.reuse()
        elif verb == "stats":
            self.stats()
        elif verb == "state":
            self.ev.append("state=" + s.state)
        elif verb == "elapsed-min":
            self.ev.append("elapsed>=%s=%s" % (
                arg, "yes" if s.stats["elapsed"] >= float(arg or 0) else "no"))
        elif verb == "metrics":
            pass
        else:
            sys.exit("%s: unknown action '%s'" % (self.case["name"], verb))

    def run_partitions(self, opts: Dict[str, Any]) -> Tuple[str, str]:
        """A partition case (as driver.c's run_partitions): export a
        snapshot, plan (or read plan-from's plan), ship the plan through
        JSON, read its partitions in order on the case's connection as one
        read. ev: plan=MD5 (the plan's JSON with its snapshot blanked) or
        plan=CODE, then all=K:CODE. Returns state and delivered."""
        case = self.case
        state, delivered = "-", 0
        with parts.Snapshot(self.dsn) as snap:
            try:
                made = case_plan(self.conn, case, snap)
            except pgspout.Error as e:
                code, _, msg = code_of(e)
                # no SQLSTATE for a plan: the one its message quotes
                m = re.search(r"\(SQLSTATE (\w{5})\)", msg)
                self.set_end(code, m.group(1) if m else "-", msg)
                self.ev.append("plan=" + code)
                made = None
            plan = None
            if made is not None:
                plan = parts.Plan.from_json(made.json())  # shipped: what a worker reads
                assert plan.snapshot == snap.id, "the plan's JSON lost its snapshot"
                plan.snapshot = ""
                self.ev.append("plan=" + hashlib.md5(plan.json().encode("utf-8")).hexdigest())
                plan.snapshot = snap.id
            for a in case["do"].split(";"):
                a = a.strip()
                if not a:
                    continue
                if a != "read-all":
                    sys.exit("%s: a partition case runs read-all only, not '%s'" % (case["name"], a))
                if plan is None:
                    self.ev.append("read-all=-")
                    continue
                got, code = 0, "done"
                for i in range(len(plan)):
                    if self.s is not None:
                        self.s.close()
                        self.s = None
                    try:
                        self.s = plan.open(self.conn, i, **opts)
                    except Exception as e:  # noqa: BLE001
                        code, sqlstate, msg = code_of(e)
                        self.set_end(code, sqlstate, msg)
                        break
                    self.cols = self.s.columns
                    while True:
                        c = self.read_one()
                        if c is not None:
                            code = c
                            break
                        got += 1
                    delivered += self.s.stats["rows_delivered"]
                    state = self.s.state
                    if code != "done":
                        break
                self.ev.append("all=%d:%s" % (got, code))
        return state, (str(delivered) if state != "-" else "-")

    def run(self) -> str:
        case = self.case
        opts = dict(case["opts"])
        if case["partitions"]:
            state, delivered = self.run_partitions(opts)
            if self.s is not None:
                self.s.close()
            self.conn.close()
            return self.line(state, delivered, "-")
        self.mode = opts.get("rows", "tuple")
        label = opts.get("label")
        metrics = any(a.strip().split(" ")[0] == "metrics" for a in case["do"].split(";"))
        if metrics and label is None:
            sys.exit("%s: the metrics action needs a label option" % case["name"])
        before = rows_metric(label) if metrics else 0
        try:
            self.s = self.conn.stream(case["sql"], case["params"], **opts)
            self.cols = self.s.columns
            self.ev.append("open=ok")
        except Exception as e:  # noqa: BLE001
            code, sqlstate, msg = code_of(e)
            self.set_end(code, sqlstate, msg)
            self.ev.append("open=" + code)
        for a in case["do"].split(";"):
            a = a.strip()
            if a:
                verb, _, arg = a.partition(" ")
                try:
                    self.action(verb, arg or None)
                except Exception as e:  # noqa: BLE001 - a call the API lacks or refuses
                    self.ev.append("%s=%s" % (verb, code_of(e)[0]))
        self.join_later()
        state = delivered = "-"
        if self.s is not None:
            s = self.s
            state = attempt(lambda: s.state)
            delivered = attempt(lambda: s.stats["rows_delivered"])
            s.close()
        self.conn.close()
        metric = str(rows_metric(label) - before) if metrics and label else "-"
        return self.line(state, delivered, metric)

    def line(self, state: str, delivered: str, metric: str) -> str:
        msg = self.msg.replace("\r", "").replace("\n", "\\n").replace("\t", "\\t")
        return "%s rows=%d sum=%s end=%s sqlstate=%s state=%s delivered=%s metric=%s ev=%s msg=%s" % (
            self.case["name"], self.rows, self.md5.hexdigest(), self.end, self.sqlstate, state,
            delivered, metric, ",".join(self.ev), msg)


def main() -> None:
    argv = sys.argv[1:]
    plans = None
    if len(argv) > 1 and argv[0] == "--write-plans":
        plans, argv = argv[1], argv[2:]
    if not argv:
        sys.exit("usage: driver.py [--write-plans DIR] CASES-FILE [CASE...]")
    dsn = os.environ.get("PGSPOUT_TEST_DSN")
    if dsn is None:
        sys.exit("PGSPOUT_TEST_DSN is not set")
    cases = load_cases(argv[0])
    names = {c["name"] for c in cases}
    for n in argv[1:]:
        if n not in names:
            sys.exit("no case named '%s'" % n)
    for case in cases:
        if argv[1:] and case["name"] not in argv[1:]:
            continue
        if plans is not None:
            write_plan(dsn, plans, case)
            continue
        if "python" in case["na"]:
            print("%s na" % case["name"], flush=True)
            continue
        print(Run(case, dsn).run(), flush=True)


if __name__ == "__main__":
    main()
