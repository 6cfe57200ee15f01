"""Chaos under load: every fault at once-ish, while a client keeps submitting.

Steady submits (each with an ``Idempotency-Key``, retried against a second API process) while
workers are SIGKILLed and replaced, the webhook dispatcher is SIGKILLed and restarted, an API
process is SIGKILLed and restarted, the Redis server (AOF, this test's own) is stopped and
started again, and a worker gets SIGTERM. Then: every accepted request succeeded, each has its
``request.succeeded`` webhook (verified with ``standardwebhooks``), no answer was other than a
2xx, a 503 with ``Retry-After`` or a refused connection, and the duplicates at-least-once
allows (handler runs, deliveries) stay within what the faults can explain.

The operation is the shipped ``sleep`` with its shipped settings (``config.yaml``: one attempt);
only its handler is wrapped to record each run, and ``worker.lease_seconds`` is lowered.
``make chaos`` runs the same test longer (``CHAOS_ROUNDS``, ``CHAOS_RATE``, ``CHAOS_GAP``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aredis
from redis.exceptions import RedisError

from service.runtime.embedded import free_port
from tests.support.chaos import (
    Apis,
    Deliveries,
    Plan,
    Tally,
    handler_runs,
    submit_steadily,
)
from tests.support.faults import RestartableRedis, call, close_quietly, role_env, wait_log
from tests.support.handlers import RUNS_LOG_ENV
from tests.support.processes import (
    Processes,
    RoleProcess,
    wait_http_ready,
    wait_until,
    wait_worker_ready,
)
from tests.support.webhooks import Receiver
from webhooks import keys as webhook_keys
from webhooks.dispatcher import GROUP

PLAN = Plan.from_env()
OP = "sleep"
# Per endpoint, sends in flight across every dispatcher (webhooks.per_endpoint_concurrency).
SENDS_IN_FLIGHT = 4
# One round of faults, in this order; a round's workers and API alternate.
ROUND = (
    "worker-kill",
    "dispatcher-kill",
    "api-kill",
    "worker-kill",
    "redis-restart",
    "worker-term",
)
DRAIN_SECONDS = 60.0
READY_SECONDS = 20.0

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(PLAN.timeout)]


class Cluster:
    """The processes under test and the faults injected into them."""

    def __init__(
        self,
        procs: Processes,
        redis: RestartableRedis,
        session: aiohttp.ClientSession,
        runs_log: Path,
    ) -> None:
        self.procs = procs
        self.redis = redis
        self.session = session
        ports = [free_port(), free_port()]
        self.apis = Apis([f"http://127.0.0.1:{port}" for port in ports])
        extra = {
            f"ACCEPTD_OPERATIONS__{OP.upper()}__HANDLER": "tests.support.handlers:counted_sleep",
            "ACCEPTD_WORKER__CONCURRENCY": str(PLAN.concurrency),
            RUNS_LOG_ENV: str(runs_log),
        }
        self.api_env = [role_env(redis.url, port, **extra) for port in ports]
        self.env = role_env(redis.url, free_port(), **extra)
        self.api_procs: list[RoleProcess] = []
        self.workers: list[RoleProcess] = []
        self.dispatcher: RoleProcess | None = None
        self.faults: Counter[str] = Counter()
        self.started = time.monotonic()
        self.timeline: list[tuple[str, float, float]] = []

    async def start(self) -> None:
        """Start both APIs, the workers and the dispatcher; wait until each is ready."""
        self.api_procs = [self.procs.start("api", env) for env in self.api_env]
        self.workers = [self.procs.start("worker", self.env) for _ in range(PLAN.workers)]
        self.dispatcher = self.procs.start("dispatcher", self.env)
        for proc, base in zip(self.api_procs, self.apis.bases, strict=True):
            await wait_http_ready(proc, self.session, base, READY_SECONDS)
        for worker in self.workers:
            await self._worker_ready(worker)
        # Its consumer group must exist before the first event is written to the outbox.
        await self._dispatcher_grouped(self.dispatcher)

    def alive(self) -> list[RoleProcess]:
        """The current processes (the killed ones replaced)."""
        assert self.dispatcher is not None
        return [*self.api_procs, *self.workers, self.dispatcher]

    async def inject(self, kind: str, n: int) -> None:
        """Inject fault ``kind`` (the ``n``-th of its kind) and wait until the system is whole."""
        self.faults[kind] += 1
        began = time.monotonic() - self.started
        await self._inject(kind, n)
        self.timeline.append((kind, round(began, 1), round(time.monotonic() - self.started, 1)))

    async def _inject(self, kind: str, n: int) -> None:
        if kind == "worker-kill":
            i = n % len(self.workers)
            self.workers[i].kill()
            await self._replace_worker(i)
        elif kind == "worker-term":
            i = n % len(self.workers)
            code = await self.workers[i].terminate(timeout=READY_SECONDS)
            assert code == 0, f"a SIGTERMed worker exited with {code}:\n{self.workers[i].output()}"
            await self._replace_worker(i)
        elif kind == "dispatcher-kill":
            assert self.dispatcher is not None
            self.dispatcher.kill()
            self.dispatcher = self.procs.start("dispatcher", self.env)
            await wait_log(self.dispatcher, "acceptd: running", READY_SECONDS)
        elif kind == "api-kill":
            i = n % len(self.api_procs)
            self.apis.killed(i)
            self.api_procs[i].kill()
            self.api_procs[i] = self.procs.start("api", self.api_env[i])
            base = self.apis.bases[i]
            await wait_http_ready(self.api_procs[i], self.session, base, READY_SECONDS)
        elif kind == "redis-restart":
            await self.redis.stop()
            await asyncio.sleep(PLAN.outage)  # the outage is the fault being injected
            await self.redis.start()
            for base in self.apis.bases:
                await self._api_ready(base)
        else:  # pragma: no cover - a typo in ROUND
            raise AssertionError(kind)

    async def _replace_worker(self, i: int) -> None:
        self.workers[i] = self.procs.start("worker", self.env)
        await self._worker_ready(self.workers[i])

    async def _worker_ready(self, worker: RoleProcess) -> None:
        r = aredis.Redis.from_url(self.redis.url)
        try:
            await wait_worker_ready(worker, r, OP, READY_SECONDS)
        finally:
            await r.aclose()

    async def _dispatcher_grouped(self, proc: RoleProcess) -> None:
        r = aredis.Redis.from_url(self.redis.url)

        async def grouped() -> bool:
            proc.check_alive()
            try:
                groups = await r.xinfo_groups(webhook_keys.outbox(OP))
            except RedisError:
                return False
            return any(g["name"] in (GROUP, GROUP.encode()) for g in groups)

        try:
            await wait_until(grouped, READY_SECONDS, interval=0.05, message="the dispatcher")
        finally:
            await r.aclose()

    async def _api_ready(self, base: str) -> None:
        async def ready() -> bool:
            try:
                return (await call(self.session, "GET", f"{base}/readyz")).status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await wait_until(ready, READY_SECONDS, interval=0.05, message=f"{base}/readyz")


async def run_faults(cluster: Cluster, stop: asyncio.Event) -> None:
    """Every round's faults, a pause of steady traffic before each and after the last."""
    seen: Counter[str] = Counter()
    for _ in range(PLAN.rounds):
        for kind in ROUND:
            await asyncio.sleep(PLAN.gap)  # steady traffic between faults (the schedule)
            await cluster.inject(kind, seen[kind])
            seen[kind] += 1
    await asyncio.sleep(PLAN.gap)
    stop.set()


async def outbox_state(url: str) -> dict[str, Any]:
    """The outbox stream's length and its consumer group's pending entries (diagnostics)."""
    r = aredis.Redis.from_url(url, decode_responses=True)
    try:
        stream = webhook_keys.outbox(OP)
        pending = await r.xpending_range(stream, GROUP, "-", "+", 10)
        return {"length": await r.xlen(stream), "pending": pending}
    finally:
        await r.aclose()


async def monitors(session: aiohttp.ClientSession, base: str, ids: set[str]) -> list[Any]:
    """Every request's status monitor, a few reads at a time."""
    limit = asyncio.Semaphore(8)

    async def one(rid: str) -> Any:
        async with limit:
            reply = await call(session, "GET", f"{base}/v1/queue/requests/{rid}")
            assert reply.status == 200, (rid, reply.status, reply.body[:300])
            return reply.json()

    return list(await asyncio.gather(*(one(rid) for rid in sorted(ids))))


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RestartableRedis]:
    """This test's own server (AOF, its own data folder), which it restarts."""
    server = RestartableRedis(tmp_path / "redis", free_port())
    await server.start()
    try:
        yield server
    finally:
        server.close()


async def test_chaos_under_steady_load(
    own_redis: RestartableRedis, procs: Processes, tmp_path: Path
) -> None:
    # A fresh connection per request: a kept-alive one would outlive a killed API.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
    runs_log = tmp_path / "runs.log"
    try:
        async with Receiver() as receiver:
            cluster = Cluster(procs, own_redis, session, runs_log)
            await cluster.start()
            endpoint = await call(
                session,
                "POST",
                f"{cluster.apis.bases[0]}/v1/webhooks/endpoints",
                body={"url": receiver.url + "/hook"},
            )
            assert endpoint.status == 201, endpoint.body
            deliveries = Deliveries(receiver.received, str(endpoint.json()["secret"]))

            tally = Tally()
            stop = asyncio.Event()
            started = cluster.started = time.monotonic()
            producer = asyncio.create_task(
                submit_steadily(session, cluster.apis, tally, PLAN, stop)
            )
            try:
                await run_faults(cluster, stop)
            finally:
                stop.set()
                tasks = await producer
                await asyncio.gather(*tasks)
            ids = tally.ids()

            async def drained() -> bool:
                return deliveries.covers(ids)

            try:
                await wait_until(drained, DRAIN_SECONDS, interval=0.1, message="every webhook")
            except AssertionError:
                missing = sorted(ids - set(deliveries.by_id))
                states = await monitors(session, cluster.apis.bases[0], set(missing[:5]))
                raise AssertionError(
                    f"{len(missing)} of {len(ids)} accepted requests got no terminal webhook "
                    f"within {DRAIN_SECONDS} s; e.g. {[(s['id'], s['status']) for s in states]}; "
                    f"outbox: {await outbox_state(own_redis.url)}; "
                    f"faults (s from start): {cluster.timeline}"
                ) from None
            elapsed = time.monotonic() - started
            finals = await monitors(session, cluster.apis.bases[0], ids)
            check_outcome(cluster, tally, deliveries, finals, handler_runs(str(runs_log)), elapsed)
    finally:
        await close_quietly(session)


def check_outcome(
    cluster: Cluster,
    tally: Tally,
    deliveries: Deliveries,
    finals: list[Any],
    runs: Counter[str],
    elapsed: float,
) -> None:
    """Print the figures line, then assert every property of the run."""
    ids = tally.ids()
    failed = [f for f in finals if f["status"] != "succeeded"]
    dup_runs = sum(max(0, runs[rid] - 1) for rid in ids)
    faults = cluster.faults
    print(
        f"\nchaos figures: {tally.submitted} requests submitted ({PLAN.rate:g}/s, "
        f"{PLAN.workers} workers x {PLAN.concurrency}), {len(ids)} accepted, "
        f"{len(finals) - len(failed)} succeeded, {len(failed)} failed "
        f"{dict(Counter(f['error']['type'].rsplit(':', 1)[-1] for f in failed))}, "
        f"in {elapsed:.1f} s; faults: {faults['worker-kill']} worker SIGKILL, "
        f"{faults['worker-term']} worker SIGTERM, {faults['dispatcher-kill']} dispatcher SIGKILL, "
        f"{faults['api-kill']} API SIGKILL, {faults['redis-restart']} Redis restart; answers: "
        f"{tally.answers['2xx']} 2xx ({tally.replays} replayed), {tally.answers['503']} "
        f"503+Retry-After, {tally.answers['refused']} refused, {tally.answers['dropped']} "
        f"dropped by a killed API, {tally.answers['other']} other; duplicates: {dup_runs} "
        f"handler runs, {deliveries.duplicates} webhook deliveries "
        f"({sum(n - 1 for n in deliveries.webhook_ids.values())} same webhook-id)",
        flush=True,
    )
    assert not tally.violations, tally.violations[:10]
    assert not tally.given_up, f"never accepted: {tally.given_up[:10]}"
    split = {key: rids for key, rids in tally.accepted.items() if len(rids) != 1}
    assert not split, f"an Idempotency-Key accepted as several requests: {split}"
    assert not failed, [(f["id"], f["attempt"], f["error"]) for f in failed[:10]]
    not_succeeded = {rid: t for rid, t in deliveries.types.items() if t != "request.succeeded"}
    assert not not_succeeded, not_succeeded
    assert all(runs[rid] >= 1 for rid in ids), "a request succeeded without a recorded run"
    assert set(runs) <= ids, f"runs of requests never accepted: {set(runs) - ids}"
    # At least once: duplicates are allowed, but only as many as the faults can explain.
    worker_faults = faults["worker-kill"] + faults["worker-term"]
    run_bound = (worker_faults + faults["redis-restart"] * PLAN.workers) * PLAN.concurrency
    assert dup_runs <= run_bound, (dup_runs, run_bound)
    delivery_bound = (faults["dispatcher-kill"] + faults["redis-restart"]) * SENDS_IN_FLIGHT
    assert deliveries.duplicates <= delivery_bound, (deliveries.duplicates, delivery_bound)
    for proc in cluster.alive():
        proc.check_alive()
