"""RFC 3339 timestamps of the millisecond times that records and events hold."""

from __future__ import annotations

import functools
import time


def rfc3339(ms: str | int | None) -> str | None:
    """Milliseconds since the epoch as an RFC 3339 UTC string (None passes through)."""
    if ms is None or ms == "":
        return None
    return rfc3339_ms(int(ms))


def rfc3339_ms(ms: int) -> str:
    global _last
    if ms == _last[0]:  # a busy second renders the same millisecond several times in a row
        return _last[1]
    seconds, millis = divmod(ms, 1000)
    text = _second(seconds) + f".{millis:03d}Z"
    _last = (ms, text)
    return text


_last = (-1, "")


@functools.lru_cache(maxsize=1024)
def _second(seconds: int) -> str:
    # Cached: the times rendered in one second share everything but their milliseconds.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
