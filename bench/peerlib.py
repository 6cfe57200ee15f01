"""Standard-library helpers shared by every load/peer script (they run in different venvs).

Each script prints exactly one line ``RESULT <json>`` on stdout; the harness reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

RESULT_PREFIX = "RESULT "


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    t = os.times()
    return t.user + t.system


def emit(result: dict[str, Any]) -> None:
    """Print the script's result line."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


# The peers' workers run under their own CLI (``saq``, ``arq``, ``dramatiq``), which imports the
# peer script as a module: the harness passes the Redis URL and the concurrency in the
# environment.
WORKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKER_CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))


def ready() -> None:
    """Tell the harness a long-running process is ready (workers, servers)."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    """p50 / p99 / max of latencies in milliseconds."""
    return {
        "n": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
    }


async def run_concurrently(
    n: int, concurrency: int, one: Callable[[int], Awaitable[Any]], time_limit: float
) -> int:
    """Call ``one(i)`` for i in 0..n-1 from ``concurrency`` coroutines; stop at ``time_limit`` s.

    Returns how many calls completed.
    """
    counter = iter(range(n))
    deadline = time.monotonic() + time_limit
    done = 0

    async def lane() -> None:
        nonlocal done
        for i in counter:
            if time.monotonic() > deadline:
                return
            await one(i)
            done += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return done


async def wait_until(
    check: Callable[[], Awaitable[bool]], time_limit: float, interval: float = 0.005
) -> bool:
    """Poll ``check`` every ``interval`` s until it is true (True) or ``time_limit`` passes."""
    deadline = time.monotonic() + time_limit
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return False


def peer_args(description: str) -> argparse.Namespace:
    """The command line every peer script accepts (its worker is the peer's own CLI)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("mode", choices=["enqueue", "drain", "latency"])
    p.add_argument("--url", required=True, help="redis://127.0.0.1:PORT/0")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--time-limit", type=float, default=120.0)
    return p.parse_args()
