"""The console history's cost: server time per submit and finish, and bytes per operation.

Against a private server, three measures:

1. whole ``submit.lua`` and ``finish.lua`` runs (server time from ``INFO commandstats``), one
   request per run and then 100 gathered at a time (the batcher merges them into few runs);
   run it with ``--root`` at a tree without the history for the same figures before it;
2. what the history alone adds to a run: ``history()`` and ``history_flush()`` called n times
   in one script against the empty loop (µs per run; a merged run flushes once for all calls);
3. the rings' ``MEMORY USAGE`` once a simulated day (a fake clock) has filled them: every
   minute of 24 h with waits and runs over three histogram bins, every second of 15 minutes.

    .venv/bin/python bench/history_cost.py
    .venv/bin/python bench/history_cost.py --root /path/to/a/tree/without/it
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OP = "echo"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def evalsha_usec(r: Any) -> float:
    stats = (await r.info("commandstats")).get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0))


async def script_runs(r: Any, q: Any, runs: int, at_once: int) -> tuple[float, float]:
    """Server µs per request of submit.lua and finish.lua, ``at_once`` requests gathered."""
    from service.queue.ids import new_request_id
    from service.queue.store import Limits, NewRequest

    limits = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=10**6, retry_backoff=1)
    await r.flushall()
    rids = [new_request_id(OP, q.now_ms()) for _ in range(runs)]
    u0 = await evalsha_usec(r)
    for i in range(0, runs, at_once):
        batch = rids[i : i + at_once]
        await asyncio.gather(
            *(q.submit(NewRequest(OP, rid, "alice", "{}", limits)) for rid in batch)
        )
    u1 = await evalsha_usec(r)
    jobs: list[Any] = []
    while len(jobs) < runs:
        got, _ = await q.claim(OP, "w1", "t", 100, lease=30, worker_ttl=10)
        jobs.extend(got)
    u2 = await evalsha_usec(r)
    for i in range(0, runs, at_once):
        await asyncio.gather(*(q.finish(job, "succeeded", "1") for job in jobs[i : i + at_once]))
    u3 = await evalsha_usec(r)
    return (u1 - u0) / runs, (u3 - u2) / runs


async def history_alone(r: Any, include: str, n: int) -> dict[str, float]:
    """µs the history adds to a run with one call, as submit and finish call it."""
    from service.queue import keys

    out = {}
    for name, call in (("submit", "history(KEYS[3], 's', t) history_flush(KEYS[3])"),
                       ("finish", "history(KEYS[3], 'ok', t, 40, 900) history_flush(KEYS[3])"),
                       ("empty loop", "")):  # fmt: skip
        body = (
            "local hist_s, hist_m = KEYS[1], KEYS[2]\n"
            + (include if call else "")
            + f"for i = 1, {n} do local t = 1800000000000 + i * 7 {call} end return 1"
        )
        await r.flushall()
        t0 = time.perf_counter()
        await r.eval(body, 3, keys.hist_seconds(OP), keys.hist_minutes(OP), keys.pending(OP))
        out[name] = (time.perf_counter() - t0) / n * 1e6
    return out


async def ring_bytes(r: Any, q: Any, clock: Clock) -> tuple[int, int]:
    """The rings' sizes after a full simulated day."""
    from service.queue import keys
    from service.queue.ids import new_request_id
    from service.queue.store import Limits, NewRequest

    limits = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=10**6, retry_backoff=1)

    async def cycle(wait: float, run: float) -> None:
        rid = new_request_id(OP, q.now_ms())
        await q.submit(NewRequest(OP, rid, "alice", "{}", limits))
        clock.now += wait
        [job], _ = await q.claim(OP, "w1", "t", 1, lease=30, worker_ttl=10)
        clock.now += run
        await q.finish(job, "succeeded", "1")

    await r.flushall()
    start = clock.now = 1_800_000_000.0
    for minute in range(1440):
        for wait, run in ((0.003, 0.02), (0.04, 0.2), (0.3, 1.5)):
            await cycle(wait, run)
        clock.now = start + (minute + 1) * 60
    for second in range(900):
        await cycle(0, 0)
        clock.now = start + 1440 * 60 + second + 1
    fine = await r.memory_usage(keys.hist_seconds(OP)) or 0
    coarse = await r.memory_usage(keys.hist_minutes(OP)) or 0
    return fine, coarse


async def main(n: int, root: str) -> None:
    import redis.asyncio as aredis

    from service.queue.store import Queue
    from service.runtime.embedded import EmbeddedRedis, free_port

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), port=free_port(), appendonly=False)
        server.start()
        try:
            r = aredis.Redis.from_url(server.url, socket_timeout=60)
            clock = Clock()
            q = Queue(r, clock=clock)
            runs = min(n, 5000)
            for at_once in (1, 100):
                submit, finish = await script_runs(r, q, runs, at_once)
                print(f"{at_once:>3} at once: submit.lua {submit:.1f} µs, finish.lua "
                      f"{finish:.1f} µs of server time per request ({runs} requests)")  # fmt: skip
            path = Path(root) / "service/queue/lua/includes/history.lua"
            if path.exists():
                for name, us in (await history_alone(r, path.read_text(), n)).items():
                    print(f"the history alone in a {name} run of one call: {us:.2f} µs")
                fine, coarse = await ring_bytes(r, q, clock)
                total = (fine + coarse) / 1024
                print(f"history bytes per operation, a full day: per-second ring {fine}, "
                      f"per-minute ring {coarse}, total {total:.0f} KiB")  # fmt: skip
            await r.aclose()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--n", type=int, default=50_000, help="history() calls (measure 2)")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    asyncio.run(main(args.n, args.root))
