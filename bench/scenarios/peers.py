"""Peer contenders (arq, SAQ, Dramatiq), each from its own venv made by ``make peers``.

Each runs its ``bench/peer_<name>.py`` in three modes: ``enqueue`` (no worker), ``drain``
and ``latency`` (each with the peer's worker running). The worker is the peer's own CLI
(``saq``, ``arq``, ``dramatiq``) on that script's settings, as each peer's docs run it.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import Server, run_client
from report import Row, Run

from scenarios.context import BENCH, CONCURRENCY, Bench, cpu_per_job, need
from scenarios.plan import Plan, Step, backlog_measure, drain_measure, latency_measure

NAMES = ("arq", "saq", "dramatiq")
VENVS = BENCH / ".peers"

NOTES = {
    "arq": {
        "enqueue": "`enqueue_job` from 50 coroutines; N jobs, no worker (the backlog drain's fill)",
        "drain": "producer `enqueue_job` from 50 coroutines; worker `arq peer_arq.WorkerSettings` "
        "(1 process), hiredis, max_jobs 50, poll_delay 10 ms (default 0.5 s); "
        "done: ZCARD arq:queue = 0",
        "backlog": "worker as above; started: ZCARD arq:queue < N (a job finished); "
        "done: ZCARD arq:queue = 0",
        "latency": "`job.result(poll_delay=1 ms)` (polls); worker poll 10 ms",
    },
    "saq": {
        "enqueue": "`queue.enqueue` from 50 coroutines (max_concurrent_ops 50); N jobs, no "
        "worker (the backlog drain's fill)",
        "drain": "producer `queue.enqueue` from 50 coroutines; worker `saq peer_saq.settings` "
        "(1 process, the CLI's default), hiredis, concurrency 50 (default 10); "
        "done: ZCARD saq:default:incomplete = 0",
        "backlog": "worker as above; started: LLEN saq:default:queued < N; "
        "done: ZCARD saq:default:incomplete = 0",
        "latency": "pub/sub `queue.listen` on the job key, then `enqueue`, `job.refresh()` "
        "(`queue.apply` polls every 0.5 s)",
    },
    "dramatiq": {
        "enqueue": "`actor.send` from 50 threads (sync redis-py); N jobs, no worker (the "
        "backlog drain's fill)",
        "drain": "producer `actor.send` from 50 threads; worker `dramatiq peer_dramatiq` "
        "(its defaults: 1 process per core, 8 threads each), hiredis, Results middleware; "
        "done: HLEN dramatiq:default.msgs = 0",
        "backlog": "worker as above; started: LLEN dramatiq:default < N; "
        "done: HLEN dramatiq:default.msgs = 0",
        "latency": "Results middleware, `message.get_result(block=True)` (blocking list pop)",
    },
}


class PeerMissing(RuntimeError):
    """A peer's venv is missing or broken: ``make peers`` makes it."""


# The peer's worker under its own CLI (run in bench/, with the peer's venv's bin on PATH).
WORKER_CLI = {
    "arq": ["arq", "peer_arq.WorkerSettings"],
    "saq": ["saq", "peer_saq.settings"],
    "dramatiq": ["dramatiq", "peer_dramatiq"],
}

# Redis reads telling (waiting, not yet done) for a peer's queue: its own keys, no client.
PROBES = {
    "arq": (("zcard", "arq:queue"), ("zcard", "arq:queue")),
    "saq": (("llen", "saq:default:queued"), ("zcard", "saq:default:incomplete")),
    "dramatiq": (("llen", "dramatiq:default"), ("hlen", "dramatiq:default.msgs")),
}


@dataclass
class Peer:
    """One peer: its venv's Python, its version and its rows (enqueue, drain, backlog, latency)."""

    name: str
    python: Path
    version: str
    rows: dict[str, Row] = field(default_factory=dict)


def find(name: str) -> tuple[Path, str]:
    """The peer venv's Python and the peer's version; ``PeerMissing`` if it is not there."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not (python.exists() and (venv / ".installed").exists()):
        raise PeerMissing(f"no venv for peer {name!r} at {venv}: run `make peers`")
    try:
        return python, subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        msg = f"peer {name!r} in {venv} does not answer ({exc}): run `make peers`"
        raise PeerMissing(msg) from exc


def load(names: list[str], plan: Plan) -> list[Peer]:
    """Every wanted peer, found and given its rows."""
    peers = []
    for name in names:
        python, version = find(name)
        peers.append(Peer(name, python, version, rows(name, version, plan)))
    return peers


def rows(name: str, version: str, plan: Plan) -> dict[str, Row]:
    label = f"{name} {version}"
    how = NOTES[name]
    return {
        "enqueue": Row(
            "1", "enqueue (direct, one Python process)", label, "jobs/s", note=how["enqueue"]
        ),
        "drain": Row("2", drain_measure(plan), label, "jobs/s", note=how["drain"]),
        "backlog": Row("2", backlog_measure(plan), label, "jobs/s", note=how["backlog"]),
        "latency": Row(
            "3",
            latency_measure(plan) + "enqueue → result",
            label,
            "ms",
            note=how["latency"] + "; a run per headline round, on the worker of its turn "
            "after its drain",
        ),
    }


def steps(bench: Bench, peers: list[Peer], mode: str) -> list[Step]:
    """Every peer's row and run for one mode, in the order given."""
    return [(p.rows[mode], functools.partial(run, bench, p, mode)) for p in peers]


def env(bench: Bench) -> dict[str, str]:
    """What the peer scripts read when their CLI imports them: the URL and the concurrency."""
    return {"BENCH_REDIS_URL": bench.url, "BENCH_CONCURRENCY": str(CONCURRENCY)}


def start_worker(bench: Bench, peer: Peer) -> Server:
    """The peer's CLI worker, started (not waited for)."""
    cli = WORKER_CLI[peer.name]
    bindir = peer.python.parent
    return Server(
        f"{peer.name}-worker",
        [str(bindir / cli[0]), *cli[1:]],
        bench.tmp,
        env={**env(bench), "PYTHONPATH": str(BENCH)},
        cwd=BENCH,
    )


def probe(bench: Bench, peer: Peer) -> tuple[int, int]:
    """(waiting, not yet done) for the peer's queue, in one transaction."""
    pipe = bench.r.pipeline(transaction=True)
    for cmd, key in PROBES[peer.name]:
        getattr(pipe, cmd)(key)
    waiting, remaining = pipe.execute()
    return int(waiting), int(remaining)


@contextlib.contextmanager
def worker(bench: Bench, peer: Peer) -> Iterator[Server]:
    """The peer's worker process, started for one run and stopped after it."""
    server = start_worker(bench, peer)
    try:
        server.wait_for_output("READY")
        time.sleep(0.5)
        yield server
    finally:
        server.stop()


def client(bench: Bench, peer: Peer, mode: str, n: int | None = None) -> list[str]:
    """The command line of the peer's script in one mode (its producer or latency client):
    ``n`` jobs (default: the plan's latency N, or its N)."""
    if n is None:
        n = bench.plan.latency_n if mode == "latency" else bench.plan.n
    return [
        str(peer.python),
        str(BENCH / f"peer_{peer.name}.py"),
        mode,
        "--n",
        str(n),
        "--url",
        bench.url,
        "--concurrency",
        str(CONCURRENCY),
        "--time-limit",
        {"drain": "100", "latency": f"{bench.plan.latency_seconds:g}"}.get(mode, "60"),
    ]


def run_with(
    bench: Bench, peer: Peer, mode: str, servers: dict[str, Any], n: int | None = None
) -> Run:
    """One run of the peer's script in ``mode`` while ``servers`` (its worker, if any) run."""
    c0 = bench.cpu_snapshot(servers)
    fin = run_client(
        client(bench, peer, mode, n), bench.log_path(f"{peer.name}-{mode}"), 130, env(bench)
    )
    c1 = bench.cpu_snapshot(servers)
    res = need(fin, f"{peer.name} {mode}")
    cpu = cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"])
    if mode == "enqueue":
        return Run(res["n"] / res["enqueue_elapsed"], cpu)
    if mode == "drain":
        if not res["finished"]:
            raise RuntimeError(f"{peer.name} drain did not finish in time")
        return Run(res["n"] / res["elapsed"], cpu, {"n": res["n"]})
    return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"], "samples": res["n"]})


def run(bench: Bench, peer: Peer, mode: str) -> Run:
    """One run of a peer: ``enqueue`` (no worker), ``drain`` or ``latency`` (its worker
    started for this run alone)."""
    bench.flush()
    with contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        if mode != "enqueue":
            servers["worker"] = stack.enter_context(worker(bench, peer))
        result = run_with(bench, peer, mode, servers)
    bench.flush()
    return result


def fill(bench: Bench, peer: Peer, n: int) -> tuple[int, Run]:
    """Queue ``n`` jobs with the peer's own enqueue, no worker running: the backlog drain's
    fill, which is also a run of the peer's direct enqueue row (the same measure; the caller
    records it). How many it queued, and that run.
    """
    c0 = bench.cpu_snapshot({})
    fin = run_client(
        client(bench, peer, "enqueue", n), bench.log_path(f"{peer.name}-fill"), 130, env(bench)
    )
    c1 = bench.cpu_snapshot({})
    res = need(fin, f"{peer.name} fill")
    done = int(res["n"])
    cpu = cpu_per_job(c0, c1, done, fin, res["cpu_s"])
    return done, Run(done / res["enqueue_elapsed"], cpu, {"n": done})
