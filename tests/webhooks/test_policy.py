"""Retry policy: status codes, Retry-After and the backoff schedule."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from webhooks.policy import backoff, decide, retry_after

SCHEDULE = [5.0, 300.0]


def test_retry_after_seconds_and_dates_are_bounded() -> None:
    now = 1_700_000_000.0
    assert retry_after("7", now) == 7
    assert retry_after("0", now) == 1.0
    assert retry_after("99999", now) == 3600
    assert retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30)
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_backoff_follows_the_schedule_with_jitter() -> None:
    assert backoff(1, SCHEDULE, 0.0) == 5.0
    assert backoff(2, SCHEDULE, 0.2, rand=lambda: 1.0) == pytest.approx(360.0)
    assert backoff(2, SCHEDULE, 0.2, rand=lambda: 0.0) == pytest.approx(240.0)
    assert backoff(3, SCHEDULE, 0.0) is None


@pytest.mark.parametrize(
    ("status", "header", "tries", "outcome", "delay"),
    [
        (200, None, 1, "delivered", None),
        (204, None, 3, "delivered", None),
        (410, None, 1, "gone", None),
        (500, None, 1, "retry", 5.0),
        (None, None, 2, "retry", 300.0),
        (301, None, 1, "retry", 5.0),
        (503, "20", 1, "retry", 20.0),
        (429, "20", 2, "retry", 20.0),
        (500, "20", 1, "retry", 5.0),
        (503, "20", 3, "failed", None),
        (500, None, 3, "failed", None),
    ],
)
def test_decide(
    status: int | None, header: str | None, tries: int, outcome: str, delay: float | None
) -> None:
    decision = decide(status, header, tries, SCHEDULE, 0.0, 1_700_000_000.0)
    assert (decision.outcome, decision.delay) == (outcome, delay)
