"""Server-Sent Events (CONTRACT.md section 5) read over real HTTP from the real service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.http import sse
from service.state import Roles
from tests.http.test_api import ASYNC, make_settings
from tests.support.cluster import both
from tests.support.sse_client import SSEvent, read_events

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        app = create_app(settings, Roles(api=True, worker=run_worker))
        return await aiohttp_client(app, server_kwargs={"handler_cancellation": True})

    return make


async def submit(client: Client, op: str, body: Any, **headers: str) -> str:
    resp = await client.post(f"/v1/{op}", json=body, headers={**ASYNC, **headers})
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["id"])


async def collect(
    client: Client,
    path: str,
    *,
    count: int | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, list[SSEvent]]:
    """Read events until the stream ends (or ``count`` events); returns status and events."""
    events: list[SSEvent] = []
    async with asyncio.timeout(timeout):
        resp = await client.get(path, headers=headers or {})
        if resp.status != 200:
            return resp.status, events
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for ev in read_events(resp):
            events.append(ev)
            if count is not None and len([e for e in events if e.data]) >= count:
                resp.close()
                break
    return resp.status, events


def ids(events: list[SSEvent]) -> list[str]:
    return [e.id for e in events if e.id is not None]


def seqs(events: list[SSEvent]) -> list[int]:
    return [int(e.id.split(".")[0]) for e in events if e.id is not None]


@both
async def test_stream_sends_retry_then_status_then_changes_and_ends(app_client: MakeClient) -> None:
    client = await app_client()
    rid = await submit(client, "sleep", {"seconds": 0.5, "steps": 3})
    status, events = await collect(client, f"/v1/queue/requests/{rid}/events")
    assert status == 200
    assert events[0].retry is not None and not events[0].data
    data_events = [e for e in events if e.data]
    first = data_events[0]
    assert first.event == "status" and first.json()["id"] == rid
    assert first.json()["status"] in ("queued", "running")
    assert "links" in first.json()
    names = [e.event for e in data_events]
    assert "progress" in names
    last = data_events[-1]
    assert last.event == "status" and last.json()["status"] == "succeeded"
    numbers = seqs(data_events)
    assert numbers == sorted(numbers) and len(set(ids(data_events))) == len(data_events)
    progress = next(e for e in data_events if e.event == "progress").json()
    assert 0 < progress["progress"]["percent"] <= 100


async def test_reconnect_after_the_terminal_event_gets_204(app_client: MakeClient) -> None:
    client = await app_client()
    resp = await client.post("/v1/echo", json={"x": 1})
    rid = resp.headers["Location"].rsplit("/", 1)[1]
    status, events = await collect(client, f"/v1/queue/requests/{rid}/events")
    assert status == 200
    terminal = [e for e in events if e.data][-1]
    assert terminal.json()["status"] == "succeeded"
    status, _ = await collect(
        client, f"/v1/queue/requests/{rid}/events", headers={"Last-Event-ID": terminal.id or ""}
    )
    assert status == 204
    # Without Last-Event-ID, a finished request still shows its state once, then ends.
    status, events = await collect(client, f"/v1/queue/requests/{rid}/events")
    assert status == 200 and [e.json()["status"] for e in events if e.data] == ["succeeded"]


@both
async def test_resume_with_last_event_id_gets_exactly_the_missed_events(
    app_client: MakeClient,
) -> None:
    idle = await app_client(run_worker=False)
    rid = await submit(idle, "sleep", {"seconds": 0.6, "steps": 6})
    _, first = await collect(idle, f"/v1/queue/requests/{rid}/events", count=1)
    [queued] = [e for e in first if e.data]
    assert queued.json()["status"] == "queued"
    worker = await app_client(run_worker=True)  # runs it while nobody listens
    deadline = asyncio.get_running_loop().time() + 10
    while (await (await idle.get(f"/v1/queue/requests/{rid}")).json())["status"] != "succeeded":
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    _, missed = await collect(
        worker, f"/v1/queue/requests/{rid}/events", headers={"Last-Event-ID": queued.id or ""}
    )
    data = [e for e in missed if e.data]
    numbers = seqs(data)
    assert numbers == list(range(int(queued.id or 0) + 1, numbers[-1] + 1))
    assert data[0].event == "status" and data[0].json()["status"] == "running"
    assert [e.event for e in data].count("progress") == 6
    assert data[-1].json()["status"] == "succeeded"


async def test_resume_when_the_events_are_gone_sends_a_fresh_status(
    app_client: MakeClient,
) -> None:
    client = await app_client(run_worker=False)
    rid = await submit(client, "echo", {})
    await client.delete(f"/v1/queue/requests/{rid}")  # events before any stream are not kept
    status, events = await collect(
        client, f"/v1/queue/requests/{rid}/events", headers={"Last-Event-ID": "1"}
    )
    data = [e for e in events if e.data]
    assert status == 200 and len(data) == 1 and data[0].json()["status"] == "canceled"


async def test_unknown_and_foreign_streams_are_404(app_client: MakeClient) -> None:
    clients = [
        {"name": "alice", "key": "alice-key-0123456789"},
        {"name": "bob", "key": "bob-key-0123456789"},
    ]
    c = await app_client(run_worker=False, auth={"clients": clients})
    resp = await c.post(
        "/v1/echo", json={}, headers={**ASYNC, "Authorization": "Bearer alice-key-0123456789"}
    )
    rid = (await resp.json())["id"]
    resp = await c.get(f"/v1/queue/requests/{rid}/events?access_token=bob-key-0123456789")
    assert resp.status == 404 and resp.content_type == "application/problem+json"
    resp = await c.get("/v1/queue/requests/" + "0" * 34 + "/events?access_token=bob-key-0123456789")
    assert resp.status == 404
    resp = await c.get(f"/v1/queue/requests/{rid}/events")
    assert resp.status == 401
    # EventSource cannot send headers: the key may come as ?access_token=.
    _, events = await collect(
        c, f"/v1/queue/requests/{rid}/events?access_token=alice-key-0123456789", count=1
    )
    assert [e.json()["id"] for e in events if e.data] == [rid]


@both
async def test_position_events_follow_the_queue(
    app_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "POSITION_INTERVAL", 0.1)
    client = await app_client(run_worker=False)
    ahead = [await submit(client, "echo", {"i": i}) for i in range(2)]
    rid = await submit(client, "echo", {"i": 2})
    async with asyncio.timeout(10):
        resp = await client.get(f"/v1/queue/requests/{rid}/events")
        reader = read_events(resp)
        seen: list[SSEvent] = []
        async for ev in reader:
            if not ev.data:
                continue
            seen.append(ev)
            if ev.event == "status":
                assert ev.json()["position"] == 2
                await client.delete(f"/v1/queue/requests/{ahead[0]}")
            elif ev.event == "position" and ev.json()["position"] == 1:
                await client.delete(f"/v1/queue/requests/{ahead[1]}")
            elif ev.event == "position" and ev.json()["position"] == 0:
                break
        resp.close()
    positions = [e for e in seen if e.event == "position"]
    assert [e.json()["position"] for e in positions] == [1, 0]
    assert ids(seen) == ["1", "1.1", "1.2"]


@both
async def test_client_stream_carries_every_request_and_resumes(app_client: MakeClient) -> None:
    client = await app_client(run_worker=True)
    async with asyncio.timeout(10):
        resp = await client.get("/v1/queue/events?operation=echo")
        assert resp.status == 200
        reader = read_events(resp)
        first = await anext(reader)
        assert first.retry is not None
        await client.post("/v1/echo", json={"n": 1})
        got: list[SSEvent] = []
        async for ev in reader:
            if ev.data:
                got.append(ev)
            if ev.data and ev.json().get("status") == "succeeded":
                break
        resp.close()
    assert [e.json()["status"] for e in got] == ["queued", "running", "succeeded"]
    last_id = got[0].id
    assert last_id
    # Resume from the first event: exactly the two after it, then live ones.
    async with asyncio.timeout(10):
        resp = await client.get("/v1/queue/events", headers={"Last-Event-ID": last_id})
        reader = read_events(resp)
        replay: list[SSEvent] = []
        async for ev in reader:
            if ev.data:
                replay.append(ev)
            if len(replay) == 2:
                break
        resp.close()
    # The same events; this stream merges every operation's, so its ids are cursors (one
    # operation's stream sent that operation's own ids).
    assert [(e.event, e.data) for e in replay] == [(e.event, e.data) for e in got[1:]]
    assert all(e.id and e.id.startswith("v1.") for e in replay)
    assert all(e.id and "-" in e.id and e.id[0].isdigit() for e in got)
    assert (await client.get("/v1/queue/events?operation=nope")).status == 404


async def test_heartbeat_comments_keep_idle_streams_alive(
    app_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "PING_SECONDS", 0.1)
    client = await app_client(run_worker=False)
    rid = await submit(client, "echo", {})
    async with asyncio.timeout(5):
        resp = await client.get(f"/v1/queue/requests/{rid}/events")
        async for ev in read_events(resp):
            if ev.comments:
                assert ev.comments == ["ping"]
                break
        resp.close()


async def test_disconnected_clients_are_released_at_once(app_client: MakeClient) -> None:
    client = await app_client(run_worker=False)
    rid = await submit(client, "echo", {})
    streams = client.app[sse.streams_key] if client.app else None
    assert streams is not None
    resp = await client.get(f"/v1/queue/requests/{rid}/events")
    await resp.content.readline()
    assert len(streams.open) == 1
    resp.close()
    async with asyncio.timeout(5):
        while streams.open:
            await asyncio.sleep(0.01)


async def test_shutdown_closes_streams(app_client: MakeClient) -> None:
    client = await app_client(run_worker=False)
    rid = await submit(client, "echo", {})
    assert client.app is not None
    async with asyncio.timeout(5):
        resp = await client.get(f"/v1/queue/requests/{rid}/events")
        reader = read_events(resp)
        await anext(reader)  # retry
        await anext(reader)  # status
        await sse.close_streams(client.app)
        rest = [ev async for ev in reader]
    assert rest == []


async def test_a_slow_client_overflows_its_bounded_buffer() -> None:
    stream = sse.Stream("echo", "x")
    for i in range(sse.BUFFER + 10):
        stream.offer(i)
    assert stream.overflowed and stream.pending() == 1
    assert await stream.get() is sse._CLOSE


async def test_an_all_requests_stream_that_overflows_catches_up_instead_of_closing() -> None:
    stream = sse.Stream("echo", None, catch_up=True)
    last = 3 * sse.CLIENT_BUFFER + 4
    for i in range(last + 1):
        stream.offer(i)
        assert stream.pending() <= sse.CLIENT_BUFFER  # bounded all along
    # Not closed: what was dropped is read back from Redis (the marker says so), then the rest.
    assert not stream.overflowed
    items = await stream.take()
    assert items[0] is sse._BEHIND and items[1:] == list(range(last + 2 - len(items), last + 1))
    assert stream.pending() == 0


async def test_a_slow_then_fast_reader_gets_every_event_once(
    app_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The all-requests stream's writes are held (a reader that stopped reading) while requests
    # run: its buffer overflows, and once the reader reads again the stream sends what it
    # dropped from the client's kept events (in pages), then goes on live — every event once,
    # in order per request, no reset, no reconnect.
    monkeypatch.setattr(sse, "CLIENT_BUFFER", 4)
    monkeypatch.setattr(sse, "BACKLOG_PAGE", 7)
    gate, held = asyncio.Event(), asyncio.Event()
    write = sse._write

    async def slow_reader(request: web.Request, resp: Any, frames: list[str]) -> None:
        if frames and not gate.is_set():
            held.set()
            await gate.wait()
        await write(request, resp, frames)

    monkeypatch.setattr(sse, "_write", slow_reader)
    client = await app_client(run_worker=True)
    assert client.app is not None
    n = 20
    async with asyncio.timeout(30):
        resp = await client.get("/v1/queue/events?operation=echo")
        reader = read_events(resp)
        assert (await anext(reader)).retry is not None
        rids = [await submit(client, "echo", {"i": i}) for i in range(n)]
        await held.wait()
        (stream,) = client.app[sse.streams_key].open
        while sse._BEHIND not in stream._items:  # the buffer overflowed
            await asyncio.sleep(0.01)
        gate.set()
        got: list[SSEvent] = []
        finished = 0
        async for ev in reader:
            if not ev.data:
                continue
            got.append(ev)
            if ev.event == "status" and ev.json()["status"] == "succeeded":
                finished += 1
                if finished == n:
                    break
        resp.close()
    assert [e.event for e in got if e.event not in ("status", "progress")] == []  # no reset
    assert len(set(ids(got))) == len(got)
    statuses: dict[str, list[str]] = {}
    for e in got:
        statuses.setdefault(e.json()["id"], []).append(e.json()["status"])
    assert statuses == {rid: ["queued", "running", "succeeded"] for rid in rids}


async def test_stream_limits_per_client(app_client: MakeClient) -> None:
    client = await app_client(run_worker=False, server={"max_streams_per_client": 1})
    rid = await submit(client, "echo", {})
    first = await client.get(f"/v1/queue/requests/{rid}/events")
    await first.content.readline()
    second = await client.get(f"/v1/queue/requests/{rid}/events")
    assert second.status == 429 and "Retry-After" in second.headers
    first.close()


async def test_cors_for_configured_origins(app_client: MakeClient) -> None:
    client = await app_client(run_worker=False, server={"cors_origins": ["https://app.example"]})
    resp = await client.options(
        "/v1/echo",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 204 and "Prefer" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp = await client.post(
        "/v1/echo", json={}, headers={**ASYNC, "Origin": "https://app.example"}
    )
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    rid = (await resp.json())["id"]
    resp = await client.get(
        f"/v1/queue/requests/{rid}/events", headers={"Origin": "https://app.example"}
    )
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp.close()
    resp = await client.get("/v1/queue", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_shutdown_ends_a_ticker_whose_cancellation_a_client_swallowed(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Redis client may turn a cancellation that lands mid-call into a connection error;
    # the position ticker survives errors, so it must still see that it was cancelled.
    from redis.exceptions import ConnectionError as RedisConnectionError

    from service.queue.store import Queue

    in_sweep = asyncio.Event()

    async def swallowing_sweep(self: Queue, ops: Any, limit: int = 100) -> int:
        in_sweep.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        return 0

    monkeypatch.setattr(Queue, "expire_due", swallowing_sweep)
    app = create_app(make_settings(redis_url), Roles(api=True, worker=False))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        async with asyncio.timeout(10):
            await in_sweep.wait()
    finally:
        async with asyncio.timeout(10):  # without the check: the ticker ticks on forever
            await runner.cleanup()
