"""Routes on requests already made: status monitor, cancel, retry, listing, queue statistics."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from aiohttp import web

from service.http.auth import listed_clients
from service.http.common import (
    decode_cursor,
    encode_cursor,
    json_response,
    not_found,
    owner_of,
    owns,
    page_limit,
    read_own,
    render,
    requested,
    retry_after,
)
from service.http.errors import Problem
from service.http.prefer import parse_submit_headers
from service.http.submit import check_callback, enqueue
from service.queue import problems
from service.queue.status import TERMINAL, Status
from service.queue.store import Queue, Snapshot
from service.state import operations_key, queue_key, settings_key

routes = web.RouteTableDef()

STATUSES = tuple(Status)
MAX_LIST = 100


@routes.get("/v1/queue/requests/{request_id}")
async def get_monitor(request: web.Request) -> web.Response:
    """The status monitor."""
    op, rid = requested(request)
    snap = await read_own(request, op, rid)
    body = render(request, op, snap)
    headers = {}
    if body["status"] not in TERMINAL:
        headers["Retry-After"] = retry_after(body.get("eta_seconds"))
    return json_response(body, 200, headers)


@routes.delete("/v1/queue/requests/{request_id}")
async def cancel(request: web.Request) -> web.Response:
    """Cancel: queued → canceled (200); running → cancel requested (202)."""
    op, rid = requested(request)
    queue = request.app[queue_key]
    owner = await owner_of(request, op, rid)
    outcome, record = await queue.cancel(op.name, rid, owner, problems.canceled())
    if outcome == "missing" or record is None:
        raise not_found(rid)
    if outcome == "conflict":
        raise Problem(
            409,
            f"the request already {record['status']}; it can no longer be canceled",
            slug="already-finished",
            request_status=record["status"],
        )
    snap = await read_own(request, op, rid)
    body = render(request, op, snap)
    return json_response(body, 202 if outcome == "requested" else 200)


@routes.get("/v1/queue/requests/{request_id}/input")
async def get_input(request: web.Request) -> web.Response:
    """The input the request was submitted with, while it is kept (until it succeeds)."""
    op, rid = requested(request)
    snap = await request.app[queue_key].read(op.name, rid, with_input=True)
    if snap is None or not owns(request, snap.record):
        raise not_found(rid)
    if snap.input is None:
        return json_response({"kept": False, "input": None})
    return json_response({"kept": True, "input": orjson.loads(snap.input)})


@routes.post("/v1/queue/requests/{request_id}/retry")
async def retry(request: web.Request) -> web.Response:
    """A failed or canceled request again, as a new one: answered exactly like a submit."""
    op, rid = requested(request)
    server = request.app[settings_key].server
    asked = parse_submit_headers(request.headers, server)
    snap = await request.app[queue_key].read(op.name, rid, with_input=True)
    if snap is None or not owns(request, snap.record):
        raise not_found(rid)
    status = snap.record["status"]
    if status not in (Status.FAILED, Status.CANCELED):
        raise Problem(
            409,
            f"the request is {status}; only a failed or canceled request can be retried",
            slug="not-retryable",
            request_status=status,
        )
    if snap.input is None:  # finished before inputs were kept (an older release)
        raise Problem(
            409, "the request's input is no longer kept", slug="not-retryable",
            request_status=status,
        )  # fmt: skip
    if asked.callback_url:
        await check_callback(request, asked.callback_url)
    priority = int(snap.record.get("prio") or 0)
    owner = str(snap.record["client"])
    return await enqueue(request, op, asked, snap.input, priority, retry_of=rid, client=owner)


@routes.get("/v1/queue/requests")
async def list_requests(request: web.Request) -> web.Response:
    """The caller's requests, newest first, with a cursor."""
    query = _listing_query(request)
    ops = request.app[operations_key]
    queue = request.app[queue_key]
    clients = listed_clients(request)
    limit, cursor = query.limit, query.cursor
    items: list[dict[str, Any]] = []
    more = True
    for _ in range(20):  # bounded scan when a status filter skips many
        rows = await _newest_ids(queue, query.names, clients, cursor, limit)
        if not rows:
            more = False
            break
        snaps = await _read_rows(queue, rows)
        for ms, rid, name, _client in rows:
            cursor = (ms, rid)
            snap = snaps.get(rid)
            if snap is None or (query.status and snap.record["status"] != query.status):
                continue
            items.append(render(request, ops[name], snap))
            if len(items) == limit:
                break
        if len(items) == limit:
            break
        if len(rows) < limit:
            more = False
            break
    next_cursor = encode_cursor(cursor) if more and cursor and len(items) == limit else None
    return json_response({"items": items, "next": next_cursor})


class _Query(NamedTuple):
    status: str | None
    names: list[str]
    limit: int
    cursor: tuple[int, str] | None


def _listing_query(request: web.Request) -> _Query:
    """The listing's query parameters, checked (400 names the bad one)."""
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise Problem(400, f"status must be one of {', '.join(STATUSES)}", slug="invalid-query",
                      parameter="status")  # fmt: skip
    ops = request.app[operations_key]
    names = list(ops)
    if q.get("operation"):
        if q["operation"] not in ops:
            raise Problem(400, f"there is no operation named {q['operation']!r}",
                          slug="invalid-query", parameter="operation")  # fmt: skip
        names = [q["operation"]]
    limit = page_limit(request, 20, MAX_LIST)
    cursor = decode_cursor(q["cursor"]) if q.get("cursor") else None
    return _Query(status, names, limit, cursor)


async def _newest_ids(
    queue: Queue,
    names: list[str],
    clients: list[str],
    cursor: tuple[int, str] | None,
    limit: int,
) -> list[tuple[int, str, str, str]]:
    """Up to ``limit`` (ms, id, operation, client) after ``cursor``, newest first."""
    rows: list[tuple[int, str, str, str]] = []
    for name in names:
        for client in clients:
            for rid, ms in await queue.list_ids(name, client, cursor, limit):
                rows.append((ms, rid, name, client))
    rows.sort(reverse=True)
    return rows[:limit]


async def _read_rows(queue: Queue, rows: list[tuple[int, str, str, str]]) -> dict[str, Snapshot]:
    """The snapshots of the listed ids that still exist, one read per operation and client."""
    by_op: dict[tuple[str, str], list[str]] = {}
    for _ms, rid, name, client in rows:
        by_op.setdefault((name, client), []).append(rid)
    snaps: dict[str, Snapshot] = {}
    for (name, client), rids in by_op.items():
        for rid, snap in zip(rids, await queue.read_many(name, client, rids), strict=True):
            if snap is not None:
                snaps[rid] = snap
    return snaps


@routes.get("/v1/queue")
async def queue_stats(request: web.Request) -> web.Response:
    """Per operation: queued, running, workers alive, throughput and mean duration."""
    queue = request.app[queue_key]
    out = []
    for name in request.app[operations_key]:
        s = await queue.stats(name)
        out.append(
            {
                "operation": name,
                "queued": s.queued,
                "running": s.running,
                "workers": s.workers,
                "throughput_per_second": round(s.finished_recently / 60.0, 3),
                "mean_duration_seconds": (
                    round(s.run_ms_recently / s.finished_recently / 1000, 4)
                    if s.finished_recently
                    else None
                ),
            }
        )
    return json_response({"operations": out})


@routes.get("/v1/operations")
async def list_operations(request: web.Request) -> web.Response:
    """Every operation with its input schema and limits."""
    items = []
    for name, op in request.app[operations_key].items():
        items.append(
            {
                "name": name,
                "summary": op.spec.summary,
                "description": op.settings.description or op.spec.description,
                "input_schema": op.spec.input_schema,
                "output_schema": op.spec.output_schema or None,
                "timeout_seconds": op.settings.timeout,
                "attempts": op.settings.attempts,
                "result_ttl_seconds": op.settings.result_ttl,
                "max_queue_depth": op.settings.max_queue_depth,
                "links": [{"rel": "submit", "href": f"/v1/{name}", "method": "POST"}],
            }
        )
    return json_response({"items": items})
