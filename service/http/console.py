"""The operator console's read-only endpoints: history charts' data, the live processes and a
request's event timeline."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from aiohttp import web

from service.http.auth import client_of, is_admin
from service.http.common import json_response, read_own, requested
from service.http.errors import Problem
from service.queue import history, presence, timeline
from service.queue.times import rfc3339_ms
from service.state import operations_key, queue_key, redis_key, settings_key

routes = web.RouteTableDef()

DEFAULT_WINDOW = 900
_WINDOW = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _window(text: str | None) -> int:
    """A ``window`` query parameter (``900``, ``90s``, ``15m``, ``1h``, ``24h``) in seconds."""
    if not text:
        return DEFAULT_WINDOW
    m = _WINDOW.match(text.strip())
    seconds = int(m[1]) * _UNITS[m[2]] if m else 0
    if not 60 <= seconds <= history.MAX_WINDOW:
        raise Problem(400, "window must be from 60 s to 24 h, as seconds or like 15m, 1h, 24h",
                      slug="invalid-query", parameter="window")  # fmt: skip
    return seconds


@routes.get("/v1/queue/history")
async def get_history(request: web.Request) -> web.Response:
    """Per operation: submitted, succeeded, failed, canceled and queue depth per time bucket."""
    window = _window(request.query.get("window"))
    ops = request.app[operations_key]
    names: list[str] = list(ops)
    if request.query.get("operation"):
        name = request.query["operation"]
        if name not in names:
            raise Problem(400, f"there is no operation named {name!r}", slug="invalid-query",
                          parameter="operation")  # fmt: skip
        names = [name]
    queue = request.app[queue_key]
    now = queue.now_ms()
    tags = {name: queue.tags(name) for name in names}  # a sharded operation's every shard
    rows = await history.read(request.app[redis_key], names, window, now, tags)
    return json_response(
        {
            "window_seconds": window,
            "step_seconds": history.step_for(window),
            "operations": [
                {
                    "operation": s.operation,
                    "time": s.times,
                    "submitted": s.submitted,
                    "succeeded": s.succeeded,
                    "failed": s.failed,
                    "canceled": s.canceled,
                    "queue_depth": s.queue_depth,
                    "totals": {
                        "submitted": sum(s.submitted),
                        "succeeded": sum(s.succeeded),
                        "failed": sum(s.failed),
                        "canceled": sum(s.canceled),
                    },
                    "wait_ms": asdict(s.wait_ms),
                    "run_ms": asdict(s.run_ms),
                }
                for s in rows
            ],
        }
    )


@routes.get("/v1/whoami")
async def whoami(request: web.Request) -> web.Response:
    """The caller's client name and whether it is an operator (with every client's name)."""
    admin = is_admin(request)
    names = [c.name for c in request.app[settings_key].auth.clients] if admin else []
    return json_response({"client": client_of(request), "admin": admin, "clients": names})


@routes.get("/v1/queue/workers")
async def list_workers(request: web.Request) -> web.Response:
    """Every worker and dispatcher process heard from in the last hour, with what it runs."""
    queue = request.app[queue_key]
    items = await presence.processes(request.app[redis_key], queue.now_ms())
    return json_response({"items": items})


@routes.get("/v1/queue/requests/{request_id}/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    """A request's event timeline: its stored events where any remain, else (and for what
    they miss) its record's milestones; each entry says what happened, when, and from which."""
    op, rid = requested(request)
    snap = await read_own(request, op, rid)  # the monitor's access rules: own, or an operator
    queue = request.app[queue_key]
    record = snap.record
    events = await timeline.stored(
        request.app[redis_key], queue.tag_of(op.name, rid), record, queue.now_ms()
    )
    items = []
    for e in timeline.build(record, events):
        item: dict[str, Any] = {
            "at": rfc3339_ms(e.at_ms),
            "event": e.event,
            "status": e.status,
            "attempt": e.attempt,
            "source": e.source,
        }
        if e.seq is not None:
            item["seq"] = e.seq
        if e.progress is not None:
            item["progress"] = e.progress
        if e.error is not None:
            item["error"] = e.error
        items.append(item)
    body: dict[str, Any] = {"id": rid, "status": record["status"], "items": items}
    if is_admin(request):
        body["client"] = record.get("client")
    return json_response(body)
