"""Durability cost: HTTP enqueue against a Redis with AOF on (``everysec``, then ``always``)."""

from __future__ import annotations

import redis
from procs import Server
from report import Row, Run

from scenarios.context import ECHO, Bench, need
from service.runtime.embedded import EmbeddedRedis, free_port


def aof_run(bench: Bench, policy: str) -> Run:
    """One enqueue run on a Redis of its own with ``appendfsync <policy>``."""
    emb = EmbeddedRedis(bench.tmp / f"aof-{policy}", port=free_port(), appendfsync=policy)
    emb.start()
    api: Server | None = None
    try:
        api, port = bench.start_api(emb.url, name=f"api-aof-{policy}")
        fin = bench.http_load(f"http://127.0.0.1:{port}/v1/echo", bench.plan.aof_seconds)
        res = need(fin, "load client")
        with redis.Redis.from_url(emb.url) as r:
            accepted = int(r.zcard(ECHO + "pending"))
        return Run(accepted / res["elapsed"])
    finally:
        if api is not None:
            api.stop()
        emb.stop()


def measure(bench: Bench, no_aof: float | None) -> Row:
    """One row over both policies; ``no_aof`` is the enqueue median without AOF."""
    row = Row("5", "enqueue with AOF (HTTP 202)", "acceptd", "req/s")
    notes = []
    for policy in ("everysec", "always"):
        # Both policies run unless the budget is spent (each takes ~6 s, ~16 s when busy).
        if bench.budget.left() < 20:
            notes.append(f"{policy}: skipped for time")
            continue
        run = aof_run(bench, policy)
        row.runs.append(run)
        share = f" ({run.value / no_aof:.0%} of no-AOF)" if no_aof else ""
        notes.append(f"appendfsync {policy}: {run.value:,.0f} req/s{share}")
    row.contender = "acceptd, AOF"
    row.note = (
        "; ".join(notes)
        + f"; one {bench.plan.aof_seconds:g} s run each on this disk; median/min/max over both"
    )
    return row
