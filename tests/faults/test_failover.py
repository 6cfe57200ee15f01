"""A cluster master dies while requests flow: the service fails over by itself.

A private 3-master cluster with one replica each (``cluster-node-timeout`` 2 s); an API, a
worker and a dispatcher on it; a client submitting steadily (each submit with an
``Idempotency-Key``, retried after ``Retry-After`` on 503, like the chaos test's). The master
owning the ``sleep`` operation's slot is SIGKILLed; its replica takes over after the node
timeout (about 3-4 s of refused writes). Then: no answer was other than a 2xx or a 503 with
``Retry-After`` (never a 500, never a hang), submits are accepted again without any process
being restarted, and every accepted request succeeds.

Replication is asynchronous (``redis.wait_replicas: 0``, the default): a submit the master
acknowledged in its last moments may not have reached the replica. Such a request reads 404
afterwards. The test tells it apart from a bug: it is allowed only if its 202 arrived within
``LAG_WINDOW`` of the kill, and the test says how many there were (a warning). Any other
request that does not succeed fails the test. ``redis.wait_replicas`` (``test_wait_replicas``)
closes that window.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import RedisCluster

from service.queue import keys
from service.runtime.embedded import free_port
from service.runtime.redis import connect
from tests.support.chaos import Apis, Plan, Tally, submit_steadily
from tests.support.cluster import LocalCluster
from tests.support.faults import role_env, wait_log
from tests.support.processes import Processes, wait_http_ready, wait_until

OP = "sleep"
PLAN = Plan(rate=15.0, handler_seconds=0.05)
READY_SECONDS = 20.0
# Flow before the kill, and after submits are accepted again.
BEFORE_KILL = 2.0
AFTER_RECOVERY = 2.0
RECOVERY_SECONDS = 25.0
DRAIN_SECONDS = 30.0
# How long before the kill a 202 may have come from a write the replica never got: on
# loopback replication lags by well under a millisecond; this is generous.
LAG_WINDOW = 1.0

pytestmark = [
    pytest.mark.timeout(120),
    # What async replication lost is allowed and reported (the suite makes other warnings errors).
    pytest.mark.filterwarnings("default:asynchronous replication lost:UserWarning"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", masters=3, replicas=1)
    c.start()
    try:
        yield c
    finally:
        c.stop()


async def _statuses(session: aiohttp.ClientSession, base: str, ids: list[str]) -> dict[str, str]:
    """Each request's status through the API (``missing`` for a 404)."""

    async def one(rid: str) -> tuple[str, str]:
        async with session.get(f"{base}/v1/queue/requests/{rid}") as resp:
            if resp.status == 404:
                return rid, "missing"
            assert resp.status == 200, (rid, resp.status, await resp.text())
            return rid, str((await resp.json())["status"])

    return dict(await asyncio.gather(*(one(rid) for rid in ids)))


async def test_a_master_killed_under_load_fails_over_and_every_request_finishes(
    cluster: LocalCluster, procs: Processes
) -> None:
    victim = cluster.master_of(keys.pending(OP))
    assert cluster.replicas_per_master == 1  # the victim has a replica to take over
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = role_env(
        cluster.url,
        port,
        ACCEPTD_REDIS__CLUSTER="true",
        ACCEPTD_WORKER__CONCURRENCY=str(PLAN.concurrency),
    )
    api = procs.start("api", env)
    worker = procs.start("worker", env)
    dispatcher = procs.start("dispatcher", env)
    apis = Apis([base])
    tally = Tally()
    stop = asyncio.Event()
    redis = connect(cluster.url, cluster=True)
    assert isinstance(redis, RedisCluster)
    async with aiohttp.ClientSession() as session:
        try:
            await wait_http_ready(api, session, base, READY_SECONDS)

            async def worker_ready() -> bool:
                worker.check_alive()
                return bool(await redis.zcard(keys.key(OP, "workers")))

            await wait_until(worker_ready, READY_SECONDS, message="the worker's first claim")
            await wait_log(dispatcher, "acceptd: running", READY_SECONDS)

            submitter = asyncio.create_task(submit_steadily(session, apis, tally, PLAN, stop))
            await wait_until(
                lambda: _true(len(tally.accepted_at) >= PLAN.rate * BEFORE_KILL),
                READY_SECONDS,
                message="submits before the kill",
            )
            killed_at = time.monotonic()
            victim.kill()

            async def accepted_again() -> bool:
                # A submit started after the kill was accepted: the service recovered.
                return any(t > killed_at + 1.0 for t in tally.accepted_at.values()) and (
                    tally.answers["503"] > 0
                )

            await wait_until(
                accepted_again, RECOVERY_SECONDS, interval=0.1, message="submits accepted again"
            )
            recovered_at = time.monotonic()
            await wait_until(
                lambda: _true(time.monotonic() > recovered_at + AFTER_RECOVERY),
                AFTER_RECOVERY + 5,
                interval=0.1,
                message="submits after recovery",
            )
            stop.set()
            tasks = await submitter
            await asyncio.wait_for(asyncio.gather(*tasks), 40)

            assert not tally.violations, tally.violations[:10]  # only 2xx and 503+Retry-After
            assert not tally.given_up, tally.given_up[:10]
            assert tally.answers["503"] > 0  # the outage was seen, and answered 503
            assert all(len(ids) == 1 for ids in tally.accepted.values())

            ids = sorted(tally.ids())
            missing = await _finished(session, base, tally, killed_at)
            for proc in (api, worker, dispatcher):
                proc.check_alive()  # nothing was restarted: each recovered by itself
            print(
                f"failover: {len(ids)} accepted, {len(missing)} lost by async replication, "
                f"answers {dict(tally.answers)}, "
                f"submits accepted again {recovered_at - killed_at:.1f} s after the kill (at most)"
            )
        finally:
            stop.set()
            await redis.aclose()


async def _finished(
    session: aiohttp.ClientSession, base: str, tally: Tally, killed_at: float
) -> list[str]:
    """Wait until every accepted request succeeded or is gone; the gone ones, each checked
    to be a write acknowledged just before the kill (what async replication can lose)."""
    ids = sorted(tally.ids())
    found: dict[str, str] = {}

    async def drained() -> bool:
        found.update(await _statuses(session, base, ids))
        return all(s in ("succeeded", "missing") for s in found.values())

    try:
        await wait_until(drained, DRAIN_SECONDS, interval=0.25, message="the drain")
    except AssertionError:
        late = {rid: s for rid, s in found.items() if s not in ("succeeded", "missing")}
        raise AssertionError(f"requests not finished: {late}") from None
    missing = [rid for rid, s in found.items() if s == "missing"]
    unexplained = [
        rid
        for rid in missing
        if not killed_at - LAG_WINDOW <= tally.accepted_at[rid] <= killed_at + 0.5
    ]
    assert not unexplained, f"requests gone that replication cannot explain: {unexplained}"
    if missing:
        warnings.warn(
            f"asynchronous replication lost {len(missing)} acknowledged submit(s) "
            f"(202 within {LAG_WINDOW} s before the master was killed): {missing}",
            stacklevel=1,
        )
    return missing


async def _true(value: bool) -> bool:
    return value
