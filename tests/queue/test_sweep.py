"""The listing indexes' sweep (service.queue.sweep): expired requests' ids leave the index,
live ones stay, and the listing pages as before; on one node and on the cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.queue import keys, scripts
from service.queue.scripts import ForgetArgv, ForgetCallArgv, ForgetCallKeys, ForgetKeys
from service.queue.store import Limits, NewRequest, Queue
from service.queue.sweep import IndexSweeper
from tests.support.cluster import both

OP = "echo"
# result_ttl is whole seconds: 1 s is the shortest a record can be kept after it finishes.
LIMITS = Limits(attempts=1, timeout=5, result_ttl=1, max_queue_depth=100_000, retry_backoff=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _submit(queue: Queue, client: str) -> str:
    rid = queue.new_id(OP, 0, client)
    res = await queue.submit(NewRequest(OP, rid, client, "{}", LIMITS))
    assert res.outcome == "created"
    return rid


async def _run_these(queue: Queue, rids: list[str]) -> None:
    # Runs exactly these: claims every shard's requests, finishes these (their records expire
    # 1 s on) and hands the others back.
    for shard in range(queue.shard_count(OP)):
        got = await queue.claim_shard(OP, "w1", f"t{shard}", 100, 30, 10, shard=shard)
        for job in got.jobs:
            if job.request_id in rids:
                assert await queue.finish(job, "succeeded", "{}") == "succeeded"
            else:
                assert await queue.release(job) == "released"


async def _expired(queue: Queue, rids: list[str]) -> None:
    # The server expires them (1 s after finishing): polled, with a generous bound.
    async def gone() -> bool:
        found = [await queue.redis.exists(keys.record(queue.tag_of(OP, r), r)) for r in rids]
        return not any(found)

    async with asyncio.timeout(15):
        while not await gone():
            await asyncio.sleep(0.05)


async def _index(queue: Queue, client: str) -> set[str]:
    out: set[str] = set()
    for tag in queue.tags(OP):
        members: Any = await queue.redis.zrange(keys.client_index(tag, client), 0, -1)
        out |= {m.decode() for m in members}
    return out


def _sweeper(queue: Queue, **kw: Any) -> IndexSweeper:
    return IndexSweeper(queue, {OP: LIMITS.result_ttl}, ["alice", "bob"], **kw)


@both
@pytest.mark.parametrize("shards", [1, 3])
async def test_the_sweep_keeps_only_live_requests_and_the_listing_still_pages(
    redis_client: Any, shards: int
) -> None:
    clock = Clock()
    queue = Queue(redis_client, clock=clock, shards={OP: shards})
    old = []
    for _ in range(30):
        old.append(await _submit(queue, "alice"))
        clock.now += 0.001
    bob = await _submit(queue, "bob")
    finished = [rid for i, rid in enumerate(old) if i % 3] + [bob]
    queued = [rid for rid in old if rid not in finished]  # old but live: kept
    await _run_these(queue, finished)
    clock.now += 10
    # Finished within result_ttl (by the clock): not even read, whatever the server did.
    recent = [await _submit(queue, "alice") for _ in range(3)]
    await _expired(queue, finished)
    assert await _index(queue, "alice") == set(old + recent)

    # Small reads and budget: several ticks, cursors stepping past the live ids.
    sweeper = _sweeper(queue, batch=4, budget=8)
    removed = 0
    for _ in range(30):
        removed += await sweeper.sweep()
        if removed == len(finished):
            break
    assert removed == len(finished)
    assert await _index(queue, "alice") == set(queued + recent)
    assert await _index(queue, "bob") == set()
    # Idempotent: another process's sweep (own cursors) finds nothing more to remove.
    assert await _sweeper(queue).sweep() == 0

    # The listing pages over what is left, newest first.
    pages: list[str] = []
    cursor: tuple[int, str] | None = None
    while True:
        page = await queue.list_ids(OP, "alice", cursor, 4)
        if not page:
            break
        pages += [rid for rid, _ in page]
        cursor = (page[-1][1], page[-1][0])
    assert set(pages) == set(queued + recent) and len(pages) == len(queued) + len(recent)
    created = {rid: ms for rid, ms in await queue.list_ids(OP, "alice", None, 100)}
    assert pages == sorted(pages, key=lambda r: (created[r], r), reverse=True)


async def test_live_requests_of_one_millisecond_do_not_stall_the_sweep(
    redis_client: Any,
) -> None:
    clock = Clock()
    queue = Queue(redis_client, clock=clock)
    # Ten queued requests created in the same millisecond, more than one read takes...
    live = [await _submit(queue, "alice") for _ in range(10)]
    clock.now += 0.001
    # ...ahead of finished ones.
    dead = [await _submit(queue, "alice") for _ in range(5)]
    await _run_these(queue, dead)
    await _expired(queue, dead)
    clock.now += 10
    sweeper = _sweeper(queue, batch=3, budget=3)  # one read of 3 per tick
    removed = 0
    for _ in range(20):
        removed += await sweeper.sweep()
        if removed == len(dead):
            break
    assert removed == len(dead)
    assert await _index(queue, "alice") == set(live)
    # Past the cutoff the cursor starts again from the oldest: a request at the head that
    # finishes now is swept on a later round.
    await _run_these(queue, live[:1])
    await _expired(queue, live[:1])
    for _ in range(20):
        if await sweeper.sweep():
            break
    assert await _index(queue, "alice") == set(live[1:])


async def test_forget_removes_only_ids_older_than_the_cutoff_whose_records_are_gone(
    redis_client: Any,
) -> None:
    index = keys.client_index(OP, "alice")
    await redis_client.zadd(index, {"a": 100, "b": 100, "c": 300})
    await redis_client.hset(keys.record(OP, "b"), "id", "b")
    calls = [
        (ForgetCallKeys(keys.record(OP, rid)), ForgetCallArgv(rid)) for rid in ("a", "b", "c", "d")
    ]
    batcher = Queue(redis_client).batcher
    flags = await scripts.FORGET.call_many(batcher, ForgetKeys(index), ForgetArgv(200), calls)
    # a: gone and old, removed; b: live; c: gone but newer than the cutoff; d: not there.
    assert flags == [1, 0, 0, 1]
    members: Any = await redis_client.zrange(index, 0, -1)
    assert members == [b"b", b"c"]
    # Again (another process's sweep): nothing more to remove, the same answers.
    again = await scripts.FORGET.call_many(batcher, ForgetKeys(index), ForgetArgv(200), calls)
    assert again == [1, 0, 0, 1] and await redis_client.zcard(index) == 2
