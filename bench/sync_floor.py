"""How close the synchronous path is to its floor: the same hops with no work in them.

    .venv/bin/python bench/sync_floor.py [CHECKOUT] [N] [ROUNDS]

A synchronous request crosses six process hops (client → API → Redis → worker → Redis → API →
client); a peer's enqueue-and-wait four (client → Redis → worker → Redis → client). This tool
measures, on one private valkey-server (this venv's binary, no persistence), p50 and p99 of N
(1,000) sequential requests after 50 warm-ups, for:

- ``http``: the HTTP hop alone, an aiohttp server (uvloop, as ``acceptd api``) answering 201 at
  once;
- ``queue``: four hops, no HTTP: a client pushes a job and pops its reply (one write), a
  worker process pops the job and pushes the reply back (SAQ's shape);
- ``http+queue``: six hops, the two above chained: the aiohttp server pushes the job and pops
  its reply (acceptd's shape, with nothing stored, no event, no script);
- ``acceptd``: the checkout's own API and worker (``python -m service``, as ``bench/ab.py``),
  synchronous ``POST /v1/echo``;
- ``saq``: SAQ's latency client and CLI worker (``bench/peer_saq.py``, as ``make bench`` runs
  them, but on a fresh worker rather than one that has just drained), when ``make peers``
  installed it.

Each row also has the CPU µs per request of every process in it (client, API, worker,
Redis), so what acceptd spends above its floor is told by process.

Every HTTP row uses the same client as ``make bench``'s sync row (``bench/http_client.py
sync``, its own process). The floors use lists and blocking pops on connections with no
client library (hiredis packs and parses, one write per exchange): the cheapest Redis round
trips there are, so they bound from below what any design with these hops can reach here.
Rounds take turns (ROUNDS, 3); it prints each run, the medians, what acceptd spends above its
floor, and the floor's share of the ``sync p50 <= 0.5x the best peer's`` target.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hiredis
import psutil
from ab import Run, free_port, sync_client, valkey_binary, wait_port
from peerlib import RESULT_PREFIX, cpu_seconds, emit, latency_summary

BENCH = Path(__file__).resolve().parent
WARMUP = 50
JOBS, REPLY = "floor:jobs", "floor:reply:"
SAQ_VENV = BENCH / ".peers" / "saq"


# -- the floor's processes (this file, run again with a role) -----------------------------


class Raw:
    """One Redis connection at its cheapest: commands packed by hiredis, written at once, and
    the replies parsed by hiredis (no client library's per-command bookkeeping)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.parser = reader, writer, hiredis.Reader()

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Every command's reply, the commands sent in one write."""
        self.writer.write(b"".join(hiredis.pack_command(c) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.parser.gets()
            if reply is False:
                self.parser.feed(await self.reader.read(65536))
            else:
                replies.append(reply)
        return replies


async def serve(port: int, redis_port: int, queue: bool) -> None:
    """The floor's API: 201 at once, or (``queue``) after the job's round trip."""
    from aiohttp import web

    r = await Raw.open(redis_port)
    seq = 0

    async def echo(request: web.Request) -> web.Response:
        nonlocal seq
        body = await request.read()
        if queue:
            seq += 1
            key = f"{REPLY}{seq}".encode()
            _, (_, body) = await r.call(("RPUSH", JOBS, key + b" " + body), ("BLPOP", key, 10))
        return web.Response(status=201, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


async def work(redis_port: int) -> None:
    """The floor's worker: pop a job, push its input back to the key it names."""
    r = await Raw.open(redis_port)
    print("READY", flush=True)
    (job,) = await r.call(("BLPOP", JOBS, 0))
    while True:
        key, _, payload = job[1].partition(b" ")
        # The reply and the next pop in one write, as a worker that goes back to waiting.
        _, job = await r.call(("LPUSH", key, payload), ("BLPOP", JOBS, 0))


async def queue_client(redis_port: int, n: int) -> None:
    """The four-hop floor's client: push a job and pop its reply, ``n`` times in turn."""
    r = await Raw.open(redis_port)
    samples = []
    cpu0 = cpu_seconds()
    for i in range(n + WARMUP):
        s = time.perf_counter()
        key = f"{REPLY}c{i}".encode()
        _, reply = await r.call(("RPUSH", JOBS, key + b' {"hello":"world","n":1}'),
                                ("BLPOP", key, 10))  # fmt: skip
        assert reply is not None
        if i >= WARMUP:
            samples.append((time.perf_counter() - s) * 1000)
    emit(latency_summary(samples) | {"cpu_s": cpu_seconds() - cpu0})


def role(argv: list[str]) -> None:
    name, rest = argv[0], [int(a) for a in argv[1:]]
    if name == "--serve":
        import uvloop

        uvloop.run(serve(rest[0], rest[1], bool(rest[2])))
    elif name == "--work":
        import uvloop

        uvloop.run(work(rest[0]))
    else:
        asyncio.run(queue_client(rest[0], rest[1]))


# -- the harness -----------------------------------------------------------------------------


def spawn(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """A process that prints READY when it serves (its other output is dropped)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=cwd)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # a CLI may print a banner first
        if "READY" in line:
            return proc
    proc.kill()
    raise SystemExit(f"sync_floor: {args[:3]} did not start")


def result(out: str) -> dict[str, Any]:
    line = next(x for x in reversed(out.splitlines()) if x.startswith(RESULT_PREFIX))
    got: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
    return got


# A run's figures: p50 and p99 (ms), then CPU µs per request of each process that took part.
Figures = dict[str, float]


def http_sync(port: int, n: int) -> Figures:
    """``bench/http_client.py sync`` against the server on ``port``: p50, p99, client CPU."""
    return figures(sync_client(port, n), n)


def figures(got: dict[str, Any], n: int) -> Figures:
    # The client's CPU over its warm-ups too (it reports its whole run): a slight overcount.
    return {"p50": got["p50_ms"], "p99": got["p99_ms"], "client": got["cpu_s"] / n * 1e6}


def with_cpu(pids: dict[str, int], n: int, measure: Callable[[], Figures]) -> Figures:
    """``measure``'s figures with each of ``pids``' CPU µs per request over it (n requests and
    the client's warm-ups)."""
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    before = {name: cpu(p) for name, p in procs.items()}
    got = measure()
    for name, p in procs.items():
        got[name] = (cpu(p) - before[name]) / n * 1e6
    return got


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def stopped(*procs: subprocess.Popen[Any] | None) -> None:
    for p in procs:
        if p is not None:
            p.terminate()
            p.wait(10)


def floors(redis: int, redis_port: int, n: int) -> dict[str, Figures]:
    me = [sys.executable, __file__]
    out: dict[str, Figures] = {}
    port = free_port()
    server = spawn([*me, "--serve", str(port), str(redis_port), "0"])
    try:
        out["http"] = with_cpu({"api": server.pid}, n, lambda: http_sync(port, n))
    finally:
        stopped(server)
    worker = spawn([*me, "--work", str(redis_port)])
    chained: subprocess.Popen[str] | None = None
    try:

        def queue() -> Figures:
            cmd = [*me, "--queue-client", str(redis_port), str(n)]
            return figures(result(subprocess.run(cmd, capture_output=True, text=True,
                                                 check=True).stdout), n)  # fmt: skip

        out["queue"] = with_cpu({"worker": worker.pid, "redis": redis}, n, queue)
        port = free_port()
        chained = spawn([*me, "--serve", str(port), str(redis_port), "1"])
        pids = {"api": chained.pid, "worker": worker.pid, "redis": redis}
        out["http+queue"] = with_cpu(pids, n, lambda: http_sync(port, n))
    finally:
        stopped(chained, worker)
    return out


def acceptd(root: Path, n: int) -> Figures:
    run = Run(root)
    try:
        run.worker = run.role("worker")
        time.sleep(1.5)  # the worker is up and registered idle
        pids = {"api": run.api.pid, "worker": run.worker.pid, "redis": run.valkey.pid}
        return with_cpu(pids, n, lambda: http_sync(run.aport, n))
    finally:
        run.close()


def saq(redis: int, redis_port: int, n: int) -> Figures | None:
    python = SAQ_VENV / "bin" / "python"
    if not (SAQ_VENV / ".installed").exists():
        return None
    url = f"redis://127.0.0.1:{redis_port}/0"
    env = {**os.environ, "BENCH_REDIS_URL": url, "BENCH_CONCURRENCY": "50",
           "PYTHONPATH": str(BENCH)}  # fmt: skip
    worker = spawn([str(SAQ_VENV / "bin" / "saq"), "peer_saq.settings"], env=env, cwd=BENCH)
    try:
        time.sleep(0.5)

        def latency() -> Figures:
            return figures(result(subprocess.run(
                [str(python), str(BENCH / "peer_saq.py"), "latency", "--n", str(n), "--url",
                 url, "--time-limit", "300"],
                capture_output=True, text=True, check=True, cwd=BENCH,
            ).stdout), n)  # fmt: skip

        return with_cpu({"worker": worker.pid, "redis": redis}, n, latency)
    finally:
        stopped(worker)


def show(name: str, f: Figures) -> str:
    cpus = " · ".join(f"{k[0].upper()} {f[k]:,.0f}" for k in ROLES if k in f)
    return f"{name} {f['p50']:.3f} ({f['p99']:.3f}; {cpus})"


ROLES = ("client", "api", "worker", "redis")
LEGEND = "CPU µs/request C client · A api · W worker · R redis"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--"):
        role(sys.argv[1:])
        return
    root = Path(sys.argv[1] if len(sys.argv) > 1 else BENCH.parent).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    data = Path(tempfile.mkdtemp(prefix="sync-floor-"))
    rport = free_port()
    valkey = subprocess.Popen(
        [valkey_binary(), "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(data)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    runs: dict[str, list[Figures]] = {}
    try:
        wait_port(rport)
        for i in range(rounds):
            got = floors(valkey.pid, rport, n)
            got["acceptd"] = acceptd(root, n)
            peer = saq(valkey.pid, rport, n)
            if peer is not None:
                got["saq"] = peer
            for name, f in got.items():
                runs.setdefault(name, []).append(f)
            shown = ", ".join(show(k, f) for k, f in got.items())
            print(f"round {i + 1}: p50 ms (p99; {LEGEND}): {shown}", flush=True)
    finally:
        stopped(valkey)
        shutil.rmtree(data, ignore_errors=True)
    med = {k: {m: statistics.median(f[m] for f in v) for m in v[0]} for k, v in runs.items()}
    print(f"medians, p50 ms (p99; {LEGEND}): " + ", ".join(show(k, f) for k, f in med.items()))
    floor, ours = med["http+queue"], med["acceptd"]
    above = ", ".join(f"{k} {ours[k] - floor.get(k, 0.0):+,.0f}" for k in ROLES)
    gap, ratio = ours["p50"] - floor["p50"], ours["p50"] / floor["p50"]
    print(f"acceptd above its six-hop floor: p50 {gap:+.3f} ms (acceptd / floor {ratio:.2f}); "
          f"CPU µs/request {above}")  # fmt: skip
    if "saq" in med:
        goal = med["saq"]["p50"] / 2
        peer_gap = med["saq"]["p50"] - med["queue"]["p50"]
        print(f"sync p50 goal (0.5x saq's {med['saq']['p50']:.3f}): {goal:.3f} ms; the six-hop "
              f"floor is {floor['p50'] / goal:.2f}x of it, acceptd {ours['p50'] / goal:.2f}x; "
              f"saq above its four-hop floor: {peer_gap:+.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
