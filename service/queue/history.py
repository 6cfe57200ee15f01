"""The console's history: what ``submit.lua`` and ``finish.lua`` count in fixed time buckets.

Two rings per operation (``lua/includes/history.lua`` writes them): ``hist:s``, per second for
the last 15 minutes, and ``hist:m``, per minute for 24 hours with wait and run time histograms.
A slot's ``b:<slot>`` field names the bucket it holds; a slot holding an older bucket is stale.
Reading is one ``HGETALL`` per operation, bounded by the ring's size, never by the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from service.queue import keys
from service.runtime.redis import Client

# The histogram bins' upper bounds (ms), as in lua/includes/history.lua; one open bin follows.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
SECONDS_KEPT = 900
MINUTES_KEPT = 1440
MAX_WINDOW = MINUTES_KEPT * 60
COUNTERS = ("s", "ok", "f", "c")


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Estimated from a histogram: p50 and p95 (ms, None with no samples), and the sample count."""

    p50: float | None
    p95: float | None
    count: int


@dataclass(frozen=True, slots=True)
class Series:
    """One operation's history over a window: a value per bucket of ``step`` seconds."""

    operation: str
    step: int
    times: list[int]  # each bucket's start, unix seconds
    submitted: list[int]
    succeeded: list[int]
    failed: list[int]
    canceled: list[int]
    queue_depth: list[int | None]  # the last sample in or before the bucket
    wait_ms: Percentiles
    run_ms: Percentiles


def step_for(window: int) -> int:
    """Seconds per bucket: 1 up to 15 minutes, else 60."""
    return 1 if window <= SECONDS_KEPT else 60


def _slots(fields: dict[bytes, bytes]) -> dict[int, dict[str, int]]:
    # {bucket: {counter: value}} from a ring's fields '<name>:<slot>'.
    by_slot: dict[str, dict[str, int]] = {}
    for raw, value in fields.items():
        name, _, slot = raw.decode().partition(":")
        by_slot.setdefault(slot, {})[name] = int(value)
    return {f.pop("b"): f for f in by_slot.values() if "b" in f}


def percentiles(counts: Sequence[int]) -> Percentiles:
    """p50 and p95 of a histogram over :data:`BOUNDS_MS`, interpolated within a bin."""
    total = sum(counts)
    if not total:
        return Percentiles(None, None, 0)
    out: list[float] = []
    for q in (0.5, 0.95):
        rank, seen = q * total, 0
        for i, n in enumerate(counts):
            if n and seen + n >= rank:
                if i >= len(BOUNDS_MS):
                    out.append(float(BOUNDS_MS[-1]))  # the open bin: at least its lower bound
                else:
                    low = BOUNDS_MS[i - 1] if i else 0
                    out.append(round(low + (BOUNDS_MS[i] - low) * (rank - seen) / n, 1))
                break
            seen += n
    return Percentiles(out[0], out[1], total)


def series(
    op: str, window: int, now_ms: int, fine: dict[bytes, bytes], coarse: dict[bytes, bytes]
) -> Series:
    """The window ending now, from the rings' raw fields (``fine`` unused past 15 minutes)."""
    step = step_for(window)
    buckets = _slots(fine if step == 1 else coarse)
    width = step * 1000
    last = now_ms // width
    first = last - math.ceil(window / step) + 1
    times, depth = [], []
    counts: dict[str, list[int]] = {c: [] for c in COUNTERS}
    sample: int | None = None
    older = [b for b in buckets if b < first and "q" in buckets[b]]
    if older:
        sample = buckets[max(older)]["q"]
    for b in range(first, last + 1):
        values = buckets.get(b, {})
        times.append(b * step)
        for c in COUNTERS:
            counts[c].append(values.get(c, 0))
        sample = values.get("q", sample)
        depth.append(sample)
    # Percentiles from the minute histograms covering the window (at least the current minute).
    minutes = _slots(coarse)
    first_minute = (now_ms - window * 1000) // 60000 + 1
    waits, runs = [0] * (len(BOUNDS_MS) + 1), [0] * (len(BOUNDS_MS) + 1)
    for b, values in minutes.items():
        if first_minute <= b <= now_ms // 60000:
            for i in range(len(waits)):
                waits[i] += values.get(f"w{i}", 0)
                runs[i] += values.get(f"r{i}", 0)
    return Series(
        op,
        step,
        times,
        counts["s"],
        counts["ok"],
        counts["f"],
        counts["c"],
        depth,
        percentiles(waits),
        percentiles(runs),
    )


async def read(redis: Client, ops: Sequence[str], window: int, now_ms: int) -> list[Series]:
    """Each operation's history over the last ``window`` seconds (one pipeline)."""
    step = step_for(window)
    async with redis.pipeline(transaction=False) as pipe:
        for op in ops:
            if step == 1:
                pipe.hgetall(keys.hist_seconds(op))
            pipe.hgetall(keys.hist_minutes(op))
        raw = await pipe.execute()
    out = []
    for op in ops:
        fine = raw.pop(0) if step == 1 else {}
        out.append(series(op, window, now_ms, fine, raw.pop(0)))
    return out
