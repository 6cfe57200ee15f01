"""A backlog is claimed in two lanes (``CLAIM_LANES``): each claim asks for at most half the
slots, and the second lane claims while the first finds work, so that one lane's claim and
start are in Redis while the other lane's batch runs in the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import Claimed, NewRequest, Queue
from service.registry import build_operations
from service.runtime.config import settings_from_dict
from service.runtime.tasks import stop
from service.worker.worker import CLAIM_LANES, Worker

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 8
BACKLOG = 200


def make_worker(redis_url: str, queue: Queue, concurrency: int) -> Worker:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"]["url"] = redis_url
    raw["worker"].update(concurrency=concurrency, lease_seconds=30)
    settings = settings_from_dict(raw)
    return Worker(queue, build_operations(settings), settings.worker)


async def test_a_backlog_is_claimed_in_two_lanes_of_half_the_slots(
    redis_url: str, redis_client: Any
) -> None:
    assert CLAIM_LANES == 2
    queue = Queue(redis_client)
    worker = make_worker(redis_url, queue, CONCURRENCY)
    limits = worker.operations["echo"].limits
    rids = []
    for i in range(BACKLOG):  # queued: no worker is registered idle yet
        rid = new_request_id("echo", queue.now_ms())
        res = await queue.submit(NewRequest("echo", rid, "anonymous", f'{{"i":{i}}}', limits))
        assert res.outcome == "created" and not res.started
        rids.append(rid)

    # Which lane asked, how many slots it asked for and how many jobs it got (observed on the
    # real claim, which runs unchanged).
    claims: list[tuple[str, int, int]] = []
    claim_shard = queue.claim_shard

    async def observed(op: str, *args: Any, **kwargs: Any) -> Claimed:
        got = await claim_shard(op, *args, **kwargs)
        task = asyncio.current_task()
        if op == "echo" and task is not None:
            claims.append((task.get_name(), args[2], len(got.jobs)))
        return got

    queue.claim_shard = observed  # type: ignore[method-assign]
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while await redis_client.zcard(keys.pending("echo")) or await redis_client.zcard(
                keys.running("echo")
            ):
                await asyncio.sleep(0.01)
        for rid in rids:
            snap = await queue.read("echo", rid)
            assert snap is not None and snap.record["status"] == "succeeded"
        assert max(asked for _, asked, _ in claims) <= CONCURRENCY // CLAIM_LANES
        taken = {name: 0 for name, _, _ in claims}
        for name, _, got in claims:
            taken[name] += got
        assert sum(taken.values()) == BACKLOG
        # Both lanes took part: the main loop and the second lane.
        assert taken.get("claim:echo:0", 0) > 0
        assert taken.get("claim:echo:0:1", 0) > 0
    finally:
        await worker.shutdown(1)
        await stop(run)
