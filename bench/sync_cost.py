"""Where a synchronous request's time goes: CPU per request of each process and Redis commands.

    .venv/bin/python bench/sync_cost.py CHECKOUT[,CHECKOUT...] [N] [ROUNDS]

For each checkout (its own private valkey-server, ``acceptd api`` and ``acceptd worker`` run from
its source tree with this venv's interpreter, as ``bench/ab.py`` does), N sequential synchronous
``POST /v1/echo`` (no ``Prefer``: 201 with the result) after a warm-up; prints p50/p99, the CPU
per request of the client, the API, the worker and Redis (µs), and the Redis commands run per
request (``INFO commandstats`` delta; ``CONFIG RESETSTAT`` first). Rounds rotate the checkouts'
order, as ``bench/ab.py`` does. Environment:

- ``SLOWLOG=1``: every command's server time is logged (which slows Redis a little) and summed
  per script;
- ``PYSPY=1``: py-spy records the API and the worker (``/tmp/sync-<checkout>-{api,worker}.txt``,
  collapsed stacks);
- ``ASYNC=1``: the requests are respond-async (202) instead.
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

import aiohttp
import psutil
from ab import HEADERS, Run

N = 2000


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def commandstats(run: Run) -> dict[str, int]:
    stats = run.r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


PREFER = {"Prefer": "respond-async"} if os.environ.get("ASYNC") else {}


async def sequential(port: int, n: int) -> tuple[list[float], float]:
    headers = {**HEADERS, **PREFER}
    ok = 202 if PREFER else 201
    async with aiohttp.ClientSession() as s:
        url, lat = f"http://127.0.0.1:{port}/v1/echo", []
        for _ in range(50):  # warm-up
            async with s.post(url, data=b'{"hello":"world"}', headers=headers) as resp:
                await resp.read()
        c0 = time.process_time()
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.post(url, data=b'{"hello":"world"}', headers=headers) as resp:
                await resp.read()
                assert resp.status == ok, resp.status
            lat.append((time.perf_counter() - t0) * 1000)
        return lat, time.process_time() - c0


def script_names(root: Path) -> dict[str, str]:
    """SHA -> script name, from the checkout's own Lua files (as its loader expands them)."""
    code = (
        "import json, sys\n"
        "from service.queue import scripts\n"
        "from service.runtime.lua import Lua\n"
        "print(json.dumps({v.sha: k for k, v in vars(scripts).items() if isinstance(v, Lua)}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        return {}


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


def measure(root: Path, n: int) -> dict[str, float]:
    run = Run(root)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        run.worker = run.role("worker")
        r = run.r
        deadline = time.time() + 15
        while not r.zcard("acceptd:{echo}:idle") and time.time() < deadline:
            time.sleep(0.05)
        valkey_pid = int(r.info("server")["process_id"])
        asyncio.run(sequential(run.aport, 20))
        r.config_resetstat()
        # Every command's own time, to split the script runs by script (one SHA each).
        timed = bool(os.environ.get("SLOWLOG"))
        if timed:
            r.config_set("slowlog-log-slower-than", 0)
            r.config_set("slowlog-max-len", 100000)
            r.slowlog_reset()
        pids = {"A": run.api.pid, "W": run.worker.pid, "R": valkey_pid}
        if os.environ.get("PYSPY") and shutil.which("py-spy", path=Path(sys.executable).parent):
            spy_bin = str(Path(sys.executable).parent / "py-spy")
            record = [spy_bin, "record", "--nonblocking", "-r", "500", "-f", "raw"]
            for role in ("api", "worker"):
                pid = run.api.pid if role == "api" else run.worker.pid
                path = f"/tmp/sync-{root.name}-{role}.txt"
                spies.append(
                    subprocess.Popen(
                        [*record, "-o", path, "--pid", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)
        before = {k: cpu(p) for k, p in pids.items()}
        lat, client = asyncio.run(sequential(run.aport, n))
        after = {k: cpu(p) for k, p in pids.items()}
        stats = commandstats(run)
        slow = r.slowlog_get(100000) if timed else []
        lat.sort()
        out = {
            "p50": statistics.median(lat),
            "p99": lat[int(len(lat) * 0.99)],
            "C": client / n * 1e6,
            **{k: (after[k] - before[k]) / n * 1e6 for k in pids},
        }
        calls = {k: v / (n + 50) for k, v in sorted(stats.items()) if v}
        out.update({f"cmd {k}": v for k, v in calls.items()})
        out.update({f"script {k}": v / (n + 50) for k, v in by_command(root, slow).items()})
        return out
    finally:
        for proc in spies:
            proc.send_signal(2)
            proc.wait(30)
        run.close()


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else N
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for i in range(rounds):
        k = i % len(roots)
        for root in roots[k:] + roots[:k]:
            res = measure(root, n)
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
            print(
                f"round {i + 1} {root.name}: {head}\n    commands per request: {cmds}\n"
                f"    server µs per request: {secs}",
                flush=True,
            )


if __name__ == "__main__":
    main()
