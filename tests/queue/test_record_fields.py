"""A record's field counts, which ``start.lua`` and ``finish.lua`` read by (see
``includes/record_fields.lua``): a record with exactly the fields every request has at that
step, or those and 'wait', is read by the fields it holds; any other is read in full.

A new field on every record must change the counts there, or every start and finish would
take the full read; a wrong count would make them skip a field a record has. The boundary
cases (one optional field that is not 'wait') must still see that field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis.asyncio as aredis

from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue

LIMITS = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=100, retry_backoff=1.0)
INCLUDE = Path(__file__).parents[2] / "service/queue/lua/includes/record_fields.lua"


def counts() -> tuple[int, int]:
    text = INCLUDE.read_text()
    found = re.search(r"local RECORD_FIELDS = \{new = (\d+), running = (\d+)\}", text)
    assert found is not None
    return int(found[1]), int(found[2])


@pytest.fixture
def queue(redis_client: aredis.Redis) -> Queue:
    return Queue(redis_client)


async def submit(queue: Queue, **options: object) -> str:
    rid = new_request_id("echo", queue.now_ms())
    req = NewRequest("echo", rid, "alice", '{"x":1}', LIMITS, **options)  # type: ignore[arg-type]
    assert (await queue.submit(req)).outcome == "created"
    return rid


async def fields(redis_client: aredis.Redis, rid: str) -> set[str]:
    names = await redis_client.hkeys(keys.record("echo", rid))
    return {f.decode() if isinstance(f, bytes) else f for f in names}


async def test_every_request_has_the_counted_fields_when_queued_and_when_running(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    new, running = counts()
    plain, waited = await submit(queue), await submit(queue, waited=True)
    assert len(await fields(redis_client, plain)) == new
    assert await fields(redis_client, waited) == await fields(redis_client, plain) | {"wait"}
    jobs, _ = await queue.claim("echo", "w1", "t1", 10, lease=30, worker_ttl=10)
    assert {j.request_id for j in jobs} == {plain, waited}
    assert len(await fields(redis_client, plain)) == running
    assert await fields(redis_client, waited) == await fields(redis_client, plain) | {"wait"}
    # A request handed to an idle worker at its submit is running with the same fields.
    for job in jobs:
        await queue.finish(job, "succeeded", "1")
    await queue.claim("echo", "w1", "t2", 10, lease=30, worker_ttl=10, idle=4)
    handed = await submit(queue)
    [job] = await queue.wait_for_work("echo", "w1", 1)
    assert job.request_id == handed
    assert len(await fields(redis_client, handed)) == running


async def test_a_start_sees_the_one_optional_field_that_is_not_wait(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    new, _ = counts()
    rid = await submit(queue, queue_timeout=60.0)
    assert len(await fields(redis_client, rid)) == new + 1  # qdl
    assert await redis_client.zcard(keys.deadlines("echo")) == 1
    jobs, _ = await queue.claim("echo", "w1", "t1", 10, lease=30, worker_ttl=10)
    assert [j.request_id for j in jobs] == [rid]
    # Started: its queue deadline no longer applies (a start that missed qdl leaves it, and
    # the sweep would fail the request while it runs).
    assert await redis_client.zcard(keys.deadlines("echo")) == 0


async def test_a_finish_sees_the_one_optional_field_that_is_not_wait(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    _, running = counts()
    streamed, waited = await submit(queue), await submit(queue, waited=True)
    jobs, _ = await queue.claim("echo", "w1", "t1", 10, lease=30, worker_ttl=10)
    await queue.read("echo", streamed, watch_client="alice")  # a stream opens: sse = 1
    assert await fields(redis_client, streamed) >= {"sse"}
    assert len(await fields(redis_client, streamed)) == running + 1
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.watched_channel("echo"))
        await ps.get_message(timeout=1)
        for job in jobs:
            assert await queue.finish(job, "succeeded", '{"r":1}') == "succeeded"
        seen = {}
        for _ in range(2):
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=2)
            assert msg is not None
            head, _, _, body = msg["data"].split(b" ", 3)
            seen[head.decode()] = json.loads(body)
    # Both outcomes reach the API processes: the streamed one's (its sse field read), and the
    # waited one's with its result (its wait field read).
    assert seen[streamed]["rec"]["status"] == "succeeded"
    assert seen[waited]["rec"]["status"] == "succeeded" and seen[waited]["res"] == '{"r":1}'
