"""Bulk submit (``POST /v1/echo/batch``) against BullMQ, the anchor row (issue 17 item 2).

acceptd: bulk submits of ``BATCH`` items from ``LANES`` concurrent connections of one Python
process (``http_client.py bulk``): enqueue (no worker; rate = items queued / duration) and drain
(API and worker up; N items from the first submit to the last result).

BullMQ (Node, from ``make peers``: ``bench/.peers/bullmq``), ``bench/peer_bullmq.cjs``: enqueue
with ``queue.add`` from 50 lanes and with ``addBulk`` (the same batches and lanes as acceptd's),
and drain with each producer while one worker process runs at concurrency 50; the same valkey
server binary and settings as everything else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from procs import Server, run_client
from report import Row, Run

from scenarios import drain, peers
from scenarios.context import BENCH, CONCURRENCY, ECHO, Bench, cpu_per_job, need
from scenarios.plan import Step, interleave, log

BATCH = 100  # items per bulk call (acceptd's and BullMQ's addBulk)
LANES = 8  # concurrent bulk calls
BULLMQ_DIR = BENCH / ".peers" / "bullmq"
BULLMQ_SCRIPT = BENCH / "peer_bullmq.cjs"


def bullmq_version() -> str | None:
    """The installed BullMQ's version (``make peers``), or None when it is missing."""
    node = shutil.which("node")
    package = BULLMQ_DIR / "node_modules" / "bullmq" / "package.json"
    if node is None or not package.exists():
        return None
    return str(json.loads(package.read_text())["version"])


class Rows:
    """The scenario's rows: acceptd's two and BullMQ's four (skipped when it is missing)."""

    def __init__(self, bench: Bench) -> None:
        n = bench.plan.n
        how = f"{LANES} concurrent bulk calls of {BATCH}"
        self.enqueue = Row(
            "1",
            f"enqueue (HTTP 202, bulk POST /v1/echo/batch of {BATCH})",
            "acceptd",
            "jobs/s",
            note=f"aiohttp client, {how}, {bench.plan.wrk_seconds:g} s per run; rate = requests "
            "queued (ZCARD pending) / duration; one `acceptd api` process, no worker",
        )
        self.drain = Row(
            "2",
            f"drain N={n:,} with bulk submits (first submit → last result)",
            "acceptd",
            "jobs/s",
            note=f"`acceptd api` + `acceptd worker` (concurrency 50), producer aiohttp client, "
            f"{how}; done as the drain above",
        )
        self.version = bullmq_version()
        label = f"bullmq {self.version}" if self.version else "bullmq"
        self.peer = {
            "enqueue": Row("1", "enqueue (direct, one Node process)", label, "jobs/s",
                           note="`queue.add` from 50 concurrent lanes, removeOnComplete; N "
                           "jobs, no worker (in the full run: the backlog drain's fill)"),
            "enqueue-bulk": Row("1", "enqueue (direct, one Node process)", label + " addBulk",
                                "jobs/s", note=f"`queue.addBulk` of {BATCH}, {LANES} lanes"),
            "drain": Row("2", f"drain N={n:,} (first submit → last result)", label, "jobs/s",
                         note="1 worker process, concurrency 50; producer `queue.add` from 50 "
                         "lanes; done: getJobCounts wait+active+delayed+prioritized = 0"),
            "drain-bulk": Row("2", f"drain N={n:,} (first submit → last result)",
                              label + " addBulk", "jobs/s",
                              note=f"as above, producer `addBulk` of {BATCH}, {LANES} lanes"),
        }  # fmt: skip
        if self.version is None:
            for row in self.peer.values():
                row.skipped = "BullMQ is not installed: run `make peers` (needs node and npm)"
        # The best Python peer's drain again, in the bulk drain's own rounds (the full run
        # names the peer once the headline has measured them): the 5x target then compares
        # runs of the same rounds, as every other target does, not rates minutes apart.
        self.python_peer: Row | None = None
        self._python_peer: tuple[peers.Peer, int] | None = None
        # Likewise the best Python peer's direct enqueue, in the bulk enqueue's rounds.
        self.python_enqueue: Row | None = None
        self._python_enqueue: tuple[peers.Peer, int] | None = None

    def pair_with(self, peer: peers.Peer, n: int, peer_pilot: int) -> None:
        """Run ``peer``'s drain of ``n`` in the bulk drain's rounds (its own row), each after
        an unrecorded drain of ``peer_pilot``."""
        self._python_peer = peer, n
        self.python_peer = Row(
            "2",
            f"drain N={n:,} (first submit → last result), in the bulk drain's rounds",
            f"{peer.name} {peer.version}",
            "jobs/s",
            note="the best Python peer's drain as in the headline (its producer and worker, "
            f"warmed by a drain of {peer_pilot:,} first), run again in each round of the bulk "
            "drain, next to acceptd's: the 5x target pairs the two round by round",
        )

    def pair_enqueue_with(self, peer: peers.Peer, n: int) -> None:
        """Run ``peer``'s direct enqueue of ``n`` (no worker) in the bulk enqueue's rounds."""
        self._python_enqueue = peer, n
        self.python_enqueue = Row(
            "1",
            "enqueue (direct, one Python process), in the bulk enqueue's rounds",
            f"{peer.name} {peer.version}",
            "jobs/s",
            note=f"the best Python peer's direct enqueue as in the headline (N = {n:,} from its "
            "own producer, no worker), run again in each round of the bulk enqueue, next to "
            "acceptd's: the 3x target pairs the two round by round",
        )

    def all(self) -> list[Row]:
        enqueue = [self.python_enqueue] if self.python_enqueue is not None else []
        drain = [self.python_peer] if self.python_peer is not None else []
        return [self.enqueue, *enqueue, self.drain, *drain, *self.peer.values()]

    def peer_steps(self, bench: Bench, modes: tuple[str, ...]) -> list[Step]:
        if self.version is None:
            return []
        return [(self.peer[m], functools.partial(bullmq_run, bench, m)) for m in modes]


def producer(bench: Bench, n: int, seconds: float) -> list[str]:
    return [
        sys.executable,
        str(BENCH / "http_client.py"),
        "bulk",
        "--url",
        f"http://127.0.0.1:{bench.api_port}/v1/echo/batch",
        "--n",
        str(n),
        "--duration",
        str(seconds),
        "--concurrency",
        str(LANES),
        "--batch",
        str(BATCH),
    ]


def enqueue_run(bench: Bench) -> Run:
    assert bench.api is not None
    bench.flush()
    c0 = bench.cpu_snapshot({"api": bench.api})
    fin = run_client(
        producer(bench, 100_000_000, bench.plan.wrk_seconds),
        bench.log_path("bulk-enqueue"),
        bench.plan.wrk_seconds + 30,
    )
    c1 = bench.cpu_snapshot({"api": bench.api})
    res = need(fin, "bulk enqueue")
    accepted = int(bench.r.zcard(ECHO + "pending"))
    bench.flush()
    return Run(accepted / res["elapsed"], cpu_per_job(c0, c1, accepted, fin, res["cpu_s"]))


def drain_run(bench: Bench) -> Run:
    assert bench.api is not None and bench.worker is not None
    n = bench.n
    bench.flush()
    servers = {"api": bench.api, "worker": bench.worker}
    c0 = bench.cpu_snapshot(servers)
    watch = drain.DoneWatch(bench, n)
    fin = run_client(producer(bench, n, 100), bench.log_path("bulk-drain"), 130, on_tick=watch)
    total, finished = drain.acceptd_done(bench, time.monotonic() + 120)
    res = need(fin, "bulk drain")
    # From the first submit, as every peer's drain (timed inside its producer) and the drain
    # with single submits: not from the producer process's start (its interpreter and imports).
    elapsed = watch.end() - res["t0_unix"]
    c1 = bench.cpu_snapshot(servers)
    if finished != total or total < n:
        raise RuntimeError(f"acceptd bulk drain: {finished} finished of {total} submitted")
    bench.flush()
    return Run(total / elapsed, cpu_per_job(c0, c1, total, fin, res["cpu_s"]))


@contextlib.contextmanager
def bullmq_worker(bench: Bench) -> Iterator[Server]:
    server = Server(
        "bullmq-worker",
        ["node", str(BULLMQ_SCRIPT), "worker", "--url", bench.url, "--concurrency",
         str(CONCURRENCY)],
        bench.tmp,
    )  # fmt: skip
    try:
        server.wait_for_output("READY")
        time.sleep(0.5)
        yield server
    finally:
        server.stop()


def bullmq_run(bench: Bench, mode: str) -> Run:
    args = ["node", str(BULLMQ_SCRIPT), mode, "--n", str(bench.n), "--url", bench.url,
            "--concurrency", str(CONCURRENCY), "--lanes", str(LANES), "--batch", str(BATCH),
            "--time-limit", "100"]  # fmt: skip
    bench.flush()
    with contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        if mode.startswith("drain"):
            servers["worker"] = stack.enter_context(bullmq_worker(bench))
        c0 = bench.cpu_snapshot(servers)
        fin = run_client(args, bench.log_path(f"bullmq-{mode}"), 130)
        c1 = bench.cpu_snapshot(servers)
    bench.flush()
    res = need(fin, f"bullmq {mode}")
    cpu = cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"])
    if mode.startswith("enqueue"):
        return Run(res["n"] / res["enqueue_elapsed"], cpu)
    if not res["finished"]:
        raise RuntimeError(f"bullmq {mode} did not finish in time")
    return Run(res["n"] / res["elapsed"], cpu)


def measure_enqueue(
    bench: Bench,
    rows: Rows,
    modes: tuple[str, ...] = ("enqueue", "enqueue-bulk"),
    reserve: float = 300.0,
) -> None:
    """Bulk enqueue rows (acceptd, BullMQ's add and addBulk); the API is up, no worker.

    In the full run BullMQ's single-add enqueue row is the backlog drain's fill (the same
    measure: N by ``queue.add`` from 50 lanes, no worker), so ``modes`` is
    ``("enqueue-bulk",)``.
    """
    steps: list[Step] = [(rows.enqueue, functools.partial(enqueue_run, bench))]
    if rows.python_enqueue is not None and rows._python_enqueue is not None:
        peer, peer_n = rows._python_enqueue
        run = functools.partial(peer_enqueue_run, bench, peer, peer_n)
        steps.append((rows.python_enqueue, run))
    steps += rows.peer_steps(bench, modes)
    runs = bench.runs_for(len(steps) * (bench.plan.wrk_seconds + 8), reserve)
    interleave(runs, steps, "bulk enqueue")


def peer_enqueue_run(bench: Bench, peer: peers.Peer, n: int) -> Run:
    """One direct enqueue of ``n`` by a Python peer's own producer, no worker: as its
    headline row (the backlog drain's fill), on a flushed server."""
    bench.flush()
    _, run = peers.fill(bench, peer, n)
    bench.flush()
    return run


def measure_drain(
    bench: Bench,
    rows: Rows,
    modes: tuple[str, ...] = ("drain", "drain-bulk"),
    reserve: float = 200.0,
) -> None:
    """Drain with bulk submits, against BullMQ's drains; the API and the worker are up.

    In the full run BullMQ's single-add drain row is measured by the drain scenario (its
    anchor row there), so ``modes`` is ``("drain-bulk",)``.
    """
    n = bench.n  # the plan's, or fewer on a slow machine (set by the headline)
    rows.drain.measure = f"drain N={n:,} with bulk submits (first submit → last result)"
    rows.peer["drain-bulk"].measure = f"drain N={n:,} (first submit → last result)"
    steps: list[Step] = [(rows.drain, functools.partial(drain_run, bench))]
    if rows.python_peer is not None and rows._python_peer is not None:
        peer, peer_n = rows._python_peer
        steps.append((rows.python_peer, functools.partial(peer_drain_run, bench, peer, peer_n)))
    steps += rows.peer_steps(bench, modes)
    runs = bench.runs_for(len(steps) * (n / 2000 + 8), reserve)
    interleave(runs, steps, "bulk drain")


def peer_drain_run(bench: Bench, peer: peers.Peer, n: int) -> Run:
    """One drain of a Python peer on a worker started for it (acceptd's stays up, idle),
    after a pilot drain (not recorded): in the headline its drain ran on a worker warmed by
    the backlog drain, and a fresh one (a second Dramatiq process still booting, say) would
    flatter acceptd here."""
    bench.flush()
    with peers.worker(bench, peer) as worker:
        peers.run_with(bench, peer, "drain", {"worker": worker}, bench.plan.pilot_n)
        bench.flush()
        run = peers.run_with(bench, peer, "drain", {"worker": worker}, n)
    bench.flush()
    return run


def measure_alone(bench: Bench) -> Rows:
    """``--only bulk``: start the API, the enqueue rows, then a worker and the drain rows."""
    rows = Rows(bench)
    log(f"bulk: BullMQ {rows.version or 'missing (make peers)'}")
    bench.api, bench.api_port = bench.start_api()
    measure_enqueue(bench, rows)
    bench.worker = bench.start_worker()
    measure_drain(bench, rows)
    return rows
