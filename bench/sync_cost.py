"""Where a synchronous request's time goes: CPU per request of each process and Redis commands.

    .venv/bin/python bench/sync_cost.py CHECKOUT[,CHECKOUT...] [N] [ROUNDS]

For each checkout (its own private valkey-server, ``acceptd api`` and ``acceptd worker`` run from
its source tree with this venv's interpreter, as ``bench/ab.py`` does), N sequential synchronous
``POST /v1/echo`` (no ``Prefer``: 201 with the result) after a warm-up; prints p50/p99, the CPU
per request of the client, the API, the worker and Redis (µs), and the Redis commands run per
request (``INFO commandstats`` delta; ``CONFIG RESETSTAT`` first). With several checkouts, all
run at once and take turns in blocks of 100 requests (each turn on a new connection, after 5
unmeasured requests), so a change in the machine's speed falls on all alike; each round starts
them afresh. Environment:

- ``SLOWLOG=1``: every command's server time is logged (which slows Redis a little) and summed
  per script;
- ``PYSPY=1``: py-spy records the API and the worker (``/tmp/sync-<checkout>-{api,worker}.txt``,
  collapsed stacks);
- ``ASYNC=1``: the requests are respond-async (202) instead;
- ``PREFILL=N``: N respond-async submits drained by the worker first (a drain's aftermath);
- ``THINK_MS=N``: the client pauses N ms after each response (every process has finished its
  part of a request before the next: whether their turnaround is on the critical path).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from ab import HEADERS, PENDING, RUNNING, Run, fill

N = 2000
BLOCK = int(os.environ.get("BLOCK", "100"))  # requests per turn when several checkouts take turns
WARM = 5  # requests before each turn's (a new connection)


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def commandstats(run: Run) -> dict[str, int]:
    stats = run.r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


PREFILL = int(os.environ.get("PREFILL", "0"))
THINK = float(os.environ.get("THINK_MS", "0")) / 1000
PREFER = {"Prefer": "respond-async"} if os.environ.get("ASYNC") else {}


async def sequential(port: int, n: int, warm: int = 50) -> tuple[list[float], float]:
    headers = {**HEADERS, **PREFER}
    ok = 202 if PREFER else 201
    async with aiohttp.ClientSession() as s:
        url, lat = f"http://127.0.0.1:{port}/v1/echo", []
        for _ in range(warm):  # warm-up (a new connection)
            async with s.post(url, data=b'{"hello":"world"}', headers=headers) as resp:
                await resp.read()
        c0 = time.process_time()
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.post(url, data=b'{"hello":"world"}', headers=headers) as resp:
                await resp.read()
                assert resp.status == ok, resp.status
            lat.append((time.perf_counter() - t0) * 1000)
            if THINK:
                await asyncio.sleep(THINK)
        return lat, time.process_time() - c0


# The checkout's scripts by SHA: the subpackage layout's Lua objects, else the flat layout's
# sources (a2cb6f6 and older, whose ``service.queue`` is a module).
_NAMES_CODE = (
    "import json\n"
    "from service.queue import scripts\n"
    "from service.runtime.lua import Lua\n"
    "print(json.dumps({v.sha: k for k, v in vars(scripts).items() if isinstance(v, Lua)}))",
    "import hashlib, json\n"
    "from service import scripts\n"
    "print(json.dumps({hashlib.sha1(scripts.source(n).encode()).hexdigest(): n.upper()"
    " for n in scripts.ALL}))",
)


def script_names(root: Path) -> dict[str, str]:
    """SHA -> script name, from the checkout's own Lua files (as its loader expands them)."""
    for code in _NAMES_CODE:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
        )
        try:
            names = dict(json.loads(done.stdout))
        except ValueError:
            continue
        if names:
            return names
    return {}


SLOWLOG_MAX = 1000000


def log_every_command(r: Any) -> None:
    """Have Redis log every command's own time (``SLOWLOG=1``), from empty."""
    r.config_set("slowlog-log-slower-than", 0)
    r.config_set("slowlog-max-len", SLOWLOG_MAX)
    r.slowlog_reset()


def logged_by_command(root: Path, r: Any) -> dict[str, float]:
    """Microseconds of server time per command logged since ``log_every_command``."""
    return by_command(root, r.slowlog_get(SLOWLOG_MAX))


def by_command(root: Path, slow: list[dict[str, object]]) -> dict[str, float]:
    """Microseconds of server time per command (a script run by its script's name)."""
    names = script_names(root)
    total: dict[str, float] = {}
    for entry in slow:
        cmd = entry["command"]
        words = cmd.split() if isinstance(cmd, (bytes, str)) else []
        if not words:
            continue
        word = words[0].decode() if isinstance(words[0], bytes) else str(words[0])
        name = word.lower()
        if name == "evalsha" and len(words) > 1:
            sha = words[1].decode() if isinstance(words[1], bytes) else str(words[1])
            name = names.get(sha, sha[:8])
        total[name] = total.get(name, 0.0) + float(entry["duration"])  # type: ignore[arg-type]
    return total


class Stack:
    """One checkout's Redis, API and idle worker, ready for sequential requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = run = Run(root)
        self.spies: list[subprocess.Popen[bytes]] = []
        run.worker = run.role("worker")
        deadline = time.time() + 15
        while not run.r.zcard("acceptd:{echo}:idle") and time.time() < deadline:
            time.sleep(0.05)
        self.pids = {
            "A": run.api.pid,
            "W": run.worker.pid,
            "R": int(run.r.info("server")["process_id"]),
        }
        if PREFILL:
            # The aftermath of a drain (records, indexes, history, the processes' heaps), as in
            # bench/ab.py and the bench's headline turns, where the latency runs follow drains.
            asyncio.run(fill(run, PREFILL))
            while run.r.zcard(PENDING) + run.r.zcard(RUNNING) > 0:
                time.sleep(0.01)
            time.sleep(1.0)
        asyncio.run(sequential(run.aport, 20))
        run.r.config_resetstat()
        self.warmups = 0
        # Every command's own time, to split the script runs by script (one SHA each).
        self.timed = bool(os.environ.get("SLOWLOG"))
        if self.timed:
            log_every_command(run.r)
        if os.environ.get("PYSPY") and shutil.which("py-spy", path=Path(sys.executable).parent):
            spy_bin = str(Path(sys.executable).parent / "py-spy")
            record = [spy_bin, "record", "-r", "500", "-f", "raw"]
            for role, pid in (("api", run.api.pid), ("worker", run.worker.pid)):
                path = f"/tmp/sync-{root.name}-{role}.txt"
                self.spies.append(
                    subprocess.Popen(
                        [*record, "-o", path, "--pid", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)
        self.lat: list[float] = []
        self.cpu = dict.fromkeys(self.pids, 0.0)
        self.requests = 0

    def block(self, n: int) -> None:
        """N sequential requests; their latencies and every process's CPU are added up."""
        before = {k: cpu(p) for k, p in self.pids.items()}
        lat, client = asyncio.run(sequential(self.run.aport, n, WARM))
        after = {k: cpu(p) for k, p in self.pids.items()}
        self.lat += lat
        self.cpu["C"] = self.cpu.get("C", 0.0) + client
        for k in self.pids:
            self.cpu[k] += after[k] - before[k]
        self.requests += n
        self.warmups += WARM

    def result(self) -> dict[str, float]:
        """p50/p99 in ms, CPU per request in µs, commands and script server time per request."""
        stats = commandstats(self.run)
        scripts = logged_by_command(self.root, self.run.r) if self.timed else {}
        lat = sorted(self.lat)
        sent = self.requests + self.warmups
        out = {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99)]}
        out.update({k: v / self.requests * 1e6 for k, v in self.cpu.items()})
        out.update({f"cmd {k}": v / sent for k, v in sorted(stats.items()) if v})
        out.update({f"script {k}": v / sent for k, v in scripts.items()})
        return out

    def close(self) -> None:
        for proc in self.spies:
            proc.send_signal(2)
            proc.wait(30)
        self.run.close()


def report(name: str, res: dict[str, float]) -> str:
    head = (
        f"p50 {res['p50']:.3f} ms p99 {res['p99']:.3f} ms; CPU µs/request "
        f"C {res['C']:.0f} · A {res['A']:.0f} · W {res['W']:.0f} · R {res['R']:.0f}"
    )
    cmds = ", ".join(
        f"{k[4:]} {v:.2f}" for k, v in res.items() if k.startswith("cmd ") and v >= 0.01
    )
    secs = ", ".join(
        f"{k[7:]} {v:.1f}" for k, v in res.items() if k.startswith("script ") and v >= 0.5
    )
    return f"{name}: {head}\n    commands per request: {cmds}\n    server µs per request: {secs}"


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else N
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for i in range(rounds):
        # All checkouts up at once, taking turns in blocks of BLOCK requests: a change in the
        # machine's speed (a neighbour's load on a shared host) falls on every contender alike.
        stacks = [Stack(root) for root in roots]
        try:
            blocks = max(1, n // BLOCK)
            for b in range(blocks):
                k = b % len(stacks)
                for stack in stacks[k:] + stacks[:k]:
                    stack.block(BLOCK)
            results = [(stack.root.name, stack.result()) for stack in stacks]
        finally:
            for stack in stacks:
                stack.close()
        for name, res in results:
            print(f"round {i + 1} {report(name, res)}", flush=True)
        base = results[0][1]
        for name, res in results[1:]:
            ratios = ", ".join(
                f"{k} {res[k] / base[k]:.3f}" for k in ("p50", "p99", "C", "A", "W", "R")
            )
            print(f"round {i + 1} {name} / {results[0][0]}: {ratios}", flush=True)


if __name__ == "__main__":
    main()
