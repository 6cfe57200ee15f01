"""The event hub: one Redis subscription per process, fanned out to in-process listeners.

It subscribes to ``acceptd:{op}:watched``, which carries only the events of requests that a
caller waits for or streams. Messages read ``<request id> <client> <stream id> <json>`` (the
stream id is the event's entry in the client's ``cev`` stream, ``-`` when none is kept), so the
hub routes them by id or client without parsing JSON nobody listens to.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from service.queue import keys
from service.runtime.cluster import resubscribe_pause, subscribe
from service.runtime.outage import Outage
from service.runtime.redis import Client
from service.runtime.tasks import stop

log = logging.getLogger(__name__)


class Event(NamedTuple):
    """One state change of one request (a tuple: made for every routed message, cheaply)."""

    op: str
    request_id: str
    client: str
    kind: str
    record: dict[str, Any]
    stream_id: str = ""
    result: str | None = None
    tag: str = ""  # the hash tag of its operation's shard (the op itself when unsharded)

    @property
    def seq(self) -> int:
        """The event's number, increasing per request."""
        return int(self.record.get("evseq") or 0)


Listener = Callable[[Event], None]

RESYNC = "resync"


class EventHub:
    """Subscribes once to every operation's events channel and calls listeners."""

    _lost = False
    _backoff = 0.1

    def __init__(
        self,
        redis: Client,
        operations: Iterable[str],
        shards: Mapping[str, int] | None = None,
    ) -> None:
        self.redis = redis
        # A sharded operation publishes on each shard's channel (service.queue.keys).
        self._channels = {
            keys.watched_channel(tag).encode(): (op, tag)
            for op in operations
            for tag in keys.shard_tags(op, (shards or {}).get(op, 1))
        }
        self._by_request: dict[str, set[Listener]] = defaultdict(set)
        self._by_client: dict[str, set[Listener]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._outage = Outage("event subscription")

    async def start(self) -> None:
        """Subscribe; returns once the subscription is live."""
        self._task = asyncio.create_task(self._run(), name="event-hub")
        await asyncio.wait_for(self.connected.wait(), timeout=10)

    async def stop(self) -> None:
        """Unsubscribe and wait for the reader to end."""
        if self._task is not None:
            await stop(self._task)
            self._task = None

    def watch_request(self, request_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on each event of a request; returns the unsubscribe function."""
        self._by_request[request_id].add(listener)

        def remove() -> None:
            listeners = self._by_request.get(request_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._by_request[request_id]

        return remove

    def watch_client(self, client: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on each event of a client's requests."""
        self._by_client[client].add(listener)

        def remove() -> None:
            listeners = self._by_client.get(client)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._by_client[client]

        return remove

    def dispatch(self, channel: bytes, data: bytes) -> None:
        """Route one raw message to its listeners."""
        try:
            rid_b, client_b, gid_b, payload = data.split(b" ", 3)
        except ValueError:
            return
        op, tag = self._channels.get(channel, ("", ""))
        rid, client = rid_b.decode(), client_b.decode()
        by_req = self._by_request.get(rid)
        by_client = self._by_client.get(client)
        if not by_req and not by_client:
            return
        body = orjson.loads(payload)
        gid = "" if gid_b == b"-" else gid_b.decode()
        event = Event(op, rid, client, body["kind"], body["rec"], gid, body.get("res"), tag)
        for listener in [*(by_req or ()), *(by_client or ())]:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    def _resync(self) -> None:
        # Events published while the subscription was down are gone: every listener is told
        # (kind "resync") to recover from stored state — streams end so their clients resume
        # with Last-Event-ID, waiters read the request again.
        listeners = [
            (rid, listener) for rid, group in self._by_request.items() for listener in group
        ] + [(client, listener) for client, group in self._by_client.items() for listener in group]
        for name, listener in listeners:
            try:
                listener(Event("", name, name, RESYNC, {}))
            except Exception:
                log.exception("event listener failed on resync")

    async def _run(self) -> None:
        self._backoff = 0.1
        while True:
            # Connections of its own, read directly: redis-py's PubSub wraps every message
            # in health checks, retries and a dict, the largest cost of a waited request's
            # event here. What this needs of it is one SUBSCRIBE and a stream of pushes (on a
            # cluster, SSUBSCRIBE on each node owning some channels: service.runtime.cluster).
            try:
                await subscribe(self.redis, list(self._channels), self.dispatch, self._live)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                self._lost = True
                self._outage.failed(exc)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)
                # A cluster's slots may have moved (failover, resharding): subscribe where
                # they are now.
                await resubscribe_pause(self.redis)

    def _live(self) -> None:
        if self._lost:
            self._resync()
        self.connected.set()
        self._outage.succeeded()
        self._lost = False
        self._backoff = 0.1
