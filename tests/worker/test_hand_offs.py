"""An idle worker handed requests one after another: no claim between them, nothing missed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import NewRequest, Queue
from service.registry import build_operations
from service.runtime.config import settings_from_dict
from service.runtime.tasks import stop
from service.worker import worker as worker_module
from service.worker.worker import Worker
from tests.support.runs import finished

ROOT = Path(__file__).resolve().parents[2]


def make_worker(redis_url: str, queue: Queue) -> Worker:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"]["url"] = redis_url
    # Blocking pops (and idle registrations) of 4 s: a claim in the test is not a timeout's.
    raw["worker"].update(lease_seconds=30, idle_check_seconds=30)
    settings = settings_from_dict(raw)
    return Worker(queue, build_operations(settings), settings.worker)


async def submit(queue: Queue, worker: Worker, op: str, body: str) -> tuple[str, bool]:
    """Submit; the request id and whether it was handed straight to the idle worker."""
    rid = new_request_id(op, queue.now_ms())
    res = await queue.submit(NewRequest(op, rid, "anonymous", body, worker.operations[op].limits))
    assert res.outcome == "created"
    return rid, res.started


async def test_requests_handed_one_after_another_need_no_claim_between_them(
    redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "RECLAIM_SECONDS", 60.0)  # no claim for its age
    queue = Queue(redis_client)
    worker = make_worker(redis_url, queue)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not await redis_client.zcard(keys.idle("echo")):  # its first claim: idle
                await asyncio.sleep(0.01)
        claimed_at = worker._claimed_at[("echo", 0)]
        for i in range(5):
            rid, handed = await submit(queue, worker, "echo", f'{{"i":{i}}}')
            assert handed, f"request {i} was queued: the worker was not registered idle again"
            snap = await finished(queue, "echo", rid)
            assert snap.record["status"] == "succeeded" and snap.result == f'{{"i":{i}}}'
        assert worker._claimed_at[("echo", 0)] == claimed_at  # each finish registered it
    finally:
        await worker.shutdown(1)
        await stop(run)


async def test_a_request_queued_while_a_handed_run_runs_starts_without_waiting_for_it(
    redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "RECLAIM_SECONDS", 60.0)
    queue = Queue(redis_client)
    worker = make_worker(redis_url, queue)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not await redis_client.zcard(keys.idle("sleep")):
                await asyncio.sleep(0.01)
        long, handed = await submit(queue, worker, "sleep", '{"seconds": 3}')
        assert handed
        # The worker went back to its blocking pop unregistered: this one is queued, and the
        # submit's wake-up marker ends the pop, so a claim starts it alongside the first.
        short, handed = await submit(queue, worker, "sleep", '{"seconds": 0}')
        assert not handed
        assert (await finished(queue, "sleep", short)).record["status"] == "succeeded"
        long_snap = await queue.read("sleep", long)
        assert long_snap is not None and long_snap.record["status"] == "running"
        assert (await finished(queue, "sleep", long)).record["status"] == "succeeded"
    finally:
        await worker.shutdown(1)
        await stop(run)
