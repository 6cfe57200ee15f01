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


def monitor(bench: Bench, rid: str) -> Run:
    """Sequential ``GET /v1/queue/requests/{rid}`` from ``bench/http_client.py``."""
    assert bench.api is not None
    extra = ["--id", rid, "--n", str(bench.plan.monitor_n)]
    res, cpu = bench.sequential("monitor", extra, {"api": bench.api}, "monitor client", "monitor")
    if set(res["statuses"]) != {"200"}:
        raise RuntimeError(f"monitor: unexpected statuses {res['statuses']}")
    return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"]})


def measure(bench: Bench) -> list[Row]:
    """[memory per request, monitor with 1 queued, monitor at depth]; restarts the API."""
    p = bench.plan
    mem = Row("5", "Redis memory per queued request", "acceptd", "bytes")
    mon_empty = Row("5", "status monitor GET, 1 request queued", "acceptd", "ms")
    mon_big = Row("5", f"status monitor GET, {p.big_n:,} queued (last one)", "acceptd", "ms")
    bench.flush()
    _, one = fill_queue(bench.url, 1, 10)
    mon_empty.runs.append(monitor(bench, one))
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
    bench.api, bench.api_port = bench.start_api()
    mon_big.runs.append(monitor(bench, last))
    if total < p.big_n:
        mon_big.measure = f"status monitor GET, {total:,} queued (last one; time-bounded fill)"
    bench.flush()
    mon_big.note = f"{p.monitor_n} sequential GETs of the last request (position {total - 1:,})"
    mon_empty.note = f"{p.monitor_n} sequential GETs, aiohttp client, one connection"
    return [mem, mon_empty, mon_big]
