"""The console's endpoints: GET /v1/queue/history and GET /v1/queue/workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from service.app import create_app
from service.queue import presence
from service.state import Roles
from tests.http.test_api import ASYNC, Client, MakeClient, make_settings, post, wait_status
from tests.support import handlers
from tests.support.sse_client import SSEvent, read_events


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        return await aiohttp_client(create_app(settings, Roles(api=True, worker=run_worker)))

    return make


async def wait_for(
    client: Client, path: str, check: Any, timeout: float = 10, headers: Any = None
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get(path, headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        if check(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def test_history_counts_the_last_minute_per_second(app_client: MakeClient) -> None:
    client = await app_client()
    ok = [(await post(client, "echo", {"i": i}, **ASYNC))[1]["id"] for i in range(3)]
    _, failed, _ = await post(client, "boom", {}, **ASYNC)
    for rid in ok:
        await wait_status(client, rid, {"succeeded"})
    await wait_status(client, failed["id"], {"failed"})
    resp = await client.get("/v1/queue/history?window=1m")
    body = await resp.json()
    assert body["window_seconds"] == 60 and body["step_seconds"] == 1
    by_op = {o["operation"]: o for o in body["operations"]}
    echo, boom = by_op["echo"], by_op["boom"]
    assert len(echo["time"]) == 60 == len(echo["submitted"]) == len(echo["queue_depth"])
    assert echo["totals"] == {"submitted": 3, "succeeded": 3, "failed": 0, "canceled": 0}
    assert boom["totals"]["failed"] == 1 and sum(boom["failed"]) == 1
    assert echo["run_ms"]["count"] == 3 and echo["run_ms"]["p50"] is not None
    assert echo["wait_ms"]["p95"] is not None and echo["queue_depth"][-1] == 0
    day = await (await client.get("/v1/queue/history?operation=echo&window=24h")).json()
    assert day["step_seconds"] == 60 and [o["operation"] for o in day["operations"]] == ["echo"]
    assert len(day["operations"][0]["time"]) == 1440
    assert day["operations"][0]["totals"]["succeeded"] == 3


@pytest.mark.parametrize(
    "query", ["window=0", "window=25h", "window=soon", "operation=nope", "window=30s"]
)
async def test_history_rejects_bad_queries(app_client: MakeClient, query: str) -> None:
    client = await app_client(run_worker=False)
    resp = await client.get(f"/v1/queue/history?{query}")
    assert resp.status == 400
    body = await resp.json()
    assert body["type"] == "urn:acceptd:problem:invalid-query"
    assert body["parameter"] in query


async def test_workers_lists_each_process_with_its_running_requests(
    app_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "INTERVAL", 0.1)
    client = await app_client(worker={"concurrency": 3})
    _, hung, _ = await post(client, "hang", {}, **ASYNC)
    await wait_status(client, hung["id"], {"running"})

    def running(body: Any) -> bool:
        return any(r["id"] == hung["id"] for w in body["items"] for r in w.get("running", []))

    body = await wait_for(client, "/v1/queue/workers", running)
    [worker] = [w for w in body["items"] if w["kind"] == "worker"]
    assert worker["alive"] and worker["concurrency"] == 3 and worker["pid"] > 0
    assert "hang" in worker["operations"] and worker["host"]
    assert worker["heartbeat"] > 0
    [run] = worker["running"]
    assert run["operation"] == "hang" and run["age_seconds"] >= 0
    await client.delete(f"/v1/queue/requests/{hung['id']}")


ADMIN_CLIENTS: list[dict[str, Any]] = [
    {"name": "ops", "key": "console-operator-key-0123", "admin": True},
    {"name": "alice", "key": "console-alice-key-0123456"},
    {"name": "bob", "key": "console-bob-key-0123456789"},
]


def bearer(name: str) -> dict[str, str]:
    key = next(str(c["key"]) for c in ADMIN_CLIENTS if c["name"] == name)
    return {"Authorization": f"Bearer {key}"}


async def test_an_operator_sees_and_acts_on_every_clients_requests(app_client: MakeClient) -> None:
    client = await app_client(auth={"clients": ADMIN_CLIENTS})
    ids = {}
    for who in ("alice", "bob"):
        resp = await client.post("/v1/boom", json={}, headers={**bearer(who), **ASYNC})
        ids[who] = (await resp.json())["id"]
    me = await (await client.get("/v1/whoami", headers=bearer("alice"))).json()
    assert me == {"client": "alice", "admin": False, "clients": []}
    ops = await (await client.get("/v1/whoami", headers=bearer("ops"))).json()
    assert ops == {"client": "ops", "admin": True, "clients": ["ops", "alice", "bob"]}
    # A non-admin key sees only its own, and may not ask for others'.
    own = await (await client.get("/v1/queue/requests", headers=bearer("alice"))).json()
    assert [r["id"] for r in own["items"]] == [ids["alice"]] and "client" not in own["items"][0]
    resp = await client.get("/v1/queue/requests?client=*", headers=bearer("alice"))
    assert resp.status == 403 and (await resp.json())["parameter"] == "client"
    resp = await client.get(f"/v1/queue/requests/{ids['bob']}", headers=bearer("alice"))
    assert resp.status == 404
    # The operator: every client's, each saying whose; one client's; any request's monitor.
    every = await (await client.get("/v1/queue/requests?client=*", headers=bearer("ops"))).json()
    assert {(r["id"], r["client"]) for r in every["items"]} == {
        (ids["alice"], "alice"),
        (ids["bob"], "bob"),
    }
    bobs = await (await client.get("/v1/queue/requests?client=bob", headers=bearer("ops"))).json()
    assert [r["id"] for r in bobs["items"]] == [ids["bob"]]
    resp = await client.get("/v1/queue/requests?client=carol", headers=bearer("ops"))
    assert resp.status == 400
    for who in ("alice", "bob"):
        path = f"/v1/queue/requests/{ids[who]}"
        await wait_for(client, path, lambda b: b["status"] == "failed", headers=bearer("ops"))
    # An operator's retry is made for the request's own client.
    resp = await client.post(
        f"/v1/queue/requests/{ids['bob']}/retry", headers={**bearer("ops"), **ASYNC}
    )
    assert resp.status == 202, await resp.text()
    accepted = await resp.json()
    assert accepted["client"] == "bob" and accepted["retry_of"] == ids["bob"]  # says whose
    new_id = accepted["id"]
    # A client's own retry does not (its monitor does not either).
    resp = await client.post(
        f"/v1/queue/requests/{ids['alice']}/retry", headers={**bearer("alice"), **ASYNC}
    )
    assert resp.status == 202 and "client" not in await resp.json()
    resp = await client.get(f"/v1/queue/requests/{new_id}", headers=bearer("ops"))
    retried = await resp.json()
    assert retried["client"] == "bob" and retried["retry_of"] == ids["bob"]
    resp = await client.get(f"/v1/queue/requests/{new_id}", headers=bearer("bob"))
    assert resp.status == 200
    # The input, kept for a failed request (it may be retried); only for those who may see it.
    resp = await client.get(f"/v1/queue/requests/{ids['alice']}/input", headers=bearer("alice"))
    assert await resp.json() == {"kept": True, "input": {}}
    resp = await client.get(f"/v1/queue/requests/{ids['alice']}/input", headers=bearer("bob"))
    assert resp.status == 404


async def test_an_operators_synchronous_retry_says_whose_in_every_answer(
    app_client: MakeClient,
) -> None:
    client = await app_client(
        auth={"clients": ADMIN_CLIENTS},
        operations={"fails-once": {"handler": "tests.support.handlers:fails_once", "attempts": 1}},
    )
    handlers.FAIL_ONCE.update({"sync-1", "sync-2"})
    ids = {}
    for key in ("sync-1", "sync-2"):
        resp = await client.post("/v1/fails-once", json={"key": key}, headers=bearer("bob"))
        assert resp.status == 500
        ids[key] = (await resp.json())["request_id"]
    # 201: the body is the result itself, so the header says whose.
    resp = await client.post(f"/v1/queue/requests/{ids['sync-1']}/retry", headers=bearer("ops"))
    assert resp.status == 201, await resp.text()
    assert resp.headers["Queue-Client"] == "bob"
    assert await resp.json() == {"key": "sync-1", "attempt": 1}
    # The new request's error answered synchronously: the header and the problem's client.
    handlers.FAIL_ONCE.add("sync-2")
    resp = await client.post(f"/v1/queue/requests/{ids['sync-2']}/retry", headers=bearer("ops"))
    problem = await resp.json(content_type=None)
    assert resp.status == 500 and problem["client"] == "bob", problem
    assert resp.headers["Queue-Client"] == "bob"
    # 202 too (the monitor's client was there already); a client's own retry says nothing.
    resp = await client.post(
        f"/v1/queue/requests/{ids['sync-2']}/retry", headers={**bearer("ops"), **ASYNC}
    )
    assert resp.status == 202 and resp.headers["Queue-Client"] == "bob"
    assert (await resp.json())["client"] == "bob"
    resp = await client.post(f"/v1/queue/requests/{ids['sync-2']}/retry", headers=bearer("bob"))
    assert resp.status == 201 and "Queue-Client" not in resp.headers


async def test_an_operator_follows_every_clients_events_saying_whose(
    app_client: MakeClient,
) -> None:
    client = await app_client(auth={"clients": ADMIN_CLIENTS})
    resp = await client.get("/v1/queue/events?client=*", headers=bearer("alice"))
    assert resp.status == 403 and (await resp.json())["parameter"] == "client"
    resp = await client.get("/v1/queue/events?client=carol", headers=bearer("ops"))
    assert resp.status == 400
    got: list[SSEvent] = []
    async with asyncio.timeout(10):
        resp = await client.get("/v1/queue/events?client=*&operation=echo", headers=bearer("ops"))
        assert resp.status == 200
        reader = read_events(resp)
        await anext(reader)  # the retry hint: the stream is open
        for who in ("alice", "bob"):  # one after the other: their events never share a ms
            await client.post("/v1/echo", json={"who": who}, headers={**bearer(who), **ASYNC})
            async for ev in reader:
                if ev.data:
                    got.append(ev)
                if ev.data and ev.json().get("status") == "succeeded":
                    break
        resp.close()
    seen = [(e.json()["client"], e.json()["status"]) for e in got]
    assert seen == [
        (who, status) for who in ("alice", "bob") for status in ("queued", "running", "succeeded")
    ]
    # Resumed from the first: every client's events after it, each still saying whose.
    async with asyncio.timeout(10):
        resp = await client.get(
            "/v1/queue/events?client=*&operation=echo",
            headers={**bearer("ops"), "Last-Event-ID": got[0].id or ""},
        )
        replay: list[SSEvent] = []
        async for ev in read_events(resp):
            if ev.data:
                replay.append(ev)
            if len(replay) == len(got) - 1:
                break
        resp.close()
    assert {(e.id, e.json()["client"]) for e in replay} == {
        (e.id, e.json()["client"]) for e in got[1:]
    }
    # One client's, for an operator; a client's own stream does not say whose.
    async with asyncio.timeout(10):
        resp = await client.get(
            "/v1/queue/events?client=bob&last_event_id=0", headers=bearer("ops")
        )
        reader = read_events(resp)
        bobs = [ev async for ev in _first_data(reader, 3)]
        resp.close()
    assert {e.json()["client"] for e in bobs} == {"bob"}
    async with asyncio.timeout(10):
        resp = await client.get("/v1/queue/events?last_event_id=0", headers=bearer("alice"))
        mine = [ev async for ev in _first_data(read_events(resp), 3)]
        resp.close()
    assert all("client" not in e.json() for e in mine)
    assert {e.json()["id"] for e in mine} == {got[0].json()["id"]}


async def _first_data(reader: AsyncIterator[SSEvent], n: int) -> AsyncIterator[SSEvent]:
    count = 0
    async for ev in reader:
        if ev.data:
            yield ev
            count += 1
            if count == n:
                return


async def timeline_of(client: Client, rid: str, who: str = "alice") -> Any:
    resp = await client.get(f"/v1/queue/requests/{rid}/timeline", headers=bearer(who))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def steps(body: Any) -> list[tuple[str, str]]:
    return [(item["event"], item["source"]) for item in body["items"]]


async def test_a_requests_timeline_comes_from_its_stored_events_else_its_monitor(
    app_client: MakeClient,
) -> None:
    client = await app_client(auth={"clients": ADMIN_CLIENTS})
    alice = bearer("alice")
    # No stream was ever opened: the record's milestones.
    resp = await client.post("/v1/echo", json={"n": 1}, headers=alice)
    plain = resp.headers["Location"].rsplit("/", 1)[1]
    body = await timeline_of(client, plain)
    assert body["id"] == plain and body["status"] == "succeeded" and "client" not in body
    assert steps(body) == [("created", "monitor"), ("started", "monitor"), ("succeeded", "monitor")]
    assert all(item["at"].endswith("Z") for item in body["items"])
    # An all-requests stream keeps the client's events (cev): every step from them, numbered.
    async with asyncio.timeout(10):
        resp = await client.get("/v1/queue/events?operation=echo", headers=alice)
        reader = read_events(resp)
        await anext(reader)  # the retry hint: the stream is open
        _, made, _ = await post(client, "echo", {"n": 2}, **ASYNC, **alice)
        async for ev in reader:
            if ev.data and ev.json().get("status") == "succeeded":
                break
        resp.close()
    body = await timeline_of(client, made["id"])
    assert steps(body) == [("created", "events"), ("started", "events"), ("succeeded", "events")]
    assert body["items"][0]["seq"] == 1 and body["items"][-1]["seq"] >= 2
    # A per-request stream opened on a running request keeps its events from then on: the
    # cancel asked for and the end come from them, what came before from the record.
    _, hung, _ = await post(client, "hang", {}, **ASYNC, **alice)
    path = f"/v1/queue/requests/{hung['id']}"
    await wait_for(client, path, lambda b: b["status"] == "running", headers=alice)
    async with asyncio.timeout(10):
        resp = await client.get(path + "/events", headers=alice)
        assert resp.status == 200
        await anext(read_events(resp))
        resp.close()
    assert (await client.delete(path, headers=alice)).status == 202
    await wait_for(client, path, lambda b: b["status"] == "canceled", headers=alice)
    body = await timeline_of(client, hung["id"])
    got = steps(body)
    assert got[0] == ("created", "monitor") and ("started", "monitor") in got
    assert got[-2:] == [("cancel_requested", "events"), ("canceled", "events")], got
    assert body["items"][-1]["error"]["type"] == "urn:acceptd:problem:canceled"
    ats = [item["at"] for item in body["items"]]
    assert ats == sorted(ats)
    # The monitor's access rules: its owner and operators (saying whose); 404 for anyone else.
    theirs = await timeline_of(client, hung["id"], who="ops")
    assert theirs["client"] == "alice" and steps(theirs) == got
    for rid, who in ((hung["id"], "bob"), ("0" * 34, "alice"), ("nope", "alice")):
        resp = await client.get(f"/v1/queue/requests/{rid}/timeline", headers=bearer(who))
        assert resp.status == 404
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert (await client.get(f"{path}/timeline")).status == 401
