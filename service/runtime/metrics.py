"""Prometheus metrics, every one named ``acceptd_*``, in a registry per process role.

In a process group (``server.processes`` > 1) the supervisor sets ``PROMETHEUS_MULTIPROC_DIR``
for its children: prometheus-client keeps every value in a memory-mapped file there, and any
API process renders the sum over the whole group (counters and histograms add up, the queue
gauges read from Redis show the latest value, ``acceptd_sse_connections`` the live sum).
"""

from __future__ import annotations

import bisect
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BOUNDS = (*DURATION_BUCKETS, float("inf"))

# Set by prometheus-client's convention; read when prometheus_client is first imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The service's metrics."""

    def __init__(self, *, buffered: bool | None = None) -> None:
        self.shared_dir = os.environ.get(MULTIPROC_ENV) or None
        # The hot paths count into plain dicts (0.2 µs an update, against 2-3 µs for a
        # prometheus-client update under its lock, or a memory-mapped file's with a shared
        # directory), and flush() adds the totals: before each render, and with a shared
        # directory once a second too (the app's metrics task).
        self.buffered = True if buffered is None else buffered
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter(
            "acceptd_requests_submitted",
            "Requests accepted into a queue",
            ["operation"],
            registry=r,
        )
        self.outcomes = Counter(
            "acceptd_requests_finished",
            "Requests finished by this process's workers, by outcome",
            ["operation", "outcome"],
            registry=r,
        )
        self.run_time = Histogram(
            "acceptd_run_seconds",
            "Handler run time",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.wait_time = Histogram(
            "acceptd_wait_seconds",
            "Time from submit to the start of the run",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.recovered = Counter(
            "acceptd_leases_recovered",
            "Expired leases (requests whose worker died) recovered by this process's claims, by"
            " outcome: rerun, not_started, worker_lost, canceled, gone",
            ["operation", "outcome"],
            registry=r,
        )
        # Read from Redis at each scrape: in a group, the latest scrape's value.
        self.queue_depth = Gauge(
            "acceptd_queue_depth",
            "Requests waiting, per operation",
            ["operation"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.running = Gauge(
            "acceptd_queue_running",
            "Requests running, per operation",
            ["operation"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.workers = Gauge(
            "acceptd_workers_alive",
            "Worker processes alive, per operation",
            ["operation"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.sse_connections = Gauge(
            "acceptd_sse_connections",
            "Open Server-Sent Events streams",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.webhook_attempts = Counter(
            "acceptd_webhook_attempts",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            registry=r,
        )

        # labels() is a locked dict look-up and tuple build: resolved once per label set.
        self._children: dict[tuple[str, ...], Any] = {}
        # Submissions are counted in a plain dict (every request adds one; the counter's
        # lock costs more than the count) and moved to the counter when metrics are read.
        self._submitted: dict[str, int] = {}
        # Buffered mode only: finishes by (operation, outcome); per operation, a histogram's
        # [sum, count in bucket 0, count in bucket 1, ...] (non-cumulative, as prometheus-client
        # stores them).
        self._finished: dict[tuple[str, str], int] = {}
        self._runs: dict[str, list[float]] = {}
        self._waits: dict[str, list[float]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_finished(self, op: str, outcome: str, seconds: float) -> None:
        """Count one handler run."""
        if self.buffered:
            key = (op, outcome)
            self._finished[key] = self._finished.get(key, 0) + 1
            _observe(self._runs, op, seconds)
            return
        self._child(self.outcomes, op, outcome).inc()
        self._child(self.run_time, op).observe(seconds)

    def job_started(self, op: str, waited: float) -> None:
        """Observe how long a request waited in its queue."""
        if self.buffered:
            _observe(self._waits, op, waited)
            return
        self._child(self.wait_time, op).observe(waited)

    def lease_recovered(self, op: str, outcome: str) -> None:
        """Count one recovered lease."""
        self._child(self.recovered, op, outcome).inc()

    def request_submitted(self, op: str) -> None:
        """Count one accepted request."""
        counts = self._submitted
        counts[op] = counts.get(op, 0) + 1

    def flush(self) -> None:
        """Move the counts kept in dicts to the metrics."""
        counts, self._submitted = self._submitted, {}
        for op, n in counts.items():
            self._child(self.submitted, op).inc(n)
        finished, self._finished = self._finished, {}
        for (op, outcome), n in finished.items():
            self._child(self.outcomes, op, outcome).inc(n)
        for metric, pending in ((self.run_time, self._runs), (self.wait_time, self._waits)):
            for op, entry in pending.items():
                child = self._child(metric, op)
                # One write per bucket per flush: Histogram.observe has no "n at once".
                child._sum.inc(entry[0])
                for i, count in enumerate(entry[1:]):
                    if count:
                        child._buckets[i].inc(count)
            pending.clear()

    def render(self) -> bytes:
        """The exposition text: this process's, or the whole group's with a shared directory."""
        self.flush()
        if self.shared_dir is None:
            return generate_latest(self.registry)
        group = CollectorRegistry()
        MultiProcessCollector(group, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(group)


def _observe(pending: dict[str, list[float]], op: str, value: float) -> None:
    entry = pending.get(op)
    if entry is None:
        entry = pending[op] = [0.0] * (len(_BOUNDS) + 1)
    entry[0] += value
    # prometheus-client counts a value in the first bucket whose bound is >= it.
    entry[1 + bisect.bisect_left(_BOUNDS, value)] += 1
