"""Backlog drain cost per job of two or more checkouts: worker and Redis CPU, Redis commands.

    nice -n 19 .venv/bin/python bench/drain_cost.py OLD_CHECKOUT,NEW_CHECKOUT [ROUNDS]

Per round and checkout (order rotating each round, as ``bench/ab.py``): its own valkey-server
and API, ``AB_DRAIN`` (20,000) echo requests queued over HTTP, ``CONFIG RESETSTAT``, then one
worker (concurrency 50) started; once every request is done it prints the jobs per second, the
CPU µs per job of the worker (counted from its first claim, so its start-up is left out) and
of Redis, and the Redis commands per job (``INFO commandstats``: script runs and the commands
they issued). Medians and per-round ratios to the first checkout at the end.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
from ab import BENCH, N_DRAIN, PENDING, RUNNING, Run, print_ratios, rotate

FILL = "import sys, filler; filler.fill_queue(sys.argv[1], int(sys.argv[2]), 600)"
# The bench's own polling.
IGNORED = ("info", "zcard", "config|resetstat")


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def commandstats(run: Run) -> dict[str, int]:
    info = run.r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def measure(root: Path) -> dict[str, float]:
    run = Run(root)
    try:
        run.r.flushall()
        # Queued straight into Redis by the checkout's own submit script (bench/filler.py):
        # an HTTP fill takes minutes on a loaded machine and the drain is what is measured.
        subprocess.run(
            [sys.executable, "-c", FILL, f"redis://127.0.0.1:{run.rport}", str(N_DRAIN)],
            cwd=root,
            env={**run.env, "PYTHONPATH": f"{root}:{BENCH}"},
            check=True,
        )
        redis_p = psutil.Process(run.valkey.pid)
        run.r.config_resetstat()
        run.worker = run.role("worker")
        worker_p = psutil.Process(run.worker.pid)
        while run.r.zcard(PENDING) == N_DRAIN:
            time.sleep(0.001)
        t0, w0, r0 = time.perf_counter(), cpu(worker_p), cpu(redis_p)
        while run.r.zcard(PENDING) + run.r.zcard(RUNNING) > 0:
            time.sleep(0.005)
        t1, w1, r1 = time.perf_counter(), cpu(worker_p), cpu(redis_p)
        stats = commandstats(run)
        out = {
            "jobs/s": N_DRAIN / (t1 - t0),
            "W us/job": (w1 - w0) * 1e6 / N_DRAIN,
            "R us/job": (r1 - r0) * 1e6 / N_DRAIN,
        }
        total = sum(n for name, n in stats.items() if name not in IGNORED)
        out["cmds/job"] = total / N_DRAIN
        out["evalsha/job"] = stats.get("evalsha", 0) / N_DRAIN
        for name, n in sorted(stats.items(), key=lambda kv: -kv[1]):
            if name not in IGNORED and n / N_DRAIN >= 0.01:
                out[f"  {name}"] = n / N_DRAIN
        return out
    finally:
        run.close()


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    results = rotate(roots, int(sys.argv[2]) if len(sys.argv) > 2 else 3, measure)
    for root, values in results.items():
        print(f"{root.name} medians:")
        for name, got in values.items():
            rounds_ = [round(v, 2) for v in got]
            print(f"  {name:>16}: {statistics.median(got):10.2f}   rounds {rounds_}")
    print_ratios(results, ("jobs/s", "W us/job", "R us/job", "cmds/job"))


if __name__ == "__main__":
    main()
