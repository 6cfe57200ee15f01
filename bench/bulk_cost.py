"""Bulk-submit drain of two or more checkouts: jobs/s and CPU per job of each process.

    nice -n 19 .venv/bin/python bench/bulk_cost.py OLD_CHECKOUT,NEW_CHECKOUT [ROUNDS]

Per round and checkout (order rotating each round, as ``bench/ab.py``): its own valkey-server,
API and worker (concurrency 50), then ``AB_DRAIN`` (20,000) echo requests submitted by
``http_client.py bulk`` (8 lanes of 100, as ``make bench``'s bulk drain) while the worker runs;
timed from the first submit
(the producer's own clock) to the last result. It prints the jobs per second, the CPU µs per
job of the client, API, worker and Redis, and the Redis commands per job. Medians and per-round
ratios to the first checkout at the end.

``SLOWLOG=1``: every command's server time is logged (which slows Redis a little) and summed
per script: the Redis µs per job of each script (``script submit`` …) are printed too.

``KEEP=1``: each checkout keeps one server (and API) for all its rounds, flushed before each,
as ``make bench`` keeps one for every contender; a new worker each round. A fresh server per
round flatters changes to the server's allocator: a larger glibc malloc cache took 12-20 % off
Redis's CPU per job on fresh servers and added to it on one that had lived through a few flushed
datasets (README, "A submit's cost"). Use it for anything that changes how the server allocates.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
from ab import BENCH, N_DRAIN, PENDING, RUNNING, Run, print_ratios, rotate
from drain_cost import IGNORED, commandstats, cpu
from peerlib import RESULT_PREFIX
from sync_cost import log_every_command, logged_by_command

LANES, BATCH = 8, 100


KEEP = bool(os.environ.get("KEEP"))
_kept: dict[Path, Run] = {}


def stack(root: Path) -> Run:
    """The checkout's server and API: new, or with ``KEEP`` the one kept from its last round."""
    if not KEEP:
        return Run(root)
    if root not in _kept:
        _kept[root] = Run(root)
    return _kept[root]


def release(run: Run) -> None:
    """Stop the round's processes: all of them, or with ``KEEP`` only the worker."""
    if not KEEP:
        run.close()
    elif run.worker is not None:
        run.worker.terminate()
        run.worker.wait(10)
        run.worker = None


def measure(root: Path) -> dict[str, float]:
    run = stack(root)
    try:
        run.r.flushall()
        run.worker = run.role("worker")
        time.sleep(1.5)  # the worker is up and waiting idle
        procs = {
            "api": psutil.Process(run.api.pid),
            "worker": psutil.Process(run.worker.pid),
            "redis": psutil.Process(run.valkey.pid),
        }
        run.r.config_resetstat()
        timed = bool(os.environ.get("SLOWLOG"))
        if timed:
            log_every_command(run.r)
        c0 = {k: cpu(p) for k, p in procs.items()}
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, str(BENCH / "http_client.py"), "bulk", "--url",
             f"http://127.0.0.1:{run.aport}/v1/echo/batch", "--n", str(N_DRAIN),
             "--duration", "120", "--concurrency", str(LANES), "--batch", str(BATCH)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        while run.r.zcard(PENDING) + run.r.zcard(RUNNING) > 0:
            time.sleep(0.002)
        t1, t1_unix = time.perf_counter(), time.time()
        c1 = {k: cpu(p) for k, p in procs.items()}
        line = next(x for x in out.splitlines() if x.startswith(RESULT_PREFIX))
        client = json.loads(line.removeprefix(RESULT_PREFIX))
        # Timed from the first submit, as make bench does (not from the producer's start).
        t0 = t1 - (t1_unix - client["t0_unix"])
        stats = commandstats(run)
        commands = sum(v for k, v in stats.items() if k not in IGNORED)
        res = {"jobs/s": N_DRAIN / (t1 - t0), "client µs": client["cpu_s"] / N_DRAIN * 1e6}
        for k in procs:
            res[f"{k} µs"] = (c1[k] - c0[k]) / N_DRAIN * 1e6
        res["cores"] = (sum(c1.values()) - sum(c0.values()) + client["cpu_s"]) / (t1 - t0)
        res["cmds/job"] = commands / N_DRAIN
        if timed:
            scripts = logged_by_command(root, run.r)
            for name, usec in sorted(scripts.items(), key=lambda kv: -kv[1]):
                if name not in IGNORED and usec / N_DRAIN >= 0.5:
                    res[f"script {name} µs"] = usec / N_DRAIN
        return res
    finally:
        release(run)


def main() -> None:
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    try:
        results = rotate(roots, int(sys.argv[2]) if len(sys.argv) > 2 else 3, measure, ",.1f")
    finally:
        for run in _kept.values():
            run.close()
    for root, values in results.items():
        row = ", ".join(f"{n} {statistics.median(v):,.1f}" for n, v in values.items())
        print(f"median {root.name}: {row}")
    print_ratios(results)


if __name__ == "__main__":
    main()
