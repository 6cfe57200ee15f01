"""Latency: sequential requests, each from submit to result (sync 201, or 202 then SSE).

The runs happen in the headline's turns (``scenarios/drain.py``), on each contender's worker
right after its drain: one run of each row per headline round, no worker started for them.
"""

from __future__ import annotations

from report import Row, Run

from scenarios.context import Bench
from scenarios.plan import latency_measure

NOTES = {
    "sync": "aiohttp client, one connection, no Prefer: the API waits on its events "
    "subscription and answers 201 with the result; p50 (p99)",
    "sse": "POST respond-async (202), then GET …/requests/{id}/events read until the "
    "stream ends after the terminal event",
}
WHEN = "; a run per headline round, on the worker of acceptd's turn after its drains"


def rows(bench: Bench) -> tuple[Row, Row]:
    label = latency_measure(bench.plan)
    sync = Row(
        "3", label + "sync POST (201) round trip", "acceptd sync", "ms", note=NOTES["sync"] + WHEN
    )
    sse = Row(
        "3",
        label + "respond-async + SSE until terminal",
        "acceptd async+SSE",
        "ms",
        note=NOTES["sse"] + WHEN,
    )
    return sync, sse


def acceptd_run(bench: Bench, mode: str) -> Run:
    """One run of ``bench/http_client.py sync`` or ``sse``."""
    assert bench.api is not None
    servers = {"api": bench.api, "worker": bench.worker}
    bench.flush()
    extra = ["--n", str(bench.plan.latency_n)]
    seconds = bench.plan.latency_seconds
    res, cpu = bench.sequential(mode, extra, servers, "latency client", f"lat-{mode}", seconds)
    ok = "201" if mode == "sync" else "200"
    bad = {k: v for k, v in res["statuses"].items() if k != ok}
    if bad:
        raise RuntimeError(f"acceptd {mode} latency: unexpected statuses {bad}")
    bench.flush()
    return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"], "samples": res["n"]})


def note_samples(bench: Bench, row: Row) -> None:
    """A latency row's note ends with its samples per run when a run hit its time limit."""
    got = [int(r.extra["samples"]) for r in row.runs if "samples" in r.extra]
    if got and min(got) < bench.plan.latency_n:
        row.note += "; samples per run (time limit): " + " · ".join(f"{x:,}" for x in got)
