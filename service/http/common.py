"""HTTP helpers shared by the route modules: JSON responses, URLs, finding requests."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from service.http import monitor
from service.http.auth import client_of
from service.http.errors import Problem
from service.queue.ids import id_op_code, looks_like_id
from service.queue.store import Snapshot
from service.registry import Operation
from service.runtime.config import ServerSettings
from service.state import codes_key, operations_key, queue_key, settings_key

JSON = "application/json"


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return orjson.dumps(obj)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response."""
    return web.Response(status=status, body=dumps(body), content_type=JSON, headers=headers)


def base_url(request: web.Request, server: ServerSettings | None = None) -> str:
    """The service's absolute base URL: ``server.public_url``, else the request's host.

    ``server`` spares a look-up when the caller holds the settings already.
    """
    configured = (server or request.app[settings_key].server).public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.scheme}://{request.host}"


def retry_after(eta: float | None) -> str:
    """A ``Retry-After`` value in whole seconds, from an ETA."""
    if eta is None:
        return "1"
    return str(max(1, min(math.ceil(eta), 60)))


def find_operation(request: web.Request, name: str) -> Operation:
    """The operation named in the path, or 404."""
    op = request.app[operations_key].get(name)
    if op is None:
        raise Problem(404, f"there is no operation named {name!r}", slug="unknown-operation")
    return op


def operation_of_id(request: web.Request, request_id: str) -> Operation | None:
    """The operation a request id belongs to (None when the id cannot be ours)."""
    if not looks_like_id(request_id):
        return None
    return request.app[codes_key].get(id_op_code(request_id))


def requested(request: web.Request) -> tuple[Operation, str]:
    """The operation and id of the ``{request_id}`` in the path, or 404."""
    rid = request.match_info["request_id"]
    op = operation_of_id(request, rid)
    if op is None:
        raise not_found(rid)
    return op, rid


def not_found(request_id: str) -> Problem:
    """The 404 of an unknown or purged request."""
    return Problem(404, f"no request {request_id!r}", slug="unknown-request")


async def read_own(
    request: web.Request, op: Operation, request_id: str, *, with_result: bool = False
) -> Snapshot:
    """A status read of the caller's own request, or 404."""
    snap = await request.app[queue_key].read(op.name, request_id, with_result=with_result)
    if snap is None or snap.record.get("client") != client_of(request):
        raise not_found(request_id)
    return snap


def render(request: web.Request, op: Operation, snap: Snapshot) -> dict[str, Any]:
    """The status monitor of a snapshot."""
    return monitor.render_snapshot(
        op.name, snap, request.app[queue_key].now_ms(), base_url(request)
    )


# -- submit ------------------------------------------------------------------------------
