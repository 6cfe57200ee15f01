"""Webhook delivery: deliveries per second with one dispatcher, and finish → arrival delay.

    .venv/bin/python bench/webhook_delivery.py         # 10,000 deliveries, 1,000 for latency
    .venv/bin/python bench/webhook_delivery.py --n 2000 --latency-n 500

One `acceptd dispatcher` process sends to a receiver process on 127.0.0.1 (signing included);
the bench finishes requests through the real scripts, so each one writes its outbox entry.

Three measures:
- backlog: ``n`` requests finish while no dispatcher runs; one then starts and sends them all.
  Rate = deliveries between the first and the last arrival; the producer is idle meanwhile,
  so this is the dispatcher's own rate on this machine (receiver and Redis share the cores).
- live: a running dispatcher while ``n`` more requests finish as fast as the bench can.
- latency: requests finishing in batches of 50 every 50 ms, finish → arrival.
CPU µs per delivery is reported for the dispatcher, Redis and the receiver (backlog phase).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # sustained.receiver

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import redis.asyncio as aredis  # noqa: E402
from sustained.receiver import Receiver, serve  # noqa: E402

from service.queue.ids import new_request_id  # noqa: E402
from service.queue.store import Job, Limits, NewRequest, Queue  # noqa: E402
from service.runtime.config import WebhookSettings  # noqa: E402
from service.runtime.embedded import EmbeddedRedis, free_port  # noqa: E402
from webhooks import WebhookStore  # noqa: E402

OP = "echo"
CLIENT = "anonymous"
LIMITS = Limits(attempts=1, timeout=10, result_ttl=600, max_queue_depth=10**7, retry_backoff=1)


class Arrivals(Receiver):
    """The bench's receiver (see ``sustained.receiver``): the arrival time of each request's
    first delivery, as JSON to ``GET /stats``."""

    arrivals: dict[str, float] = {}

    @classmethod
    def received(cls, body: bytes) -> None:
        cls.arrivals.setdefault(orjson.loads(body)["data"]["id"], time.time())

    @classmethod
    def stats(cls) -> Any:
        return cls.arrivals


async def finish_many(queue: Queue, n: int) -> dict[str, float]:
    """Submit, claim and finish ``n`` requests; when each finish returned."""
    ids = [new_request_id(OP, queue.now_ms()) for _ in range(n)]
    for i in range(0, n, 500):
        await asyncio.gather(
            *(queue.submit(NewRequest(OP, rid, CLIENT, "{}", LIMITS)) for rid in ids[i : i + 500])
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


def _print_commandstats(before: dict[str, Any], after: dict[str, Any], n: int) -> None:
    rows = []
    for name, now in after.items():
        was = before.get(name, {"calls": 0, "usec": 0})
        calls, usec = now["calls"] - was["calls"], now["usec"] - was["usec"]
        if calls:
            rows.append((usec, name, calls))
    for usec, name, calls in sorted(rows, reverse=True):
        print(f"{name:28} {calls / n:8.3f} calls/delivery {usec / n:8.1f} µs/delivery")


async def _print_slowlog(r: aredis.Redis) -> None:
    # Server time per script (by SHA, named by its first line) while the backlog drained.
    from webhooks import scripts

    names = {lua.sha: name for name, lua in scripts.ALL.items()}
    entries = await r.slowlog_get(100000)
    await r.config_set("slowlog-log-slower-than", 10000)
    per: dict[str, list[int]] = {}
    for e in entries:
        cmd = e["command"].split()
        key = cmd[0].decode().lower()
        if key == "evalsha" and len(cmd) > 1:
            key = names.get(cmd[1].decode(), cmd[1].decode()[:8])
        per.setdefault(key, []).append(e["duration"])
    for key, durations in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        avg = sum(durations) / len(durations)
        print(f"{key:20} {len(durations):7} calls {avg:8.1f} µs avg {sum(durations):10} µs total")


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


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
        # One endpoint gets all of the dispatcher's slots (webhooks.concurrency, the default).
        "ACCEPTD_WEBHOOKS__PER_ENDPOINT_CONCURRENCY": str(WebhookSettings().concurrency),
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


async def wait_receiver(session: aiohttp.ClientSession, stats_url: str) -> None:
    for _ in range(100):
        try:
            await arrivals(session, stats_url)
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)


async def start_paused_dispatcher(url: str, tmp: Path) -> subprocess.Popen[bytes]:
    """A dispatcher started, warmed up (running), then stopped (SIGSTOP)."""
    dispatcher = start_dispatcher(url, tmp)
    for _ in range(100):
        if b"running" in (tmp / "dispatcher.log").read_bytes():
            break
        await asyncio.sleep(0.1)
    dispatcher.send_signal(signal.SIGSTOP)
    return dispatcher


def start_profiler(pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the dispatcher when ``BENCH_PROFILE`` names an output file."""
    if not os.environ.get("BENCH_PROFILE"):
        return None
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-p",
         str(pid), "-d", "5", "-r", "200", "--format", "raw",
         "-o", os.environ["BENCH_PROFILE"]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def start_verbose(r: aredis.Redis) -> None:
    if os.environ.get("BENCH_VERBOSE"):
        await r.config_set("slowlog-log-slower-than", 0)
        await r.config_set("slowlog-max-len", 100000)
        await r.slowlog_reset()


async def report_verbose(r: aredis.Redis, stats0: dict[str, Any], delivered: int) -> None:
    if os.environ.get("BENCH_VERBOSE"):
        _print_commandstats(stats0, await r.info("commandstats"), delivered)
        await _print_slowlog(r)


class Phases:
    """The three measures, one after the other, on one Redis, dispatcher and receiver."""

    def __init__(
        self, r: aredis.Redis, session: aiohttp.ClientSession, stats_url: str, out: dict[str, Any]
    ) -> None:
        self.r = r
        self.session = session
        self.stats_url = stats_url
        self.queue = Queue(r)
        self.out = out
        self.got: dict[str, float] = {}

    async def backlog(
        self, n: int, dispatcher: subprocess.Popen[bytes], procs: dict[str, psutil.Process]
    ) -> None:
        """The outbox fills while the (stopped) dispatcher cannot send; it resumes and sends
        it all."""
        out = self.out
        await finish_many(self.queue, n)
        cpu0 = {k: _cpu(p) for k, p in procs.items()}
        stats0 = await self.r.info("commandstats")
        await start_verbose(self.r)
        dispatcher.send_signal(signal.SIGCONT)
        spy = start_profiler(dispatcher.pid)
        got = self.got = await wait_for(self.session, self.stats_url, n, 120)
        cpu1 = {k: _cpu(p) for k, p in procs.items()}
        await report_verbose(self.r, stats0, len(got))
        if spy is not None:
            spy.wait(30)
        times = sorted(got.values())
        out["delivered"] = len(got)
        out["backlog_per_second"] = (len(times) - 1) / (times[-1] - times[0])
        for name, used in cpu1.items():
            out[f"cpu_{name}"] = (used - cpu0.get(name, 0.0)) / max(len(got), 1) * 1e6

    async def live(self, n: int) -> None:
        """The running dispatcher while n more requests finish as fast as possible."""
        before = set(self.got)
        started = time.time()
        await finish_many(self.queue, n)
        got = self.got = await wait_for(self.session, self.stats_url, 2 * n, 120)
        fresh = [t for k, t in got.items() if k not in before]
        self.out["live_delivered"] = len(fresh)
        self.out["live_per_second"] = len(fresh) / (max(fresh) - started)

    async def latency(self, latency_n: int) -> None:
        """A dispatcher already running, requests finishing in small batches."""
        before = set(self.got)
        n_before = len(self.got)
        finished: dict[str, float] = {}
        for _ in range(latency_n // 50):
            finished.update(await finish_many(self.queue, 50))
            await asyncio.sleep(0.05)
        got = await wait_for(self.session, self.stats_url, n_before + len(finished), 60)
        delays = sorted(
            (got[k] - finished[k]) * 1000 for k in got if k in finished and k not in before
        )
        self.out["latency_n"] = len(delays)
        self.out["p50_ms"] = statistics.median(delays) if delays else float("nan")
        self.out["p99_ms"] = delays[int(len(delays) * 0.99)] if delays else float("nan")


async def run(n: int, latency_n: int, tmp: Path) -> dict[str, Any]:
    server = EmbeddedRedis(tmp / "redis", port=free_port(), appendonly=False)
    server.start()
    port = free_port()
    ctx = mp.get_context("spawn")
    recv = ctx.Process(target=serve, args=(port, Arrivals), daemon=True)
    recv.start()
    r = aredis.Redis.from_url(server.url)
    dispatcher: subprocess.Popen[bytes] | None = None
    stats_url = f"http://127.0.0.1:{port}/stats"
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            await wait_receiver(session, stats_url)
            store = WebhookStore(r, [OP])
            await store.create_endpoint(CLIENT, f"http://127.0.0.1:{port}/hook")
            phases = Phases(r, session, stats_url, out)
            dispatcher = await start_paused_dispatcher(server.url, tmp)
            procs = {
                "dispatcher": psutil.Process(dispatcher.pid),
                "receiver": psutil.Process(recv.pid),
            }
            if server._proc:
                procs["redis"] = psutil.Process(server._proc.pid)
            await phases.backlog(n, dispatcher, procs)
            await phases.live(n)
            await phases.latency(latency_n)
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
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--latency-n", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one RESULT {json} line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(args.n, args.latency_n, Path(tmp)))
    if args.json:
        print("RESULT " + orjson.dumps(res).decode())
        return
    print(
        "| deliveries | backlog per second (1 dispatcher) | live per second "
        "| CPU per delivery: dispatcher / Redis / receiver | finish → arrival p50 | p99 |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {res['delivered']:,} | {res['backlog_per_second']:,.0f} "
        f"| {res['live_per_second']:,.0f} | {res['cpu_dispatcher']:,.0f} / "
        f"{res['cpu_redis']:,.0f} / {res['cpu_receiver']:,.0f} µs "
        f"| {res['p50_ms']:.1f} ms | {res['p99_ms']:.1f} ms |"
    )


if __name__ == "__main__":
    main()
