"""What an attempt's result means: delivered, retry when, give up, or disable the endpoint."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
RETRY_AFTER_MIN = 1.0
RETRY_AFTER_MAX = 3600.0


@dataclass(frozen=True)
class Decision:
    """``delivered``, ``retry`` (after ``delay`` seconds), ``failed`` or ``gone``."""

    outcome: str
    delay: float | None = None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait per a ``Retry-After`` value (seconds or HTTP date), bounded; or None."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return min(max(seconds, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


def backoff(
    tries: int, schedule: Sequence[float], jitter: float, rand: Callable[[], float] = random.random
) -> float | None:
    """The delay before retry number ``tries`` (1-based), ± ``jitter``; None once exhausted."""
    if tries > len(schedule):
        return None
    base = schedule[tries - 1]
    return max(0.0, base * (1 + jitter * (2 * rand() - 1)))


def decide(
    status: int | None,
    retry_after_header: str | None,
    tries: int,
    schedule: Sequence[float],
    jitter: float,
    now: float,
) -> Decision:
    """The outcome of an attempt that got ``status`` (None: no response), being try ``tries``."""
    if status is not None and 200 <= status < 300:
        return Decision("delivered")
    if status == 410:
        return Decision("gone")
    delay = backoff(tries, schedule, jitter)
    if delay is None:
        return Decision("failed")
    if status in RETRY_AFTER_STATUSES:
        hinted = retry_after(retry_after_header, now)
        if hinted is not None:
            delay = hinted
    return Decision("retry", delay)
