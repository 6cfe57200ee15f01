"""Security and robustness limits of the HTTP surface (issue 13, item 8), each reproduced."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.http.body import MAX_DEPTH
from service.state import Roles
from tests.http.test_api import ASYNC, assert_problem, make_settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def app_client(aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str) -> MakeClient:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        return await aiohttp_client(create_app(settings, Roles(api=True, worker=run_worker)))

    return make


@pytest.fixture
async def client(app_client: MakeClient) -> Client:
    return await app_client()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# -- JSON past the parser's limits -----------------------------------------------------------

BEYOND_LIMITS = {
    "100,000-deep array": nested(100_000),
    "30,000-deep array": nested(30_000),
    "1,000-deep array": nested(1_000),
    f"{MAX_DEPTH + 1}-deep array": nested(MAX_DEPTH + 1),
    "object nesting": b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    "5,000-digit integer": b"1" * 5_000,
    "5,000-digit integer in an object": b'{"seconds": ' + b"9" * 5_000 + b"}",
    "number beyond a double": b'{"seconds": 1e400}',
}
BODY_ROUTES = [
    ("POST", "/v1/echo"),
    ("POST", "/v1/sleep"),
    ("POST", "/v1/bank-account-validations"),
    ("POST", "/v1/webhooks/endpoints"),
]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: r[1])
async def test_json_past_the_parser_limits_is_400_never_500(
    idle: Client, route: tuple[str, str]
) -> None:
    method, path = route
    for name, body in BEYOND_LIMITS.items():
        resp = await idle.request(method, path, data=body, headers={**JSON_HEADERS, **ASYNC})
        problem = await resp.json(content_type=None)
        # The endpoints API takes at most 64 KiB: a larger body is 413 before any parsing.
        expected = 413 if path.startswith("/v1/webhooks") and len(body) > 65_536 else 400
        assert resp.status == expected, (name, problem)
        assert_problem(resp.headers, problem, expected)


async def test_webhook_endpoint_updates_use_the_same_parser(idle: Client) -> None:
    resp = await idle.patch(
        "/v1/webhooks/endpoints/we_nothing", data=nested(30_000), headers=JSON_HEADERS
    )
    assert resp.status == 400
    assert (await resp.json(content_type=None))["max_depth"] == MAX_DEPTH


async def test_nesting_up_to_the_limit_runs_and_round_trips(client: Client) -> None:
    deepest = nested(MAX_DEPTH)
    resp = await client.post("/v1/echo", data=deepest, headers=JSON_HEADERS)
    assert resp.status == 201, await resp.text()
    assert json.loads(await resp.read()) == json.loads(deepest)
    # Long integers under Python's limit are exact on the way through.
    big = b"[" + b"7" * 4_000 + b"]"
    resp = await client.post("/v1/echo", data=big, headers=JSON_HEADERS)
    assert resp.status == 201 and await resp.read() == big


@pytest.fixture
async def idle(app_client: MakeClient) -> Client:
    return await app_client(run_worker=False)


# -- headers ---------------------------------------------------------------------------------


async def test_long_prefer_headers_are_refused_and_never_cached(idle: Client) -> None:
    from service.http import prefer

    cache = prefer._parse_prefer_cached
    cache.cache_clear()
    for i in range(120):
        value = f"respond-async, x-{i}=" + "a" * 8_000
        resp = await idle.post("/v1/echo", data=b"{}", headers={"Prefer": value})
        assert resp.status == 400, i
        problem = await resp.json(content_type=None)
        assert_problem(resp.headers, problem, 400)
        assert problem["header"] == "Prefer"
    # Under the limit but long: served, and not kept either.
    for i in range(20):
        value = f"respond-async, x-{i}=" + "a" * 900
        resp = await idle.post("/v1/echo", data=b"{}", headers={**JSON_HEADERS, "Prefer": value})
        assert resp.status == 202
    assert cache.cache_info().currsize == 0
    # The usual short values are cached.
    await idle.post("/v1/echo", data=b"{}", headers={**JSON_HEADERS, **ASYNC})
    assert cache.cache_info().currsize == 1


async def test_callback_url_is_capped_like_endpoint_urls(idle: Client) -> None:
    base = "https://example.com/"
    ok = base + "a" * (2_048 - len(base))
    resp = await idle.post("/v1/echo", json={}, headers={**ASYNC, "Callback-Url": ok + "a" * 5_974})
    problem = await resp.json(content_type=None)
    assert resp.status == 400 and problem["header"] == "Callback-Url"
    assert_problem(resp.headers, problem, 400)
    resp = await idle.post("/v1/echo", json={}, headers={**ASYNC, "Callback-Url": ok})
    # The length is fine; example.com's address is then checked like any target's.
    assert resp.status in (202, 422), await resp.text()


BAD_STREAM_IDS = ["1-99999999999999999999999", "5--3", "-1", "garbage", "1-2-3", "1.5", " x"]
BAD_EVENT_IDS = ["5--3", "-3", "garbage", "1.2.3", "1-2", "99999999999999999999999"]


async def test_malformed_last_event_id_is_400_before_the_stream_starts(idle: Client) -> None:
    for value in BAD_STREAM_IDS:
        for where in ("header", "query"):
            if where == "header":
                resp = await idle.get("/v1/queue/events", headers={"Last-Event-ID": value})
            else:
                resp = await idle.get("/v1/queue/events", params={"last_event_id": value})
            problem = await resp.json(content_type=None)
            assert resp.status == 400, (value, where)
            assert_problem(resp.headers, problem, 400)
            assert problem["header"] == "Last-Event-ID"
    resp = await idle.post("/v1/echo", json={}, headers=ASYNC)
    rid = (await resp.json())["id"]
    for value in BAD_EVENT_IDS:
        resp = await idle.get(f"/v1/queue/requests/{rid}/events", headers={"Last-Event-ID": value})
        assert resp.status == 400, value
        assert_problem(resp.headers, await resp.json(content_type=None), 400)


async def test_well_formed_last_event_ids_still_resume(idle: Client) -> None:
    resp = await idle.get(
        "/v1/queue/events", headers={"Last-Event-ID": "1795908727450-18446744073709551615"}
    )
    assert resp.status == 200
    assert (await resp.content.readline()).startswith(b"retry:")
    resp.close()
    rid = (await (await idle.post("/v1/echo", json={}, headers=ASYNC)).json())["id"]
    resp = await idle.get(f"/v1/queue/requests/{rid}/events", headers={"Last-Event-ID": "0.3"})
    assert resp.status == 200
    resp.close()
