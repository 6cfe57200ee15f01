"""The auto-pipeliner's connection bound, on a real server (issue 13, defect 6).

Before the bound, each ``FLUSH_AT`` calls in flight took one more pooled connection, and a
burst larger than the pool failed with redis-py 8's ``MaxConnectionsError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from service.runtime.batcher import MAX_BATCH, Batcher, Script

COUNT = Script.of("return redis.call('INCR', KEYS[1])")


@pytest.fixture
async def small_pool(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """A client whose pool holds at most 8 connections (the batcher's share: 2)."""
    client = aredis.Redis.from_url(redis_url, max_connections=8)
    yield client
    await client.aclose()


async def test_a_burst_larger_than_the_pool_completes(small_pool: aredis.Redis) -> None:
    batcher = Batcher(small_pool)
    assert batcher.max_connections == 2
    others_done = asyncio.Event()

    async def other_pool_users() -> None:
        # Blocking waits and plain commands keep their headroom during the burst.
        await asyncio.gather(
            *(small_pool.blpop([f"{{t}}:nothing:{i}"], timeout=0.2) for i in range(4)),
            small_pool.ping(),
        )
        others_done.set()

    others = asyncio.create_task(other_pool_users())
    replies = await asyncio.gather(
        *(batcher.call(COUNT, [f"{{t}}:n:{i % 100}"], 1) for i in range(20_000))
    )
    assert sorted(replies)[-1] == 200 and len(replies) == 20_000
    async with asyncio.timeout(10):
        await others
    assert others_done.is_set()
    assert await small_pool.get("{t}:n:0") == b"200"
    await batcher.close()


async def test_calls_past_the_bound_wait_their_turn_in_order(
    small_pool: aredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = Batcher(small_pool, max_connections=1)
    sent: list[int] = []
    send = batcher._send

    async def counting(batch: list[Any]) -> None:
        sent.append(len(batch))
        await send(batch)

    monkeypatch.setattr(batcher, "_send", counting)
    n = 3 * MAX_BATCH + 7
    replies = await asyncio.gather(*(batcher.call(COUNT, ["{t}:seq"], 1) for _ in range(n)))
    # One connection: every call ran in the order it was made.
    assert replies == list(range(1, n + 1))
    # Those that waited left merged into pipelines of up to MAX_BATCH, not one per flush.
    assert sum(sent) == n and max(sent) <= MAX_BATCH
    assert len(sent) < n // 32
    await batcher.close()


async def test_a_failing_exchange_fails_only_its_calls(small_pool: aredis.Redis) -> None:
    batcher = Batcher(small_pool, max_connections=1)
    bad = Script.of("return redis.call('NOPE')")
    results = await asyncio.gather(
        *(batcher.call(bad if i % 2 else COUNT, ["{t}:f"], 1) for i in range(200)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Exception) for r in results) == 100
    assert await batcher.call(COUNT, ["{t}:f"], 1) == 101
    await batcher.close()


async def test_a_call_utf8_cannot_carry_fails_alone(small_pool: aredis.Redis) -> None:
    # A lone surrogate in one call's arguments must not sink the other calls of its pipeline.
    batcher = Batcher(small_pool)
    calls = [batcher.call(COUNT, [f"{{t}}:u:{i}"], 1) for i in range(5)]
    bad = batcher.call(COUNT, ["{t}:u:\ud800"], 1)
    replies = await asyncio.gather(*calls, bad, return_exceptions=True)
    assert replies[:5] == [1, 1, 1, 1, 1]
    assert isinstance(replies[5], UnicodeEncodeError)
    assert await small_pool.get("{t}:u:4") == b"1"
    await batcher.close()


def seen_while_blocked(observer: redis.Redis, key: str, value: str) -> bool:
    """Whether ``key`` holds ``value`` on the server, polled from another (blocking) client
    without yielding to this loop: a call still queued in the batcher cannot reach the server
    meanwhile."""
    for _ in range(100):
        if observer.get(key) == value.encode():
            return True
        observer.ping()
    return False


async def test_flush_now_sends_before_the_loop_iteration_ends(
    redis_url: str, small_pool: aredis.Redis
) -> None:
    """``flush_now`` writes the queued calls at once on a kept connection: the server has them
    while this loop is still busy (the worker relies on it: a claim's start goes out before
    the batch before it runs). Without it they wait for the end of the iteration."""
    batcher = Batcher(small_pool)
    observer = redis.Redis.from_url(redis_url)
    try:
        await batcher.command("SET", "{t}:flush", "warm")  # keeps a connection for the next

        queued = batcher.command("SET", "{t}:flush", "queued")
        assert not seen_while_blocked(observer, "{t}:flush", "queued")
        await queued

        sent = batcher.command("SET", "{t}:flush", "sent")
        batcher.flush_now()
        assert seen_while_blocked(observer, "{t}:flush", "sent")
        await sent
        batcher.flush_now()  # nothing queued: nothing sent
    finally:
        await batcher.close()
        observer.close()


async def test_flush_if_idle_sends_a_lone_call_at_once_but_lets_calls_gather_behind_a_pipeline(
    redis_url: str, small_pool: aredis.Redis
) -> None:
    """``flush_if_idle`` (a synchronous submit, a handed run's finish) writes a call at once
    when no pipeline is in flight; while one is, the call waits for the next flush with any
    others, as calls made in one loop iteration do."""
    batcher = Batcher(small_pool)
    observer = redis.Redis.from_url(redis_url)
    try:
        await batcher.command("SET", "{t}:idle", "warm")  # keeps a connection for the next

        lone = batcher.command("SET", "{t}:idle", "lone")
        batcher.flush_if_idle()
        assert seen_while_blocked(observer, "{t}:idle", "lone")
        await lone

        # A pipeline in flight (its reply not read yet: this loop has not run since).
        first = batcher.command("SET", "{t}:idle", "first")
        batcher.flush_now()
        behind = batcher.command("SET", "{t}:idle", "behind")
        batcher.flush_if_idle()
        assert seen_while_blocked(observer, "{t}:idle", "first")
        assert not seen_while_blocked(observer, "{t}:idle", "behind")
        assert await first is not None
        await behind
        assert observer.get("{t}:idle") == b"behind"
    finally:
        await batcher.close()
        observer.close()
