"""Latency: sequential requests, each from submit to result (sync 201, or 202 then SSE)."""

from __future__ import annotations

import functools

from report import Row, Run

from scenarios import peers
from scenarios.context import Bench
from scenarios.plan import interleave

NOTES = {
    "sync": "aiohttp client, one connection, no Prefer: the API waits on its events "
    "subscription and answers 201 with the result; p50 (p99)",
    "sse": "POST respond-async (202), then GET …/requests/{id}/events read until the "
    "stream ends after the terminal event",
}


def rows(bench: Bench) -> tuple[Row, Row]:
    label = f"latency, {bench.plan.latency_n} sequential: "
    sync = Row("3", label + "sync POST (201) round trip", "acceptd sync", "ms", note=NOTES["sync"])
    sse = Row(
        "3",
        label + "respond-async + SSE until terminal",
        "acceptd async+SSE",
        "ms",
        note=NOTES["sse"],
    )
    return sync, sse


def acceptd_run(bench: Bench, mode: str) -> Run:
    """One run of ``bench/http_client.py sync`` or ``sse``."""
    assert bench.api is not None
    servers = {"api": bench.api, "worker": bench.worker}
    bench.flush()
    extra = ["--n", str(bench.plan.latency_n)]
    res, cpu = bench.sequential(mode, extra, servers, "latency client", f"lat-{mode}")
    ok = "201" if mode == "sync" else "200"
    bad = {k: v for k, v in res["statuses"].items() if k != ok}
    if bad:
        raise RuntimeError(f"acceptd {mode} latency: unexpected statuses {bad}")
    bench.flush()
    return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"]})


def measure(bench: Bench, contenders: list[peers.Peer]) -> tuple[Row, Row]:
    """acceptd's sync and SSE rows; needs the API and the worker up."""
    sync, sse = rows(bench)
    k = len(contenders)
    interleave(
        bench.runs_for(bench.plan.latency_n * 0.004 * (2 + k) + 3 * k, 300),
        [
            (sync, functools.partial(acceptd_run, bench, "sync")),
            (sse, functools.partial(acceptd_run, bench, "sse")),
            *peers.steps(bench, contenders, "latency"),
        ],
        "latency",
    )
    return sync, sse
