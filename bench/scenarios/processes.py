"""HTTP enqueue with ``processes: 2`` against 1: the same load at one ``acceptd api`` process and
at a group of two API processes sharing the port (``SO_REUSEPORT``), runs paired.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil
from procs import Server, proc_cpu
from report import Row, Run, Target

from scenarios.context import ECHO, ROOT, Bench, cpu_per_job
from scenarios.plan import alternate
from service.runtime.embedded import free_port

GROUP = 2


class GroupCpu:
    """CPU of a group's API members (the supervisor itself only waits)."""

    def __init__(self, supervisor: Server) -> None:
        self.supervisor = supervisor

    def members(self) -> list[psutil.Process]:
        out = []
        for child in self.supervisor.proc.children():
            try:
                if "--member" in child.cmdline():
                    out.append(child)
            except psutil.Error:
                continue
        return out

    def cpu(self) -> float:
        return sum(proc_cpu(p) for p in self.members())


def start_group(bench: Bench, n: int) -> tuple[Server, int]:
    """``acceptd api --processes n`` on a free port, every member listening."""
    port = free_port()
    args = [str(Path(sys.executable).parent / "acceptd"), "api"]
    args += ["--config", str(ROOT / "config.yaml"), "--log-level", "WARNING"]
    args += ["--processes", str(n)]
    server = Server(f"api-x{n}", args, bench.tmp, env=bench.acceptd_env(bench.url, port), cwd=ROOT)
    server.wait_for_http(f"http://127.0.0.1:{port}/readyz")
    group = GroupCpu(server)
    deadline = time.monotonic() + 30
    while not all_listening(group.members(), n, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the group's {n} API processes did not all listen: {server.log}")
        time.sleep(0.1)
    return server, port


def all_listening(members: list[psutil.Process], n: int, port: int) -> bool:
    if len(members) != n:
        return False
    try:
        return all(
            any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections()
            )
            for p in members
        )
    except psutil.Error:
        return False


def enqueue_run(bench: Bench, port: int, api: object) -> Run:
    """wrk at ``port`` for the plan's seconds: requests queued per second, CPU per request."""
    bench.flush()
    c0 = bench.cpu_snapshot({"api": api})
    fin = bench.http_load(f"http://127.0.0.1:{port}/v1/echo", bench.plan.wrk_seconds)
    c1 = bench.cpu_snapshot({"api": api})
    if fin.result is None:
        raise RuntimeError(f"load client failed: {fin.output[-1000:]}")
    accepted = int(bench.r.zcard(ECHO + "pending"))
    bench.flush()
    return Run(accepted / fin.result["elapsed"], cpu_per_job(c0, c1, accepted, fin))


def measure(bench: Bench, reserve: float = 420.0) -> tuple[list[Row], Target]:
    """The two rows and the ratio; uses the single API the enqueue scenario started.
    ``reserve``: seconds of the budget to leave for what comes after."""
    assert bench.api is not None
    how = f"{bench.client_name()}, {bench.plan.wrk_seconds:g} s per run, no worker; runs paired"
    one = Row("1", "enqueue (HTTP 202), processes: 1", "acceptd", "req/s", note=how)
    two = Row(
        "1",
        f"enqueue (HTTP 202), processes: {GROUP}",
        "acceptd",
        "req/s",
        note=f"`acceptd api --processes {GROUP}`: one port, SO_REUSEPORT; "
        "A = the API processes' CPU together",
    )
    group, port = start_group(bench, GROUP)
    single, single_port = bench.api, bench.api_port
    try:
        alternate(
            bench.runs_for(2 * bench.plan.wrk_seconds + 4, reserve),
            (one, lambda: enqueue_run(bench, single_port, single)),
            [(two, lambda: enqueue_run(bench, port, GroupCpu(group)))],
            "enqueue, processes",
        )
    finally:
        group.stop()
    ratios = [1 / r for r in two.pair_ratios if r]
    ratio = statistics.median(ratios) if ratios else None
    target = Target(
        f"HTTP enqueue, processes: {GROUP} vs 1",
        ratio,
        ">= 1.0",
        "per pair "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"; on {psutil.cpu_count()} cores shared with wrk and Redis",
    )
    return [one, two], target
