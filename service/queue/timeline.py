"""A request's event timeline, for the console's request page: its stored events, where any
remain, else (and for what they miss) the milestones its record keeps.

Events are stored only where a stream asked for them (``lua/includes/emit.lua``): a request's
own ``ev:<id>`` list (its last 64, once any per-request stream was opened on it) and its
client's ``cev:<client>`` stream (the client's events of that operation shard while it has an
all-requests stream open, about the last 1,000). Reading them is one round trip of bounded
reads on the request's own shard: the list, and the stream's entries between the request's
creation and its end (:data:`SKEW_MS` either side, at most :data:`MAX_SCANNED`), kept when they
name the request. Nothing is written, and no submit, claim or finish does any work for this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.queue import keys
from service.queue.status import TERMINAL, Status
from service.runtime.redis import Client

# Stream ids are the Redis server's clock, records' times the clock of the process that
# wrote them: the window is widened by this much either side.
SKEW_MS = 60_000
# At most this many entries of the client's stream are looked at (its own cap is ~1,000).
MAX_SCANNED = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """One point of a request's life: what happened and when."""

    at_ms: int
    event: str  # created, started, progress, requeued, cancel_requested, or a final status
    status: str  # the request's status after it
    attempt: int
    source: str  # "events": a stored event; "monitor": the record's timestamps
    seq: int | None = None  # a stored event's number (the per-request stream's event id)
    progress: Any = None
    error: Any = None  # a final failed or canceled entry: the problem's type and title


async def stored(
    redis: Client, tag: str, record: dict[str, Any], now_ms: int
) -> list[tuple[str, dict[str, Any]]]:
    """The request's stored events, ``(kind, record snapshot)`` by event number, each once."""
    rid, client = str(record["id"]), str(record.get("client") or "")
    since = max(0, int(record.get("created") or now_ms) - SKEW_MS)
    until = f"{int(record['finished']) + SKEW_MS}" if record.get("finished") else "+"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(keys.ev(tag, rid), 0, -1)
        pipe.xrange(keys.cev(tag, client), min=str(since), max=until, count=MAX_SCANNED)
        kept, entries = await pipe.execute()
    needle = rid.encode()
    bodies = list(kept) + [f[b"e"] for _, f in entries if needle in f.get(b"e", b"")]
    by_seq: dict[int, tuple[str, dict[str, Any]]] = {}
    for body in bodies:
        event = orjson.loads(body)
        rec = event.get("rec") or {}
        if rec.get("id") != rid:
            continue
        by_seq[int(rec.get("evseq") or 0)] = (str(event.get("kind")), rec)
    return [by_seq[n] for n in sorted(by_seq)]


def _error(rec: dict[str, Any]) -> Any:
    raw = rec.get("error")
    if not raw or rec.get("status") not in (Status.FAILED, Status.CANCELED):
        return None
    problem = orjson.loads(raw)
    return {"type": problem.get("type"), "title": problem.get("title")}


def _progress(rec: dict[str, Any]) -> Any:
    raw = rec.get("progress")
    return orjson.loads(raw) if raw else None


def _names(kind: str, rec: dict[str, Any], before: str | None) -> list[str]:
    # What one stored event was, from the status before it.
    status = rec.get("status")
    if kind == "progress":
        return ["progress"]
    if rec.get("evseq") == "1":
        # The submit's event: created, and already running when handed to an idle worker.
        return ["created", "started"] if status == Status.RUNNING else ["created"]
    if status == Status.QUEUED:
        return ["requeued"]
    if status == Status.RUNNING:
        # A second running event without a start in between is a cancel asked for.
        # (Times are strings, or numbers where a script set them as such.)
        started_now = str(rec.get("started")) == str(rec.get("updated"))
        again = before == Status.RUNNING or (before is None and not started_now)
        return ["cancel_requested" if again and rec.get("cancel") == "1" else "started"]
    return [str(status)]


def from_events(events: Sequence[tuple[str, dict[str, Any]]]) -> list[Entry]:
    """Entries from stored events, in order: each says what changed, from the one before."""
    out: list[Entry] = []
    before: str | None = None
    for kind, rec in events:
        seq, status = int(rec.get("evseq") or 0), str(rec.get("status"))
        attempt = int(rec.get("attempt") or 1)
        at = int(rec.get("updated") or rec.get("created") or 0)
        for name in _names(kind, rec, before):
            when = int(rec.get("created") or at) if name == "created" else at
            out.append(
                Entry(when, name, status, attempt, "events", seq, _progress(rec), _error(rec))
            )
        before = status
    return out


def build(record: dict[str, Any], events: Sequence[tuple[str, dict[str, Any]]]) -> list[Entry]:
    """The timeline: the stored events' entries, and the record's milestones they miss.

    A milestone (created, first started, the progress last reported, finished) comes from the
    record when no stored event covers it: events before the first stream were never kept,
    and a client's stream keeps its events only while it is open and 5 minutes after.
    """
    entries = from_events(events)
    status, attempt = str(record.get("status")), int(record.get("attempt") or 1)
    first = entries[0].at_ms if entries else None
    last = entries[-1].at_ms if entries else None
    kinds = {e.event for e in entries}

    def milestone(event: str, at: Any, **more: Any) -> Entry | None:
        if not at:
            return None
        return Entry(int(at), event, status, attempt, "monitor", **more)

    extra: list[Entry | None] = []
    if "created" not in kinds:
        extra.append(milestone("created", record.get("created")))
    started = record.get("started")
    if started and (first is None or int(started) < first):
        extra.append(milestone("started", started))
    progress = _progress(record)
    updated = record.get("updated")
    if status == Status.RUNNING and progress and updated and (last is None or int(updated) > last):
        extra.append(milestone("progress", updated, progress=progress))
    if status in TERMINAL and not kinds & set(TERMINAL):
        extra.append(milestone(status, record.get("finished"), error=_error(record)))
    # Stable: entries at the same millisecond keep their order (stored ones by number).
    return sorted([*entries, *(e for e in extra if e is not None)], key=lambda e: e.at_ms)
