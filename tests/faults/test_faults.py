"""Fault tests against real processes and a real Redis: restarts, overload, crashes.

Each test starts its own ``acceptd`` role processes (``tests.support.processes``) and, where
Redis itself is the fault, its own embedded server on a fixed port with AOF
(``tests.support.faults.RestartableRedis``) — never the session-wide one. Webhooks go to a real
receiver on loopback and every delivery is verified with ``standardwebhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aredis
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis.exceptions import ResponseError

from service.app import create_app
from service.queue import keys as core_keys
from service.runtime.config import load_settings
from service.runtime.embedded import free_port
from service.state import Roles
from tests.support.faults import (
    NAP_ENV,
    PROBLEM_JSON,
    TERMINAL,
    Followed,
    RestartableRedis,
    assert_unavailable,
    call,
    close_quietly,
    follow_events,
    role_env,
    status_of,
    submit_async,
    wait_log,
    wait_statuses,
)
from tests.support.processes import (
    CONFIG,
    Processes,
    RoleProcess,
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)
from tests.support.webhooks import HANG, Received, Receiver
from webhooks import keys as webhook_keys
from webhooks.dispatcher import GROUP

Client = TestClient[Any, Any]

UNREACHABLE = "redis unreachable"
REACHABLE = "redis reachable again"
# Per process and outage: a handful of components, never one per request.
MAX_OUTAGE_LINES = 5
OUTAGE_SECONDS = 3.0  # longer than the 2 s worker lease


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RestartableRedis]:
    """A private server for one test, on a fixed free port, that the test may restart."""
    server = RestartableRedis(tmp_path / "redis", free_port())
    await server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The test's HTTP client."""
    s = aiohttp.ClientSession()
    try:
        yield s
    finally:
        await close_quietly(s)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback."""
    async with Receiver(hang_seconds=10.0) as r:
        yield r


# -- helpers ------------------------------------------------------------------------------


async def wait_dispatcher_ready(proc: RoleProcess, redis_url: str, timeout: float = 15.0) -> None:
    """Wait until the dispatcher has created its consumer group (its loops are running)."""
    r = aredis.Redis.from_url(redis_url)

    async def ready() -> bool:
        proc.check_alive()
        try:
            groups = await r.xinfo_groups(webhook_keys.outbox("echo"))
        except ResponseError:
            return False
        return any(g["name"] in (GROUP, GROUP.encode()) for g in groups)

    try:
        await wait_until(ready, timeout, interval=0.05, message=f"dispatcher {proc.pid}")
    finally:
        await r.aclose()


async def wait_worker(proc: RoleProcess, redis_url: str, op: str) -> None:
    """Wait until a worker process has claimed from ``op`` (a short-lived client)."""
    r = aredis.Redis.from_url(redis_url)
    try:
        await wait_worker_ready(proc, r, op)
    finally:
        await r.aclose()


async def register_endpoint(session: aiohttp.ClientSession, base: str, url: str) -> str:
    """Register a webhook endpoint through the HTTP API; its signing secret."""
    reply = await call(session, "POST", f"{base}/v1/webhooks/endpoints", body={"url": url})
    assert reply.status == 201, reply.body[:300]
    secret = str(reply.json()["secret"])
    assert secret.startswith("whsec_")
    return secret


def succeeded_ids(received: list[Received], secret: str) -> set[str]:
    """The request ids of every verified ``request.succeeded`` delivery."""
    ids: set[str] = set()
    for r in received:
        body = r.verify(secret)  # raises on a bad signature
        if body["type"] == "request.succeeded":
            ids.add(str(body["data"]["id"]))
    return ids


async def wait_delivered(receiver: Receiver, secret: str, ids: set[str], timeout: float) -> None:
    """Wait until a verified ``request.succeeded`` delivery arrived for every id."""

    async def covered() -> bool:
        return ids <= succeeded_ids(receiver.received, secret)

    try:
        await wait_until(covered, timeout, interval=0.05, message="webhook deliveries")
    except AssertionError:
        missing = ids - succeeded_ids(receiver.received, secret)
        raise AssertionError(
            f"{len(missing)} of {len(ids)} requests got no request.succeeded webhook within "
            f"{timeout}s ({len(receiver.received)} deliveries received)"
        ) from None


def assert_outage_logged(proc: RoleProcess) -> None:
    """One line when Redis went away and one when it came back, not one per request."""
    out = proc.output()
    down = out.count(UNREACHABLE)
    assert 1 <= down <= MAX_OUTAGE_LINES, f"{down} {UNREACHABLE!r} lines in {proc.role}:\n{out}"
    assert REACHABLE in out, f"no {REACHABLE!r} line in {proc.role}:\n{out}"
    assert "Traceback" not in out, out


async def check_outage(session: aiohttp.ClientSession, base: str, rid: str, seconds: float) -> int:
    """For ``seconds`` of outage, keep calling the API: each answer must be a prompt 503.

    The outage's length is the fault being injected (longer than a worker lease); the
    calls made meanwhile are the assertions. Returns how many calls were made.
    """
    end = time.monotonic() + seconds
    calls = 0
    while True:
        started = time.monotonic()
        assert_unavailable(await call(session, "POST", f"{base}/v1/echo", body={"down": calls}))
        assert_unavailable(await call(session, "GET", f"{base}/v1/queue/requests/{rid}"))
        ready = await call(session, "GET", f"{base}/readyz")
        assert ready.status == 503, ready.body
        assert ready.headers["Content-Type"].startswith("application/json")
        assert ready.json()["checks"]["redis"] == "unreachable"
        assert time.monotonic() - started < 4, "the API hung while Redis was down"
        calls += 3
        if time.monotonic() >= end:
            return calls
        await asyncio.sleep(0.1)  # pacing of the probe, not synchronisation


# -- 1. Redis restarted under api + worker + dispatcher ------------------------------------


async def test_redis_restart_under_running_roles(
    own_redis: RestartableRedis,
    procs: Processes,
    session: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(
        own_redis.url,
        port,
        **NAP_ENV,
        # Two slots: some requests run and others wait when Redis goes away.
        ACCEPTD_WORKER__CONCURRENCY="2",
        # More than one attempt: a lease that runs out during the outage may be recovered
        # (requeued) by the claim that runs first after the restart, before the live worker
        # renews it or stores its outcome. With a single attempt that request would fail
        # "worker-lost" although its worker never died (a race, reported separately).
        ACCEPTD_OPERATIONS__NAP__ATTEMPTS="3",
        ACCEPTD_OPERATIONS__ECHO__ATTEMPTS="3",
    )
    api = procs.start("api", env)
    worker = procs.start("worker", env)
    dispatcher = procs.start("dispatcher", env)
    await wait_http_ready(api, session, base)
    await wait_worker(worker, own_redis.url, "nap")
    await wait_dispatcher_ready(dispatcher, own_redis.url)
    secret = await register_endpoint(session, base, receiver.url + "/hook")

    ids: list[str] = []
    for i in range(20):
        if i % 2 == 0:
            ids.append(await submit_async(session, base, "nap", {"seconds": 0.3}))
        else:
            ids.append(await submit_async(session, base, "echo", {"i": i}))

    async def some_running() -> bool:
        for rid in ids[::2]:
            body = await status_of(session, base, rid)
            if body is not None and body["status"] == "running":
                return True
        return False

    await wait_until(some_running, 10, interval=0.02, message="a nap request to run")
    await own_redis.stop()

    # While Redis is down (longer than a lease): every call is a quick 503 problem+json with
    # Retry-After, never a 500 or a hang, and /readyz says not ready.
    await check_outage(session, base, ids[0], OUTAGE_SECONDS)
    await wait_log(worker, UNREACHABLE, 5)

    await own_redis.start()
    finals = await wait_statuses(session, base, ids, TERMINAL, 15)
    failed = {rid: body for rid, body in finals.items() if body["status"] != "succeeded"}
    assert not failed, failed
    await wait_delivered(receiver, secret, set(ids), 12)

    ready = await call(session, "GET", f"{base}/readyz")
    assert ready.status == 200, ready.body
    for proc in (api, worker):
        proc.check_alive()
        assert_outage_logged(proc)
    dispatcher.check_alive()


# -- 2. an SSE stream across a Redis restart ----------------------------------------------


async def open_follower(
    session: aiohttp.ClientSession, base: str, rid: str, timeout: float
) -> asyncio.Task[Followed]:
    """Start a reconnecting SSE client on the request's events; returns once it is streaming."""
    opened = asyncio.Event()
    task = asyncio.create_task(
        follow_events(session, f"{base}/v1/queue/requests/{rid}/events", timeout, opened=opened)
    )
    try:
        await asyncio.wait_for(opened.wait(), 5)
    except BaseException:
        await stop_task(task)
        raise
    return task


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_sse_stream_survives_redis_restart(
    own_redis: RestartableRedis,
    procs: Processes,
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(
        own_redis.url,
        port,
        **NAP_ENV,
        # A lease well past the outage: this test is about the stream, not lease recovery
        # (see test_worker_reclaiming_its_own_expired_lease_keeps_the_new_run).
        ACCEPTD_WORKER__LEASE_SECONDS="6",
    )
    api = procs.start("api", env)
    await wait_http_ready(api, session, base)
    # Long enough to still run once the API's subscription is back (see the xfail below for
    # a terminal event published before that).
    rid = await submit_async(session, base, "nap", {"seconds": 4})

    # The stream opens on a queued request (no worker yet), like a browser right after 202.
    follower = await open_follower(session, base, rid, 14)
    try:
        worker = procs.start("worker", env)

        async def running() -> bool:
            body = await status_of(session, base, rid)
            return body is not None and body["status"] == "running"

        await wait_until(running, 10, interval=0.02, message=f"{rid} to run")
        await own_redis.stop()
        await check_outage(session, base, rid, 1.0)
        await wait_log(api, "event subscription: " + UNREACHABLE, 5)
        await own_redis.start()
        await wait_log(api, "event subscription: " + REACHABLE, 8)
        seen = await follower
    finally:
        await stop_task(follower)
    statuses = seen.statuses()
    assert statuses[0] == "queued", statuses
    assert "running" in statuses, statuses
    assert statuses[-1] == "succeeded", statuses
    assert set(seen.refused) <= {503}, seen.refused
    final = await status_of(session, base, rid)
    assert final is not None and final["status"] == "succeeded", final
    worker.check_alive()


async def test_sse_terminal_event_published_while_api_was_cut_off(
    own_redis: RestartableRedis,
    procs: Processes,
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = procs.start("api", role_env(own_redis.url, port))
    await wait_http_ready(api, session, base)
    rid = await submit_async(session, base, "echo", {"finished": "elsewhere"})  # no worker yet
    follower = await open_follower(session, base, rid, 30)
    try:
        # The API loses Redis; meanwhile the same data is served on another port, where a
        # worker (which can still reach it) runs the request to its end. The events of that
        # are published where the API is not subscribed, deterministically.
        await own_redis.stop()
        await wait_log(api, "event subscription: " + UNREACHABLE, 5)
        elsewhere = RestartableRedis(own_redis.data_dir, free_port())
        await elsewhere.start()
        try:
            worker = procs.start("worker", role_env(elsewhere.url, free_port()))
            r = aredis.Redis.from_url(elsewhere.url)
            try:

                async def finished() -> bool:
                    worker.check_alive()
                    status = await r.hget(core_keys.record("echo", rid), "status")
                    return status == b"succeeded"

                await wait_until(finished, 10, interval=0.05, message=f"{rid} to finish")
            finally:
                await r.aclose()
            assert await worker.terminate() == 0
        finally:
            await elsewhere.stop()
        await own_redis.start()  # the API's Redis is back, with the request finished
        # The subscription is back within its backoff (at most 5 s); give the stream that.
        try:
            async with asyncio.timeout(6):
                seen = await asyncio.shield(follower)
        except TimeoutError:
            raise AssertionError(
                "the stream stayed open without the terminal event published while the API "
                "was cut off from Redis"
            ) from None
    finally:
        await stop_task(follower)
    assert seen.statuses()[-1] == "succeeded", seen.statuses()
    final = await status_of(session, base, rid)
    assert final is not None and final["status"] == "succeeded", final


# -- 3. overload: 503 / 429 with Retry-After, never 500 -----------------------------------


async def api_only(aiohttp_client: AiohttpClient, redis_url: str, **env: str) -> Client:
    """The real application in-process, configured through environment overrides, no worker."""
    settings = load_settings(CONFIG, {"ACCEPTD_REDIS__URL": redis_url, **env})
    return await aiohttp_client(create_app(settings, Roles(api=True)))


async def assert_refused(resp: aiohttp.ClientResponse, status: int) -> None:
    """A problem+json refusal with ``status`` and a ``Retry-After`` of at least 1 s."""
    assert resp.status == status, (resp.status, await resp.text())
    assert resp.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json(content_type=None))["status"] == status


async def test_full_queue_is_503_with_retry_after(
    aiohttp_client: AiohttpClient, redis_url: str
) -> None:
    c = await api_only(aiohttp_client, redis_url, ACCEPTD_OPERATIONS__ECHO__MAX_QUEUE_DEPTH="5")
    resps = await asyncio.gather(
        *(c.post("/v1/echo", json={"i": i}, headers={"Prefer": "respond-async"}) for i in range(12))
    )
    statuses = sorted(r.status for r in resps)
    assert statuses == [202] * 5 + [503] * 7, statuses
    for r in resps:
        if r.status == 503:
            await assert_refused(r, 503)
    # Still full: a later submit is refused the same way, never a 500.
    await assert_refused(
        await c.post("/v1/echo", json={}, headers={"Prefer": "respond-async"}), 503
    )


async def test_rate_limit_is_429_with_retry_after(
    aiohttp_client: AiohttpClient, redis_url: str
) -> None:
    c = await api_only(
        aiohttp_client, redis_url, ACCEPTD_AUTH__RATE_PER_SECOND="1", ACCEPTD_AUTH__BURST="3"
    )
    started = time.monotonic()
    resps = [
        await c.post("/v1/echo", json={"i": i}, headers={"Prefer": "respond-async"})
        for i in range(4)
    ]
    # Well under the second it takes to earn a fourth token.
    assert time.monotonic() - started < 0.9
    assert [r.status for r in resps] == [202, 202, 202, 429]
    await assert_refused(resps[3], 429)


async def test_third_stream_per_client_is_429(
    aiohttp_client: AiohttpClient, redis_url: str
) -> None:
    c = await api_only(aiohttp_client, redis_url, ACCEPTD_SERVER__MAX_STREAMS_PER_CLIENT="2")
    resp = await c.post("/v1/echo", json={}, headers={"Prefer": "respond-async"})
    rid = (await resp.json())["id"]  # stays queued: no worker
    url = f"/v1/queue/requests/{rid}/events"
    streams = [await c.get(url), await c.get(url)]
    try:
        assert [s.status for s in streams] == [200, 200]
        third = await c.get(url)
        await assert_refused(third, 429)
        everything = await c.get("/v1/queue/events")
        await assert_refused(everything, 429)
    finally:
        for s in streams:
            s.close()


# -- 4. a handler that kills its worker process -------------------------------------------


CRASH_ENV = {
    "ACCEPTD_OPERATIONS__CRASH__HANDLER": "tests.support.fault_handlers:crash",
    "ACCEPTD_OPERATIONS__CRASH__MAX_LOST": "1",
}


async def test_crashing_handler_is_recovered_then_stops_as_worker_lost(
    redis_url: str, procs: Processes, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(redis_url, port, **CRASH_ENV)
    api = procs.start("api", env)
    first = procs.start("worker", env)
    await wait_http_ready(api, session, base)
    await wait_worker(first, redis_url, "crash")
    rid = await submit_async(session, base, "crash", {})

    # The handler takes its process down, like SIGKILL: nothing is handed back.
    assert await first.wait_exit(10) == 1
    body = await status_of(session, base, rid)
    assert body is not None and body["status"] == "running" and body["attempt"] == 1, body

    # A second worker recovers it once the lease expires, runs it again, and dies too.
    second = procs.start("worker", env)
    assert await second.wait_exit(12) == 1
    body = await status_of(session, base, rid)
    assert body is not None and body["status"] == "running" and body["attempt"] == 2, body

    # Past the operation's max_lost the poison request stops: worker-lost, and a third
    # worker lives on and serves other requests.
    third = procs.start("worker", env)
    final = (await wait_statuses(session, base, [rid], TERMINAL, 12))[rid]
    assert final["status"] == "failed", final
    assert (final["attempt"], final["lost"]) == (2, 2), final
    assert final["error"]["type"].endswith("worker-lost"), final
    gone = await call(session, "GET", f"{base}/v1/crash/{rid}")
    assert gone.status == 410 and gone.json()["type"].endswith("worker-lost")
    echo = await submit_async(session, base, "echo", {"after": "crash"})
    done = (await wait_statuses(session, base, [echo], TERMINAL, 10))[echo]
    assert done["status"] == "succeeded", done
    third.check_alive()
    assert await third.terminate() == 0


# -- 5. the webhook dispatcher: SIGKILL mid-delivery, and a backlog with none running ------


async def api_and_worker(aiohttp_client: AiohttpClient, redis_url: str) -> Client:
    """The API and a worker in-process (no dispatcher), loopback webhook targets allowed."""
    settings = load_settings(
        CONFIG,
        {
            "ACCEPTD_REDIS__URL": redis_url,
            "ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "127.0.0.0/8",
            "ACCEPTD_WORKER__IDLE_CHECK_SECONDS": "0.5",
        },
    )
    return await aiohttp_client(create_app(settings, Roles(api=True, worker=True)))


async def register_in_process(c: Client, url: str) -> tuple[str, str]:
    """Register an endpoint on the in-process API: its id and secret."""
    resp = await c.post("/v1/webhooks/endpoints", json={"url": url})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    return str(created["id"]), str(created["secret"])


async def finish_echo(c: Client, body: Any) -> str:
    """Submit synchronously and wait for the result (201); the request id."""
    resp = await c.post("/v1/echo", json=body)
    assert resp.status == 201, await resp.text()
    return str(resp.headers["Location"].rsplit("/", 1)[1])


DISPATCH_TIMEOUT = 1.0
DISPATCH_LEASE = DISPATCH_TIMEOUT * 1.5 + 2.0  # the dispatcher's delivery lease


async def test_dispatcher_sigkilled_mid_delivery_is_recovered(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    receiver: Receiver,
) -> None:
    c = await api_and_worker(aiohttp_client, redis_url)
    eid, secret = await register_in_process(c, receiver.url + "/hook")
    env = role_env(redis_url, free_port(), ACCEPTD_WEBHOOKS__TIMEOUT_SECONDS=str(DISPATCH_TIMEOUT))
    first = procs.start("dispatcher", env)
    await wait_dispatcher_ready(first, redis_url)
    receiver.reply(HANG)
    rid = await finish_echo(c, {"hook": "hang"})

    async def holding() -> bool:
        first.check_alive()
        return receiver.hanging == 1

    await wait_until(holding, 10, interval=0.005, message="the receiver to hold the delivery")
    first.kill()  # mid-send: the receiver still holds the request, the lease stays in Redis
    assert len(receiver.received) == 1
    held = receiver.received[0]

    second = procs.start("dispatcher", env)

    async def redelivered() -> bool:
        second.check_alive()
        return len(receiver.received) >= 2

    await wait_until(redelivered, 12, interval=0.02, message="the delivery to be sent again")
    again = receiver.received[1]
    assert again.webhook_id == held.webhook_id
    assert again.at - held.at >= DISPATCH_LEASE - 0.5, again.at - held.at
    body = again.verify(secret)
    assert body["type"] == "request.succeeded" and body["data"]["id"] == rid
    assert held.verify(secret) == body

    async def logged_delivered() -> bool:
        resp = await c.get(f"/v1/webhooks/endpoints/{eid}/deliveries")
        items = (await resp.json())["items"]
        return bool(items) and items[0]["status"] == "delivered"

    await wait_until(logged_delivered, 5, message="the delivery log to say delivered")
    assert await second.terminate() == 0


async def test_deliveries_wait_for_a_dispatcher(
    aiohttp_client: AiohttpClient,
    redis_url: str,
    procs: Processes,
    receiver: Receiver,
) -> None:
    c = await api_and_worker(aiohttp_client, redis_url)
    _, secret = await register_in_process(c, receiver.url + "/hook")
    ids = {await finish_echo(c, {"n": n}) for n in range(5)}
    # Recorded durably in the step that finished each request; nothing sent yet.
    r = aredis.Redis.from_url(redis_url)
    try:
        # Every state change the endpoint subscribes to (succeeded) is in the outbox.
        assert await r.xlen(core_keys.key("echo", "outbox")) == len(ids)
    finally:
        await r.aclose()
    assert receiver.received == []

    dispatcher = procs.start("dispatcher", role_env(redis_url, free_port()))
    await wait_delivered(receiver, secret, ids, 12)
    assert len(receiver.received) == len(ids)
    assert await dispatcher.terminate() == 0


# -- bugs found on the way -----------------------------------------------------------------


async def test_worker_reclaiming_its_own_expired_lease_keeps_the_new_run(
    redis_url: str, procs: Processes, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(
        redis_url,
        port,
        **NAP_ENV,
        ACCEPTD_WORKER__LEASE_SECONDS="1",
        ACCEPTD_OPERATIONS__NAP__ATTEMPTS="2",
    )
    api = procs.start("api", env)
    worker = procs.start("worker", env)
    await wait_http_ready(api, session, base)
    await wait_worker(worker, redis_url, "nap")
    rid = await submit_async(session, base, "nap", {"seconds": 3})

    async def running() -> bool:
        body = await status_of(session, base, rid)
        return body is not None and body["status"] == "running"

    await wait_until(running, 10, interval=0.02, message=f"{rid} to run")
    ran_since = time.monotonic()
    await wait_until(_past(ran_since + 2.0), 4, message="the first run to be well along")
    # The lease runs out while the worker lives, as during a Redis outage longer than the
    # lease; then the worker is woken: its next claim recovers the request and, in the same
    # script call, claims it again (what happens right after such an outage).
    r = aredis.Redis.from_url(redis_url)
    try:
        client: Any = await r.hget(core_keys.record("nap", rid), "client")
        member = core_keys.member(rid, client.decode())
        async with r.pipeline(transaction=True) as pipe:
            pipe.zadd(core_keys.key("nap", "running"), {member: 1}, xx=True)
            pipe.lpush(core_keys.key("nap", "wake"), "1")
            await pipe.execute()
    finally:
        await r.aclose()

    async def reclaimed() -> dict[str, Any] | None:
        body = await status_of(session, base, rid)
        return body if body is not None and body["attempt"] == 2 else None

    again = await wait_until(reclaimed, 5, interval=0.02, message="the request to be reclaimed")
    assert again["status"] in ("running", "succeeded"), again
    # The same worker runs it again; that run must be renewed and finish.
    final = (await wait_statuses(session, base, [rid], TERMINAL, 10))[rid]
    worker.check_alive()
    assert final["status"] == "succeeded" and final["attempt"] == 2, (
        final["status"],
        final["attempt"],
        final["error"],
    )


async def test_progress_reporting_handler_survives_outage(
    own_redis: RestartableRedis,
    procs: Processes,
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(own_redis.url, port)
    api = procs.start("api", env)
    worker = procs.start("worker", env)
    await wait_http_ready(api, session, base)
    await wait_worker(worker, own_redis.url, "sleep")
    rid = await submit_async(session, base, "sleep", {"seconds": 1.5, "steps": 15})

    async def running() -> bool:
        body = await status_of(session, base, rid)
        return body is not None and body["status"] == "running"

    await wait_until(running, 10, interval=0.02, message=f"{rid} to run")
    await own_redis.stop()
    await check_outage(session, base, rid, 1.5)  # shorter than the lease
    await own_redis.start()
    final = (await wait_statuses(session, base, [rid], TERMINAL, 10))[rid]
    assert final["status"] == "succeeded", (final["error"], final["attempt"])


async def test_dispatcher_logs_one_line_per_outage(
    own_redis: RestartableRedis, procs: Processes
) -> None:
    dispatcher = procs.start("dispatcher", role_env(own_redis.url, free_port()))
    await wait_dispatcher_ready(dispatcher, own_redis.url)
    await own_redis.stop()
    await wait_log(dispatcher, "WARNING", 5)
    end = time.monotonic() + 1.0
    await wait_until(_past(end), 3, message="the outage to last")
    await own_redis.start()
    await wait_log(dispatcher, REACHABLE, 2.5)
    dispatcher.check_alive()
    assert_outage_logged(dispatcher)


def _past(deadline: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return time.monotonic() >= deadline

    return check


def test_comma_separated_numeric_list_from_env() -> None:
    settings = load_settings(CONFIG, {"ACCEPTD_WEBHOOKS__RETRY_SCHEDULE": "0.2,0.5,1"})
    assert settings.webhooks.retry_schedule == [0.2, 0.5, 1.0]
