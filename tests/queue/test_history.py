"""The console's history rings: written by submit.lua and finish.lua, bounded, read back."""

from __future__ import annotations

import dataclasses

import pytest
import redis.asyncio as aredis

from service.queue import history, keys
from service.queue.store import Queue
from tests.queue.test_store import LIMITS, Clock, claim, submit


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(redis_client: aredis.Redis, clock: Clock) -> Queue:
    return Queue(redis_client, clock=clock)


async def test_submits_and_finishes_are_counted_per_second_and_minute(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    a, b, c = await submit(queue), await submit(queue), await submit(queue)
    clock.now += 0.25  # waited 250 ms
    jobs = {j.request_id: j for j in await claim(queue, 3)}
    clock.now += 2.0  # ran 2 s, in a later second
    assert await queue.finish(jobs[a], "succeeded", "1") == "succeeded"
    assert await queue.finish(jobs[b], "failed", "{}") == "failed"
    now_ms = queue.now_ms()
    [s] = await history.read(redis_client, ["echo"], 60, now_ms)
    assert s.step == 1 and len(s.times) == 60 and s.times[-1] == now_ms // 1000
    assert s.submitted[-3] == 3 and sum(s.submitted) == 3
    assert s.succeeded[-1] == 1 and s.failed[-1] == 1 and sum(s.canceled) == 0
    # Depth: 3 queued after the submits, 0 once all were claimed (sampled by the finishes).
    assert s.queue_depth[-3] == 3 and s.queue_depth[-2] == 3 and s.queue_depth[-1] == 0
    assert s.queue_depth[0] is None
    assert s.wait_ms.count == 2 and s.wait_ms.p50 is not None and 100 < s.wait_ms.p50 <= 250
    assert s.run_ms.count == 2 and s.run_ms.p95 is not None and 1000 < s.run_ms.p95 <= 2500
    del c
    # Per minute over a day: the same counts in one bucket.
    [d] = await history.read(redis_client, ["echo"], 86400, now_ms)
    assert d.step == 60 and len(d.times) == 1440
    assert sum(d.submitted) == 3 and sum(d.succeeded) == 1 and sum(d.failed) == 1


async def test_rings_stay_bounded_and_old_buckets_are_forgotten(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    # One submit a second for 20 minutes: the per-second ring keeps 900 slots, not 1200.
    for _ in range(1200):
        await submit(queue, limits=dataclasses.replace(LIMITS, max_queue_depth=10_000))
        clock.now += 1
    fields = await redis_client.hlen(keys.hist_seconds("echo"))
    assert fields <= history.SECONDS_KEPT * 3  # b, s and q per slot
    [s] = await history.read(redis_client, ["echo"], 900, queue.now_ms())
    assert sum(s.submitted) == 899  # the current second has none yet
    assert s.queue_depth[-1] == 1200
    # A slot reused by a newer bucket forgets the old one's counts.
    [m] = await history.read(redis_client, ["echo"], 3600, queue.now_ms())
    assert sum(m.submitted) == 1200
    assert 0 < await redis_client.ttl(keys.hist_seconds("echo")) <= 960
    assert 0 < await redis_client.ttl(keys.hist_minutes("echo")) <= 90000


def test_percentiles_interpolate_within_a_bin() -> None:
    assert history.percentiles([0] * 15) == history.Percentiles(None, None, 0)
    p = history.percentiles([0, 10] + [0] * 13)  # all in (5, 10]
    assert p.count == 10 and p.p50 == 7.5 and p.p95 == 9.8
    open_bin = history.percentiles([0] * 14 + [4])
    assert open_bin.p50 == history.BOUNDS_MS[-1]
