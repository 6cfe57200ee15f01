"""Webhook delivery: ``bench/webhook_delivery.py`` a few times (its own Redis, dispatcher and
receiver), as three rows: backlog rate, rate while requests finish, finish → arrival."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from report import Row, Run

from scenarios.context import BENCH, ROOT, Bench
from scenarios.plan import log


def delivery_run(n: int) -> dict[str, Any] | None:
    """One run of ``webhook_delivery.py``: its result, or None (logged) if it failed."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "webhook_delivery.py"), "--n", str(n),
         "--latency-n", "500", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        log(f"webhook bench failed: {out.stderr[-500:]}")
        return None
    res: dict[str, Any] = json.loads(line[7:])
    return res


def measure(bench: Bench) -> list[Row]:
    """[backlog rate, live rate, finish → arrival]."""
    rate = Row("6", "webhook deliveries, backlog, one dispatcher", "acceptd", "deliveries/s")
    live = Row("6", "webhook deliveries while requests finish", "acceptd", "deliveries/s")
    delay = Row("6", "webhook finish → arrival", "acceptd", "ms", higher_is_better=False)
    n = bench.plan.webhook_n
    for i in range(bench.plan.webhook_runs):
        if i and bench.budget.left() < 45:  # one run at least (~15 s; 50 s on a busy machine)
            break
        res = delivery_run(n)
        if res is None:
            continue
        cpu = {"redis": res["cpu_redis"]}
        rate.runs.append(Run(res["backlog_per_second"], cpu, {"d": res["cpu_dispatcher"]}))
        live.runs.append(Run(res["live_per_second"]))
        delay.runs.append(Run(res["p50_ms"], extra={"p99_ms": res["p99_ms"]}))
    mid = rate.median_run()
    dispatcher_cpu = f"{mid.extra['d']:,.0f}" if mid else "—"
    rate.note = (
        f"`bench/webhook_delivery.py --n {n}`: {n:,} deliveries wait in the outbox, then one "
        f"`acceptd dispatcher` (default concurrency, 256, all for the one endpoint) sends "
        f"them, signed, to a bare HTTP receiver "
        f"on 127.0.0.1; rate between first and last arrival; dispatcher CPU "
        f"{dispatcher_cpu} µs/delivery (R: Redis)"
    )
    live.note = f"the same dispatcher while {n:,} more requests finish as fast as one process can"
    delay.note = "500 requests finishing in batches of 50 every 50 ms; p50 (p99)"
    return [rate, live, delay]
