"""Drain and backlog drain: every contender with the same kind of producer, on one Redis.

Drain (first submit → last result): one producer process with 50 concurrent senders runs while
the contender's worker runs. acceptd's is an aiohttp client POSTing from 50 connections (wrk
with 100 connections is an extra row); each Python peer's is its own enqueue call from 50
coroutines or threads; BullMQ's is ``queue.add`` from 50 lanes of one Node process (it has no
Python API). Each worker runs as its docs run it: the peer's own CLI (``bench/scenarios/peers.py``),
BullMQ's ``Worker`` at concurrency 50 in one Node process, ``acceptd worker`` at concurrency 50.

Backlog drain (worker start → last result): the same producer queues N with no worker running;
then the worker starts, and the clock runs from the first job it takes (the harness polls the
contender's own queue keys every millisecond and starts it when the waiting count drops below
N) until every job is done: the worker side alone, its process start-up left out.

A round gives every contender one turn, starting one contender later each round; a turn is
the backlog drain, then the drain on the same (now warm) worker process. A round takes about
140 s at N = 20,000 on a quiet 2-vCPU machine (the Python peers' ~35 s each); the next starts
only if, at the last one's length, it leaves ``RESERVE`` seconds of the budget for the rest.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from procs import Server, run_client
from report import Row, Run

from scenarios import bulk, peers
from scenarios.context import BENCH, CONCURRENCY, ECHO, Bench, cpu_per_job, need
from scenarios.plan import log

BULLMQ_KEYS = "bull:bench:"


@dataclass
class Contender:
    """What a turn needs: how to queue N, start the worker, read its queue, drain with it."""

    name: str
    backlog: Row
    drains: list[Row]
    fill: Callable[[], int]
    spawn: Callable[[], Server]
    probe: Callable[[], tuple[int, int]]
    drain: Callable[[Server], list[Run]]
    release: Callable[[Server], None] = Server.stop


@dataclass
class Rows:
    """The scenario's rows: acceptd's three, each Python peer's two (in ``Peer.rows``), BullMQ's."""

    drain: Row
    drain_wrk: Row
    backlog: Row
    bullmq_drain: Row
    bullmq_backlog: Row
    peer_rows: list[Row] = field(default_factory=list)

    def acceptd(self) -> list[Row]:
        return [self.drain, self.drain_wrk, self.backlog]


def rows(bench: Bench, bullmq_drain: Row) -> Rows:
    n = bench.plan.n
    drain_name = f"drain N={n:,} (first submit → last result)"
    backlog_name = f"backlog drain N={n:,} (worker start → last result)"
    done = (
        "done when the finish count (`tput` hash) equals the submit counter (`seq`) and "
        "pending+running are empty"
    )
    worker = "`acceptd worker` (1 process, concurrency 50)"
    wrk = (
        Row("2", drain_name, "acceptd, wrk", "jobs/s", note=f"extra row: producer "
            f"{bench.client_name()}, stopped at N (a few in flight may add); {worker}; {done}")
        if bench.wrk
        else Row("2", drain_name, "acceptd, wrk", "jobs/s", skipped="wrk is not installed")
    )  # fmt: skip
    bullmq_backlog = Row(
        "2",
        backlog_name,
        bullmq_drain.contender,
        "jobs/s",
        note="N queued by `queue.add` from 50 lanes; then 1 worker process, concurrency 50; "
        "started: LLEN bull:bench:wait < N; done: wait+active+prioritized+delayed empty",
        skipped=bullmq_drain.skipped,
    )
    return Rows(
        drain=Row("2", drain_name, "acceptd", "jobs/s", note=f"`acceptd api` + {worker}; "
                  "producer one Python process, aiohttp client POSTing from 50 connections, "
                  f"timed from its first submit; {done}"),
        drain_wrk=wrk,
        backlog=Row("2", backlog_name, "acceptd", "jobs/s", note=f"N queued over HTTP with no "
                    f"worker; then {worker}; started: ZCARD pending < N; {done}"),
        bullmq_drain=bullmq_drain,
        bullmq_backlog=bullmq_backlog,
    )  # fmt: skip


# acceptd ----------------------------------------------------------------------------------


def acceptd_state(bench: Bench) -> tuple[int, int, int, int]:
    """One atomic read: (submitted, finished, pending, running).

    The submit counter, the queues and the finish counts in ``tput`` (each is changed in the
    same script as the state it counts).
    """
    pipe = bench.r.pipeline(transaction=True)
    pipe.get(ECHO + "seq")
    pipe.zcard(ECHO + "pending")
    pipe.zcard(ECHO + "running")
    pipe.hgetall(ECHO + "tput")
    seq, pending, running, tput = pipe.execute()
    finished = sum(int(v) for k, v in tput.items() if k.startswith(b"n:"))
    return int(seq or 0), finished, int(pending), int(running)


def acceptd_done(bench: Bench, deadline: float) -> tuple[int, int]:
    """Wait until every submitted request has finished: (submitted, finished)."""
    submitted = finished = 0
    while time.monotonic() < deadline:
        submitted, finished, pending, running = acceptd_state(bench)
        if pending + running == 0 and finished == submitted:
            break
        time.sleep(0.005)
    return submitted, finished


def acceptd_probe(bench: Bench) -> tuple[int, int]:
    submitted, finished, pending, running = acceptd_state(bench)
    return pending, max(submitted - finished, pending + running)


def acceptd_fill(bench: Bench) -> int:
    """Stop the worker, then queue N over HTTP (wrk when installed: the fill is not timed)."""
    if bench.worker is not None:
        bench.worker.stop()
        bench.worker = None
    bench.flush()
    fin = bench.http_load(url(bench), 120, limit=bench.plan.n, on_tick=stop_at(bench))
    if fin.result is None:
        raise RuntimeError(f"acceptd fill: load client failed: {fin.output[-1000:]}")
    return acceptd_state(bench)[0]


def acceptd_spawn(bench: Bench) -> Server:
    """``acceptd worker``, started (not waited for); it stays up as the bench's worker."""
    bench.worker = bench.acceptd("worker", "worker", bench.url, 0)
    return bench.worker


def url(bench: Bench) -> str:
    return f"http://127.0.0.1:{bench.api_port}/v1/echo"


def stop_at(bench: Bench) -> Callable[[object], None]:
    """A load-client tick that stops wrk (SIGINT: it prints its summary) once N are queued."""
    stopped = [False]

    def tick(popen: object) -> None:
        if not stopped[0] and int(bench.r.get(ECHO + "seq") or 0) >= bench.plan.n:
            popen.send_signal(2)  # type: ignore[attr-defined]
            stopped[0] = True

    return tick


def acceptd_drain(bench: Bench, worker: Server) -> list[Run]:
    """The aiohttp producer's drain, then wrk's (when installed), on the running worker."""
    runs = [acceptd_drain_aiohttp(bench, worker)]
    if bench.wrk:
        runs.append(acceptd_drain_wrk(bench, worker))
    return runs


def acceptd_finished(bench: Bench) -> int:
    total, finished = acceptd_done(bench, time.monotonic() + 120)
    if finished != total:
        raise RuntimeError(f"acceptd drain: {finished} finished of {total} submitted")
    return total


def acceptd_drain_aiohttp(bench: Bench, worker: Server) -> Run:
    assert bench.api is not None
    n = bench.plan.n
    bench.flush()
    servers = {"api": bench.api, "worker": worker}
    args = [sys.executable, str(BENCH / "http_client.py"), "load", "--url", url(bench),
            "--n", str(n), "--duration", "100", "--concurrency", str(CONCURRENCY)]  # fmt: skip
    c0 = bench.cpu_snapshot(servers)
    fin = run_client(args, bench.log_path("drain-aiohttp"), 130)
    res = need(fin, "acceptd drain producer")
    total = acceptd_finished(bench)
    elapsed = time.time() - res["t0_unix"]
    c1 = bench.cpu_snapshot(servers)
    if res["statuses"] != {"202": n} or total != n:
        raise RuntimeError(f"acceptd drain: {total} queued, statuses {res['statuses']}")
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin, res["cpu_s"]))


def acceptd_drain_wrk(bench: Bench, worker: Server) -> Run:
    assert bench.api is not None
    bench.flush()
    servers = {"api": bench.api, "worker": worker}
    c0 = bench.cpu_snapshot(servers)
    t0 = time.perf_counter()
    fin = bench.http_load(url(bench), 120, limit=bench.plan.n, on_tick=stop_at(bench))
    total = acceptd_finished(bench)
    elapsed = time.perf_counter() - t0
    c1 = bench.cpu_snapshot(servers)
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin))


def acceptd_run(bench: Bench) -> Run:
    """One drain on the bench's worker with the HTTP load client (wrk when installed): the
    cluster scenario's one-node comparison."""
    assert bench.worker is not None
    return acceptd_drain_wrk(bench, bench.worker)


def acceptd(bench: Bench, found: Rows) -> Contender:
    drains = [found.drain, *([found.drain_wrk] if bench.wrk else [])]
    return Contender(
        "acceptd",
        found.backlog,
        drains,
        fill=lambda: acceptd_fill(bench),
        spawn=lambda: acceptd_spawn(bench),
        probe=lambda: acceptd_probe(bench),
        drain=lambda w: acceptd_drain(bench, w),
        release=lambda w: None,  # stays up as bench.worker
    )


# the Python peers and BullMQ --------------------------------------------------------------


def peer(bench: Bench, p: peers.Peer) -> Contender:
    def drain(worker: Server) -> list[Run]:
        return [peers.run_with(bench, p, "drain", {"worker": worker})]

    return Contender(
        p.name,
        p.rows["backlog"],
        [p.rows["drain"]],
        fill=lambda: peers.fill(bench, p),
        spawn=lambda: peers.start_worker(bench, p),
        probe=lambda: peers.probe(bench, p),
        drain=drain,
    )


def bullmq_args(bench: Bench, mode: str) -> list[str]:
    return ["node", str(bulk.BULLMQ_SCRIPT), mode, "--n", str(bench.plan.n), "--url", bench.url,
            "--concurrency", str(CONCURRENCY), "--time-limit", "100"]  # fmt: skip


def bullmq_fill(bench: Bench) -> int:
    fin = run_client(bullmq_args(bench, "enqueue"), bench.log_path("bullmq-fill"), 130)
    return int(need(fin, "bullmq fill")["n"])


def bullmq_spawn(bench: Bench) -> Server:
    args = ["node", str(bulk.BULLMQ_SCRIPT), "worker", "--url", bench.url,
            "--concurrency", str(CONCURRENCY)]  # fmt: skip
    return Server("bullmq-worker", args, bench.tmp)


def bullmq_probe(bench: Bench) -> tuple[int, int]:
    pipe = bench.r.pipeline(transaction=True)
    pipe.llen(BULLMQ_KEYS + "wait")
    pipe.llen(BULLMQ_KEYS + "active")
    pipe.zcard(BULLMQ_KEYS + "prioritized")
    pipe.zcard(BULLMQ_KEYS + "delayed")
    wait, active, prioritized, delayed = pipe.execute()
    return int(wait), int(wait) + int(active) + int(prioritized) + int(delayed)


def bullmq_drain(bench: Bench, worker: Server) -> list[Run]:
    servers = {"worker": worker}
    c0 = bench.cpu_snapshot(servers)
    fin = run_client(bullmq_args(bench, "drain"), bench.log_path("bullmq-drain"), 130)
    c1 = bench.cpu_snapshot(servers)
    res = need(fin, "bullmq drain")
    if not res["finished"]:
        raise RuntimeError("bullmq drain did not finish in time")
    return [Run(res["n"] / res["elapsed"], cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"]))]


def bullmq(bench: Bench, found: Rows) -> Contender:
    return Contender(
        "bullmq",
        found.bullmq_backlog,
        [found.bullmq_drain],
        fill=lambda: bullmq_fill(bench),
        spawn=lambda: bullmq_spawn(bench),
        probe=lambda: bullmq_probe(bench),
        drain=lambda w: bullmq_drain(bench, w),
    )


# the clock and the rounds -----------------------------------------------------------------


def backlog_clock(bench: Bench, c: Contender, worker: Server, n: int) -> Run:
    """From the worker's first job (waiting < n) until every job is done (nothing left)."""
    deadline = time.monotonic() + 120
    t0 = t1 = 0.0
    c0: dict[str, float] = {}
    while time.monotonic() < deadline:
        waiting, remaining = c.probe()
        if not t0 and (waiting < n or remaining < n):
            t0 = time.perf_counter()
            c0 = bench.cpu_snapshot({"worker": worker})
        if t0 and remaining == 0:
            t1 = time.perf_counter()
            break
        if not worker.alive():
            raise RuntimeError(f"{c.name} worker exited: {worker.output()[-1500:]}")
        time.sleep(0.001 if not t0 else 0.005)
    if not t1:
        raise RuntimeError(f"{c.name} backlog drain did not finish in time")
    c1 = bench.cpu_snapshot({"worker": worker})
    return Run(n / (t1 - t0), cpu_per_job(c0, c1, n, None))


def turn(bench: Bench, c: Contender) -> None:
    """One contender's turn: N queued, its worker started, the backlog clock, then a drain."""
    bench.flush()
    n = c.fill()
    worker = c.spawn()
    try:
        c.backlog.runs.append(backlog_clock(bench, c, worker, n))
        for row, result in zip(c.drains, c.drain(worker), strict=True):
            row.runs.append(result)
    finally:
        c.release(worker)
    bench.flush()


# What the scenarios after this one need at one round each (cluster, bulk drain, latency,
# memory, durability, webhooks), with a margin: a round starts only if it leaves that much.
RESERVE = 330.0


def measure(bench: Bench, contenders: list[peers.Peer], bullmq_drain_row: Row) -> Rows:
    """Every contender's backlog drain and drain, in interleaved rounds; the API is up.

    ``bullmq_drain_row`` is BullMQ's drain row (made by the bulk scenario, which compares
    drains with bulk submits against it); it is skipped there when BullMQ is not installed.
    The acceptd worker is up again afterwards (``bench.worker``).
    """
    found = rows(bench, bullmq_drain_row)
    found.peer_rows = [p.rows[m] for p in contenders for m in ("drain", "backlog")]
    turns = [acceptd(bench, found), *(peer(bench, p) for p in contenders)]
    if not bullmq_drain_row.skipped:
        turns.append(bullmq(bench, found))
    took = 0.0
    for r in range(bench.plan.runs):
        if r and bench.budget.left() - RESERVE < took:
            log(f"drain and backlog drain: {r} rounds (the budget has no room for another)")
            break
        log(f"drain and backlog drain: round {r + 1} of up to {bench.plan.runs}")
        t0 = time.monotonic()
        k = r % len(turns)
        for c in turns[k:] + turns[:k]:
            turn(bench, c)
        took = time.monotonic() - t0
    if bench.worker is None:
        bench.worker = bench.start_worker()
    return found
