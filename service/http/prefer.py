"""Parsing of the request headers that shape a submit: Prefer (RFC 7240) and friends."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from multidict import CIMultiDictProxy

from service.http.errors import Problem
from service.runtime.config import ServerSettings

CALLBACK_EVENTS = ("succeeded", "failed", "canceled", "running")


@dataclass(frozen=True)
class Preferences:
    """What the client asked for in ``Prefer``."""

    respond_async: bool = False
    wait: float | None = None


NO_PREFERENCES = Preferences()


class SubmitHeaders(NamedTuple):
    """What a submit's headers ask for (a tuple: built on every submit, it must be cheap)."""

    prefs: Preferences
    priority: int
    idempotency_key: str
    callback_url: str
    callback_events: str
    # Seconds to wait for the outcome before answering; 0 answers at once.
    wait: float
    # Queue-Timeout: seconds the request may wait to start (0: none asked).
    queue_timeout: float = 0.0


def parse_submit_headers(headers: CIMultiDictProxy[str], server: ServerSettings) -> SubmitHeaders:
    """Parse and check every header that shapes a submit (not the callback URL's reach)."""
    # Most submits send no Prefer: no list, no cache look-up.
    prefs = NO_PREFERENCES if "Prefer" not in headers else parse_prefer(headers.getall("Prefer"))
    callback_url = headers.get("Callback-Url", "").strip()
    return SubmitHeaders(
        prefs,
        parse_priority(headers.get("Queue-Priority")),
        parse_idempotency_key(headers.get("Idempotency-Key")),
        callback_url,
        parse_callback_events(headers.get("Callback-Events")) if callback_url else "",
        wait_seconds(prefs, server),
        parse_queue_timeout(headers.get("Queue-Timeout")),
    )


def wait_seconds(prefs: Preferences, server: ServerSettings) -> float:
    """How long a submit waits for the outcome: asked for, or the default, within the limit."""
    if prefs.respond_async:
        return min(prefs.wait, server.max_wait_seconds) if prefs.wait else 0.0
    wait = server.sync_wait_seconds if prefs.wait is None else prefs.wait
    return min(wait, server.max_wait_seconds)


# Longer Prefer headers are refused (400): real ones are a few dozen characters.
MAX_PREFER_CHARS = 1024
# Only values this short are cached, so the cache holds at most 512 x 128 characters.
CACHED_PREFER_CHARS = 128


def parse_prefer(values: list[str]) -> Preferences:
    """Parse every ``Prefer`` header; unknown preferences are ignored, as RFC 7240 asks."""
    size = len(values[0]) if len(values) == 1 else sum(len(v) for v in values)
    if size > MAX_PREFER_CHARS:
        raise Problem(400, f"Prefer must be at most {MAX_PREFER_CHARS} characters",
                      slug="invalid-header", header="Prefer")  # fmt: skip
    if size <= CACHED_PREFER_CHARS:
        return _parse_prefer_cached(tuple(values))
    return _parse_prefer(tuple(values))


def _parse_prefer(values: tuple[str, ...]) -> Preferences:
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


# Clients send the same few short header values again and again.
_parse_prefer_cached = functools.lru_cache(maxsize=512)(_parse_prefer)


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


# A year: longer is a mistake (or a way to keep a member in the deadlines set for ever).
MAX_QUEUE_TIMEOUT = 31_536_000.0


def parse_queue_timeout(value: str | None) -> float:
    """``Queue-Timeout``: a positive number of seconds, at most a year (0: not given)."""
    if value is None:
        return 0.0
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = -1.0
    # NaN fails every comparison: refused with the rest.
    if not 0 < seconds <= MAX_QUEUE_TIMEOUT:
        raise Problem(400, "Queue-Timeout must be a positive number of seconds (at most a year)",
                      slug="invalid-header", header="Queue-Timeout")  # fmt: skip
    return seconds


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
