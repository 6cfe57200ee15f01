"""Peer contenders (arq, SAQ, Dramatiq), each from its own venv made by ``make peers``.

Each runs its ``bench/peer_<name>.py`` in three modes: ``enqueue`` (no worker), ``drain``
and ``latency`` (each with the peer's worker started for that run alone).
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
from scenarios.plan import Plan, Step

NAMES = ("arq", "saq", "dramatiq")
VENVS = BENCH / ".peers"

NOTES = {
    "arq": {
        "enqueue": "`enqueue_job` from 50 coroutines",
        "drain": "1 worker, max_jobs 50, poll_delay 10 ms (default 0.5 s); "
        "done: ZCARD arq:queue = 0",
        "latency": "`job.result(poll_delay=1 ms)` (polls); worker poll 10 ms",
    },
    "saq": {
        "enqueue": "`queue.enqueue` from 50 coroutines (max_concurrent_ops 50)",
        "drain": "1 worker, concurrency 50; done: ZCARD saq:default:incomplete = 0",
        "latency": "pub/sub `queue.listen` on the job key, then `enqueue`, `job.refresh()` "
        "(`queue.apply` polls every 0.5 s)",
    },
    "dramatiq": {
        "enqueue": "`actor.send` from 50 threads (sync redis-py)",
        "drain": "1 worker process, 50 threads, Results middleware; "
        "done: HLEN dramatiq:default.msgs = 0",
        "latency": "Results middleware, `message.get_result(block=True)` (blocking list pop)",
    },
}


class PeerMissing(RuntimeError):
    """A peer's venv is missing or broken: ``make peers`` makes it."""


@dataclass
class Peer:
    """One peer: its venv's Python, its version and its rows (enqueue, drain, latency)."""

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
        "drain": Row(
            "2",
            f"drain N={plan.n:,} (first submit → last result)",
            label,
            "jobs/s",
            note=how["drain"],
        ),
        "latency": Row(
            "3",
            f"latency, {plan.latency_n} sequential: enqueue → result",
            label,
            "ms",
            note=how["latency"],
        ),
    }


def steps(bench: Bench, peers: list[Peer], mode: str) -> list[Step]:
    """Every peer's row and run for one mode, in the order given."""
    return [(p.rows[mode], functools.partial(run, bench, p, mode)) for p in peers]


@contextlib.contextmanager
def worker(bench: Bench, peer: Peer) -> Iterator[Server]:
    """The peer's worker process, started for one run and stopped after it."""
    common = ["--url", bench.url, "--concurrency", str(CONCURRENCY)]
    server = Server(
        f"{peer.name}-worker",
        [str(peer.python), str(BENCH / f"peer_{peer.name}.py"), "worker", *common],
        bench.tmp,
    )
    try:
        server.wait_for_output("READY")
        time.sleep(0.5)
        yield server
    finally:
        server.stop()


def run(bench: Bench, peer: Peer, mode: str) -> Run:
    """One run of a peer: ``enqueue`` (no worker), ``drain`` or ``latency``."""
    n = bench.plan.latency_n if mode == "latency" else bench.plan.n
    args = [
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
        "100" if mode == "drain" else "60",
    ]
    bench.flush()
    with contextlib.ExitStack() as stack:
        servers: dict[str, Any] = {}
        if mode != "enqueue":
            servers["worker"] = stack.enter_context(worker(bench, peer))
        c0 = bench.cpu_snapshot(servers)
        fin = run_client(args, bench.log_path(f"{peer.name}-{mode}"), 130)
        c1 = bench.cpu_snapshot(servers)
    bench.flush()
    res = need(fin, f"{peer.name} {mode}")
    cpu = cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"])
    if mode == "enqueue":
        return Run(res["n"] / res["enqueue_elapsed"], cpu)
    if mode == "drain":
        if not res["finished"]:
            raise RuntimeError(f"{peer.name} drain did not finish in time")
        return Run(res["n"] / res["elapsed"], cpu)
    return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"]})
