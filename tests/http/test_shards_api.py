"""A sharded operation through the HTTP API: idempotency, rate limits, listing, SSE and stats
hold across its shards, on one node and on the 3-master cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.queue import ids
from service.state import Roles
from tests.http.test_api import ASYNC, Client, MakeClient, make_settings, post, wait_status
from tests.support.cluster import both
from tests.support.sse_client import SSEvent, read_events

OP = "hot"
SHARDED = {OP: {"handler": "service.operations.echo:echo", "shards": 3}}


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        app = create_app(settings, Roles(api=True, worker=run_worker))
        return await aiohttp_client(app, server_kwargs={"handler_cancellation": True})

    return make


async def sharded(
    app_client: MakeClient, run_worker: bool, **overrides: Any
) -> TestClient[Any, Any]:
    return await app_client(run_worker=run_worker, operations=SHARDED, **overrides)


@both
async def test_requests_spread_over_shards_and_are_read_listed_and_counted(
    app_client: MakeClient,
) -> None:
    c = await sharded(app_client, run_worker=False)
    made = []
    for n in range(9):
        status, body, _ = await post(c, OP, {"n": n}, **ASYNC)
        assert status == 202
        made.append(body["id"])
    assert len({ids.id_shard(rid) for rid in made}) == 3
    for rid in made:
        body = await (await c.get(f"/v1/queue/requests/{rid}")).json()
        assert body["status"] == "queued" and body["position"] is not None
    positions = sorted(
        [(await (await c.get(f"/v1/queue/requests/{rid}")).json())["position"] for rid in made]
    )
    assert positions == list(range(9))
    # Listing pages through every shard, newest first, each request once.
    seen: list[str] = []
    url = f"/v1/queue/requests?operation={OP}&limit=4"
    while url:
        page = await (await c.get(url)).json()
        seen += [item["id"] for item in page["items"]]
        url = (
            f"/v1/queue/requests?operation={OP}&limit=4&cursor={page['next']}"
            if page["next"]
            else ""
        )
    assert sorted(seen) == sorted(made) and len(seen) == 9
    stats = {s["operation"]: s for s in (await (await c.get("/v1/queue")).json())["operations"]}
    assert stats[OP]["queued"] == 9
    # Cancel finds each request on its own shard.
    for rid in made[:3]:
        assert (await c.delete(f"/v1/queue/requests/{rid}")).status in (200, 202)
        assert (await wait_status(c, rid, {"canceled"}))["status"] == "canceled"


@both
async def test_an_idempotency_key_replays_across_shards(app_client: MakeClient) -> None:
    c = await sharded(app_client, run_worker=False)
    first = {}
    for n in range(12):
        status, body, _ = await post(c, OP, {"n": n}, **ASYNC, **{"Idempotency-Key": f"k{n}"})
        assert status == 202
        first[n] = body["id"]
    assert len({ids.id_shard(rid) for rid in first.values()}) > 1
    for n in range(12):
        status, body, _ = await post(c, OP, {"n": n}, **ASYNC, **{"Idempotency-Key": f"k{n}"})
        assert status in (200, 202) and body["id"] == first[n]
        status, _, _ = await post(c, OP, {"n": -1}, **ASYNC, **{"Idempotency-Key": f"k{n}"})
        assert status == 422


@both
async def test_a_rate_limit_holds_across_shards(app_client: MakeClient) -> None:
    c = await sharded(app_client, run_worker=False, auth={"rate_per_second": 0.5, "burst": 3})
    statuses = [(await post(c, OP, {}, **ASYNC))[0] for _ in range(6)]
    assert statuses == [202, 202, 202, 429, 429, 429]


@both
async def test_the_all_requests_stream_merges_the_shards(
    app_client: MakeClient,
) -> None:
    c = await sharded(app_client, run_worker=True)
    got: list[SSEvent] = []
    async with asyncio.timeout(20):
        resp = await c.get(f"/v1/queue/events?operation={OP}")
        assert resp.status == 200
        reader = read_events(resp)
        await anext(reader)
        made = [(await post(c, OP, {"n": n}, **ASYNC))[1]["id"] for n in range(6)]
        assert len({ids.id_shard(rid) for rid in made}) == 3
        done: set[str] = set()
        async for ev in reader:
            if ev.data:
                got.append(ev)
                if ev.json().get("status") == "succeeded":
                    done.add(ev.json()["id"])
            if done == set(made):
                break
        resp.close()
    assert {e.json()["id"] for e in got} == set(made)
    # Each request's timeline reads the events its own shard kept for the client.
    for rid in made:
        body = await (await c.get(f"/v1/queue/requests/{rid}/timeline")).json()
        steps = [(item["event"], item["source"]) for item in body["items"]]
        assert steps == [("created", "events"), ("started", "events"), ("succeeded", "events")]
    # Resuming with Last-Event-ID across shards is not checked here: the shards' kept
    # streams number their events independently (see docs/contract-notes.md).


@both
async def test_a_bulk_submit_spreads_over_shards(app_client: MakeClient) -> None:
    c = await sharded(app_client, run_worker=False)
    items = [{"input": {"n": n}} for n in range(6)] + [{"input": {}, "idempotency_key": "b1"}]
    resp = await c.post(f"/v1/{OP}/batch", json={"requests": items})
    assert resp.status == 202
    got = (await resp.json())["items"]
    assert all(item["status"] == "queued" for item in got)
    assert len({ids.id_shard(item["id"]) for item in got}) == 3
    assert sorted(item["position"] for item in got) == list(range(7))
    again = await (await c.post(f"/v1/{OP}/batch", json={"requests": items[-1:]})).json()
    assert again["items"][0]["id"] == got[-1]["id"]


@both
async def test_history_sums_every_shard(app_client: MakeClient) -> None:
    c = await sharded(app_client, run_worker=False)
    made = [(await post(c, OP, {"n": n}, **ASYNC))[1]["id"] for n in range(9)]
    assert len({ids.id_shard(rid) for rid in made}) == 3
    for rid in made[:3]:
        assert (await c.delete(f"/v1/queue/requests/{rid}")).status == 200
    path = f"/v1/queue/history?operation={OP}&window=1m"
    [hist] = (await (await c.get(path)).json())["operations"]
    assert hist["totals"] == {"submitted": 9, "succeeded": 0, "failed": 0, "canceled": 3}
    assert hist["queue_depth"][-1] == 6  # each shard's last sample, added up
    # A worker drains every shard: the console's overview counts them all.
    w = await sharded(app_client, run_worker=True)
    for rid in made[3:]:
        await wait_status(w, rid, {"succeeded"})
    [hist] = (await (await w.get(path)).json())["operations"]
    assert hist["totals"] == {"submitted": 9, "succeeded": 6, "failed": 0, "canceled": 3}
    assert hist["queue_depth"][-1] == 0
    assert hist["run_ms"]["count"] == 6 and hist["wait_ms"]["count"] == 6
