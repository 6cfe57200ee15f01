"""The operation routes: submit (``POST /v1/{op}``) and the final resource."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any

from aiohttp import web

from service.http import monitor
from service.http.auth import client_of, is_admin
from service.http.body import decode, read_arrived, read_raw, require_json
from service.http.common import (
    JSON,
    base_url,
    find_operation,
    json_response,
    not_found,
    operation_of_id,
    read_own,
    render,
    retry_after,
)
from service.http.errors import PROBLEM_JSON, Problem, problem_response
from service.http.prefer import SubmitHeaders, parse_submit_headers
from service.queue import problems
from service.queue.status import TERMINAL, Status
from service.queue.store import NewRequest, Snapshot, Submitted
from service.queue.waits import TerminalWait
from service.registry import Operation
from service.runtime.config import ServerSettings
from service.state import (
    callback_checker_key,
    hub_key,
    metrics_key,
    queue_key,
    settings_key,
    sync_waits_key,
)

routes = web.RouteTableDef()

# The response header naming whose request an operator's retry made (see ``_answer``).
CLIENT_HEADER = "Queue-Client"
# As for webhook endpoint URLs (the webhooks package's own limit).
MAX_CALLBACK_URL = 2048


def parse_input(op: Operation, raw: bytes) -> tuple[Any, str]:
    """Parse and validate a body read already."""
    data, text = decode(raw, exact_numbers=not op.accepts_anything)
    if op.accepts_anything:
        return data, text
    check_input(op, data)
    return data, text


def check_input(op: Operation, data: Any) -> None:
    """422 when ``data`` does not match the operation's input schema."""
    errors = op.validate(data)
    if errors:
        raise Problem(
            422,
            f"the input does not match the {op.name} schema",
            slug="invalid-input",
            errors=errors,
        )


@routes.post("/v1/{op}")
async def submit(request: web.Request) -> web.StreamResponse:
    """Queue a request; answer at once (202) or when done (201), per ``Prefer``."""
    settings = request.app[settings_key].server
    op = find_operation(request, request.match_info.get("op") or request.path[4:])
    asked = parse_submit_headers(request.headers, settings)
    if asked.callback_url:
        await check_callback(request, asked.callback_url)
    limit = op.max_input_bytes or settings.max_body_bytes
    require_json(request)
    # Usually the body came with the headers: read without a coroutine of its own.
    raw = read_arrived(request, limit)
    if raw is None:
        raw = await read_raw(request, limit)
    _, input_json = parse_input(op, raw)  # stored as sent: not encoded again
    return await enqueue(request, op, asked, input_json, asked.priority)


async def enqueue(
    request: web.Request,
    op: Operation,
    asked: SubmitHeaders,
    input_json: str,
    priority: int,
    retry_of: str = "",
    client: str | None = None,
) -> web.Response:
    """Create the request and answer as a submit does: 202, or 201 (or its error) when done
    in time. A submit's second half, shared with the retry of a finished request (which an
    operator makes for the request's own ``client``)."""
    app = request.app
    all_settings = app[settings_key]
    settings = all_settings.server
    client = client or client_of(request)
    queue = app[queue_key]
    rate, burst = all_settings.auth.limit_for(client)
    # A sharded operation's id names the shard the submit goes to (service.queue.store).
    rid = queue.new_id(op.name, priority, client, asked.idempotency_key, rate)
    # Named as the submit call below reads them.
    idem, wait = asked.idempotency_key, asked.wait
    queue_timeout = asked.queue_timeout or op.settings.queue_timeout or 0.0
    callback_url, callback_events = asked.callback_url, asked.callback_events
    waits = app[sync_waits_key]
    if wait > 0 and waits.get(client, 0) >= settings.max_sync_waits_per_client:
        wait = _over_wait_limit(asked, settings)
    new = NewRequest(
        op.name,
        rid,
        client,
        input_json,
        op.limits,
        priority=priority,
        idempotency_key=digest(idem) if idem else "",
        body_hash=digest(input_json) if idem else "",
        callback_url=callback_url,
        callback_events=callback_events,
        rate=rate,
        burst=burst,
        waited=wait > 0,
        queue_timeout=queue_timeout,
        retry_of=retry_of,
    )
    if wait <= 0:
        # Nobody waits (respond-async): no wait to settle; a new request's 202 needs no read.
        res = _created(app, op, await queue.submit(new), rate)
        replayed = res.outcome == "replay"  # the request the key named first, read back
        snap = await read_own(request, op, res.request_id) if replayed else None
        return _answer(request, op, asked, res, snap, settings, priority, retry_of, client)
    # Watching starts before the submit: a request that finishes at once is not missed.
    waiter = TerminalWait(app[hub_key], rid)
    waits[client] = waits.get(client, 0) + 1
    try:
        res = _created(app, op, await queue.submit(new), rate)
        rid = res.request_id
        replayed = res.outcome == "replay"
        if replayed:
            waiter.follow(rid)  # the request the key named first
        # Waited for here (no coroutine of its own): the chain a finish wakes is short.
        reread = functools.partial(read_own, request, op, rid, with_result=True)
        snap = await waiter.until_terminal(wait, reread, read_first=replayed)
    finally:
        waiter.close()
        if waits[client] <= 1:
            del waits[client]
        else:
            waits[client] -= 1
    return _answer(request, op, asked, res, snap, settings, priority, retry_of, client)


def _created(app: web.Application, op: Operation, res: Submitted, rate: float) -> Submitted:
    """``res`` unless the queue refused the submit (its problem is raised); counted if new."""
    refused = refusal(op, res, rate)
    if refused is not None:
        raise refused
    if res.outcome == "created":
        app[metrics_key].request_submitted(op.name)
    return res


def digest(text: str) -> str:
    """The hash an Idempotency-Key, or the body sent with one, is stored and compared by."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def refusal(op: Operation, res: Submitted, rate: float) -> Problem | None:
    """The problem of a submit the queue refused (rate limit, full queue, reused key)."""
    if res.outcome == "limited":
        return Problem(
            429,
            f"too many submissions; at most {rate:g} per second to {op.name}",
            slug="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(res.retry_after_ms / 1000)))},
        )
    if res.outcome == "full":
        return Problem(
            503,
            f"the {op.name} queue is full ({op.settings.max_queue_depth} waiting); retry later",
            slug="queue-full",
            headers={"Retry-After": "5"},
        )
    if res.outcome == "conflict":
        return Problem(
            422,
            "this Idempotency-Key was used with a different body",
            slug="idempotency-key-reused",
            request_id=res.request_id,
        )
    return None


def _over_wait_limit(asked: SubmitHeaders, server: ServerSettings) -> float:
    """The client already waits on as many submits as allowed (in this process).

    A submit that accepts a 202 gets one at once (no wait); a synchronous one is refused,
    before anything is queued, with 429.
    """
    if asked.prefs.respond_async:
        return 0.0
    limit = server.max_sync_waits_per_client
    raise Problem(
        429,
        f"at most {limit} synchronous submits per client wait at once; retry shortly, or send "
        "Prefer: respond-async",
        slug="too-many-waits",
        headers={"Retry-After": "1"},
        limit=limit,
    )


def _answer(
    request: web.Request,
    op: Operation,
    asked: SubmitHeaders,
    res: Submitted,
    snap: Snapshot | None,
    server: ServerSettings,
    priority: int,
    retry_of: str,
    client: str,
) -> web.Response:
    """201 (or the error) for a request finished in time, else 202 with its status monitor."""
    headers: dict[str, str] = {}
    if res.outcome == "replay":
        headers["Idempotent-Replayed"] = "true"
    # An operator's retry says whose the new request is, in every answer: the header (a 201's
    # body is the result itself), and ``client`` in the monitor or problem body.
    whose = client if retry_of and is_admin(request) else ""
    if whose:
        headers[CLIENT_HEADER] = whose
    prefs = asked.prefs
    if snap is not None and snap.record["status"] in TERMINAL and asked.wait > 0:
        if prefs.wait is not None:
            headers["Preference-Applied"] = f"wait={prefs.wait:g}"
        return finished_response(request, op, snap, headers, client=whose)
    if prefs.respond_async:
        headers["Preference-Applied"] = "respond-async"
    if snap is None:
        # Just accepted: the monitor is known without reading it back, filled in a template.
        rid = res.request_id
        location = f"{base_url(request, server)}/v1/queue/requests/{rid}"
        headers["Location"] = headers["Operation-Location"] = location
        headers["Retry-After"] = retry_after(None)
        body = monitor.render_accepted(
            op.name, rid, res.position, priority, res.at_ms, started=res.started,
            retry_of=retry_of, client=whose,
        )  # fmt: skip
        return web.Response(status=202, body=body, content_type=JSON, headers=headers)
    doc = render(request, op, snap)
    location = base_url(request) + doc["links"][0]["href"]
    headers["Location"] = headers["Operation-Location"] = location
    headers["Retry-After"] = retry_after(doc.get("eta_seconds"))
    return json_response(doc, 202, headers)


def finished_response(
    request: web.Request,
    op: Operation,
    snap: Snapshot,
    headers: dict[str, str],
    client: str = "",
) -> web.Response:
    """The synchronous answer for a finished request: 201 with the result, or its error
    (with ``client``, whose it is, when an operator retried another client's request)."""
    rid = snap.record["id"]
    status = snap.record["status"]
    if status == Status.SUCCEEDED:
        headers["Location"] = f"{base_url(request)}/v1/{op.name}/{rid}"
        return web.Response(
            status=201, body=(snap.result or "null").encode(), content_type=JSON, headers=headers
        )
    error = json.loads(snap.record.get("error") or "{}") or json.loads(problems.internal())
    code = 422 if error.get("status") == 422 else 409 if status == Status.CANCELED else 500
    error["status"] = code
    error["request_id"] = rid
    if client:
        error["client"] = client
    return problem_response(error, code, headers)


async def check_callback(request: web.Request, url: str) -> None:
    """Refuse callback URLs that are not absolute http(s) URLs of at most 2,048 characters."""
    from yarl import URL

    if len(url) > MAX_CALLBACK_URL:
        raise Problem(
            400,
            f"Callback-Url must be at most {MAX_CALLBACK_URL} characters",
            slug="invalid-header",
            header="Callback-Url",
        )
    try:
        parsed = URL(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise Problem(
            400,
            "Callback-Url must be an absolute http or https URL",
            slug="invalid-header",
            header="Callback-Url",
        )
    checker = request.app.get(callback_checker_key)
    if checker is not None:
        await checker(url)


# -- reading -----------------------------------------------------------------------------


@routes.get("/v1/{op}/{request_id}")
async def get_result(request: web.Request) -> web.Response:
    """The final resource: 404 with the position until ready, 200 result, 410 failed."""
    op = find_operation(request, request.match_info.get("op") or request.path.split("/")[2])
    rid = request.match_info["request_id"]
    if operation_of_id(request, rid) is not op:
        raise not_found(rid)
    snap = await read_own(request, op, rid, with_result=True)
    status = snap.record["status"]
    if status == Status.SUCCEEDED:
        return web.Response(body=(snap.result or "null").encode(), content_type=JSON)
    if status in TERMINAL:
        error = json.loads(snap.record.get("error") or "{}") or json.loads(problems.internal())
        error.update(status=410, request_id=rid, request_status=status)
        return problem_response(error, 410)
    body = render(request, op, snap)
    return problem_response(
        {
            "type": problems.PROBLEM_BASE + "not-ready",
            "title": "Not ready",
            "status": 404,
            "detail": f"the request is {status}; its result is not ready yet",
            "request_id": rid,
            "request_status": status,
            "position": body["position"],
            "eta_seconds": body["eta_seconds"],
            "links": body["links"],
        },
        404,
        {"Retry-After": retry_after(body.get("eta_seconds"))},
    )


def operation_routes(names: list[str]) -> list[web.RouteDef]:
    """Routes per configured operation: found by aiohttp's index, not by trying each pattern.

    The generic ``/v1/{op}`` routes stay for unknown names (404 problem).
    """
    defs = []
    for name in names:
        defs.append(web.RouteDef("POST", f"/v1/{name}", submit, {}))
        defs.append(web.RouteDef("GET", f"/v1/{name}/{{request_id}}", get_result, {}))
    return defs


__all__ = ["PROBLEM_JSON", "operation_routes", "routes"]
