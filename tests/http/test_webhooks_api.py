"""The webhook endpoints API and end-to-end deliveries through the whole service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.queue import ids
from service.state import Roles
from tests.http.test_api import ASYNC, assert_problem, make_settings
from tests.support.cluster import both
from tests.support.webhooks import Receiver, wait_until

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ALICE = {"Authorization": "Bearer alice-key-0123456789"}
BOB = {"Authorization": "Bearer bob-key-0123456789"}
CLIENTS = [
    {"name": "alice", "key": "alice-key-0123456789"},
    {"name": "bob", "key": "bob-key-0123456789"},
]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(allow_loopback: bool = True, **overrides: Any) -> Client:
        hooks = {"retry_schedule": [0.2, 0.4], "jitter": 0.0}
        if allow_loopback:
            hooks["allow_networks"] = ["127.0.0.0/8"]
        overrides.setdefault("webhooks", {}).update(hooks)
        overrides.setdefault("auth", {"clients": CLIENTS})
        settings = make_settings(redis_url, **overrides)
        app = create_app(settings, Roles(api=True, worker=True, dispatcher=True))
        return await aiohttp_client(app)

    return make


async def test_endpoint_lifecycle_and_isolation(app_client: MakeClient, receiver: Receiver) -> None:
    c = await app_client()
    resp = await c.post(
        "/v1/webhooks/endpoints",
        json={"url": receiver.url + "/hook", "description": "mine", "operations": ["echo"]},
        headers=ALICE,
    )
    created = await resp.json()
    assert resp.status == 201 and created["secret"].startswith("whsec_")
    assert resp.headers["Location"].endswith(f"/v1/webhooks/endpoints/{created['id']}")
    for field in ("id", "url", "events", "operations", "description", "created_at"):
        assert field in created
    assert created["disabled"] is False and created["disabled_reason"] is None
    assert created["events"] == ["request.succeeded", "request.failed", "request.canceled"]
    eid = created["id"]
    shown = await (await c.get(f"/v1/webhooks/endpoints/{eid}", headers=ALICE)).json()
    assert "secret" not in shown or shown["secret"] is None
    listed = await (await c.get("/v1/webhooks/endpoints", headers=ALICE)).json()
    assert [e["id"] for e in listed["items"]] == [eid]
    assert (await (await c.get("/v1/webhooks/endpoints", headers=BOB)).json())["items"] == []
    for method in ("get", "patch", "delete"):
        resp = await getattr(c, method)(
            f"/v1/webhooks/endpoints/{eid}", headers=BOB, json={} if method == "patch" else None
        )
        assert resp.status == 404, method
        assert_problem(resp.headers, await resp.json(content_type=None), 404)
    resp = await c.patch(
        f"/v1/webhooks/endpoints/{eid}",
        json={"events": ["request.running"], "description": "changed"},
        headers=ALICE,
    )
    patched = await resp.json()
    assert resp.status == 200 and patched["events"] == ["request.running"]
    assert patched["description"] == "changed"
    resp = await c.patch(f"/v1/webhooks/endpoints/{eid}", json={"events": ["nope"]}, headers=ALICE)
    assert resp.status == 422
    resp = await c.delete(f"/v1/webhooks/endpoints/{eid}", headers=ALICE)
    assert resp.status == 204
    assert (await c.get(f"/v1/webhooks/endpoints/{eid}", headers=ALICE)).status == 404


async def test_bad_registrations_are_problems(app_client: MakeClient) -> None:
    c = await app_client(allow_loopback=False)
    for body in (
        {"url": "http://127.0.0.1:9/hook"},
        {"url": "http://169.254.169.254/latest/meta-data"},
        {"url": "http://10.0.0.1/"},
        {"url": "http://[::1]/"},
        {"url": "ftp://example.org/"},
        {"url": "http://127.0.0.1/", "bogus": 1},
        {"description": "no url"},
        {"url": 5},
    ):
        resp = await c.post("/v1/webhooks/endpoints", json=body, headers=ALICE)
        problem = await resp.json(content_type=None)
        assert resp.status in (400, 422), body
        assert_problem(resp.headers, problem, resp.status)
    resp = await c.post(
        "/v1/webhooks/endpoints", data=b"{", headers={**ALICE, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await c.post("/v1/webhooks/endpoints", data=b"x", headers=ALICE)
    assert resp.status == 415
    # A per-request callback to a refused address is refused before anything is queued.
    resp = await c.post(
        "/v1/echo", json={}, headers={**ALICE, **ASYNC, "Callback-Url": "http://10.1.2.3/cb"}
    )
    assert resp.status == 422 and (await resp.json(content_type=None))["header"] == "Callback-Url"


@both
async def test_a_finished_request_is_delivered_signed(
    app_client: MakeClient, receiver: Receiver
) -> None:
    c = await app_client()
    resp = await c.post(
        "/v1/webhooks/endpoints", json={"url": receiver.url + "/hook"}, headers=ALICE
    )
    secret = (await resp.json())["secret"]
    resp = await c.post("/v1/echo", json={"hello": "webhooks"}, headers=ALICE)
    assert resp.status == 201
    rid = resp.headers["Location"].rsplit("/", 1)[1]
    await wait_until(lambda: len(receiver.received) >= 1)
    got = receiver.received[0]
    body = got.verify(secret)
    assert body["type"] == "request.succeeded" and body["timestamp"].endswith("Z")
    assert body["data"]["id"] == rid and body["data"]["status"] == "succeeded"
    assert body["data"]["result"] == {"hello": "webhooks"}
    assert body["data"]["links"][0]["href"] == f"/v1/queue/requests/{rid}"
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["webhook-timestamp"].isdigit()
    # Bob's requests never reach Alice's endpoint.
    await c.post("/v1/echo", json={}, headers=BOB)
    await c.post("/v1/echo", json={"again": 1}, headers=ALICE)
    await wait_until(lambda: len(receiver.received) >= 2)
    assert all(r.verify(secret)["data"]["id"] for r in receiver.received)
    assert len(receiver.received) == 2


async def test_a_requests_deliveries_are_listed_for_who_may_see_it(
    app_client: MakeClient, receiver: Receiver
) -> None:
    ops = {"Authorization": "Bearer ops-key-0123456789"}
    c = await app_client(
        auth={"clients": [*CLIENTS, {"name": "ops", "key": "ops-key-0123456789", "admin": True}]}
    )
    resp = await c.post(
        "/v1/webhooks/endpoints", json={"url": receiver.url + "/hook"}, headers=ALICE
    )
    eid = (await resp.json())["id"]
    callback = {"Callback-Url": receiver.url + "/cb"}
    resp = await c.post("/v1/echo", json={"n": 1}, headers={**ALICE, **ASYNC, **callback})
    rid = (await resp.json())["id"]
    await wait_until(lambda: len(receiver.received) >= 2)
    path = f"/v1/queue/requests/{rid}/deliveries"

    async def delivered() -> bool:
        items = (await (await c.get(path, headers=ALICE)).json())["items"]
        return len(items) == 2 and all(d["status"] == "delivered" for d in items)

    await wait_until(delivered)
    items = (await (await c.get(path, headers=ALICE)).json())["items"]
    assert {d["endpoint_id"] for d in items} == {eid, None}
    assert all(d["request_id"] == rid and d["attempts"][0]["status_code"] == 200 for d in items)
    assert (await c.get(path, headers=BOB)).status == 404  # not bob's request
    theirs = (await (await c.get(path, headers=ops)).json())["items"]
    assert {d["id"] for d in theirs} == {d["id"] for d in items}  # an operator sees any
    one = await (await c.get(path + "?limit=1", headers=ALICE)).json()
    assert len(one["items"]) == 1
    assert (await c.get(path + "?limit=0", headers=ALICE)).status == 400
    resp = await c.get("/v1/queue/requests/nope/deliveries", headers=ALICE)
    assert resp.status == 404


@both
async def test_delivery_log_rotation_and_redeliver(
    app_client: MakeClient, receiver: Receiver
) -> None:
    c = await app_client()
    created = await (
        await c.post("/v1/webhooks/endpoints", json={"url": receiver.url}, headers=ALICE)
    ).json()
    eid, old_secret = created["id"], created["secret"]
    receiver.reply(500)
    await c.post("/v1/echo", json={}, headers=ALICE)
    await wait_until(lambda: len(receiver.received) >= 2, timeout=10)
    first, second = receiver.received[:2]
    assert first.webhook_id == second.webhook_id
    log = await (await c.get(f"/v1/webhooks/endpoints/{eid}/deliveries", headers=ALICE)).json()
    [delivery] = log["items"]
    assert delivery["id"] == first.webhook_id
    assert delivery["status"] == "delivered"
    assert (await c.get(f"/v1/webhooks/endpoints/{eid}/deliveries", headers=BOB)).status == 404

    rotated = await (
        await c.post(f"/v1/webhooks/endpoints/{eid}/rotate-secret", headers=ALICE)
    ).json()
    assert rotated["secret"] != old_secret and rotated["secret"].startswith("whsec_")
    resp = await c.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=ALICE)
    assert resp.status == 202
    await wait_until(lambda: len(receiver.received) >= 3)
    again = receiver.received[2]
    assert again.webhook_id == first.webhook_id
    # Both secrets sign during the overlap, so receivers on either verify.
    again.verify(old_secret)
    again.verify(rotated["secret"])
    assert len(again.headers["webhook-signature"].split(" ")) == 2
    resp = await c.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=BOB)
    assert resp.status == 404


@both
async def test_per_request_callback_is_signed_with_the_default_secret(
    app_client: MakeClient, receiver: Receiver
) -> None:
    c = await app_client()
    secret = (await (await c.get("/v1/webhooks/secret", headers=ALICE)).json())["secret"]
    assert secret.startswith("whsec_")
    assert (await (await c.get("/v1/webhooks/secret", headers=ALICE)).json())["secret"] == secret
    assert (await (await c.get("/v1/webhooks/secret", headers=BOB)).json())["secret"] != secret
    resp = await c.post(
        "/v1/sleep",
        json={"seconds": 0.1},
        headers={
            **ALICE,
            **ASYNC,
            "Callback-Url": receiver.url + "/cb",
            "Callback-Events": "running,succeeded",
        },
    )
    rid = (await resp.json())["id"]
    await wait_until(lambda: len(receiver.received) >= 2)
    # Both signed with the client's default secret. Deliveries to one URL run concurrently
    # (webhooks.per_endpoint_concurrency), so their arrival order is not promised.
    events = {e["type"]: e for e in (r.verify(secret) for r in receiver.received)}
    assert sorted(events) == ["request.running", "request.succeeded"]
    assert len(receiver.received) == 2
    assert all(r.path == "/cb" for r in receiver.received)
    assert events["request.succeeded"]["data"]["id"] == rid


async def test_webhook_metrics(app_client: MakeClient, receiver: Receiver) -> None:
    c = await app_client()
    await c.post("/v1/webhooks/endpoints", json={"url": receiver.url}, headers=ALICE)
    await c.post("/v1/echo", json={}, headers=ALICE)
    await wait_until(lambda: len(receiver.received) >= 1)

    async def counted() -> bool:
        text = await (await c.get("/metrics")).text()
        return 'acceptd_webhook_attempts_total{outcome="delivered"} 1.0' in text

    await wait_until(counted)
    ready = await (await c.get("/readyz")).json()
    assert ready["checks"] == {"redis": "ok", "worker": "ok", "dispatcher": "ok"}


async def test_shutdown_lets_deliveries_in_flight_finish(
    aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str, redis_client: Any
) -> None:
    from tests.support.webhooks import HANG
    from webhooks import WebhookStore

    async with Receiver(hang_seconds=0.5) as slow:
        settings = make_settings(
            redis_url,
            webhooks={"allow_networks": ["127.0.0.0/8"], "retry_schedule": [30]},
            auth={"clients": CLIENTS},
        )
        app = create_app(settings, Roles(api=True, worker=True, dispatcher=True))
        c = await aiohttp_client(app)
        created = await (
            await c.post("/v1/webhooks/endpoints", json={"url": slow.url}, headers=ALICE)
        ).json()
        slow.reply(HANG)  # answers 200 after 0.5 s
        await c.post("/v1/echo", json={}, headers=ALICE)
        await wait_until(lambda: slow.hanging == 1)
        await c.close()  # SIGTERM-like: the app's cleanup drains the dispatcher
        store = WebhookStore(redis_client, ["echo"])
        [delivery] = await store.list_deliveries("alice", created["id"])
        assert delivery.status == "delivered" and len(slow.received) == 1


async def test_endpoints_per_client_are_capped(app_client: MakeClient, receiver: Receiver) -> None:
    # Issue 13, defect 1: endpoints per client were unlimited.
    c = await app_client(webhooks={"max_endpoints_per_client": 3})
    body = {"url": receiver.url + "/hook"}
    # Concurrent creates never take a client past its cap (checked and written in one step).
    statuses = [
        (await c.post("/v1/webhooks/endpoints", json=body, headers=ALICE)).status for _ in range(2)
    ]
    assert statuses == [201, 201]
    answers = await asyncio.gather(
        *(c.post("/v1/webhooks/endpoints", json=body, headers=ALICE) for _ in range(3))
    )
    assert sorted(r.status for r in answers) == [201, 409, 409]
    refused = next(r for r in answers if r.status == 409)
    problem = await refused.json(content_type=None)
    assert_problem(refused.headers, problem, 409)
    assert problem["type"].endswith(":too-many-endpoints") and problem["limit"] == 3
    # Another client's cap is its own; deleting one makes room again.
    assert (await c.post("/v1/webhooks/endpoints", json=body, headers=BOB)).status == 201
    listed = await (await c.get("/v1/webhooks/endpoints", headers=ALICE)).json()
    assert len(listed["items"]) == 3 and listed["next"] is None
    eid = listed["items"][0]["id"]
    assert (await c.delete(f"/v1/webhooks/endpoints/{eid}", headers=ALICE)).status == 204
    assert (await c.post("/v1/webhooks/endpoints", json=body, headers=ALICE)).status == 201


async def test_endpoint_listing_is_paginated(app_client: MakeClient, receiver: Receiver) -> None:
    # Issue 13, defect 1: the listing returned every endpoint in one response.
    c = await app_client(webhooks={"max_endpoints_per_client": 150})
    made = []
    for i in range(105):
        resp = await c.post(
            "/v1/webhooks/endpoints", json={"url": f"{receiver.url}/h{i}"}, headers=ALICE
        )
        made.append((await resp.json())["id"])
    first = await (await c.get("/v1/webhooks/endpoints", headers=ALICE)).json()
    assert len(first["items"]) == 100 and first["next"]  # the default page: 100
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = f"?limit=40&cursor={cursor}" if cursor else "?limit=40"
        page = await (await c.get("/v1/webhooks/endpoints" + query, headers=ALICE)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == made  # oldest first, each once, across pages of 40, 40 and 25
    assert [e["id"] for e in first["items"]] == made[:100]
    empty = await (await c.get("/v1/webhooks/endpoints", headers=BOB)).json()
    assert empty == {"items": [], "next": None}
    for query in ("?limit=0", "?limit=101", "?limit=x", "?cursor=%%%"):
        resp = await c.get("/v1/webhooks/endpoints" + query, headers=ALICE)
        assert resp.status == 400, query
        assert_problem(resp.headers, await resp.json(content_type=None), 400)
    spec = await (await c.get("/openapi.json")).json()
    listing = spec["paths"]["/v1/webhooks/endpoints"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert params["limit"]["maximum"] == 100 and params["limit"]["default"] == 100
    assert (
        "cursor" in params and "409" in spec["paths"]["/v1/webhooks/endpoints"]["post"]["responses"]
    )


async def test_bulk_submit_items_have_their_own_callbacks(
    app_client: MakeClient, receiver: Receiver
) -> None:
    c = await app_client()
    secret = (await (await c.get("/v1/webhooks/secret", headers=ALICE)).json())["secret"]
    items = [
        {"input": {"i": 0}},  # the header's callback
        {"input": {"i": 1}, "callback_url": receiver.url + "/own"},
        {"input": {"i": 2}, "callback_url": "http://10.1.2.3/cb"},  # refused address
    ]
    resp = await c.post(
        "/v1/echo/batch",
        json={"requests": items},
        headers={**ALICE, "Callback-Url": receiver.url + "/all", "Callback-Events": "succeeded"},
    )
    out = (await resp.json())["items"]
    assert resp.status == 202 and out[2]["status"] == 422
    assert out[2]["pointer"] == "/requests/2/callback_url" and "header" not in out[2]
    await wait_until(lambda: len(receiver.received) >= 2)
    got = {r.path: r.verify(secret)["data"] for r in receiver.received}
    assert got["/all"]["id"] == out[0]["id"] and got["/own"]["id"] == out[1]["id"]
    assert got["/own"]["result"] == {"i": 1}


async def test_settled_deliveries_are_kept_for_the_configured_retention(
    app_client: MakeClient, receiver: Receiver, redis_client: Any
) -> None:
    from webhooks import WebhookStore

    c = await app_client(webhooks={"delivery_retention_seconds": 120})
    ep = await (
        await c.post("/v1/webhooks/endpoints", json={"url": receiver.url + "/hook"}, headers=ALICE)
    ).json()
    await c.post("/v1/echo", json={}, headers=ALICE)
    store = WebhookStore(redis_client, ["echo"])

    async def settled() -> bool:
        found = await store.list_deliveries("alice", ep["id"])
        return bool(found) and found[0].status == "delivered"

    await wait_until(settled)
    [delivery] = await store.list_deliveries("alice", ep["id"])
    part = store.layout.of(ep["id"])  # the endpoint's partition holds its deliveries
    for key in (part.delivery(delivery.id), part.delivery_log(delivery.id)):
        assert 0 < await redis_client.ttl(key) <= 120


@both
async def test_a_sharded_operations_requests_are_each_delivered_once_signed(
    app_client: MakeClient, receiver: Receiver
) -> None:
    c = await app_client(
        operations={"hot": {"handler": "service.operations.echo:echo", "shards": 3}}
    )
    resp = await c.post(
        "/v1/webhooks/endpoints",
        json={"url": receiver.url + "/hook", "operations": ["hot"]},
        headers=ALICE,
    )
    assert resp.status == 201
    endpoint = await resp.json()
    made = []
    for n in range(12):
        resp = await c.post("/v1/hot", json={"n": n}, headers={**ALICE, **ASYNC})
        made.append((await resp.json())["id"])
    assert len({ids.id_shard(rid) for rid in made}) == 3  # every shard's outbox is read
    # Bob's requests on the same shards never reach Alice's endpoint.
    for n in range(3):
        assert (await c.post("/v1/hot", json={"n": n}, headers={**BOB, **ASYNC})).status == 202
    log = f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries?limit=200"

    async def all_delivered() -> bool:
        items = (await (await c.get(log, headers=ALICE)).json())["items"]
        return len(items) == len(made) and all(d["status"] == "delivered" for d in items)

    await wait_until(all_delivered, timeout=20)
    bodies = [r.verify(endpoint["secret"]) for r in receiver.received]  # each one signed
    assert sorted(b["data"]["id"] for b in bodies) == sorted(made)  # every request, once
    assert {b["type"] for b in bodies} == {"request.succeeded"}
    assert len({r.webhook_id for r in receiver.received}) == len(made)
    items = (await (await c.get(log, headers=ALICE)).json())["items"]
    assert all(len(d["attempts"]) == 1 for d in items)
