"""Drain: N requests from the first submit to the last result, API and worker together."""

from __future__ import annotations

import subprocess
import time

from report import Row, Run

from scenarios import peers
from scenarios.context import ECHO, Bench, cpu_per_job
from scenarios.plan import interleave


def row(bench: Bench) -> Row:
    note = (
        f"`acceptd api` + `acceptd worker` (concurrency 50), producer {bench.client_name()} "
        "concurrent (stopped at N, a few in flight may add); done when the finish count "
        "(`tput` hash) equals the submit counter (`seq`) and pending+running are empty"
    )
    n = bench.plan.n
    return Row("2", f"drain N={n:,} (first submit → last result)", "acceptd", "jobs/s", note=note)


def acceptd_done(bench: Bench, deadline: float) -> tuple[int, int]:
    """Wait until every submitted request has finished: (submitted, finished).

    One atomic read of the submit counter, the queues and the finish counts in ``tput``
    (each is changed in the same script as the state it counts).
    """
    submitted = finished = 0
    while time.monotonic() < deadline:
        pipe = bench.r.pipeline(transaction=True)
        pipe.get(ECHO + "seq")
        pipe.zcard(ECHO + "pending")
        pipe.zcard(ECHO + "running")
        pipe.hgetall(ECHO + "tput")
        seq, pending, running, tput = pipe.execute()
        submitted = int(seq or 0)
        finished = sum(int(v) for k, v in tput.items() if k.startswith(b"n:"))
        if pending + running == 0 and finished == submitted:
            break
        time.sleep(0.005)
    return submitted, finished


def acceptd_run(bench: Bench) -> Run:
    assert bench.api is not None and bench.worker is not None
    url = f"http://127.0.0.1:{bench.api_port}/v1/echo"
    n = bench.plan.n
    bench.flush()
    stopped = [False]

    def tick(popen: subprocess.Popen[bytes], stopped: list[bool] = stopped) -> None:
        if not stopped[0] and int(bench.r.get(ECHO + "seq") or 0) >= n:
            popen.send_signal(2)  # SIGINT: wrk prints its summary and exits
            stopped[0] = True

    servers = {"api": bench.api, "worker": bench.worker}
    c0 = bench.cpu_snapshot(servers)
    t0 = time.perf_counter()
    fin = bench.http_load(url, 120, limit=n, on_tick=tick)
    total, finished = acceptd_done(bench, time.monotonic() + 120)
    elapsed = time.perf_counter() - t0
    c1 = bench.cpu_snapshot(servers)
    if finished != total:
        raise RuntimeError(f"acceptd drain: {finished} finished of {total} submitted")
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin))


def measure(bench: Bench, contenders: list[peers.Peer]) -> Row:
    """acceptd's drain row (the peers' fill their own); needs the API and the worker up."""
    ours = row(bench)
    k = len(contenders)
    interleave(
        bench.runs_for(bench.plan.n / 1500 * (1 + k) + 4 * k + 5, 380),
        [(ours, lambda: acceptd_run(bench)), *peers.steps(bench, contenders, "drain")],
        "drain",
    )
    return ours
