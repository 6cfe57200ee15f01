"""arq contender (runs in bench/.peers/arq): worker, enqueue, drain and latency modes.

Worker: one process, ``max_jobs=50``, ``poll_delay=10 ms`` (the default 0.5 s poll would bound
drain and latency by the poll). Result wait: ``job.result(poll_delay=1 ms)`` (arq polls).
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
from arq.worker import Worker
from peerlib import (
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


async def run_worker(url: str, concurrency: int) -> None:
    worker = Worker(
        functions=[echo],  # type: ignore[list-item]
        redis_settings=settings(url),
        max_jobs=concurrency,
        poll_delay=WORKER_POLL,
        on_startup=on_startup,
        handle_signals=True,
        keep_result=3600,
    )
    await worker.async_run()


async def enqueue_all(pool: ArqRedis, n: int, concurrency: int, limit: float) -> int:
    async def one(i: int) -> None:
        await pool.enqueue_job("echo", i)

    return await run_concurrently(n, concurrency, one, limit)


async def main() -> None:
    args = peer_args(__doc__ or "")
    if args.mode == "worker":
        await run_worker(args.url, args.concurrency)
        return
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
