"""Batcher throughput: calls a second through ``Batcher.call`` (no HTTP, no queue).

Two shapes: ``steady`` (50 coroutines, each awaiting one call after another, like 50
concurrent submits) and ``burst`` (N calls issued at once, then awaited, like N finishes at
the same moment). Reports the median of a few rounds: calls a second, and this process's CPU
time per call (steadier than the rate on a shared machine).

    .venv/bin/python bench/batcher.py
    .venv/bin/python bench/batcher.py --burst 20000 --rounds 5

Everything runs on 127.0.0.1 against a private server and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aredis  # noqa: E402

from service.runtime.batcher import Batcher, Script  # noqa: E402
from service.runtime.embedded import EmbeddedRedis, free_port  # noqa: E402

SCRIPT = Script.of("redis.call('SET', KEYS[1], ARGV[1]) return 1")


async def steady(batcher: Batcher, lanes: int, seconds: float) -> tuple[float, float]:
    """Calls a second, and CPU µs per call, from ``lanes`` coroutines calling one after another."""
    done = 0
    stop = time.perf_counter() + seconds

    async def lane(n: int) -> None:
        nonlocal done
        key = f"{{b}}:{n}"
        while time.perf_counter() < stop:
            await batcher.call(SCRIPT, [key, "v"], 1)
            done += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane(n) for n in range(lanes)))
    return done / (time.perf_counter() - started), (time.process_time() - cpu) / done * 1e6


async def burst(batcher: Batcher, n: int) -> tuple[float, float]:
    """Calls a second, and CPU µs per call, for ``n`` calls issued at once."""
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(batcher.call(SCRIPT, [f"{{b}}:{i % 1000}", "v"], 1) for i in range(n)))
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), port=free_port(), appendonly=False)
        server.start()
        try:
            client = aredis.Redis.from_url(server.url, max_connections=args.max_connections)
            batcher = Batcher(client)
            await burst(batcher, 1000)  # warm up: scripts loaded, connections open
            rates_steady = [
                await steady(batcher, args.lanes, args.seconds) for _ in range(args.rounds)
            ]
            rates_burst = [await burst(batcher, args.burst) for _ in range(args.rounds)]
            await batcher.close()
            await client.aclose()
        finally:
            server.stop()
    show(f"steady ({args.lanes} lanes)", rates_steady)
    show(f"burst ({args.burst} at once, max_connections {args.max_connections})", rates_burst)


def show(what: str, rounds: list[tuple[float, float]]) -> None:
    rates = [r for r, _ in rounds]
    print(
        f"{what}: {statistics.median(rates):,.0f} calls/s, "
        f"{statistics.median(c for _, c in rounds):.1f} CPU µs/call "
        f"(rates {', '.join(f'{r:,.0f}' for r in rates)})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-connections", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
