"""Prometheus metrics. Labels are bounded (route, status class, level, payer): never a person or bill."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _PoolCollector(Collector):
    def __init__(self, pool_stats: Callable[[], tuple[int, int]]) -> None:
        self._pool_stats = pool_stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_use, size = self._pool_stats()
        in_use_gauge = GaugeMetricFamily("medsettle_db_pool_in_use", "Database connections checked out")
        in_use_gauge.add_metric([], in_use)
        yield in_use_gauge
        size_gauge = GaugeMetricFamily("medsettle_db_pool_size", "Database connections open")
        size_gauge.add_metric([], size)
        yield size_gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.request_duration = Histogram(
            "medsettle_http_request_duration_seconds",
            "HTTP request duration",
            ["route", "status_class"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.settlements = Counter(
            "medsettle_settlements_total",
            "Settle requests by outcome",
            ["clinic_level", "visit_type", "outcome"],
            registry=self.registry,
        )
        self.paid = Counter(
            "medsettle_paid_fen_total",
            "Amounts settled per payer, in fen",
            ["payer"],
            registry=self.registry,
        )
        self.replays = Counter(
            "medsettle_idempotent_replays_total",
            "Requests answered from the idempotency store",
            ["operation"],
            registry=self.registry,
        )
        self.errors = Counter(
            "medsettle_errors_total",
            "Problem responses by stable code",
            ["code"],
            registry=self.registry,
        )
        self.reversals = Counter("medsettle_reversals_total", "Reversals written", registry=self.registry)
        self.reader_frames = Counter(
            "medsettle_reader_frames_total",
            "Card-reader frames by type and outcome (ok, replayed, refused, failed, or why an unreadable frame was)",
            ["type", "outcome"],
            registry=self.registry,
        )

    def watch_pool(self, pool_stats: Callable[[], tuple[int, int]]) -> None:
        self.registry.register(_PoolCollector(pool_stats))
