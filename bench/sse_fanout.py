"""SSE fan-out: N open streams on one API process, each on its own queued request.

Reports the server's RSS per open stream and the delay from a request finishing (its
finish script returning) to its stream receiving the terminal event (p50/p99).

    .venv/bin/python bench/sse_fanout.py            # 1,000 and 5,000 streams
    .venv/bin/python bench/sse_fanout.py --streams 500

Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
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
import psutil  # noqa: E402
import redis.asyncio as aredis  # noqa: E402

from service.queue.ids import new_request_id  # noqa: E402
from service.queue.store import Job, Limits, NewRequest, Queue  # noqa: E402
from service.runtime.embedded import EmbeddedRedis, free_port  # noqa: E402

OP = "echo"
LIMITS = Limits(attempts=1, timeout=10, result_ttl=600, max_queue_depth=10**7, retry_backoff=1)


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _listen(base: str, ids: list[str], ready: Any, out_path: str, deadline: float) -> None:
    """Open one stream per id; record when each terminal event arrives."""
    received: dict[str, float] = {}
    opened = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(rid: str) -> None:
            # Reads raw chunks and looks for markers: the client must cost far less than the
            # server, or the bench measures the client.
            nonlocal opened
            async with session.get(f"{base}/v1/queue/requests/{rid}/events") as resp:
                assert resp.status == 200, resp.status
                seen_status = False
                tail = b""
                async for chunk in resp.content.iter_any():
                    data = tail + chunk
                    if not seen_status and b"event: status" in data:
                        seen_status = True
                        opened += 1
                        if opened == len(ids):
                            ready.set()
                        data = data[data.index(b"event: status") + 13 :]
                    if seen_status and b'"status":"succeeded"' in data:
                        received[rid] = time.time()
                        return
                    tail = data[-64:]

        tasks = []
        for i, rid in enumerate(ids):
            tasks.append(asyncio.create_task(one(rid)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # pace connection setup a little
        remaining = deadline - time.time()
        await asyncio.wait(tasks, timeout=max(remaining, 1))
        for t in tasks:
            t.cancel()
    Path(out_path).write_text(json.dumps(received))


def listener(base: str, ids: list[str], ready: Any, out_path: str, deadline: float) -> None:
    """The client process."""
    raise_fd_limit()
    asyncio.run(_listen(base, ids, ready, out_path, deadline))


def start_api(redis_url: str, port: int, n: int) -> subprocess.Popen[bytes]:
    """One ``acceptd api`` process allowed ``n`` streams (and some)."""
    env = {
        **os.environ,
        "ACCEPTD_REDIS__URL": redis_url,
        "ACCEPTD_SERVER__PORT": str(port),
        "ACCEPTD_SERVER__MAX_STREAMS": str(n + 100),
        "ACCEPTD_SERVER__MAX_STREAMS_PER_CLIENT": str(n + 100),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service", "api", "--config", str(ROOT / "config.yaml")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=raise_fd_limit,
    )


async def wait_healthy(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            try:
                async with s.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def submit_all(queue: Queue, n: int) -> list[str]:
    """Queue ``n`` requests, 500 at a time; their ids."""
    ids = [new_request_id(OP, queue.now_ms()) for _ in range(n)]
    for i in range(0, n, 500):
        await asyncio.gather(
            *(
                queue.submit(NewRequest(OP, rid, "anonymous", "{}", LIMITS))
                for rid in ids[i : i + 500]
            )
        )
    return ids


async def claim_all(queue: Queue, n: int) -> list[Job]:
    claimed: list[Job] = []
    while len(claimed) < n:
        jobs, _ = await queue.claim(OP, "bench", "t", 1000, lease=600, worker_ttl=60)
        if not jobs:
            break
        claimed.extend(jobs)
    return claimed


def start_profiler(profile: str, pid: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
         "-d", "6", "-r", "200", "--format", "raw", "-o", profile],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def finish_all(queue: Queue, claimed: list[Job], rate: float) -> dict[str, float]:
    """Finish every claimed job; when each finish was sent.

    rate 0: all at once (one pipeline), the worst burst; else a steady finish rate.
    """
    finished: dict[str, float] = {}
    step = len(claimed) if rate <= 0 else max(1, int(rate / 20))
    for i in range(0, len(claimed), step):
        batch = claimed[i : i + step]
        # Timed from the moment the finishes are sent: conservative (it includes Redis
        # running all of the batch's finish scripts).
        now = time.time()
        await asyncio.gather(*(queue.finish(j, "succeeded", "{}") for j in batch))
        for j in batch:
            finished[j.request_id] = now
        if rate > 0:
            await asyncio.sleep(0.05)
    return finished


def summary(
    n: int, rate: float, rss: int, received: dict[str, float], finished: dict[str, float]
) -> dict[str, Any]:
    """One table row: RSS per stream (``rss``: the growth while they opened) and delays."""
    delays = sorted((received[k] - finished[k]) * 1000 for k in received if k in finished)
    if not delays:
        raise RuntimeError("no terminal event arrived")
    return {
        "streams": n,
        "rate": rate,
        "delivered": len(delays),
        "rss_per_stream_kib": rss / n / 1024,
        "p50_ms": statistics.median(delays),
        "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
    }


async def measure(
    n: int, tmp: Path, profile: str | None = None, rate: float = 0.0
) -> dict[str, Any]:
    redis_dir = tmp / f"redis-{n}"
    server = EmbeddedRedis(redis_dir, port=free_port(), appendonly=False)
    server.start()
    port = free_port()
    api = start_api(server.url, port, n)
    base = f"http://127.0.0.1:{port}"
    r = aredis.Redis.from_url(server.url)
    try:
        await wait_healthy(base)
        queue = Queue(r)
        ids = await submit_all(queue, n)
        proc = psutil.Process(api.pid)
        rss_before = proc.memory_info().rss
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        out = tmp / f"received-{n}.json"
        deadline = time.time() + 120
        child = ctx.Process(target=listener, args=(base, ids, ready, str(out), deadline))
        child.start()
        if not await asyncio.to_thread(ready.wait, 90):
            raise RuntimeError("streams did not all open within 90 s")
        await asyncio.sleep(1.0)
        rss_open = proc.memory_info().rss
        # Claim them all, then finish them in batches, noting each finish time.
        claimed = await claim_all(queue, n)
        await asyncio.sleep(1.0)  # let the running events drain
        spy = None
        if profile:
            spy = start_profiler(profile, api.pid)
            await asyncio.sleep(1.0)
        finished = await finish_all(queue, claimed, rate)
        await asyncio.to_thread(child.join, 60)
        if spy is not None:
            spy.wait(30)
        received: dict[str, float] = json.loads(out.read_text()) if out.exists() else {}
        return summary(n, rate, rss_open - rss_before, received, finished)
    finally:
        api.terminate()
        api.wait(10)
        await r.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the API here")
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[0, 1000],
        help="finishes per second (0: every request finishes at the same moment)",
    )
    args = parser.parse_args()
    raise_fd_limit()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.streams:
            for rate in args.rates:
                rows.append(asyncio.run(measure(n, Path(tmp), args.profile, rate)))
    print("| streams | requests finishing | delivered | server RSS per stream "
          "| finish → event p50 | p99 |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        how = "all at once" if r["rate"] <= 0 else f"{r['rate']:,.0f}/s"
        print(
            f"| {r['streams']:,} | {how} | {r['delivered']:,} | {r['rss_per_stream_kib']:.1f} KiB "
            f"| {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
