"""--log-format json: a JSON object per line, with request_id/operation/worker where they apply."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.runtime import logs
from service.state import Roles
from tests.http.test_api import ASYNC, make_settings, wait_status

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_bound_and_extra_fields(json_lines: io.StringIO) -> None:
    log = logging.getLogger("acceptd.test")
    token = logs.bind(worker="w-1")
    try:
        log.warning("hello %s", "there", extra={"request_id": "r-1"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("it failed")
    finally:
        logs.unbind(token)
    log.warning("unbound")
    first, second, third = parsed(json_lines)
    assert first["message"] == "hello there" and first["level"] == "WARNING"
    assert first["logger"] == "acceptd.test" and str(first["time"]).endswith("+00:00")
    assert first["worker"] == "w-1" and first["request_id"] == "r-1"
    assert "operation" not in first
    assert second["worker"] == "w-1" and "ValueError: bad" in str(second["exception"])
    assert "worker" not in third


async def test_a_failing_run_logs_its_request_operation_and_worker(
    json_lines: io.StringIO, aiohttp_client: Callable[..., Awaitable[Client]], redis_url: str
) -> None:
    app = create_app(make_settings(redis_url), Roles(api=True, worker=True))
    client = await aiohttp_client(app)
    resp = await client.post("/v1/boom", json={}, headers=ASYNC)
    rid = (await resp.json())["id"]
    await wait_status(client, rid, {"failed"})
    lines = [line for line in parsed(json_lines) if line.get("request_id") == rid]
    assert lines, json_lines.getvalue()
    assert all(line["operation"] == "boom" for line in lines)
    assert all(str(line.get("worker", "")).count(":") == 2 for line in lines)  # host:pid:token
    assert any(line["level"] == "ERROR" and "exception" in line for line in lines)
