"""HTTP enqueue: ``POST /v1/echo`` respond-async at one ``acceptd api`` process, no worker.

Each contender (the hello-world ceiling, each peer's direct enqueue) runs right next to an
acceptd run of its own, and the targets compare those pairs.
"""

from __future__ import annotations

from report import Row, Run

from scenarios import ceilings, peers
from scenarios.context import ECHO, Bench, cpu_per_job
from scenarios.plan import alternate


def row(bench: Bench) -> Row:
    note = (
        f"{bench.client_name()}, {bench.plan.wrk_seconds:g} s per run; rate = requests "
        "queued (ZCARD pending) / duration; one `acceptd api` process, no worker; "
        "one run next to each other contender's in every round (the targets compare pairs)"
    )
    return Row(
        "1", "enqueue (HTTP 202, POST /v1/echo respond-async)", "acceptd", "req/s", note=note
    )


def acceptd_run(bench: Bench) -> Run:
    assert bench.api is not None
    url = f"http://127.0.0.1:{bench.api_port}/v1/echo"
    bench.flush()
    c0 = bench.cpu_snapshot({"api": bench.api})
    fin = bench.http_load(url, bench.plan.wrk_seconds)
    c1 = bench.cpu_snapshot({"api": bench.api})
    if fin.result is None:
        raise RuntimeError(f"load client failed: {fin.output[-1000:]}")
    accepted = int(bench.r.zcard(ECHO + "pending"))
    bench.flush()
    return Run(accepted / fin.result["elapsed"], cpu_per_job(c0, c1, accepted, fin))


def measure(bench: Bench, contenders: list[peers.Peer], reserve: float = 480.0) -> tuple[Row, Row]:
    """acceptd's enqueue row and the hello-world's; starts the API unless it is up (it stays
    up after). ``reserve``: seconds of the budget to leave for what comes after."""
    ours, hello = row(bench), ceilings.hello_row(bench)
    plan = bench.plan
    with ceilings.hello_step(bench, hello) as hello_step:
        if bench.api is None:
            bench.api, bench.api_port = bench.start_api()
        alternate(
            bench.runs_for(
                2 * plan.wrk_seconds + len(contenders) * (plan.wrk_seconds + 10) + 4, reserve
            ),
            (ours, lambda: acceptd_run(bench)),
            [hello_step, *peers.steps(bench, contenders, "enqueue")],
            "enqueue",
        )
    return ours, hello
