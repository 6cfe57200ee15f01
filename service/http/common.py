"""HTTP helpers shared by the route modules: JSON responses, URLs, finding requests."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import orjson
from aiohttp import web

from service.http import monitor
from service.http.auth import client_of, is_admin
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
    if snap is None or not owns(request, snap.record):
        raise not_found(request_id)
    return snap


def owns(request: web.Request, record: dict[str, Any]) -> bool:
    """The caller may see and act on the request: its own, or any for an operator."""
    return record.get("client") == client_of(request) or is_admin(request)


async def owner_of(request: web.Request, op: Operation, request_id: str) -> str:
    """The client a request is acted on for: the caller, or for an operator its owner."""
    if not is_admin(request):
        return client_of(request)
    snap = await request.app[queue_key].read(op.name, request_id)
    return str(snap.record["client"]) if snap is not None else client_of(request)


def render(request: web.Request, op: Operation, snap: Snapshot) -> dict[str, Any]:
    """The status monitor of a snapshot (for an operator, with ``client``: whose it is)."""
    body = monitor.render_snapshot(
        op.name, snap, request.app[queue_key].now_ms(), base_url(request)
    )
    if is_admin(request):
        body["client"] = snap.record.get("client")
    return body


# -- listings ----------------------------------------------------------------------------


def page_limit(request: web.Request, default: int, maximum: int) -> int:
    """A listing's ``limit`` query parameter: 1 to ``maximum`` (400 otherwise)."""
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise Problem(400, f"limit must be an integer from 1 to {maximum}",
                      slug="invalid-query", parameter="limit")  # fmt: skip
    return limit


def encode_cursor(cursor: tuple[int, str]) -> str:
    """A listing's opaque ``next``: the (ms, id) of the last item of its page."""
    return base64.urlsafe_b64encode(f"{cursor[0]}:{cursor[1]}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    """The (ms, id) of a ``cursor`` query parameter (400 when it is not one of ours)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        ms, rid = raw.split(":", 1)
        return int(ms), rid
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "cursor is not valid; use the `next` value of a listing",
                      slug="invalid-query", parameter="cursor") from None  # fmt: skip


# -- submit ------------------------------------------------------------------------------
