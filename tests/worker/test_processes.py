"""Real ``acceptd worker`` processes against the test Redis: crashes, graceful stops, sharing.

Requests are submitted through an in-process API (the real application on the same Redis);
workers are separate OS processes that are SIGKILLed or SIGTERMed like in production.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from service.app import create_app
from service.queue import keys
from service.queue.store import Queue
from service.runtime.config import load_settings
from service.runtime.redis import connect
from tests.support.cluster import both, is_cluster_url, redis_env
from tests.support.processes import CONFIG, Processes, RoleProcess, wait_until, wait_worker_ready

Client = TestClient[Any, Any]

LEASE = "1"
TERMINAL = ("succeeded", "failed", "canceled")


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a worker process: the test Redis, a short lease and idle check."""
    env = {
        **redis_env(redis_url),
        "ACCEPTD_WORKER__LEASE_SECONDS": LEASE,
        "ACCEPTD_WORKER__IDLE_CHECK_SECONDS": "0.2",
        "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "5",
    }
    env.update(extra)
    return env


async def api_client(aiohttp_client: AiohttpClient, redis_url: str, **env: str) -> Client:
    """An in-process API on the test Redis, configured like the workers (same attempts)."""
    settings = load_settings(CONFIG, {**redis_env(redis_url), **env})
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def queue_redis(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """A plain client for reading records and waiting on workers."""
    r = connect(redis_url, cluster=is_cluster_url(redis_url))
    yield r  # type: ignore[misc]  # a RedisCluster on the cluster: the same commands
    await r.aclose()


@pytest.fixture
def queue(queue_redis: aredis.Redis) -> Queue:
    """The queue's own reads (records keep the id of the worker that claimed them)."""
    return Queue(queue_redis)


async def submit(client: Client, op: str, body: Any) -> str:
    """Submit with ``Prefer: respond-async``; return the request id."""
    resp = await client.post(f"/v1/{op}", json=body, headers={"Prefer": "respond-async"})
    assert resp.status == 202, await resp.text()
    data = await resp.json()
    return str(data["id"])


async def monitor(client: Client, rid: str) -> dict[str, Any]:
    """The status monitor of a request."""
    resp = await client.get(f"/v1/queue/requests/{rid}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def wait_status(
    client: Client, rid: str, statuses: tuple[str, ...], timeout: float
) -> dict[str, Any]:
    """Poll the monitor until the request's status is one of ``statuses``."""

    async def check() -> dict[str, Any] | None:
        body = await monitor(client, rid)
        return body if body["status"] in statuses else None

    return await wait_until(check, timeout, interval=0.02, message=f"{rid} to be {statuses}")


async def wait_progress(client: Client, rid: str, lost: int) -> dict[str, Any]:
    """Wait until the request's handler reports progress in its run after ``lost`` lost ones."""

    async def check() -> dict[str, Any] | None:
        body = await monitor(client, rid)
        running = body["status"] == "running" and body["progress"] is not None
        return body if running and body["lost"] == lost else None

    return await wait_until(check, 15, interval=0.02, message=f"{rid} to report progress")


async def record_worker(queue: Queue, op: str, rid: str) -> str:
    """The id of the worker that last claimed the request (kept in its record)."""
    snap = await queue.read(op, rid)
    assert snap is not None
    return snap.record.get("worker", "")


def is_worker(worker_id: str, proc: RoleProcess) -> bool:
    """Whether a worker id (``host:pid:random``) belongs to ``proc``."""
    return f":{proc.pid}:" in worker_id


@both
async def test_sigkilled_worker_loses_nothing(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
    queue: Queue,
) -> None:
    attempts = {"ACCEPTD_OPERATIONS__SLEEP__ATTEMPTS": "3"}
    client = await api_client(aiohttp_client, redis_url, **attempts)
    a = procs.start("worker", worker_env(redis_url, **attempts))
    await wait_worker_ready(a, queue_redis, "sleep")
    rid = await submit(client, "sleep", {"seconds": 4})
    # Its handler runs (not merely handed over: a hand-off its worker never took reads
    # "running" too, and costs neither a run nor a loss when that worker dies).
    running = await wait_progress(client, rid, lost=0)
    assert running["status"] == "running"
    assert running["attempt"] == 1
    assert is_worker(await record_worker(queue, "sleep", rid), a)

    a.kill()
    b = procs.start("worker", worker_env(redis_url, **attempts))
    final = await wait_status(client, rid, TERMINAL, 20)
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 2 and final["lost"] == 1
    assert final["error"] is None
    assert is_worker(await record_worker(queue, "sleep", rid), b)
    result = await client.get(f"/v1/sleep/{rid}")
    assert result.status == 200
    assert await result.json() == {"slept": 4}
    assert await b.terminate() == 0


async def test_a_sigkilled_worker_costs_a_single_attempt_request_nothing(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    # The shipped config gives sleep a single attempt: a lost run must not use it.
    client = await api_client(aiohttp_client, redis_url)
    a = procs.start("worker", worker_env(redis_url))
    await wait_worker_ready(a, queue_redis, "sleep")
    rid = await submit(client, "sleep", {"seconds": 2, "steps": 20})
    await wait_progress(client, rid, lost=0)  # its handler runs (not merely handed over)
    a.kill()

    b = procs.start("worker", worker_env(redis_url))
    final = await wait_status(client, rid, TERMINAL, 15)
    assert final["status"] == "succeeded", final
    assert (final["attempt"], final["lost"]) == (2, 1)
    assert await b.terminate() == 0


async def test_sigkilled_past_max_lost_fails_worker_lost(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    # A poison request that kills every worker: with max_lost 1, its second loss ends it.
    env = {"ACCEPTD_OPERATIONS__SLEEP__MAX_LOST": "1"}
    client = await api_client(aiohttp_client, redis_url, **env)
    a = procs.start("worker", worker_env(redis_url, **env))
    await wait_worker_ready(a, queue_redis, "sleep")
    rid = await submit(client, "sleep", {"seconds": 30, "steps": 100})
    await wait_progress(client, rid, lost=0)
    a.kill()

    b = procs.start("worker", worker_env(redis_url, **env))
    again = await wait_progress(client, rid, lost=1)  # a requeue clears the progress
    assert again["attempt"] == 2
    b.kill()

    c = procs.start("worker", worker_env(redis_url, **env))
    final = await wait_status(client, rid, TERMINAL, 15)
    assert final["status"] == "failed", final
    assert (final["attempt"], final["lost"]) == (2, 2)
    assert final["error"]["type"].endswith("worker-lost")
    assert final["error"]["status"] == 500
    gone = await client.get(f"/v1/sleep/{rid}")
    assert gone.status == 410
    assert (await gone.json())["type"].endswith("worker-lost")
    assert await c.terminate() == 0


async def idle_workers(redis: aredis.Redis, op: str) -> list[str]:
    """The workers registered idle on ``op`` (``"<lease_ms> <worker id>"``)."""
    members: Any = await redis.zrange(keys.key(op, "idle"), 0, -1)
    return [m.decode() for m in members]


async def wait_registered_idle(
    redis: aredis.Redis, op: str, proc: RoleProcess, for_at_least: float = 0.0
) -> None:
    """Wait until ``proc``'s worker is registered idle on ``op``, still for ``for_at_least`` s."""

    async def registered() -> bool:
        rows: Any = await redis.zrange(keys.key(op, "idle"), 0, -1, withscores=True)
        soon = time.time() * 1000 + for_at_least * 1000
        return any(f":{proc.pid}:" in m.decode() and until > soon for m, until in rows)

    await wait_until(registered, 10, interval=0.02, message="the worker to wait idle")


async def test_a_sigkilled_idle_worker_loses_no_hand_off_and_spends_no_attempt(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    # The shipped config gives sleep a single attempt: a spent one would fail it.
    client = await api_client(aiohttp_client, redis_url)
    slow = worker_env(redis_url, ACCEPTD_WORKER__IDLE_CHECK_SECONDS="4")
    a = procs.start("worker", slow)
    await wait_worker_ready(a, queue_redis, "sleep")

    # Registered for at least 2 s more: still valid when the submit comes.
    await wait_registered_idle(queue_redis, "sleep", a, for_at_least=2)
    a.kill()
    # Its registration outlives it: the submit hands the request to the dead worker.
    accepted = await (
        await client.post("/v1/sleep", json={"seconds": 0.1}, headers={"Prefer": "respond-async"})
    ).json()
    assert accepted["status"] == "running"
    b = procs.start("worker", worker_env(redis_url))
    final = await wait_status(client, accepted["id"], TERMINAL, 20)
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 1
    assert await b.terminate() == 0


async def test_a_sigtermed_idle_worker_is_handed_nothing_more(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    client = await api_client(aiohttp_client, redis_url)
    a = procs.start("worker", worker_env(redis_url, ACCEPTD_WORKER__IDLE_CHECK_SECONDS="4"))
    await wait_worker_ready(a, queue_redis, "echo")

    await wait_registered_idle(queue_redis, "echo", a)
    assert await a.terminate(timeout=10) == 0, a.output()
    assert await idle_workers(queue_redis, "echo") == []
    rid = await submit(client, "echo", {"after": "stop"})
    body = await monitor(client, rid)
    assert (body["status"], body["position"]) == ("queued", 0)


async def test_sigterm_finishes_a_short_job_then_exits_0(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    client = await api_client(aiohttp_client, redis_url)
    w = procs.start("worker", worker_env(redis_url, ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS="5"))
    await wait_worker_ready(w, queue_redis, "sleep")
    rid = await submit(client, "sleep", {"seconds": 0.5, "steps": 2})
    await wait_status(client, rid, ("running",), 10)

    assert await w.terminate(timeout=10) == 0, w.output()
    body = await monitor(client, rid)
    assert body["status"] == "succeeded", body
    assert body["attempt"] == 1


@both
async def test_sigterm_hands_a_long_job_back(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
    queue: Queue,
) -> None:
    client = await api_client(aiohttp_client, redis_url)
    a = procs.start("worker", worker_env(redis_url, ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS="0.5"))
    await wait_worker_ready(a, queue_redis, "sleep")
    rid = await submit(client, "sleep", {"seconds": 2})
    await wait_status(client, rid, ("running",), 10)

    started = time.monotonic()
    assert await a.terminate(timeout=10) == 0, a.output()
    assert time.monotonic() - started < 5
    assert "handing 1 running request(s) back" in a.output()
    back = await monitor(client, rid)
    assert back["status"] == "queued", back
    assert back["attempt"] == 1
    assert back["position"] == 0
    assert back["progress"] is None

    b = procs.start("worker", worker_env(redis_url))
    final = await wait_status(client, rid, TERMINAL, 15)
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 1
    assert is_worker(await record_worker(queue, "sleep", rid), b)
    assert await b.terminate() == 0


async def test_two_workers_share_a_queue_exactly_once(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
    queue: Queue,
) -> None:
    client = await api_client(aiohttp_client, redis_url)
    pubsub = queue_redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(keys.events_channel("echo"))
        workers = [procs.start("worker", worker_env(redis_url)) for _ in range(2)]
        for w in workers:
            await wait_worker_ready(w, queue_redis, "echo")

        n = 50
        ids = await asyncio.gather(*(submit(client, "echo", {"n": i}) for i in range(n)))
        assert len(set(ids)) == n

        transitions: Counter[tuple[str, str]] = Counter()

        async def all_finished() -> bool:
            while True:
                msg = await pubsub.get_message(timeout=0.05)
                if msg is None:
                    break
                # "<id> <routing fields…> <json>": the id leads, the JSON object ends it.
                raw = msg["data"].decode()
                rid = raw.split(" ", 1)[0]
                event = json.loads(raw[raw.index("{") :])
                if event["kind"] == "status":
                    transitions[(rid, event["rec"]["status"])] += 1
            return all(transitions[(rid, "succeeded")] for rid in ids)

        await wait_until(all_finished, 20, interval=0.01, message="50 echo requests to finish")

        used: set[str] = set()
        for i, rid in enumerate(ids):
            assert transitions[(rid, "queued")] == 1, rid
            assert transitions[(rid, "running")] == 1, rid
            assert transitions[(rid, "succeeded")] == 1, rid
            body = await monitor(client, rid)
            assert body["status"] == "succeeded"
            assert body["attempt"] == 1
            result = await client.get(f"/v1/echo/{rid}")
            assert await result.json() == {"n": i}
            used.add(await record_worker(queue, "echo", rid))
        assert all(any(is_worker(u, w) for w in workers) for u in used), used
        for w in workers:
            assert await w.terminate() == 0
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


@both
async def test_idle_worker_is_woken_by_a_push(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
) -> None:
    client = await api_client(aiohttp_client, redis_url)
    w = procs.start("worker", worker_env(redis_url, ACCEPTD_WORKER__IDLE_CHECK_SECONDS="5"))
    await wait_worker_ready(w, queue_redis, "echo")
    # The worker has claimed (nothing) and now blocks for up to 5 s; a push must wake it.
    for i in range(3):
        rid = await submit(client, "echo", {"i": i})
        body = await wait_status(client, rid, TERMINAL, 2)
        assert body["status"] == "succeeded"
    assert await w.terminate() == 0


async def test_400_sleeps_survive_each_of_two_workers_sigkilled_once(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    queue_redis: aredis.Redis,
    queue: Queue,
) -> None:
    # Issue 13's scenario: the shipped config.yaml's operations (sleep: attempts 1), only the
    # lease lowered; 2 workers of concurrency 8, each SIGKILLed once mid-run and replaced.
    env = {
        "ACCEPTD_REDIS__URL": redis_url,
        "ACCEPTD_WORKER__LEASE_SECONDS": "2",
        "ACCEPTD_WORKER__CONCURRENCY": "8",
    }
    client = await api_client(aiohttp_client, redis_url)
    workers = [procs.start("worker", env) for _ in range(2)]
    for w in workers:
        await wait_worker_ready(w, queue_redis, "sleep")
    n = 400
    ids: list[str] = []
    body = {"seconds": 0.3, "steps": 2}
    for _ in range(0, n, 50):
        ids += await asyncio.gather(*(submit(client, "sleep", body) for _ in range(50)))

    async def statuses() -> Counter[str]:
        snaps = await asyncio.gather(*(queue.read("sleep", rid) for rid in ids))
        return Counter(s.record["status"] if s else "gone" for s in snaps)

    async def holding(proc: RoleProcess) -> bool:
        # The worker holds running requests (it is mid-run).
        members: Any = await queue_redis.zrange(keys.running("sleep"), 0, -1)
        held = [await record_worker(queue, "sleep", m.decode().split("\n")[0]) for m in members]
        return sum(is_worker(h, proc) for h in held) >= 4

    for i in range(2):
        victim = workers[i]
        await wait_until(
            functools.partial(holding, victim), 30, message=f"worker {i} to hold requests"
        )
        victim.kill()
        workers.append(procs.start("worker", env))

    async def all_done() -> Counter[str] | None:
        counts = await statuses()
        return counts if sum(counts[s] for s in TERMINAL) == n else None

    counts = await wait_until(all_done, 60, interval=0.25, message="400 requests to finish")
    assert counts == Counter({"succeeded": n}), counts
    lost = 0
    for rid in ids:
        snap = await queue.read("sleep", rid)
        assert snap is not None
        lost += int(snap.record.get("lost", "0"))
    assert lost >= 2  # each kill cost at least one run, and no request anything
    for w in workers[2:]:
        assert await w.terminate() == 0
