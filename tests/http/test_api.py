"""The HTTP contract (CONTRACT.md sections 2-4, 7, 8) against a real Redis and real workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.queue import keys
from service.queue.ids import new_request_id
from service.queue.store import NewRequest, Queue
from service.registry import build_operations
from service.runtime.config import Settings, settings_from_dict
from service.state import Roles, redis_key
from service.worker.worker import Worker
from tests.support.cluster import both, redis_section

ROOT = Path(__file__).resolve().parents[2]
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

TEST_OPS = {
    "boom": {"handler": "tests.support.handlers:boom", "attempts": 1},
    "reject": {"handler": "tests.support.handlers:reject"},
    "flaky": {"handler": "tests.support.handlers:flaky", "attempts": 3, "retry_backoff": 0.05},
    "hang": {"handler": "tests.support.handlers:hang", "timeout": 0.5, "attempts": 1},
    "hang-twice": {
        "handler": "tests.support.handlers:hang",
        "timeout": 0.2,
        "attempts": 2,
        "retry_backoff": 0.05,
    },
    "thread-sleep": {
        "handler": "tests.support.handlers:sleep_in_thread",
        "timeout": 0.2,
        "attempts": 1,
    },
    "returns": {"handler": "tests.support.handlers:returns", "attempts": 1},
    "blocking": {"handler": "tests.support.handlers:blocking"},
    "not-json": {"handler": "tests.support.handlers:not_json", "attempts": 1},
    "tiny": {"handler": "service.operations.echo:echo", "max_queue_depth": 2},
    "small-results": {"handler": "service.operations.echo:echo", "max_result_bytes": 100},
    "block-loop": {"handler": "tests.support.handlers:block_loop", "attempts": 1},
    "in-process": {"handler": "tests.support.handlers:in_process", "run_in": "process"},
}
ASYNC = {"Prefer": "respond-async"}


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"].update(redis_section(redis_url))
    raw["operations"].update(TEST_OPS)
    raw["worker"].update(lease_seconds=5, idle_check_seconds=0.5)
    raw["server"]["sync_wait_seconds"] = 5
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return settings_from_dict(raw)


@pytest.fixture
def app_client(
    aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str
) -> Callable[..., Awaitable[Client]]:
    async def make(run_worker: bool = True, **overrides: Any) -> Client:
        settings = make_settings(redis_url, **overrides)
        return await aiohttp_client(create_app(settings, Roles(api=True, worker=run_worker)))

    return make


@pytest.fixture
async def client(app_client: MakeClient) -> Client:
    return await app_client()


@pytest.fixture
async def idle(app_client: MakeClient) -> Client:
    """An API with no worker: requests stay queued."""
    return await app_client(run_worker=False)


async def post(client: Client, op: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    resp = await client.post(f"/v1/{op}", json=body, headers=headers)
    text = await resp.text()
    return resp.status, (json.loads(text) if text else None), resp.headers


async def wait_status(client: Client, rid: str, statuses: set[str], timeout: float = 5) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get(f"/v1/queue/requests/{rid}")
        body = await resp.json()
        if body["status"] in statuses:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.02)


def assert_problem(resp_headers: Any, body: Any, status: int) -> None:
    assert resp_headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    assert "Traceback" not in json.dumps(body)


# -- submit ------------------------------------------------------------------------------


@both
async def test_respond_async_returns_202_with_monitor_links_and_headers(idle: Client) -> None:
    status, body, headers = await post(idle, "echo", {"a": 1}, **ASYNC)
    assert status == 202
    rid = body["id"]
    monitor = f"/v1/queue/requests/{rid}"
    assert headers["Location"] == headers["Operation-Location"]
    assert headers["Location"].startswith("http://") and headers["Location"].endswith(monitor)
    assert headers["Preference-Applied"] == "respond-async"
    assert int(headers["Retry-After"]) >= 1
    assert body["status"] == "queued" and body["position"] == 0 and body["operation"] == "echo"
    assert body["links"] == [
        {"rel": "self", "href": monitor, "method": "GET"},
        {"rel": "result", "href": f"/v1/echo/{rid}", "method": "GET"},
        {"rel": "events", "href": f"{monitor}/events", "method": "GET"},
        {"rel": "cancel", "href": monitor, "method": "DELETE"},
    ]
    for field in ("created_at", "updated_at"):
        assert body[field].endswith("Z")


@both
async def test_an_idle_worker_starts_a_request_at_once_and_the_202_says_so(
    client: Client, redis_client: Any
) -> None:
    idle_workers = keys.idle("sleep")
    while not await redis_client.zcard(idle_workers):  # the worker's first claim found nothing
        await asyncio.sleep(0.01)
    status, body, _ = await post(client, "sleep", {"seconds": 0.5}, **ASYNC)
    assert status == 202 and body["status"] == "running" and body["position"] is None
    assert body["started_at"] == body["created_at"] == body["updated_at"]
    monitor = await (await client.get(f"/v1/queue/requests/{body['id']}")).json()
    assert monitor["status"] == "running"
    # The 202 shows the times the request was stored with, not when the answer was written.
    for field in ("created_at", "started_at", "updated_at"):
        assert monitor[field] == body[field]
    await wait_status(client, body["id"], {"succeeded"})


async def test_a_hand_off_reaching_a_full_worker_goes_back_to_the_queue(
    redis_url: str, redis_client: Any
) -> None:
    settings = make_settings(redis_url, worker={"concurrency": 1})
    ops = build_operations(settings)
    queue = Queue(redis_client)
    worker = Worker(queue, ops, settings.worker)

    async def submit(op: str, body: str) -> str:
        rid = new_request_id(op, queue.now_ms())
        res = await queue.submit(NewRequest(op, rid, "anonymous", body, ops[op].limits))
        assert res.outcome == "created"
        return rid

    # Registered idle on echo while free; then its one slot goes to a sleep request.
    await queue.claim("echo", worker.id, "t1", 1, 30, 10, idle=4)
    sleeper = await submit("sleep", '{"seconds": 30}')
    [job], _ = await queue.claim("sleep", worker.id, "t2", 1, 30, 10)
    worker._take(job)
    # An echo submit is handed to the worker, now full: it goes back to the queue.
    echo = await submit("echo", "{}")
    [handed] = await queue.wait_for_work("echo", worker.id, 1)
    assert handed.request_id == echo
    worker._take(handed)
    assert list(worker._running) == [sleeper]
    async with asyncio.timeout(5):  # the hand-back is one script call
        while (snap := await queue.read("echo", echo)) and snap.record["status"] != "queued":
            await asyncio.sleep(0.01)
    assert snap is not None and snap.position == 0 and snap.record["attempt"] == "1"
    await worker.shutdown(0)


async def test_public_url_is_used_for_absolute_links(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, server={"public_url": "https://api.example.com/"})
    _, body, headers = await post(c, "echo", {}, **ASYNC)
    assert headers["Location"] == f"https://api.example.com/v1/queue/requests/{body['id']}"


@both
async def test_synchronous_success_is_201_with_the_result(client: Client) -> None:
    status, body, headers = await post(client, "echo", {"hello": ["world", 1]})
    assert status == 201 and body == {"hello": ["world", 1]}
    assert "/v1/echo/" in headers["Location"]
    rid = headers["Location"].rsplit("/", 1)[1]
    resp = await client.get(f"/v1/echo/{rid}")
    assert resp.status == 200 and await resp.json() == {"hello": ["world", 1]}


async def test_respond_async_with_wait_finishing_in_time_answers_as_synchronous(
    client: Client,
) -> None:
    status, body, headers = await post(client, "echo", [1], Prefer="respond-async, wait=5")
    assert status == 201 and body == [1]
    assert headers["Preference-Applied"] == "wait=5"


async def test_synchronous_past_wait_falls_back_to_202(client: Client) -> None:
    status, body, headers = await post(client, "sleep", {"seconds": 3}, Prefer="wait=0.2")
    assert status == 202 and body["status"] in ("queued", "running")
    assert "Preference-Applied" not in headers and "Location" in headers


async def test_synchronous_failure_returns_the_request_error(client: Client) -> None:
    status, body, headers = await post(client, "reject", {})
    assert status == 422 and body["request_id"] and body["detail"] == "the input is unacceptable"
    assert_problem(headers, body, 422)
    status, body, headers = await post(client, "boom", {})
    assert status == 500 and body["request_id"]
    assert_problem(headers, body, 500)
    assert "secret" not in json.dumps(body) and "passwd" not in json.dumps(body)


async def test_thumbnail_of_an_undecodable_image_fails_clearly(client: Client) -> None:
    status, body, _ = await post(
        client, "image-thumbnails", {"image": "aGVsbG8=", "width": 10, "height": 10}
    )
    assert status == 422 and "could not be decoded" in body["detail"]


@both
async def test_retryable_errors_are_retried_with_backoff(client: Client) -> None:
    status, body, _ = await post(client, "flaky", {"succeed_on": 3})
    assert status == 201 and body == {"attempt": 3}


async def test_timeout_fails_the_request(client: Client) -> None:
    status, body, _ = await post(client, "hang", {})
    assert status == 500 and body["type"].endswith("timeout")


async def test_a_timed_out_run_with_attempts_left_is_retried(client: Client) -> None:
    status, body, _ = await post(client, "hang-twice", {}, **ASYNC)
    assert status == 202
    done = await wait_status(client, body["id"], {"failed"})
    assert done["attempt"] == 2
    status, error, _ = await post(client, "hang-twice", {})
    assert status == 500 and error["type"].endswith("timeout")
    assert error["detail"] == "the operation did not finish within 0.2 s"


async def test_a_thread_handler_past_its_timeout_fails_with_timeout(client: Client) -> None:
    status, body, _ = await post(client, "thread-sleep", {"seconds": 1})
    assert status == 500 and body["type"].endswith("timeout")
    # One within its time is not interrupted.
    status, body, _ = await post(client, "thread-sleep", {"seconds": 0.01})
    assert status == 201 and body == {"slept": 0.01}


async def test_results_at_the_edges_of_json_are_stored_as_documented(
    client: Client,
) -> None:
    expected = {
        # JSON has no NaN or infinities: null, as JSON.stringify writes them.
        "nan": {"v": None, "inf": None},
        "int_keys": {"1": "a", "2.5": "b", "false": "c", "null": "d"},
        "big": {"n": 2**70, "m": -(2**64)},
        "int_enum": [3],
        "uuid_enum": ["00000000-0000-0000-0000-000000000005", "red"],
        "text": {"s": "h\u00e9llo \u2603", "float": 1e16},
    }
    for kind, value in expected.items():
        resp = await client.post("/v1/returns", json={"kind": kind})
        assert resp.status == 201, (kind, await resp.text())
        assert json.loads(await resp.text()) == value, kind
    status, body, _ = await post(client, "returns", {"kind": "dataclass"})
    assert status == 500 and body["type"].endswith("internal-error")


async def test_plain_def_handlers_run_in_a_thread_and_report_progress(client: Client) -> None:
    status, body, _ = await post(client, "blocking", {"n": 1})
    assert status == 201 and body == {"thread": True, "echo": {"n": 1}}


async def test_unencodable_result_is_an_internal_error(client: Client) -> None:
    status, body, _ = await post(client, "not-json", {})
    assert status == 500 and body["type"].endswith("internal-error")


# -- input errors ------------------------------------------------------------------------


async def test_a_chunked_body_past_the_limit_is_413_while_it_arrives(
    app_client: MakeClient,
) -> None:
    # Batches raise the application's own cap, so a single submit without Content-Length
    # must be counted as it streams in, never held whole past its own limit.
    c = await app_client(run_worker=False, server={"max_body_bytes": 64})

    async def body() -> AsyncIterator[bytes]:
        yield b'{"x": "'
        for _ in range(1024):
            yield b"y" * 1024
        yield b'"}'

    resp = await c.post("/v1/echo", data=body(), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert_problem(resp.headers, await resp.json(content_type=None), 413)
    resp = await c.post(
        "/v1/echo", data=_chunks(b'{"a": 1}'), headers={"Content-Type": "application/json"}
    )
    assert resp.status in (201, 202), await resp.text()


async def _chunks(raw: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(raw), 3):
        yield raw[i : i + 3]


async def test_bad_inputs_are_problems(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, server={"max_body_bytes": 64})
    resp = await c.post("/v1/echo", data=b"{not json", headers={"Content-Type": "application/json"})
    body = await resp.json(content_type=None)
    assert resp.status == 400 and "not valid JSON" in body["detail"]
    assert_problem(resp.headers, body, 400)
    resp = await c.post("/v1/echo", data=b"", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    resp = await c.post("/v1/echo", data=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert_problem(resp.headers, await resp.json(content_type=None), 415)
    resp = await c.post("/v1/echo", json={"x": "y" * 100})
    assert resp.status == 413
    assert_problem(resp.headers, await resp.json(content_type=None), 413)
    resp = await c.post("/v1/nope", json={})
    assert resp.status == 404
    assert_problem(resp.headers, await resp.json(content_type=None), 404)
    resp = await c.put("/v1/echo", json={})
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert_problem(resp.headers, await resp.json(content_type=None), 405)
    resp = await c.get("/no/such/path")
    assert resp.status == 404
    assert_problem(resp.headers, await resp.json(content_type=None), 404)
    resp = await c.post("/healthz")  # a path taken by a route with other methods
    assert resp.status == 405 and "GET" in resp.headers["Allow"].split(",")
    assert_problem(resp.headers, await resp.json(content_type=None), 405)


async def test_schema_violations_are_422_with_paths(idle: Client) -> None:
    status, body, headers = await post(idle, "sleep", {"seconds": "soon", "extra": 1})
    assert status == 422
    assert_problem(headers, body, 422)
    paths = {e["path"] for e in body["errors"]}
    assert "/seconds" in paths and "/" in paths
    status, body, _ = await post(idle, "bank-account-validations", {})
    assert status == 422 and any("iban" in e["message"] for e in body["errors"])
    # Nothing was queued.
    resp = await idle.get("/v1/queue/requests")
    assert (await resp.json())["items"] == []


async def test_bad_headers_are_400(idle: Client) -> None:
    for headers in (
        {"Queue-Priority": "high"},
        {"Queue-Priority": "11"},
        {"Idempotency-Key": "x" * 300},
        {"Callback-Url": "ftp://example.com/hook"},
        {"Callback-Url": "not a url"},
        {"Callback-Url": "https://example.com/h", "Callback-Events": "succeeded,exploded"},
    ):
        status, body, resp_headers = await post(idle, "echo", {}, **ASYNC, **headers)
        assert status == 400, headers
        assert_problem(resp_headers, body, 400)


async def test_full_queue_is_503_with_retry_after(idle: Client) -> None:
    for _ in range(2):
        assert (await post(idle, "tiny", {}, **ASYNC))[0] == 202
    status, body, headers = await post(idle, "tiny", {}, **ASYNC)
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert_problem(headers, body, 503)


# -- monitor, final resource, cancel -----------------------------------------------------


@both
async def test_monitor_and_final_resource_report_position_until_ready(
    app_client: MakeClient,
) -> None:
    idle = await app_client(run_worker=False)
    ids = [(await post(idle, "echo", {"i": i}, **ASYNC))[1]["id"] for i in range(3)]
    resp = await idle.get(f"/v1/queue/requests/{ids[2]}")
    body = await resp.json()
    assert resp.status == 200 and body["position"] == 2 and "Retry-After" in resp.headers
    resp = await idle.get(f"/v1/echo/{ids[2]}")
    problem = await resp.json(content_type=None)
    assert resp.status == 404 and problem["request_status"] == "queued"
    assert problem["position"] == 2 and problem["links"][0]["rel"] == "self"
    assert "Retry-After" in resp.headers
    assert_problem(resp.headers, problem, 404)

    worker = await app_client(run_worker=True)
    done = await wait_status(worker, ids[2], {"succeeded"})
    assert done["position"] is None and done["finished_at"] and done["expires_at"]
    resp = await worker.get(f"/v1/echo/{ids[2]}")
    assert resp.status == 200 and await resp.json() == {"i": 2}
    resp = await worker.get(f"/v1/queue/requests/{ids[2]}")
    assert "Retry-After" not in resp.headers


async def test_priority_header_orders_the_queue(idle: Client) -> None:
    low = (await post(idle, "echo", {}, **ASYNC))[1]["id"]
    high = (await post(idle, "echo", {}, **ASYNC, **{"Queue-Priority": "10"}))[1]
    assert high["position"] == 0 and high["priority"] == 10
    assert (await (await idle.get(f"/v1/queue/requests/{low}")).json())["position"] == 1


async def test_failed_and_canceled_results_are_410(client: Client) -> None:
    _, body, _ = await post(client, "reject", {}, **ASYNC)
    await wait_status(client, body["id"], {"failed"})
    resp = await client.get(f"/v1/reject/{body['id']}")
    problem = await resp.json(content_type=None)
    assert resp.status == 410 and problem["request_status"] == "failed"
    assert problem["detail"] == "the input is unacceptable"
    assert_problem(resp.headers, problem, 410)


async def test_unknown_requests_are_404_without_status(client: Client) -> None:
    _, body, _ = await post(client, "echo", {}, **ASYNC)
    for path in (
        "/v1/queue/requests/nope",
        "/v1/queue/requests/" + "0" * 34,
        "/v1/echo/" + "0" * 34,
        f"/v1/sleep/{body['id']}",  # the id of another operation
    ):
        resp = await client.get(path)
        problem = await resp.json(content_type=None)
        assert resp.status == 404 and "request_status" not in problem, path
        assert_problem(resp.headers, problem, 404)


@both
async def test_cancel_queued_running_and_finished(app_client: MakeClient) -> None:
    idle = await app_client(run_worker=False)
    _, queued, _ = await post(idle, "echo", {}, **ASYNC)
    resp = await idle.delete(f"/v1/queue/requests/{queued['id']}")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "canceled" and body["cancel_requested"]
    resp = await idle.delete(f"/v1/queue/requests/{queued['id']}")
    assert resp.status == 200
    resp = await idle.get(f"/v1/echo/{queued['id']}")
    assert resp.status == 410

    client = await app_client(run_worker=True)
    _, running, _ = await post(client, "sleep", {"seconds": 30}, **ASYNC)
    await wait_status(client, running["id"], {"running"})
    resp = await client.delete(f"/v1/queue/requests/{running['id']}")
    body = await resp.json()
    assert resp.status == 202 and body["cancel_requested"] is True
    done = await wait_status(client, running["id"], {"canceled"})
    assert done["error"]["type"].endswith("canceled")

    _status, _finished, headers = await post(client, "echo", {})
    rid = headers["Location"].rsplit("/", 1)[1]
    resp = await client.delete(f"/v1/queue/requests/{rid}")
    problem = await resp.json(content_type=None)
    assert resp.status == 409 and problem["request_status"] == "succeeded"
    assert_problem(resp.headers, problem, 409)
    resp = await client.delete("/v1/queue/requests/" + "0" * 34)
    assert resp.status == 404


@both
async def test_progress_shows_in_the_monitor(client: Client) -> None:
    _, body, _ = await post(client, "sleep", {"seconds": 2, "steps": 20}, **ASYNC)
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        state = await (await client.get(f"/v1/queue/requests/{body['id']}")).json()
        if state["progress"]:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert 0 < state["progress"]["percent"] <= 100 and "slept" in state["progress"]["message"]
    assert state["status"] == "running" and state["started_at"]
    await client.delete(f"/v1/queue/requests/{body['id']}")


# -- idempotency -------------------------------------------------------------------------


@both
async def test_idempotency_key_replays_and_conflicts(idle: Client) -> None:
    key = {"Idempotency-Key": "order-42"}
    _, first, h1 = await post(idle, "echo", {"a": 1}, **ASYNC, **key)
    status, again, h2 = await post(idle, "echo", {"a": 1}, **ASYNC, **key)
    assert status == 202 and again["id"] == first["id"]
    assert h2["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in h1
    status, body, _headers = await post(idle, "echo", {"a": 2}, **ASYNC, **key)
    assert status == 422 and body["type"].endswith("idempotency-key-reused")
    # Keys are per operation: the same key elsewhere is a new request.
    status, other, _ = await post(idle, "sleep", {"seconds": 1}, **ASYNC, **key)
    assert status == 202 and other["id"] != first["id"]


async def test_idempotent_replay_of_a_finished_request_returns_its_result(
    client: Client,
) -> None:
    key = {"Idempotency-Key": "k-sync"}
    status, body, _ = await post(client, "echo", {"v": 1}, **key)
    assert status == 201
    status, body, headers = await post(client, "echo", {"v": 1}, **key)
    assert status == 201 and body == {"v": 1} and headers["Idempotent-Replayed"] == "true"


# -- listing and stats -------------------------------------------------------------------


@both
async def test_listing_is_newest_first_with_cursor_and_filters(client: Client) -> None:
    ids = []
    for _i in range(5):
        ids.append((await post(client, "sleep", {"seconds": 30}, **ASYNC))[1]["id"])
        await asyncio.sleep(0.002)
    _, _done, _ = await post(client, "echo", {"i": 1}, Prefer="wait=5")
    resp = await client.get("/v1/queue/requests?limit=2&operation=sleep")
    page = await resp.json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2] and page["next"]
    page2 = await (
        await client.get(f"/v1/queue/requests?limit=2&operation=sleep&cursor={page['next']}")
    ).json()
    assert [r["id"] for r in page2["items"]] == ids[::-1][2:4]
    everything = await (await client.get("/v1/queue/requests?limit=100")).json()
    assert len(everything["items"]) == 6 and everything["next"] is None
    ok = await (await client.get("/v1/queue/requests?status=succeeded")).json()
    assert [r["operation"] for r in ok["items"]] == ["echo"]
    for query in ("status=bogus", "limit=0", "limit=abc", "operation=nope", "cursor=%%%"):
        resp = await client.get(f"/v1/queue/requests?{query}")
        assert resp.status == 400, query
        assert_problem(resp.headers, await resp.json(content_type=None), 400)
    for rid in ids:
        await client.delete(f"/v1/queue/requests/{rid}")


async def test_the_api_sweeps_expired_requests_out_of_the_listing_index(
    app_client: MakeClient,
) -> None:
    short = {"handler": "service.operations.echo:echo", "result_ttl": 1}
    client = await app_client(operations={"short": short})
    ids = [(await post(client, "short", {"i": i}, **ASYNC))[1]["id"] for i in range(3)]
    for rid in ids:
        await wait_status(client, rid, {"succeeded"})
    redis = client.app[redis_key]
    index = keys.client_index("short", "anonymous")
    assert await redis.zcard(index) == 3
    # Their records expire a second after finishing; the API's ticker then sweeps the index.
    async with asyncio.timeout(15):
        while await redis.zcard(index):
            await asyncio.sleep(0.1)
    assert not any([await redis.exists(keys.record("short", rid)) for rid in ids])
    listing = await (await client.get("/v1/queue/requests?operation=short")).json()
    assert listing["items"] == [] and listing["next"] is None


@both
async def test_queue_stats_and_operations(client: Client) -> None:
    await post(client, "echo", {})
    stats = await (await client.get("/v1/queue")).json()
    echo = next(s for s in stats["operations"] if s["operation"] == "echo")
    assert echo["workers"] >= 1 and echo["throughput_per_second"] > 0
    assert echo["mean_duration_seconds"] is not None
    ops = await (await client.get("/v1/operations")).json()
    names = {o["name"] for o in ops["items"]}
    assert {"echo", "sleep", "bank-account-validations", "image-thumbnails"} <= names
    sleep = next(o for o in ops["items"] if o["name"] == "sleep")
    assert sleep["input_schema"]["required"] == ["seconds"]


# -- clients and keys --------------------------------------------------------------------


async def test_api_keys_and_isolation(app_client: MakeClient) -> None:
    clients = [
        {"name": "alice", "key": "alice-key-0123456789"},
        {"name": "bob", "key": "bob-key-0123456789"},
    ]
    c = await app_client(run_worker=False, auth={"clients": clients})
    resp = await c.post("/v1/echo", json={}, headers=ASYNC)
    assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"]
    assert_problem(resp.headers, await resp.json(content_type=None), 401)
    resp = await c.get("/v1/queue/requests", headers={"Authorization": "Bearer wrong-key-000000"})
    assert resp.status == 401
    alice = {"Authorization": "Bearer alice-key-0123456789"}
    bob = {"Authorization": "Bearer bob-key-0123456789"}
    resp = await c.post("/v1/echo", json={}, headers={**ASYNC, **alice})
    rid = (await resp.json())["id"]
    assert (await c.get(f"/v1/queue/requests/{rid}", headers=alice)).status == 200
    assert (await c.get(f"/v1/queue/requests/{rid}", headers=bob)).status == 404
    assert (await c.get(f"/v1/echo/{rid}", headers=bob)).status == 404
    assert (await c.delete(f"/v1/queue/requests/{rid}", headers=bob)).status == 404
    assert (await (await c.get("/v1/queue/requests", headers=bob)).json())["items"] == []
    assert len((await (await c.get("/v1/queue/requests", headers=alice)).json())["items"]) == 1
    assert (await c.get("/healthz")).status == 200


# -- operating it ------------------------------------------------------------------------


@both
async def test_health_readiness_metrics(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200 and body["checks"] == {"redis": "ok", "worker": "ok"}
    await post(client, "echo", {})
    text = await (await client.get("/metrics")).text()
    for name in (
        "acceptd_queue_depth",
        "acceptd_requests_submitted_total",
        "acceptd_requests_finished_total",
        "acceptd_run_seconds_bucket",
        "acceptd_wait_seconds_bucket",
        "acceptd_workers_alive",
    ):
        assert name in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names and all(n.startswith("acceptd_") for n in names)
    # Counted across reads, each submission once.
    await post(client, "echo", {})
    text = await (await client.get("/metrics")).text()
    assert 'acceptd_requests_submitted_total{operation="echo"} 2.0' in text.splitlines()


async def test_openapi_is_generated_from_the_operations(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    ops = await (await client.get("/v1/operations")).json()
    for op in ops["items"]:
        post_op = spec["paths"][f"/v1/{op['name']}"]["post"]
        schema = post_op["requestBody"]["content"]["application/json"]["schema"]
        assert schema == op["input_schema"]
        assert {"201", "202", "400", "413", "415", "422"} <= set(post_op["responses"])
        assert f"/v1/{op['name']}/{{request_id}}" in spec["paths"]
    for path in ("/v1/queue/requests/{request_id}", "/v1/queue", "/v1/queue/requests"):
        assert path in spec["paths"]
    for page in ("/docs", "/"):
        resp = await client.get(page)
        assert resp.status == 200 and resp.content_type == "text/html"


@both
async def test_rate_limit_is_429_with_retry_after(app_client: MakeClient) -> None:
    c = await app_client(run_worker=False, auth={"rate_per_second": 0.5, "burst": 2})
    assert (await post(c, "echo", {}, **ASYNC))[0] == 202
    assert (await post(c, "echo", {}, **ASYNC))[0] == 202
    status, body, headers = await post(c, "echo", {}, **ASYNC)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert_problem(headers, body, 429)
    # Limits are per operation.
    assert (await post(c, "sleep", {"seconds": 1}, **ASYNC))[0] == 202


async def test_a_handler_blocking_the_event_loop_is_named_by_the_watchdog(
    app_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = await app_client(worker={"blocked_loop_seconds": 0.2})
    status, _, headers = await post(c, "block-loop", {"seconds": 0.8})
    assert status == 201
    rid = headers["Location"].rsplit("/", 1)[1]
    blocked = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert any(f"block-loop/{rid}" in m for m in blocked), blocked


async def test_bodies_must_be_utf8_json_and_are_kept_exactly(client: Client) -> None:
    for raw in (b'{"a": NaN}', '{"a": 1}'.encode("utf-16"), b"\xff\xfe"):
        resp = await client.post("/v1/echo", data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400, raw
    big = '{"n": 123456789012345678901234567890, "s": "h\u00e9llo \u2603"}'
    resp = await client.post(
        "/v1/echo", data=big.encode(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 201
    assert await resp.json() == {"n": 123456789012345678901234567890, "s": "h\u00e9llo \u2603"}


async def test_bodies_arriving_in_pieces_are_read_whole(client: Client) -> None:
    # Chunked, with pauses: the handler starts before the body has all arrived.
    parts = [b'{"text": "', b"x" * 300_000, b'", "n": ', b"[1, 2, 3]}"]

    async def slowly() -> AsyncIterator[bytes]:
        for part in parts:
            await asyncio.sleep(0.05)
            yield part

    resp = await client.post(
        "/v1/echo", data=slowly(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"text": "x" * 300_000, "n": [1, 2, 3]}


async def test_synchronous_results_small_and_large(client: Client) -> None:
    # Small results ride along with the terminal event; large ones are read back.
    for size in (10, 100_000):
        body = {"blob": "x" * size}
        status, got, _ = await post(client, "echo", body)
        assert status == 201 and got == body


async def test_process_pool_handlers_run_in_another_process_and_report_progress(
    client: Client,
) -> None:
    import os

    status, body, headers = await post(client, "in-process", {"n": 100}, Prefer="wait=20")
    assert status == 201 and body["sum"] == 4950 and body["pid"] != os.getpid()
    rid = headers["Location"].rsplit("/", 1)[1]
    monitor = await (await client.get(f"/v1/queue/requests/{rid}")).json()
    assert monitor["progress"] == {"percent": 50.0, "message": "half way"}


async def test_openapi_is_a_valid_31_document_covering_every_route(client: Client) -> None:
    from openapi_spec_validator import validate

    spec = await (await client.get("/openapi.json")).json()
    validate(spec)
    assert client.app is not None
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    ops = await (await client.get("/v1/operations")).json()
    names = {o["name"] for o in ops["items"]}
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or not path or path.startswith("/static/"):
            continue
        if route.method == "*":  # the catch-all answering 404 and 405 (service.http.routing)
            continue
        if path.startswith("/v1/{op}"):
            for name in names:  # generic routes are documented per operation
                concrete = path.replace("{op}", name)
                assert (route.method, concrete) in documented, (route.method, concrete)
            continue
        assert (route.method, path) in documented, (route.method, path)


async def test_results_over_the_limit_fail_the_request(client: Client) -> None:
    status, body, _ = await post(client, "small-results", {"x": "y" * 200})
    assert status == 500 and body["type"].endswith("result-too-large") and body["limit"] == 100
    status, body, _ = await post(client, "small-results", {"x": "y"})
    assert status == 201 and body == {"x": "y"}
