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
