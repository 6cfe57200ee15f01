"""The console's history: what ``submit.lua`` and ``finish.lua`` count in fixed time buckets.

Two rings per operation (``lua/includes/history.lua`` writes them): ``hist:s``, per second for
the last 15 minutes, and ``hist:m``, per minute for 24 hours with wait and run time histograms.
A slot's ``b:<slot>`` field names the bucket it holds; a slot holding an older bucket is stale.
Reading is one ``HGETALL`` per ring (per shard of a sharded operation, summed), bounded by the
rings' size, never by the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def _depths(buckets: dict[int, dict[str, int]], first: int, last: int) -> list[int | None]:
    # The last depth sample in or before each bucket, carried forward through quiet ones.
    sample: int | None = None
    older = [b for b in buckets if b < first and "q" in buckets[b]]
    if older:
        sample = buckets[max(older)]["q"]
    out = []
    for b in range(first, last + 1):
        sample = buckets.get(b, {}).get("q", sample)
        out.append(sample)
    return out


Ring = tuple[dict[bytes, bytes], dict[bytes, bytes]]


def series(op: str, window: int, now_ms: int, rings: Sequence[Ring]) -> Series:
    """The window ending now, from the rings' raw fields: one ``(fine, coarse)`` pair per
    shard of the operation (``fine`` unused past 15 minutes), summed.

    Counters and histogram bins add up bucket by bucket; each shard's queue depth is carried
    forward on its own before the shards' are added (null while no shard has a sample)."""
    step = step_for(window)
    width = step * 1000
    last = now_ms // width
    first = last - math.ceil(window / step) + 1
    times = [b * step for b in range(first, last + 1)]
    counts: dict[str, list[int]] = {c: [0] * len(times) for c in COUNTERS}
    depth: list[int | None] = [None] * len(times)
    # Percentiles from the minute histograms covering the window (at least the current minute).
    first_minute = (now_ms - window * 1000) // 60000 + 1
    waits, runs = [0] * (len(BOUNDS_MS) + 1), [0] * (len(BOUNDS_MS) + 1)
    for fine, coarse in rings:
        minutes = _slots(coarse)
        buckets = _slots(fine) if step == 1 else minutes
        for i, b in enumerate(range(first, last + 1)):
            values = buckets.get(b)
            if values:
                for c in COUNTERS:
                    counts[c][i] += values.get(c, 0)
        for i, d in enumerate(_depths(buckets, first, last)):
            if d is not None:
                depth[i] = d + (depth[i] or 0)
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


async def read(
    redis: Client,
    ops: Sequence[str],
    window: int,
    now_ms: int,
    tags: Mapping[str, Sequence[str]] | None = None,
) -> list[Series]:
    """Each operation's history over the last ``window`` seconds, its shards' summed.

    ``tags``: a sharded operation's shard tags (``Queue.tags``); an operation not in it has
    one shard. Every ring is read in one pipeline: one round trip (on a cluster, one per
    node, in parallel)."""
    step = step_for(window)
    shards = {op: tuple((tags or {}).get(op) or (op,)) for op in ops}
    async with redis.pipeline(transaction=False) as pipe:
        for op in ops:
            for tag in shards[op]:
                if step == 1:
                    pipe.hgetall(keys.hist_seconds(tag))
                pipe.hgetall(keys.hist_minutes(tag))
        raw = iter(await pipe.execute())
    out = []
    for op in ops:
        rings = [(next(raw) if step == 1 else {}, next(raw)) for _ in shards[op]]
        out.append(series(op, window, now_ms, rings))
    return out
