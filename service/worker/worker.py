"""The worker role: claim requests under a lease, run their handlers, store the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.handlers import RejectedInput, Retryable
from service.queue import keys, problems
from service.queue.store import FIFO_WINDOW_MS, Job, Outcome, Queue, Rearm, Waiter
from service.registry import Operation
from service.runtime import logs
from service.runtime.cluster import resubscribe_pause, subscribe
from service.runtime.config import WorkerSettings
from service.runtime.metrics import Metrics
from service.runtime.outage import Outage
from service.runtime.tasks import stop
from service.worker.codec import parse_input, result_to_json
from service.worker.context import JobContext
from service.worker.processes import ProcessRunner

log = logging.getLogger(__name__)

StopReason = Literal["cancel", "lost", "shutdown", "timeout"]
STORE_PATIENCE = 120.0
STOP_CLAIMING_PATIENCE = 5.0
# A claim loop handed a request goes back to its blocking pop without claiming (the run's
# finish registers it idle again) while its last claim is this recent: claims still come at
# least this often, for the heartbeat and the recovery of expired leases and due retries.
RECLAIM_SECONDS = 1.0
# Claim loops per shard, each claiming at most its share of the slots. A claim is two round
# trips (claim.lua pops, start.lua starts what it popped), and this process runs a claimed
# batch's handlers in one go: with one lane, Redis waits while the batch runs here, and this
# process waits while Redis finishes it and starts the next. With two, one lane's claim and
# start are in Redis while the other lane's batch runs here: a backlog drained 1.5x faster
# (bench/drain_cost.py, 4 rounds).
CLAIM_LANES = 2


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[Any] | None = None
    stop: StopReason | None = None
    started: float = field(default_factory=time.monotonic)
    # Set once the handler returned: from then on the outcome is being stored, which a
    # cancel or lost lease must not interrupt.
    finishing: bool = False
    # Counted in Worker._storing: its handler slot is free while its outcome is stored.
    storing: bool = False
    # Handed by a submit and not followed by a claim: its finish registers the worker idle.
    rearm: bool = False

    def interrupt(self, reason: StopReason) -> None:
        """Stop the handler (not the storing of its outcome)."""
        if self.stop is None and not self.finishing and self.task is not None:
            self.stop = reason
            self.task.cancel()


def _result_outcome(job: Job, op: Operation, result: Any) -> tuple[Outcome, str]:
    """What a handler's return value makes of its run: succeeded with it as JSON, or failed."""
    try:
        result_json, size = result_to_json(result)
    except (TypeError, ValueError, RecursionError):
        # RecursionError: nested too deep for the encoder (inputs are bounded at submit).
        log.exception("%s %s returned a result that is not JSON", job.op, job.request_id)
        return "failed", problems.internal()
    limit = op.settings.max_result_bytes
    if size > limit:
        log.warning("%s %s: result over %d bytes", job.op, job.request_id, limit)
        return "failed", problems.result_too_large(limit)
    return "succeeded", result_json


class Worker:
    """Runs handlers for the given operations with at most ``concurrency`` at once."""

    def __init__(
        self,
        queue: Queue,
        operations: dict[str, Operation],
        settings: WorkerSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.operations = operations
        self.settings = settings
        self.metrics = metrics
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[str, _Running] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._claim_loops: list[asyncio.Task[None]] = []
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._claims = 0
        # When each claim loop (operation, shard) last claimed (monotonic seconds).
        self._claimed_at: dict[tuple[str, int], float] = {}
        self._outage = Outage("worker")
        self._process_runner: ProcessRunner | None = None
        self._renewed_at = time.monotonic()
        # The lease tokens of the requests submits hand this worker (lua/submit.lua).
        self._handed_prefix = f"{self.id}:h"
        # One claim loop per shard of each operation (one, unsharded).
        self._shards = [(op, s) for op in operations for s in range(queue.shard_count(op))]
        # A sharded operation's shard heads (pending scores) as this worker's claims last saw
        # them (inf: empty; -inf: not seen yet, so nothing is popped before every shard's first
        # claim reported its head), and an event set whenever one moves.
        self._heads = {
            op: [-math.inf] * queue.shard_count(op) for op in queue.shards if op in operations
        }
        self._heads_moved = asyncio.Event()
        # Set when a shard's main claim loop found work: its other lanes then claim too.
        self._work_seen = {key: asyncio.Event() for key in self._shards}
        self._lanes = CLAIM_LANES if settings.concurrency >= CLAIM_LANES else 1
        self._lane_slots = math.ceil(settings.concurrency / self._lanes)
        self._executor = ThreadPoolExecutor(
            max_workers=max(4, settings.concurrency), thread_name_prefix="acceptd-handler"
        )

    def describe(self) -> dict[str, Any]:
        """What the console shows of this worker: host, pid, operations, running requests."""
        now = time.monotonic()
        running = [
            {"id": rid, "operation": r.job.op, "age_seconds": round(now - r.started, 1)}
            for rid, r in list(self._running.items())
        ]
        return {
            "kind": "worker",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "operations": list(self.operations),
            "concurrency": self.settings.concurrency,
            "running": running,
        }

    def _free(self) -> int:
        # A run storing its outcome holds no handler slot: the next claim leaves while the
        # finishes are in flight instead of a round trip later (Redis works on both while this
        # process runs handlers). At most ``concurrency`` runs may be storing at once, so a
        # slow Redis cannot let claims run ahead of the outcomes.
        limit = self.settings.concurrency
        return min(limit - len(self._running) + self._storing, 2 * limit - len(self._running))

    _storing = 0

    def _claimable(self) -> int:
        # Free slots no claim in flight has asked for: concurrent claim loops (operations,
        # shards) never claim more than there is room for, which would hand requests back
        # (and reorder them).
        return self._free() - self._claiming

    _claiming = 0

    async def run(self) -> None:
        """Claim and run until cancelled (use :meth:`shutdown` to stop gracefully)."""
        logs.bind(worker=self.id)  # inherited by every task started below
        self._claim_loops = [
            asyncio.create_task(self._claim_loop(op, shard), name=f"claim:{op}:{shard}")
            for op, shard in self._shards
        ]
        # Not for sharded operations: their claims keep the shards in step (FIFO_WINDOW_MS),
        # one claim loop a shard.
        self._claim_loops += [
            asyncio.create_task(self._claim_lane(op, shard), name=f"claim:{op}:{shard}:{lane}")
            for op, shard in self._shards
            if op not in self._heads
            for lane in range(1, self._lanes)
        ]
        tasks = list(self._claim_loops)
        tasks.append(asyncio.create_task(self._drop_other_releases(), name="libraries"))
        tasks.append(asyncio.create_task(self._renew_loop(), name="renew"))
        tasks.append(asyncio.create_task(self._control_loop(), name="control"))
        try:
            await asyncio.gather(*tasks)
        finally:
            await asyncio.gather(*(stop(t) for t in tasks), return_exceptions=True)

    async def shutdown(self, grace: float) -> None:
        """Stop claiming; let running handlers finish for ``grace`` s, then hand them back."""
        self._stopping = True
        self._slot_freed.set()
        await self._stop_claiming()
        if self._supervisors:
            _, pending = await asyncio.wait(set(self._supervisors), timeout=grace)
            if pending:
                log.warning("handing %d running request(s) back to the queue", len(pending))
                for running in list(self._running.values()):
                    running.interrupt("shutdown")
                await asyncio.gather(*pending, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._process_runner is not None:
            self._process_runner.shutdown()

    async def _stop_claiming(self) -> None:
        # Unregistered, no submit hands this worker more. What was handed and not taken is
        # leased to it: it starts here, so shutdown drains it like the rest. The empty entry
        # left by the first pass ends each blocking pop; the second takes a hand-off that
        # raced with it.
        lease = self.settings.lease_seconds
        try:
            async with asyncio.timeout(STOP_CLAIMING_PATIENCE):
                for op, shard in self._shards:
                    for job in await self.queue.unidle(op, self.id, lease, wake=True, shard=shard):
                        self._take(job)
                self._heads_moved.set()  # a loop held back by other shards stops at once
                for seen in self._work_seen.values():
                    seen.set()  # and the other lanes
                loops = [t for t in self._claim_loops if not t.done()]
                if loops:
                    await asyncio.wait(loops)
                for op, shard in self._shards:
                    for job in await self.queue.unidle(op, self.id, lease, wake=False, shard=shard):
                        self._take(job)
        except (RedisError, TimeoutError) as exc:
            # A hand-off missed here waits out its lease, then runs elsewhere, uncounted.
            log.warning("could not take back hand-offs while stopping: %s", exc)

    async def _claim(self, op: str, shard: int = 0, *, main: bool = True) -> int:
        """Claim from one shard of ``op`` for one lane (``main``: the loop that registers
        idle and blocks for work): how many jobs it took; -1 when it took none while the shard
        holds requests that must wait for other shards' (``FIFO_WINDOW_MS``)."""
        room = self._claimable()
        free = room if op in self._heads else min(room, self._lane_slots)
        if free <= 0 or self._stopping:
            return 0
        if not main:
            # Leaves the main loop's idle registration and wake-up list alone: it would
            # otherwise unregister a worker whose main loop has just registered and gone to
            # wait, and every request after that would be queued and claimed, not handed over.
            idle = -1.0
        elif room >= len(self._shards):
            idle = self._idle_wait()  # each shard's submits may hand it one request
        else:
            idle = 0.0
        self._claiming += free
        try:
            return await self._claim_slots(op, shard, free, idle)
        finally:
            self._claiming -= free
            self._slot_freed.set()  # what this claim did not take is free for the others

    async def _claim_slots(self, op: str, shard: int, free: int, idle: float) -> int:
        if self._running and self._renewals_stale():
            # After an outage or a stalled loop, renew what this worker holds before its own
            # claim script could take it back as abandoned; while renewals still fail (Redis
            # restarting, loading its data), claim nothing.
            await self.renew_all()
            if self._renewals_stale():
                raise RedisConnectionError("renewals are failing; not claiming until they succeed")
        self._claims += 1
        self._claimed_at[op, shard] = time.monotonic()
        token = f"{self.id}:{self._claims}"
        heads = self._heads.get(op)
        max_score = None
        if heads is not None:
            # A sharded operation: take no request submitted more than FIFO_WINDOW_MS after
            # the other shards' heads (as last seen here), so shards are drained in step.
            max_score = min((h for i, h in enumerate(heads) if i != shard), default=math.inf)
            max_score += FIFO_WINDOW_MS
        got = await self.queue.claim_shard(
            op,
            self.id,
            token,
            free,
            self.settings.lease_seconds,
            self.settings.idle_check_seconds * 3,
            idle=idle,
            max_lost=self.operations[op].settings.max_lost,
            on_recovered=self._recovered_counter(op),
            shard=shard,
            max_score=max_score,
        )
        self._next_due = got.soonest
        for job in got.jobs:
            self._take(job)
        if heads is not None and got.head is not None:
            head = float(got.head) if got.head else math.inf
            if head != heads[shard]:
                heads[shard] = head
                self._heads_moved.set()
            if not got.jobs and got.head:
                return -1
        return len(got.jobs)

    _next_due: int | None = None

    def _recovered_counter(self, op: str) -> Callable[[str], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None
        return functools.partial(metrics.lease_recovered, op)

    def _renewals_stale(self) -> bool:
        return time.monotonic() - self._renewed_at > self.settings.lease_seconds / 3

    def _idle_wait(self) -> float:
        # queue.wait_for_work bounds its blocking pop to 4 s.
        return min(self.settings.idle_check_seconds, 4.0)

    async def _claim_loop(self, op: str, shard: int = 0) -> None:
        # One per shard: a cluster's blocking pop waits on one slot, the shard's node.
        waiter = Waiter(self.queue.redis)
        try:
            if shard == 0:
                await self._upgrade(op)
            await self._claim_until_stopped(op, waiter, shard)
        finally:
            await waiter.close()

    async def _drop_other_releases(self) -> None:
        await self.queue.drop_other_releases()  # once, as it starts (best effort)

    async def _upgrade(self, op: str) -> None:
        # What an older release left in the queue is rewritten before this worker's first
        # claim (data outlives a restart); until Redis answers, nothing is claimed anyway.
        while not self._stopping:
            try:
                upgraded = await self.queue.upgrade(op)
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                self._outage.failed(exc)
                await asyncio.sleep(1)
                continue
            if upgraded:
                log.info("%s: upgraded %d queue entries an older release left", op, upgraded)
            return

    async def _claim_until_stopped(self, op: str, waiter: Waiter, shard: int = 0) -> None:
        rearmed = False  # the last pop's hand-offs register this worker idle when they finish

        async def step() -> None:
            nonlocal rearmed
            if not rearmed and await self._claim_again(op, shard):
                return
            rearmed = False  # an error below means a claim next
            rearmed = await self._wait_for_work(op, waiter, shard)

        await self._while_slots_free(op, step)

    async def _while_slots_free(self, op: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run a claim lane's ``step`` whenever a slot is free, until stopping; a step that
        fails is retried after 1 s (a Redis error counts towards the outage)."""
        while not self._stopping:
            if self._claimable() <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                self._outage.failed(exc)
                await asyncio.sleep(1)
            except Exception:
                log.exception("claiming %s failed; retrying in 1 s", op)
                await asyncio.sleep(1)

    async def _claim_again(self, op: str, shard: int) -> bool:
        """Claim once; whether to claim again at once rather than wait for work."""
        self._heads_moved.clear()
        claimed = await self._claim(op, shard)
        self._outage.succeeded()
        if claimed > 0:
            self._work_seen[op, shard].set()
        if claimed < 0:
            # Held back for the other shards: claim again once their heads move.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIFO_WINDOW_MS / 1000):
                    await self._heads_moved.wait()
            return True
        return claimed > 0

    async def _claim_lane(self, op: str, shard: int) -> None:
        """Another claim lane of one shard (see ``CLAIM_LANES``): it claims whenever slots are
        free while the shard has work; finding none, it waits until the main loop finds some
        (only the main loop registers idle and blocks for work)."""
        seen = self._work_seen[op, shard]
        await seen.wait()  # the main loop's first claim comes after the queue's upgrade

        async def step() -> None:
            claimed = await self._claim(op, shard, main=False)
            self._outage.succeeded()
            if claimed <= 0:
                seen.clear()
                await seen.wait()

        await self._while_slots_free(op, step)

    async def _wait_for_work(self, op: str, waiter: Waiter, shard: int) -> bool:
        """Block until a submit signals work or hands this worker a job; whether the jobs
        handed rearm it (see ``_rearm``: then the next pop needs no claim first)."""
        timeout = self._idle_wait()
        if self._next_due is not None:
            timeout = min(timeout, max((self._next_due - self.queue.now_ms()) / 1000, 0.01))
        # A job handed over is leased to this worker: it runs even when stopping.
        handed = await self.queue.wait_for_work(op, self.id, timeout, waiter, shard=shard)
        for job in handed:
            if not job.token.startswith(self._handed_prefix):
                # Handed to another worker (one that died or stopped idle): its lease runs
                # from that hand-off and may be nearly over. Renew before the next claim,
                # which would otherwise take it back as abandoned (spending an attempt).
                # Rare: a worker's own hand-offs need no extra round trip.
                self._renewed_at = -math.inf
            self._take(job)
        if not self._rearm(op, shard, handed):
            return False
        await self._finished_at_once(handed)
        return True

    def _rearm(self, op: str, shard: int, handed: list[Job]) -> bool:
        """Whether the claim loop can go back to its blocking pop without claiming: the
        handed runs' finishes then register this worker idle (``Rearm``), as a claim would.

        A claim here would run (in Redis and in this process) before the handed run's finish
        on the synchronous path. Only unsharded operations, with every handed job this
        worker's own and running here, nothing falling due and the last claim under
        ``RECLAIM_SECONDS`` ago.
        """
        if not handed or op in self._heads or self._stopping:
            return False
        if any(not job.token.startswith(self._handed_prefix) for job in handed):
            return False  # another worker's: renew it before anything else (see above)
        if time.monotonic() - self._claimed_at.get((op, shard), -math.inf) > RECLAIM_SECONDS:
            return False
        if self._next_due is not None and self._next_due <= self.queue.now_ms():
            return False
        runs = [r for job in handed if (r := self._running.get(job.request_id)) and r.job is job]
        if len(runs) < len(handed):
            return False  # handed back: this worker is full
        for r in runs:
            r.rearm = True
        return True

    async def _finished_at_once(self, handed: list[Job]) -> None:
        # The blocking pop leaves after the finish of a handed run whose handler returned at
        # once (an async handler that awaited nothing): Redis then runs that finish, and sends
        # its event, without first reading the pop. One yield lets the runs just started take
        # their first step (tasks run in the order they were scheduled).
        await asyncio.sleep(0)
        runs = [self._running.get(job.request_id) for job in handed]
        done = [r.task for r in runs if r is not None and r.finishing and r.task is not None]
        if done:
            await asyncio.wait(done, timeout=self._idle_wait())

    def _rearm_of(self, job: Job) -> Rearm | None:
        # The idle registration a handed run's finish renews (see _rearm), if it still should.
        running = self._running.get(job.request_id)
        if running is None or not running.rearm or self._stopping or self._free() <= 0:
            return None
        return Rearm(self.id, self.settings.lease_seconds, self._idle_wait())

    def _take(self, job: Job) -> None:
        """Start a job leased to this worker, or hand it back when no slot is free.

        A hand-off can find the worker full: it registered idle on one operation while
        another's claims then took its slots. The concurrency limit holds regardless.
        """
        if self._free() > 0 or job.request_id in self._running:
            self._start(job)
            return
        task = asyncio.create_task(self._hand_back(job), name=f"release:{job.op}/{job.request_id}")
        self._supervisors.add(task)  # shutdown waits for it like for a run
        task.add_done_callback(self._supervisors.discard)

    async def _hand_back(self, job: Job) -> None:
        try:
            await self._store(self.queue.release, job)
        except RedisError:
            # Unreachable for minutes: the lease expires and another claim recovers it.
            log.warning("could not hand %s %s back", job.op, job.request_id)

    def _start(self, job: Job) -> None:
        op = self.operations[job.op]
        if self.metrics is not None and job.attempt == 1:
            wait = max(self.queue.now_ms() - job.created_ms, 0) / 1000
            self.metrics.job_started(job.op, wait)
        ctx = JobContext(self.queue, job, asyncio.get_running_loop())
        previous = self._running.get(job.request_id)
        if previous is not None:
            # This worker lost the lease (an outage or a stalled loop) and claimed the request
            # again: the old run must stop, and must not touch the new one's bookkeeping.
            self._stop_handler(job.request_id, "lost")
        running = _Running(job)
        self._running[job.request_id] = running
        # One task per run: it runs the handler and then stores the outcome.
        sup = asyncio.create_task(
            self._supervise(running, op, ctx), name=f"handler:{job.op}/{job.request_id}"
        )
        running.task = sup
        self._supervisors.add(sup)
        sup.add_done_callback(self._supervisors.discard)

    async def _invoke(self, op: Operation, ctx: JobContext, job: Job) -> Any:
        data = parse_input(job.input)
        if op.run_in == "loop":
            return await op.handler(ctx, data)
        if op.run_in == "process":
            runner = self._processes()
            pctx = runner.context(job.request_id, job.op, job.attempt)
            # A cancelled or timed-out run stops waiting; the process finishes on its own.
            return await runner.run(op.handler, pctx, data)
        loop = asyncio.get_running_loop()
        run = functools.partial(contextvars.copy_context().run, op.handler, ctx, data)
        return await loop.run_in_executor(self._executor, run)  # with the log fields

    async def _supervise(self, running: _Running, op: Operation, ctx: JobContext) -> None:
        job = running.job
        # This run's task only: every line it (and its handler) logs names the request.
        logs.bind(request_id=job.request_id, operation=job.op)
        started = time.monotonic()
        outcome = "failed"
        try:
            outcome = await self._run(running, op, ctx)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # Redis unreachable while finishing: the lease expires and the request is retried.
            self._outage.failed(exc)
            log.warning("could not store the outcome of %s %s", job.op, job.request_id)
        finally:
            if self._running.get(job.request_id) is running:
                del self._running[job.request_id]
            if running.storing:
                self._storing -= 1
            self._slot_freed.set()
            if self.metrics is not None:
                self.metrics.job_finished(job.op, outcome, time.monotonic() - started)

    async def _run(self, running: _Running, op: Operation, ctx: JobContext) -> str:
        """Run the handler and store its outcome; the outcome stored."""
        job = running.job
        # A timer that interrupts the run, as asyncio.timeout would, at a fraction of its CPU
        # per job (its context manager's bookkeeping was a tenth of a drain's worker time).
        timer = asyncio.get_running_loop().call_later(
            op.settings.timeout, running.interrupt, "timeout"
        )
        try:
            try:
                result = await self._invoke(op, ctx, job)
            finally:
                timer.cancel()
                running.finishing = running.stop is None
                if running.finishing:
                    running.storing = True
                    self._storing += 1
                    self._slot_freed.set()
        except asyncio.CancelledError:
            if running.stop is None:
                raise
            return await self._stopped(job, running.stop)
        except Exception as exc:
            return await self._finish(job, *self._failure(job, exc))
        return await self._finish(job, *_result_outcome(job, op, result))

    def _failure(self, job: Job, exc: Exception) -> tuple[Outcome, str, float]:
        """What a handler's exception makes of its run: outcome, problem, retry delay."""
        if isinstance(exc, TimeoutError):
            timeout = self.operations[job.op].settings.timeout
            return "retry", problems.timed_out(timeout), self._backoff(job)
        if isinstance(exc, RejectedInput):
            return "failed", problems.rejected(exc.message, exc.errors), 0.0
        if isinstance(exc, Retryable):
            delay = exc.defer if exc.defer is not None else self._backoff(job)
            return "retry", problems.retries_exhausted(exc.message), delay
        log.error("%s %s failed", job.op, job.request_id, exc_info=exc)
        return "failed", problems.internal(), 0.0

    async def _stopped(self, job: Job, reason: StopReason) -> str:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if reason == "timeout":
            return await self._finish(job, *self._failure(job, TimeoutError()))
        if reason == "cancel":
            return await self._finish(job, "canceled", problems.canceled())
        if reason == "shutdown":
            return await self._store(self.queue.release, job)
        return "lost"

    async def _finish(
        self, job: Job, outcome: Outcome, payload: str, retry_delay: float = 0.0
    ) -> str:
        # The run's limits are this worker's settings of the operation (a record holds none).
        attempts = self.operations[job.op].settings.attempts

        def finish() -> Awaitable[str]:
            # Asked at each try: a worker stopping meanwhile is registered idle no more.
            return self.queue.finish(
                job, outcome, payload, retry_delay, attempts=attempts, rearm=self._rearm_of(job)
            )

        return await self._store(finish)

    async def _store(self, fn: Callable[..., Awaitable[str]], *args: Any) -> str:
        # Keep trying through a Redis outage: the outcome is worth more than the lease, and
        # the lease token still guards against a request that another worker took over.
        delay = 0.1
        deadline = time.monotonic() + STORE_PATIENCE
        while True:
            try:
                result = await fn(*args)
                self._outage.succeeded()
                return result
            except RedisError as exc:
                self._outage.failed(exc)
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _processes(self) -> ProcessRunner:
        if self._process_runner is None:
            runner = ProcessRunner()
            loop = asyncio.get_running_loop()

            def deliver(rid: str, percent: float, message: str | None) -> Any:
                running = self._running.get(rid)
                if running is None:
                    return None
                return asyncio.run_coroutine_threadsafe(
                    self.queue.progress(running.job, percent, message), loop
                )

            runner.start_relay(deliver)
            self._process_runner = runner
        return self._process_runner

    def _backoff(self, job: Job) -> float:
        return float(self.operations[job.op].settings.retry_backoff * (2 ** (job.attempt - 1)))

    def _stop_handler(self, request_id: str, reason: StopReason) -> None:
        running = self._running.get(request_id)
        if running is not None:
            running.interrupt(reason)

    async def _renew_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.renew_all()

    async def renew_all(self) -> None:
        """Extend the lease of every running request; stop those lost or cancelled."""
        runs = list(self._running.items())
        if not runs:
            self._renewed_at = time.monotonic()
            return
        # Issued together, the renewals travel as one pipeline.
        statuses = await asyncio.gather(
            *(self.queue.renew(r.job, self.settings.lease_seconds) for _, r in runs),
            return_exceptions=True,
        )
        if not any(isinstance(s, BaseException) for s in statuses):
            self._renewed_at = time.monotonic()
        for (rid, running), status in zip(runs, statuses, strict=True):
            if isinstance(status, BaseException):
                if isinstance(status, RedisError):
                    self._outage.failed(status)
                    return
                raise status
            if self._running.get(rid) is not running:
                continue  # finished or replaced meanwhile
            if status == "lost":
                log.warning("lease of %s %s lost; stopping its handler", running.job.op, rid)
                self._stop_handler(rid, "lost")
            elif status == "cancel":
                self._stop_handler(rid, "cancel")

    async def _control_loop(self) -> None:
        channels = [
            keys.control_channel(tag) for op in self.operations for tag in self.queue.tags(op)
        ]

        def on_message(_channel: bytes, data: bytes) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._stop_handler(json.loads(data)["cancel"], "cancel")

        while True:
            # SUBSCRIBE; on a cluster SSUBSCRIBE on each node owning some of the channels
            # (cancel.lua publishes with SPUBLISH there).
            try:
                await subscribe(self.queue.redis, channels, on_message, lambda: None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc)
                await asyncio.sleep(1)
                await resubscribe_pause(self.queue.redis)
