"""arq contender (runs in bench/.peers/arq): enqueue, drain and latency modes, ``WorkerSettings``.

Worker: arq's CLI, ``arq peer_arq.WorkerSettings`` (one process), hiredis installed,
``max_jobs=50`` (default 10), ``poll_delay=10 ms`` (arq sleeps that long between polls even
when busy: its default 0.5 s would bound drain and latency by the poll). Result wait:
``job.result(poll_delay=1 ms)`` (arq polls).
Drain completion: ``ZCARD arq:queue == 0`` (arq removes a job from the queue in the same
transaction that stores its result).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlparse

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name
from peerlib import (
    WORKER_CONCURRENCY,
    WORKER_URL,
    cpu_seconds,
    emit,
    latency_summary,
    peer_args,
    ready,
    run_concurrently,
    wait_until,
)

WORKER_POLL = 0.01
RESULT_POLL = 0.001


async def echo(ctx: dict[str, Any], x: Any) -> Any:
    """The no-op job."""
    return x


def settings(url: str) -> RedisSettings:
    u = urlparse(url)
    return RedisSettings(host=u.hostname or "127.0.0.1", port=u.port or 6379)


async def on_startup(ctx: dict[str, Any]) -> None:
    ready()


class WorkerSettings:
    """The worker's settings for arq's CLI (``arq peer_arq.WorkerSettings``)."""

    functions = [echo]
    redis_settings = settings(WORKER_URL)
    max_jobs = WORKER_CONCURRENCY
    poll_delay = WORKER_POLL
    on_startup = on_startup
    keep_result = 3600


async def enqueue_all(pool: ArqRedis, n: int, concurrency: int, limit: float) -> int:
    async def one(i: int) -> None:
        await pool.enqueue_job("echo", i)

    return await run_concurrently(n, concurrency, one, limit)


async def main() -> None:
    args = peer_args(__doc__ or "")
    pool = await create_pool(settings(args.url), default_queue_name=default_queue_name)
    await pool.ping()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if args.mode in ("enqueue", "drain"):
        done = await enqueue_all(pool, args.n, args.concurrency, args.time_limit)
        t_enq = time.perf_counter() - t0
        finished = True
        if args.mode == "drain":

            async def drained() -> bool:
                return int(await pool.zcard(default_queue_name)) == 0

            finished = await wait_until(drained, args.time_limit)
        elapsed = time.perf_counter() - t0
        emit(
            {
                "n": done,
                "elapsed": elapsed,
                "enqueue_elapsed": t_enq,
                "finished": finished,
                "cpu_s": cpu_seconds() - cpu0,
            }
        )
    else:
        samples: list[float] = []
        deadline = time.monotonic() + args.time_limit
        for i in range(args.n + 20):
            if time.monotonic() > deadline:
                break
            s = time.perf_counter()
            job = await pool.enqueue_job("echo", i)
            assert job is not None
            res = await job.result(timeout=10, poll_delay=RESULT_POLL)
            assert res == i
            if i >= 20:  # warm-up excluded
                samples.append((time.perf_counter() - s) * 1000)
        emit(latency_summary(samples) | {"cpu_s": cpu_seconds() - cpu0})
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
