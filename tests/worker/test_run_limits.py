"""A run's limits (timeout, attempts, retry backoff) are the worker's settings of the operation:
a record holds none, so a request queued under other settings runs under the worker's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from service.registry import build_operations
from service.runtime.config import settings_from_dict
from service.runtime.tasks import stop
from service.worker.worker import Worker
from tests.support.runs import finished

ROOT = Path(__file__).resolve().parents[2]
OPS = {
    "flaky": {"handler": "tests.support.handlers:flaky", "attempts": 3, "retry_backoff": 0.05},
    "hang": {"handler": "tests.support.handlers:hang", "timeout": 0.2, "attempts": 1},
}
# What the submitting API had configured: one attempt, an hour's timeout, a long backoff.
API_LIMITS = Limits(attempts=1, timeout=3600, result_ttl=60, max_queue_depth=100, retry_backoff=60)


def make_worker(redis_url: str, queue: Queue) -> Worker:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"]["url"] = redis_url
    raw["operations"].update(OPS)
    settings = settings_from_dict(raw)
    return Worker(queue, build_operations(settings), settings.worker)


async def test_a_request_runs_under_the_workers_limits_not_those_it_was_queued_with(
    redis_url: str, redis_client: Any
) -> None:
    queue = Queue(redis_client)
    rids = {}
    for op, body in (("flaky", '{"succeed_on":3}'), ("hang", "{}")):
        rids[op] = rid = new_request_id(op, queue.now_ms())
        res = await queue.submit(NewRequest(op, rid, "alice", body, API_LIMITS))
        assert res.outcome == "created"
        raw: Any = await redis_client.hgetall(keys.record(op, rid))
        assert {b"id", b"attempt", b"ttl"} <= set(raw)
        assert not {b"timeout", b"max_att", b"backoff"} & set(raw)  # a record holds no limits
    worker = make_worker(redis_url, queue)
    run = asyncio.create_task(worker.run())
    try:
        # Three attempts, each retry after the worker's backoff (not the API's minute).
        snap = await finished(queue, "flaky", rids["flaky"])
        assert snap.record["status"] == "succeeded" and snap.record["attempt"] == "3"
        assert snap.result is not None and json.loads(snap.result) == {"attempt": 3}
        # Stopped at the worker's 0.2 s, not the API's hour.
        snap = await finished(queue, "hang", rids["hang"])
        assert snap.record["status"] == "failed"
        error = json.loads(snap.record["error"])
        assert error["type"].endswith("timeout")
        assert error["detail"] == "the operation did not finish within 0.2 s"
    finally:
        await worker.shutdown(1)
        await stop(run)


async def test_a_record_an_older_release_left_with_its_limits_runs_under_the_workers(
    redis_url: str, redis_client: Any
) -> None:
    queue = Queue(redis_client)
    rid = new_request_id("flaky", queue.now_ms())
    await queue.submit(NewRequest("flaky", rid, "alice", '{"succeed_on":2}', API_LIMITS))
    # As an older release wrote it: one attempt at most, an hour's timeout.
    old = {"max_att": "1", "timeout": "3600000", "backoff": "60000"}
    await redis_client.hset(keys.record("flaky", rid), mapping=old)
    worker = make_worker(redis_url, queue)
    run = asyncio.create_task(worker.run())
    try:
        snap = await finished(queue, "flaky", rid)
        assert snap.record["status"] == "succeeded" and snap.record["attempt"] == "2"
    finally:
        await worker.shutdown(1)
        await stop(run)
