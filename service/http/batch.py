"""Bulk submit: ``POST /v1/{op}/batch`` queues up to 1,000 requests in one call.

Each item is a submit of its own (CONTRACT.md section 9): validated, queued or refused on its
own, answered in order with its monitor or its problem details. The batch's headers apply to
every item unless the item says otherwise. Every item goes to Redis in one ``submit.lua`` run
(:meth:`Queue.submit_many`): one round trip for the whole batch, plus one for any replays.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from aiohttp import web

from service.http import monitor
from service.http.auth import client_of
from service.http.body import decode, read_raw, require_json
from service.http.common import JSON, base_url, find_operation
from service.http.errors import Problem
from service.http.prefer import (
    MAX_QUEUE_TIMEOUT,
    SubmitHeaders,
    parse_callback_events,
    parse_submit_headers,
)
from service.http.submit import check_callback, check_input, digest, refusal
from service.queue.store import NewRequest
from service.registry import Operation
from service.state import metrics_key, queue_key, settings_key

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Items a batch may hold (more: 400, nothing queued).
MAX_ITEMS = 1000
ITEM_FIELDS = frozenset({"input", "priority", "idempotency_key", "queue_timeout", "callback_url"})


class _Item:
    """One item's submit, once its fields are checked (before its callback URL is)."""

    __slots__ = ("callback_url", "idempotency_key", "input_json", "priority", "queue_timeout")

    def __init__(
        self,
        input_json: str,
        priority: int,
        idempotency_key: str,
        queue_timeout: float,
        callback_url: str,
    ) -> None:
        self.input_json = input_json
        self.priority = priority
        self.idempotency_key = idempotency_key
        self.queue_timeout = queue_timeout
        self.callback_url = callback_url


@routes.post("/v1/{op}/batch")
async def submit_batch(request: web.Request) -> web.Response:
    """Queue up to 1,000 requests; 202 with each one's monitor or problem, in order."""
    app = request.app
    settings = app[settings_key].server
    op = find_operation(request, request.match_info.get("op") or request.path.split("/")[2])
    asked = parse_submit_headers(request.headers, settings)
    if asked.callback_url:
        await check_callback(request, asked.callback_url)
    # The one body reader (size, JSON, depth and number limits): the envelope's inputs are
    # checked one by one below.
    require_json(request)
    data, _ = decode(await read_raw(request, settings.max_batch_bytes))
    entries = _entries(data)
    limit = op.max_input_bytes or settings.max_body_bytes
    # Each item becomes its submit or its problem.
    parsed = [_item(op, asked, i, e, limit) for i, e in enumerate(entries)]
    await _check_callbacks(request, asked, parsed)
    parts = await _submit(request, op, asked, parsed)
    headers = {"Preference-Applied": "respond-async"} if asked.prefs.respond_async else None
    body = b'{"items":[' + b",".join(parts) + b"]}"
    return web.Response(status=202, body=body, content_type=JSON, headers=headers)


async def _check_callbacks(
    request: web.Request, asked: SubmitHeaders, parsed: list[_Item | Problem]
) -> None:
    """Refuse the items whose own callback URL is not allowed (each URL checked once)."""
    checked: dict[str, Problem | None] = {}
    for i, item in enumerate(parsed):
        if not isinstance(item, _Item) or item.callback_url in ("", asked.callback_url):
            continue
        url = item.callback_url
        if url not in checked:
            try:
                await check_callback(request, url)
                checked[url] = None
            except Problem as exc:
                checked[url] = exc
        refused = checked[url]
        if refused is not None:
            parsed[i] = _at(refused, i, "callback_url")


async def _submit(
    request: web.Request, op: Operation, asked: SubmitHeaders, parsed: list[_Item | Problem]
) -> list[bytes]:
    """Queue the valid items (one script call) and answer every item, in order."""
    app = request.app
    client = client_of(request)
    queue = app[queue_key]
    rate, burst = app[settings_key].auth.limit_for(client)
    events = asked.callback_events or parse_callback_events(request.headers.get("Callback-Events"))
    default_timeout = op.settings.queue_timeout or 0.0

    news = [
        NewRequest(
            op.name,
            # A sharded operation's id names the item's shard (service.queue.store).
            queue.new_id(op.name, item.priority, client, item.idempotency_key, rate),
            client,
            item.input_json,
            op.limits,
            priority=item.priority,
            idempotency_key=digest(item.idempotency_key) if item.idempotency_key else "",
            body_hash=digest(item.input_json) if item.idempotency_key else "",
            callback_url=item.callback_url,
            callback_events=events if item.callback_url else "",
            rate=rate,
            burst=burst,
            queue_timeout=item.queue_timeout or default_timeout,
        )
        for item in parsed
        if isinstance(item, _Item)
    ]
    results = iter(await queue.submit_many(news))
    replays: list[tuple[int, str]] = []
    parts: list[bytes] = []
    metrics = app[metrics_key]
    for i, item in enumerate(parsed):
        if not isinstance(item, _Item):
            parts.append(_problem_json(item))
            continue
        res = next(results)
        if isinstance(res, BaseException):
            log.error("bulk submit item %d of %s failed", i, op.name, exc_info=res)
            parts.append(_problem_json(Problem(
                503, "the service could not store this request; submit it again",
                slug="unavailable", headers={"Retry-After": "2"})))  # fmt: skip
            continue
        refused = refusal(op, res, rate)
        if refused is not None:
            parts.append(_problem_json(refused))
        elif res.outcome == "replay":
            replays.append((i, res.request_id))
            parts.append(b"null")  # filled in below
        else:
            metrics.request_submitted(op.name)
            parts.append(monitor.render_accepted(
                op.name, res.request_id, res.position, item.priority, res.at_ms,
                started=res.started))  # fmt: skip
    if replays:
        await _fill_replays(request, op, client, replays, parts)
    return parts


def _entries(data: Any) -> list[Any]:
    """The envelope's items: 400 unless ``{"requests": [...]}`` with 1 to 1,000 of them."""
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list):
        raise Problem(400, 'send {"requests": [{"input": ...}, ...]}', slug="invalid-batch")
    unknown = sorted(set(data) - {"requests"})
    if unknown:
        raise Problem(400, f"unknown member {unknown[0]!r} in the batch; send only requests",
                      slug="invalid-batch")  # fmt: skip
    entries: list[Any] = data["requests"]
    if not 1 <= len(entries) <= MAX_ITEMS:
        raise Problem(
            400,
            f"a batch holds 1 to {MAX_ITEMS} requests, not {len(entries)}",
            slug="invalid-batch",
            limit=MAX_ITEMS,
        )
    return entries


def _item(op: Operation, asked: SubmitHeaders, i: int, entry: Any, limit: int) -> _Item | Problem:
    """Item ``i`` checked as a submit with the batch's headers, or its problem."""
    if not isinstance(entry, dict) or "input" not in entry:
        return _invalid(i, "", 'each request is an object with "input" and optional settings')
    unknown = sorted(set(entry) - ITEM_FIELDS)
    if unknown:
        return _invalid(i, unknown[0], f"unknown member {unknown[0]!r}")
    # A setting given as null is not given (the input itself may be null).
    entry = {k: v for k, v in entry.items() if v is not None or k == "input"}
    priority = entry.get("priority", asked.priority)
    if type(priority) is not int or not -10 <= priority <= 10:
        return _invalid(i, "priority", "priority must be an integer from -10 to 10")
    key = entry.get("idempotency_key")
    if key is None:
        # The batch's Idempotency-Key names each item by its place: the same batch sent again
        # replays item by item.
        key = f"{asked.idempotency_key}#{i}" if asked.idempotency_key else ""
    elif (
        not isinstance(key, str)
        or not 1 <= len(key) <= 255
        or not key.isascii()
        or not all(33 <= ord(c) <= 126 for c in key)
    ):
        return _invalid(i, "idempotency_key",
                        "idempotency_key must be 1 to 255 visible ASCII characters")  # fmt: skip
    timeout = entry.get("queue_timeout", asked.queue_timeout)
    if "queue_timeout" in entry and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_QUEUE_TIMEOUT  # NaN fails it too
    ):
        return _invalid(
            i,
            "queue_timeout",
            "queue_timeout must be a positive number of seconds (at most a year)",
        )
    url = entry.get("callback_url", asked.callback_url)
    if not isinstance(url, str) or (not url.strip() and "callback_url" in entry):
        return _invalid(i, "callback_url", "callback_url must be an absolute http or https URL")
    data = entry["input"]
    try:
        check_input(op, data)
    except Problem as exc:
        return _at(exc, i, "input")
    text = _encode(data)
    if len(text.encode()) > limit:
        return _at(Problem(413, f"the input exceeds the {limit}-byte limit", slug="too-large",
                           limit=limit), i, "input")  # fmt: skip
    return _Item(text, priority, key, float(timeout), url.strip())


def _encode(data: Any) -> str:
    """An item's input as compact JSON: what is stored, and hashed for its Idempotency-Key."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # integers beyond 64 bits (read by the standard library's parser)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _invalid(i: int, field: str, detail: str) -> Problem:
    return _at(Problem(400, detail, slug="invalid-item"), i, field)


def _at(problem: Problem, i: int, field: str) -> Problem:
    """``problem`` pointing at the item's member (a JSON pointer into the batch's body)."""
    problem.extra.pop("header", None)
    problem.extra["pointer"] = f"/requests/{i}" + (f"/{field}" if field else "")
    return problem


def _problem_json(problem: Problem) -> bytes:
    body = problem.body()
    retry = problem.headers.get("Retry-After")
    if retry is not None:
        # An item's Retry-After: what the header would have said for a submit of its own.
        body["retry_after"] = int(retry)
    return orjson.dumps(body)


async def _fill_replays(
    request: web.Request,
    op: Operation,
    client: str,
    replays: list[tuple[int, str]],
    parts: list[bytes],
) -> None:
    """The replayed items' monitors (read in one pipeline), with ``"replayed": true``."""
    queue = request.app[queue_key]
    snaps = await queue.read_many(op.name, client, [rid for _, rid in replays])
    now = queue.now_ms()
    base = base_url(request)
    for (i, rid), snap in zip(replays, snaps, strict=True):
        if snap is None:  # purged between the replay and this read
            parts[i] = _problem_json(Problem(404, f"no request {rid!r}", slug="unknown-request"))
            continue
        doc = monitor.render_snapshot(op.name, snap, now, base)
        doc["replayed"] = True
        parts[i] = orjson.dumps(doc)


def operation_routes(names: list[str]) -> list[web.RouteDef]:
    """The batch route of each configured operation (the generic one answers unknown names)."""
    return [web.RouteDef("POST", f"/v1/{name}/batch", submit_batch, {}) for name in names]
