"""Prometheus metrics. Labels are bounded (route, status class, level, payer): never a person or bill.

With ``medsettle serve --workers N`` every worker is its own process, so the parent
(gateway/http/workers.py) sets ``PROMETHEUS_MULTIPROC_DIR`` to an emptied folder before any
worker imports prometheus_client. Each worker then writes its values to files there,
and ``/metrics``, whichever worker answers it, adds up the files of every worker: the
counters of all workers, including one that died (the parent restarts it), and the pool
gauges of the live ones. One process (the default) keeps plain in-memory metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from settlement.models import Settlement


def multiprocess_dir() -> str | None:
    """The folder worker processes share their values through, or None for one process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _PoolCollector(Collector):
    def __init__(self, pool_stats: Callable[[], tuple[int, int, int]]) -> None:
        self._pool_stats = pool_stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_use, size, most = self._pool_stats()
        in_use_gauge = GaugeMetricFamily("medsettle_db_pool_in_use", "Database connections checked out")
        in_use_gauge.add_metric([], in_use)
        yield in_use_gauge
        size_gauge = GaugeMetricFamily("medsettle_db_pool_size", "Database connections open")
        size_gauge.add_metric([], size)
        yield size_gauge
        max_gauge = GaugeMetricFamily("medsettle_db_pool_max", "Database connections the pool may open")
        max_gauge.add_metric([], most)
        yield max_gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        self._pool_stats: Callable[[], tuple[int, int]] | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        if not self.multiprocess:
            # The process's CPU seconds, resident memory, open files and start time (process_*). With
            # several workers each is a process of its own, which one scrape of /metrics cannot sum.
            ProcessCollector(registry=self.registry)
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
        self.reversed = Counter(
            "medsettle_reversed_fen_total",
            "Amounts given back by reversals per payer, in fen: paid minus reversed is what stands",
            ["payer"],
            registry=self.registry,
        )
        self.reader_frames = Counter(
            "medsettle_reader_frames_total",
            "Card-reader frames by type and outcome (ok, replayed, refused, failed, or why an unreadable frame was)",
            ["type", "outcome"],
            registry=self.registry,
        )

        # Set by the background loops (gateway/http/app.py), so an alert needs no traffic to fire. Under
        # --workers N the lowest live worker's answer is the database's, and the latest seal any worker made.
        self.database_up = Gauge(
            "medsettle_database_up",
            "1 while this process's last database check (every 5 s) succeeded, else 0",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.readjudication_backlog = Gauge(
            "medsettle_readjudication_backlog",
            "Person-years waiting to be re-adjudicated (a registry change with a past date, a refund)",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.readjudications = Counter(
            "medsettle_readjudications_total",
            "Person-years re-adjudicated, by outcome (adjusted, unchanged, needs_review)",
            ["outcome"],
            registry=self.registry,
        )
        # The insurer's core (gateway/insurer.py): every call by transaction code and outcome (ok, refused,
        # unreachable, unknown), its latency, the breaker, and messages whose outcome is not yet settled.
        self.insurer_calls = Counter(
            "medsettle_insurer_calls_total",
            "Calls to the insurer's core, by transaction code and outcome",
            ["transaction", "outcome"],
            registry=self.registry,
        )
        self.insurer_call_seconds = Histogram(
            "medsettle_insurer_call_duration_seconds",
            "How long the insurer's core took to answer, by transaction code",
            ["transaction"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        # The batchers of adapters/batching.py: how many calls each statement carried. Ones mean every settlement
        # pays its round trips and commit alone (light load); the size tells what a commit is shared by.
        self.batch_size = Histogram(
            "medsettle_batch_size",
            "Calls run together in one statement, by batcher",
            ["batcher"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.insurer_breaker_open = Gauge(
            "medsettle_insurer_breaker_open",
            "1 while the circuit breaker before the insurer's core is open or probing, else 0",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.insurer_open_messages = Gauge(
            "medsettle_insurer_open_messages",
            "Messages to the insurer's core whose outcome is not yet settled on both sides (the sweeper finishes them)",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.audit_sealed = Gauge(
            "medsettle_audit_sealed_timestamp_seconds",
            "Unix time the audit sealer last finished a round with nothing left to seal",
            registry=self.registry,
            multiprocess_mode="max",
        )

        if self.multiprocess:
            # A collector asked at scrape time would only see the answering worker's pool, so each
            # worker samples its own into a gauge (sample_pool) and /metrics sums the live workers'.
            self.pool_in_use = Gauge(
                "medsettle_db_pool_in_use",
                "Database connections checked out",
                registry=None,
                multiprocess_mode="livesum",
            )
            self.pool_size = Gauge(
                "medsettle_db_pool_size", "Database connections open", registry=None, multiprocess_mode="livesum"
            )
            self.pool_max = Gauge(
                "medsettle_db_pool_max",
                "Database connections the pool may open",
                registry=None,
                multiprocess_mode="livesum",
            )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: every label set here is bounded (routes, status classes,
        levels, payers...), and the lookup and validation in ``labels`` cost more than what is counted."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add_payers(self, metric: Counter, settlement: Settlement) -> None:
        """Add to ``metric`` (paid or reversed) what each fund of the settlement's chain paid, by fund code, and
        the patient's share as ``out_of_pocket``."""
        child = self.child
        for trace in settlement.traces:
            child(metric, trace.payer).inc(trace.paid)
        child(metric, "out_of_pocket").inc(settlement.out_of_pocket)

    def watch_pool(self, pool_stats: Callable[[], tuple[int, int, int]]) -> None:
        """``pool_stats`` answers (connections in use, open, the pool's maximum)."""
        if self.multiprocess:
            self._pool_stats = pool_stats
            self.sample_pool()
        else:
            self.registry.register(_PoolCollector(pool_stats))

    def sample_pool(self) -> None:
        """Record this worker's pool use now (multiprocess mode; a worker calls it every second)."""
        if self._pool_stats is not None:
            in_use, size, most = self._pool_stats()
            self.pool_in_use.set(in_use)
            self.pool_size.set(size)
            self.pool_max.set(most)

    def exposition(self) -> bytes:
        """The text /metrics serves: this process's registry, or every worker's files added up."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.sample_pool()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
