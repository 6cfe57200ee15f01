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
N) until every job is done: the worker side alone, its process start-up left out. The clock
also notes when half the jobs are done: the second half's rate over the first half's shows
whether the rate is steady over N.

How many: N is the plan's (10,000), or, for a contender slower than N per ``drain_seconds``
(8 s), what it drains in 8 s at its rate in the previous round (a multiple of 500, at least
``n_min``): the rate (jobs / seconds, the same definition) is steady over N, and the slowest
peers (arq ~550 jobs/s) would otherwise take 18 s a run. A pilot backlog drain of ``pilot_n``
jobs per contender before the rounds gives the first rates (the first round's drain is sized
by half its rate) and warms every process's caches; it is not recorded. Each row's note lists its N
per run.

A round gives every contender one turn, starting one contender later each round; a turn is
the backlog drain, then the drain on the same (now warm) worker process, then the latency
rows' runs on it. The headline runs first in ``make bench`` and its rounds (3) run unless the
next would leave less than ``RESERVE`` of the budget: its medians are the point of the run,
the scenarios after it trim their runs instead (on a busy machine the run may then end past
its budget).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from procs import Server, run_client
from report import Row, Run

from scenarios import bulk, ceilings, latency, peers
from scenarios.context import BENCH, CONCURRENCY, ECHO, Bench, cpu_per_job, need
from scenarios.plan import backlog_measure, drain_measure, log, phase

BULLMQ_KEYS = "bull:bench:"


@dataclass
class Contender:
    """What a turn needs: how to queue N, start the worker, read its queue, drain with it."""

    name: str
    backlog: Row
    drains: list[Row]
    # Queue N with no worker running: how many it queued, and the run of the contender's
    # direct enqueue row when the fill is one (the peers', BullMQ's).
    fill: Callable[[int], tuple[int, Run | None]]
    spawn: Callable[[], Server]
    probe: Callable[[], tuple[int, int]]
    drain: Callable[[Server, int], list[Run]]
    release: Callable[[Server], None] = Server.stop
    enqueue: Row | None = None
    # Latency runs on the warm worker after the drain (recorded into their rows; not in the
    # pilot).
    latency: Callable[[Server], None] | None = None
    # The latest measured rates (jobs/s), by "backlog" and "drain": the next N's size.
    rates: dict[str, float] = field(default_factory=dict)


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
    drain_name = drain_measure(bench.plan)
    backlog_name = backlog_measure(bench.plan)
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
    bullmq_drain.measure = drain_name
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
                  f"timed from its first submit; {done} (polled every 5 ms while the producer "
                  "runs, as each peer's producer polls its own queue)"),
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


class DoneWatch:
    """``run_client``'s ``on_tick`` for an acceptd drain: polls the queue while the producer
    runs and notes when all ``n`` submitted requests had finished.

    A peer's producer notes its drain's end itself, polling its queue as it waits (every
    5 ms); acceptd's producer is an HTTP client, so the harness polls for it, at the same
    pace, instead of after the producer's process has exited (about 30 ms of interpreter
    teardown, which would count against acceptd whenever its worker finishes first).
    """

    def __init__(self, bench: Bench, n: int) -> None:
        self.bench, self.n = bench, n
        self.at: float | None = None  # time.time() when it first held

    def __call__(self, _producer: object) -> None:
        if self.at is None:
            submitted, finished, pending, running = acceptd_state(self.bench)
            if submitted >= self.n and finished == submitted and pending + running == 0:
                self.at = time.time()

    def end(self) -> float:
        """When the drain ended: as noted while the producer ran, else now (the caller has
        just waited for it with ``acceptd_done``)."""
        return self.at if self.at is not None else time.time()


def acceptd_probe(bench: Bench) -> tuple[int, int]:
    submitted, finished, pending, running = acceptd_state(bench)
    return pending, max(submitted - finished, pending + running)


def acceptd_fill(bench: Bench, n: int) -> tuple[int, Run | None]:
    """Stop the worker, then queue ``n`` over HTTP (wrk when installed: the fill is not timed)."""
    if bench.worker is not None:
        bench.worker.stop()
        bench.worker = None
    bench.flush()
    fin = bench.http_load(url(bench), 120, limit=n, on_tick=stop_at(bench, n))
    if fin.result is None:
        raise RuntimeError(f"acceptd fill: load client failed: {fin.output[-1000:]}")
    return acceptd_state(bench)[0], None


def acceptd_spawn(bench: Bench) -> Server:
    """``acceptd worker``, started (not waited for); it stays up as the bench's worker."""
    bench.worker = bench.acceptd("worker", "worker", bench.url, 0)
    return bench.worker


def url(bench: Bench) -> str:
    return f"http://127.0.0.1:{bench.api_port}/v1/echo"


def stop_at(bench: Bench, n: int) -> Callable[[object], None]:
    """A load-client tick that stops wrk (SIGINT: it prints its summary) once n are queued."""
    stopped = [False]

    def tick(popen: object) -> None:
        if not stopped[0] and int(bench.r.get(ECHO + "seq") or 0) >= n:
            popen.send_signal(2)  # type: ignore[attr-defined]
            stopped[0] = True

    return tick


def acceptd_drain(bench: Bench, worker: Server, n: int) -> list[Run]:
    """The aiohttp producer's drain, then wrk's (when installed), on the running worker."""
    runs = [acceptd_drain_aiohttp(bench, worker, n)]
    if bench.wrk:
        runs.append(acceptd_drain_wrk(bench, worker, n))
    return runs


def acceptd_finished(bench: Bench) -> int:
    total, finished = acceptd_done(bench, time.monotonic() + 120)
    if finished != total:
        raise RuntimeError(f"acceptd drain: {finished} finished of {total} submitted")
    return total


def acceptd_drain_aiohttp(bench: Bench, worker: Server, n: int) -> Run:
    assert bench.api is not None
    bench.flush()
    servers = {"api": bench.api, "worker": worker}
    args = [sys.executable, str(BENCH / "http_client.py"), "load", "--url", url(bench),
            "--n", str(n), "--duration", "100", "--concurrency", str(CONCURRENCY)]  # fmt: skip
    c0 = bench.cpu_snapshot(servers)
    watch = DoneWatch(bench, n)
    fin = run_client(args, bench.log_path("drain-aiohttp"), 130, on_tick=watch)
    res = need(fin, "acceptd drain producer")
    total = acceptd_finished(bench)
    elapsed = watch.end() - res["t0_unix"]
    c1 = bench.cpu_snapshot(servers)
    if res["statuses"] != {"202": n} or total != n:
        raise RuntimeError(f"acceptd drain: {total} queued, statuses {res['statuses']}")
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin, res["cpu_s"]), {"n": total})


def acceptd_drain_wrk(bench: Bench, worker: Server, n: int) -> Run:
    assert bench.api is not None
    bench.flush()
    servers = {"api": bench.api, "worker": worker}
    c0 = bench.cpu_snapshot(servers)
    t0 = time.perf_counter()
    fin = bench.http_load(url(bench), 120, limit=n, on_tick=stop_at(bench, n))
    total = acceptd_finished(bench)
    elapsed = time.perf_counter() - t0
    c1 = bench.cpu_snapshot(servers)
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin), {"n": total})


def acceptd_run(bench: Bench) -> Run:
    """One drain of ``bench.n`` on the bench's worker with the HTTP load client (wrk when
    installed): the cluster scenario's one-node comparison."""
    assert bench.worker is not None
    return acceptd_drain_wrk(bench, bench.worker, bench.n)


def acceptd(bench: Bench, found: Rows, lat: tuple[Row, Row, Row]) -> Contender:
    drains = [found.drain, *([found.drain_wrk] if bench.wrk else [])]

    def sync_and_sse(worker: Server) -> None:
        for row, mode in ((lat[0], "sync"), (lat[1], "sse")):
            row.runs.append(latency.acceptd_run(bench, mode))
        # The synchronous path's floor right after it, in the same turn (its own processes).
        ceilings.sync_floor(bench, lat[2])

    return Contender(
        "acceptd",
        found.backlog,
        drains,
        fill=lambda n: acceptd_fill(bench, n),
        spawn=lambda: acceptd_spawn(bench),
        probe=lambda: acceptd_probe(bench),
        drain=lambda w, n: acceptd_drain(bench, w, n),
        release=lambda w: None,  # stays up as bench.worker
        latency=sync_and_sse,
    )


# the Python peers and BullMQ --------------------------------------------------------------


def peer(bench: Bench, p: peers.Peer) -> Contender:
    def fill(n: int) -> tuple[int, Run | None]:
        return peers.fill(bench, p, n)

    def drain(worker: Server, n: int) -> list[Run]:
        return [peers.run_with(bench, p, "drain", {"worker": worker}, n)]

    def lat(worker: Server) -> None:
        bench.flush()
        p.rows["latency"].runs.append(peers.run_with(bench, p, "latency", {"worker": worker}))

    return Contender(
        p.name,
        p.rows["backlog"],
        [p.rows["drain"]],
        fill=fill,
        spawn=lambda: peers.start_worker(bench, p),
        probe=lambda: peers.probe(bench, p),
        drain=drain,
        enqueue=p.rows["enqueue"],
        latency=lat,
    )


def bullmq_args(bench: Bench, mode: str, n: int) -> list[str]:
    return ["node", str(bulk.BULLMQ_SCRIPT), mode, "--n", str(n), "--url", bench.url,
            "--concurrency", str(CONCURRENCY), "--time-limit", "100"]  # fmt: skip


def bullmq_fill(bench: Bench, n: int) -> tuple[int, Run | None]:
    """``queue.add`` from 50 lanes, no worker: also a run of BullMQ's direct enqueue row."""
    c0 = bench.cpu_snapshot({})
    fin = run_client(bullmq_args(bench, "enqueue", n), bench.log_path("bullmq-fill"), 130)
    c1 = bench.cpu_snapshot({})
    res = need(fin, "bullmq fill")
    done = int(res["n"])
    cpu = cpu_per_job(c0, c1, done, fin, res["cpu_s"])
    return done, Run(done / res["enqueue_elapsed"], cpu, {"n": done})


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


def bullmq_drain(bench: Bench, worker: Server, n: int) -> list[Run]:
    servers = {"worker": worker}
    c0 = bench.cpu_snapshot(servers)
    fin = run_client(bullmq_args(bench, "drain", n), bench.log_path("bullmq-drain"), 130)
    c1 = bench.cpu_snapshot(servers)
    res = need(fin, "bullmq drain")
    if not res["finished"]:
        raise RuntimeError("bullmq drain did not finish in time")
    cpu = cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"])
    return [Run(res["n"] / res["elapsed"], cpu, {"n": res["n"]})]


def bullmq(bench: Bench, found: Rows, enqueue: Row) -> Contender:
    return Contender(
        "bullmq",
        found.bullmq_backlog,
        [found.bullmq_drain],
        fill=lambda n: bullmq_fill(bench, n),
        spawn=lambda: bullmq_spawn(bench),
        probe=lambda: bullmq_probe(bench),
        drain=lambda w, n: bullmq_drain(bench, w, n),
        enqueue=enqueue,
    )


# the clock and the rounds -----------------------------------------------------------------


def backlog_clock(bench: Bench, c: Contender, worker: Server, n: int) -> Run:
    """From the worker's first job (waiting < n) until every job is done (nothing left).

    Also when half were done: ``extra["half"]`` is the second half's rate over the first's.
    """
    deadline = time.monotonic() + 120
    t0 = t_half = t1 = 0.0
    c0: dict[str, float] = {}
    while time.monotonic() < deadline:
        waiting, remaining = c.probe()
        if not t0 and (waiting < n or remaining < n):
            t0 = time.perf_counter()
            c0 = bench.cpu_snapshot({"worker": worker})
        if t0 and not t_half and remaining <= n / 2:
            t_half = time.perf_counter()
        if t0 and remaining == 0:
            t1 = time.perf_counter()
            break
        if not worker.alive():
            raise RuntimeError(f"{c.name} worker exited: {worker.output()[-1500:]}")
        time.sleep(0.001 if not t0 else 0.005)
    if not t1:
        raise RuntimeError(f"{c.name} backlog drain did not finish in time")
    c1 = bench.cpu_snapshot({"worker": worker})
    half = (t_half - t0) / max(t1 - t_half, 1e-9)
    return Run(n / (t1 - t0), cpu_per_job(c0, c1, n, None), {"n": n, "half": half})


def size(bench: Bench, rate: float | None) -> int:
    """N for a run: the plan's, or ``drain_seconds`` at ``rate`` when that is fewer (a
    multiple of 500, at least ``n_min``); the plan's when no rate is known yet."""
    p = bench.plan
    if rate is None:
        return p.n
    return max(p.n_min, min(p.n, int(rate * p.drain_seconds) // 500 * 500))


@dataclass
class Turn:
    """One turn's runs: the fill's (direct enqueue), the backlog drain's and the drains'; and
    where its wall time went (seconds by step, for the log)."""

    enqueue: Run | None
    backlog: Run
    drains: list[Run]
    took: dict[str, float]

    def timing(self) -> str:
        return " · ".join(f"{k} {v:.1f}" for k, v in self.took.items())


def turn(
    bench: Bench, c: Contender, n_backlog: int, n_drain: int, with_latency: bool = True
) -> Turn:
    """One contender's turn: N queued, its worker started, the backlog clock, a drain, then
    (``with_latency``) the latency rows' runs on the same warm worker."""
    took: dict[str, float] = {}
    t = time.monotonic()

    def step(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        took[name] = now - t
        t = now

    bench.flush()
    n, enq = c.fill(n_backlog)
    step("fill")
    worker = c.spawn()
    try:
        backlog = backlog_clock(bench, c, worker, n)
        step("start")
        # The worker's start-up (until its first job) apart from the clock's run.
        took["backlog"] = n / backlog.value
        took["start"] -= took["backlog"]
        drains = c.drain(worker, n_drain) if n_drain else []
        step("drain")
        if with_latency and c.latency is not None:
            c.latency(worker)
            step("latency")
    finally:
        c.release(worker)
    bench.flush()
    step("stop")
    c.rates["backlog"] = backlog.value
    if drains:
        c.rates["drain"] = min(r.value for r in drains)
    return Turn(enq, backlog, drains, took)


def record(c: Contender, t: Turn) -> None:
    if c.enqueue is not None and t.enqueue is not None:
        c.enqueue.runs.append(t.enqueue)
    c.backlog.runs.append(t.backlog)
    for row, result in zip(c.drains, t.drains, strict=True):
        row.runs.append(result)


def note_sizes(bench: Bench, c: Contender) -> None:
    """Each row's note ends with its N per run (and the backlog's half-to-half rates)."""
    p = bench.plan
    for row in [*([c.enqueue] if c.enqueue else []), c.backlog, *c.drains]:
        ns = [int(r.extra["n"]) for r in row.runs if "n" in r.extra]
        if not ns:
            continue
        each = f"{ns[0]:,} each" if len(set(ns)) == 1 else " · ".join(f"{x:,}" for x in ns)
        row.note += f"; N per run: {each}"
        if min(ns) < p.n:
            row.note += f" (below {p.n:,}: {p.drain_seconds:g} s at its previous round's rate)"
        halves = [r.extra["half"] for r in row.runs if "half" in r.extra]
        if halves:
            row.note += "; 2nd half's rate / 1st half's: " + " · ".join(f"{h:.2f}" for h in halves)


# A headline round starts only if, at the last one's length, it leaves this much of the budget
# for the parts after it (enqueue, processes, bulk, cluster, memory, durability, webhooks at
# one run each need about 130 s on a quiet machine, where 3 rounds leave far more). Less than
# they need: on a busy machine the third round goes first, and the run may end a minute or
# two past its budget (at load 14 a round took 258 s and 150 s here left room for 2 rounds).
RESERVE = 60.0


def measure(
    bench: Bench,
    contenders: list[peers.Peer],
    bullmq_drain_row: Row,
    bullmq_enqueue: Row,
    lat: tuple[Row, Row, Row],
) -> Rows:
    """Every contender's backlog drain and drain, in interleaved rounds; the API is up.

    Each turn ends with the latency rows' runs on the contender's warm worker: acceptd's sync
    and SSE rows and the synchronous path's floor (``lat``), each Python peer's latency row
    (BullMQ has none).

    ``bullmq_drain_row`` is BullMQ's drain row (made by the bulk scenario, which compares
    drains with bulk submits against it); it is skipped there when BullMQ is not installed.
    ``bullmq_enqueue`` is BullMQ's direct enqueue row: its fills are runs of it, as the
    Python peers'. acceptd's last worker may still be up afterwards (``bench.worker``).
    """
    found = rows(bench, bullmq_drain_row)
    found.peer_rows = [p.rows[m] for p in contenders for m in ("drain", "backlog")]
    turns = [acceptd(bench, found, lat), *(peer(bench, p) for p in contenders)]
    if not bullmq_drain_row.skipped:
        turns.append(bullmq(bench, found, bullmq_enqueue))
    pilot = bench.plan.pilot_n
    with phase(f"drain and backlog drain: pilot backlog drains (N = {pilot:,}, not recorded)"):
        for c in turns:
            t = turn(bench, c, pilot, 0, with_latency=False)
            log(f"  {c.name}: backlog {c.rates['backlog']:,.0f}/s; s: {t.timing()}")
    took = 0.0
    for r in range(bench.plan.runs):
        if r and bench.budget.left() - RESERVE < took:
            log(f"drain and backlog drain: {r} rounds (the budget has no room for another)")
            break
        k = r % len(turns)
        with phase(f"drain and backlog drain: round {r + 1} of {bench.plan.runs}"):
            t0 = time.monotonic()
            for c in turns[k:] + turns[:k]:
                # The first drain is sized by half the pilot's backlog rate: a drain is slower
                # (acceptd's 0.4x its backlog drain, the peers' 0.6-1.1x).
                backlog_rate = c.rates["backlog"]
                nb = size(bench, backlog_rate)
                nd = size(bench, c.rates.get("drain", backlog_rate / 2))
                t = turn(bench, c, nb, nd)
                record(c, t)
                log(f"  {c.name}: backlog N={nb:,} {c.rates['backlog']:,.0f}/s, "
                    f"drain N={nd:,} {c.rates['drain']:,.0f}/s; s: {t.timing()}")  # fmt: skip
            took = time.monotonic() - t0
    for c in turns:
        note_sizes(bench, c)
    for row in [*lat, *(p.rows["latency"] for p in contenders)]:
        latency.note_samples(bench, row)
    # The drains after the headline (cluster, bulk) take N by the same rule, at acceptd's
    # wrk drain rate (their producers are as fast or faster).
    fastest = found.drain_wrk if found.drain_wrk.runs else found.drain
    bench.n = size(bench, fastest.median)
    log(f"drains after the headline: N = {bench.n:,}")
    return found
