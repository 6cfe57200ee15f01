"""Webhook delivery: deliveries per second with one dispatcher, and finish → arrival delay.

    .venv/bin/python bench/webhooks.py                 # 5,000 deliveries, 1,000 for latency
    .venv/bin/python bench/webhooks.py --n 2000 --latency-n 500

One `acceptd dispatcher` process sends to a receiver process on 127.0.0.1 (signing included);
the bench finishes requests through the real scripts, so each one writes its outbox entry.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import redis.asyncio as aredis  # noqa: E402
from aiohttp import web  # noqa: E402

from service.embedded import EmbeddedRedis, free_port  # noqa: E402
from service.ids import new_request_id  # noqa: E402
from service.queue import Job, Limits, Queue  # noqa: E402
from webhooks import WebhookStore  # noqa: E402

OP = "echo"
CLIENT = "anonymous"
LIMITS = Limits(attempts=1, timeout=10, result_ttl=600, max_queue_depth=10**7, retry_backoff=1)


def receiver(port: int) -> None:
    """A receiver process: 204 to every POST, arrival time per request id."""
    arrivals: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        data = orjson.loads(body)["data"]
        arrivals.setdefault(data["id"], time.time())
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(arrivals), content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def finish_many(queue: Queue, n: int) -> dict[str, float]:
    """Submit, claim and finish ``n`` requests; when each finish returned."""
    ids = [new_request_id(OP, queue.now_ms()) for _ in range(n)]
    for i in range(0, n, 500):
        await asyncio.gather(
            *(queue.submit(OP, rid, CLIENT, "{}", LIMITS) for rid in ids[i : i + 500])
        )
    jobs: list[Job] = []
    while len(jobs) < n:
        got, _ = await queue.claim(OP, "bench", "t", 1000, lease=600, worker_ttl=60)
        if not got:
            break
        jobs.extend(got)
    finished: dict[str, float] = {}
    for i in range(0, len(jobs), 200):
        batch = jobs[i : i + 200]
        await asyncio.gather(*(queue.finish(j, "succeeded", "{}") for j in batch))
        now = time.time()
        for j in batch:
            finished[j.request_id] = now
    return finished


async def arrivals(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url) as resp:
        data: dict[str, float] = orjson.loads(await resp.read())
        return data


async def wait_for(
    session: aiohttp.ClientSession, url: str, n: int, limit: float
) -> dict[str, float]:
    deadline = time.monotonic() + limit
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = await arrivals(session, url)
        if len(got) >= n:
            break
        await asyncio.sleep(0.2)
    return got


def start_dispatcher(url: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ACCEPTD_REDIS__URL": url,
        "ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "127.0.0.0/8",
        "ACCEPTD_WEBHOOKS__CONCURRENCY": "64",
        "ACCEPTD_WEBHOOKS__PER_ENDPOINT_CONCURRENCY": "64",
    }
    log = open(tmp / "dispatcher.log", "wb")  # noqa: SIM115 - closed with the process
    env["ACCEPTD_WEBHOOKS__TIMEOUT_SECONDS"] = os.environ.get("BENCH_TIMEOUT", "15")
    return subprocess.Popen(
        [sys.executable, "-m", "service", "dispatcher", "--config", str(ROOT / "config.yaml")],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def run(n: int, latency_n: int, tmp: Path) -> dict[str, Any]:
    server = EmbeddedRedis(tmp / "redis", port=free_port(), appendonly=False)
    server.start()
    port = free_port()
    ctx = mp.get_context("spawn")
    recv = ctx.Process(target=receiver, args=(port,), daemon=True)
    recv.start()
    r = aredis.Redis.from_url(server.url)
    dispatcher: subprocess.Popen[bytes] | None = None
    stats_url = f"http://127.0.0.1:{port}/stats"
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    await arrivals(session, stats_url)
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            store = WebhookStore(r, [OP])
            await store.create_endpoint(CLIENT, f"http://127.0.0.1:{port}/hook")
            queue = Queue(r)

            # Throughput: a warm dispatcher drains an outbox filled as fast as requests finish.
            dispatcher = start_dispatcher(server.url, tmp)
            proc = psutil.Process(dispatcher.pid)
            for _ in range(100):
                if b"running" in (tmp / "dispatcher.log").read_bytes():
                    break
                await asyncio.sleep(0.1)
            cpu0 = proc.cpu_times()
            spy = None
            if os.environ.get("BENCH_PROFILE"):
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                     str(dispatcher.pid), "-d", "5", "-r", "200", "--format", "raw",
                     "-o", os.environ["BENCH_PROFILE"]],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            started = time.time()
            await finish_many(queue, n)
            got = await wait_for(session, stats_url, n, 120)
            elapsed = max(got.values()) - started if got else float("nan")
            cpu = proc.cpu_times()
            if spy is not None:
                spy.wait(30)
            out["delivered"] = len(got)
            out["per_second"] = len(got) / elapsed
            used = cpu.user + cpu.system - cpu0.user - cpu0.system
            out["cpu_us_per_delivery"] = used / max(len(got), 1) * 1e6

            # Latency: a dispatcher already running, requests finishing in small batches.
            before = set(got)
            finished: dict[str, float] = {}
            for _ in range(latency_n // 50):
                finished.update(await finish_many(queue, 50))
                await asyncio.sleep(0.05)
            got = await wait_for(session, stats_url, n + len(finished), 60)
            delays = sorted(
                (got[k] - finished[k]) * 1000 for k in got if k in finished and k not in before
            )
            out["latency_n"] = len(delays)
            out["p50_ms"] = statistics.median(delays) if delays else float("nan")
            out["p99_ms"] = delays[int(len(delays) * 0.99)] if delays else float("nan")
    finally:
        if dispatcher is not None:
            dispatcher.terminate()
            dispatcher.wait(10)
            if os.environ.get("BENCH_LOG"):
                Path(os.environ["BENCH_LOG"]).write_bytes((tmp / "dispatcher.log").read_bytes())
        recv.terminate()
        recv.join(5)
        await r.aclose()
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency-n", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(args.n, args.latency_n, Path(tmp)))
    print("| deliveries | per second (1 dispatcher) | dispatcher CPU per delivery "
          "| finish → arrival p50 | p99 |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {res['delivered']:,} | {res['per_second']:,.0f} | {res['cpu_us_per_delivery']:,.0f} µs "
        f"| {res['p50_ms']:.1f} ms | {res['p99_ms']:.1f} ms |"
    )


if __name__ == "__main__":
    main()
