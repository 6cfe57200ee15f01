"""Server-Sent Events (CONTRACT.md section 5): live, resumable status streams.

One Redis subscription per process (:class:`service.queue.events.EventHub`) feeds every stream
through a bounded buffer, and what a wake finds buffered goes out in one write. A per-request
stream that cannot keep up is disconnected and resumes with ``Last-Event-ID``; an all-requests
stream whose buffer fills drops it and sends what it missed from the client's kept events
(the same read a resume makes), without a disconnect: a reader that keeps up on average loses
nothing, and a stalled one holds at most a buffer (its writes time out after ``SEND_TIMEOUT``).
Positions are refreshed by one pipelined read per operation per second for all of the process's
queued streams, never per stream per queue move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from service.http import cursor, monitor
from service.http.auth import ANONYMOUS, client_of, listed_clients
from service.http.common import base_url, dumps, find_operation, not_found, requested
from service.http.errors import Problem
from service.queue import keys
from service.queue.events import RESYNC, Event
from service.queue.status import TERMINAL, Status
from service.queue.store import Queue
from service.queue.sweep import IndexSweeper
from service.queue.times import rfc3339
from service.runtime.tasks import stop
from service.state import hub_key, metrics_key, operations_key, queue_key, settings_key

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

RETRY_MS = 2000
BUFFER = 256  # a per-request stream's buffered events (a request has a few)
CLIENT_BUFFER = 1024  # an all-requests stream's, before it catches up from the kept events
BACKLOG_PAGE = 1000  # kept events read per Redis stream per read
SEND_TIMEOUT = 10.0  # seconds a write may wait for a client that does not read
PING_SECONDS = 15.0
POSITION_INTERVAL = 1.0
GLOBAL_FLAG_TTL = 300


@dataclass
class Position:
    """A position update computed by the ticker."""

    position: int
    eta: float | None


_CLOSE = object()
_BEHIND = object()  # an all-requests stream's buffer overflowed: catch up from Redis


class Stream:
    """One open stream: its bounded buffer and what the position ticker needs.

    A deque and one waiter rather than an ``asyncio.Queue``: thousands of these stay open,
    and each byte per stream counts.
    """

    __slots__ = (
        "_items", "_waiter", "catch_up", "client", "limit", "op", "overflowed", "position",
        "request_id",
    )  # fmt: skip

    def __init__(
        self, op: str, request_id: str | None, client: str = "", catch_up: bool = False
    ) -> None:
        self.op = op
        self.request_id = request_id
        self.client = client  # the request's: its member of the queue names it
        # All-requests streams: an overflow drops the buffer for one _BEHIND marker (the
        # stream then sends the missed events from Redis) rather than ending the stream.
        self.catch_up = catch_up
        self.limit = CLIENT_BUFFER if catch_up else BUFFER
        self.overflowed = False
        self.position: int | None = None
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Any) -> None:
        """Buffer an item; a full buffer closes the stream rather than growing."""
        if self.overflowed:
            return
        if len(self._items) >= self.limit:
            self._items.clear()
            if self.catch_up:
                # This event and the dropped ones are kept in Redis (published after they
                # were added there): the stream reads them back, from its cursor on.
                item = _BEHIND
            else:
                # Cut off at once (the client resumes with Last-Event-ID), not after draining.
                self.overflowed = True
                item = _CLOSE
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        """Ask the stream to end (shutdown)."""
        self.overflowed = True
        self._items.append(_CLOSE)
        self._wake()

    def pending(self) -> int:
        """Items waiting to be sent."""
        return len(self._items)

    async def get(self) -> Any:
        """The next item, waiting for one."""
        await self._filled()
        return self._items.popleft()

    async def take(self) -> list[Any]:
        """Every buffered item, waiting for one: what one write sends."""
        await self._filled()
        items = list(self._items)
        self._items.clear()
        return items

    async def _filled(self) -> None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Streams:
    """Every open stream of this process, and the position ticker."""

    def __init__(self) -> None:
        self.open: set[Stream] = set()
        self.queued: dict[str, set[Stream]] = {}
        self.by_client: dict[str, int] = {}

    def watch_position(self, stream: Stream) -> None:
        """Keep this queued stream's position fresh."""
        self.queued.setdefault(stream.op, set()).add(stream)

    def unwatch_position(self, stream: Stream) -> None:
        """Stop refreshing its position."""
        group = self.queued.get(stream.op)
        if group is not None:
            group.discard(stream)
            if not group:
                del self.queued[stream.op]


streams_key = web.AppKey("streams", Streams)


async def position_ticker(app: web.Application) -> None:
    """Once a second, one pipeline per operation reads every watched position.

    The same tick sweeps the queue timeouts (``Queue.expire_due``): a request whose
    Queue-Timeout passes in a queue no worker claims from still fails on time. Then it sweeps
    the listing indexes (:mod:`service.queue.sweep`): ids whose records expired leave them.
    """
    streams = app[streams_key]
    queue = app[queue_key]
    ops: list[str] = list(app[operations_key].keys())
    sweeper = index_sweeper(app)
    while True:  # errors are survived: stopped with service.runtime.tasks.stop
        await asyncio.sleep(POSITION_INTERVAL)
        await _sweep_queue_timeouts(queue, ops)
        for op in list(streams.queued):
            group = [s for s in streams.queued.get(op, ()) if s.request_id]
            if not group:
                continue
            try:
                ranks = await queue.ranks(
                    op, [(s.request_id, s.client) for s in group if s.request_id]
                )
                stats = await queue.stats(op)
            except Exception:
                log.warning("position refresh for %s failed", op)
                continue
            now = queue.now_ms()
            for stream, rank in zip(group, ranks, strict=True):
                if rank is None or rank == stream.position:
                    continue
                eta = monitor.eta_seconds(
                    {"status": "queued"}, rank, stats.finished_recently, stats.run_ms_recently, now
                )
                stream.offer(Position(rank, eta))
        await _sweep_indexes(sweeper)


def index_sweeper(app: web.Application) -> IndexSweeper:
    """The sweeper of every listing index: each operation shard's, of every client that can
    submit (the configured ones; the anonymous one in open mode)."""
    settings, queue, ops = app[settings_key], app[queue_key], app[operations_key]
    return IndexSweeper(
        queue,
        {name: op.settings.result_ttl for name, op in ops.items()},
        [c.name for c in settings.auth.clients] or [ANONYMOUS],
    )


async def _sweep_indexes(sweeper: IndexSweeper) -> None:
    try:
        await sweeper.sweep()
    except Exception as exc:  # Redis away: the next tick goes on from the same cursors
        log.debug("listing index sweep failed: %s", exc)


async def _sweep_queue_timeouts(queue: Queue, ops: list[str]) -> None:
    try:
        await queue.expire_due(ops)
    except Exception as exc:  # Redis away: the next tick (or a worker's claim) sweeps
        log.debug("queue timeout sweep failed: %s", exc)


_EVENT_ID = re.compile(r"(\d{1,18})(?:\.(\d{1,18}))?")


def parse_last_event_id(value: str | None) -> tuple[int, int] | None:
    """``"<seq>"`` or ``"<seq>.<k>"`` (position events) as a comparable pair; 400 otherwise."""
    if not value or not value.strip():
        return None
    match = _EVENT_ID.fullmatch(value.strip())
    if match is None:
        raise _bad_last_event_id('"<n>" or "<n>.<k>"')
    return int(match[1]), int(match[2] or 0)


def parse_last_cursor(value: str | None, stream_keys: list[str]) -> cursor.Cursor | None:
    """The all-requests stream's ``Last-Event-ID``: a plain ``"<ms>-<seq>"`` or a cursor
    (:mod:`service.http.cursor`); 400 otherwise.

    Checked before the stream starts: Redis refuses a malformed id only once the 200 is sent.
    """
    if not value or not value.strip():
        return None
    try:
        return cursor.parse(value, stream_keys)
    except cursor.BadCursor:
        raise _bad_last_event_id(
            '"<ms>-<seq>" or a "v1." cursor, as this stream sends them'
        ) from None


def _bad_last_event_id(form: str) -> Problem:
    return Problem(
        400,
        f"Last-Event-ID must be an event id of this stream: {form}",
        slug="invalid-header",
        header="Last-Event-ID",
    )


def _render_event(
    op: str, kind: str, rec: dict[str, Any], base: str | None = None, whose: str | None = None
) -> tuple[str, str]:
    """An event's SSE name and data; ``whose``: the request's client, said (an operator's)."""
    if kind == "progress":
        progress = orjson.loads(rec["progress"]) if rec.get("progress") else None
        data = {
            "id": rec["id"],
            "status": rec["status"],
            "progress": progress,
            "updated_at": rfc3339(rec.get("updated")),
        }
        if whose is not None:
            data["client"] = whose
        return "progress", dumps(data).decode()
    # A changed state carries no position: streams get it from the position ticker.
    body = monitor.render(op, rec, base=base)
    if whose is not None:
        body["client"] = whose
    return "status", dumps(body).decode()


async def _open(request: web.Request, stream: Stream) -> EventSourceResponse:
    streams = request.app[streams_key]
    limit = request.app[settings_key].server.max_streams_per_client
    client = client_of(request)
    if streams.by_client.get(client, 0) >= limit:
        raise Problem(
            429,
            f"at most {limit} open streams per client",
            slug="too-many-streams",
            headers={"Retry-After": "5"},
        )
    if len(streams.open) >= request.app[settings_key].server.max_streams:
        raise Problem(503, "this process has no room for another stream; retry shortly",
                      slug="too-many-streams", headers={"Retry-After": "2"})  # fmt: skip
    resp = EventSourceResponse(ping_interval=PING_SECONDS, send_timeout=SEND_TIMEOUT)
    await resp.prepare(request)
    await resp.write(f"retry: {RETRY_MS}\n\n".encode())
    streams.open.add(stream)
    streams.by_client[client] = streams.by_client.get(client, 0) + 1
    request.app[metrics_key].sse_connections.inc()
    return resp


def _release(request: web.Request, stream: Stream) -> None:
    streams = request.app[streams_key]
    if stream in streams.open:
        streams.open.discard(stream)
        client = client_of(request)
        streams.by_client[client] -= 1
        if streams.by_client[client] <= 0:
            del streams.by_client[client]
        request.app[metrics_key].sse_connections.dec()
    streams.unwatch_position(stream)


@routes.get("/v1/queue/requests/{request_id}/events")
async def request_events(request: web.Request) -> web.StreamResponse:
    """One request's events: current state first, then changes; ends after the terminal one."""
    app = request.app
    op, rid = requested(request)
    last = parse_last_event_id(
        request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    )
    stream = Stream(op.name, rid, client_of(request))
    remove = app[hub_key].watch_request(rid, stream.offer)
    resp: EventSourceResponse | None = None
    try:
        snap = await app[queue_key].read(op.name, rid, watch_client=client_of(request))
        if snap is None or snap.record.get("client") != client_of(request):
            raise not_found(rid)
        seq = int(snap.record.get("evseq") or 0)
        status = snap.record["status"]
        if last is not None and status in TERMINAL and last[0] >= seq:
            return web.Response(status=204)
        resp = await _open(request, stream)
        base = base_url(request)
        sent = await _catch_up(resp, op.name, snap, last, app[queue_key].now_ms(), base)
        if status in TERMINAL:
            return resp
        if status == Status.QUEUED:
            stream.position = snap.position
            app[streams_key].watch_position(stream)
        await _follow(request, resp, stream, sent)
        return resp
    except ConnectionResetError:
        if resp is None:
            raise
        return resp  # the client went away mid-stream: nothing to answer
    finally:
        remove()
        _release(request, stream)
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.stop_streaming()


async def _catch_up(
    resp: EventSourceResponse,
    op: str,
    snap: Any,
    last: tuple[int, int] | None,
    now: int,
    base: str,
) -> int:
    """Send exactly the missed events when they are kept, else the current state."""
    seq = int(snap.record.get("evseq") or 0)
    if last is not None and last[0] < seq:
        kept = [orjson.loads(e) for e in snap.kept_events]
        missed = [e for e in kept if int(e["rec"]["evseq"]) > last[0]]
        if missed and int(missed[0]["rec"]["evseq"]) == last[0] + 1:
            for e in missed:
                n = int(e["rec"]["evseq"])
                if n > seq:
                    break
                event, data = _render_event(op, e["kind"], e["rec"], base)
                if n == seq and event == "status":
                    data = dumps(monitor.render_snapshot(op, snap, now, base)).decode()
                await resp.send(data, id=str(n), event=event)
            return seq
    if last is not None and last[0] >= seq:
        return seq  # nothing new since the client's last event
    body = monitor.render_snapshot(op, snap, now, base)
    await resp.send(dumps(body).decode(), id=str(seq), event="status")
    return seq


async def _follow(
    request: web.Request, resp: EventSourceResponse, stream: Stream, sent: int
) -> None:
    """Send live events until the terminal one, an overflow, or shutdown."""
    streams = request.app[streams_key]
    base = base_url(request)
    k = 0
    while True:
        item = await stream.get()
        if item is _CLOSE:
            return
        if isinstance(item, Position):
            stream.position = item.position
            k += 1
            pos = {"id": stream.request_id, "position": item.position, "eta_seconds": item.eta}
            await resp.send(dumps(pos).decode(), id=f"{sent}.{k}", event="position")
            continue
        event: Event = item
        if event.kind == RESYNC:
            return  # events may have been missed: the client resumes with Last-Event-ID
        if event.seq <= sent:
            continue
        sent, k = event.seq, 0
        status = event.record["status"]
        name, data = _render_event(stream.op, event.kind, event.record, base)
        if name == "status" and status == Status.QUEUED:
            # Requeued (lease expiry or retry): its position comes from the ticker.
            stream.position = None
            streams.watch_position(stream)
        elif status != Status.QUEUED:
            streams.unwatch_position(stream)
        await resp.send(data, id=str(sent), event=name)
        if status in TERMINAL and event.kind == "status":
            return


@routes.get("/v1/queue/events")
async def client_events(request: web.Request) -> web.StreamResponse:
    """Every event of the caller's requests (optionally one operation's), resumable.

    An operator may follow one client's (``?client=NAME``) or every client's (``?client=*``);
    each event then says whose (``client``). The events come from several Redis streams (per
    operation, shard and client): each event's id is a cursor (:mod:`service.http.cursor`)
    naming the last event sent of each, so a resume sends exactly the events missed.
    """
    app = request.app
    operations = app[operations_key]
    ops = list(operations)
    if request.query.get("operation"):
        ops = [find_operation(request, request.query["operation"]).name]
    clients = listed_clients(request)
    whose = request.query.get("client") not in (None, "", client_of(request))
    queue = app[queue_key]
    # The streams merged, in a fixed order: a cursor's entries are indexes into it.
    streams = [
        (op, tag, client) for client in sorted(clients) for op in ops for tag in queue.tags(op)
    ]
    index = {(tag, client): i for i, (_, tag, client) in enumerate(streams)}
    stream_keys = [keys.cev(tag, client) for _, tag, client in streams]
    resumed = parse_last_cursor(
        request.headers.get("Last-Event-ID") or request.query.get("last_event_id"), stream_keys
    )
    stream = Stream(ops[0], None, catch_up=True)
    keep_ms = app[settings_key].server.stream_events_seconds * 1000
    wanted = set(ops)

    def offer(event: Event) -> None:
        if event.op in wanted:
            stream.offer(event)

    removers = [app[hub_key].watch_client(client, offer) for client in clients]
    resp: EventSourceResponse | None = None
    refresher: asyncio.Task[None] | None = None
    try:
        # Listening already: what is kept from here on also arrives live.
        now, lasts = await queue.follow([(t, c) for _, t, c in streams], GLOBAL_FLAG_TTL, keep_ms)
        at = resumed if resumed is not None else cursor.fresh(stream_keys, now, lasts)
        resp = opened = await _open(request, stream)
        refresher = asyncio.create_task(_refresh_flags(queue, ops, clients, keep_ms))
        base = base_url(request)

        async def backlog() -> None:
            await _send_backlog(request, opened, queue, streams, at, base, whose)

        if resumed is not None:
            await backlog()
        await _follow_client(
            request, resp, stream, index, at, resumed is not None, backlog, base, whose
        )
        return resp
    except ConnectionResetError:
        if resp is None:
            raise
        return resp  # the client went away mid-stream: nothing to answer
    finally:
        for remove in removers:
            remove()
        if refresher is not None:
            await stop(refresher)
        _release(request, stream)
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.stop_streaming()


def _frame(data: str, event: str, event_id: str | None = None) -> str:
    """One event as SSE text, as ``EventSourceResponse.send`` writes it (``data`` is one line:
    JSON from orjson never holds a line break)."""
    if event_id is None:
        return f"event: {event}\r\ndata: {data}\r\n\r\n"
    return f"id: {event_id}\r\nevent: {event}\r\ndata: {data}\r\n\r\n"


async def _write(request: web.Request, resp: EventSourceResponse, frames: list[str]) -> None:
    """Many events in one write (one send's cost, not one per event); a client that reads
    nothing for ``SEND_TIMEOUT`` s is cut off, as ``EventSourceResponse.send`` does."""
    if not frames:
        return
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            await resp.write("".join(frames).encode())
    except ConnectionResetError:
        resp.stop_streaming()
        raise
    except TimeoutError:
        resp.stop_streaming()
        if request.transport is not None:
            request.transport.abort()  # a stalled peer never drains: no graceful close
        raise ConnectionResetError("the client stopped reading") from None


async def _send_backlog(
    request: web.Request,
    resp: EventSourceResponse,
    queue: Queue,
    streams: list[tuple[str, str, str]],
    at: cursor.Cursor,
    base: str,
    whose: bool = False,
) -> None:
    """Send the kept events after the cursor's position in each stream (a reset first when
    some are gone), in time order, a page at a time (one write each); the cursor advances
    past each."""
    while True:
        rows, complete = await queue.client_events(
            [(tag, client, at.position(i)) for i, (_, tag, client) in enumerate(streams)],
            limit=BACKLOG_PAGE,
        )
        frames = []
        if not complete:
            frames.append(_frame(dumps({"reason": "events were missed"}).decode(), "reset"))
        read = [0] * len(streams)
        for i, pos, gid, raw in rows:
            read[i] += 1
            op, _, client = streams[i]
            e = orjson.loads(raw)
            name, data = _render_event(op, e["kind"], e["rec"], base, client if whose else None)
            at.advance(i, pos)
            frames.append(_frame(data, name, at.text(gid)))
        await _write(request, resp, frames)
        if max(read, default=0) < BACKLOG_PAGE:
            return  # every stream read to its end


async def _follow_client(
    request: web.Request,
    resp: EventSourceResponse,
    stream: Stream,
    index: dict[tuple[str, str], int],
    at: cursor.Cursor,
    resumed: bool,
    backlog: Callable[[], Awaitable[None]],
    base: str,
    whose: bool = False,
) -> None:
    """Send live events until shutdown or a RESYNC; what one wake finds buffered goes out in
    one write. After an overflow (``_BEHIND``), ``backlog`` sends what was missed from the
    kept events and the stream goes on as a resumed one.

    On a resume, an event at or below the cursor's position in its stream was sent already
    (before the resume, or by the backlog): it is skipped. Events of one stream arrive in
    order; those of different streams carry unrelated ids, so each is compared with its own.
    """
    while True:
        frames: list[str] = []
        for item in await stream.take():
            if item is _CLOSE:
                await _write(request, resp, frames)
                return
            if item is _BEHIND:
                await _write(request, resp, frames)
                frames = []
                await backlog()
                resumed = True
                continue
            ev: Event = item
            if ev.kind == RESYNC:
                await _write(request, resp, frames)
                return  # the client resumes with Last-Event-ID
            i = index.get((ev.tag, ev.client))
            pos = _parse_stream_id(ev.stream_id)
            event_id: str | None = None
            if i is not None and pos is not None:
                if pos <= at.position(i):
                    if resumed:
                        continue
                    # Kept before this stream opened, published after it listened: new to
                    # the client, and already below the position a resume starts from.
                else:
                    at.advance(i, pos)
                event_id = at.text(ev.stream_id)
            name, data = _render_event(
                ev.op, ev.kind, ev.record, base, ev.client if whose else None
            )
            frames.append(_frame(data, name, event_id))
        await _write(request, resp, frames)


async def _refresh_flags(queue: Any, ops: list[str], clients: list[str], keep_ms: int) -> None:
    while True:
        await asyncio.sleep(GLOBAL_FLAG_TTL / 5)
        with contextlib.suppress(Exception):
            for client in clients:
                await queue.flag_client_stream(ops, client, GLOBAL_FLAG_TTL, keep_ms)


def _parse_stream_id(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    ms, _, seq = value.strip().partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return None


async def streams_ctx(app: web.Application) -> AsyncIterator[None]:
    """The registry of open streams and the position ticker."""
    streams = Streams()
    app[streams_key] = streams
    ticker = asyncio.create_task(position_ticker(app), name="position-ticker")
    yield
    await stop(ticker)


async def close_streams(app: web.Application) -> None:
    """On shutdown: end every stream so clients reconnect to another process."""
    for stream in list(app[streams_key].open):
        stream.close()
