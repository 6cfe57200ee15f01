"""Work a merged script run does once for all its calls: throughput counters, hooked lookups."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import redis.asyncio as aredis

from service.queue import keys, scripts
from service.queue.ids import new_request_id
from service.queue.scripts import ClaimArgv, FinishCallArgv, FinishCallKeys
from service.queue.store import Job, Limits, NewRequest, Queue, _claim_keys, _finish_fixed
from service.runtime.batcher import FLUSH_AT

LIMITS = Limits(attempts=2, timeout=10, result_ttl=60, max_queue_depth=100, retry_backoff=1.0)
BUCKET_MS = 5000


def clock() -> float:
    # Fixed: each call below passes its own finish time.
    return 1_800_000_002.0


async def submit(queue: Queue, client: str, callback_url: str = "", events: str = "") -> str:
    rid = new_request_id("echo", queue.now_ms())
    res = await queue.submit(
        NewRequest(
            "echo", rid, client, "{}", LIMITS, callback_url=callback_url, callback_events=events
        )
    )
    assert res.outcome == "created"
    return rid


async def claim_all(queue: Queue, n: int) -> list[Job]:
    jobs, _ = await queue.claim("echo", "w1", "t1", n, lease=30, worker_ttl=10)
    assert len(jobs) == n
    return jobs


async def finish_merged(queue: Queue, calls: list[tuple[Job, int, str]]) -> list[Any]:
    """One finish script run for every (job, finish time in ms, outcome)."""
    fixed_keys, fixed_argv = _finish_fixed("echo", LIMITS.attempts)
    return list(
        await asyncio.gather(
            *(
                scripts.FINISH.call_merged(
                    queue.batcher,
                    fixed_keys,
                    fixed_argv,
                    FinishCallKeys(
                        keys.record("echo", job.request_id),
                        keys.ev("echo", job.request_id),
                        keys.glob("echo", job.client),
                        keys.cev("echo", job.client),
                    ),
                    FinishCallArgv(job.request_id, job.token, at, outcome, '"x"', 1000),
                )
                for job, at, outcome in calls
            )
        )
    )


async def calls_of(redis_client: aredis.Redis, command: str) -> int:
    stats: Any = await redis_client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_merged_finish_counts_every_finished_job_in_the_throughput_once(
    redis_client: aredis.Redis,
) -> None:
    queue = Queue(redis_client, clock=clock)
    n = FLUSH_AT - 2  # calls merged into one run (at most FLUSH_AT leave together)
    for _ in range(n + 1):
        await submit(queue, "alice")
    loading, *jobs = await claim_all(queue, n + 1)
    assert await queue.finish(loading, "succeeded", "0") == "succeeded"  # the script is loaded
    now = queue.now_ms()
    bucket = now // BUCKET_MS
    started = now  # the claim started every job at the clock's time
    # Opening this bucket drops the one 12 back, opening the next drops the one 11 back; the
    # one 10 back stays.
    tput = keys.tput("echo")
    await redis_client.delete(tput)
    kept = {f"n:{bucket - 10}": 7, f"d:{bucket - 10}": 70}
    dropped = {f"n:{bucket - 12}": 5, f"n:{bucket - 11}": 6, f"d:{bucket - 11}": 60}
    fields: Any = {**kept, **dropped}
    await redis_client.hset(tput, mapping=fields)
    # One run spanning two buckets (its second half in the next), two failed (they count)
    # and four retried (they do not: they run again).
    late = (bucket + 1) * BUCKET_MS + 100
    outcomes = ["retry", "failed", "retry"] + ["succeeded"] * (n - 6) + ["retry", "failed", "retry"]
    calls = [(job, now if i < n // 2 else late, outcomes[i]) for i, job in enumerate(jobs)]
    await redis_client.config_resetstat()
    replies = await finish_merged(queue, calls)
    assert await calls_of(redis_client, "fcall") == 1
    assert sorted(replies) == sorted([b"succeeded"] * (n - 6) + [b"failed"] * 2 + [b"retrying"] * 4)
    counted = [(at, o) for _, at, o in calls if o != "retry"]
    in_first = sum(at == now for at, _ in counted)
    in_second = len(counted) - in_first
    assert in_first + in_second == n - 4
    raw: dict[bytes, bytes] = await redis_client.hgetall(tput)  # type: ignore[assignment]
    got = {k.decode(): int(v) for k, v in raw.items()}
    assert got == {
        **kept,
        f"n:{bucket}": in_first,
        f"d:{bucket}": sum(at - started for at, _ in counted if at == now),
        f"n:{bucket + 1}": in_second,
        f"d:{bucket + 1}": sum(at - started for at, _ in counted if at == late),
    }
    # Two counters a bucket for the whole run, not two a finish (52 here): besides them, one
    # evseq per call's event and the console history's few fields.
    assert await calls_of(redis_client, "hincrby") - n <= 4 + 16


async def test_buckets_left_behind_by_a_pause_in_traffic_are_dropped_when_a_bucket_opens(
    redis_client: aredis.Redis,
) -> None:
    # Finishes that stop for over a minute leave their last buckets with no bucket opening 12
    # after them: they must still go, or the hash grows with every pause (and every status
    # read scans it for the throughput).
    queue = Queue(redis_client, clock=clock)
    for _ in range(2):
        await submit(queue, "alice")
    loading, job = await claim_all(queue, 2)
    assert await queue.finish(loading, "succeeded", "0") == "succeeded"  # the script is loaded
    bucket = queue.now_ms() // BUCKET_MS
    tput = keys.tput("echo")
    await redis_client.delete(tput)
    kept = {f"n:{bucket - 11}": 3, f"d:{bucket - 11}": 30, f"n:{bucket - 1}": 4}
    # Left by pauses: buckets 13, 40 and a day back, and 2,500 more (more fields than one
    # HDEL's unpack takes), as a hash grown before this was fixed would hold.
    stale: dict[str, int] = {f"n:{bucket - 13}": 1, f"d:{bucket - 13}": 10, f"n:{bucket - 40}": 2}
    stale.update({f"n:{bucket - 17_280 - i}": 1 for i in range(2_500)})
    fields: Any = {**kept, **stale}
    await redis_client.hset(tput, mapping=fields)
    assert await queue.finish(job, "succeeded", "0") == "succeeded"
    raw: dict[bytes, bytes] = await redis_client.hgetall(tput)  # type: ignore[assignment]
    got = {k.decode(): int(v) for k, v in raw.items()}
    assert got == {**kept, f"n:{bucket}": 1, f"d:{bucket}": 0}
    # A later finish in the same bucket (not a new one) leaves the others alone.
    await redis_client.hset(tput, f"n:{bucket - 12}", 9)
    await submit(queue, "alice")
    (again,) = await claim_all(queue, 1)
    assert await queue.finish(again, "succeeded", "0") == "succeeded"
    assert await redis_client.hget(tput, f"n:{bucket - 12}") == b"9"
    assert await redis_client.hget(tput, f"n:{bucket}") == b"2"


async def test_a_run_mixing_subscribed_and_unsubscribed_clients_records_events_for_the_subscribed(
    redis_client: aredis.Redis,
) -> None:
    queue = Queue(redis_client, clock=clock)
    await redis_client.sadd(keys.hooked("echo", "running"), "ann")
    await redis_client.sadd(keys.hooked("echo", "succeeded"), "ann", "bea")
    clients = ["ann", "bea", "cid", "dan"] * 5
    rids: dict[str, str] = {}
    for client in clients:
        rids[await submit(queue, client)] = client
    # An unsubscribed client's request with its own callback still gets its events.
    called = await submit(queue, "dan", "http://127.0.0.1:9/cb", "running,succeeded")
    rids[called] = "dan"
    await redis_client.config_resetstat()
    jobs = await claim_all(queue, len(rids))  # one start run for all 21
    now = queue.now_ms()
    replies = await finish_merged(queue, [(job, now + 10, "succeeded") for job in jobs])
    assert replies == [b"succeeded"] * len(rids)
    # At most one lookup a run per client and status (running in the start run, succeeded in
    # the finish run): 21 each without the cache.
    assert await calls_of(redis_client, "sismember") <= 2 * 4
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis_client.xrange(  # type: ignore[assignment]
        keys.outbox("echo")
    )
    seen = sorted(
        (json.loads(fields[b"rec"])["id"], fields[b"type"].decode()) for _, fields in entries
    )
    expected = sorted(
        [(r, "request.running") for r, c in rids.items() if c == "ann"]
        + [(r, "request.succeeded") for r, c in rids.items() if c in ("ann", "bea")]
        + [(called, "request.running"), (called, "request.succeeded")]
    )
    assert seen == expected


async def test_a_claim_of_more_than_500_leases_every_one_with_a_zadd_per_500(
    redis_client: aredis.Redis,
) -> None:
    big = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=2000, retry_backoff=1.0)
    queue = Queue(redis_client, clock=clock)
    n = 1201  # three ZADDs: 500, 500 and 201 members
    rids = [new_request_id("echo", queue.now_ms()) for _ in range(n)]
    results = await queue.submit_many([NewRequest("echo", r, "alice", "{}", big) for r in rids])
    assert all(not isinstance(r, BaseException) and r.outcome == "created" for r in results)
    await redis_client.config_resetstat()
    jobs, _ = await queue.claim("echo", "w1", "t1", n, lease=30, worker_ttl=10)
    assert sorted(job.request_id for job in jobs) == sorted(rids)
    running: Any = await redis_client.zrange(keys.key("echo", "running"), 0, -1, withscores=True)
    assert len(running) == n
    assert {score for _, score in running} == {queue.now_ms() + 30_000}
    stats: Any = await redis_client.info("commandstats")
    # The claim's own ZADDs (the worker's heartbeat is one more); none per member.
    assert int(stats["cmdstat_zadd"]["calls"]) == 3 + 1


async def test_a_bulk_submit_numbers_its_requests_with_one_incrby_and_indexes_them_per_500(
    redis_client: aredis.Redis,
) -> None:
    big = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=2000, retry_backoff=1.0)
    queue = Queue(redis_client, clock=clock)
    await submit(queue, "bob")  # the script is loaded; the counter is at 1
    n = 1201  # the client index's new entries in three ZADDs: 500, 500 and 201
    rids = [new_request_id("echo", queue.now_ms()) for _ in range(n)]
    await redis_client.config_resetstat()
    results = await queue.submit_many([NewRequest("echo", r, "alice", "{}", big) for r in rids])
    positions = [r.position for r in results if not isinstance(r, BaseException)]
    assert positions == list(range(1, n + 1))
    assert await calls_of(redis_client, "incrby") == 1
    assert await calls_of(redis_client, "incr") == 0
    # One ZADD to pending per request, three to the index.
    assert await calls_of(redis_client, "zadd") == n + 3
    assert await redis_client.get(keys.key("echo", "seq")) == str(n + 1).encode()
    queued: list[bytes] = await redis_client.zrange(keys.pending("echo"), 0, -1)  # type: ignore[assignment]
    assert [m.decode().split("\n")[0] for m in queued[1:]] == rids
    index: list[bytes] = await redis_client.zrange(keys.key("echo", "c:alice"), 0, -1)  # type: ignore[assignment]
    assert sorted(index) == sorted(r.encode() for r in rids)


async def test_a_merged_start_asks_running_once_and_skips_a_member_no_longer_leased(
    redis_client: aredis.Redis,
) -> None:
    queue = Queue(redis_client, clock=clock)
    rids = [await submit(queue, "alice") for _ in range(3)]
    now = queue.now_ms()
    k = keys.of("echo")
    popped = await scripts.CLAIM.call(
        queue.batcher, _claim_keys("echo", "w1"), ClaimArgv(now, 30_000, "w1", 3, 10_000, 0, "0")
    )
    assert len(popped[0]) == 3
    # Taken back meanwhile (as recover.lua would, its lease having expired): not started.
    await redis_client.zrem(k.running, keys.member(rids[1], "alice"))
    await redis_client.config_resetstat()
    jobs, failed = await queue._start("echo", popped[0], "t1", "w1", now)
    assert failed is None
    assert [job.request_id for job in jobs] == [rids[0], rids[2]]
    assert await calls_of(redis_client, "zmscore") == 1
    assert await calls_of(redis_client, "zscore") == 0
    statuses = [await redis_client.hget(keys.record("echo", rid), "status") for rid in rids]
    assert statuses == [b"running", b"queued", b"running"]


async def test_a_merged_finish_unleases_with_one_zrem_and_publishes_each_whole_record(
    redis_client: aredis.Redis,
) -> None:
    queue = Queue(redis_client, clock=clock)
    rids = [await submit(queue, "alice") for _ in range(3)]
    jobs = await claim_all(queue, 3)
    now = queue.now_ms()
    async with redis_client.pubsub() as ps:
        await ps.subscribe(keys.events_channel("echo"))
        await ps.get_message(timeout=1)
        await redis_client.config_resetstat()
        replies = await finish_merged(queue, [(job, now + 10, "succeeded") for job in jobs])
        assert replies == [b"succeeded"] * 3
        events = {}
        for _ in range(3):
            msg = await ps.get_message(timeout=2)
            assert msg is not None
            rid, _client, _gid, body = msg["data"].split(b" ", 3)
            events[rid.decode()] = json.loads(body)["rec"]
    assert await calls_of(redis_client, "zrem") == 1
    assert await redis_client.zcard(keys.running("echo")) == 0
    # The finish read only part of each record; its event still carries all of it, as a read
    # shows it (the worker, the priority and score, the times), and nothing internal.
    for rid in rids:
        snap = await queue.read("echo", rid)
        assert snap is not None
        assert events[rid] == snap.record
        assert {"worker", "prio", "score", "started", "finished", "expires"} <= set(events[rid])
        assert not {"input", "lease", "result"} & set(events[rid])


@pytest.mark.parametrize(
    ("script", "set_before_read"),
    [
        # terminate sets expires, and result on success, before anything reads them; a
        # request being started has neither.
        (scripts.START, {"expires", "result"}),
        # Every path through finish sets the status before reading it.
        (scripts.FINISH, {"expires", "result", "status"}),
    ],
    ids=["start", "finish"],
)
def test_a_script_reading_part_of_a_record_fetches_every_field_it_reads(
    script: Any, set_before_read: set[str]
) -> None:
    # start.lua and finish.lua read named fields (HMGET), not the whole record: a field one of
    # their includes reads and the read leaves out would be nil, silently.
    source: str = script.source
    # Every field list it reads with (finish.lua reads the attempts only on a retry or failure).
    lists = re.findall(r"redis\.call\('HMGET', key, ([^)]*)\)", source)
    assert lists
    fetched = {field for fields in lists for field in re.findall(r"'(\w+)'", fields)}
    read = set(re.findall(r"rec\[['\"](\w+)['\"]\](?!\s*=[^=])", source))
    read |= set(re.findall(r"\brec\.(\w+)(?!\s*=[^=])", source))
    assert read - fetched == set_before_read


async def test_what_a_run_remembers_for_its_calls_is_asked_again_by_the_next_run(
    redis_client: aredis.Redis,
) -> None:
    # Scripts run as Redis Functions, whose library keeps its locals between calls: the
    # run's answers (nobody listens, the client streams nothing, its index was trimmed) must
    # not outlive the run that asked.
    queue = Queue(redis_client, clock=clock)
    await redis_client.config_resetstat()
    await submit(queue, "ann")
    assert await redis_client.xlen(keys.cev("echo", "ann")) == 0
    await redis_client.set(keys.glob("echo", "ann"), 60_000)
    pubsub: Any = redis_client.pubsub()
    await pubsub.subscribe(keys.events_channel("echo"))
    try:
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        second = await submit(queue, "ann")
        heard = await pubsub.get_message(timeout=5)
        assert heard is not None and second.encode() in heard["data"]
    finally:
        await pubsub.aclose()
    kept: Any = await redis_client.xrange(keys.cev("echo", "ann"))
    assert [json.loads(fields[b"e"])["rec"]["id"] for _, fields in kept] == [second]
    assert await calls_of(redis_client, "zremrangebyscore") == 2  # each run trims the index
    assert await calls_of(redis_client, "fcall") == 2
