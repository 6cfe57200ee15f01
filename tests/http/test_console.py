"""The console's endpoints: GET /v1/queue/history and GET /v1/queue/workers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.app import create_app
from service.queue import presence
from service.state import Roles
from tests.http.test_api import ASYNC, Client, MakeClient, make_settings, post, wait_status


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        return await aiohttp_client(create_app(settings, Roles(api=True, worker=run_worker)))

    return make


async def wait_for(client: Client, path: str, check: Any, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get(path)
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
