"""Parsing of the request headers that shape a submit: Prefer (RFC 7240) and friends."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from service.http.errors import Problem

CALLBACK_EVENTS = ("succeeded", "failed", "canceled", "running")


@dataclass(frozen=True)
class Preferences:
    """What the client asked for in ``Prefer``."""

    respond_async: bool = False
    wait: float | None = None


def parse_prefer(values: list[str]) -> Preferences:
    """Parse every ``Prefer`` header; unknown preferences are ignored, as RFC 7240 asks."""
    return _parse_prefer(tuple(values))


@functools.lru_cache(maxsize=512)
def _parse_prefer(values: tuple[str, ...]) -> Preferences:
    # Cached: clients send the same few header values again and again.
    respond_async = False
    wait: float | None = None
    for header in values:
        for item in header.split(","):
            token = item.split(";", 1)[0].strip()
            if not token:
                continue
            name, _, value = token.partition("=")
            name = name.strip().lower()
            value = value.strip().strip('"')
            if name == "respond-async":
                respond_async = True
            elif name == "wait":
                try:
                    seconds = float(value)
                except ValueError:
                    continue
                if seconds >= 0 and seconds == seconds:  # NaN is ignored
                    wait = seconds if wait is None else min(wait, seconds)
    return Preferences(respond_async, wait)


def parse_priority(value: str | None) -> int:
    """``Queue-Priority``: an integer in -10..10 (default 0)."""
    if value is None or value.strip() == "":
        return 0
    try:
        priority = int(value.strip())
    except ValueError:
        raise Problem(400, "Queue-Priority must be an integer from -10 to 10",
                      slug="invalid-header", header="Queue-Priority") from None  # fmt: skip
    if not -10 <= priority <= 10:
        raise Problem(400, "Queue-Priority must be an integer from -10 to 10",
                      slug="invalid-header", header="Queue-Priority")  # fmt: skip
    return priority


def parse_idempotency_key(value: str | None) -> str:
    """``Idempotency-Key``: 1 to 255 visible ASCII characters."""
    if value is None:
        return ""
    key = value.strip().strip('"')
    if not 1 <= len(key) <= 255 or not all(33 <= ord(c) <= 126 for c in key):
        raise Problem(400, "Idempotency-Key must be 1 to 255 visible ASCII characters",
                      slug="invalid-header", header="Idempotency-Key")  # fmt: skip
    return key


def parse_callback_events(value: str | None) -> str:
    """``Callback-Events``: a comma list of succeeded, failed, canceled, running."""
    if value is None or not value.strip():
        return "succeeded,failed,canceled"
    events = [e.strip().lower() for e in value.split(",") if e.strip()]
    bad = [e for e in events if e not in CALLBACK_EVENTS]
    if bad or not events:
        raise Problem(
            400,
            f"Callback-Events may list only {', '.join(CALLBACK_EVENTS)}; got {', '.join(bad)}",
            slug="invalid-header",
            header="Callback-Events",
        )
    return ",".join(dict.fromkeys(events))
