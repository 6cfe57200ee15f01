"""Metrics: the buffered mode a process group uses renders exactly what direct updates do."""

from __future__ import annotations

from service.runtime.metrics import Metrics


def samples(m: Metrics) -> list[bytes]:
    """The exposition without ``*_created`` timestamps (when a label set was first used)."""
    return [line for line in m.render().splitlines() if b"_created{" not in line]


def feed(m: Metrics) -> None:
    # Binary fractions: the sums are exact whichever order they are added in.
    for i in range(50):
        m.request_submitted("echo")
        m.job_started("echo", i / 128)
        m.job_finished("echo", "succeeded" if i % 7 else "failed", i / 2)
    m.job_finished("sleep", "succeeded", 0.001)  # exactly on a bucket's bound
    m.job_finished("sleep", "succeeded", 1e6)  # past the last bound: +Inf


def test_buffered_updates_render_like_direct_ones() -> None:
    direct, buffered = Metrics(buffered=False), Metrics(buffered=True)
    feed(direct)
    feed(buffered)
    assert samples(buffered) == samples(direct)
    feed(direct)
    feed(buffered)
    buffered.flush()
    assert samples(buffered) == samples(direct)
    assert b'acceptd_requests_submitted_total{operation="echo"} 100.0' in direct.render()
