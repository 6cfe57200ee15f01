"""A/B of the all-requests event stream (``GET /v1/queue/events``) under a burst of submits.

    .venv/bin/python bench/client_stream_ab.py OLD_CHECKOUT,NEW_CHECKOUT [ROUNDS] [N]

Per checkout (each from its own tree, as bench/ab.py runs them: its own valkey, API and worker
on 127.0.0.1): one all-requests stream is opened and read (resuming with ``Last-Event-ID`` if
cut off), N respond-async submits go in from 64 connections, and the run ends when the stream
has seen N terminal events or stops receiving any for 10 s. Reported: the finishes the stream
saw once (of N), its resets and reconnects, the API's and valkey's CPU per request, and the
Redis commands per request (``INFO commandstats``). Rounds rotate the order.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

from ab import Run, fill, print_ratios, rotate  # noqa: E402

TERMINAL = b'"status":"succeeded"'


class Reader:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/queue/events"
        self.last = ""
        self.finished: set[bytes] = set()
        self.dup = 0
        self.events = 0
        self.resets = 0
        self.reconnects = 0
        self.opened = asyncio.Event()
        self.t_last = time.monotonic()

    def blocks(self, blocks: list[bytes]) -> None:
        for b in blocks:
            if b"event: " not in b:
                continue
            self.events += 1
            self.t_last = time.monotonic()
            at = b.rfind(b"id: ")
            if at >= 0:
                self.last = b[at + 4 : b.find(b"\n", at)].decode()
            if b"event: reset" in b:
                self.resets += 1
            elif TERMINAL in b:
                i = b.find(b'"id":"') + 6
                rid = b[i : b.find(b'"', i)]
                if rid in self.finished:
                    self.dup += 1
                self.finished.add(rid)

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            headers = {"Last-Event-ID": self.last} if self.last else {}
            try:
                async with session.get(self.url, headers=headers) as resp:
                    self.opened.set()
                    tail = b""
                    async for chunk in resp.content.iter_any():
                        parts = (tail + chunk).replace(b"\r\n", b"\n").split(b"\n\n")
                        tail = parts.pop()
                        self.blocks(parts)
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.2)


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def one(root: Path, n: int) -> dict[str, float]:
    run = Run(root)
    try:
        run.worker = run.role("worker")
        api = psutil.Process(run.api.pid)
        valkey = psutil.Process(run.valkey.pid)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            reader = Reader(run.aport)
            task = asyncio.create_task(reader.run(session))
            await asyncio.wait_for(reader.opened.wait(), 15)
            await asyncio.sleep(1.0)  # the worker registers
            run.r.config_resetstat()
            c_api, c_valkey, t0 = cpu(api), cpu(valkey), time.monotonic()
            await fill(run, n)
            while len(reader.finished) < n and time.monotonic() - reader.t_last < 10:
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            d_api, d_valkey = cpu(api) - c_api, cpu(valkey) - c_valkey
            stats: dict[str, Any] = run.r.info("commandstats")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
        print(f"  {root.name}: commands per request: "
              + ", ".join(f"{k} {v / n:.2f}" for k, v in top), flush=True)  # fmt: skip
        return {
            "seen once": len(reader.finished) - reader.dup,
            "resets": reader.resets,
            "reconnects": reader.reconnects,
            "events/s": reader.events / took,
            "API µs/req": d_api / n * 1e6,
            "valkey µs/req": d_valkey / n * 1e6,
            "commands/req": sum(calls.values()) / n,
        }
    finally:
        run.close()


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    results = rotate(roots, rounds, lambda root: asyncio.run(one(root, n)), ",.1f")
    for root, values in results.items():
        row = ", ".join(f"{m} {statistics.median(v):,.1f}" for m, v in values.items())
        print(f"median {root.name} (of {n:,}): {row}")
    print_ratios(results, ("API µs/req", "valkey µs/req", "commands/req"))


if __name__ == "__main__":
    main()
