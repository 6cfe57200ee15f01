"""HTTP load and latency client (aiohttp, project venv), run as its own process.

Modes:
  load     POST a JSON body from ``--concurrency`` connections, ``--n`` requests or ``--duration``
           seconds, whichever ends first (the fallback when ``wrk`` is not installed)
  bulk     bulk submits (``POST /v1/echo/batch``) of ``--batch`` items each from
           ``--concurrency`` connections, ``--n`` items or ``--duration`` seconds
  sync     sequential synchronous ``POST /v1/echo`` (expects 201), latency per request
  sse      sequential ``respond-async`` POST, then the request's event stream until it ends
  monitor  sequential ``GET /v1/queue/requests/{id}``, latency per request
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import aiohttp
from peerlib import cpu_seconds, emit, latency_summary

BODY = b'{"hello":"world","n":1}'
JSON_HEADERS = {"Content-Type": "application/json"}
WARMUP = 20


async def load(args: argparse.Namespace) -> None:
    headers = dict(JSON_HEADERS)
    if args.prefer:
        headers["Prefer"] = args.prefer
    statuses: Counter[int] = Counter()
    remaining = args.n
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, t0, t0_unix = cpu_seconds(), time.perf_counter(), time.time()
        deadline = time.monotonic() + args.duration

        async def lane() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                async with session.post(args.url, data=BODY, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        await asyncio.gather(*(lane() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        emit(
            {
                "requests": sum(statuses.values()),
                "elapsed": elapsed,
                "t0_unix": t0_unix,  # the first submit, for a drain timed by the harness
                "statuses": {str(k): v for k, v in statuses.items()},
                "cpu_s": cpu_seconds() - cpu0,
            }
        )


async def bulk(args: argparse.Namespace) -> None:
    """Bulk submits of ``--batch`` items from ``--concurrency`` lanes, up to ``--n`` items."""
    item = b'{"input":' + BODY + b"}"

    def body(k: int) -> bytes:
        return b'{"requests":[' + b",".join([item] * k) + b"]}"

    full = body(args.batch)
    statuses: Counter[int] = Counter()
    remaining = args.n
    items = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, t0, t0_unix = cpu_seconds(), time.perf_counter(), time.time()
        deadline = time.monotonic() + args.duration

        async def lane() -> None:
            nonlocal remaining, items
            while remaining > 0 and time.monotonic() < deadline:
                k = min(args.batch, remaining)
                remaining -= k
                data = full if k == args.batch else body(k)
                async with session.post(args.url, data=data, headers=JSON_HEADERS) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                    if resp.status == 202:
                        items += k

        await asyncio.gather(*(lane() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        emit(
            {
                "requests": sum(statuses.values()),
                "items": items,
                "elapsed": elapsed,
                "t0_unix": t0_unix,  # the first submit, for a drain timed by the harness
                "statuses": {str(k): v for k, v in statuses.items()},
                "cpu_s": cpu_seconds() - cpu0,
            }
        )


async def sequential(args: argparse.Namespace) -> None:
    base = args.url.rstrip("/")
    # monitor: the ids given take turns, request by request (a change in the machine's speed
    # falls on each alike); each gets its own summary.
    ids: list[str] = args.id or [""]
    samples: dict[str, list[float]] = {rid: [] for rid in ids}
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        cpu0 = cpu_seconds()
        deadline = time.monotonic() + args.duration
        for i in range(args.n + WARMUP):
            if time.monotonic() > deadline:
                break
            rid = ids[i % len(ids)]
            s = time.perf_counter()
            status = await one(session, base, args, rid)
            took = (time.perf_counter() - s) * 1000
            statuses[status] += 1
            if i >= WARMUP:
                samples[rid].append(took)
        emit(
            latency_summary(samples[ids[0]])
            | {"statuses": {str(k): v for k, v in statuses.items()}, "cpu_s": cpu_seconds() - cpu0}
            | ({"by_id": {r: latency_summary(v) for r, v in samples.items()}} if args.id else {})
        )


async def one(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace, rid: str = ""
) -> int:
    if args.mode == "sync":
        async with session.post(f"{base}/v1/echo", data=BODY, headers=JSON_HEADERS) as resp:
            await resp.read()
            return resp.status
    if args.mode == "monitor":
        async with session.get(f"{base}/v1/queue/requests/{rid}") as resp:
            await resp.read()
            return resp.status
    headers = JSON_HEADERS | {"Prefer": "respond-async"}
    async with session.post(f"{base}/v1/echo", data=BODY, headers=headers) as resp:
        body = await resp.json()
        if resp.status != 202:
            return resp.status
    async with session.get(f"{base}/v1/queue/requests/{body['id']}/events") as resp:
        terminal = False
        async for line in resp.content:  # the stream ends after the terminal event
            if line.startswith(b"data:") and b'"status":"succeeded"' in line:
                terminal = True
                break
        return resp.status if terminal else 599


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["load", "bulk", "sync", "sse", "monitor"])
    p.add_argument("--url", required=True, help="load: the full URL; others: the base URL")
    p.add_argument("--prefer", default="respond-async")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--duration", type=float, default=60.0, help="time limit, seconds")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument(
        "--id", action="append", help="monitor: the request id (several: they take turns)"
    )
    p.add_argument("--batch", type=int, default=100, help="bulk: items per call")
    args = p.parse_args()
    modes = {"load": load, "bulk": bulk}
    asyncio.run(modes.get(args.mode, sequential)(args))


if __name__ == "__main__":
    main()
