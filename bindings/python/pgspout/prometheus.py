"""pgspout's process-wide metrics as a prometheus_client collector.

    from prometheus_client import start_http_server
    import pgspout.prometheus

    pgspout.prometheus.register()          # into prometheus_client.REGISTRY
    start_http_server(9187)

or, with a registry of your own:

    registry = prometheus_client.CollectorRegistry()
    pgspout.prometheus.register(registry)

The collector exposes exactly the series of pgspout.metrics_text() (the C
core's exposition, pgspout_metrics_prometheus): the same names, types, HELP
texts, labels and histogram buckets, _sum and _count. Each scrape reads the
core's counters once and parses that text with prometheus_client's own
parser, so nothing is kept or converted here and a series the core adds
appears without a change to this module. The core's counters are atomics
read without a lock: collecting from any thread while streams run in others
is safe.

prometheus_client is an optional dependency: pip install "pgspout[prometheus]".
"""
from typing import Iterator, Optional

_HINT = "pip install 'pgspout[prometheus]' (or pip install 'prometheus_client>=0.14')"
try:
    import prometheus_client  # noqa: F401
except ImportError as _e:
    raise ImportError("pgspout.prometheus needs the prometheus_client package, which is not "
                      "installed: " + _HINT) from _e
try:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as _e:  # Collector (the typed base class) came in 0.14
    raise ImportError("pgspout.prometheus needs prometheus_client >= 0.14 (the one installed "
                      "is older): " + _HINT) from _e

from . import metrics_text

__all__ = ["PgspoutCollector", "register"]


class PgspoutCollector(Collector):
    """A prometheus_client collector of every pgspout_* series."""

    def collect(self) -> Iterator[Metric]:
        """The families of one pgspout.metrics_text() read."""
        yield from text_string_to_metric_families(metrics_text())

    def describe(self) -> Iterator[Metric]:
        """The families without samples: what a registry checks for clashing
        names on register(), whether or not it has auto_describe."""
        for family in self.collect():
            yield Metric(family.name, family.documentation, family.type, family.unit)


def register(registry: Optional[CollectorRegistry] = None) -> PgspoutCollector:
    """Register a new PgspoutCollector with registry (default:
    prometheus_client.REGISTRY, the one start_http_server and
    generate_latest() use) and return it. A second registration with the same
    registry raises ValueError (duplicated timeseries), as prometheus_client
    does for any collector; registry.unregister(collector) undoes it."""
    collector = PgspoutCollector()
    (REGISTRY if registry is None else registry).register(collector)
    return collector
