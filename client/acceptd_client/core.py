"""What the sync and async clients share, free of I/O: retry policy, ``Retry-After``, submit
requests, the SSE parser, events and how a finished request turns into a result or an error."""

from __future__ import annotations

import email.utils
import json
import math
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import httpx

from acceptd_client.errors import (
    PROBLEM_BASE,
    AcceptdError,
    QueueTimedOut,
    RequestCanceled,
    RequestFailed,
    error_for,
)

TERMINAL: Final = frozenset({"succeeded", "failed", "canceled"})
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
USER_AGENT: Final = "acceptd-client/0.1.0"


class Progress(TypedDict, total=False):
    """A handler's last progress report."""

    percent: float
    message: str | None


class Monitor(TypedDict, total=False):
    """The status monitor (CONTRACT.md section 3); fields the service adds later pass through."""

    id: str
    operation: str
    status: str
    position: int | None
    eta_seconds: float | None
    progress: Progress | None
    attempt: int
    priority: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    expires_at: str | None
    cancel_requested: bool
    error: dict[str, Any] | None
    links: list[dict[str, str]]
    resourceLocation: str


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: ``event`` (status, position, progress…), ``id`` and JSON ``data``."""

    event: str
    id: str | None
    data: Any


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry: jittered exponential backoff, ``Retry-After`` first."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt`` (0-based): the server's word if it gave one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.backoff_cap, self.backoff_base * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retryable(method: str, headers: Mapping[str, str] | httpx.Headers) -> bool:
    """GET/DELETE always; a POST only when it carries an ``Idempotency-Key``."""
    return method.upper() in IDEMPOTENT_METHODS or "idempotency-key" in {k.lower() for k in headers}


def base_headers(api_key: str | None) -> dict[str, str]:
    """The headers of every call."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def submit_request(
    input: Any,
    *,
    priority: int | None,
    idempotency_key: str | None,
    callback_url: str | None,
    callback_events: Sequence[str] | str | None,
    queue_timeout: float | None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a submit. The body is encoded once: a retry resends the same bytes
    with the same ``Idempotency-Key``, so the service answers with the request it created."""
    headers = {
        "Content-Type": "application/json",
        "Prefer": "respond-async",
        "Idempotency-Key": idempotency_key or f"acceptd-client-{uuid.uuid4().hex}",
    }
    if priority is not None:
        headers["Queue-Priority"] = str(int(priority))
    if callback_url is not None:
        headers["Callback-Url"] = callback_url
    if callback_events is not None:
        events = [callback_events] if isinstance(callback_events, str) else callback_events
        headers["Callback-Events"] = ",".join(events)
    if queue_timeout is not None:
        headers["Queue-Timeout"] = f"{queue_timeout:g}"
    body = json.dumps(input, separators=(",", ":"), ensure_ascii=False).encode()
    return headers, body


def retry_headers(idempotency_key: str | None) -> dict[str, str]:
    """Headers of a retry of a finished request: keyed, so resending it never makes two."""
    return {
        "Prefer": "respond-async",
        "Idempotency-Key": idempotency_key or f"acceptd-client-{uuid.uuid4().hex}",
    }


# Requests one bulk submit may carry (the service refuses more); ``submit_many`` sends more
# in several calls.
MAX_BATCH = 1000


@dataclass(frozen=True)
class BatchItem:
    """One entry of ``submit_many`` with settings of its own (``None``: the call's)."""

    input: Any
    priority: int | None = None
    idempotency_key: str | None = None
    queue_timeout: float | None = None
    callback_url: str | None = None


def batch_requests(
    inputs: Iterable[Any],
    *,
    priority: int | None,
    idempotency_key: str | None,
    callback_url: str | None,
    callback_events: Sequence[str] | str | None,
    queue_timeout: float | None,
) -> list[tuple[dict[str, str], bytes]]:
    """Headers and body of each bulk submit (``POST /v1/{op}/batch``) for ``inputs``, in
    calls of at most ``MAX_BATCH``. Each call gets an ``Idempotency-Key`` (the service keys
    each item by it and its place), so a retry of a call replays its items."""
    entries: list[dict[str, Any]] = []
    for entry in inputs:
        if isinstance(entry, BatchItem):
            item: dict[str, Any] = {"input": entry.input}
            if entry.priority is not None:
                item["priority"] = int(entry.priority)
            if entry.idempotency_key is not None:
                item["idempotency_key"] = entry.idempotency_key
            if entry.queue_timeout is not None:
                item["queue_timeout"] = entry.queue_timeout
            if entry.callback_url is not None:
                item["callback_url"] = entry.callback_url
            entries.append(item)
        else:
            entries.append({"input": entry})
    calls = []
    chunks = [entries[i : i + MAX_BATCH] for i in range(0, len(entries), MAX_BATCH)]
    for n, chunk in enumerate(chunks):
        key = idempotency_key
        if key is not None and len(chunks) > 1:
            key = f"{key}/{n}"
        headers, body = submit_request(
            {"requests": chunk},
            priority=priority,
            idempotency_key=key,
            callback_url=callback_url,
            callback_events=callback_events,
            queue_timeout=queue_timeout,
        )
        calls.append((headers, body))
    return calls


def batch_answers(response: httpx.Response) -> list[dict[str, Any] | AcceptdError]:
    """A bulk submit's answer: each item's monitor, or its problem as the error it stands for."""
    body = json_of(response)
    out: list[dict[str, Any] | AcceptdError] = []
    for item in body["items"]:
        status = item.get("status")
        if isinstance(status, int):
            retry_after = item.get("retry_after")
            out.append(error_for(status, item, float(retry_after) if retry_after else None))
        else:
            out.append(item)
    return out


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem-details body of an error answer (a minimal one if it has none)."""
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase, "status": response.status_code}


def error_from(response: httpx.Response) -> AcceptdError:
    """The exception for an unsuccessful answer."""
    return error_for(
        response.status_code,
        problem_of(response),
        parse_retry_after(response.headers.get("Retry-After")),
    )


def json_of(response: httpx.Response) -> Any:
    """A successful answer's JSON body; an unsuccessful one raises its error."""
    if response.status_code >= 400:
        raise error_from(response)
    return json.loads(response.content) if response.content else None


def terminal_error(monitor: Mapping[str, Any], request: Any) -> AcceptdError | None:
    """The error a finished request stands for (None for ``succeeded`` or unfinished)."""
    status = monitor.get("status")
    problem = monitor.get("error") or {}
    if status == "canceled":
        return RequestCanceled(f"request {monitor.get('id')} was canceled", request=request,
                               problem=problem)  # fmt: skip
    if status == "failed":
        cls = (
            QueueTimedOut
            if problem.get("type") == PROBLEM_BASE + "queue-timeout"
            else RequestFailed
        )
        detail = problem.get("detail") or problem.get("title") or "failed"
        return cls(f"request {monitor.get('id')} failed: {detail}", request=request,
                   status=problem.get("status"), problem=problem)  # fmt: skip
    return None


class SSEParser:
    """Turns the lines of a ``text/event-stream`` into events (WHATWG rules, JSON data)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, line: str) -> Event | None:
        """One line (without its end); an event when this line completes one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_id = self._id
        event, data, self._event, self._data = self._event or "message", self._data, "", []
        if not data:
            return None
        text = "\n".join(data)
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return Event(event, self.last_id, parsed)


def apply_event(monitor: dict[str, Any], event: Event) -> None:
    """Fold an event into the last known monitor."""
    data = event.data
    if not isinstance(data, dict):
        return
    if event.event == "status":
        monitor.clear()
        monitor.update(data)
    elif event.event == "position":
        monitor.update(position=data.get("position"), eta_seconds=data.get("eta_seconds"))
    elif event.event == "progress":
        for field in ("status", "progress", "updated_at"):
            if field in data:
                monitor[field] = data[field]


def is_terminal(monitor: Mapping[str, Any]) -> bool:
    """Whether the monitor shows a finished request."""
    return monitor.get("status") in TERMINAL


def stream_refused(response: httpx.Response) -> bool:
    """An answer that means "poll instead": limits (429/503) or no event stream at all."""
    if response.status_code in (429, 503, 405, 406, 501):
        return True
    kind = response.headers.get("Content-Type", "")
    return response.status_code == 200 and not kind.startswith("text/event-stream")


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (monotonic), None for no deadline."""
    return None if deadline is None else deadline - time.monotonic()


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic deadline of a timeout (None: wait for ever)."""
    return None if timeout is None else time.monotonic() + timeout


def result_url(base_url: str, monitor: Mapping[str, Any]) -> str:
    """The final resource: ``resourceLocation``, else the ``result`` link, else by convention."""
    if monitor.get("resourceLocation"):
        return str(monitor["resourceLocation"])
    links: Iterable[Mapping[str, str]] = monitor.get("links") or ()
    for link in links:
        if link.get("rel") == "result":
            return link["href"]
    return f"/v1/{monitor['operation']}/{monitor['id']}"


def poll_delay(response: httpx.Response, policy: RetryPolicy, left: float | None) -> float:
    """How long to wait before the next poll: ``Retry-After`` (capped), else one second."""
    asked = parse_retry_after(response.headers.get("Retry-After"))
    delay = min(asked if asked is not None else 1.0, policy.max_retry_after)
    return max(0.0, delay if left is None else min(delay, left))
