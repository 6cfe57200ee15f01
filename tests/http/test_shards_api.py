"""A sharded operation through the HTTP API: idempotency, rate limits, listing, SSE and stats
hold across its shards, on one node and on the 3-master cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.queue import ids, keys
from service.state import Roles, queue_key
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
    # Resuming with Last-Event-ID across shards: test_a_resume_sends_every_missed_event_once.


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


CLIENTS: list[dict[str, Any]] = [
    {"name": "ops", "key": "shards-operator-key-0123", "admin": True},
    {"name": "alice", "key": "shards-alice-key-01234567"},
    {"name": "bob", "key": "shards-bob-key-0123456789"},
]


def bearer(name: str) -> dict[str, str]:
    key = next(str(c["key"]) for c in CLIENTS if c["name"] == name)
    return {"Authorization": f"Bearer {key}"}


Seen = tuple[str, str]  # (request id, status): one event each here


async def _read(reader: Any, n: int) -> list[SSEvent]:
    got: list[SSEvent] = []
    while len(got) < n:
        ev = await anext(reader)
        if ev.data:
            got.append(ev)
    return got


def _seen(ev: SSEvent) -> Seen:
    body = ev.json()
    return body["id"], body["status"]


PRODUCE_ROUNDS = 5


async def _kept(queue: Any, submitters: list[str]) -> dict[Seen, tuple[str, tuple[int, int]]]:
    """Where each event is kept (read from Redis): its stream and its id there."""
    where: dict[Seen, tuple[str, tuple[int, int]]] = {}
    for name in submitters:
        for op in (OP, "echo"):
            for tag in queue.tags(op):
                stream = keys.cev(tag, name)
                for gid, fields in await queue.redis.xrange(stream):
                    rec = json.loads(fields[b"e"])["rec"]
                    ms, _, seq = gid.decode().partition("-")
                    where[(rec["id"], rec["status"])] = (stream, (int(ms), int(seq)))
    return where


def _cuts(got: list[SSEvent], where: dict[Seen, tuple[str, tuple[int, int]]]) -> list[int]:
    """The cuts a single id could not resume from: a later event of another stream numbered at
    or below the last one received (what a plain <ms>-<seq> Last-Event-ID used to skip)."""
    order = [where[_seen(e)] for e in got]
    return [
        k
        for k in range(len(order) - 1)
        if any(s != order[k][0] and i <= order[k][1] for s, i in order[k + 1 :])
    ]


async def _produce(c: TestClient[Any, Any], who: list[str]) -> dict[str, str]:
    """Bulk submits to the sharded operation and to echo at once, for each client: every
    shard's and echo's kept stream gets events in the same few milliseconds."""
    posts = [
        c.post(
            f"/v1/{op}/batch",
            json={"requests": [{"input": {"n": n}} for n in range(k)]},
            headers=bearer(name),
        )
        for name in who
        for op, k in ((OP, 24), ("echo", 8))
    ]
    made: dict[str, str] = {}
    owners = [name for name in who for _ in range(2)]
    for name, resp in zip(owners, await asyncio.gather(*posts), strict=True):
        assert resp.status == 202, await resp.text()
        made |= {item["id"]: name for item in (await resp.json())["items"]}
    return made  # request id: its client


@both
@pytest.mark.parametrize("who", ["own", "operator"])
async def test_a_resume_sends_every_missed_event_once(app_client: MakeClient, who: str) -> None:
    # The stream merges several Redis streams (3 shards and echo, per client for an operator),
    # each numbering its events on its own: alike in one millisecond, or a clock behind.
    c = await sharded(app_client, run_worker=False, auth={"clients": CLIENTS})
    submitters = ["alice"] if who == "own" else ["alice", "bob"]
    viewer = {"own": bearer("alice"), "operator": bearer("ops")}[who]
    path = "/v1/queue/events" + ("?client=*" if who == "operator" else "")
    queue = c.app[queue_key]
    got: list[SSEvent] = []
    cuts: list[int] = []
    async with asyncio.timeout(60):
        resp = await c.get(path, headers=viewer)
        assert resp.status == 200
        reader = read_events(resp)
        await anext(reader)  # the retry hint: the stream listens
        # Two streams number events alike only when both write within one millisecond: nearly
        # always in the first round, but a busy machine may spread a round's script runs over
        # several; each round adds events, until such a cut exists (bounded).
        for _ in range(PRODUCE_ROUNDS):
            made = await _produce(c, submitters)
            # A third of them canceled: a second event each, a little later.
            canceled = sorted(made)[::3]
            for rid in canceled:
                resp_del = await c.delete(f"/v1/queue/requests/{rid}", headers=bearer(made[rid]))
                assert resp_del.status == 200, await resp_del.text()
            got += await _read(reader, len(made) + len(canceled))
            cuts = _cuts(got, await _kept(queue, submitters))
            if cuts:
                break
        resp.close()
    total = len(got)
    assert len({_seen(e) for e in got}) == total
    assert all(e.id and e.id.startswith("v1.") for e in got)
    assert cuts, "no two streams numbered events alike: the case is not exercised"
    markers: list[str] = []
    for k in sorted({cuts[0], cuts[-1], 0, total // 2}):
        # Resume after the k-th; more events come while the missed ones are being sent.
        async with asyncio.timeout(30):
            resp, more = await asyncio.gather(
                c.get(path, headers={**viewer, "Last-Event-ID": got[k].id or ""}),
                _produce(c, submitters[:1]),
            )
            assert resp.status == 200
            reader = read_events(resp)
            want = [_seen(e) for e in got[k + 1 :]] + [(m, "queued") for m in markers]
            want += [(rid, "queued") for rid in more]
            replay = await _read(reader, len(want))
            # Then a marker, live: had anything come twice, it would show before the marker.
            marker = (await post(c, "echo", {}, **ASYNC, **bearer(submitters[0])))[1]["id"]
            after = await _read(reader, 1)
            resp.close()
        assert sorted(_seen(e) for e in replay) == sorted(want), k
        assert _seen(after[0]) == (marker, "queued")
        markers += [marker, *more]
        # A cursor sent during the resume resumes as exactly: from halfway through it.
        half = len(replay) // 2
        async with asyncio.timeout(30):
            resp = await c.get(path, headers={**viewer, "Last-Event-ID": replay[half].id or ""})
            rest = await _read(read_events(resp), len(replay) - half)
            resp.close()
        assert sorted(_seen(e) for e in rest) == sorted(
            [_seen(e) for e in replay[half + 1 :]] + [(marker, "queued")]
        )


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
