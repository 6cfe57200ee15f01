"""A live slot migration on the 3-master cluster: an operation's slot moves from one master to
another (``CLUSTER SETSLOT`` IMPORTING/MIGRATING, ``MIGRATE`` of its keys, ``SETSLOT NODE`` on
every master) while requests are submitted, claimed and finished. Every request accepted
finishes exactly once, and the queue is not forked (no key of the slot is left on the source).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from tests.support.cluster import LocalCluster, cmd

OP = "echo"
LIMITS = Limits(attempts=1, timeout=30, result_ttl=600, max_queue_depth=100_000, retry_backoff=1)
REQUESTS = 400


def _migrate(cluster: LocalCluster, slot: int, src: Any, dst: Any) -> int:
    """Move ``slot`` from ``src`` to ``dst`` the way ``valkey-cli --cluster reshard`` does;
    how many keys moved."""
    cmd(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id)
    cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id)
    moved = 0
    while True:
        names = cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, 20)
        if not names:
            break
        cmd(src, "MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *names)
        moved += len(names)
    # The new owner first, then the old one (it then redirects with MOVED), then the rest.
    for node in (dst, src, *[m for m in cluster.masters if m not in (src, dst)]):
        cmd(node, "CLUSTER", "SETSLOT", slot, "NODE", dst.id)
    return moved


@pytest.mark.parametrize("redis_backend", ["cluster"])
async def test_a_queue_keeps_working_while_its_slot_moves(
    redis_cluster: LocalCluster, redis_client: Any
) -> None:
    queue = Queue(redis_client)
    slot = keys.key_slot(OP)
    src = redis_cluster.master_of(keys.prefix(OP) + "x")
    dst = next(m for m in redis_cluster.masters if m is not src)
    accepted: list[str] = []
    finished: dict[str, int] = {}
    started = asyncio.Event()

    async def submit() -> None:
        for i in range(REQUESTS):
            rid = new_request_id(OP, queue.now_ms())
            await queue.submit(NewRequest(OP, rid, "anon", '{"x": 1}', LIMITS))
            accepted.append(rid)
            if i == REQUESTS // 4:
                started.set()  # the migration starts with a backlog and submits going on

    async def work() -> None:
        n = 0
        while len(finished) < REQUESTS:
            jobs, _ = await queue.claim(OP, "w1", f"t{n}", 16, lease=30, worker_ttl=30)
            n += 1
            for job in jobs:
                if await queue.finish(job, "succeeded", '{"ok": true}') == "succeeded":
                    finished[job.request_id] = finished.get(job.request_id, 0) + 1
            if not jobs:
                await asyncio.sleep(0.005)

    async def move() -> int:
        await started.wait()
        return await asyncio.to_thread(_migrate, redis_cluster, slot, src, dst)

    try:
        async with asyncio.timeout(30):
            _, _, moved = await asyncio.gather(submit(), work(), move())
        assert moved > 0
        assert sorted(finished) == sorted(accepted) and set(finished.values()) == {1}
        assert cmd(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # not forked
        assert cmd(dst, "CLUSTER", "COUNTKEYSINSLOT", slot) > 0
        for rid in accepted[:: REQUESTS // 10]:
            snapshot = await queue.read(OP, rid)
            assert snapshot is not None and snapshot.record["status"] == "succeeded"
    finally:
        # The session's cluster goes back to its even slot ranges for the other tests.
        owner = redis_cluster.master_of(keys.prefix(OP) + "x")
        if owner is not src:
            await asyncio.to_thread(_migrate, redis_cluster, slot, owner, src)
        redis_cluster.wait_ok()
