"""The webhook dispatcher: turns outbox events into deliveries and sends them.

Two loops share one process. Fan-out reads every operation's outbox stream through a consumer
group (as many entries as it has free send slots), creates the deliveries of each batch in one
script (idempotently, so a crash before the ack repeats nothing), which also leases the new
deliveries to this process so they are sent at once, and only then acknowledges and deletes
the entries. The claim loop leases what else is due (retries, redeliveries, deliveries queued
while every slot was busy). Sends go through one shared session whose resolver refuses
internal addresses, and each attempt is recorded in one script. Leases expire, so deliveries
of a dispatcher that dies mid-send are sent again by another (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from yarl import URL

from service.runtime.outage import Outage
from service.runtime.redis import (
    SOCKET_TIMEOUT,
    Client,
    RawConnection,
    decodes_responses,
    dedicated_for,
    sharing_pool,
    stale,
)
from webhooks import events, keys, signing
from webhooks.errors import TargetRefused
from webhooks.fanout import FanoutItem, LeaseTerms
from webhooks.models import Claimed, SendTarget
from webhooks.policy import Decision, decide
from webhooks.ssrf import SafeResolver, check_url_static
from webhooks.store import WebhookStore

log = logging.getLogger("acceptd.webhooks")

GROUP = "acceptd-webhooks"
EXCERPT_BYTES = 1024
READ_COUNT = 100
OWN_PENDING_EVERY = 2.0  # seconds between looks at this consumer's own unacknowledged entries
CLAIM_BATCH_DELAY = 0.005
GONE = "gone"  # the endpoint version of a deleted endpoint
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding")


class DispatchSettings(Protocol):
    """What the dispatcher reads from ``WebhookSettings``."""

    @property
    def allow_networks(self) -> list[str]: ...
    @property
    def retry_schedule(self) -> list[float]: ...
    @property
    def jitter(self) -> float: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def disable_after_days(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def per_endpoint_concurrency(self) -> int: ...
    @property
    def partitions(self) -> int | None: ...


class Dispatcher:
    """Fans out outbox events to deliveries and sends them; ``run()`` until cancelled."""

    def __init__(
        self,
        redis: Client,
        settings: DispatchSettings,
        operations: Sequence[str],
        render: events.Render,
        *,
        clock: Callable[[], float] = time.time,
        store: WebhookStore | None = None,
        on_attempt: Callable[[str], None] | None = None,
        lease_seconds: float | None = None,
        claim_idle_seconds: float | None = None,
        block_seconds: float = 2.0,
        busy_delay: float = 0.25,
        shards: Mapping[str, int] | None = None,
    ) -> None:
        if decodes_responses(redis):
            # Outbox entries are read as bytes; a decoding client would make every one look
            # malformed.
            raise ValueError("the dispatcher needs a Redis client with decode_responses off")
        self.redis = redis
        # The same connections, but XREADGROUP replies come back as Redis sent them: redis-py's
        # parsing of stream entries into dicts cost more per entry than everything we do next.
        # On a cluster (no shared pool, and one XREADGROUP may only name streams of one slot):
        # each outbox is read on a connection of its own to the node that owns it.
        self._reader: Redis | None = None
        if isinstance(redis, Redis):
            self._reader = sharing_pool(redis)
            self._reader.set_response_callback("XREADGROUP", _as_sent)
        self._stream_conns: dict[str, RawConnection] = {}
        self.settings = settings
        self.operations = list(operations)
        # Each outbox by its shard's tag (an unsharded operation's is its name), and the
        # operation it belongs to.
        self._sources = {
            tag: op for op in operations for tag in keys.shard_tags(op, (shards or {}).get(op, 1))
        }
        self.render = render
        self.clock = clock
        self.store = store or WebhookStore(
            redis, operations, clock, shards=shards, partitions=settings.partitions
        )
        self.on_attempt = on_attempt
        # A send never outlives its timeout, so a lease a bit longer is never cut short; the
        # margin covers signing, recording the attempt and clock differences between hosts.
        self.lease_seconds = lease_seconds or settings.timeout_seconds * 1.5 + 2.0
        # Outbox entries a dispatcher read and never acknowledged (it died between the read and
        # the fan-out script) are taken over after the same lease: a live dispatcher holds an
        # entry only for one script call, and taking one over repeats nothing (the fan-out is
        # idempotent), so what a dead dispatcher read goes out as soon as what it was sending.
        self.claim_idle_seconds = claim_idle_seconds or self.lease_seconds
        # Blocking reads must end well within the client's socket timeout (redis-py: 5 s).
        self.block_seconds = min(block_seconds, 4.0)
        self.busy_delay = busy_delay
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._claims = 0
        self._session: aiohttp.ClientSession | None = None
        self._resolver: SafeResolver | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._allow = tuple(settings.allow_networks)
        self._reserved = 0  # slots promised to a fan-out or claim in flight
        self._wake = asyncio.Event()  # the claim loop has something to look at
        self._freed = asyncio.Event()  # a send slot was freed
        self._claim_wanted = True  # more may be due than the last claim took
        self._next_due: float | None = None
        self._last_claim = 0.0
        self._groups_ready = False
        self._next_reclaim = 0.0
        # Entries this consumer read but never acknowledged (see _reread_own).
        # When each group of outboxes (all of them; one per reader on a cluster) is next looked at.
        self._next_own_pending: dict[tuple[str, ...], float] = {}
        # Per (endpoint, version): every change, rotation, disabling or deletion makes a new
        # version, so entries never go stale; futures, so a burst fetches each once.
        self._targets: dict[tuple[str, str], asyncio.Future[SendTarget | None]] = {}
        self._default_secrets: dict[str, str] = {}
        self._outage = Outage("dispatcher")
        self._draining = False

    @property
    def sending(self) -> int:
        """Deliveries being sent now."""
        return len(self._sending)

    # Lifecycle

    async def run(self) -> None:
        """Fan out and send until cancelled; in-flight sends are cut off and their leases expire."""
        self._open_session()
        try:
            await self.store.drop_other_releases()  # once, as it starts
            async with asyncio.TaskGroup() as tg:
                if self._reader is not None:
                    tg.create_task(self._forever("fan-out", self._fanout_step))
                else:  # a cluster: one reader per outbox stream, each on its own node
                    for tag in self._sources:
                        step = functools.partial(self._fanout_step, [tag])
                        tg.create_task(self._forever(f"fan-out {tag}", step))
                if self._reader is not None:
                    tg.create_task(self._forever("wake", self._wake_step))
                else:  # a cluster: one blocking pop names one slot's keys, so one per partition
                    for part in self.store.layout.parts:
                        step = functools.partial(self._wake_step, [part])
                        tg.create_task(self._forever(f"wake {part.tag}", step))
                tg.create_task(self._forever("send", self._send_step))
        finally:
            for task in list(self._sending):
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            await self.aclose()

    async def drain(self, grace: float) -> None:
        """Stop claiming and let sends in flight finish for up to ``grace`` seconds.

        Cancel ``run()`` afterwards; whatever is still in flight then is resent once its
        lease expires.
        """
        self._draining = True
        self._wake.set()
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=grace)

    async def aclose(self) -> None:
        """Close the HTTP session (``run()`` does this itself on the way out)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
        conns, self._stream_conns = self._stream_conns, {}
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.close()

    async def drain_once(self, max_rounds: int = 100) -> int:
        """One burst for tests: fan out every waiting entry, then attempt all that is due now."""
        await self._ensure_groups()
        await self._reclaim()
        await self._reread_own(lease=False)
        while await self.fanout_once():
            pass
        self._open_session()
        made = 0
        for _ in range(max_rounds):
            items, _soonest = await self._claim(self.settings.concurrency)
            if not items:
                break
            await asyncio.gather(*(self._attempt(item) for item in items))
            made += len(items)
        return made

    async def _forever(self, name: str, step: Callable[[], Any]) -> None:
        task = asyncio.current_task()
        while True:
            # Some awaits (3.11's wait_for, client libraries) can swallow a cancellation that
            # races with their result; the pending request still shows here, so honour it.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                await step()
                self._outage.succeeded()
            except Exception as exc:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # a client turned it into an error
                # Redis restarting or unreachable (or a bug): keep the loop alive and retry.
                self._groups_ready = False
                self._claim_wanted = True
                # A fan-out cut off by the error leaves what it read in this consumer's
                # pending list: read it again as soon as Redis answers (see _reread_own).
                self._next_own_pending.clear()
                if isinstance(exc, RedisError | OSError):
                    self._outage.failed(exc)  # one line per outage, not one per retry
                else:
                    log.exception("webhook %s loop failed; retrying in 1 s", name)
                await asyncio.sleep(1.0)

    # Fan-out

    async def _ensure_groups(self) -> None:
        if self._groups_ready:
            return
        for tag in self._sources:
            try:
                # From id 0: entries written while no dispatcher ever ran are delivered too.
                await self.redis.xgroup_create(keys.outbox(tag), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        # Operations added to the config since a client subscribed start reporting too.
        await self.store.rehook()
        await self.store.upgrade()
        self._groups_ready = True

    async def _fanout_step(self, ops: Sequence[str] | None = None) -> None:
        await self._ensure_groups()
        if time.monotonic() >= self._next_reclaim:
            await self._reclaim()
            self._next_reclaim = time.monotonic() + self.claim_idle_seconds / 2
        if self._draining:
            await asyncio.sleep(self.block_seconds)
            return
        group, now = tuple(self.operations if ops is None else ops), time.monotonic()
        if now >= self._next_own_pending.get(group, 0.0):
            # An error while re-reading clears the timers: it is tried again at once.
            self._next_own_pending[group] = now + OWN_PENDING_EVERY
            await self._reread_own(group)
        # Read only what can be sent now: the rest waits in the outbox (durable, and there
        # for other dispatchers), not in the due set where it would need a claim later.
        if not await self._slots_free():
            return
        await self.fanout_once(block_ms=int(self.block_seconds * 1000), lease=True, ops=ops)

    async def _slots_free(self) -> bool:
        # Waits for a free send slot (at most block_seconds). No batching delay here, unlike
        # claims: the outbox read and fan-out run while earlier sends are still in flight,
        # and waiting for more free slots measured no cheaper per delivery.
        if self._free() <= 0:
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.block_seconds):
                    await self._freed.wait()
        return self._free() > 0

    async def _reclaim(self) -> None:
        """Take over entries another (dead) dispatcher read but never acknowledged."""
        idle_ms = int(self.claim_idle_seconds * 1000)
        for tag in self._sources:
            stream = keys.outbox(tag)
            start: Any = "0-0"
            while True:
                res = await self.redis.xautoclaim(
                    stream, GROUP, self.consumer, idle_ms, start_id=start, count=READ_COUNT
                )
                start, entries = res[0], res[1]
                await self._handle_batch(tag, [(_s(e), f) for e, f in entries if f])
                gone = res[2] if len(res) > 2 else []
                if gone:
                    await self.redis.xack(stream, GROUP, *gone)
                if _s(start) == "0-0":
                    break

    async def _reread_own(self, ops: Sequence[str] | None = None, *, lease: bool = True) -> int:
        """Fan out the entries this consumer read but never acknowledged; how many.

        Nothing of this process's fan-out is in flight when it runs, so every such entry is
        one whose fan-out an outage cut off after the read: the fan-out failed, or the read's
        reply was lost (redis-py then retried the read, which returned the next entries).
        Left alone, only ``_reclaim`` would take them, ``claim_idle_seconds`` later. Their
        fan-out is idempotent (derived delivery ids), so reading them again duplicates
        nothing. Looked at after every error and every ``OWN_PENDING_EVERY`` seconds (one
        read, empty almost always).
        """
        by_stream = {keys.outbox(op): op for op in (self.operations if ops is None else ops)}
        streams: dict[Any, Any] = {stream: "0" for stream in by_stream}
        handled = 0
        while streams:
            res: Any
            if self._reader is not None:
                res = await self._reader.xreadgroup(GROUP, self.consumer, streams, count=READ_COUNT)
            else:  # a cluster: each outbox on its own node
                res = []
                for name, start in streams.items():
                    one = await self._read_on_node(by_stream[name], READ_COUNT, None, start)
                    res.extend(_stream_items(one))
            after: dict[Any, Any] = {}
            for stream, entries in _stream_items(res):
                if not entries:
                    continue
                name = _s(stream)
                batch = [(_s(e), dict(zip(f[::2], f[1::2], strict=True))) for e, f in entries if f]
                await self._handle_batch(by_stream[name], batch, lease=lease)
                # Entries deleted while pending come back without fields: nothing to send.
                gone = [_s(e) for e, f in entries if not f]
                if gone:
                    await self.redis.xack(name, GROUP, *gone)
                after[name] = _s(entries[-1][0])
                handled += len(entries)
            streams = after
        return handled

    async def fanout_once(
        self,
        block_ms: int | None = None,
        *,
        lease: bool = False,
        ops: Sequence[str] | None = None,
    ) -> int:
        """Read and fan out one batch of new outbox entries (of ``ops``, default all: outboxes
        by shard tag, an unsharded operation's being its name); how many were handled.

        With ``lease``, it reads about as many entries as there are free send slots and
        starts sending their deliveries at once.
        """
        await self._ensure_groups()
        ops = list(self._sources) if ops is None else ops
        streams: dict[Any, Any] = {keys.outbox(op): ">" for op in ops}
        if not streams:
            if block_ms:
                await asyncio.sleep(block_ms / 1000)
            return 0
        count = min(READ_COUNT, max(self._free(), 1)) if lease else READ_COUNT
        res: Any
        if self._reader is not None:
            res = await self._reader.xreadgroup(
                GROUP, self.consumer, streams, count=count, block=block_ms
            )
        else:
            # A cluster: one read per stream; blocking only when reading a single one.
            res = []
            for op in ops:
                one = await self._read_on_node(op, count, block_ms if len(ops) == 1 else None)
                res.extend(_stream_items(one))
        handled = 0
        by_stream = {keys.outbox(tag): tag for tag in self._sources}
        for stream, entries in _stream_items(res):
            tag = by_stream[_s(stream)]
            batch = [(_s(e), dict(zip(f[::2], f[1::2], strict=True))) for e, f in entries]
            await self._handle_batch(tag, batch, lease=lease)
            handled += len(entries)
        return handled

    async def _read_on_node(
        self, op: str, count: int, block_ms: int | None, start: str = ">"
    ) -> Any:
        """``XREADGROUP`` of one outbox (from ``start``: ``>`` new entries, an id this
        consumer's own pending ones) on the node owning it, on a connection kept for it; the
        reply as Redis sent it."""
        stream = keys.outbox(op)
        conn = self._stream_conns.pop(op, None) or await dedicated_for(self.redis, stream)
        block = () if block_ms is None else ("BLOCK", block_ms)
        try:
            # The raw connection has no socket timeout: this deadline bounds the exchange.
            async with asyncio.timeout((block_ms or 0) / 1000 + SOCKET_TIMEOUT):
                await conn.send(
                    "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count, *block,
                    "STREAMS", stream, start,
                )  # fmt: skip
                reply = await conn.read()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, Exception):
                await stale(self.redis)  # the slot may have moved (failover, resharding)
            raise
        self._stream_conns[op] = conn
        return reply

    async def _handle_batch(
        self, tag: str, entries: list[tuple[str, dict[Any, Any]]], *, lease: bool = False
    ) -> None:
        """Fan out a batch of entries of the outbox of shard ``tag`` in one script, then
        acknowledge them all at once."""
        if not entries:
            return
        op = self._sources.get(tag, tag)
        source = "" if tag == op else tag
        items = [
            item
            for entry_id, fields in entries
            if (item := self._item(op, entry_id, fields, source))
        ]
        slots = self._reserve() if lease else 0
        try:
            terms = LeaseTerms(
                self._token(), slots, self.lease_seconds, self.settings.per_endpoint_concurrency
            )
            done = await self.store.fanout_many(items, terms)
        finally:
            self._release(slots)
        for claimed in done.leased:
            self._start(claimed)
        if sum(map(len, done.created)) > len(done.leased):
            self._claim_wanted = True
            self._wake.set()
        # Acknowledge only after the deliveries exist: a crash before this re-reads the
        # entries, and the deterministic delivery ids make the second fan-out a no-op.
        await self.store.acknowledge(tag, GROUP, [entry_id for entry_id, _ in entries])

    def _item(
        self, op: str, entry_id: str, fields: dict[Any, Any], source: str = ""
    ) -> FanoutItem | None:
        try:
            record = orjson.loads(fields[b"rec"])
            event_type = fields[b"type"].decode()
            payload = events.body(op, event_type, int(fields[b"ts"]), record, self.render)
            client, request_id = str(record["client"]), str(record["id"])
        except Exception:
            # A malformed entry can never succeed; acknowledging it keeps the stream moving.
            log.exception("dropping malformed outbox entry %s of %s", entry_id, op)
            return None
        callback = str(record["cb_url"]) if events.callback_wanted(record, event_type) else ""
        return FanoutItem(
            op,
            entry_id,
            event_type,
            client,
            request_id,
            payload,
            callback,
            _callback_target(callback) if callback else "",
            source,
        )

    # Sending

    async def _wake_step(self, parts: Sequence[keys.Part] | None = None) -> None:
        if await self.store.wait_for_work(self.block_seconds, parts):
            self._claim_wanted = True
            self._wake.set()

    def _token(self) -> str:
        # A lease token per fan-out or claim: a late record of an expired lease is refused.
        self._claims += 1
        return f"{self.consumer}:{self._claims}"

    async def _claim(self, free: int) -> tuple[list[Claimed], float | None]:
        return await self.store.claim(
            self._token(),
            free,
            self.lease_seconds,
            self.settings.per_endpoint_concurrency,
            self.busy_delay,
        )

    def _free(self) -> int:
        return self.settings.concurrency - len(self._sending) - self._reserved

    def _reserve(self) -> int:
        # Slots promised to one fan-out or claim until it returns, so the two loops never
        # lease more between them than the process may send at once.
        free = max(self._free(), 0)
        self._reserved += free
        return free

    def _release(self, reserved: int) -> None:
        self._reserved -= reserved
        self._freed.set()

    def _start(self, item: Claimed) -> None:
        task = asyncio.create_task(self._attempt(item))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    async def _send_step(self) -> None:
        self._wake.clear()
        if self._draining:
            await asyncio.sleep(self.block_seconds)
            return
        due = self._next_due is not None and self._next_due <= self.clock()
        # Also now and then regardless: a claim is what recovers the expired leases of a
        # dispatcher that died, and fan-outs elsewhere lease without telling us.
        overdue = time.monotonic() - self._last_claim >= self.block_seconds
        if (self._claim_wanted or due or overdue) and self._free() > 0:
            limit = self.settings.concurrency
            if self._sending and self._free() < max(limit // 4, 1):
                await asyncio.sleep(CLAIM_BATCH_DELAY)  # see _slots_free
            free = self._reserve()
            self._last_claim = time.monotonic()
            try:
                items, self._next_due = await self._claim(free)
            finally:
                self._release(free)
            # A full claim may have left more due; a short one took all there was.
            self._claim_wanted = len(items) >= free
            for item in items:
                self._start(item)
        delay = self.block_seconds
        if self._next_due is not None:
            delay = min(max(self._next_due - self.clock(), 0.01), delay)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # races with the event being set, and the dispatcher would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _target(self, endpoint_id: str, version: str) -> SendTarget | None:
        if version == GONE:
            return None
        key = (endpoint_id, version)
        fut = self._targets.get(key)
        if fut is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            fut = asyncio.ensure_future(self.store.send_target(endpoint_id))
            fut.add_done_callback(functools.partial(self._fetched, key))
            self._targets[key] = fut
        if fut.done():
            return fut.result()
        # Shielded: one waiting send being cancelled must not cancel the others' fetch.
        return await asyncio.shield(fut)

    async def _default_secret(self, client: str) -> str:
        # A client's default secret never changes once made: read it once per process, not
        # with two round trips per callback attempt.
        secret = self._default_secrets.get(client)
        if secret is None:
            if len(self._default_secrets) > 10_000:
                self._default_secrets.clear()
            secret = self._default_secrets[client] = await self.store.default_secret(client)
        return secret

    def _fetched(self, key: tuple[str, str], fut: asyncio.Future[SendTarget | None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._targets.pop(key, None)  # the next send fetches again

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._freed.set()
        if self._claim_wanted:
            self._wake.set()  # a slot is free for what the last claim left behind

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._resolver = SafeResolver(self.settings.allow_networks)
            # One session and connector for the process: connections kept alive per target
            # (up to ``concurrency`` of them), every name checked by the resolver on connect.
            connector = aiohttp.TCPConnector(
                resolver=self._resolver, limit=self.settings.concurrency
            )
            # aiohttp's client used as cheaply as its docs allow: the timeout built once, no
            # cookies, no proxy lookups in the environment, no status exceptions (the policy
            # reads the status), no trace hooks, no decompression (the excerpt is kept as
            # sent), hence no Accept-Encoding, and no ``Accept: */*`` either.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                raise_for_status=False,
                auto_decompress=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
            )
        return self._session

    async def _attempt(self, item: Claimed) -> None:
        try:
            label = await self._send(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease expires and another attempt follows; nothing is lost.
            log.exception("webhook delivery %s: unexpected error", item.id)
            return
        if self.on_attempt is not None:
            self.on_attempt(label)

    async def _send(self, item: Claimed) -> str:
        started = time.monotonic()
        attempt: dict[str, Any] = {
            "at": int(self.clock() * 1000),
            "status_code": None,
            "error": None,
            "duration_ms": 0,
            "response": "",
            "next_attempt_at": None,
        }
        if item.endpoint_id:
            target = await self._target(item.endpoint_id, item.endpoint_version)
            if target is None or target.disabled:
                attempt["error"] = "endpoint deleted" if target is None else "endpoint disabled"
                await self._record(item, Decision("skipped"), attempt)
                return "skipped"
            url, live = target.url, target.live(int(self.clock() * 1000))
        else:
            url, live = item.url or "", [await self._default_secret(item.client)]
        status: int | None = None
        retry_after: str | None = None
        try:
            # Literal IP hosts never reach the resolver, so they are checked here.
            target_url = _checked_url(url, self._allow)
            ts = int(self.clock())
            headers = signing.headers(item.id, ts, signing.sign(live, item.id, ts, item.payload))
            session = self._open_session()
            async with session.post(
                target_url, data=item.payload, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                excerpt = await resp.content.read(EXCERPT_BYTES)
                attempt["response"] = excerpt.decode(errors="replace")
        except TargetRefused as exc:
            attempt["error"] = f"target refused: {exc.reason}"
            attempt["duration_ms"] = _ms_since(started)
            await self._record(item, Decision("failed"), attempt)
            return "refused"
        except (aiohttp.ClientError, TimeoutError, OSError, UnicodeError) as exc:
            attempt["error"] = _describe(exc, self.settings.timeout_seconds)
        attempt["status_code"] = status
        attempt["duration_ms"] = _ms_since(started)
        decision = decide(
            status,
            retry_after,
            item.tries + 1,
            self.settings.retry_schedule,
            self.settings.jitter,
            self.clock(),
        )
        await self._record(item, decision, attempt)
        return decision.outcome

    async def _record(self, item: Claimed, decision: Decision, attempt: dict[str, Any]) -> None:
        next_at = None
        if decision.delay is not None:
            next_at = int((self.clock() + decision.delay) * 1000)
        attempt["next_attempt_at"] = next_at
        result = await self.store.finish(
            item,
            decision.outcome,
            attempt,
            next_at,
            self.settings.disable_after_days * 86_400,
        )
        if result == "lost":
            log.warning("webhook delivery %s: lease lost before the attempt was recorded", item.id)
        elif next_at is not None:
            # A retry is due then: the claim loop looks no later than that.
            at = next_at / 1000
            if self._next_due is None or at < self._next_due:
                self._next_due = at
                self._wake.set()


@functools.lru_cache(maxsize=4096)
def _checked_url(url: str, allow: tuple[str, ...]) -> URL:
    # A pure check of the URL's text (scheme, credentials, a literal IP host): cached per
    # target. Names are checked on every connect by the resolver, never cached here.
    return check_url_static(url, allow)


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def _stream_items(res: Any) -> list[tuple[Any, list[Any]]]:
    # RESP2 answers a list of [stream, entries]; RESP3 (redis-py) a mapping of stream to
    # [entries] or, in newer unified mode, to entries.
    if not res:
        return []
    if isinstance(res, dict):
        out = []
        for stream, value in res.items():
            nested = len(value) == 1 and isinstance(value[0], list) and _is_entry_list(value[0])
            out.append((stream, value[0] if nested else value))
        return out
    return [(stream, entries) for stream, entries in res]


def _is_entry_list(value: list[Any]) -> bool:
    return not value or isinstance(value[0], list | tuple)


def _callback_target(url: str) -> str:
    # Callbacks have no endpoint: their concurrency is limited per origin instead.
    try:
        return keys.CALLBACK_TARGET + str(URL(url).origin())
    except ValueError:
        return keys.CALLBACK_TARGET + url


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
