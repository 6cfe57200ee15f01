"""Webhook event types and the delivery body built from an outbox entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from service.queue.times import rfc3339

EVENTS = ("request.running", "request.succeeded", "request.failed", "request.canceled")
DEFAULT_EVENTS = ("request.succeeded", "request.failed", "request.canceled")
DEFAULT_CALLBACK_EVENTS = "succeeded,failed,canceled"

Render = Callable[[str, dict[str, Any]], dict[str, Any]]


def body(op: str, event_type: str, ts_ms: int, record: dict[str, Any], render: Render) -> bytes:
    """The JSON body of one event: type, timestamp, and the monitor plus the parsed result."""
    data = dict(render(op, record))
    result = record.get("result")
    data["result"] = _result(result) if result else None
    doc = {"type": event_type, "timestamp": rfc3339(ts_ms), "data": data}
    try:
        return orjson.dumps(doc)
    except TypeError:  # integers beyond 64 bits: the standard library handles them
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _result(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # e.g. integers beyond 64 bits


def callback_wanted(record: dict[str, Any], event_type: str) -> bool:
    """Whether the request's own ``cb_url`` subscribed to this event type."""
    if not record.get("cb_url"):
        return False
    wanted = record.get("cb_events") or DEFAULT_CALLBACK_EVENTS
    status = event_type.removeprefix("request.")
    return status in {e.strip() for e in str(wanted).split(",")}
