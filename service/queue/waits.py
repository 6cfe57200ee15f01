"""A synchronous caller's wait for one request to finish, fed by the event hub.

The wait watches from the moment it is made, so it is made before the request is submitted:
a request that finishes at once is not missed. A terminal event that carries the outcome is
answered from the event alone; Redis is read only when it does not, after a RESYNC (events may
have been lost), first for a replayed request, and at the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.queue.events import RESYNC, Event, EventHub
from service.queue.status import TERMINAL, Status
from service.queue.store import Snapshot

Reread = Callable[[], Awaitable[Snapshot]]


class TerminalWait:
    """Watches one request for its terminal event (or a RESYNC) until :meth:`close`."""

    __slots__ = ("_done", "_hub", "_listener", "_loop", "_stop")

    def __init__(self, hub: EventHub, request_id: str) -> None:
        self._hub = hub
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[Event | None] = self._loop.create_future()
        self._listener = self._on_event
        self._stop = hub.watch_request(request_id, self._listener)

    def follow(self, request_id: str) -> None:
        """Watch another request instead: a replayed idempotent submit names the first one."""
        self._stop()
        self._stop = self._hub.watch_request(request_id, self._listener)

    def close(self) -> None:
        """Stop watching."""
        self._stop()

    async def until_terminal(
        self, timeout: float, reread: Reread, *, read_first: bool = False
    ) -> Snapshot:
        """The request once terminal, else as read when ``timeout`` seconds have passed.

        ``reread`` reads the request from Redis; ``read_first`` reads it before waiting (a
        replayed request may have finished long ago).
        """
        loop = self._loop
        deadline = loop.time() + timeout
        if read_first:
            snap = await reread()
            if snap.record["status"] in TERMINAL:
                return snap
        while True:
            # The future itself is awaited, here, with one timer for the deadline: no
            # wait_for and shield, nor a coroutine of its own (more futures, frames and loop
            # steps between the event and the answer). A cancelled wait cancels the future,
            # which no one else awaits.
            done = self._done
            if not done.done():
                timer = loop.call_at(deadline, _expire, done)
                try:
                    await done
                finally:
                    timer.cancel()
            event = done.result()
            if event is None:
                return await reread()
            if event.kind != RESYNC:
                return _from_event(event) or await reread()
            # The subscription was restored after an outage: what happened meanwhile is read,
            # and the wait goes on for the rest of the time. Armed again before reading, so a
            # finish in between is not missed.
            self._done = loop.create_future()
            snap = await reread()
            if snap.record["status"] in TERMINAL or loop.time() >= deadline:
                return snap

    def _on_event(self, event: Event) -> None:
        if self._done.done():
            return
        if event.kind == RESYNC or event.record.get("status") in TERMINAL:
            self._done.set_result(event)


def _expire(done: asyncio.Future[Event | None]) -> None:
    if not done.done():
        done.set_result(None)


def _from_event(event: Event) -> Snapshot | None:
    """The outcome a terminal event carries, when it is complete (no read needed)."""
    if event.record.get("status") == Status.SUCCEEDED and event.result is None:
        return None  # too large to ride along: read it
    return Snapshot(event.record, None, 0, 0, event.result)
