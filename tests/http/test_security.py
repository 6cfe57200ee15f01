"""Security and robustness limits of the HTTP surface (issue 13, item 8), each reproduced."""

from __future__ import annotations

import asyncio
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
    "lone surrogate escape": b'{"iban": "\\ud800", "url": "\\udfff"}',
    "lone surrogate escape in a key": b'{"\\ud83d": 1}',
    "lone surrogate with a long integer": b'["\\udc00", 12345678901234567890123]',
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
    # A surrogate pair is one character (U+1F600), kept as sent.
    pair = b'["\\ud83d\\ude00"]'
    resp = await client.post("/v1/echo", data=pair, headers=JSON_HEADERS)
    assert resp.status == 201 and json.loads(await resp.read()) == ["\U0001f600"]
    # Long integers under Python's limit are exact on the way through.
    big = b"[" + b"7" * 4_000 + b"]"
    resp = await client.post("/v1/echo", data=big, headers=JSON_HEADERS)
    assert resp.status == 201 and await resp.read() == big


async def test_a_result_too_deep_to_encode_fails_the_request(app_client: MakeClient) -> None:
    c = await app_client(
        operations={"too-deep": {"handler": "tests.support.handlers:too_deep", "attempts": 1}}
    )
    resp = await c.post("/v1/too-deep", json={})
    problem = await resp.json(content_type=None)
    assert resp.status == 500 and problem["type"].endswith(":internal-error"), problem
    assert problem["request_id"]


async def test_a_result_utf8_cannot_carry_fails_the_request(app_client: MakeClient) -> None:
    # A lone surrogate encodes to JSON text but not to UTF-8: it must fail the run at once,
    # not break the storing of its outcome (the request would stay running until its lease).
    c = await app_client(
        operations={"surrogate": {"handler": "tests.support.handlers:lone_surrogate"}}
    )
    resp = await c.post("/v1/surrogate", json={})
    problem = await resp.json(content_type=None)
    assert resp.status == 500 and problem["type"].endswith(":internal-error"), problem
    assert problem["request_id"]


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
# The cursors a stream merging several sends (service.http.cursor), malformed.
BAD_STREAM_IDS += ["v1.zz", "v1.00000000.1.2_1.1_1", "v1.00000000.5-3.1_0-1"]
BAD_STREAM_IDS.append("v1.00000000.1" + "".join(f".{i:x}_1" for i in range(1000)))  # too long
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


# -- open mode, Host and CORS ----------------------------------------------------------------

SERVED_HOSTS = ["127.0.0.1", "localhost:8080", "LOCALHOST", "127.3.4.5:1", "[::1]:9", "[::1]"]
REFUSED_HOSTS = [
    "attacker.example",
    "attacker.example:8080",
    "localhost.attacker.example",
    "127.0.0.1.nip.io",
    "10.0.0.1",
    "[::ffff:7f00:1]",
    "localhost:x",
    "[::1]x",
]


async def test_open_mode_serves_only_loopback_host_names(idle: Client) -> None:
    for host in SERVED_HOSTS:
        resp = await idle.get("/v1/queue", headers={"Host": host})
        assert resp.status == 200, host
    for host in REFUSED_HOSTS:
        for path in ("/v1/queue", "/v1/webhooks/secret", "/metrics", "/nowhere"):
            resp = await idle.get(path, headers={"Host": host})
            assert resp.status == 421, (host, path)
            assert_problem(resp.headers, await resp.json(content_type=None), 421)
        resp = await idle.post("/v1/echo", json={}, headers={**ASYNC, "Host": host})
        assert resp.status == 421 and "Location" not in resp.headers


async def test_open_mode_also_serves_the_public_host(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, server={"public_url": "https://api.example.com"})
    assert (await c.get("/v1/queue", headers={"Host": "api.example.com"})).status == 200
    assert (await c.get("/v1/queue", headers={"Host": "api.example.com:443"})).status == 200
    assert (await c.get("/v1/queue", headers={"Host": "other.example.com"})).status == 421


async def test_with_api_keys_any_host_is_served(app_client: MakeClient) -> None:
    clients = [{"name": "alice", "key": "alice-key-0123456789"}]
    c = await app_client(run_worker=False, auth={"clients": clients})
    headers = {"Host": "api.example.com", "Authorization": "Bearer alice-key-0123456789"}
    assert (await c.get("/v1/queue", headers=headers)).status == 200


async def test_any_origin_gets_no_credentials_and_null_is_never_allowed(
    app_client: MakeClient,
) -> None:
    clients = [{"name": "alice", "key": "alice-key-0123456789"}]
    c = await app_client(
        run_worker=False,
        auth={"clients": clients},
        server={"cors_origins": ["*", "https://app.example"]},
    )
    alice = {"Authorization": "Bearer alice-key-0123456789"}
    resp = await c.get("/v1/webhooks/secret", headers={**alice, "Origin": "https://evil.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    resp = await c.get("/v1/webhooks/secret", headers={**alice, "Origin": "https://app.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in resp.headers["Vary"]
    for method in ("GET", "OPTIONS"):
        resp = await c.request(
            method,
            "/v1/webhooks/secret",
            headers={**alice, "Origin": "null", "Access-Control-Request-Method": "GET"},
        )
        assert "Access-Control-Allow-Origin" not in resp.headers, method
        assert "Access-Control-Allow-Credentials" not in resp.headers, method


def test_any_origin_in_open_mode_and_null_are_config_errors(redis_url: str) -> None:
    from service.app import check_open_mode
    from service.runtime.config import ConfigError

    with pytest.raises(ConfigError, match=r"server\.cors_origins"):
        check_open_mode(make_settings(redis_url, server={"cors_origins": ["*"]}))
    with pytest.raises(ConfigError, match=r"server\.cors_origins.*null"):
        make_settings(redis_url, server={"cors_origins": ["null"]})


# -- API keys at rest ------------------------------------------------------------------------

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789-bob"


async def test_keys_may_be_given_as_their_sha256(app_client: MakeClient) -> None:
    import hashlib

    bob_digest = hashlib.sha256(BOB_KEY.encode()).hexdigest()
    clients = [
        {"name": "alice", "key": ALICE_KEY},
        {"name": "bob", "key_sha256": bob_digest.upper()},
    ]
    c = await app_client(run_worker=False, auth={"clients": clients})
    for key, name in ((ALICE_KEY, "alice"), (BOB_KEY, "bob")):
        headers = {**ASYNC, "Authorization": f"Bearer {key}"}
        resp = await c.post("/v1/echo", json={"who": name}, headers=headers)
        assert resp.status == 202, name
        rid = (await resp.json())["id"]
        listing = await c.get("/v1/queue/requests", headers={"Authorization": f"Bearer {key}"})
        assert [r["id"] for r in (await listing.json())["items"]] == [rid]
    for wrong in (bob_digest, BOB_KEY + "x", ALICE_KEY.upper()):
        resp = await c.get("/v1/queue/requests", headers={"Authorization": f"Bearer {wrong}"})
        assert resp.status == 401, wrong
    # EventSource's query-string key is matched the same way.
    resp = await c.get("/v1/queue/events", params={"access_token": BOB_KEY})
    assert resp.status == 200
    resp.close()


# -- synchronous waits -----------------------------------------------------------------------


async def test_synchronous_waits_per_client_are_bounded(app_client: MakeClient) -> None:
    from service.state import sync_waits_key

    c = await app_client(
        run_worker=False, server={"max_sync_waits_per_client": 2, "sync_wait_seconds": 2}
    )
    waits = c.app[sync_waits_key]
    held = [asyncio.create_task(c.post("/v1/sleep", json={"seconds": 1})) for _ in range(2)]
    deadline = asyncio.get_running_loop().time() + 5
    while waits.get("anonymous", 0) < 2:
        assert asyncio.get_running_loop().time() < deadline, waits
        await asyncio.sleep(0.01)
    resp = await c.post("/v1/sleep", json={"seconds": 1})
    problem = await resp.json(content_type=None)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert_problem(resp.headers, problem, 429)
    # Asking for respond-async with a wait: answered at once, as if no wait was asked for.
    resp = await c.post(
        "/v1/sleep", json={"seconds": 1}, headers={"Prefer": "respond-async, wait=5"}
    )
    assert resp.status == 202 and waits["anonymous"] == 2
    stats = await (await c.get("/v1/queue")).json()
    queued = {s["operation"]: s["queued"] for s in stats["operations"]}
    assert queued["sleep"] == 3  # the refused submit queued nothing
    for task in held:
        assert (await task).status == 202  # no worker: each falls back to 202 after its wait
    assert waits == {}
