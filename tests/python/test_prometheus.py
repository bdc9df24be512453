"""pgspout.prometheus: a prometheus_client collector that exposes exactly the
series of pgspout.metrics_text(): the same HELP and TYPE lines, the same
samples (names, labels, values), through CollectorRegistry/generate_latest,
also while streams run in other threads. tests/python/run.sh installs
prometheus_client and sets PGSPOUT_REQUIRE_PROMETHEUS=1, so these run in CI;
elsewhere they skip when prometheus_client is missing."""
import math
import os
import subprocess
import sys
import threading

import pytest

import pgspout

if os.environ.get("PGSPOUT_REQUIRE_PROMETHEUS") == "1":
    import prometheus_client  # noqa: E402  (must be importable here)
else:
    prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import pgspout.prometheus  # noqa: E402


def samples(text):
    """[(sample name, sorted labels, value)] in exposition order."""
    return [(s.name, tuple(sorted(s.labels.items())), float(s.value))
            for f in text_string_to_metric_families(text) for s in f.samples]


def headers(text):
    """The # HELP and # TYPE lines, in order."""
    return [line for line in text.splitlines() if line.startswith(("# HELP ", "# TYPE "))]


def fresh_registry():
    registry = CollectorRegistry()
    collector = pgspout.prometheus.register(registry)
    assert isinstance(collector, pgspout.prometheus.PgspoutCollector)
    return registry


def stream_rows(dsn, label, n):
    with pgspout.connect(dsn) as c:
        total = sum(r[0] for r in c.stream("SELECT g FROM generate_series(1, $1::int) g",
                                           [n], label=label, chunk_rows=100))
    assert total == n * (n + 1) // 2


def test_same_series_as_metrics_text(dsn):
    stream_rows(dsn, "prom_same", 2500)
    stream_rows(dsn, "prom_same", 500)
    with pgspout.connect(dsn) as c, pytest.raises(pgspout.SQLError):
        list(c.stream("SELECT 1 / (g - 3) FROM generate_series(1, 5) g", label="prom_same"))
    registry = fresh_registry()

    # nothing streams now: three reads in a row see the same counters
    before = pgspout.metrics_text()
    exposed = generate_latest(registry).decode("utf-8")
    after = pgspout.metrics_text()
    assert samples(before) == samples(after), "metrics moved with no stream running"

    # every family, HELP text and TYPE, in the core's order
    assert headers(exposed) == headers(before)
    # every sample: name, labels (histogram le included), value
    assert samples(exposed) == samples(before)
    assert len(samples(exposed)) > 100

    got = dict(((n, lab), v) for n, lab, v in samples(exposed))
    lab = (("label", "prom_same"),)
    assert got[("pgspout_rows_total", lab)] >= 3000
    assert got[("pgspout_streams_failed_total", lab)] >= 1
    assert got[("pgspout_errors_total", (("sqlstate_class", "22"),))] >= 1
    # a histogram as the core wrote it: cumulative buckets, +Inf == _count
    buckets = [(s[1], s[2]) for s in samples(exposed)
               if s[0] == "pgspout_chunk_rows_bucket" and ("label", "prom_same") in s[1]]
    les = [dict(b)["le"] for b, _ in buckets]
    assert les == ["1", "10", "100", "500", "1000", "5000", "10000", "50000", "100000", "+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] > 0
    assert counts[-1] == got[("pgspout_chunk_rows_count", lab)]
    assert got[("pgspout_chunk_rows_sum", lab)] >= 3000

    types = {f.name: f.type for f in text_string_to_metric_families(exposed)}
    assert types["pgspout_rows"] == "counter"  # the parser names a counter without _total
    assert types["pgspout_active_streams"] == "gauge"
    assert types["pgspout_stream_duration_seconds"] == "histogram"


def test_values_follow_the_core(dsn):
    registry = fresh_registry()

    def rows_total():
        for name, labels, value in samples(generate_latest(registry).decode()):
            if name == "pgspout_rows_total" and labels == (("label", "prom_follow"),):
                return value
        return 0.0

    first = rows_total()
    stream_rows(dsn, "prom_follow", 1234)
    assert rows_total() == first + 1234


def test_openmetrics_exposition(dsn):
    stream_rows(dsn, "prom_om", 10)
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

    text = om_latest(fresh_registry()).decode("utf-8")
    assert text.endswith("# EOF\n")
    names = {s.name for f in om_parse(text) for s in f.samples}
    assert "pgspout_rows_total" in names and "pgspout_buffer_bytes_bucket" in names


def test_register_default_registry_once():
    collector = pgspout.prometheus.register()
    try:
        text = generate_latest().decode("utf-8")
        assert "# TYPE pgspout_rows_total counter" in text
        with pytest.raises(ValueError):
            pgspout.prometheus.register()  # duplicated timeseries
    finally:
        prometheus_client.REGISTRY.unregister(collector)
    assert "pgspout_rows_total" not in generate_latest().decode("utf-8")


def check_scrape(text):
    """What holds for any one scrape, even mid-stream: every histogram is
    cumulative and its +Inf bucket equals _count."""
    fams = list(text_string_to_metric_families(text))
    assert fams, "empty scrape"
    for f in fams:
        if f.type != "histogram":
            continue
        series = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"bucket": [], "count": None})
            if s.name.endswith("_bucket"):
                series[key]["bucket"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
        for key, h in series.items():
            values = [v for _, v in h["bucket"]]
            assert values == sorted(values), (f.name, key)
            assert h["bucket"][-1][0] == math.inf and h["bucket"][-1][1] == h["count"], (f.name, key)
    return fams


def test_collect_concurrently_with_streams(dsn):
    registry = fresh_registry()
    n_threads, n_streams, n_rows = 4, 8, 3000
    errors = []
    done = threading.Event()

    def worker(i):
        try:
            for _ in range(n_streams):
                stream_rows(dsn, "prom_conc", n_rows)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def rows_of(fams):
        for f in fams:
            for s in f.samples:
                if s.name == "pgspout_rows_total" and s.labels == {"label": "prom_conc"}:
                    return s.value
        return 0.0

    def scraper(seen):
        try:
            while not done.is_set():
                seen.append(rows_of(check_scrape(generate_latest(registry).decode("utf-8"))))
        except BaseException as e:
            errors.append(e)

    start = rows_of(check_scrape(generate_latest(registry).decode("utf-8")))
    seen_a, seen_b = [], []
    scrapers = [threading.Thread(target=scraper, args=(s,)) for s in (seen_a, seen_b)]
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in scrapers + workers:
        t.start()
    for t in workers:
        t.join(120)
    done.set()
    for t in scrapers:
        t.join(60)
    assert not any(t.is_alive() for t in scrapers + workers), "a thread hung"
    assert not errors, errors
    # each scraper's view of a counter never goes back, and all of it arrives
    for seen in (seen_a, seen_b):
        assert seen, "no scrape completed"
        assert seen == sorted(seen)
        assert seen[0] >= start and seen[-1] <= start + n_threads * n_streams * n_rows
    end = rows_of(check_scrape(generate_latest(registry).decode("utf-8")))
    assert end == start + n_threads * n_streams * n_rows
    assert samples(generate_latest(registry).decode("utf-8")) == samples(pgspout.metrics_text())


def test_clear_import_error_without_prometheus_client():
    code = ("import sys\n"
            "sys.modules['prometheus_client'] = None\n"  # as if not installed
            "try:\n"
            "    import pgspout.prometheus\n"
            "except ImportError as e:\n"
            "    print(e)\n"
            "else:\n"
            "    print('imported')\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert "pip install 'pgspout[prometheus]'" in out, out
    # pgspout itself never needs it
    code = "import sys; sys.modules['prometheus_client'] = None; import pgspout; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "ok"
