"""The Lua scripts' state transitions and edge cases, against a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.queue import ids, keys, scripts
from service.queue.ids import ID_LEN, looks_like_id, new_request_id
from service.queue.scripts import (
    ClaimArgv,
    FinishCallArgv,
    FinishCallKeys,
    StartArgv,
    StartCallArgv,
    StartCallKeys,
    SubmitCallArgv,
    SubmitCallKeys,
)
from service.queue.store import (
    Job,
    Limits,
    NewRequest,
    Queue,
    Rearm,
    Waiter,
    _claim_keys,
    _finish_fixed,
    _start_keys,
    _submit_fixed,
)
from service.runtime.batcher import FLUSH_AT

LIMITS = Limits(attempts=2, timeout=10, result_ttl=60, max_queue_depth=5, retry_backoff=1.0)


class Clock:
    """A controllable clock (the only thing tests fake)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(redis_client: aredis.Redis, clock: Clock) -> Queue:
    return Queue(redis_client, clock=clock)


async def submit(
    queue: Queue,
    op: str = "echo",
    priority: int = 0,
    limits: Limits = LIMITS,
    idempotency_key: str = "",
    body_hash: str = "",
) -> str:
    rid = new_request_id(op, queue.now_ms())
    res = await queue.submit(
        NewRequest(
            op,
            rid,
            "alice",
            '{"x":1}',
            limits,
            priority=priority,
            idempotency_key=idempotency_key,
            body_hash=body_hash,
        )
    )
    assert res.outcome == "created"
    return rid


async def claim(queue: Queue, n: int = 10, token: str = "t1", op: str = "echo") -> list[Job]:
    jobs, _ = await queue.claim(op, "w1", token, n, lease=30, worker_ttl=10)
    return jobs


def test_ids_are_url_safe_time_ordered_and_name_their_operation() -> None:
    a = new_request_id("echo", 1_000)
    b = new_request_id("echo", 2_000)
    assert len(a) == ID_LEN and looks_like_id(a)
    assert a < b
    assert a.endswith(keys.op_code("echo")) and not a.endswith(keys.op_code("sleep"))
    assert len({new_request_id("echo", 1_000) for _ in range(1000)}) == 1000


def test_ids_are_the_time_then_random_characters_then_the_operation_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = bytes(range(256)) * 20
    monkeypatch.setattr("service.queue.ids.os.urandom", lambda n: pool[:n])
    monkeypatch.setattr(ids, "_pool", "")
    for now in (0, 1_764_000_000_123, 2**50 - 1, 2**50 + 5):
        rid = new_request_id("x", now)
        assert rid[:10] == keys.encode_base32(now % 2**50, 10)
        assert rid[30:] == keys.op_code("x")
    # Each random character is one CSPRNG byte's low 5 bits...
    monkeypatch.setattr(ids, "_pool", "")
    chars = "".join(new_request_id("x", 7)[10:30] for _ in range(256))
    assert chars == "".join(keys.ALPHABET[b & 31] for b in pool[: len(chars)])
    # ...and the 256 byte values map to each of the 32 characters 8 times: uniform.
    assert Counter(ids._BYTE_TO_CHAR.decode()) == dict.fromkeys(keys.ALPHABET, 8)


def test_every_key_carries_the_operation_hash_tag() -> None:
    for k in (keys.record("echo", "x"), keys.client_index("echo", "c"), keys.key("echo", "wake")):
        assert "{echo}" in k


async def test_position_is_fifo_within_priority_and_higher_priority_first(queue: Queue) -> None:
    a = await submit(queue)
    b = await submit(queue)
    c = await submit(queue, priority=5)
    d = await submit(queue, priority=-3)
    positions = {rid: (await queue.read("echo", rid)).position for rid in (a, b, c, d)}  # type: ignore[union-attr]
    assert positions == {c: 0, a: 1, b: 2, d: 3}
    jobs = await claim(queue, 4)
    assert [j.request_id for j in jobs] == [c, a, b, d]


async def test_positions_answered_by_one_merged_submit_run_are_the_ranks_after_each(
    queue: Queue,
) -> None:
    # submit.lua ranks a call that queues last without ZRANK, from the depth it keeps through
    # the run: every answer must still be the rank the request had right after it was added.
    big = Limits(1, 1, 60, 1000, 1)
    # A lower priority already waiting: not every call goes last.
    await submit(queue, priority=-1, limits=big)
    prios = [0, 0, 5, -3, 0, -3, 10, -1, 0]
    reqs = [
        NewRequest("echo", new_request_id("echo", queue.now_ms()), "alice", "{}", big, priority=p)
        for p in prios
    ]
    answers = await asyncio.gather(*map(queue.submit, reqs))  # one tick: one script run
    assert all(a.outcome == "created" for a in answers)
    # The queue's order: priority first (higher first), then arrival.
    order = [(-1, 0)]  # (priority, arrival) of the request queued first
    expected = []
    for i, p in enumerate(prios, start=1):
        order.append((p, i))
        ranked = sorted(order, key=lambda e: (-e[0], e[1]))
        expected.append(ranked.index((p, i)))
    assert [a.position for a in answers] == expected
    assert await queue.depth("echo") == 1 + len(prios)
    for req in reqs:
        record = (await queue.read("echo", req.id)).record  # type: ignore[union-attr]
        assert record["evseq"] == "1"  # the first event's number, written with the record


async def test_claim_on_empty_queue_returns_nothing(queue: Queue) -> None:
    jobs, due = await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10)
    assert jobs == [] and due is None


async def test_claim_marks_running_with_a_lease(queue: Queue, redis_client: aredis.Redis) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    assert job.input == '{"x":1}' and job.attempt == 1 and job.client == "alice"
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "running" and snap.position is None
    deadline = await redis_client.zscore(keys.key("echo", "running"), keys.member(rid, "alice"))
    assert deadline == queue.now_ms() + 30_000


async def test_a_claimed_jobs_input_keeps_its_newlines(queue: Queue) -> None:
    # start.lua answers attempt, created and the input in one string, the input last.
    rid = new_request_id("echo", queue.now_ms())
    body = '{"x":\n"a\nb\n\n"}\n'
    await queue.submit(NewRequest("echo", rid, "alice", body, LIMITS))
    [job] = await claim(queue)
    assert (job.request_id, job.input, job.attempt) == (rid, body, 1)
    assert job.created_ms == queue.now_ms()


async def test_finish_stores_result_with_ttl_and_a_second_finish_is_refused(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    assert await queue.finish(job, "succeeded", '{"ok":true}') == "succeeded"
    assert await queue.finish(job, "failed", "{}") == "lost"
    snap = await queue.read("echo", rid, with_result=True)
    assert snap is not None
    assert snap.record["status"] == "succeeded" and snap.result == '{"ok":true}'
    assert 0 < await redis_client.ttl(keys.record("echo", rid)) <= 60
    assert int(snap.record["expires"]) == queue.now_ms() + 60_000
    assert "input" not in await redis_client.hkeys(keys.record("echo", rid))


async def test_queue_depth_limit(queue: Queue) -> None:
    for _ in range(LIMITS.max_queue_depth):
        await submit(queue)
    rid = new_request_id("echo", queue.now_ms())
    res = await queue.submit(NewRequest("echo", rid, "alice", "{}", LIMITS))
    assert res.outcome == "full"


async def test_idempotency_replays_and_detects_a_different_body(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    rid = await submit(queue, idempotency_key="k1", body_hash="h1")
    other = new_request_id("echo", queue.now_ms())
    replay = await queue.submit(
        NewRequest("echo", other, "alice", "{}", LIMITS, idempotency_key="k1", body_hash="h1")
    )
    assert replay.outcome == "replay" and replay.request_id == rid and replay.position == 0
    conflict = await queue.submit(
        NewRequest("echo", other, "alice", "{}", LIMITS, idempotency_key="k1", body_hash="h2")
    )
    assert conflict.outcome == "conflict"
    assert await queue.depth("echo") == 1
    assert 86_000 < await redis_client.ttl(keys.idempotency("echo", "alice", "k1")) <= 86_400


async def test_expired_lease_requeues_at_the_head_with_the_next_attempt(
    queue: Queue, clock: Clock
) -> None:
    first = await submit(queue)
    [job] = await claim(queue, 1)
    later = await submit(queue)
    clock.now += 31  # the worker died: nobody renewed the lease
    jobs = await claim(queue, 1, token="t2")
    assert [j.request_id for j in jobs] == [first] and jobs[0].attempt == 2
    assert await queue.finish(job, "succeeded", "1") == "lost"  # the dead worker's token
    assert (await queue.read("echo", later)).position == 0  # type: ignore[union-attr]


async def test_a_lost_run_uses_no_attempt_and_past_max_lost_fails_with_worker_lost(
    queue: Queue, clock: Clock
) -> None:
    once = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=5, retry_backoff=1.0)
    rid = await submit(queue, limits=once)
    outcomes: list[str] = []
    for run in (1, 2, 3):
        jobs, _ = await queue.claim(
            "echo", "w1", f"t{run}", 1, lease=30, worker_ttl=10, max_lost=2,
            on_recovered=outcomes.append,
        )  # fmt: skip
        assert [(j.request_id, j.attempt) for j in jobs] == [(rid, run)]
        snap = await queue.read("echo", rid)
        assert snap is not None and snap.record["status"] == "running"
        assert snap.record.get("lost", "0") == str(run - 1)
        clock.now += 31  # the worker died: nobody renewed the lease
    jobs, _ = await queue.claim(
        "echo", "w1", "t4", 1, lease=30, worker_ttl=10, max_lost=2, on_recovered=outcomes.append
    )
    assert jobs == []
    assert outcomes == ["rerun", "rerun", "worker_lost"]
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "failed"
    assert snap.record["lost"] == "3" and snap.record["attempt"] == "3"
    error = json.loads(snap.record["error"])
    assert error["type"].endswith("worker-lost") and "3 runs lost" in error["detail"]


async def test_a_rerun_after_a_lost_run_keeps_its_retries(queue: Queue, clock: Clock) -> None:
    # attempts=2: one lost run, then a retryable failure is still retried once.
    rid = await submit(queue)
    await claim(queue, 1)
    clock.now += 31
    [job] = await claim(queue, 1, token="t2")
    assert job.attempt == 2
    assert await queue.finish(job, "retry", "{}", retry_delay=1, attempts=2) == "retrying"
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "queued"
    assert (snap.record["attempt"], snap.record["lost"]) == ("3", "1")


async def test_renew_extends_the_lease_and_reports_lost_or_cancel(
    queue: Queue, clock: Clock
) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    clock.now += 20
    assert await queue.renew(job, 30) == "ok"
    clock.now += 20  # past the first deadline, within the renewed one
    assert await claim(queue, token="t2") == []
    await queue.cancel("echo", rid, "alice", "{}")
    assert await queue.renew(job, 30) == "cancel"
    stranger = Job(rid, "echo", "", 1, "alice", "not-the-token")
    assert await queue.renew(stranger, 30) == "lost"


async def test_cancel_queued_running_finished_and_other_clients(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    queued = await submit(queue)
    running = await submit(queue)
    assert await queue.cancel("echo", queued, "mallory", "{}") == ("missing", None)
    outcome, rec = await queue.cancel("echo", queued, "alice", '{"title":"Canceled"}')
    assert outcome == "canceled" and rec is not None and rec["status"] == "canceled"
    assert await queue.depth("echo") == 1
    assert (await queue.cancel("echo", queued, "alice", "{}"))[0] == "already"
    [job] = await claim(queue)
    assert job.request_id == running
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.control_channel("echo"))
        await ps.get_message(timeout=1)
        outcome, rec = await queue.cancel("echo", running, "alice", "{}")
        assert outcome == "requested" and rec is not None and rec["cancel"] == "1"
        msg = await ps.get_message(timeout=2)
        assert msg is not None and json.loads(msg["data"]) == {"cancel": running}
    assert await queue.finish(job, "canceled", "{}") == "canceled"
    assert (await queue.cancel("echo", running, "alice", "{}"))[0] == "already"
    done = await submit(queue)
    [job] = await claim(queue)
    await queue.finish(job, "succeeded", "1")
    assert (await queue.cancel("echo", done, "alice", "{}"))[0] == "conflict"


async def test_cancel_wins_against_a_later_claim(queue: Queue) -> None:
    rid = await submit(queue)
    assert (await queue.cancel("echo", rid, "alice", "{}"))[0] == "canceled"
    assert await claim(queue) == []


async def test_claim_wins_against_a_later_cancel(queue: Queue) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    assert (await queue.cancel("echo", rid, "alice", "{}"))[0] == "requested"
    # A handler that fails after cancel was requested ends canceled, not failed.
    assert await queue.finish(job, "failed", "{}") == "canceled"


async def test_retry_waits_out_its_backoff_then_runs_again(queue: Queue, clock: Clock) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    assert await queue.finish(job, "retry", '{"title":"x"}', 2.0, attempts=2) == "retrying"
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "queued"
    jobs, due = await queue.claim("echo", "w1", "t2", 10, lease=30, worker_ttl=10)
    assert jobs == [] and due == queue.now_ms() + 2000
    clock.now += 2
    [again] = await claim(queue, token="t3")
    assert again.request_id == rid and again.attempt == 2
    # The last attempt's retry fails the request with the given error.
    assert await queue.finish(again, "retry", '{"title":"gave up"}', 1.0, attempts=2) == "failed"
    snap = await queue.read("echo", rid)
    assert snap is not None and json.loads(snap.record["error"]) == {"title": "gave up"}


async def test_release_hands_back_to_the_head(queue: Queue) -> None:
    first = await submit(queue)
    [job] = await claim(queue, 1)
    second = await submit(queue)
    assert await queue.release(job) == "released"
    snap = await queue.read("echo", first)
    assert snap is not None and snap.record["status"] == "queued" and snap.position == 0
    assert snap.record["attempt"] == "1"
    assert (await queue.read("echo", second)).position == 1  # type: ignore[union-attr]


async def test_progress_is_stored_and_published(queue: Queue, redis_client: aredis.Redis) -> None:
    rid = await submit(queue)
    [job] = await claim(queue)
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.events_channel("echo"))
        await ps.get_message(timeout=1)
        assert await queue.progress(job, 40, "working") == "ok"
        msg = await ps.get_message(timeout=2)
    assert msg is not None
    head, client, _gid, payload = msg["data"].split(b" ", 3)
    assert head.decode() == rid and client == b"alice"
    event = json.loads(payload)
    assert event["kind"] == "progress" and event["rec"]["evseq"] == "3"
    assert json.loads(event["rec"]["progress"]) == {"percent": 40, "message": "working"}
    assert "input" not in event["rec"]


async def test_every_state_change_publishes_an_increasing_event(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.events_channel("echo"))
        await ps.get_message(timeout=1)
        await submit(queue)
        [job] = await claim(queue)
        await queue.finish(job, "succeeded", "1")
        seen = []
        for _ in range(3):
            msg = await ps.get_message(timeout=2)
            assert msg is not None
            rec = json.loads(msg["data"].split(b" ", 3)[3])["rec"]
            seen.append((rec["status"], rec["evseq"]))
    assert seen == [("queued", "1"), ("running", "2"), ("succeeded", "3")]


async def test_throughput_feeds_stats(queue: Queue, clock: Clock) -> None:
    for _ in range(3):
        await submit(queue)
    jobs = await claim(queue)
    clock.now += 0.5
    for job in jobs:
        await queue.finish(job, "succeeded", "1")
    stats = await queue.stats("echo")
    assert (stats.queued, stats.running, stats.workers) == (0, 0, 1)
    assert stats.finished_recently == 3 and stats.run_ms_recently == 1500
    clock.now += 120  # outside the window
    assert (await queue.stats("echo")).finished_recently == 0


async def test_listing_is_newest_first_with_a_cursor(queue: Queue, clock: Clock) -> None:
    ids = []
    for _ in range(5):
        ids.append(await submit(queue))
        clock.now += 0.01
    page = await queue.list_ids("echo", "alice", None, 2)
    assert [rid for rid, _ in page] == [ids[4], ids[3]]
    page2 = await queue.list_ids("echo", "alice", (page[-1][1], page[-1][0]), 2)
    assert [rid for rid, _ in page2] == [ids[2], ids[1]]
    assert await queue.list_ids("echo", "bob", None, 10) == []


async def test_scripts_are_reloaded_after_the_server_forgets_them(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    big = Limits(1, 1, 60, 1000, 1)
    await submit(queue, limits=big)
    await redis_client.function_flush()
    await submit(queue, limits=big)  # one call alone
    await redis_client.function_flush()
    rids = await asyncio.gather(*(submit(queue, limits=big) for _ in range(20)))  # one pipeline
    assert len(set(rids)) == 20 and await queue.depth("echo") == 22


async def test_a_failed_script_reload_fails_the_calls_instead_of_hanging_them(
    redis_client: aredis.Redis, redis_url: str
) -> None:
    # A client that may run scripts but not load them: the reload after NOSCRIPT fails, as
    # it does when the server goes away again right after a restart.
    await redis_client.acl_setuser(
        "noload", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-script|load", "-function|load"],
    )  # fmt: skip
    client = aredis.Redis.from_url(redis_url, username="noload", password="pw")
    try:
        queue = Queue(client)
        await redis_client.function_flush()
        with pytest.raises(ResponseError, match="no permissions"):
            async with asyncio.timeout(5):
                await submit(queue)
    finally:
        await client.aclose()
        await redis_client.acl_deluser("noload")


async def test_concurrent_calls_share_pipelines_of_at_most_flush_at(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = Limits(1, 1, 60, 1000, 1)
    await submit(queue, limits=big)  # the script is loaded (an earlier test may flush them)
    batches: list[list[int]] = []  # per pipeline, the calls each of its commands carries
    execute = queue.batcher._execute

    async def counting(batch: Any, *written: Any) -> list[Any]:
        batches.append([len(f) if isinstance(f, list) else 1 for _, _, f in batch])
        return await execute(batch, *written)

    monkeypatch.setattr(queue.batcher, "_execute", counting)
    await asyncio.gather(*(submit(queue, limits=big) for _ in range(20)))
    assert batches == [[20]]  # one tick, one pipeline, its submits merged into one call
    batches.clear()
    await asyncio.gather(*(submit(queue, limits=big) for _ in range(FLUSH_AT + 18)))
    assert batches == [[FLUSH_AT], [18]]  # the first left while the rest were being made
    assert await queue.depth("echo") == 1 + 20 + FLUSH_AT + 18
    batches.clear()
    # Each operation's submits are their own call (their keys live in another slot).
    await asyncio.gather(*(submit(queue, op, limits=big) for op in ["echo", "sleep"] * 3))
    assert batches == [[3, 3]]
    assert await queue.depth("echo") == 1 + 20 + FLUSH_AT + 18 + 3
    assert await queue.depth("sleep") == 3


async def test_a_failing_submit_in_a_merged_call_fails_alone(queue: Queue) -> None:
    await submit(queue)  # the script is loaded (an earlier test may flush them)
    good = [new_request_id("echo", queue.now_ms()) for _ in range(2)]
    bad = new_request_id("echo", queue.now_ms())

    def call(rid: str, priority: Any) -> Awaitable[Any]:
        return queue._submit_call(
            _submit_fixed("echo", LIMITS),
            SubmitCallKeys(
                keys.record("echo", rid),
                keys.client_index("echo", "alice"),
                keys.idempotency("echo", "alice", ""),
                keys.rate_limit("echo", "alice"),
                keys.glob("echo", "alice"),
                keys.cev("echo", "alice"),
            ),
            SubmitCallArgv(rid, "alice", priority, "{}", queue.now_ms(), ""),
        )

    replies = await asyncio.gather(
        call(good[0], 0), call(bad, "not a number"), call(good[1], 0), return_exceptions=True
    )
    first, failed, last = replies
    assert isinstance(failed, ResponseError)
    assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
    # Created: each reply is its request's rank (behind the first submit's request).
    assert [first, last] == [1, 2]
    snaps = [await queue.read("echo", rid) for rid in good]
    assert [s.position if s else None for s in snaps] == [1, 2]
    assert await queue.depth("echo") == 3  # the first submit and the two good ones
    assert await queue.read("echo", bad) is None


async def test_a_ticks_finishes_go_as_one_script_run_and_a_failing_one_fails_alone(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    for _ in range(4):
        await submit(queue)
    loaded, first, bad, last = await claim(queue, 4)
    assert await queue.finish(loaded, "succeeded", "0") == "succeeded"  # the script is loaded
    # The bad call's record key holds a string: its finish fails at its first read.
    wrong = keys.record("echo", "wrong-type")
    await redis_client.set(wrong, "x")
    await redis_client.config_resetstat()

    def call(job: Job, record: str) -> Awaitable[Any]:
        fixed_keys, fixed_argv = _finish_fixed("echo")
        return scripts.FINISH.call_merged(
            queue.batcher,
            fixed_keys,
            fixed_argv,
            FinishCallKeys(
                record,
                keys.ev("echo", job.request_id),
                keys.glob("echo", job.client),
                keys.cev("echo", job.client),
            ),
            FinishCallArgv(job.request_id, job.token, queue.now_ms(), "succeeded", "1", 0),
        )

    replies = await asyncio.gather(
        call(first, keys.record("echo", first.request_id)),
        call(bad, wrong),
        call(last, keys.record("echo", last.request_id)),
        return_exceptions=True,
    )
    assert isinstance(replies[1], ResponseError)
    assert replies[0] == replies[2] == b"succeeded"
    stats: Any = await redis_client.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] == 1  # the three finishes: one script run
    assert await queue.finish(bad, "succeeded", "2") == "succeeded"  # untouched by the failure

    # Issued together through the queue, finishes merge the same way.
    for _ in range(3):
        await submit(queue)
    jobs = await claim(queue, 3)
    await redis_client.config_resetstat()
    outcomes = await asyncio.gather(*(queue.finish(j, "succeeded", "1") for j in jobs))
    assert outcomes == ["succeeded"] * 3
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] == 1


async def test_only_watched_requests_reach_the_watched_channel(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.watched_channel("echo"), keys.events_channel("echo"))
        for _ in range(2):
            await ps.get_message(timeout=1)
        unwatched = await submit(queue)
        rid = new_request_id("echo", queue.now_ms())
        await queue.submit(NewRequest("echo", rid, "alice", "{}", LIMITS, waited=True))
        for job in await claim(queue):
            await queue.finish(job, "succeeded", '{"r":1}')
        seen = []
        for _ in range(7):
            msg = await ps.get_message(timeout=2)
            assert msg is not None
            channel = msg["channel"].decode().rsplit(":", 1)[1]
            head, _, _, body = msg["data"].split(b" ", 3)
            seen.append((channel, head.decode(), json.loads(body)["rec"]["status"]))
    # Every change goes to "events"; a waiting caller gets only the outcome, with its result.
    assert [s for s in seen if s[0] == "watched"] == [("watched", rid, "succeeded")]
    assert len([s for s in seen if s[0] == "events"]) == 6
    assert ("events", unwatched, "queued") in seen


async def test_indexes_do_not_grow_for_ever(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    old = await submit(queue)
    await claim(queue)
    clock.now += LIMITS.result_ttl + 7 * 86400 + 1
    await submit(queue)
    index = await redis_client.zrange(keys.client_index("echo", "alice"), 0, -1)
    assert old.encode() not in index and len(index) == 1
    clock.now += 3601
    await queue.claim("echo", "w2", "t2", 1, lease=30, worker_ttl=10)
    workers = await redis_client.zrange(keys.key("echo", "workers"), 0, -1)
    assert workers == [b"w2"]


async def test_an_idle_worker_is_handed_the_next_request_already_leased(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    assert await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4) == ([], None)
    rid = new_request_id("echo", queue.now_ms())
    res = await queue.submit(NewRequest("echo", rid, "alice", '{"x":\n1}', LIMITS))
    assert res.outcome == "created" and res.started and res.position is None
    assert res.at_ms == queue.now_ms()
    # The worker's blocking pop returns the job itself: no claim.
    [job] = await queue.wait_for_work("echo", "w1", 1)
    assert (job.request_id, job.input, job.attempt, job.client) == (rid, '{"x":\n1}', 1, "alice")
    assert job.created_ms == queue.now_ms()
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "running"
    assert snap.record["started"] == str(queue.now_ms()) and snap.record["worker"] == "w1"
    assert (
        await redis_client.zscore(keys.key("echo", "running"), keys.member(rid, "alice"))
        == queue.now_ms() + 30_000
    )
    assert await queue.renew(job, 30) == "ok"
    # One registration, one hand-off: the next request waits in the queue for a claim.
    later = await submit(queue)
    assert (await queue.read("echo", later)).position == 0  # type: ignore[union-attr]
    assert await queue.wait_for_work("echo", "w1", 0.05) == []  # the wake marker
    assert await queue.finish(job, "succeeded", "1") == "succeeded"


async def test_a_hand_off_keeps_its_events_in_order(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.events_channel("echo"))
    await pubsub.get_message(timeout=1)
    rid = await submit(queue)
    statuses = []
    for _ in range(2):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert msg is not None
        statuses.append(json.loads(msg["data"].split(b" ", 3)[3])["rec"]["status"])
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert statuses == ["queued", "running"]
    assert (await queue.read("echo", rid)).record["evseq"] == "2"  # type: ignore[union-attr]


async def test_no_hand_off_past_waiting_requests_or_expired_registrations(
    queue: Queue, clock: Clock
) -> None:
    async def claim_one(worker: str) -> list[Job]:
        jobs, _ = await queue.claim("echo", worker, worker + "t", 1, 30, 10, idle=4)
        return jobs

    async def status(rid: str) -> tuple[str, int | None]:
        snap = await queue.read("echo", rid)
        assert snap is not None
        return snap.record["status"], snap.position

    first = await submit(queue)
    assert [j.request_id for j in await claim_one("w1")] == [first]
    # A claim that found work registers nothing.
    second = await submit(queue)
    assert await status(second) == ("queued", 0)
    [running] = await claim_one("w2")
    assert await claim_one("w1") == []  # registered idle
    # A request released to the head waits: the next submit must not overtake it.
    assert await queue.release(running) == "released"
    third = await submit(queue)
    assert await status(third) == ("queued", 1)
    assert [j.request_id for j in await claim_one("w2")] == [second]
    assert [j.request_id for j in await claim_one("w2")] == [third]
    # Now empty: handed over, and one registration is one hand-off.
    fourth = await submit(queue)
    assert await status(fourth) == ("running", None)
    fifth = await submit(queue)
    assert await status(fifth) == ("queued", 0)
    # A registration expires with the worker's wait.
    assert [j.request_id for j in await claim_one("w2")] == [fifth]
    assert await claim_one("w2") == []
    clock.now += 5
    late = await submit(queue)
    assert await status(late) == ("queued", 0)


async def test_a_hand_off_its_worker_never_took_runs_elsewhere_without_counting_an_attempt(
    queue: Queue, clock: Clock
) -> None:
    once = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=5, retry_backoff=1.0)
    await queue.claim("echo", "dead", "t", 10, lease=30, worker_ttl=10, idle=4)
    rid = await submit(queue, limits=once)
    # The worker died before its blocking pop took the job: its lease expires.
    clock.now += 31
    [job] = await claim(queue, token="t2")
    assert job.request_id == rid and job.attempt == 1
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "running"
    assert snap.record["worker"] == "w1"
    assert await queue.finish(job, "succeeded", "1") == "succeeded"


async def test_a_hand_off_its_worker_took_and_lost_is_rerun_as_a_lost_run(
    queue: Queue, clock: Clock
) -> None:
    once = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=5, retry_backoff=1.0)
    await queue.claim("echo", "dead", "t", 10, lease=30, worker_ttl=10, idle=4)
    rid = await submit(queue, limits=once)
    assert len(await queue.wait_for_work("echo", "dead", 1)) == 1  # taken, then the worker died
    clock.now += 31
    [job] = await claim(queue, token="t2")
    assert (job.request_id, job.attempt) == (rid, 2)
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "running" and snap.record["lost"] == "1"
    jobs, _ = await queue.claim("echo", "w1", "t3", 10, lease=30, worker_ttl=10, max_lost=0)
    assert jobs == []
    clock.now += 31
    jobs, _ = await queue.claim("echo", "w1", "t4", 10, lease=30, worker_ttl=10, max_lost=0)
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "failed"
    assert json.loads(snap.record["error"])["type"].endswith("worker-lost")


async def test_a_claim_takes_hand_offs_its_blocking_pop_missed(queue: Queue) -> None:
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    rid = await submit(queue)
    jobs, _ = await queue.claim("echo", "w1", "t2", 10, lease=30, worker_ttl=10, idle=4)
    assert [(j.request_id, j.token) for j in jobs] == [(rid, jobs[0].token)]
    assert jobs[0].token != "t2"  # the lease the submit gave it
    assert await queue.finish(jobs[0], "succeeded", "1") == "succeeded"


async def test_a_handed_runs_finish_registers_its_worker_idle_again_unless_requests_wait(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    idle_key = keys.idle("echo")
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    await submit(queue)
    [job] = await queue.wait_for_work("echo", "w1", 1)
    assert await redis_client.zcard(idle_key) == 0  # the hand-off took the registration
    rearm = Rearm("w1", 30, 4)
    assert await queue.finish(job, "succeeded", "1", rearm=rearm) == "succeeded"
    # Registered as a claim would have: the same member, expiring with the worker's wait.
    assert await redis_client.zrange(idle_key, 0, -1, withscores=True) == [
        (b"30000 w1", queue.now_ms() + 4000)
    ]
    second = await submit(queue)
    assert (await queue.read("echo", second)).record["status"] == "running"  # type: ignore[union-attr]
    [job] = await queue.wait_for_work("echo", "w1", 1)
    # Submitted while it ran: queued, with a wake-up marker; the finish registers nothing.
    queued = await submit(queue)
    assert await queue.finish(job, "succeeded", "1", rearm=rearm) == "succeeded"
    assert await redis_client.zcard(idle_key) == 0
    assert await queue.wait_for_work("echo", "w1", 1) == []  # the marker ends the pop at once
    [taken], _ = await queue.claim("echo", "w1", "t2", 10, lease=30, worker_ttl=10, idle=4)
    assert taken.request_id == queued


async def test_a_second_lanes_claim_leaves_the_idle_registration_and_wake_ups_alone(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    # The main loop found nothing and registered idle; a stop's wake-up waits in its signal.
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    signal = keys.signal("echo", "w1")
    await redis_client.rpush(signal, "")
    # The worker's other lane claims meanwhile (idle < 0: Worker._claim_lane).
    assert await queue.claim("echo", "w1", "t2", 5, lease=30, worker_ttl=10, idle=-1) == (
        [],
        None,
    )
    assert await redis_client.zrange(keys.idle("echo"), 0, -1) == [b"30000 w1"]
    assert await redis_client.llen(signal) == 1
    # So the next submit is still handed over, not queued behind a claim.
    await redis_client.delete(signal)
    rid = await submit(queue)
    assert (await queue.read("echo", rid)).record["status"] == "running"  # type: ignore[union-attr]
    # A main loop's claim takes the hand-off no pop took, as before.
    jobs, _ = await queue.claim("echo", "w1", "t3", 5, lease=30, worker_ttl=10, idle=4)
    assert [j.request_id for j in jobs] == [rid]


async def test_hand_offs_a_claim_takes_count_against_its_free_slots(queue: Queue) -> None:
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    handed = await submit(queue)  # to w1, which misses it
    waiting = await submit(queue)
    jobs, _ = await queue.claim("echo", "w1", "t2", 1, lease=30, worker_ttl=10, idle=4)
    assert [j.request_id for j in jobs] == [handed]
    assert (await queue.read("echo", waiting)).position == 0  # type: ignore[union-attr]


async def test_a_stopping_worker_is_handed_nothing_more_and_its_wait_ends(queue: Queue) -> None:
    await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
    rid = await submit(queue)
    [job] = await queue.unidle("echo", "w1", 30, wake=True)  # handed before it stopped
    assert job.request_id == rid
    assert await queue.wait_for_work("echo", "w1", 2) == []  # ended by the empty entry
    queued = await submit(queue)
    assert (await queue.read("echo", queued)).position == 0  # type: ignore[union-attr]
    assert await queue.unidle("echo", "w1", 30, wake=False) == []


async def test_a_waiter_reports_a_frozen_server_as_a_redis_timeout_and_recovers(
    queue: Queue, redis_client: aredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter = Waiter(redis_client)
    monkeypatch.setattr("service.queue.store.WAIT_MARGIN", 0.2)
    try:
        assert await queue.wait_for_work("echo", "w1", 0.05, waiter) == []  # connected
        await redis_client.client_pause(1000, all=True)
        with pytest.raises(RedisTimeoutError):
            await queue.wait_for_work("echo", "w1", 0.05, waiter)
        await redis_client.client_unpause()
        await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
        rid = await submit(queue)
        [job] = await queue.wait_for_work("echo", "w1", 1, waiter)  # on a fresh connection
        assert job.request_id == rid
    finally:
        await waiter.close()


async def test_a_waiter_whose_idle_connection_the_server_closed_pops_on_a_new_one(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    # The server restarted while the claim loop waited for a free slot (not in a pop): its
    # kept connection is closed. The next pop works, rather than failing once more after
    # the server is back (one more "redis unreachable" line per claim loop).
    waiter = Waiter(redis_client)
    before = {c["id"] for c in await redis_client.client_list()}
    try:
        assert await queue.wait_for_work("echo", "w1", 0.05, waiter) == []  # connected
        clients = await redis_client.client_list()
        (idle,) = [c for c in clients if c["id"] not in before and c["cmd"] == "blpop"]
        assert await redis_client.client_kill_filter(_id=idle["id"]) == 1
        await queue.claim("echo", "w1", "t", 10, lease=30, worker_ttl=10, idle=4)
        rid = await submit(queue)
        [job] = await queue.wait_for_work("echo", "w1", 1, waiter)
        assert job.request_id == rid
    finally:
        await waiter.close()


async def test_a_key_naming_an_expired_request_creates_a_new_one(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    old = await submit(queue, idempotency_key="k1", body_hash="h1")
    # It finished and its result_ttl ran out.
    await redis_client.zrem(keys.pending("echo"), keys.member(old, "alice"))
    await redis_client.delete(keys.record("echo", old))
    new = await submit(queue, idempotency_key="k1", body_hash="h1")
    assert new != old
    replay = await queue.submit(
        NewRequest("echo", "x", "alice", "{}", LIMITS, idempotency_key="k1", body_hash="h1")
    )
    assert (replay.outcome, replay.request_id, replay.position) == ("replay", new, 0)


async def test_a_request_popped_by_a_claim_whose_worker_died_before_starting_it_runs_again(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    first = await submit(queue)
    later = await submit(queue)
    # The claim's first step (claim.lua) moved it to running; its worker died before start.lua.
    member = keys.member(first, "alice")
    await redis_client.zrem(keys.pending("echo"), member)
    await redis_client.zadd(keys.running("echo"), {member: queue.now_ms() + 30_000})
    clock.now += 31
    # Back in its place, ahead of later, with no attempt used.
    jobs = await claim(queue, 1, token="t2")
    assert [(j.request_id, j.attempt) for j in jobs] == [(first, 1)]
    assert (await queue.read("echo", later)).position == 0  # type: ignore[union-attr]


async def test_a_request_between_the_claims_two_steps_reads_queued_at_position_zero(
    queue: Queue, clock: Clock
) -> None:
    first = await submit(queue)
    later = await submit(queue)
    now = queue.now_ms()
    k = keys.of("echo")
    claim_keys = _claim_keys("echo", "w1")
    # The claim's first step alone: the member moves from pending to running.
    res = await scripts.CLAIM.call(
        queue.batcher, claim_keys, ClaimArgv(now, 30_000, "w1", 1, 10_000, 0, "0")
    )
    assert [m.decode() for m in res[0]] == [keys.member(first, "alice")]

    async def status(rid: str) -> tuple[str, int | None]:
        snap = await queue.read("echo", rid)
        assert snap is not None
        return snap.record["status"], snap.position

    # Still queued, and next: never queued with no position.
    assert await status(first) == ("queued", 0)
    [row] = await queue.read_many("echo", "alice", [first])
    assert row is not None and (row.record["status"], row.position) == ("queued", 0)
    assert await status(later) == ("queued", 0)
    # The second step: started, it is running with no position.
    replies = await scripts.START.call_many(
        queue.batcher,
        _start_keys("echo"),
        StartArgv("t1", "w1", now, k.events_channel, k.watched_channel),
        [
            (
                StartCallKeys(
                    keys.record("echo", first),
                    keys.ev("echo", first),
                    keys.glob("echo", "alice"),
                    keys.cev("echo", "alice"),
                ),
                StartCallArgv(keys.member(first, "alice")),
            )
        ],
    )
    assert len(replies) == 1 and replies[0]
    assert await status(first) == ("running", None)
    assert await status(later) == ("queued", 0)


async def test_a_recovered_lease_runs_again_at_once_on_the_recovering_worker_with_a_free_slot(
    queue: Queue, clock: Clock
) -> None:
    a = await submit(queue)
    b = await submit(queue)
    assert len(await claim(queue, 2)) == 2
    clock.now += 31  # both leases expire
    # One free slot: one of them is leased straight to this claim (same step as its recovery),
    # the other is queued again at the head, with its next attempt.
    jobs = await claim(queue, 1, token="t2")
    assert len(jobs) == 1 and jobs[0].attempt == 2 and jobs[0].token == "t2"
    other = b if jobs[0].request_id == a else a
    snap = await queue.read("echo", jobs[0].request_id)
    assert snap is not None and snap.record["status"] == "running"
    assert snap.record["attempt"] == "2"
    snap = await queue.read("echo", other)
    assert snap is not None and (snap.record["status"], snap.position) == ("queued", 0)
    assert snap.record["attempt"] == "2"
    [again] = await claim(queue, 1, token="t3")
    assert (again.request_id, again.attempt) == (other, 2)
    # Both run under their claims' tokens.
    assert await queue.finish(jobs[0], "succeeded", "1") == "succeeded"
    assert await queue.finish(again, "succeeded", "1") == "succeeded"


async def test_a_queue_an_older_release_left_is_upgraded_and_then_handled(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    op = "echo"
    queued, retried, handed = await submit(queue), await submit(queue), await submit(queue)
    by_id = {j.request_id: j for j in await claim(queue, 3, token="w0:1")}
    retried_job = by_id[retried]
    assert await queue.finish(retried_job, "retry", '"again"', 1.0, attempts=2) == "retrying"
    assert await queue.release(by_id[queued]) == "released"
    # The older layout, by hand: bare ids in pending, delayed and running; `handed` was handed
    # by a submit to the idle worker "old" (which died) on that worker's own list. Its records
    # held the run limits too (this release's hold none, and ignore them).
    for rid in (queued, retried, handed):
        record = keys.record(op, rid)
        await redis_client.hset(record, mapping={"timeout": "1", "max_att": "2", "backoff": "1"})
    await redis_client.hset(keys.record(op, handed), mapping={"lease": "old:h7", "worker": "old"})
    for zset in (keys.pending(op), keys.delayed(op), keys.running(op)):
        rows: Any = await redis_client.zrange(zset, 0, -1, withscores=True)
        for member, score in rows:
            rid, _ = keys.parse_member(member.decode())
            await redis_client.zrem(zset, member)
            await redis_client.zadd(zset, {rid: score})
    await redis_client.zadd(keys.pending(op), {"gone": 1})  # its record expired
    raw: Any = await redis_client.hgetall(keys.record(op, handed))
    rec = {k.decode(): v.decode() for k, v in raw.items()}
    fields = ("timeout", "max_att", "backoff", "created", "client", "input")
    entry = "\n".join([handed, "old:h7", "1", *(rec[f] for f in fields)])
    old_hand = keys.prefix(op) + "hand:old"
    await redis_client.rpush(old_hand, "", entry)  # and the empty entry that ended a wait

    # 3 members rewritten, 1 dropped, 1 hand-off moved; a second run finds nothing.
    assert await queue.upgrade(op) == 5
    # Done once: the layout marker spares later worker starts reading every member again.
    assert await redis_client.get(keys.layout(op)) == b"2"
    assert await queue.upgrade(op) == 0
    for zset in (keys.pending(op), keys.delayed(op), keys.running(op)):
        members: Any = await redis_client.zrange(zset, 0, -1)
        assert all(b"\n" in m for m in members)
    assert await redis_client.zcard(keys.pending(op)) == 1
    assert not await redis_client.exists(old_hand)
    assert await redis_client.lrange(keys.hand(op), 0, -1) == [entry.encode()]

    # Then each is handled as if the new release had written it: the expired hand-off is
    # recovered (it never ran: no attempt used) and runs here, the retry is promoted, the
    # queued request is claimed.
    clock.now += 31
    jobs = {j.request_id: j for j in await claim(queue, 10, token="t9")}
    assert set(jobs) == {queued, retried, handed}
    assert jobs[handed].attempt == 1 and jobs[retried].attempt == 2
    assert await redis_client.llen(keys.hand(op)) == 0
    for job in jobs.values():
        assert await queue.finish(job, "succeeded", "1") == "succeeded"


async def submit_timed(queue: Queue, seconds: float, op: str = "echo") -> str:
    rid = new_request_id(op, queue.now_ms())
    req = NewRequest(op, rid, "alice", '{"x":1}', LIMITS, queue_timeout=seconds)
    assert (await queue.submit(req)).outcome == "created"
    return rid


async def test_a_claim_fails_a_request_past_its_queue_timeout_instead_of_starting_it(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    late = await submit_timed(queue, 1)
    on_time = await submit_timed(queue, 10)
    plain = await submit(queue)
    assert await redis_client.zcard(keys.deadlines("echo")) == 2
    clock.now += 1.5
    jobs = await claim(queue)
    assert [j.request_id for j in jobs] == [on_time, plain]
    snap = await queue.read("echo", late)
    assert snap is not None and snap.record["status"] == "failed"
    error = json.loads(snap.record["error"])
    assert error["type"] == "urn:acceptd:problem:queue-timeout" and "1 s" in error["detail"]
    # Started: its deadline no longer applies; nothing is left to sweep.
    assert await redis_client.zcard(keys.deadlines("echo")) == 0
    clock.now += 60
    assert await queue.expire_due(["echo"]) == 0


async def test_a_popped_request_past_its_queue_timeout_is_failed_by_start_not_run(
    queue: Queue, clock: Clock
) -> None:
    rid = await submit_timed(queue, 1)
    claim_keys = _claim_keys("echo", "w1")
    res = await scripts.CLAIM.call(
        queue.batcher, claim_keys, ClaimArgv(queue.now_ms(), 30_000, "w1", 1, 10_000, 0, "0")
    )
    clock.now += 2  # between the claim's two steps (a stalled worker, say)
    jobs, failed = await queue._start("echo", res[0], "t1", "w1", queue.now_ms())
    assert jobs == [] and failed is None
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "failed"
    assert json.loads(snap.record["error"])["type"].endswith("queue-timeout")
    assert await claim(queue, token="t2") == []


async def test_the_sweep_fails_an_idle_queues_expired_requests_and_keeps_their_input(
    queue: Queue, clock: Clock, redis_client: aredis.Redis
) -> None:
    rid = await submit_timed(queue, 1)
    assert await queue.expire_due(["echo"]) == 0  # not due yet
    clock.now += 1.001
    assert await queue.expire_due(["echo", "sleep"]) == 1
    snap = await queue.read("echo", rid, with_input=True)
    assert snap is not None and snap.record["status"] == "failed" and snap.position is None
    assert snap.input == '{"x":1}'  # kept for a retry until the record expires
    assert await queue.depth("echo") == 0
    assert await redis_client.zcard(keys.deadlines("echo")) == 0
    assert await queue.expire_due(["echo"]) == 0


async def test_a_canceled_request_leaves_its_deadline_to_the_sweep(
    queue: Queue, clock: Clock
) -> None:
    rid = await submit_timed(queue, 1)
    outcome, _ = await queue.cancel("echo", rid, "alice", "{}")
    assert outcome == "canceled"
    clock.now += 2
    assert await queue.expire_due(["echo"]) == 0
    snap = await queue.read("echo", rid)
    assert snap is not None and snap.record["status"] == "canceled"


async def test_an_idle_worker_is_told_when_the_next_queue_deadline_falls(queue: Queue) -> None:
    await submit_timed(queue, 5)
    jobs, soonest = await queue.claim("echo", "w1", "t1", 0, lease=30, worker_ttl=10)
    assert jobs == [] and soonest == queue.now_ms() + 5000


async def test_a_clients_kept_events_are_trimmed_by_age_not_by_count(
    queue: Queue, redis_client: aredis.Redis
) -> None:
    # An all-requests stream opens with 5 s of events kept: older entries go (whole stream
    # nodes of them: MINID ~), and every event of the last 5 s stays, however many.
    cev = keys.cev("echo", "alice")
    await queue.follow([("echo", "alice")], ttl=60, keep_ms=5000)
    assert await redis_client.get(keys.glob("echo", "alice")) == b"5000"
    async with redis_client.pipeline(transaction=False) as pipe:
        for ms in range(1, 1001):
            pipe.xadd(cev, {"e": "{}"}, id=f"{ms}-0")
        await pipe.execute()
    deep = Limits(attempts=2, timeout=10, result_ttl=60, max_queue_depth=10_000, retry_backoff=1)
    rids = [await submit(queue, limits=deep) for _ in range(3)]
    entries: Any = await redis_client.xrange(cev)
    stamps = [int(gid.decode().split("-")[0]) for gid, _ in entries]
    assert stamps[0] > stamps[-1] - 5000  # the old 1,000 are gone
    kept = [json.loads(fields[b"e"]) for _, fields in entries]
    assert [e["rec"]["id"] for e in kept] == rids  # every recent event is there
    assert 0 < await redis_client.ttl(cev) <= 86400
    # Many recent events: none is trimmed (the old bound was about 1,000 entries).
    await queue.flag_client_stream(["echo"], "alice", 60, 60_000)
    for _ in range(12):
        await asyncio.gather(*(submit(queue, limits=deep) for _ in range(100)))
    assert await redis_client.xlen(cev) == 1203
