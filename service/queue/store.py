"""The Redis data model: requests, their queue, leases and results.

Per operation ``op`` (all keys tagged ``{op}``, built by :mod:`service.queue.keys`):

- ``r:<id>``     hash, the request's record (deleted ``result_ttl`` after it finishes)
- ``pending``    sorted set of queued requests, score = (10 - priority) * 2**40 + arrival sequence;
  members (here and in ``delayed`` and ``running``) are ``<id>\n<client>`` (:func:`keys.member`)
- ``delayed``    sorted set of requests waiting out a retry backoff, score = due time
- ``running``    sorted set of claimed requests, score = lease deadline
- ``deadlines``  sorted set of never-started requests with a queue timeout, score = deadline
- ``wake``       list holding at most one marker; idle workers block on it
- ``c:<client>`` sorted set of a client's ids by creation time (listing)
- ``idem:<client>:<hash>`` an Idempotency-Key's request id (24 h)
- ``rl:<client>`` hash, the client's token bucket (submit rate limit)
- ``ev:<id>``    list of a streamed request's recent events (resuming its stream)
- ``glob:<client>`` set while the client streams all its requests; ``cev:<client>`` stream of
  its events then (resuming that stream)
- ``seq``        arrival counter
- ``tput``       finishes and run time in 5 s buckets (throughput and ETA)
- ``hist:s``, ``hist:m`` hashes, the console's history: fixed rings of per-second (15 min) and
  per-minute (24 h) counters, written by ``submit.lua``, ``finish.lua`` and every other script
  that ends a request (:mod:`.history`)
- ``workers``    sorted set of worker ids by heartbeat deadline
- ``idle``       sorted set of ``"<lease_ms> <worker>"`` registered idle, by expiry: a submit
  that finds the queue empty leases its request to one of them at once
- ``hand``       list of requests handed to idle workers (one per registration taken), which
  any waiting worker's blocking pop takes
- ``signal:<worker>`` list holding the empty entry that ends that worker's blocking pop
- ``outbox``     stream of webhook events, written in the step that changes state
- ``hooked:<status>`` set of clients with a webhook endpoint for that status's event
- channels ``events`` (every state change), ``watched`` (the changes of requests someone
  waits for or streams: what API processes subscribe to) and ``control`` (cancel handlers)

An operation with ``shards: N`` has all of the above once per shard, under the shard's tag
(:func:`keys.shard_tag`; shard 0's is ``{op}``): a request lives on the shard its id names, and
a client's index, idempotency keys, token bucket and kept events are per shard too (submits
route a key's and a rate-limited client's requests to one shard: :meth:`Queue.new_id`). Its
``pending`` scores are ``(10 - priority) * 2**42 + submit ms``, comparable across shards; the
total order is (score, shard, member), so a position is the own shard's ``ZRANK`` plus, on every
other shard, the members scored lower (or equal, on a lower shard): one parallel round trip.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.queue import ids, keys, scripts
from service.queue.scripts import (
    AheadArgv,
    AheadKeys,
    CancelArgv,
    CancelKeys,
    ClaimArgv,
    ClaimKeys,
    ExpireArgv,
    ExpireCallArgv,
    ExpireCallKeys,
    ExpireKeys,
    FinishArgv,
    FinishCallArgv,
    FinishCallKeys,
    FinishKeys,
    FollowArgv,
    FollowKeys,
    ProgressArgv,
    ProgressKeys,
    PromoteArgv,
    PromoteKeys,
    ReadArgv,
    ReadKeys,
    RecoverArgv,
    RecoverKeys,
    ReleaseArgv,
    ReleaseKeys,
    RenewArgv,
    RenewKeys,
    ReplayArgv,
    ReplayKeys,
    StartArgv,
    StartCallArgv,
    StartCallKeys,
    StartKeys,
    StatsArgv,
    StatsKeys,
    SubmitArgv,
    SubmitCallArgv,
    SubmitCallKeys,
    SubmitKeys,
    UnidleArgv,
    UnidleKeys,
    UpgradeArgv,
    UpgradeKeys,
)
from service.runtime.cluster import batcher_for
from service.runtime.libraries import drop_other_releases
from service.runtime.redis import Client, RawConnection, dedicated_for, stale

IDEMPOTENCY_TTL = 86_400
# Runs lost with their worker that a request survives (operations.<op>.max_lost's default).
DEFAULT_MAX_LOST = 2
# Submits of a request whose Idempotency-Key keeps naming requests that expire meanwhile.
SUBMIT_TRIES = 3
# Members an upgrade rewrites per pipeline.
UPGRADE_CHUNK = 500
# The key layout this release writes: members ``<id>\n<client>``, one ``hand`` list.
LAYOUT = b"2"
_IDEMPOTENCY_TTL = str(IDEMPOTENCY_TTL)

Outcome = Literal["succeeded", "failed", "canceled", "retry"]


@dataclass(frozen=True)
class Limits:
    """Per-operation limits applied at submit."""

    attempts: int
    timeout: float
    result_ttl: int
    max_queue_depth: int
    retry_backoff: float

    @functools.cached_property
    def submit_args(self) -> tuple[str, str, str, str, str]:
        """Max depth, attempts, timeout (ms), result TTL, backoff (ms): the fields ``max_depth``
        to ``backoff_ms`` of ``SubmitArgv``, encoded once."""
        return (
            str(self.max_queue_depth),
            str(self.attempts),
            str(int(self.timeout * 1000)),
            str(self.result_ttl),
            str(int(self.retry_backoff * 1000)),
        )

    @functools.cached_property
    def submit_fixed(self) -> dict[tuple[str, bool], tuple[SubmitKeys, SubmitArgv]]:
        """The fixed KEYS and ARGV of submits with these limits, by (hash tag, sharded)
        (filled by ``_submit_fixed``)."""
        return {}


@dataclass(slots=True)  # not frozen: built on every submit, and frozen init costs more
class NewRequest:
    """A request to create: what :meth:`Queue.submit` stores and queues."""

    op: str
    id: str
    client: str
    input_json: str
    limits: Limits
    _: dataclasses.KW_ONLY
    priority: int = 0
    # The Idempotency-Key's hash ('' without one) and the body's, to tell a replay from reuse.
    idempotency_key: str = ""
    body_hash: str = ""
    callback_url: str = ""
    callback_events: str = ""
    # The client's submits per second to this operation (0: no limit) and its burst.
    rate: float = 0.0
    burst: int = 0
    # A caller waits for the outcome: its events go to the watched channel.
    waited: bool = False
    # Seconds it may wait to start before it fails with queue-timeout (0: for ever).
    queue_timeout: float = 0.0
    # The failed or canceled request this one retries ('' for none).
    retry_of: str = ""


@dataclass(slots=True)  # not frozen: built on every submit, and frozen init costs more
class Submitted:
    """What a submit did: ``created``, ``replay`` (idempotent), ``conflict``, ``full`` (the queue
    is) or ``limited`` (the client's rate limit is reached)."""

    outcome: Literal["created", "replay", "conflict", "full", "limited"]
    request_id: str
    record: dict[str, str] | None
    # Queued: its place in the queue; full: the queue's depth.
    position: int | None
    # Created and handed straight to an idle worker: already running.
    started: bool = False
    # The submit's time (ms), recorded as the request's created, updated (and started) times.
    at_ms: int = 0
    # Limited: how long (ms) until the client may submit again.
    retry_after_ms: int = 0


@dataclass(frozen=True)
class Job:
    """A claimed request, held under a lease token.

    It carries no run limits (timeout, attempts, backoff): the worker runs it with its own
    settings of the operation, and a record holds none.
    """

    request_id: str
    op: str
    input: str
    attempt: int
    client: str
    token: str
    created_ms: int = 0


@dataclass(frozen=True)
class Snapshot:
    """One status read: the record, its position and the operation's recent throughput."""

    record: dict[str, str]
    position: int | None
    finished_recently: int
    run_ms_recently: int
    result: str | None
    kept_events: tuple[str, ...] = ()
    # Read with ``with_input``: the input it was submitted with (kept until a failed or
    # canceled request expires; None once succeeded).
    input: str | None = None


@dataclass(frozen=True)
class OpStats:
    """An operation's queue at a glance."""

    queued: int
    running: int
    workers: int
    finished_recently: int
    run_ms_recently: int


THROUGHPUT_WINDOW = 60.0
# A sharded operation's pending score: (10 - priority) * PRIORITY_STEP + submit ms.
PRIORITY_STEP = 1 << 42
# How far (ms of submit time) a worker's claim on one shard may run ahead of the heads of the
# operation's other shards, as it last saw them (docs/contract-notes.md, FIFO across shards).
FIFO_WINDOW_MS = 100


class Rearm(NamedTuple):
    """A worker's idle registration, renewed by a finish (see :meth:`Queue.finish`): the
    same ``lease`` and ``idle`` seconds as its claims register it with."""

    worker: str
    lease: float
    idle: float


@dataclass(frozen=True)
class Claimed:
    """What one claim on one shard got: jobs, the soonest due time, and (sharded) the score of
    the shard's head after it ('' when empty, None unsharded)."""

    jobs: list[Job]
    soonest: int | None
    head: str | None = None


class Queue:
    """Every queue operation, each one Redis round trip (one script); a claim takes two."""

    def __init__(
        self,
        redis: Client,
        clock: Callable[[], float] = time.time,
        shards: Mapping[str, int] | None = None,
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self.redis = redis
        self.clock = clock
        # Per node on a cluster (service.runtime.cluster).
        self.batcher = batcher_for(redis)
        # redis.wait_replicas: a pipeline carrying submits ends with WAIT on the same node; a
        # submit too few replicas confirmed raises NotReplicated (503), never acknowledged.
        self.batcher.wait_replicas((scripts.SUBMIT,), wait_replicas, wait_timeout)
        # Operations with more than one shard (operations.<op>.shards).
        self.shards = {op: n for op, n in (shards or {}).items() if n > 1}
        # Round-robin submits start at a random shard in each process.
        self._next_shard = int.from_bytes(os.urandom(2), "big")

    def shard_count(self, op: str) -> int:
        """How many shards ``op`` has."""
        return self.shards.get(op, 1)

    def tags(self, op: str) -> tuple[str, ...]:
        """The hash tags of ``op``'s shards, shard 0 (``op``) first."""
        n = self.shards.get(op, 1)
        return (op,) if n == 1 else keys.shard_tags(op, n)

    def tag_of(self, op: str, request_id: str) -> str:
        """The hash tag of the shard holding ``request_id`` (its id names it)."""
        n = self.shards.get(op, 1)
        return op if n == 1 else keys.shard_tag(op, ids.id_shard(request_id), n)

    def new_id(
        self, op: str, priority: int, client: str, idempotency_key: str = "", rate: float = 0.0
    ) -> str:
        """A new request id of ``op``, naming the shard its submit goes to.

        A rate-limited client's requests all go to one shard (its token bucket is exact), as do
        the requests of one Idempotency-Key (a replay finds the first); others go round-robin.
        """
        now = self.now_ms()
        n = self.shards.get(op, 1)
        if n == 1:
            return ids.new_request_id(op, now)
        if rate > 0:
            shard = binascii.crc32(client.encode()) % n
        elif idempotency_key:
            shard = binascii.crc32(f"{client}\n{idempotency_key}".encode()) % n
        else:
            self._next_shard += 1
            shard = self._next_shard % n
        return ids.new_request_id(op, now, ids.shard_code(shard, priority))

    def _others(self, op: str, request_id: str) -> list[tuple[str, str]]:
        # The other shards of a sharded request: (tag, ZCOUNT bound counting those ahead of
        # it). Equal scores: a lower shard's member comes first.
        n, own = self.shards[op], ids.id_shard(request_id)
        score = str(_score(request_id))
        return [
            (keys.shard_tag(op, t, n), score if t < own else "(" + score)
            for t in range(n)
            if t != own
        ]

    def now_ms(self) -> int:
        """The current time in milliseconds, from the (fakeable) clock."""
        return int(self.clock() * 1000)

    def _submit_call(
        self, fixed: tuple[SubmitKeys, SubmitArgv], keys_: SubmitCallKeys, argv: SubmitCallArgv
    ) -> Awaitable[Any]:
        # A tick's submits to one operation go as one script call (see Batcher.call_merged).
        # The future itself is awaited: no coroutine in between on the hot path (nor the
        # forwarding Lua.call_merged).
        return self.batcher.call_merged(scripts.SUBMIT, *fixed, keys_, argv)

    async def submit(self, req: NewRequest, tries: int = SUBMIT_TRIES) -> Submitted:
        """Create a request and queue it, unless the queue is full or the key replays.

        ``tries``: how many times an Idempotency-Key naming a request that has expired since
        is cleared and the submit sent again (one coroutine on the usual path, not two).
        """
        if req.op in self.shards:
            return await self._submit_sharded(req, tries)
        now = self.now_ms()
        call = self._submit_call(_submit_fixed(req.op, req.limits), *_submit_args(req, now))
        if req.waited:
            self.batcher.flush_if_idle()  # a caller waits on it: no need to wait for others
        res = await call
        done = _submitted(res, req.id, now)
        if isinstance(done, Submitted):
            return done
        return await self._replay_or_retry(req, done, tries)

    async def _submit_sharded(self, req: NewRequest, tries: int) -> Submitted:
        # To the shard the id names, with the time and priority the id names (its score);
        # the other shards' requests ahead of it are counted in the same round trip.
        op, rid = req.op, req.id
        tag, now = self.tag_of(op, rid), ids.id_time_ms(rid)
        res, *counts = await asyncio.gather(
            self._submit_call(_submit_fixed(tag, req.limits, True), *_submit_args(req, now, tag)),
            *(
                self.batcher.command("ZCOUNT", keys.pending(t), "-inf", bound)
                for t, bound in self._others(op, rid)
            ),
        )
        done = _submitted(res, rid, now)
        if isinstance(done, str):
            return await self._replay_or_retry(req, done, tries)
        if done.position is not None:
            done.position += sum(int(c) for c in counts)
        return done

    async def submit_many(self, reqs: Sequence[NewRequest]) -> list[Submitted | BaseException]:
        """Create many requests of one operation at once (a bulk submit), each as
        :meth:`submit` would, in order: one ``submit.lua`` run for them all (one round trip),
        then the replays of those whose Idempotency-Key names a request already (one more,
        issued together). An entry that failed on its own is its exception."""
        if not reqs:
            return []
        op = reqs[0].op
        if op in self.shards:
            # Each to its own shard: issued together, one merged call per shard; then the
            # positions as they stand with the whole batch queued (one more round trip).
            each = await asyncio.gather(*map(self.submit, reqs), return_exceptions=True)
            queued = [
                (r, req.client)
                for r, req in zip(each, reqs, strict=True)
                if isinstance(r, Submitted) and r.outcome == "created" and r.position is not None
            ]
            if queued:
                ranks = await self.ranks(op, [(r.request_id, c) for r, c in queued])
                for (r, _), rank in zip(queued, ranks, strict=True):
                    r.position = rank
            return list(each)
        now = self.now_ms()
        calls = [_submit_args(req, now) for req in reqs]
        limits = reqs[0].limits
        if any(req.limits is not limits and req.limits != limits for req in reqs):
            raise ValueError("a bulk submit's requests share their operation's limits")
        fixed = _submit_fixed(op, limits)
        replies = await scripts.SUBMIT.call_many(self.batcher, *fixed, calls)
        out: list[Submitted | BaseException] = []
        replays: list[tuple[int, str]] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                out.append(reply)
                continue
            done = _submitted(reply, reqs[i].id, now)
            if isinstance(done, str):
                replays.append((i, done))
                out.append(_NOT_YET)
            else:
                out.append(done)
        _reposition(reqs, out)
        if replays:
            replayed = await asyncio.gather(
                *(
                    self._replay_or_retry(reqs[i], existing, SUBMIT_TRIES)
                    for i, existing in replays
                ),
                return_exceptions=True,
            )
            for (i, _), res in zip(replays, replayed, strict=True):
                out[i] = res
        return out

    async def _replay_or_retry(self, req: NewRequest, existing: str, tries: int) -> Submitted:
        # The submit found the Idempotency-Key naming ``existing``: replay it, or submit again
        # when that request has expired meanwhile.
        replayed = await self._replay(req, existing)
        if replayed is not None:
            return replayed
        if tries > 1:
            return await self.submit(req, tries - 1)
        # The key's request expired at each try while others reused the key: say so, as
        # a conflict, rather than loop.
        return Submitted("conflict", "", None, None)

    async def _replay(self, req: NewRequest, existing: str) -> Submitted | None:
        # The second step of an idempotent replay (only replays pay this round trip).
        op, client = req.op, req.client
        # The key and the request it names are on the submit's shard.
        tag = self.tag_of(op, req.id)
        res = await scripts.REPLAY.call(
            self.batcher,
            ReplayKeys(
                keys.idempotency(tag, client, req.idempotency_key),
                keys.record(tag, existing),
                keys.pending(tag),
            ),
            ReplayArgv(
                existing,
                keys.member(existing, client),
                req.body_hash,
                "1" if req.waited else "",
            ),
        )
        outcome = _s(res[0])
        if outcome == "gone":
            return None
        if outcome == "conflict":
            return Submitted("conflict", existing, None, None)
        rank = int(res[3])
        if rank >= 0 and op in self.shards:
            rank += sum(await self._ahead(op, existing, self.now_ms()))
        return Submitted("replay", existing, orjson.loads(res[2]), rank if rank >= 0 else None)

    async def _ahead(self, op: str, request_id: str, now: int) -> list[int]:
        # Per other shard of a sharded request: how many of its requests are ahead of it.
        rows = await asyncio.gather(*self._ahead_calls(op, request_id, now))
        return [int(r[0]) for r in rows]

    def _ahead_calls(self, op: str, request_id: str, now: int) -> list[Awaitable[Any]]:
        return [
            scripts.AHEAD.call(
                self.batcher, AheadKeys(keys.pending(t), keys.tput(t)), AheadArgv(bound, now)
            )
            for t, bound in self._others(op, request_id)
        ]

    async def claim(
        self,
        op: str,
        worker: str,
        token: str,
        max_jobs: int,
        lease: float,
        worker_ttl: float,
        idle: float = 0.0,
        *,
        max_lost: int = DEFAULT_MAX_LOST,
        on_recovered: Callable[[str], None] | None = None,
    ) -> tuple[list[Job], int | None]:
        """:meth:`claim_shard` on an operation's shard 0 (its only one, unsharded)."""
        got = await self.claim_shard(
            op,
            worker,
            token,
            max_jobs,
            lease,
            worker_ttl,
            idle,
            max_lost=max_lost,
            on_recovered=on_recovered,
        )
        return got.jobs, got.soonest

    async def claim_shard(
        self,
        op: str,
        worker: str,
        token: str,
        max_jobs: int,
        lease: float,
        worker_ttl: float,
        idle: float = 0.0,
        *,
        max_lost: int = DEFAULT_MAX_LOST,
        on_recovered: Callable[[str], None] | None = None,
        shard: int = 0,
        max_score: float | None = None,
    ) -> Claimed:
        """Claim up to ``max_jobs`` from the head; also recovers expired leases and due retries.

        Returns the jobs (with any handed to idle workers and not yet taken) and when (ms) the
        next retry or lease falls due, if any. Finding nothing, the worker is registered idle
        for ``idle`` seconds (0: not at all), to be handed the next request through
        :meth:`wait_for_work`. A negative ``idle``: a claim lane that does not wait (see
        ``Worker._claim_lane``); it leaves the worker's idle registration and wake-up list as
        they are, for the loop that waits.

        A run lost with its worker (an expired lease) is rerun without using an attempt, at
        most ``max_lost`` times; ``on_recovered`` is told what each recovery did (see
        ``recover.lua``: ``rerun``, ``not_started``, ``worker_lost``, ``canceled``, ``gone``).

        Two round trips: ``claim.lua`` touches only the operation's own keys and returns the
        members it popped; then one ``start.lua`` run starts them all, declaring each request's
        keys (one call group per member). Expired leases and due retries cost two more, first.

        On a sharded operation, ``shard`` names the shard and ``max_score`` (None: no bound)
        the highest score it may pop; the result names the shard's head after the claim.
        """
        sharded = op in self.shards
        tag = self.tags(op)[shard] if sharded else op
        now = self.now_ms()
        claim_keys = _claim_keys(tag, worker)
        lease_ms, ttl_ms, idle_ms = int(lease * 1000), int(worker_ttl * 1000), int(idle * 1000)
        bound = "" if not sharded else _bound(max_score)
        argv = ClaimArgv(now, lease_ms, worker, max_jobs, ttl_ms, idle_ms, "1", bound)
        res = await scripts.CLAIM.call(self.batcher, claim_keys, argv)
        jobs: list[Job] = []
        if res[1] or res[2] or res[5]:
            # Expired leases, due retries and queue timeouts first (issued together: one
            # pipeline). A recovered
            # request runs again here while this worker has a free slot, leased in the same
            # step (no read sees it queued in between); otherwise it is queued at the head,
            # before this claim pops.
            if res[5]:
                await self._expire(tag, res[5], now)
            jobs = await self._recover_all(
                op,
                tag,
                res[1],
                res[2],
                now,
                _Lease(token, worker, lease_ms),
                max_jobs,
                max_lost,
                on_recovered,
            )
            free = max_jobs - len(jobs)
            again_idle_ms = min(idle_ms, 0) if jobs else idle_ms  # negative stays negative
            argv = ClaimArgv(now, lease_ms, worker, free, ttl_ms, again_idle_ms, "0", bound)
            res = await scripts.CLAIM.call(self.batcher, claim_keys, argv)
        popped, soonest, given = res[0], int(res[3]), res[4]
        head = _s(res[6]) if len(res) > 6 else None
        jobs.extend(_handed(op, entry) for entry in given)
        if popped:
            started, failed = await self._start(op, popped, token, worker, now, tag)
            jobs.extend(started)
            # A member whose start failed stays in running, 'queued': when its lease expires a
            # later claim queues it again, with no attempt used. Jobs started here run
            # regardless, so raise only without any.
            if failed is not None and not jobs:
                raise failed
        return Claimed(jobs, soonest if soonest >= 0 else None, head)

    async def _start(
        self,
        op: str,
        popped: Sequence[bytes],
        token: str,
        worker: str,
        now: int,
        tag: str = "",
    ) -> tuple[list[Job], BaseException | None]:
        # Every popped member's start in one start.lua run and one reply (on the shard
        # tagged ``tag``, default the operation's only one).
        tag = tag or op
        k = keys.of(tag)
        calls: list[tuple[StartCallKeys, StartCallArgv]] = []
        owners: list[tuple[str, str]] = []
        for m in popped:
            member = _s(m)
            rid, client = keys.parse_member(member)
            ck = _client_keys(tag, client)
            calls.append(
                (
                    StartCallKeys(keys.record(tag, rid), keys.ev(tag, rid), ck.glob, ck.cev),
                    StartCallArgv(member),
                )
            )
            owners.append((rid, client))
        try:
            started = scripts.START.call_many(
                self.batcher,
                _start_keys(tag),
                StartArgv(token, worker, now, k.events_channel, k.watched_channel),
                calls,
            )
            # Sent at once: the worker runs the batch before this one meanwhile, so Redis
            # starts this batch while that process runs the other (Worker, CLAIM_LANES).
            self.batcher.flush_now()
            replies = await started
        except Exception as exc:  # the jobs handed to the claim still run
            return [], exc
        jobs: list[Job] = []
        failed: BaseException | None = None
        for (rid, client), reply in zip(owners, replies, strict=True):
            if isinstance(reply, BaseException):
                failed = failed or reply
            elif reply:
                jobs.append(_started(op, rid, client, token, reply))
        return jobs, failed

    async def _recover_all(
        self,
        op: str,
        tag: str,
        stalled: Sequence[bytes],
        due: Sequence[bytes],
        now: int,
        lease: _Lease,
        free: int,
        max_lost: int,
        on_recovered: Callable[[str], None] | None,
    ) -> list[Job]:
        # The jobs leased here: the first ``free`` recovered requests that run again.
        recovering = [_s(m) for m in stalled]
        replies = await asyncio.gather(
            *(
                self._recover(tag, m, now, lease, max_lost, take=i < free)
                for i, m in enumerate(recovering)
            ),
            *(self._promote(tag, _s(m), now) for m in due),
            return_exceptions=True,
        )
        jobs: list[Job] = []
        failed: BaseException | None = None
        for member, reply in zip(recovering, replies, strict=False):
            if isinstance(reply, BaseException):
                failed = failed or reply
            elif isinstance(reply, list):
                rid, client = keys.parse_member(member)
                jobs.append(_job(op, rid, client, lease.token, reply))
                if on_recovered is not None:
                    on_recovered("rerun")
            elif reply and on_recovered is not None:
                on_recovered(_s(reply))
        failed = failed or next(
            (e for e in replies[len(recovering) :] if isinstance(e, BaseException)), None
        )
        # A recovery that failed is retried by a later claim (its lease stays expired); the jobs
        # leased here must run regardless, so raise only without any.
        if failed is not None and not jobs:
            raise failed
        return jobs

    def _recover(
        self, tag: str, member: str, now: int, lease: _Lease, max_lost: int, *, take: bool
    ) -> Awaitable[Any]:
        rid, client = keys.parse_member(member)
        k, ck = keys.of(tag), _client_keys(tag, client)
        return scripts.RECOVER.call(
            self.batcher,
            RecoverKeys(
                keys.record(tag, rid),
                keys.ev(tag, rid),
                ck.glob,
                ck.cev,
                k.running,
                k.pending,
                k.hand,
                k.wake,
                k.tput,
                k.outbox,
                k.hooked_running,
                k.hooked_failed,
                k.hooked_canceled,
                k.deadlines,
                k.hist_s,
                k.hist_m,
            ),
            RecoverArgv(
                rid,
                member,
                now,
                k.events_channel,
                k.watched_channel,
                lease.token,
                lease.worker,
                lease.lease_ms,
                "1" if take else "",
                max_lost,
            ),
        )

    async def expire_due(self, ops: Sequence[str], limit: int = 100) -> int:
        """Fail the requests of ``ops`` whose Queue-Timeout passed before they started.

        The sweep that fails a request on time in a queue no worker claims from: one read of
        each operation's deadlines (pipelined; only requests with a queue timeout are there),
        then, for the due ones (at most ``limit`` per operation), one ``expire.lua`` run.
        Returns how many it failed.
        """
        now = self.now_ms()
        tags = [tag for op in ops for tag in self.tags(op)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.zrangebyscore(keys.deadlines(tag), "-inf", now, start=0, num=limit)
            rows = await pipe.execute()
        done = await asyncio.gather(
            *(self._expire(tag, due, now) for tag, due in zip(tags, rows, strict=True) if due)
        )
        return sum(done)

    async def _expire(self, tag: str, due: Sequence[bytes], now: int) -> int:
        # One expire.lua run for the due members of deadlines (of the shard tagged ``tag``).
        k = keys.of(tag)
        calls: list[tuple[ExpireCallKeys, ExpireCallArgv]] = []
        for m in due:
            member = _s(m)
            rid, client = keys.parse_member(member)
            ck = _client_keys(tag, client)
            calls.append(
                (
                    ExpireCallKeys(keys.record(tag, rid), keys.ev(tag, rid), ck.glob, ck.cev),
                    ExpireCallArgv(member),
                )
            )
        replies = await scripts.EXPIRE.call_many(
            self.batcher,
            ExpireKeys(k.deadlines, k.pending, k.outbox, k.hooked_failed, k.hist_s, k.hist_m),
            ExpireArgv(now, k.events_channel, k.watched_channel),
            calls,
        )
        return sum(1 for r in replies if r == 1)

    def _promote(self, tag: str, member: str, now: int) -> Awaitable[Any]:
        rid, _ = keys.parse_member(member)
        k = keys.of(tag)
        return scripts.PROMOTE.call(
            self.batcher,
            PromoteKeys(keys.record(tag, rid), k.delayed, k.pending, k.wake),
            PromoteArgv(member, now),
        )

    async def drop_other_releases(self) -> list[str]:
        """Delete the queue's Function libraries of other releases (see
        ``service.runtime.libraries``); their names."""
        return await drop_other_releases(self.redis, scripts.ALL.values(), "queue")

    async def upgrade(self, op: str) -> int:
        """Rewrite what an older release left in ``op``'s queue; how many entries it rewrote.

        Older releases wrote bare ids as members of ``pending``, ``running`` and ``delayed``
        and handed requests on per-worker lists ``hand:<worker>``. Each bare member becomes
        ``<id>\\n<client>`` with its score (dropped when its record is gone), and what the old
        lists hold moves onto ``hand``. Idempotent; a worker runs it before its first claim.
        Only shard 0 of a sharded operation can hold such data.
        """
        k, done = keys.of(op), 0
        marker = keys.layout(op)
        # Once upgraded, never again: reading every member of a long queue at each worker
        # start would cost more than the upgrade itself.
        if await self.redis.get(marker) == LAYOUT:
            return 0
        for zset in (k.pending, k.delayed, k.running):
            rows = await self.redis.zrange(zset, 0, -1)
            bare = [_s(m) for m in rows if b"\n" not in m]
            for i in range(0, len(bare), UPGRADE_CHUNK):
                done += await self._upgrade_members(op, zset, bare[i : i + UPGRADE_CHUNK])
        pattern = _glob_escape(keys.prefix(op)) + "hand:*"
        async for name in self.redis.scan_iter(match=pattern, count=1000):
            done += await self._move_hand_list(_s(name), k.hand)
        await self.redis.set(marker, LAYOUT)
        return done

    async def _upgrade_members(self, op: str, zset: str, bare: Sequence[str]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in bare:
                pipe.hget(keys.record(op, rid), "client")
            clients = await pipe.execute()
        # One single-key script per member (issued together: pipelined): it rewrites the
        # member only if it is still there, so it never puts back one a claim took meanwhile.
        replies = await asyncio.gather(
            *(
                scripts.UPGRADE.call(
                    self.batcher,
                    UpgradeKeys(zset),
                    UpgradeArgv(rid, keys.member(rid, _s(client)) if client else ""),
                )
                for rid, client in zip(bare, clients, strict=True)
            )
        )
        return sum(int(r) for r in replies)

    async def _move_hand_list(self, old: str, hand: str) -> int:
        # An older release's submit may still push onto the old list: WATCH it, so nothing
        # pushed between the read and the move is lost.
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(old)
                    entries = [e for e in await pipe.lrange(old, 0, -1) if e]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if entries:
                        pipe.rpush(hand, *entries)
                    pipe.delete(old)
                    await pipe.execute()
                    return len(entries)
                except WatchError:
                    continue

    async def wait_for_work(
        self,
        op: str,
        worker: str,
        timeout: float,
        waiter: Waiter | None = None,
        *,
        shard: int = 0,
    ) -> list[Job]:
        """Block until a submit signals work or hands an idle worker a job, or ``timeout`` passes.

        Returns the handed job, if that is what ended the wait (any waiting worker may take
        it). A claim loop passes its own ``waiter``; without one, the wait takes a connection
        from the pool.
        """
        # Bounded well under the connection's socket timeout (service.runtime.redis.SOCKET_TIMEOUT).
        tag = self.tags(op)[shard]
        k = keys.of(tag)
        # The worker's own signal first: a stopping worker's wake-up ends its pop at once.
        wait_keys = [keys.signal(tag, worker), k.hand, k.wake]
        bound = min(max(timeout, 0.01), 4.0)
        res: Sequence[bytes | str] | None
        if waiter is not None:
            res = await waiter.blpop(wait_keys, bound)
        else:
            res = await self.redis.blpop(wait_keys, timeout=bound)
        if res is None or _s(res[0]) != k.hand or not res[1]:
            return []
        return [_handed(op, res[1])]

    async def unidle(
        self, op: str, worker: str, lease: float, *, wake: bool, shard: int = 0
    ) -> list[Job]:
        """Hand this worker nothing more (it is stopping).

        Returns the hand-offs no idle worker is left to take. With ``wake``, its blocking
        :meth:`wait_for_work` ends at once.
        """
        tag = self.tags(op)[shard]
        res = await scripts.UNIDLE.call(
            self.batcher,
            UnidleKeys(keys.idle(tag), keys.hand(tag), keys.signal(tag, worker)),
            UnidleArgv(worker, int(lease * 1000), "1" if wake else ""),
        )
        return [_handed(op, entry) for entry in res]

    async def renew(self, job: Job, lease: float) -> str:
        """Extend a lease: ``ok``, ``cancel`` (cancel requested) or ``lost``."""
        rid = job.request_id
        tag = self.tag_of(job.op, rid)
        res = await scripts.RENEW.call(
            self.batcher,
            RenewKeys(keys.record(tag, rid), keys.of(tag).running),
            RenewArgv(keys.member(rid, job.client), job.token, self.now_ms(), int(lease * 1000)),
        )
        return _s(res)

    async def progress(self, job: Job, percent: float, message: str | None) -> str:
        """Record and publish progress: ``ok`` or ``lost``."""
        payload = orjson.dumps({"percent": percent, "message": message}).decode()
        rid = job.request_id
        op = self.tag_of(job.op, rid)  # the shard's tag names its keys
        k, ck = keys.of(op), _client_keys(op, job.client)
        res = await scripts.PROGRESS.call(
            self.batcher,
            ProgressKeys(
                keys.record(op, rid),
                keys.ev(op, rid),
                ck.glob,
                ck.cev,
            ),
            ProgressArgv(job.token, self.now_ms(), payload, k.events_channel, k.watched_channel),
        )
        return _s(res)

    async def finish(
        self,
        job: Job,
        outcome: Outcome,
        payload_json: str,
        retry_delay: float = 0.0,
        *,
        attempts: int = 1,
        rearm: Rearm | None = None,
    ) -> str:
        """Store the outcome: the terminal status, ``retrying``, or ``lost`` if not ours.

        ``attempts`` is the operation's as the calling worker runs it (a record holds no run
        limits): a ``retry`` is queued again while the attempts used (``attempt - lost``) stay
        below it, and fails otherwise.

        A tick's finishes to one operation go as one script run (see Batcher.call_merged).
        With ``rearm``, the worker is registered idle in the same run (as :meth:`claim_shard`
        would register it) unless requests are queued: a worker handed ``job`` by a submit
        waits for the next one without a claim in between.
        """
        rid = job.request_id
        op = self.tag_of(job.op, rid)  # the shard's tag names its keys
        ck = _client_keys(op, job.client)
        now = self.now_ms()
        fixed_keys, fixed_argv = _finish_fixed(op, attempts)
        if rearm is not None:
            entry = f"{int(rearm.lease * 1000)} {rearm.worker}"
            fixed_argv = fixed_argv._replace(
                idle_entry=entry, idle_until=now + int(rearm.idle * 1000)
            )
        call = scripts.FINISH.call_merged(
            self.batcher,
            fixed_keys,
            fixed_argv,
            FinishCallKeys(keys.record(op, rid), keys.ev(op, rid), ck.glob, ck.cev),
            FinishCallArgv(rid, job.token, now, outcome, payload_json, int(retry_delay * 1000)),
        )
        if rearm is not None:
            self.batcher.flush_if_idle()  # a handed run: its submitter may be waiting
        return _s(await call)

    async def release(self, job: Job) -> str:
        """Hand a claimed request back to the head of the queue: ``released`` or ``lost``."""
        rid = job.request_id
        op = self.tag_of(job.op, rid)  # the shard's tag names its keys
        k, ck = keys.of(op), _client_keys(op, job.client)
        res = await scripts.RELEASE.call(
            self.batcher,
            ReleaseKeys(
                keys.record(op, rid),
                keys.ev(op, rid),
                ck.glob,
                ck.cev,
                k.running,
                k.pending,
                k.wake,
            ),
            ReleaseArgv(rid, job.token, self.now_ms(), k.events_channel, k.watched_channel),
        )
        return _s(res)

    async def cancel(
        self, op: str, request_id: str, client: str, error_json: str
    ) -> tuple[str, dict[str, str] | None]:
        """Cancel: ``canceled``, ``requested`` (running), ``already``, ``conflict``, ``missing``."""
        op = self.tag_of(op, request_id)  # the shard's tag names its keys
        k, ck = keys.of(op), _client_keys(op, client)
        res = await scripts.CANCEL.call(
            self.batcher,
            CancelKeys(
                keys.record(op, request_id),
                keys.ev(op, request_id),
                ck.glob,
                ck.cev,
                k.pending,
                k.delayed,
                k.outbox,
                k.hooked_canceled,
                k.hist_s,
                k.hist_m,
            ),
            CancelArgv(
                request_id,
                client,
                self.now_ms(),
                error_json,
                k.events_channel,
                k.watched_channel,
                k.control_channel,
            ),
        )
        outcome = _s(res[0])
        return outcome, (orjson.loads(res[1]) if res[1] else None)

    async def read(
        self,
        op: str,
        request_id: str,
        *,
        with_result: bool = False,
        watch_client: str = "",
        with_input: bool = False,
    ) -> Snapshot | None:
        """A request's record, position and throughput, or None when unknown.

        With ``watch_client`` (the caller), its events are kept from now on for resuming
        streams, and those already kept are returned. ``with_input`` reads its input instead
        of its result.
        """
        mode = "input" if with_input else "1" if with_result else "0"
        res = await self._read(op, request_id, self.now_ms(), mode, watch_client)
        if not res:
            return None
        rank, finished, run_ms = int(res[1]), int(res[2]), int(res[3])
        for ahead, n, d in res[6:]:
            rank, finished, run_ms = (
                rank + int(ahead) if rank >= 0 else rank,
                finished + int(n),
                run_ms + int(d),
            )
        text = _s(res[4]) if res[4] else None
        return Snapshot(
            record=orjson.loads(res[0]),
            position=rank if rank >= 0 else None,
            finished_recently=finished,
            run_ms_recently=run_ms,
            result=None if with_input else text,
            kept_events=tuple(_s(e) for e in res[5]),
            input=text if with_input else None,
        )

    async def stats(self, op: str) -> OpStats:
        """Queued, running, live workers and recent throughput of one operation.

        A sharded operation's figures are its shards' summed; workers claim from every shard,
        so its workers are the most any shard counts.
        """
        now = self.now_ms()
        rows = await asyncio.gather(
            *(
                scripts.STATS.call(
                    self.batcher,
                    StatsKeys(k.pending, k.delayed, k.running, k.workers, k.tput),
                    StatsArgv(now),
                )
                for k in map(keys.of, self.tags(op))
            )
        )
        if len(rows) == 1:
            return OpStats(*(int(x) for x in rows[0]))
        queued, running, workers, finished, run_ms = 0, 0, 0, 0, 0
        for row in rows:
            queued, running = queued + int(row[0]), running + int(row[1])
            workers = max(workers, int(row[2]))
            finished, run_ms = finished + int(row[3]), run_ms + int(row[4])
        return OpStats(queued, running, workers, finished, run_ms)

    def _read(
        self, op: str, request_id: str, now: int, with_result: str, watch_client: str
    ) -> Awaitable[Any]:
        # A sharded request's read also counts what the other shards hold ahead of it and
        # their throughput (issued together: one round trip); their rows follow the read's.
        tag = self.tag_of(op, request_id)
        k = keys.of(tag)
        read = scripts.READ.call(
            self.batcher,
            ReadKeys(
                keys.record(tag, request_id),
                keys.ev(tag, request_id),
                k.pending,
                k.tput,
                k.running,
            ),
            ReadArgv(now, with_result, watch_client),
        )
        if op not in self.shards:
            return read
        return _joined(read, self._ahead_calls(op, request_id, now))

    async def depth(self, op: str) -> int:
        """How many requests wait in the operation's queue (all its shards)."""
        counts = await asyncio.gather(*(self.redis.zcard(keys.pending(t)) for t in self.tags(op)))
        return sum(int(c) for c in counts)

    async def list_ids(
        self, op: str, client: str, before: tuple[int, str] | None, limit: int
    ) -> list[tuple[str, int]]:
        """A client's request ids, newest first, strictly before the cursor ``(ms, id)``
        (a sharded operation's: every shard's index read, merged)."""
        top: str | int = "+inf" if before is None else before[0]
        async with self.redis.pipeline(transaction=False) as pipe:
            for tag in self.tags(op):
                pipe.zrevrangebyscore(
                    keys.client_index(tag, client),
                    top,
                    "-inf",
                    start=0,
                    num=limit + 64,
                    withscores=True,
                )
            per_shard = await pipe.execute()
        out: list[tuple[str, int]] = []
        for member, score in (row for rows in per_shard for row in rows):
            rid, ms = _s(member), int(float(score))
            if before is not None and (ms, rid) >= before:
                continue
            out.append((rid, ms))
        out.sort(key=lambda r: (r[1], r[0]), reverse=True)
        return out[:limit]

    async def read_many(self, op: str, client: str, ids: Sequence[str]) -> list[Snapshot | None]:
        """Status reads for many ids in one pipeline; drops purged ids from the index."""
        now = self.now_ms()
        # Issued together, the reads travel as one pipeline (see service.runtime.batcher).
        rows = await asyncio.gather(*(self._read(op, rid, now, "0", "") for rid in ids))
        out: list[Snapshot | None] = []
        gone: list[str] = []
        for rid, res in zip(ids, rows, strict=True):
            if not res:
                gone.append(rid)
                out.append(None)
                continue
            rank, finished, run_ms = int(res[1]), int(res[2]), int(res[3])
            for ahead, n, d in res[6:]:  # a sharded request's other shards
                rank = rank + int(ahead) if rank >= 0 else rank
                finished, run_ms = finished + int(n), run_ms + int(d)
            out.append(
                Snapshot(
                    orjson.loads(res[0]),
                    rank if rank >= 0 else None,
                    finished,
                    run_ms,
                    None,
                )
            )
        if gone:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tag in self.tags(op):
                    pipe.zrem(keys.client_index(tag, client), *gone)
                await pipe.execute()
        return out

    async def ranks(self, op: str, requests: Sequence[tuple[str, str]]) -> list[int | None]:
        """Positions of many ``(id, client)`` requests in one pipeline (None: not queued)."""
        if op not in self.shards:
            pending = keys.pending(op)
            async with self.redis.pipeline(transaction=False) as pipe:
                for rid, client in requests:
                    pipe.zrank(pending, keys.member(rid, client))
                rows = await pipe.execute()
            return [None if r is None else int(r) for r in rows]
        # Sharded: the own shard's rank, then the other shards' counts ahead, per request.
        width = self.shards[op]
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid, client in requests:
                pipe.zrank(keys.pending(self.tag_of(op, rid)), keys.member(rid, client))
                for tag, bound in self._others(op, rid):
                    pipe.zcount(keys.pending(tag), "-inf", bound)
            rows = await pipe.execute()
        out: list[int | None] = []
        for i in range(len(requests)):
            own, *ahead = rows[i * width : (i + 1) * width]
            out.append(None if own is None else int(own) + sum(int(a) for a in ahead))
        return out

    async def flag_client_stream(
        self, ops: Sequence[str], client: str, ttl: int, keep_ms: int
    ) -> None:
        """Keep the client's events for resuming its all-requests stream for ``ttl`` s, each
        for ``keep_ms`` (the flag's value: the scripts trim ``cev`` by it)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for op in ops:
                for tag in self.tags(op):
                    pipe.set(keys.glob(tag, client), str(keep_ms), ex=ttl)
            await pipe.execute()

    async def follow(
        self, streams: Sequence[tuple[str, str]], ttl: int, keep_ms: int
    ) -> tuple[int, list[tuple[int, int] | None]]:
        """Keep the clients' events of ``streams`` (``(tag, client)`` each) for ``ttl`` s, as
        :meth:`flag_client_stream` does, and say where each kept stream ends now.

        Returns the lowest clock (ms) of the nodes holding them and each stream's last id (None
        when it holds none): an event kept from now on has an id above both. One
        ``follow.lua`` run per stream, all in one round trip.
        """
        replies = await asyncio.gather(
            *(
                scripts.FOLLOW.call(
                    self.batcher,
                    FollowKeys(keys.glob(tag, client), keys.cev(tag, client)),
                    FollowArgv(ttl, keep_ms),
                )
                for tag, client in streams
            )
        )
        now = min((int(r[0]) * 1000 + int(r[1]) // 1000 for r in replies), default=self.now_ms())
        return now, [_stream_id(_s(r[2])) if r[2] else None for r in replies]

    async def client_events(
        self, streams: Sequence[tuple[str, str, tuple[int, int]]], limit: int = 1000
    ) -> tuple[list[tuple[int, tuple[int, int], str, str]], bool]:
        """Kept events of clients' streams (``(tag, client, after)`` each: those after the
        stream id ``after``, at most ``limit`` of each), oldest first: ``(stream index, id,
        id as text, json)``. A stream that gave ``limit`` may hold more: read on from there.

        The flag is False when some events after a stream's ``after`` were trimmed away.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for tag, client, after in streams:
                stream = keys.cev(tag, client)
                pipe.xrange(stream, min=f"({after[0]}-{after[1]}", max="+", count=limit)
                pipe.execute_command("XINFO", "STREAM", stream)
            rows = await pipe.execute(raise_on_error=False)
        out: list[tuple[int, tuple[int, int], str, str]] = []
        complete = True
        for i, (_, _, after) in enumerate(streams):
            entries, info = rows[2 * i], rows[2 * i + 1]
            if isinstance(entries, Exception):
                raise entries
            if isinstance(info, dict):
                added, length = int(info.get(b"entries-added", 0)), int(info.get(b"length", 0))
                first = info.get(b"recorded-first-entry-id")
                # Entries older than the first kept one were trimmed: if the client's last
                # event is older than that, some it never saw may be among them.
                if added > length and first is not None and after < _stream_id(_s(first)):
                    complete = False
            for entry_id, fields in entries:
                gid = _s(entry_id)
                out.append((i, _stream_id(gid), gid, _s(fields[b"e"])))
        out.sort(key=lambda row: (row[1], row[0]))
        return out, complete


class Waiter:
    """Blocking pops on a connection of its own, for one claim loop.

    A handed job's pop is on the way from submit to result: this skips the pool's lock and
    bookkeeping and redis-py's command wrappers around the one command it sends.
    """

    def __init__(self, redis: Client) -> None:
        self._redis = redis
        self._conn: RawConnection | None = None

    async def blpop(self, wait_keys: Sequence[str], timeout: float) -> list[bytes] | None:
        """``BLPOP`` the keys for up to ``timeout`` s: ``[key, value]``, or None.

        A connection kept from an earlier pop may have been closed by the server meanwhile (it
        restarted while this claim loop waited for a free slot, not in a pop): that pop is
        tried once more on a new connection, as the pool and the batcher do, rather than
        failing once per claim loop after the server is back (and each failure logged as a
        new outage).
        """
        stale_possible = self._conn is not None
        try:
            return await self._blpop(wait_keys, timeout)
        except (RedisConnectionError, OSError):
            if not stale_possible:
                raise
        return await self._blpop(wait_keys, timeout)

    async def _blpop(self, wait_keys: Sequence[str], timeout: float) -> list[bytes] | None:
        conn = self._conn
        if conn is None:
            # One deadline below covers the exchange (a socket timeout would make redis-py
            # wrap the write in a task): a raw connection has none.
            # On a cluster: to the node owning the queue's slot (all wait keys share it).
            conn = self._conn = await dedicated_for(self._redis, wait_keys[-1])
        try:
            async with asyncio.timeout(timeout + WAIT_MARGIN):
                # Encoded by hiredis and written at once (no await) on an open connection.
                command: tuple[Any, ...] = ("BLPOP", *wait_keys, timeout)
                data = pack_command(command)
                if not conn.write_now(data):
                    await conn.send_packed(data)
                reply: list[bytes] | None = await conn.read()
        except BaseException as exc:
            # Interrupted mid-exchange, its reply may still come: never reuse the connection.
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, Exception):
                await stale(self._redis)  # a cluster's slot may have moved: map read again
            if isinstance(exc, TimeoutError):
                # A frozen server: reported like redis-py's own timeouts (an outage).
                raise RedisTimeoutError("no reply to a blocking pop") from exc
            raise
        return reply

    async def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


# How long past a blocking pop's own timeout its reply may take before the wait fails.
WAIT_MARGIN = 5.0


def _started(op: str, rid: str, client: str, token: str, reply: bytes) -> Job:
    # start.lua's reply for a request it started: attempt, created and the input, in one
    # string (the input last: it may hold newlines).
    attempt, created, data = reply.split(b"\n", 2)
    return Job(rid, op, data.decode(), int(attempt), client, token, int(created))


def _job(op: str, rid: str, client: str, token: str, fields: Sequence[Any]) -> Job:
    # recover.lua's reply for a request it leased to the recovering worker: the job's fields.
    data, attempt, created = fields
    return Job(
        request_id=rid,
        op=op,
        input=_s(data),
        attempt=int(attempt),
        client=client,
        token=token,
        created_ms=int(created),
    )


def _handed(op: str, entry: bytes | str) -> Job:
    # The layout of lua/includes/handed.lua: the input is last, as it may hold newlines. Its
    # run limits (the submitting API's) are not used: the worker runs with its own.
    if isinstance(entry, str):
        entry = entry.encode()
    rid, token, attempt, _, _, _, created, client, data = entry.split(b"\n", 8)
    return Job(
        request_id=rid.decode(),
        op=op,
        input=data.decode(),
        attempt=int(attempt),
        client=client.decode(),
        token=token.decode(),
        created_ms=int(created),
    )


def _submit_args(req: NewRequest, now: int, tag: str = "") -> tuple[SubmitCallKeys, SubmitCallArgv]:
    # One submit's share of a submit.lua call (to the shard tagged ``tag``, default the
    # operation's only one).
    op, rid, client, idem = tag or req.op, req.id, req.client, req.idempotency_key
    index, no_idem, rate, glob, cev = _client_keys(op, client)
    return (
        SubmitCallKeys(
            keys.record(op, rid),
            index,
            keys.idempotency(op, client, idem) if idem else no_idem,
            rate,
            glob,
            cev,
        ),
        SubmitCallArgv(rid, client, req.priority, req.input_json, now, _submit_options(req)),
    )


def _submit_options(req: NewRequest) -> str:
    # submit.lua's per-call options: what only some submits have, as one JSON object ('' for
    # none, which is most: one argument instead of nine for Redis to parse).
    options: dict[str, Any] = {}
    if req.idempotency_key:
        options["idem_hash"] = req.idempotency_key
    if req.body_hash:
        options["body_hash"] = req.body_hash
    if req.callback_url:
        options["callback_url"] = req.callback_url
        options["callback_events"] = req.callback_events
    if req.rate > 0:
        options["rate_per_second"] = req.rate
        options["burst"] = max(req.burst, 1)
    if req.waited:
        options["wait"] = True
    if req.queue_timeout:
        options["queue_timeout_ms"] = math.ceil(req.queue_timeout * 1000)
    if req.retry_of:
        options["retry_of"] = req.retry_of
    return orjson.dumps(options).decode() if options else ""


def _submitted(res: int | Sequence[Any], rid: str, now: int) -> Submitted | str:
    # submit.lua's reply for the call that sent ``rid``; the existing request's id when the
    # key names one. Created (nearly every reply): its rank in the queue, -1 when handed to a
    # worker (running already).
    if isinstance(res, int):
        return Submitted("created", rid, None, res if res >= 0 else None, res < 0, now)
    outcome = _s(res[0])
    if outcome == "full":
        return Submitted("full", "", None, int(res[1]))
    if outcome == "limited":
        return Submitted("limited", "", None, None, retry_after_ms=int(res[1]))
    if outcome == "exists":
        return _s(res[1])
    raise ResponseError(f"submit.lua: unexpected reply {res!r}")


def _reposition(reqs: Sequence[NewRequest], out: list[Submitted | BaseException]) -> None:
    # A bulk submit's positions as they stand once the whole batch is queued: each item's rank
    # when it was added, plus the later items of the batch queued ahead of it (of a higher
    # priority). Nothing else ran in between: the batch is one script run.
    later: dict[int, int] = {}  # per priority: the later items queued with it
    for req, res in zip(reversed(reqs), reversed(out), strict=True):
        if isinstance(res, Submitted) and res.outcome == "created" and res.position is not None:
            prio = req.priority
            res.position += sum(n for p, n in later.items() if p > prio)
            later[prio] = later.get(prio, 0) + 1


# A placeholder for a bulk submit's entry that is being replayed.
_NOT_YET = Submitted("conflict", "", None, None)


def _submit_fixed(op: str, limits: Limits, sharded: bool = False) -> tuple[SubmitKeys, SubmitArgv]:
    # The same for every submit to ``op`` (a shard's tag) with these limits (the operation's):
    # built once, and what the batcher merges calls by. Kept by the limits themselves (one
    # object per operation): a dataclass key would hash its fields anew at every call.
    fixed = limits.submit_fixed.get((op, sharded))
    if fixed is None:
        fixed = limits.submit_fixed[op, sharded] = _build_submit_fixed(op, limits, sharded)
    return fixed


def _build_submit_fixed(op: str, limits: Limits, sharded: bool) -> tuple[SubmitKeys, SubmitArgv]:
    # A sharded operation's scores are by submit time (comparable across shards).
    k = keys.of(op)
    return (
        SubmitKeys(
            k.pending,
            k.seq,
            k.idle,
            k.running,
            k.wake,
            k.hand,
            k.outbox,
            k.hooked_running,
            k.deadlines,
            k.hist_s,
            k.hist_m,
        ),
        SubmitArgv(
            k.events_channel,
            k.watched_channel,
            _IDEMPOTENCY_TTL,
            "clock" if sharded else "",
            *limits.submit_args,
        ),
    )


def _claim_keys(tag: str, worker: str) -> ClaimKeys:
    # claim.lua's keys on the shard tagged ``tag``, for ``worker`` (its own wake-up list).
    k = keys.of(tag)
    return ClaimKeys(
        k.pending,
        k.delayed,
        k.running,
        k.workers,
        k.idle,
        k.wake,
        k.hand,
        keys.signal(tag, worker),
        k.deadlines,
    )


@functools.lru_cache(maxsize=1024)
def _start_keys(tag: str) -> StartKeys:
    # start.lua's fixed keys on the shard tagged ``tag``: built once.
    k = keys.of(tag)
    return StartKeys(
        k.running,
        k.outbox,
        k.hooked_running,
        k.hooked_failed,
        k.deadlines,
        k.pending,
        k.hist_s,
        k.hist_m,
    )


@functools.lru_cache(maxsize=1024)
def _finish_fixed(op: str, attempts: int = 1) -> tuple[FinishKeys, FinishArgv]:
    # The same for every finish in ``op`` (with the operation's ``attempts``): built once, and
    # what the batcher merges calls by.
    k = keys.of(op)
    return (
        FinishKeys(
            k.running,
            k.delayed,
            k.wake,
            k.tput,
            k.outbox,
            k.hooked_succeeded,
            k.hooked_failed,
            k.hooked_canceled,
            k.pending,
            k.hist_s,
            k.hist_m,
            k.idle,
        ),
        FinishArgv(k.events_channel, k.watched_channel, max_attempts=attempts),
    )


class _Lease(NamedTuple):
    # A claim's lease: what a request recovered by that claim is leased under.
    token: str
    worker: str
    lease_ms: int


class _ClientKeys(NamedTuple):
    client_index: str
    no_idem: str  # the idempotency key of a submit without one (declared, never touched)
    rate: str
    glob: str
    cev: str


@functools.lru_cache(maxsize=4096)
def _client_keys(op: str, client: str) -> _ClientKeys:
    # The keys of a client that scripts declare, built once per client rather than per call.
    return _ClientKeys(
        keys.client_index(op, client),
        keys.idempotency(op, client, ""),
        keys.rate_limit(op, client),
        keys.glob(op, client),
        keys.cev(op, client),
    )


def _bound(max_score: float | None) -> str:
    # A claim's max_score argument: none, unknown heads (-inf: pop nothing), or a score.
    if max_score is None or max_score == math.inf:
        return "+inf"
    return "-inf" if max_score == -math.inf else str(int(max_score))


def _score(request_id: str) -> int:
    # A sharded request's pending score, from its id (see submit.lua).
    return (10 - ids.id_priority(request_id)) * PRIORITY_STEP + ids.id_time_ms(request_id)


async def _joined(first: Awaitable[Any], rest: Sequence[Awaitable[Any]]) -> Any:
    # The first call's reply (a list, or false when nothing), then the others' replies.
    replies = await asyncio.gather(first, *rest)
    if not replies[0]:
        return replies[0]
    return [*replies[0], *replies[1:]]


def _glob_escape(text: str) -> str:
    # A key as a literal SCAN MATCH pattern.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
