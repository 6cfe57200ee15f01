"""``make soak``: sustained load for ``--minutes`` (default 10) at 70 % of the measured peak.

    .venv/bin/python bench/soak.py                 # the full soak, about 15 minutes
    .venv/bin/python bench/soak.py --minutes 1     # a check that it works

Starts its own stack on 127.0.0.1 (a private valkey-server with AOF everysec, one ``acceptd
api``, a worker, a dispatcher, a webhook endpoint registered to a receiver, an all-requests
event stream and a few per-request ones reading the whole time) and measures the peak rate the
whole stack keeps up with under this load (``Soak.paced_peak``: paced steps up to the
deliveries per second it sustains with closed-loop submits kept a bounded number ahead of
them, ``Soak.sustained``; a burst's rate is reported beside them). Then it submits ``POST
/v1/echo`` (respond-async) on a fixed schedule at 70 % of that peak (open loop: latency counts
from when each request was due). Each minute it records what was done and every process's
memory; at the end it drains, checks that every request is accounted for, and writes the
table and verdicts to ``bench/results-soak.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import aiohttp  # noqa: E402
import uvloop  # noqa: E402
from procs import proc_cpu  # noqa: E402
from report import Row  # noqa: E402
from run import cpu_model  # noqa: E402
from scenarios import ceilings  # noqa: E402
from scenarios.context import Bench, find_wrk  # noqa: E402
from scenarios.plan import QUICK, Budget  # noqa: E402
from sustained import census  # noqa: E402
from sustained import report as soak_report  # noqa: E402
from sustained.load import PacedLoad  # noqa: E402
from sustained.report import Sample, Verdict  # noqa: E402
from sustained.stack import Stack, rss  # noqa: E402
from sustained.streams import Readers  # noqa: E402

# Counted without their children: the driver's are the stack itself, valkey's an AOF rewrite's
# short-lived fork (its pages mostly shared with the server's).
OWN_ONLY = ("driver", "valkey", "receiver")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure_ceilings(tmp: Path) -> str:
    """The machine's hello-world and EVALSHA ceilings (bench/scenarios/ceilings.py)."""
    bench = Bench(QUICK, Budget(120), tmp, find_wrk())
    try:
        evalsha = ceilings.evalsha(bench)
        hello: Row = ceilings.hello_row(bench)
        with ceilings.hello_step(bench, hello) as (_, run):
            hello.runs.append(run())
    finally:
        bench.close()
    return (
        f"aiohttp hello-world {hello.median or 0:,.0f} req/s ({bench.client_name()}), "
        f"Redis EVALSHA {evalsha.median or 0:,.0f} calls/s"
    )


@dataclass
class Accounts:
    """Everything the run sent, to check against what came back."""

    accepted: int
    idsum: int
    errors: int


class Soak:
    """One soak: the stack, the load, the readers, and the rows so far."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession, load: PacedLoad) -> None:
        self.stack = stack
        self.session = session
        self.load = load
        self.readers = Readers(stack.base, lanes=4)
        self.since = time.time()
        self.samples: list[Sample] = []
        self.prev = {"done": 0, "delivered": 0, "events": 0}
        self.prev_cpu = (time.monotonic(), self.stack_cpu())
        # What Redis holds by key shape, and its INFO memory: after the warm-up, at the end
        # of the load, after the drain (what grew, and why valkey's RSS differs).
        self.censuses: list[tuple[str, dict[str, census.Shape], dict[str, Any]]] = []

    async def take_census(self, name: str) -> None:
        t0 = time.monotonic()
        shapes = await census.census(self.stack.r)
        self.censuses.append((name, shapes, await census.memory_info(self.stack.r)))
        log(f"census '{name}': {sum(s.keys for s in shapes.values()):,} keys in "
            f"{time.monotonic() - t0:.1f} s")  # fmt: skip

    def stack_cpu(self) -> float:
        """CPU seconds used so far by the stack's processes (not the driver's, the receiver's)."""
        procs = self.stack.processes()
        return sum(proc_cpu(p) for n, p in procs.items() if n not in ("driver", "receiver"))

    def accounts(self, final: bool = False) -> Accounts:
        """What was accepted: with the lanes' requests still running (``final``) or not."""
        t = self.readers.tally
        return Accounts(
            self.load.accepted + (t.lane_submits if final else t.lane_done),
            (self.load.idsum + t.lane_idsum) & ((1 << 64) - 1),
            self.load.failed + t.lane_failures,
        )

    async def done(self) -> tuple[int, dict[str, int]]:
        totals = await self.stack.totals(self.since)
        return totals["succeeded"] + totals["failed"] + totals["canceled"], totals

    async def caught_up(self, timeout: float, sse: bool = False) -> float | None:
        """Seconds until every accepted request is done and delivered (None: timed out)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            want = self.accounts(final=sse).accepted
            finished, _ = await self.done()
            hooks = await self.stack.deliveries(self.session)
            seen = self.readers.tally.terminal if sse else want
            if finished >= want and hooks["n"] >= want and seen >= want:
                return time.monotonic() - t0
            await asyncio.sleep(0.1)
        return None

    async def delivered(self) -> int:
        """Webhook deliveries the receiver has had so far."""
        return int((await self.stack.deliveries(self.session))["n"])

    async def recover(self) -> None:
        """Between two measures: the load's requests in flight answered, every accepted one
        done and delivered."""
        await self.load.settle(30)
        await self.caught_up(120)

    async def probe(self, seconds: float) -> tuple[float, float]:
        """Closed-loop submits for ``seconds``: (the API's rate, the whole stack's rate)."""
        before = self.load.accepted
        t0 = time.monotonic()
        await self.load.closed(seconds)
        await self.load.settle(30)
        n = self.load.accepted - before
        await self.caught_up(120)
        took = time.monotonic() - t0
        return n / seconds, n / took

    async def sustained(self, seconds: float, warmup: float, ahead: int) -> float:
        """Webhook deliveries per second while submits are kept at most ``ahead`` requests
        ahead of them, over the last ``seconds - warmup`` of ``seconds``: the rate at which the
        whole stack, every stage at once on the same cores, gets requests done and delivered.

        A burst overstates it: its deliveries finish after its submits stop, with the cores
        to themselves. Here the slowest stage sets the pace (its backlog stays bounded by
        ``ahead``), as it would under a steady load. Caught up again before returning.
        """
        base_sent = self.load.offered
        base_hooks = await self.delivered()
        t0 = time.monotonic()
        mark: tuple[float, int] | None = None
        while True:
            now = time.monotonic()
            delivered = await self.delivered() - base_hooks
            if mark is None and now - t0 >= warmup:
                mark = (now, delivered)
            if now - t0 >= seconds:
                break
            for _ in range(ahead - (self.load.offered - base_sent - delivered)):
                self.load.offer(self.load.loop.time())
            await asyncio.sleep(0.05)
        assert mark is not None
        rate = (delivered - mark[1]) / (now - mark[0])
        await self.recover()
        return rate

    async def paced_peak(self, top: float, seconds: float) -> tuple[float, list[str]]:
        """The highest rate of this soak's own load (paced, open loop) that the whole stack
        keeps up with: steps of ``seconds`` at 50 %, 60 %, … 100 % of ``top``, each passing
        when the requests not yet delivered at its end are at most 2 s of its rate; stops at
        the first that does not. (The rate, and a line per step.)

        A closed-loop peak overstates what a paced load can have: saturated, the API, the
        worker and the dispatcher each handle many requests per loop iteration and per Redis
        round trip, while paced requests arrive a few at a time and each pays its own.
        """
        best, steps = top * 0.5, []
        for percent in range(50, 101, 10):
            rate = top * percent / 100
            base_sent = self.load.offered
            base_hooks = await self.delivered()
            await self.load.paced(rate, seconds)
            delivered = await self.delivered() - base_hooks
            behind = self.load.offered - base_sent - delivered
            ok = behind <= 2 * rate
            steps.append(f"{rate:,.0f}/s: {behind:,} behind ({'kept up' if ok else 'fell behind'})")
            log(f"paced {rate:,.0f}/s for {seconds:g} s: {behind:,} not yet delivered")
            await self.recover()
            if not ok:
                break
            best = rate
        return best, steps

    async def sample(self, minute: float) -> Sample:
        w = self.load.take()
        finished, _ = await self.done()
        hooks = await self.stack.deliveries(self.session)
        left = await self.stack.left()
        used, keys = await self.stack.memory()
        lat = sorted(x * 1000 for x in w.latencies)
        events = self.readers.tally.events
        row = Sample(
            minute=minute,
            submits=w.accepted,
            errors=sum(n for s, n in w.statuses.items() if s != 202),
            p50_ms=lat[len(lat) // 2] if lat else None,
            p99_ms=lat[min(len(lat) - 1, math.ceil(len(lat) * 0.99) - 1)] if lat else None,
            completions=finished - self.prev["done"],
            deliveries=hooks["n"] - self.prev["delivered"],
            sse_events=events - self.prev["events"],
            queued=left["pending"] + left["running"] + left["hand"],
            used_memory=used,
            keys=keys,
            rss={n: rss(p, n not in OWN_ONLY) for n, p in self.stack.processes().items()},
        )
        self.prev = {"done": finished, "delivered": hooks["n"], "events": events}
        now, cpu = time.monotonic(), self.stack_cpu()
        row.cpu_s, row.seconds = cpu - self.prev_cpu[1], now - self.prev_cpu[0]
        self.prev_cpu = (now, cpu)
        return row

    async def run(self, rate: float, minutes: float, interval: float) -> None:
        """The paced load, a row every ``interval`` s."""
        await self.sample(0)  # resets the counters: rows count from here
        seconds = minutes * 60
        start = time.monotonic()
        pacer = asyncio.create_task(self.load.paced(rate, seconds))
        try:
            rows = max(1, round(seconds / interval))
            for k in range(1, rows + 1):
                await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))
                self.samples.append(await self.sample(round(k * interval / 60, 2)))
                s = self.samples[-1]
                if k * interval == 60 or (k == rows and not self.censuses):
                    await self.take_census(f"{k * interval / 60:g} min")
                log(
                    f"{s.minute:g} min: {s.submits:,} submits, p99 {s.p99_ms or 0:.1f} ms, "
                    f"{s.completions:,} done, {s.deliveries:,} webhooks, queued {s.queued:,}, "
                    f"Redis {s.used_memory / 2**20:,.1f} MiB"
                )
            await pacer
            await self.take_census("end of load")
        finally:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer

    async def drain(self, timeout: float) -> list[Verdict]:
        """Stop the lanes, wait for everything to finish, and account for every request."""
        deadline = time.monotonic() + timeout
        await self.readers.stop_lanes()
        await self.load.settle(timeout)
        unanswered = self.load.in_flight()
        took = await self.caught_up(max(1.0, deadline - time.monotonic()), sse=True)
        while True:
            left = await self.stack.left()
            if not any(left.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await self.take_census("after the drain")
        acc = self.accounts(final=True)
        acc.errors += unanswered
        _, totals = await self.done()
        hooks = await self.stack.deliveries(self.session)
        t = self.readers.tally
        drained = "—" if took is None else f"{took:.1f} s"
        return [
            Verdict("every submit accepted (202)", f"{acc.errors:,} not", "0", acc.errors == 0,
                    f"{acc.accepted:,} accepted (the load's, the probe's and the stream lanes'); "
                    f"{unanswered:,} never answered"),
            Verdict("every request succeeded", f"{totals['succeeded']:,}", f"= {acc.accepted:,}",
                    totals["succeeded"] == acc.accepted and totals["failed"] == 0,
                    f"history: {totals['submitted']:,} submitted, {totals['failed']:,} failed, "
                    f"{totals['canceled']:,} canceled; drained in {drained}"),
            Verdict("every webhook delivered once", f"{hooks['n']:,}", f"= {acc.accepted:,}",
                    hooks["n"] == acc.accepted and hooks["idsum"] == acc.idsum,
                    "count, and the sum of the delivered ids' 64-bit hashes equal to the "
                    f"accepted ids' ({'equal' if hooks['idsum'] == acc.idsum else 'different'})"),
            Verdict("the all-requests stream saw every finish once", f"{t.terminal:,}",
                    f"= {acc.accepted:,}",
                    t.terminal == acc.accepted and t.terminal_idsum == acc.idsum and not t.resets,
                    f"ids' hash sum {'equal' if t.terminal_idsum == acc.idsum else 'different'}; "
                    f"{t.resets} resets, {t.reconnects} reconnects"),
            Verdict("nothing left after the drain", f"{sum(left.values()):,}", "0",
                    not any(left.values()),
                    ", ".join(f"{k} {v:,}" for k, v in left.items())),
        ]  # fmt: skip


def caption(args: argparse.Namespace, facts: dict[str, Any]) -> str:
    return (
        f"acceptd soak — {args.minutes:g} min at {facts['rate']:,.0f} submits/s "
        f"({facts['how']}), {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{platform.python_implementation()} {platform.python_version()}, valkey-server "
        f"{facts['server']} with AOF (appendfsync everysec) on loopback; {os.cpu_count()} "
        f"cores ({cpu_model()}); ceilings: {facts['ceilings']}; load average "
        f"{facts['load_before']:.1f} before, {os.getloadavg()[0]:.1f} after (other work on this "
        f"machine shows here). One `acceptd api`, {args.workers} worker(s) (concurrency 50), "
        f"one dispatcher, one webhook endpoint (every request), one all-requests event stream "
        f"and 4 per-request stream lanes (`sleep` 0.5 s each, read to the end, again); load "
        f"`POST /v1/echo` respond-async, open loop from {args.connections} connections, "
        f"latency from each request's due time; results, settled deliveries and the client's "
        f"stream events kept {args.keep} s."
    )


async def soak(args: argparse.Namespace, tmp: Path) -> str:
    facts: dict[str, Any] = {"load_before": os.getloadavg()[0], "ceilings": "not measured"}
    if not args.no_ceilings:
        log("ceilings: hello-world, EVALSHA")
        facts["ceilings"] = measure_ceilings(tmp / "ceilings")
    log("starting the stack")
    stack = Stack(tmp, args.workers, args.keep)
    facts["server"] = (await stack.r.info("server")).get("valkey_version", "?")
    try:
        async with aiohttp.ClientSession() as session:
            await stack.register_endpoint(session)
            load = PacedLoad(stack.api_port, "/v1/echo", args.connections)
            await load.open()
            run = Soak(stack, session, load)
            await run.readers.start()
            try:
                if args.rate:
                    facts["rate"], facts["how"] = args.rate, "--rate"
                else:
                    log(f"burst: {args.probe:g} s of closed-loop submits")
                    api, whole = await run.probe(args.probe)
                    log(f"sustained: {args.sustain:g} s, submits at most {args.ahead:,} ahead "
                        "of the deliveries")  # fmt: skip
                    closed = await run.sustained(args.sustain, args.sustain / 3, args.ahead)
                    peak, steps = await run.paced_peak(closed, args.step)
                    facts["rate"] = args.fraction * peak
                    facts["how"] = (
                        f"{args.fraction:.0%} of the peak the whole stack kept up with under this "
                        f"load, {peak:,.0f}/s: paced steps of {args.step:g} s at 50 %, 60 %, … of "
                        f"{closed:,.0f}/s, the webhook deliveries per second it sustained with "
                        f"closed-loop submits kept at most {args.ahead:,} ahead of them (over the "
                        f"last {args.sustain * 2 / 3:g} s of {args.sustain:g} s), until a step "
                        f"ended more than 2 s of its rate behind ({'; '.join(steps)}); a burst "
                        f"({args.probe:g} s of closed-loop submits, the API taking {api:,.0f}/s) "
                        f"was done and delivered at {whole:,.0f}/s, its deliveries finishing "
                        "after its submits stopped"
                    )
                log(f"soak: {facts['rate']:,.0f}/s for {args.minutes:g} min")
                await run.run(facts["rate"], args.minutes, args.interval)
                log("drain")
                accounting = await run.drain(args.drain)
            finally:
                await run.readers.stop()
                load.close()
    finally:
        await stack.close()
    per_minute = max(1, round(60 / args.interval))
    verdicts = [
        soak_report.p99_verdict(run.samples),
        *soak_report.memory_verdicts(run.samples, per_minute),
        *accounting,
    ]
    tables = [soak_report.table(run.samples), soak_report.verdict_table(verdicts)]
    if run.censuses:
        tables.append(
            "What Redis held, by key shape (`bench/sustained/census.py`: keys and `MEMORY USAGE`"
            " per shape, the largest key's size and entries), and its `INFO memory`:\n\n"
            + census.table([(n, shapes) for n, shapes, _ in run.censuses])
            + "\n\n"
            + census.info_table([(n, info) for n, _, info in run.censuses])
        )
    return "\n\n".join([caption(args, facts), *tables]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the paced load runs")
    ap.add_argument("--rate", type=float, default=0.0, help="submits/s (default: measured)")
    ap.add_argument("--fraction", type=float, default=0.7, help="of the measured peak")
    ap.add_argument("--probe", type=float, default=5.0, help="seconds of the burst measure")
    ap.add_argument(
        "--sustain",
        type=float,
        default=30.0,
        help="seconds of the peak measure (a third warm-up)",
    )
    ap.add_argument("--step", type=float, default=30.0, help="seconds of each paced peak step")
    ap.add_argument(
        "--ahead", type=int, default=2000, help="the peak measure's submits ahead of deliveries"
    )
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per row")
    ap.add_argument("--workers", type=int, default=1, help="acceptd worker processes")
    ap.add_argument("--connections", type=int, default=64, help="the load's connections")
    ap.add_argument(
        "--keep", type=int, default=30, help="result_ttl, delivery and stream event retention, s"
    )
    ap.add_argument("--drain", type=float, default=300.0, help="seconds the drain may take")
    ap.add_argument("--no-ceilings", action="store_true", help="skip hello-world and EVALSHA")
    ap.add_argument("--out", default=str(BENCH / "results-soak.md"))
    args = ap.parse_args()
    # SIGTERM (a `timeout`, a CI cancel) unwinds like Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="acceptd-soak-") as tmp:
        try:
            text = uvloop.run(soak(args, Path(tmp)))
        finally:
            for stack in list(Stack.live):
                stack.stop_processes()
    print(text)
    Path(args.out).write_text(text)
    log(f"written to {args.out}")
    return 0 if "**MISS**" not in text else 1


if __name__ == "__main__":
    sys.exit(main())
