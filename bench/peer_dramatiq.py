"""Dramatiq contender (runs in bench/.peers/dramatiq): worker, enqueue, drain, latency modes.

Redis broker plus the Results middleware (Redis backend, ``store_results=True``). Worker: one
process, 50 worker threads. Enqueue: ``actor.send`` (synchronous) from ``--concurrency``
threads. Result wait: ``message.get_result(block=True)`` (the Redis backend blocks on a list
pop, no polling). Drain completion: ``HLEN dramatiq:default.msgs == 0`` (a message leaves that
hash when acked, after its result was stored).
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend
from peerlib import cpu_seconds, emit, latency_summary, peer_args, ready

args = peer_args(__doc__ or "")
broker = RedisBroker(url=args.url)
backend = RedisBackend(url=args.url)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def echo(x: Any) -> Any:
    """The no-op job."""
    return x


def run_worker() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, worker_threads=args.concurrency, worker_timeout=100)
    worker.start()
    ready()
    stop.wait(3600)
    worker.stop(timeout=5000)


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
    if args.mode == "worker":
        run_worker()
        return
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
