"""Dramatiq contender (runs in bench/.peers/dramatiq): enqueue, drain, latency modes.

Redis broker plus the Results middleware (Redis backend, ``store_results=True``), hiredis
installed. Worker: Dramatiq's CLI, ``dramatiq peer_dramatiq`` with its defaults (one process
per core, 8 threads each), which imports this module: the URL comes from the environment.
Enqueue: ``actor.send`` (synchronous) from ``--concurrency``
threads. Result wait: ``message.get_result(block=True)`` (the Redis backend blocks on a list
pop, no polling). Drain completion: ``HLEN dramatiq:default.msgs == 0`` (a message leaves that
hash when acked, after its result was stored).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from peerlib import WORKER_URL, cpu_seconds, emit, latency_summary, peer_args, ready


class Ready(Middleware):
    """Prints READY once a worker process has booted (its consumers and threads are running)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        ready()


URL = os.environ.get("BENCH_REDIS_URL", WORKER_URL)
broker = RedisBroker(url=URL)
backend = RedisBackend(url=URL)
broker.add_middleware(Results(backend=backend))
broker.add_middleware(Ready())
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def echo(x: Any) -> Any:
    """The no-op job."""
    return x


def send_all(n: int, concurrency: int, limit: float) -> int:
    deadline = time.monotonic() + limit
    counter = iter(range(n))
    lock = threading.Lock()
    done = [0]

    def lane() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None or time.monotonic() > deadline:
                return
            echo.send(i)
            with lock:
                done[0] += 1

    if concurrency <= 1:
        lane()
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(lane) for _ in range(concurrency)]:
                f.result()
    return done[0]


def main() -> None:
    args = peer_args(__doc__ or "")
    r = redis.Redis.from_url(args.url)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if args.mode in ("enqueue", "drain"):
        done = send_all(args.n, args.concurrency, args.time_limit)
        t_enq = time.perf_counter() - t0
        finished = True
        if args.mode == "drain":
            deadline = time.monotonic() + args.time_limit
            finished = False
            while time.monotonic() < deadline:
                if int(r.hlen("dramatiq:default.msgs")) == 0:  # type: ignore[arg-type]
                    finished = True
                    break
                time.sleep(0.005)
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
        deadline = time.monotonic() + args.time_limit
        for i in range(args.n + 20):
            if time.monotonic() > deadline:
                break
            s = time.perf_counter()
            msg = echo.send(i)
            res = msg.get_result(backend=backend, block=True, timeout=10_000)
            assert res == i, res
            if i >= 20:
                samples.append((time.perf_counter() - s) * 1000)
        emit(latency_summary(samples) | {"cpu_s": cpu_seconds() - cpu0})


if __name__ == "__main__":
    main()
