"""Webhook endpoints and deliveries in Redis.

Keys (built by :mod:`webhooks.keys`; each in one partition ``{wh}``, ``{wh~k}``…, which one
said after it):

- ``ep:<id>``     hash, one endpoint (its client, url, filters, secrets, health) — the endpoint's
- ``eps:<client>`` sorted set of a client's endpoint ids by creation time — the client's
- ``secret:<client>`` the client's default secret (per-request callbacks) — the client's
- ``d:<id>``      hash, one delivery (payload snapshot, status, lease); expires once settled —
  its target's (the endpoint id, or a callback's origin)
- ``dlog:<id>``   list of the delivery's attempts (JSON), capped — with its delivery
- ``epd:<id>``    sorted set of an endpoint's delivery ids by creation time, capped — the
  endpoint's
- ``rqd:<id>``    sorted set of a request's delivery ids by creation time, capped; expires —
  one per partition holding some of them
- ``due``         sorted set of pending deliveries (``<id>\\n<target>``) by next attempt time —
  one per partition, as are:
- ``inflight``    sorted set of leased delivery ids by lease deadline
- ``busy``        hash, sends in flight per target (endpoint id or callback origin)
- ``wake``        list holding at most one marker; idle dispatchers block on it
- ``partitions``  (partition 0) how many partitions the data is laid out in; absent: one
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets as _secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

import orjson

from service.queue import keys as core_keys
from service.runtime.batcher import Script
from service.runtime.cluster import batcher_for
from service.runtime.libraries import drop_other_releases
from service.runtime.lua import Lua
from service.runtime.redis import Client, is_cluster
from webhooks import keys, scripts
from webhooks.errors import DeliveryNotFound, EndpointLimit, EndpointNotFound, InvalidEndpoint
from webhooks.events import DEFAULT_EVENTS, EVENTS
from webhooks.fanout import (
    FANOUT_RUN,
    EndpointFilter,
    Fanout,
    FanoutItem,
    LeaseTerms,
    Planned,
    by_partition,
    leased_now,
    plan,
    run_arguments,
)
from webhooks.models import (
    Claimed,
    Delivery,
    Endpoint,
    SendTarget,
    decode,
    delivery_from_hash,
    endpoint_from_hash,
    split_list,
    text,
)
from webhooks.signing import new_secret

log = logging.getLogger("acceptd.webhooks")

ROTATION_OVERLAP = 86_400.0
DELIVERY_RETENTION = 7 * 86_400
LOG_CAP = 50
INDEX_CAP = 1000
REQUEST_INDEX_CAP = 200
"""A request's index keeps its newest 200 deliveries (a few events times its endpoints)."""
MAX_STALLS = 5
MAX_URL = 2048
MAX_DESCRIPTION = 1024
MAX_ENDPOINTS = 100

MOVE_CHUNK = 200
"""Keys moved per pipeline when the data is laid out anew (see ``WebhookStore.repartition``)."""

K = TypeVar("K", bound=tuple[Any, ...])


def partition_count(redis: Client, configured: int | None = None) -> int:
    """How many webhook partitions: ``configured``, else 16 on a cluster and 1 on one node."""
    if configured:
        return configured
    return keys.CLUSTER_PARTITIONS if is_cluster(redis) else 1


class EndpointPage(NamedTuple):
    """A page of a client's endpoints, and the cursor (creation ms, id) after it, if more follow."""

    items: list[Endpoint]
    next: tuple[int, str] | None


A = TypeVar("A", bound=tuple[Any, ...])


class WebhookStore:
    """Endpoints, secrets and deliveries; each state move is one Redis round trip."""

    def __init__(
        self,
        redis: Client,
        operations: Sequence[str],
        clock: Callable[[], float] = time.time,
        *,
        retention: int = DELIVERY_RETENTION,
        max_endpoints: int = MAX_ENDPOINTS,
        shards: Mapping[str, int] | None = None,
        partitions: int | None = None,
    ) -> None:
        self.redis = redis
        # Every process must agree on the count: it decides where each key lives.
        self.layout = keys.partitions(partition_count(redis, partitions))
        self._claim_turn = 0
        self.operations = list(operations)
        # A sharded operation's hooked sets are per shard (its tags): each shard's scripts read
        # their own.
        self.tags = [t for op in operations for t in keys.shard_tags(op, (shards or {}).get(op, 1))]
        self.clock = clock
        self.retention = retention
        # Per client: a fan-out's work grows with a client's endpoints.
        self.max_endpoints = max_endpoints
        # Calls made in the same event-loop tick share one pipeline (see service.runtime.batcher).
        self._batcher = batcher_for(redis)
        self._scripts: dict[str, Script] = dict(scripts.ALL)

    async def drop_other_releases(self) -> list[str]:
        """Delete the webhook scripts' Function libraries of other releases (see
        ``service.runtime.libraries``); their names."""
        return await drop_other_releases(self.redis, self._scripts.values(), "webhooks")

    def now_ms(self) -> int:
        """The current time in milliseconds, from the (fakeable) clock."""
        return int(self.clock() * 1000)

    async def _run(
        self,
        lua: Lua[K, A],
        script_keys: K,
        argv: A,
        *,
        entry_keys: Sequence[str] = (),
        entry_argv: Sequence[Any] = (),
    ) -> Any:
        # KEYS are the fixed ones then each entry's, ARGV likewise (see service.runtime.lua).
        return await self._batcher.call(
            self._scripts[lua.name],
            [*script_keys, *entry_keys, *argv, *entry_argv],
            len(script_keys) + len(entry_keys),
        )

    # Endpoints

    async def create_endpoint(
        self,
        client: str,
        url: str,
        events: Sequence[str] | None = None,
        operations: Sequence[str] | None = None,
        description: str = "",
    ) -> Endpoint:
        """Create an endpoint with a new secret; the client's events start flowing to the outbox.

        EndpointLimit if the client has ``max_endpoints`` already.
        """
        endpoint = Endpoint(
            id="we_" + _secrets.token_hex(12),
            client=client,
            url=_valid_url(url),
            events=self._valid_events(events),
            operations=self._valid_operations(operations),
            description=_valid_description(description),
            created_at=self.now_ms(),
            disabled=False,
            disabled_reason=None,
            secret=new_secret(),
        )
        assert endpoint.secret is not None
        # The hash goes to the endpoint's partition, its id to the client's list (the
        # client's partition, where enlist.lua checks the cap): two steps. Until the second,
        # nothing names the endpoint; one the cap refuses is deleted.
        key = self.layout.of(endpoint.id).endpoint(endpoint.id)
        await self.redis.hset(
            key,
            mapping={
                "id": endpoint.id,
                "client": client,
                "url": endpoint.url,
                "events": ",".join(endpoint.events),
                "operations": ",".join(endpoint.operations),
                "description": endpoint.description,
                "created": endpoint.created_at,
                "disabled": "0",
                "disabled_reason": "",
                "secret": endpoint.secret,
            },
        )
        created = await self._run(
            scripts.ENLIST,
            scripts.EnlistKeys(self.layout.of(client).client_endpoints(client)),
            scripts.EnlistArgv(self.max_endpoints, endpoint.id, endpoint.created_at),
        )
        if not created:
            await self.redis.delete(key)
            raise EndpointLimit(self.max_endpoints)
        # After the endpoint exists: the core writes outbox entries only for hooked clients.
        await self._hook({client: set(endpoint.events)})
        return endpoint

    async def _hook(self, wanted: dict[str, set[str]]) -> None:
        # The hooked sets live in the operations' hash slots, so this is a step of its own.
        # They only ever grow: an event type nobody wants any more costs an outbox entry, while
        # removing one could race with a new endpoint and lose its events.
        if not self.operations:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            by_event: dict[str, list[str]] = {}
            for client, events in wanted.items():
                for event in events:
                    by_event.setdefault(event, []).append(client)
            for event, clients in by_event.items():
                for tag in self.tags:
                    pipe.sadd(keys.hooked(tag, event), *clients)
            await pipe.execute()

    async def rehook(self) -> int:
        """Hook every endpoint's client for its events in every operation (new operations).

        Returns how many clients have endpoints.
        """
        wanted: dict[str, set[str]] = {}
        names = [name async for name in self._scan_kind("ep")]
        for i in range(0, len(names), 500):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names[i : i + 500]:
                    pipe.hmget(name, "client", "events")
                rows = await pipe.execute()
            for client, events in rows:
                if client:
                    wanted.setdefault(text(client), set()).update(split_list(text(events)))
        await self._hook(wanted)
        return len(wanted)

    async def _scan_kind(self, kind: str) -> AsyncIterator[str]:
        """The names of every partition's keys of one kind (``ep``…): one SCAN for all of
        them (a pattern per partition would walk the keyspace once per partition)."""
        prefixes = {part.prefix for part in self.layout.parts}
        pattern = f"{core_keys.ROOT}:{{{keys.TAG}*:{kind}:*"
        async for name in self.redis.scan_iter(match=pattern, count=500):
            found = text(name)
            if found[: found.index("}:") + 2] in prefixes:
                yield found

    async def upgrade(self) -> int:
        """Bring data an older release or layout left up to date; runs at dispatcher start.

        Moves keys to the partitions they now belong to (:meth:`repartition`), then
        rewrites bare due-set members (:meth:`upgrade_due`). Returns how many it changed.
        """
        return await self.repartition() + await self.upgrade_due()

    async def upgrade_due(self) -> int:
        """Rewrite due-set members from an older release (a bare id) as ``id\ntarget``.

        Releases before the target was carried in the member left bare ids; a claim would take
        them for deliveries whose endpoint is gone. Returns how many it rewrote (deliveries
        that no longer exist are dropped from the set).
        """
        done = 0
        for part in self.layout.parts:
            due = part.due
            rows = await self.redis.zrange(due, 0, -1, withscores=True)
            members = [(text(m), score) for m, score in rows]  # type: ignore[str-unpack]
            legacy = [(m, score) for m, score in members if "\n" not in m]
            for i in range(0, len(legacy), 500):
                chunk = legacy[i : i + 500]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for delivery_id, _ in chunk:
                        pipe.hget(part.delivery(delivery_id), "target")
                    targets = await pipe.execute()
                async with self.redis.pipeline(transaction=True) as pipe:
                    for (delivery_id, score), target in zip(chunk, targets, strict=True):
                        if target:
                            pipe.zadd(due, {keys.due_member(delivery_id, text(target)): score})
                        pipe.zrem(due, delivery_id)
                    await pipe.execute()
            done += len(legacy)
        return done

    async def repartition(self) -> int:
        """Move every key to the partition it belongs to when the partition count changed
        (from one — every release before partitions, and the one-node default — to the
        cluster's 16, say); how many keys moved.

        Partition 0 records the count the data is laid out in, so this is one GET once done.
        One dispatcher moves at a time (the others go on meanwhile: what they do is already
        in the new layout). Idempotent: cut off, the next dispatcher start carries on. What
        processes still running the old layout write meanwhile stays where they put it:
        change the count with the old processes stopped.
        """
        first = self.layout.first
        recorded = await self.redis.get(first.layout())
        old = int(recorded) if recorded else 1
        if old == self.layout.count:
            return 0
        if not await self.redis.set(first.moving(), "1", nx=True, ex=600):
            return 0  # another dispatcher is at it
        try:
            moved = 0
            for part in keys.partitions(old).parts:
                moved += await self._move_out_of(part)
            await self.redis.set(first.layout(), self.layout.count)
        finally:
            await self.redis.delete(first.moving())
        if moved:
            log.info(
                "webhooks: moved %d keys from %d partition(s) to %d",
                moved,
                old,
                self.layout.count,
            )
        return moved

    async def _move_out_of(self, src: keys.Part) -> int:
        """Move the keys of partition ``src`` (of the old layout) that now belong elsewhere."""
        names: dict[str, list[str]] = {}
        async for name in self.redis.scan_iter(match=src.prefix + "*", count=1000):
            kind, _, rest = text(name)[len(src.prefix) :].partition(":")
            names.setdefault(kind, []).append(rest)
        moves: list[tuple[str, str]] = []
        for kind in ("ep", "epd", "eps", "secret"):
            for rest in names.get(kind, ()):
                dest = self.layout.of(rest)
                if dest.prefix != src.prefix:
                    moves.append((src.key(kind, rest), dest.key(kind, rest)))
        # Each delivery goes to its target's partition, with its attempt log.
        ids = names.get("d", [])
        where: dict[str, keys.Part] = {}
        for i in range(0, len(ids), MOVE_CHUNK):
            chunk = ids[i : i + MOVE_CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in chunk:
                    pipe.hget(src.delivery(delivery_id), "target")
                targets = await pipe.execute()
            for delivery_id, target in zip(chunk, targets, strict=True):
                to = self.layout.of(text(target)) if target else None
                if to is None or to.prefix == src.prefix:
                    continue
                where[delivery_id] = to
                moves.append((src.delivery(delivery_id), to.delivery(delivery_id)))
                moves.append((src.delivery_log(delivery_id), to.delivery_log(delivery_id)))
        for i in range(0, len(moves), MOVE_CHUNK):
            await self._move_keys(moves[i : i + MOVE_CHUNK])
        for request_id in names.get("rqd", ()):
            await self._split_request_index(src, request_id, where)
        await self._split_sets(src, where)
        return len(moves)

    async def _move_keys(self, moves: Sequence[tuple[str, str]]) -> None:
        """Move keys (value and expiry) to other slots: DUMP, RESTORE there, DEL here. A
        destination that exists already (a move cut off after its RESTORE) is kept."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for old, _ in moves:
                pipe.dump(old)
                pipe.pttl(old)
            dumped = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (_, new), blob, ttl in zip(moves, dumped[::2], dumped[1::2], strict=True):
                if blob is not None:
                    pipe.restore(new, max(int(ttl), 0), blob)
            restored = await pipe.execute(raise_on_error=False)
        for reply in restored:
            if isinstance(reply, Exception) and "BUSYKEY" not in str(reply):
                raise reply
        async with self.redis.pipeline(transaction=False) as pipe:
            for old, _ in moves:
                pipe.delete(old)
            await pipe.execute()

    async def _split_request_index(
        self, src: keys.Part, request_id: str, where: Mapping[str, keys.Part]
    ) -> None:
        """Move the ids of a request's index whose deliveries moved to their partitions'."""
        index = src.request_deliveries(request_id)
        rows = await self.redis.zrange(index, 0, -1, withscores=True)
        ttl = int(await self.redis.pttl(index))
        out: dict[int, dict[str, float]] = {}
        for member, score in rows:  # type: ignore[str-unpack]
            dest = where.get(text(member))
            if dest is not None:
                out.setdefault(dest.index, {})[text(member)] = float(score)
        for index_of, members in out.items():
            moved_to = self.layout.parts[index_of]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(moved_to.request_deliveries(request_id), members)
                if ttl > 0:
                    pipe.pexpire(moved_to.request_deliveries(request_id), ttl)
                pipe.zrem(index, *members)
                await pipe.execute()

    async def _split_sets(self, src: keys.Part, where: Mapping[str, keys.Part]) -> None:
        """Move due and in-flight entries and send counters to their targets' partitions."""
        due = await self.redis.zrange(src.due, 0, -1, withscores=True)
        inflight = await self.redis.zrange(src.inflight, 0, -1, withscores=True)
        busy = {text(k): int(v) for k, v in (await self.redis.hgetall(src.busy)).items()}
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, score in due:  # type: ignore[str-unpack]
                delivery_id, target = keys.split_due_member(text(member))
                dest = where.get(delivery_id) or (self.layout.of(target) if target else None)
                if dest is not None and dest.prefix != src.prefix:
                    pipe.zadd(dest.due, {text(member): score})
                    pipe.zrem(src.due, member)
            for member, score in inflight:  # type: ignore[str-unpack]
                dest = where.get(text(member))
                if dest is not None:
                    pipe.zadd(dest.inflight, {text(member): score})
                    pipe.zrem(src.inflight, member)
            await pipe.execute()
        # A counter is taken away first, then added there: cut off between, a target's count
        # is low for a while (its sends may briefly exceed the limit), never stuck high.
        moving = {t: n for t, n in busy.items() if self.layout.of(t).prefix != src.prefix}
        if moving:
            await self.redis.hdel(src.busy, *moving)
            async with self.redis.pipeline(transaction=False) as pipe:
                for target, count in moving.items():
                    pipe.hincrby(self.layout.of(target).busy, target, count)
                await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in self.layout.parts:  # idle dispatchers look at once
                pipe.lpush(part.wake, "1")
                pipe.ltrim(part.wake, 0, 0)
            await pipe.execute()

    async def get_endpoint(self, client: str, endpoint_id: str) -> Endpoint:
        """One of the client's endpoints; EndpointNotFound otherwise."""
        raw = await self._endpoint_hash(endpoint_id)
        if raw is None or raw.get("client") != client:
            raise EndpointNotFound(endpoint_id)
        return endpoint_from_hash(raw)

    async def list_endpoints(
        self, client: str, after: tuple[int, str] | None = None, limit: int = 100
    ) -> EndpointPage:
        """Up to ``limit`` of the client's endpoints, oldest first, strictly after the cursor
        ``after`` (creation ms, id)."""
        index = self.layout.of(client).client_endpoints(client)
        low: str | int = "-inf" if after is None else after[0]
        # Ties on the creation ms sort by id, as in the index; a margin covers those before
        # the cursor.
        rows = await self.redis.zrangebyscore(
            index, low, "+inf", start=0, num=limit + 65, withscores=True
        )
        scored = [(int(float(score)), text(member)) for member, score in rows]  # type: ignore[str-unpack]
        page = [row for row in scored if after is None or row > after][: limit + 1]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, endpoint_id in page[:limit]:
                pipe.hgetall(self.layout.of(endpoint_id).endpoint(endpoint_id))
            found = await pipe.execute()
        items = [endpoint_from_hash(decode(row)) for row in found if row]
        return EndpointPage(items, page[limit - 1] if len(page) > limit else None)

    async def update_endpoint(
        self,
        client: str,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        operations: Sequence[str] | None = None,
        description: str | None = None,
        disabled: bool | None = None,
    ) -> Endpoint:
        """Change the given fields (PATCH); re-enabling clears the reason and failure streak."""
        current = await self.get_endpoint(client, endpoint_id)
        changes: dict[str, str] = {}
        if url is not None:
            changes["url"] = _valid_url(url)
        if events is not None:
            changes["events"] = ",".join(self._valid_events(events))
        if operations is not None:
            changes["operations"] = ",".join(self._valid_operations(operations))
        if description is not None:
            changes["description"] = _valid_description(description)
        if disabled is not None and disabled != current.disabled:
            changes["disabled"] = "1" if disabled else "0"
            changes["disabled_reason"] = "disabled by the client" if disabled else ""
        if events is not None:
            await self._hook({client: set(split_list(changes["events"]))})
        if changes:
            key = self.layout.of(endpoint_id).endpoint(endpoint_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=changes)  # type: ignore[arg-type]
                pipe.hincrby(key, "ver", 1)
                if disabled is False:
                    pipe.hdel(key, "failing_since")
                await pipe.execute()
        return await self.get_endpoint(client, endpoint_id)

    async def delete_endpoint(self, client: str, endpoint_id: str) -> None:
        """Delete one of the client's endpoints; its pending deliveries fail unsent."""
        await self.get_endpoint(client, endpoint_id)
        # The client's list (its partition) first, then the endpoint (its own): cut off
        # between, the endpoint gets no more events and a second delete finishes the job.
        await self.redis.zrem(self.layout.of(client).client_endpoints(client), endpoint_id)
        part = self.layout.of(endpoint_id)
        await self.redis.delete(part.endpoint(endpoint_id), part.endpoint_deliveries(endpoint_id))

    async def rotate_secret(
        self, client: str, endpoint_id: str, overlap: float = ROTATION_OVERLAP
    ) -> Endpoint:
        """A new secret; the previous one keeps signing alongside it for ``overlap`` seconds."""
        secret = new_secret()
        until = self.now_ms() + int(overlap * 1000)
        if not await self._run(
            scripts.ROTATE,
            scripts.RotateKeys(self.layout.of(endpoint_id).endpoint(endpoint_id)),
            scripts.RotateArgv(client, secret, until),
        ):
            raise EndpointNotFound(endpoint_id)
        return replace(await self.get_endpoint(client, endpoint_id), secret=secret)

    async def default_secret(self, client: str) -> str:
        """The client's default secret, created on first use and stable afterwards."""
        key = self.layout.of(client).default_secret(client)
        await self.redis.set(key, new_secret(), nx=True)
        return text(await self.redis.get(key))

    async def send_target(self, endpoint_id: str) -> SendTarget | None:
        """An endpoint's url, secrets and state, for a send; None once deleted."""
        raw = await self._endpoint_hash(endpoint_id)
        if raw is None:
            return None
        both = [raw["secret"]]
        if raw.get("old_secret"):
            both.append(raw["old_secret"])
        return SendTarget(
            url=raw["url"],
            secrets=both,
            disabled=raw.get("disabled") == "1",
            old_until=int(raw.get("old_until") or 0),
        )

    # Deliveries

    async def get_delivery(self, client: str, delivery_id: str) -> Delivery:
        """One of the client's deliveries with its attempts; DeliveryNotFound otherwise.

        A delivery's id does not name its partition: it is looked for in each (one round
        trip, two reads per partition)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in self.layout.parts:
                pipe.hgetall(part.delivery(delivery_id))
                pipe.lrange(part.delivery_log(delivery_id), 0, -1)
            rows = await pipe.execute()
        for raw, log_rows in zip(rows[::2], rows[1::2], strict=True):
            row = decode(raw)
            if row:
                if row.get("client") != client:
                    break
                return delivery_from_hash(row, log_rows)
        raise DeliveryNotFound(delivery_id)

    async def list_deliveries(
        self, client: str, endpoint_id: str, limit: int = 50
    ) -> list[Delivery]:
        """An endpoint's most recent deliveries, newest first."""
        await self.get_endpoint(client, endpoint_id)
        part = self.layout.of(endpoint_id)
        ids = await self.redis.zrevrange(part.endpoint_deliveries(endpoint_id), 0, limit - 1)
        return await self._indexed(client, [(part, text(i)) for i in ids])

    async def request_deliveries(
        self, client: str, request_id: str, limit: int = 50
    ) -> list[Delivery]:
        """A request's most recent deliveries (to endpoints and its callback), newest first.

        Only ``client``'s: the caller checks that the request is theirs to see. Each
        partition holds the index of the deliveries it holds: all are read (one round trip).
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in self.layout.parts:
                pipe.zrevrange(part.request_deliveries(request_id), 0, limit - 1, withscores=True)
            indexes = await pipe.execute()
        newest = sorted(
            (
                (float(score), text(i), part)
                for part, rows in zip(self.layout.parts, indexes, strict=True)
                for i, score in rows
            ),
            key=lambda row: (-row[0], row[1]),
        )[:limit]
        return await self._indexed(client, [(part, i) for _, i, part in newest])

    async def _indexed(self, client: str, refs: Sequence[tuple[keys.Part, str]]) -> list[Delivery]:
        """The deliveries named (partition, id), in order, that exist and are ``client``'s."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for part, delivery_id in refs:
                pipe.hgetall(part.delivery(delivery_id))
                pipe.lrange(part.delivery_log(delivery_id), 0, -1)
            rows = await pipe.execute()
        out = []
        for raw, log_rows in zip(rows[::2], rows[1::2], strict=True):
            row = decode(raw)
            if row and row.get("client") == client:
                out.append(delivery_from_hash(row, log_rows))
        return out

    async def redeliver(self, client: str, delivery_id: str) -> Delivery:
        """Queue one of the client's deliveries for sending now, with a fresh retry schedule."""
        part = await self._delivery_part(delivery_id)
        if part is None:
            raise DeliveryNotFound(delivery_id)
        res = await self._run(
            scripts.REDELIVER,
            scripts.RedeliverKeys(
                part.delivery(delivery_id), part.delivery_log(delivery_id), part.due, part.wake
            ),
            scripts.RedeliverArgv(delivery_id, client, self.now_ms()),
        )
        if text(res[0]) == "missing":
            raise DeliveryNotFound(delivery_id)
        flat, log_rows = res[1], res[2]
        return delivery_from_hash(decode(dict(zip(flat[::2], flat[1::2], strict=True))), log_rows)

    async def _delivery_part(self, delivery_id: str) -> keys.Part | None:
        """The partition holding a delivery (None if none does)."""
        if self.layout.count == 1:
            return self.layout.first
        async with self.redis.pipeline(transaction=False) as pipe:
            for part in self.layout.parts:
                pipe.exists(part.delivery(delivery_id))
            found = await pipe.execute()
        return next((p for p, n in zip(self.layout.parts, found, strict=True) if n), None)

    # The dispatcher's side

    async def fanout(
        self,
        op: str,
        entry_id: str,
        event_type: str,
        client: str,
        request_id: str,
        payload: bytes,
        callback_url: str = "",
        callback_target: str = "",
    ) -> list[str]:
        """Create the deliveries of one outbox entry (idempotent per entry); the new ids."""
        item = FanoutItem(
            op, entry_id, event_type, client, request_id, payload, callback_url, callback_target
        )
        return (await self.fanout_many([item])).created[0]

    async def fanout_many(
        self, items: Sequence[FanoutItem], lease: LeaseTerms | None = None
    ) -> Fanout:
        """Create the deliveries of many outbox entries.

        The entries' clients' endpoints are read first (two pipelined reads for the batch):
        the script is given every key it touches, so it cannot look them up itself. The
        deliveries are then made in runs of at most ``FANOUT_RUN`` (one script call each,
        one after another), so no run keeps Redis from other clients for longer than that
        many take, however many endpoints a client has. A crash between runs leaves the
        entries unacknowledged: read again, their fan-out re-creates nothing (derived ids).

        With ``lease``, up to ``lease.slots`` of the new deliveries are leased to the caller
        at once, to send now; the others are queued as due.
        """
        if not items:
            return Fanout([], [])
        planned = plan(items, await self._enabled_endpoints({it.client for it in items}))
        if not planned:
            return Fanout([[] for _ in items], [])
        now = self.now_ms()
        terms = lease or LeaseTerms("", 0, 0.0, 0)
        # One partition's deliveries per script: the partitions' scripts run at once (each
        # on its own node on a cluster), each leasing at most its share of the free slots.
        groups = by_partition(planned, self.layout)
        shares, left = [], terms.slots
        for group in groups:
            shares.append(min(len(group), left))
            left -= shares[-1]
        done = await asyncio.gather(
            *(
                self._fanout_partition(items, group, now, terms, share)
                for group, share in zip(groups, shares, strict=True)
            )
        )
        made = {p.id for created, _ in done for p in created}
        by_entry: list[list[str]] = [[] for _ in items]
        for p in planned:
            if p.id in made:
                by_entry[p.entry].append(p.id)
        return Fanout(by_entry, [claimed for _, leased in done for claimed in leased])

    async def _fanout_partition(
        self,
        items: Sequence[FanoutItem],
        planned: Sequence[Planned],
        now: int,
        terms: LeaseTerms,
        slots: int,
    ) -> tuple[list[Planned], list[Claimed]]:
        """Make ``planned`` (all in one partition) in runs of at most ``FANOUT_RUN``, one after
        another; what was created, and what was leased to the caller (at most ``slots``)."""
        part = self.layout.of(planned[0].target)
        created: list[Planned] = []
        leased: list[Claimed] = []
        for start in range(0, len(planned), FANOUT_RUN):
            run = planned[start : start + FANOUT_RUN]
            made, flat = await self._fanout_run(
                items, run, part, now, terms, max(slots - len(leased), 0)
            )
            created += [run[int(i)] for i in made]
            for i in range(0, len(flat), 2):
                leased.append(leased_now(items, run[int(flat[i])], text(flat[i + 1]), terms.token))
        return created, leased

    async def _fanout_run(
        self,
        items: Sequence[FanoutItem],
        run: Sequence[Planned],
        part: keys.Part,
        now: int,
        terms: LeaseTerms,
        slots: int,
    ) -> tuple[list[Any], list[Any]]:
        """One ``fanout.lua`` run: the indexes it created, and the (index, version)s leased."""
        item_keys, item_argv = run_arguments(items, run, part)
        created, flat = await self._run(
            scripts.FANOUT,
            scripts.FanoutKeys(part.due, part.inflight, part.busy, part.wake),
            scripts.FanoutArgv(
                now,
                INDEX_CAP,
                terms.token,
                now + int(terms.seconds * 1000),
                terms.per_target,
                slots,
                REQUEST_INDEX_CAP,
                # A delivery settles within its retry schedule and is kept `retention` after.
                2 * self.retention,
            ),
            entry_keys=item_keys,
            entry_argv=item_argv,
        )
        return created, flat

    async def _enabled_endpoints(self, clients: set[str]) -> dict[str, list[EndpointFilter]]:
        """Each client's enabled endpoints: two pipelined reads (their ids, then their filters)."""
        ordered = list(clients)
        lists = await asyncio.gather(
            *(
                self._batcher.command("ZRANGE", self.layout.of(c).client_endpoints(c), 0, -1)
                for c in ordered
            )
        )
        ids = sorted({text(i) for ids in lists for i in ids})
        rows = await asyncio.gather(
            *(
                self._batcher.command(
                    "HMGET", self.layout.of(i).endpoint(i), "disabled", "events", "operations"
                )
                for i in ids
            )
        )
        enabled = {
            i: EndpointFilter(i, text(events), text(ops))
            for i, (disabled, events, ops) in zip(ids, rows, strict=True)
            if disabled == b"0"
        }
        return {
            client: [enabled[text(i)] for i in ids_of if text(i) in enabled]
            for client, ids_of in zip(ordered, lists, strict=True)
        }

    async def claim(
        self,
        token: str,
        max_items: int,
        lease: float,
        per_target: int,
        busy_delay: float = 1.0,
        scan: int = 200,
    ) -> tuple[list[Claimed], float | None]:
        """Lease up to ``max_items`` due deliveries; also re-queues expired leases.

        Returns them and when (epoch seconds) the next delivery or lease falls due, if any.
        Two steps: ``claim.lua`` picks them from the shared sets, then one ``lease.lua`` per
        pick and one ``stall.lua`` per expired lease leave together (one pipeline).
        """
        now = self.now_ms()
        # Every partition at once (one pipeline per node), starting with a different one
        # each time: when more is due than ``max_items``, no partition waits behind others.
        self._claim_turn = (self._claim_turn + 1) % self.layout.count
        turn = self._claim_turn
        parts = self.layout.parts[turn:] + self.layout.parts[:turn]
        argv = scripts.ClaimArgv(now, max_items, per_target, int(busy_delay * 1000), scan)
        replies = await asyncio.gather(
            *(
                self._run(scripts.CLAIM, scripts.ClaimKeys(p.due, p.inflight, p.busy), argv)
                for p in parts
            )
        )
        lost = json.dumps(
            {"at": now, "status_code": None, "error": "lease expired: the dispatcher was lost"}
        )
        deadline = now + int(lease * 1000)
        stalls: list[Awaitable[Any]] = []
        members: list[tuple[keys.Part, str]] = []
        soonest = -1
        for part, (expired, picked, soonest_ms) in zip(parts, replies, strict=True):
            stalls += [self._stall(part, text(i), now, lost) for i in expired]
            members += [(part, text(m)) for m in picked]
            at = int(soonest_ms)
            if at >= 0 and (soonest < 0 or at < soonest):
                soonest = at
        if len(members) > max_items:
            members = members[:max_items]  # the rest stay due: the next claim takes them
            soonest = now
        leases = [
            self._lease(part, m, now, deadline, token, per_target, int(busy_delay * 1000))
            for part, m in members
        ]
        replies = await asyncio.gather(*leases, *stalls)
        items = [
            _claimed(keys.split_due_member(m)[0], reply, token)
            for (_, m), reply in zip(members, replies[: len(leases)], strict=True)
            if reply
        ]
        if any(text(r) == "due" for r in replies[len(leases) :]):
            soonest = now  # recovered deliveries are due now: the next claim takes them
        return items, (soonest / 1000 if soonest >= 0 else None)

    def _lease(
        self,
        part: keys.Part,
        member: str,
        now: int,
        deadline: int,
        token: str,
        per_target: int,
        busy_ms: int,
    ) -> Awaitable[Any]:
        delivery_id, target = keys.split_due_member(member)
        return self._run(
            scripts.LEASE,
            scripts.LeaseKeys(
                part.delivery(delivery_id),
                part.endpoint(keys.target_endpoint(target)),
                part.due,
                part.inflight,
                part.busy,
            ),
            scripts.LeaseArgv(delivery_id, member, now, deadline, token, per_target, busy_ms),
        )

    def _stall(self, part: keys.Part, delivery_id: str, now: int, lost: str) -> Awaitable[Any]:
        return self._run(
            scripts.STALL,
            scripts.StallKeys(
                part.delivery(delivery_id),
                part.delivery_log(delivery_id),
                part.due,
                part.inflight,
                part.busy,
            ),
            scripts.StallArgv(delivery_id, now, MAX_STALLS, self.retention, lost),
        )

    async def finish(
        self,
        item: Claimed,
        outcome: str,
        attempt: dict[str, Any],
        next_at_ms: int | None,
        disable_after: float,
        gone_reason: str = "the endpoint answered 410 Gone",
    ) -> str:
        """Record one attempt: ``pending`` (rescheduled), ``delivered``, ``failed`` or ``lost``.

        A tick's records in one partition go as one script run (see ``Batcher.call_merged``).
        """
        stale = _stale_reason(disable_after)
        part = self.layout.of(item.target)
        res = await scripts.FINISH.call_merged(
            self._batcher,
            scripts.FinishKeys(part.inflight, part.due, part.busy),
            scripts.FinishArgv(
                self.retention, LOG_CAP, int(disable_after * 1000), gone_reason, stale
            ),
            scripts.FinishCallKeys(
                part.delivery(item.id),
                part.delivery_log(item.id),
                # A callback's delivery has no endpoint: the script then leaves this key alone.
                part.endpoint(item.endpoint_id or ""),
            ),
            scripts.FinishCallArgv(
                item.id,
                item.token,
                self.now_ms(),
                outcome,
                orjson.dumps(attempt),
                "" if next_at_ms is None else next_at_ms,
            ),
        )
        return text(res)

    async def acknowledge(self, op: str, group: str, entry_ids: Sequence[str]) -> None:
        """Acknowledge and delete fanned-out outbox entries (one write with other calls)."""
        stream = keys.outbox(op)
        await asyncio.gather(
            self._batcher.command("XACK", stream, group, *entry_ids),
            self._batcher.command("XDEL", stream, *entry_ids),
        )

    async def wait_for_work(self, timeout: float, parts: Sequence[keys.Part] | None = None) -> bool:
        """Block until a fan-out or redeliver signals work (True) or ``timeout`` passes.

        Waits on every partition's signal (one node), or on those of ``parts`` (on a cluster,
        one blocking pop may only name keys of one slot: the caller waits per partition).
        """
        wakes = [p.wake for p in (self.layout.parts if parts is None else parts)]
        res = await self.redis.blpop(wakes, timeout=max(timeout, 0.01))
        return res is not None

    # Helpers

    async def _endpoint_hash(self, endpoint_id: str) -> dict[str, str] | None:
        raw = decode(await self.redis.hgetall(self.layout.of(endpoint_id).endpoint(endpoint_id)))
        return raw or None

    def _valid_events(self, events: Sequence[str] | None) -> list[str]:
        if events is None:
            return list(DEFAULT_EVENTS)
        if isinstance(events, str) or not events:
            raise InvalidEndpoint("events: must be a non-empty list")
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise InvalidEndpoint(
                f"events: unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})"
            )
        return list(dict.fromkeys(events))

    def _valid_operations(self, operations: Sequence[str] | None) -> list[str]:
        if operations is None:
            return []
        if isinstance(operations, str):
            raise InvalidEndpoint("operations: must be a list")
        unknown = [o for o in operations if o not in self.operations]
        if unknown:
            raise InvalidEndpoint(f"operations: unknown operation {unknown[0]!r}")
        return list(dict.fromkeys(operations))


@functools.lru_cache(maxsize=16)
def _stale_reason(disable_after: float) -> str:
    # Formatted once per setting, not once per attempt record.
    return f"no successful delivery for {disable_after / 86_400:g} days"


def _claimed(delivery_id: str, fields: list[Any], token: str) -> Claimed:
    # lease.lua's reply: target, endpoint, url, client, type, payload, tries, attempts, version.
    payload = fields[5]
    return Claimed(
        id=delivery_id,
        target=text(fields[0]),
        endpoint_id=text(fields[1]) or None,
        url=text(fields[2]) or None,
        client=text(fields[3]),
        event_type=text(fields[4]),
        payload=payload if isinstance(payload, bytes) else text(payload).encode(),
        tries=int(fields[6]),
        attempts=int(fields[7]),
        token=token,
        endpoint_version=text(fields[8]),
    )


def _valid_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidEndpoint("url: must be an http or https URL")
    if len(url) > MAX_URL:
        raise InvalidEndpoint(f"url: at most {MAX_URL} characters")
    return url


def _valid_description(description: str) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidEndpoint(f"description: a string of at most {MAX_DESCRIPTION} characters")
    return description
