"""Scale: Redis memory per queued request, and the status monitor empty and at depth.

The queue is filled by real submit-script calls built by ``Queue.submit`` (``filler.py``).
In ``make bench`` the depth is the memory row's fill (100,000: ~12 s); ``make bench-scale``
(``bench/run.py --only scale``) fills on to 1,000,000 (~2 minutes) and measures there.
"""

from __future__ import annotations

import time

from filler import fill_queue
from report import Row, Run

from scenarios.context import Bench

# The empty queue the monitor at depth is compared with: another operation's, holding one
# request, on the same server and API at the same time (config.yaml's ``sleep``).
EMPTY_OP = "sleep"


def monitor(bench: Bench, ids: list[str]) -> list[Run]:
    """Sequential ``GET /v1/queue/requests/{id}`` from ``bench/http_client.py``, the ids taking
    turns request by request: a run per id (the CPU per GET is over all of them)."""
    assert bench.api is not None
    extra = [arg for rid in ids for arg in ("--id", rid)]
    extra += ["--n", str(bench.plan.monitor_n * len(ids))]
    res, cpu = bench.sequential("monitor", extra, {"api": bench.api}, "monitor client", "monitor")
    if set(res["statuses"]) != {"200"}:
        raise RuntimeError(f"monitor: unexpected statuses {res['statuses']}")
    by_id = res["by_id"]
    # bench.sequential divides by the first id's samples: per GET, every id's count.
    share = res["n"] / sum(by_id[rid]["n"] for rid in ids)
    cpu = {k: v * share for k, v in cpu.items()}
    return [Run(by_id[rid]["p50_ms"], cpu, {"p99_ms": by_id[rid]["p99_ms"]}) for rid in ids]


def measure(bench: Bench) -> list[Row]:
    """[memory per request, monitor with 1 queued, monitor at depth]; restarts the API (the
    two monitor rows are measured together, on the new API process)."""
    p = bench.plan
    mem = Row("5", "Redis memory per queued request", "acceptd", "bytes")
    mon_empty = Row("5", "status monitor GET, 1 request queued", "acceptd", "ms")
    mon_big = Row("5", f"status monitor GET, {p.big_n:,} queued (last one)", "acceptd", "ms")
    # Fill with no API subscribed (its events subscription would otherwise buffer events).
    if bench.api is not None:
        bench.api.stop()
        bench.api = None
    bench.flush()
    base = int(bench.r.info("memory")["used_memory"])
    t0 = time.perf_counter()
    done, last = fill_queue(bench.url, p.mem_n, p.fill_budget)
    used = int(bench.r.info("memory")["used_memory"])
    mem.runs.append(Run((used - base) / max(done, 1)))
    total = done
    if p.big_n > p.mem_n:  # ``make bench-scale``: on to 1,000,000 (the full run: mem_n)
        budget = min(p.fill_budget, bench.budget.left() - 120)
        more, last2 = fill_queue(bench.url, p.big_n - done, max(budget, 5))
        total += more
        last = last2 or last
    rate = total / (time.perf_counter() - t0)
    used_big = int(bench.r.info("memory")["used_memory"])
    mem.note = (
        f"INFO used_memory delta over {done:,} requests queued by real submit-script calls "
        f"built by `Queue.submit`, pipelined ({rate:,.0f}/s"
        + (f"; the fill stops after {p.fill_budget:g} s)" if done < p.mem_n else ")")
    )
    if total > done:
        mem.note += f"; at {total:,}: {(used_big - base) / total:,.0f} B/request"
    else:
        mem.note += "; `make bench-scale` fills on to 1,000,000"
    _, one = fill_queue(bench.url, 1, 10, op=EMPTY_OP)
    bench.api, bench.api_port = bench.start_api()
    at_empty, at_depth = monitor(bench, [one, last])
    mon_empty.runs.append(at_empty)
    mon_big.runs.append(at_depth)
    if total < p.big_n:
        mon_big.measure = f"status monitor GET, {total:,} queued (last one; time-bounded fill)"
    bench.flush()
    mon_big.note = (
        f"{p.monitor_n} sequential GETs of the last request (position {total - 1:,}), taking "
        "turns with the row above's; CPU per GET over both"
    )
    mon_empty.note = (
        f"{p.monitor_n} sequential GETs, aiohttp client, one connection, of the one request in "
        f"the `{EMPTY_OP}` queue while the echo queue holds the row below's, on the same server "
        "and API, taking turns with that row's GETs (a change in the machine's speed falls on "
        "both alike)"
    )
    return [mem, mon_empty, mon_big]
