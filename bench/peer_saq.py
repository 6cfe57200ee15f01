"""SAQ contender (runs in bench/.peers/saq): enqueue, drain and latency modes, and ``settings``.

Worker: SAQ's CLI, ``saq peer_saq.settings`` (one process, its default; ``concurrency=50``,
SAQ's default being 10), hiredis installed. Enqueue: ``queue.enqueue`` from 50 coroutines
(``max_concurrent_ops=50``). Result wait: ``queue.listen`` on the job's key (pub/sub) registered
before ``enqueue``, then ``job.refresh()`` (``queue.apply`` polls every 0.5 s in this version).
Drain completion: ``ZCARD saq:default:incomplete == 0`` (removed in the same pipeline that
stores the finished job).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

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
from saq import Queue
from saq.job import TERMINAL_STATUSES, Status


async def echo(ctx: Any, *, x: Any) -> Any:
    """The no-op job."""
    return x


def terminal(job_key: str, status: Status) -> bool:
    return status in TERMINAL_STATUSES


async def startup(ctx: Any) -> None:
    ready()


# The worker's settings for SAQ's CLI (``saq peer_saq.settings``).
settings = {
    "queue": Queue.from_url(WORKER_URL),
    "functions": [echo],
    "concurrency": WORKER_CONCURRENCY,
    "startup": startup,
}


async def main() -> None:
    args = peer_args(__doc__ or "")
    logging.basicConfig(level=logging.WARNING)
    queue = Queue.from_url(args.url, max_concurrent_ops=args.concurrency)
    await queue.connect()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if args.mode in ("enqueue", "drain"):

        async def one(i: int) -> None:
            await queue.enqueue("echo", x=i)

        done = await run_concurrently(args.n, args.concurrency, one, args.time_limit)
        t_enq = time.perf_counter() - t0
        finished = True
        if args.mode == "drain":

            async def drained() -> bool:
                return await queue.count("incomplete") == 0

            finished = await wait_until(drained, args.time_limit)
        emit(
            {
                "n": done,
                "elapsed": time.perf_counter() - t0,
                "enqueue_elapsed": t_enq,
                "finished": finished,
                "cpu_s": cpu_seconds() - cpu0,
            }
        )
    else:
        samples: list[float] = []
        # Keep SAQ's one pattern subscription open, as in a busy app (else it is dropped
        # and re-made around every wait, and a fast job's notification can be missed).
        keep = asyncio.create_task(queue.listen(["bench-keepalive"], lambda *_: False, None))
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + args.time_limit
        for i in range(args.n + 20):
            if time.monotonic() > deadline:
                break
            s = time.perf_counter()
            key = f"lat-{i}"
            waiter = asyncio.create_task(queue.listen([key], terminal, 10))
            await asyncio.sleep(0)  # the listener is registered before the enqueue
            job = await queue.enqueue("echo", key=key, x=i)
            assert job is not None
            await waiter
            await job.refresh()
            assert job.result == i, job.result
            if i >= 20:
                samples.append((time.perf_counter() - s) * 1000)
        keep.cancel()
        emit(latency_summary(samples) | {"cpu_s": cpu_seconds() - cpu0})
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
