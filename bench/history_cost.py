"""The console history's cost: server CPU per submit and per finish, and bytes per operation.

Against a private server: what the history adds to each submit and finish script run
(``history()`` and ``history_flush()`` called n times in one script, against the empty loop;
µs per run, on the server; a merged run of many calls flushes once), then submits, claims and
finishes requests one at a time to fill both history rings for a whole simulated day (a fake
clock: every second of the last 15 minutes and every minute of 24 h, waits and runs spread over
several histogram bins) and reports their ``MEMORY USAGE``.

    .venv/bin/python bench/history_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def main(n: int, root: str) -> None:
    import redis.asyncio as aredis

    from service.queue import keys
    from service.queue.ids import new_request_id
    from service.queue.store import Limits, NewRequest, Queue
    from service.runtime.embedded import EmbeddedRedis, free_port

    limits = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=10**6, retry_backoff=1)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), port=free_port(), appendonly=False)
        server.start()
        try:
            r = aredis.Redis.from_url(server.url, socket_timeout=60)
            clock = Clock()
            q = Queue(r, clock=clock)

            async def cycle(wait: float, run: float) -> None:
                # One request submitted, claimed after wait s and finished after run s.
                rid = new_request_id("echo", q.now_ms())
                await q.submit(NewRequest("echo", rid, "alice", "{}", limits))
                clock.now += wait
                [job], _ = await q.claim("echo", "w1", "t", 1, lease=30, worker_ttl=10)
                clock.now += run
                await q.finish(job, "succeeded", "1")

            include = (Path(root) / "service/queue/lua/includes/history.lua").read_text()
            # One history() and one history_flush() per script run: as a submit or finish run
            # with one call (merged runs of many calls flush once for all).
            for name, call in (("submit", "history('s', t) history_flush(KEYS[3])"),
                               ("finish", "history('ok', t, 40, 900) history_flush(KEYS[3])"),
                               ("empty loop", "")):  # fmt: skip
                body = (
                    "local hist_s, hist_m = KEYS[1], KEYS[2]\n"
                    + (include if call else "")
                    + f"for i = 1, {n} do local t = 1800000000000 + i * 7 {call} end return 1"
                )
                await r.flushall()
                t0 = time.perf_counter()
                await r.eval(body, 3, keys.hist_seconds("echo"), keys.hist_minutes("echo"), "p")
                us = (time.perf_counter() - t0) / n * 1e6
                print(f"history as a {name} run with one call adds: {us:.2f} µs ({n} runs)")
            if not hasattr(keys, "hist_seconds"):
                return
            await r.flushall()
            spread = [(0.003, 0.02), (0.04, 0.2), (0.3, 1.5)]
            clock.now = 1_800_000_000.0
            for minute in range(1440):
                for wait, run in spread:
                    await cycle(wait, run)
                clock.now = 1_800_000_000.0 + (minute + 1) * 60
            for second in range(900):
                await cycle(0, 0)
                clock.now = 1_800_000_000.0 + 1440 * 60 + second + 1
            fine = await r.memory_usage(keys.hist_seconds("echo")) or 0
            coarse = await r.memory_usage(keys.hist_minutes("echo")) or 0
            print(f"history bytes per operation: per-second ring {fine}, per-minute ring {coarse},")
            print(f"  total {(fine + coarse) / 1024:.0f} KiB, bounded (a full day, 3 bins each)")
            await r.aclose()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    asyncio.run(main(args.n, args.root))
