"""Prometheus metrics, every one named ``acceptd_*``, in a registry per process role."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The service's metrics."""

    def __init__(self) -> None:
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
        self.queue_depth = Gauge(
            "acceptd_queue_depth", "Requests waiting, per operation", ["operation"], registry=r
        )
        self.running = Gauge(
            "acceptd_queue_running", "Requests running, per operation", ["operation"], registry=r
        )
        self.workers = Gauge(
            "acceptd_workers_alive",
            "Worker processes alive, per operation",
            ["operation"],
            registry=r,
        )
        self.sse_connections = Gauge(
            "acceptd_sse_connections", "Open Server-Sent Events streams", registry=r
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

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_finished(self, op: str, outcome: str, seconds: float) -> None:
        """Count one handler run."""
        self._child(self.outcomes, op, outcome).inc()
        self._child(self.run_time, op).observe(seconds)

    def job_started(self, op: str, waited: float) -> None:
        """Observe how long a request waited in its queue."""
        self._child(self.wait_time, op).observe(waited)

    def lease_recovered(self, op: str, outcome: str) -> None:
        """Count one recovered lease."""
        self._child(self.recovered, op, outcome).inc()

    def request_submitted(self, op: str) -> None:
        """Count one accepted request."""
        counts = self._submitted
        counts[op] = counts.get(op, 0) + 1

    def render(self) -> bytes:
        """The exposition text."""
        counts, self._submitted = self._submitted, {}
        for op, n in counts.items():
            self._child(self.submitted, op).inc(n)
        return generate_latest(self.registry)
