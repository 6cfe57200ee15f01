"""The status monitor: a request's record rendered as clients see it (CONTRACT.md section 3)."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from service.queue.status import TERMINAL, Status
from service.queue.store import THROUGHPUT_WINDOW, Snapshot
from service.queue.times import rfc3339, rfc3339_ms


def links(op: str, request_id: str) -> list[dict[str, str]]:
    """The hypermedia links of a request."""
    monitor = f"/v1/queue/requests/{request_id}"
    return [
        {"rel": "self", "href": monitor, "method": "GET"},
        {"rel": "result", "href": f"/v1/{op}/{request_id}", "method": "GET"},
        {"rel": "events", "href": f"{monitor}/events", "method": "GET"},
        {"rel": "cancel", "href": monitor, "method": "DELETE"},
    ]


def eta_seconds(
    record: dict[str, Any],
    position: int | None,
    finished_recently: int,
    run_ms_recently: int,
    now_ms: int,
) -> float | None:
    """Estimated seconds until the request finishes, from recent throughput; None if unknown."""
    status = record.get("status")
    if status in TERMINAL or finished_recently <= 0:
        return None
    mean_run = run_ms_recently / finished_recently / 1000
    if status == Status.RUNNING:
        started = int(record.get("started") or now_ms)
        return round(max(mean_run - (now_ms - started) / 1000, 0.0), 3)
    rate = finished_recently / THROUGHPUT_WINDOW
    ahead = (position if position is not None else 0) + 1
    return round(ahead / rate + mean_run, 3)


def render(
    op: str,
    record: dict[str, Any],
    *,
    position: int | None = None,
    eta: float | None = None,
    base: str | None = None,
) -> dict[str, Any]:
    """The monitor body for one record snapshot.

    ``retry_of`` only on a retry; ``resourceLocation`` (the final resource's absolute URL,
    for generic LRO pollers) only once succeeded, when the service's ``base`` URL is known.
    """
    rid = record["id"]
    status = record["status"]
    progress = record.get("progress")
    error = record.get("error")
    body: dict[str, Any] = {
        "id": rid,
        "operation": op,
        "status": status,
        "position": position if status == Status.QUEUED else None,
        "eta_seconds": eta if status not in TERMINAL else None,
        "progress": orjson.loads(progress) if progress else None,
        "attempt": int(record.get("attempt") or 1),
        "lost": int(record.get("lost") or 0),
        "priority": int(record.get("prio") or 0),
        "created_at": rfc3339(record.get("created")),
        "started_at": rfc3339(record.get("started")),
        "finished_at": rfc3339(record.get("finished")),
        "updated_at": rfc3339(record.get("updated")),
        "expires_at": rfc3339(record.get("expires")),
        "cancel_requested": record.get("cancel") == "1",
        "error": orjson.loads(error)
        if error and status in (Status.FAILED, Status.CANCELED)
        else None,
        "links": links(op, rid),
    }
    retry_of = record.get("retry_of")
    if retry_of:
        body["retry_of"] = retry_of
    if base is not None and status == Status.SUCCEEDED:
        body["resourceLocation"] = f"{base}/v1/{op}/{rid}"
    return body


def render_accepted(
    op: str,
    request_id: str,
    position: int | None,
    priority: int,
    now_ms: int,
    *,
    started: bool = False,
    retry_of: str = "",
    client: str = "",
) -> bytes:
    """The JSON monitor of a request just accepted: ``render``'s output, byte for byte.

    Queued, or already ``started`` when its submit handed it straight to an idle worker.
    Every 202 carries one, so it is one ``%`` format of a per-operation template rather than
    a dict built, formatted five times and encoded (a test holds the two to the same bytes).
    """
    at = rfc3339_ms(now_ms)
    if started:
        status, pos, st = "running", "null", f'"{at}"'
    else:
        status, pos, st = "queued", "null" if position is None else str(int(position)), "null"
    rid = request_id
    body = _accepted_template(op) % (rid, status, pos, int(priority), at, st, at,
                                     rid, rid, rid, rid)  # fmt: skip
    if retry_of:
        # Request ids are URL-safe characters: nothing to escape.
        body = body[:-1] + ',"retry_of":"' + retry_of + '"}'
    if client:  # an operator's retry of a request: whose it is, as its monitor says
        body = body[:-1] + ',"client":' + orjson.dumps(client).decode() + "}"
    return body.encode()


_ACCEPTED = (
    '{"id":"%s","operation":{op},"status":"%s","position":%s,"eta_seconds":null,'
    '"progress":null,"attempt":1,"lost":0,"priority":%d,"created_at":"%s","started_at":%s,'
    '"finished_at":null,"updated_at":"%s","expires_at":null,"cancel_requested":false,'
    '"error":null,"links":{links}}'
)


@functools.lru_cache(maxsize=256)
def _accepted_template(op: str) -> str:
    # Per operation: its name and its links (from ``links``, the id a placeholder in each of
    # its four) filled in. Operation names are [A-Za-z0-9_-]+ (config validation), so
    # neither brings a ``%`` of its own.
    links_json = orjson.dumps(links(op, "%s")).decode()
    assert links_json.count("%s") == 4
    return _ACCEPTED.replace("{op}", orjson.dumps(op).decode()).replace("{links}", links_json)


def render_snapshot(
    op: str, snap: Snapshot, now_ms: int, base: str | None = None
) -> dict[str, Any]:
    """The monitor for a status read (``base``: the service's absolute URL, see ``render``)."""
    eta = eta_seconds(
        snap.record, snap.position, snap.finished_recently, snap.run_ms_recently, now_ms
    )
    return render(op, snap.record, position=snap.position, eta=eta, base=base)
