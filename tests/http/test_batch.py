"""Bulk submit (CONTRACT.md section 9): ``POST /v1/{op}/batch``, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aredis

from service.queue import keys
from service.queue.store import Queue
from tests.http.test_api import (
    ASYNC,
    Client,
    MakeClient,
    app_client,
    assert_problem,
    idle,
    post,
)
from tests.support.sse_client import read_events

__all__ = ["app_client", "idle"]  # fixtures


async def batch(client: Client, op: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    resp = await client.post(f"/v1/{op}/batch", json=body, headers=headers)
    text = await resp.text()
    return resp.status, (orjson.loads(text) if text else None), resp.headers


async def test_a_mixed_batch_is_answered_item_by_item_in_order(app_client: MakeClient) -> None:
    tiny = {"handler": "service.operations.echo:echo", "max_queue_depth": 3}
    c = await app_client(run_worker=False, operations={"tiny": tiny})
    # An earlier single submit with a key (compact JSON: an item's input is compared as such).
    resp = await c.post(
        "/v1/tiny",
        data=b'{"n":0}',
        headers={**ASYNC, "Idempotency-Key": "k-single", "Content-Type": "application/json"},
    )
    single = await resp.json()
    assert resp.status == 202
    items = [
        {"input": {"n": 1}},  # 0: queued at position 1 (after the single submit)
        {"input": "x", "priority": 11},  # 1: bad priority
        {"input": {"n": 2}, "idempotency_key": "k-batch"},  # 2: queued at 2 (the queue is full)
        {"input": {"n": 2}, "idempotency_key": "k-batch"},  # 3: replays item 2
        {"input": {"n": 9}, "idempotency_key": "k-batch"},  # 4: same key, other body
        {"input": {"n": 0}, "idempotency_key": "k-single"},  # 5: replays the single submit
        {"input": {"n": 3}},  # 6: queue full
        {"priority": 1},  # 7: no input
        {"input": {}, "colour": "red"},  # 8: unknown member
    ]
    status, body, headers = await batch(c, "tiny", {"requests": items}, **ASYNC)
    assert status == 202 and headers["Preference-Applied"] == "respond-async"
    out = body["items"]
    assert len(out) == len(items)
    assert out[0]["status"] == "queued" and out[0]["position"] == 1
    assert out[0]["links"][0]["href"] == f"/v1/queue/requests/{out[0]['id']}"
    assert out[1]["status"] == 400 and out[1]["pointer"] == "/requests/1/priority"
    assert out[2]["status"] == "queued" and out[2]["position"] == 2
    assert out[3]["id"] == out[2]["id"] and out[3]["replayed"] is True
    assert out[3]["position"] == 2
    assert out[4]["status"] == 422 and out[4]["type"].endswith("idempotency-key-reused")
    assert out[5]["id"] == single["id"] and out[5]["replayed"] is True
    assert out[6]["status"] == 503 and out[6]["type"].endswith("queue-full")
    assert out[6]["retry_after"] >= 1
    assert out[7]["status"] == 400 and out[7]["pointer"] == "/requests/7"
    assert out[8]["status"] == 400 and out[8]["pointer"] == "/requests/8/colour"
    for problem in (out[1], out[4], out[6], out[7], out[8]):
        assert problem["title"] and problem["detail"] and problem["type"]
    # What the monitors said is what was stored.
    for item in (out[0], out[2]):
        monitor = await (await c.get(f"/v1/queue/requests/{item['id']}")).json()
        assert monitor["status"] == "queued" and monitor["position"] == item["position"]
    listed = (await (await c.get("/v1/queue/requests?operation=tiny")).json())["items"]
    assert len(listed) == 3


async def test_schema_and_size_are_checked_per_item(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, server={"max_body_bytes": 64})
    items = [
        {"input": {"seconds": "soon"}},
        {"input": {"seconds": 0.1}, "queue_timeout": 30},
        {"input": {"seconds": 0.1, "pad": "x" * 100}},
        {"input": {"seconds": 0.1}, "queue_timeout": -1},
        {"input": {"seconds": 0.1}, "idempotency_key": ""},
        {"input": {"seconds": 0.1}, "callback_url": "ftp://example.com/x"},
    ]
    status, body, _ = await batch(c, "sleep", {"requests": items})
    assert status == 202  # always asynchronous, even without Prefer
    out = body["items"]
    assert out[0]["status"] == 422 and {e["path"] for e in out[0]["errors"]} == {"/seconds"}
    assert out[0]["pointer"] == "/requests/0/input"
    assert out[1]["status"] == "queued" and out[1]["position"] == 0
    # The body limit (64 bytes here) is the batch's; an item's input has the submit's.
    assert out[2]["status"] in (413, 422)
    assert out[3]["status"] == 400 and out[3]["pointer"] == "/requests/3/queue_timeout"
    assert out[4]["status"] == 400 and out[4]["pointer"] == "/requests/4/idempotency_key"
    assert out[5]["status"] == 400 and out[5]["pointer"] == "/requests/5/callback_url"


async def test_headers_apply_to_every_item_unless_it_overrides_them(
    idle: Client, redis_client: aredis.Redis
) -> None:
    items = [
        {"input": {"i": 0}},
        {"input": {"i": 1}, "priority": -3},
        {"input": {"i": 2}, "priority": None, "queue_timeout": None},  # null: not given
    ]
    headers = {"Queue-Priority": "5", "Queue-Timeout": "60", "Idempotency-Key": "b-1"}
    status, body, _ = await batch(idle, "echo", {"requests": items}, **headers)
    assert status == 202
    out = body["items"]
    assert [o["priority"] for o in out] == [5, -3, 5]
    assert [o["position"] for o in out] == [0, 2, 1]
    for o in out:
        record = await redis_client.hgetall(keys.record("echo", o["id"]))
        assert b"qdl" in record  # the Queue-Timeout header applies
    # The batch's Idempotency-Key names each item by its place: sent again, all replay.
    status, again, _ = await batch(idle, "echo", {"requests": items}, **headers)
    assert [a["id"] for a in again["items"]] == [o["id"] for o in out]
    assert all(a["replayed"] for a in again["items"])


async def test_a_thousand_items_queue_in_order_and_run_fifo(
    idle: Client, redis_client: aredis.Redis
) -> None:
    items = [{"input": {"i": i}} for i in range(1000)]
    status, body, _ = await batch(idle, "echo", {"requests": items})
    assert status == 202
    out = body["items"]
    assert [o["position"] for o in out] == list(range(1000))
    assert len({o["id"] for o in out}) == 1000
    # A worker sees them in submission order.
    queue = Queue(redis_client)
    seen: list[int] = []
    while len(seen) < 1000:
        jobs, _ = await queue.claim("echo", "w1", f"t{len(seen)}", 200, lease=30, worker_ttl=10)
        assert jobs
        seen.extend(orjson.loads(j.input)["i"] for j in jobs)
    assert seen == list(range(1000))
    await queue.batcher.close()


async def test_envelope_errors(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, server={"max_batch_bytes": 200_000})
    cases: list[tuple[Any, int]] = [
        ({"requests": []}, 400),
        ({"requests": [{"input": 1}] * 1001}, 400),
        ({"requests": {"input": 1}}, 400),
        ([{"input": 1}], 400),
        ({"requests": [{"input": 1}], "extra": True}, 400),
        ({"requests": [{"input": "x" * 1000}] * 300}, 413),
    ]
    for body, expected in cases:
        status, problem, headers = await batch(c, "echo", body)
        assert status == expected, (body if len(str(body)) < 200 else "", problem)
        assert_problem(headers, problem, expected)
    json_type = {"Content-Type": "application/json"}
    resp = await c.post("/v1/echo/batch", data=b"{not json", headers=json_type)
    assert resp.status == 400
    resp = await c.post("/v1/echo/batch", data=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    status, _, _ = await batch(c, "nope", {"requests": [{"input": 1}]})
    assert status == 404
    # A bad header refuses the whole batch, as it would a submit.
    status, _, _ = await batch(c, "echo", {"requests": [{"input": 1}]}, **{"Queue-Priority": "x"})
    assert status == 400
    # Nothing was queued by any of these.
    assert (await (await c.get("/v1/queue/requests")).json())["items"] == []


async def test_items_belong_to_the_caller_and_count_against_its_rate_limit(
    app_client: MakeClient,
) -> None:
    clients = [
        {"name": "alice", "key": "alice-key-0123456789"},
        {"name": "bob", "key": "bob-key-0123456789"},
    ]
    c = await app_client(
        run_worker=False, auth={"clients": clients, "rate_per_second": 0.5, "burst": 3}
    )
    alice = {"Authorization": "Bearer alice-key-0123456789"}
    bob = {"Authorization": "Bearer bob-key-0123456789"}
    resp = await c.post("/v1/echo/batch", json={"requests": [{"input": 1}]})
    assert resp.status == 401
    items = [{"input": i} for i in range(5)]
    status, body, _ = await batch(c, "echo", {"requests": items}, **alice)
    out = body["items"]
    assert [o.get("status") for o in out] == ["queued", "queued", "queued", 429, 429]
    assert out[3]["type"].endswith("rate-limited") and out[3]["retry_after"] >= 1
    rid = out[0]["id"]
    assert (await c.get(f"/v1/queue/requests/{rid}", headers=alice)).status == 200
    assert (await c.get(f"/v1/queue/requests/{rid}", headers=bob)).status == 404
    listed = await (await c.get("/v1/queue/requests", headers=alice)).json()
    assert len(listed["items"]) == 3
    assert (await (await c.get("/v1/queue/requests", headers=bob)).json())["items"] == []
    # Bob's bucket is his own.
    status, body, _ = await batch(c, "echo", {"requests": items[:3]}, **bob)
    assert status == 202 and [o["status"] for o in body["items"]] == ["queued"] * 3


async def test_batch_items_run_and_stream_like_single_submits(app_client: MakeClient) -> None:
    c = await app_client()
    status, body, _ = await batch(c, "echo", {"requests": [{"input": {"v": i}} for i in range(5)]})
    assert status == 202
    for i, item in enumerate(body["items"]):
        resp = await c.get(f"/v1/echo/{item['id']}")
        while resp.status == 404:
            resp = await c.get(f"/v1/echo/{item['id']}")
        assert resp.status == 200 and await resp.json() == {"v": i}
    # A single submit alongside: unchanged.
    status, one, _ = await post(c, "echo", {"v": 9})
    assert status == 201 and one == {"v": 9}


async def test_openapi_has_every_operations_batch_path(idle: Client) -> None:
    doc = await (await idle.get("/openapi.json")).json()
    ops = await (await idle.get("/v1/operations")).json()
    names = [o["name"] for o in (ops["items"] if isinstance(ops, dict) else ops)]
    for name in names:
        assert "post" in doc["paths"][f"/v1/{name}/batch"]


async def test_batch_items_show_in_the_clients_event_stream(app_client: MakeClient) -> None:
    c = await app_client()
    async with asyncio.timeout(10):
        resp = await c.get("/v1/queue/events?operation=echo")
        assert resp.status == 200
        reader = read_events(resp)
        await anext(reader)  # the retry: line
        status, body, _ = await batch(c, "echo", {"requests": [{"input": i} for i in range(3)]})
        assert status == 202
        ids = {item["id"] for item in body["items"]}
        done: set[str] = set()
        async for ev in reader:
            if ev.data and ev.json().get("status") == "succeeded":
                done.add(ev.json()["id"])
            if done == ids:
                break
        resp.close()


async def test_the_body_limits_apply_to_the_whole_envelope(idle: Client) -> None:
    deep: Any = 1
    for _ in range(61):
        deep = [deep]
    status, body, _ = await batch(idle, "echo", {"requests": [{"input": deep}]})
    assert status == 202 and body["items"][0]["status"] == "queued"
    status, body, _ = await batch(idle, "echo", {"requests": [{"input": [deep]}]})
    assert status == 400 and body["type"].endswith("json-too-deep")
