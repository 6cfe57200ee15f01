"""Drain on a 3-master Redis/Valkey Cluster against the same on one node, and Redis CPU per job
on each master.

The cluster is formed by the test suite's helper (``tests.support.cluster.LocalCluster``: the
same server binary as the embedded default, 3 masters, no replicas, on loopback). An ``acceptd
api`` and an ``acceptd worker`` with ``redis.cluster: true`` drain N echo requests (the producer
is the same HTTP load client as the one-node drain), runs paired with a one-node drain run
(the bench's own API and worker). Each master's CPU comes from ``INFO CPU`` before and after a
run (``used_cpu_user`` + ``used_cpu_sys``), so its share of the work shows how the load spreads.

``shards`` is the echo operation's ``operations.echo.shards`` (set only when it is not 1, so the
rows run on a release without sharded operations): ``bench/run.py --cluster-shards 1,3``
adds a row per shard count. The producer stops, and the done check ends, by summing every
``acceptd:{echo…}`` submit counter, queue and finish count on every master, whatever the shards'
keys are named (found by SCAN, at most once a second while the producer runs: part of R).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis
from procs import Server
from report import Row, Run, Target

from scenarios import drain
from scenarios.context import ROOT, Bench, cpu_per_job
from scenarios.plan import alternate, log
from service.runtime.embedded import free_port
from tests.support.cluster import LocalCluster

MASTERS = 3


class Masters:
    """Plain clients of each master, and the echo operation's keys found on them."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.clients = [redis.Redis(host="127.0.0.1", port=n.port) for n in cluster.masters]

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def flush(self) -> None:
        for c in self.clients:
            c.flushall()

    def cpu(self) -> list[float]:
        """Each master's CPU seconds so far (INFO CPU: user + sys)."""
        out = []
        for c in self.clients:
            info = c.info("cpu")
            out.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
        return out

    def _keys(self, c: redis.Redis, suffix: str) -> list[bytes]:
        return list(c.scan_iter(match=f"acceptd:{{echo*}}:{suffix}", count=10_000))

    def stopper(self, n: int) -> Callable[[subprocess.Popen[bytes]], None]:
        """The load client's tick: SIGINT once the submit counters reach ``n`` (the counters'
        keys are found by SCAN at most once a second, the counts read every tick)."""
        seqs: list[tuple[redis.Redis, bytes]] = []
        state = {"scanned": 0.0, "stopped": False}

        def tick(popen: subprocess.Popen[bytes]) -> None:
            if state["stopped"]:
                return
            now = time.monotonic()
            if now - state["scanned"] >= 1.0:
                state["scanned"] = now
                seqs[:] = [(c, k) for c in self.clients for k in self._keys(c, "seq")]
            if sum(int(c.get(k) or 0) for c, k in seqs) >= n:
                popen.send_signal(2)  # SIGINT: wrk prints its summary and exits
                state["stopped"] = True

        return tick

    def done(self, deadline: float) -> tuple[int, int]:
        """Wait until every submitted echo request finished: (submitted, finished)."""
        found = [
            {s: self._keys(c, s) for s in ("seq", "pending", "running", "tput")}
            for c in self.clients
        ]
        submitted = finished = 0
        while time.monotonic() < deadline:
            submitted = finished = left = 0
            for c, ks in zip(self.clients, found, strict=True):
                pipe = c.pipeline(transaction=False)
                for k in ks["seq"]:
                    pipe.get(k)
                for k in ks["pending"] + ks["running"]:
                    pipe.zcard(k)
                for k in ks["tput"]:
                    pipe.hgetall(k)
                replies = iter(pipe.execute())
                submitted += sum(int(next(replies) or 0) for _ in ks["seq"])
                left += sum(int(next(replies)) for _ in ks["pending"] + ks["running"])
                for _ in ks["tput"]:
                    tput = next(replies)
                    finished += sum(int(v) for k, v in tput.items() if k.startswith(b"n:"))
            if submitted and left == 0 and finished == submitted:
                break
            time.sleep(0.005)
        return submitted, finished


@contextmanager
def cluster_roles(
    bench: Bench, shards: int
) -> Iterator[tuple[LocalCluster, Masters, Server, Server, int]]:
    """A fresh 3-master cluster with an API and a worker on it."""
    cluster = LocalCluster(bench.tmp / f"cluster-{shards}", masters=MASTERS)
    cluster.start()
    masters = Masters(cluster)
    started: list[Server] = []
    try:
        port = free_port()
        env = bench.acceptd_env(cluster.url, port)
        env["ACCEPTD_REDIS__CLUSTER"] = "true"
        if shards != 1:
            env["ACCEPTD_OPERATIONS__ECHO__SHARDS"] = str(shards)
        base = [str(Path(sys.executable).parent / "acceptd")]
        opts = ["--config", str(ROOT / "config.yaml"), "--log-level", "WARNING"]
        api = Server(f"cluster-api-{shards}", [*base, "api", *opts], bench.tmp, env=env, cwd=ROOT)
        started.append(api)
        api.wait_for_http(f"http://127.0.0.1:{port}/readyz")
        worker = Server(
            f"cluster-worker-{shards}", [*base, "worker", *opts], bench.tmp, env=env, cwd=ROOT
        )
        started.append(worker)
        worker.wait_for_output("acceptd: running")
        yield cluster, masters, api, worker, port
    finally:
        for s in started:
            s.stop()
        masters.close()
        cluster.stop()


def cluster_run(bench: Bench, masters: Masters, api: Server, worker: Server, port: int) -> Run:
    """N echo requests through the cluster's API and worker, first submit to last result."""
    n = bench.n
    masters.flush()
    servers = {"api": api, "worker": worker}
    c0, m0 = bench.cpu_snapshot(servers), masters.cpu()
    t0 = time.perf_counter()
    fin = bench.http_load(
        f"http://127.0.0.1:{port}/v1/echo", 120, limit=n, on_tick=masters.stopper(n)
    )
    total, finished = masters.done(time.monotonic() + 120)
    elapsed = time.perf_counter() - t0
    c1, m1 = bench.cpu_snapshot(servers), masters.cpu()
    if not total or finished != total:
        raise RuntimeError(f"cluster drain: {finished} finished of {total} submitted")
    cpu = cpu_per_job(c0, c1, total, fin)
    per_master = [(b - a) / total * 1e6 for a, b in zip(m0, m1, strict=True)]
    cpu["redis"] = sum(per_master)  # every master's, not the one-node server's
    masters.flush()
    extra = {f"master{i + 1}_us": us for i, us in enumerate(per_master)}
    return Run(total / elapsed, cpu, extra)


def measure(
    bench: Bench, shard_counts: Sequence[int] = (1,), reserve: float = 300.0
) -> tuple[list[Row], list[Target]]:
    """The paired one-node row, a cluster drain row and a per-master CPU row per shard count.

    Needs the bench's one-node API and worker up (the one-node drain runs on them).
    ``reserve``: seconds of the budget to leave for what comes after.
    """
    n = bench.n
    how = f"producer {bench.client_name()} (stopped at N), worker concurrency 50"
    node = Row(
        "2c",
        f"drain N={n:,}, one node (paired with the cluster rows)",
        "acceptd",
        "jobs/s",
        note=f"as row 2: `acceptd api` + `acceptd worker`; {how}",
    )
    rows, goals = [node], []
    for shards in shard_counts:
        log(f"cluster: forming 3 masters, shards: {shards}")
        on_cluster = Row(
            "2c",
            f"drain N={n:,}, 3-master cluster, shards: {shards}",
            "acceptd",
            "jobs/s",
            note=f"`redis.cluster: true`, one `acceptd api` + one `acceptd worker`; {how}; "
            "R = every master's CPU (INFO CPU) per job",
        )
        spread = Row(
            "2c", f"Redis CPU per job on each master, shards: {shards}", "acceptd", "µs/job"
        )
        with cluster_roles(bench, shards) as (_, masters, api, worker, port):
            alternate(
                bench.runs_for(2 * n / 1200 + 10, reserve),
                (on_cluster, lambda: cluster_run(bench, masters, api, worker, port)),
                [(node, lambda: drain.acceptd_run(bench))],
                f"cluster drain, shards: {shards}",
            )
        _fill_spread(spread, on_cluster)
        rows += [on_cluster, spread]
        # alternate() keeps the anchor's (the cluster's) value over the other's, per pair.
        ratios = node.pair_ratios[-len(on_cluster.runs) :]
        goals.append(
            Target(
                f"cluster drain (shards: {shards}) vs one node",
                statistics.median(ratios) if ratios else None,
                ">= 0.5",
                "per pair "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + "; on 2 cores the cluster cannot be faster (its 3 servers share them)",
            )
        )
        if shards > 1:
            goals.append(_spread_target(spread, shards))
    return rows, goals


def _fill_spread(spread: Row, on_cluster: Row) -> None:
    """The per-master row: each run's total, each master's µs per job and share in the note."""
    for run in on_cluster.runs:
        per = [run.extra[f"master{i + 1}_us"] for i in range(MASTERS)]
        spread.runs.append(
            Run(
                sum(per),
                {},
                {f"share{i + 1}": p / max(sum(per), 1e-9) for i, p in enumerate(per)}
                | {f"us{i + 1}": p for i, p in enumerate(per)},
            )
        )
    med = spread.median_run()
    if med is None:
        return
    parts = [
        f"master {i + 1}: {med.extra[f'us{i + 1}']:,.0f} µs ({med.extra[f'share{i + 1}']:.0%})"
        for i in range(MASTERS)
    ]
    spread.note = (
        "INFO CPU (user + sys) of each master over a drain run / jobs; median run: "
        + ", ".join(parts)
        + "; the total is the value"
    )


def _spread_target(spread: Row, shards: int) -> Target:
    """Each master within ±25 % of an even share (only meaningful with shards >= masters)."""
    med = spread.median_run()
    worst = None
    if med is not None:
        worst = max(abs(med.extra[f"share{i + 1}"] * MASTERS - 1) for i in range(MASTERS))
    return Target(
        f"Redis CPU spread over {MASTERS} masters, shards: {shards} (worst deviation from 1/3)",
        worst,
        "<= 0.25",
        "max |share x 3 - 1| over the masters, median run",
    )
