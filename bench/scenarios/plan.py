"""How much to measure (full or quick), the time budget, and how rounds interleave."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from report import Row, Run

# A contender's row and one run of it.
Step = tuple[Row, Callable[[], Run]]


@dataclass
class Plan:
    """How much to measure: full or ``--quick``.

    ``n`` is the drains' N (the most a headline run queues); a contender slower than
    ``n / drain_seconds`` drains ``drain_seconds`` of its own measured rate instead (at least
    ``n_min``), sized from a ``pilot_n`` turn before the rounds (``scenarios/drain.py``).
    ``big_n`` is the status monitor's depth: the full run's is the memory row's fill
    (``mem_n``); ``make bench-scale`` (``--only scale``) fills 1,000,000.
    """

    n: int
    runs: int
    wrk_seconds: float
    latency_n: int
    monitor_n: int
    mem_n: int
    big_n: int
    fill_budget: float
    aof_seconds: float
    webhook_n: int
    webhook_runs: int
    drain_seconds: float = 8.0
    n_min: int = 2_000
    pilot_n: int = 1_000
    # A latency run's time limit: ``latency_n`` requests unless that takes longer (a slow
    # machine; a quiet one takes 1-6 s for 500).
    latency_seconds: float = 8.0


FULL = Plan(10_000, 3, 5.0, 500, 300, 100_000, 100_000, 40.0, 3.0, 5_000, 3)
QUICK = Plan(2_000, 1, 2.0, 100, 100, 10_000, 10_000, 30.0, 1.5, 2_000, 1, 2.0, 500, 500, 4.0)
# ``make bench-scale``: the memory row and the monitor at a depth of 1,000,000.
SCALE = Plan(10_000, 1, 5.0, 500, 300, 100_000, 1_000_000, 300.0, 3.0, 10_000, 1)


class Budget:
    """The run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def drain_measure(plan: Plan) -> str:
    """The headline drain rows' measure (every contender's)."""
    return f"drain, N ≤ {plan.n:,} (first submit → last result)"


def backlog_measure(plan: Plan) -> str:
    """The headline backlog drain rows' measure (every contender's)."""
    return f"backlog drain, N ≤ {plan.n:,} (worker start → last result)"


def latency_measure(plan: Plan) -> str:
    """The latency rows' measure, up to its colon (every contender's)."""
    return f"latency, {plan.latency_n} sequential (at most {plan.latency_seconds:g} s): "


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes, e.g. ``1.6/1.2/0.9``."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# Where the run's wall time went: (part, seconds), in order (``phase``).
TIMES: list[tuple[str, float]] = []


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time one part of the run: logged when it ends, and kept in ``TIMES`` for the summary."""
    t0 = time.monotonic()
    log(f"{name}: start")
    try:
        yield
    finally:
        took = time.monotonic() - t0
        TIMES.append((name, took))
        log(f"{name}: {took:.1f} s")


def times_line(total: float) -> str:
    """One line: each part's wall time and the rest (start-up, the table)."""
    parts = ", ".join(f"{name} {took:.0f} s" for name, took in TIMES)
    rest = total - sum(took for _, took in TIMES)
    return f"Wall time per part: {parts}; the rest {rest:.0f} s; total {total:.0f} s."


def interleave(rounds: int, steps: list[Step], what: str) -> None:
    """Run every step once per round; each round starts one step later than the last."""
    for r in range(rounds):
        log(f"{what}: round {r + 1} of {rounds}")
        k = r % len(steps)
        for row, run in steps[k:] + steps[:k]:
            row.runs.append(run())


def alternate(rounds: int, anchor: Step, others: list[Step], what: str) -> None:
    """Each round, an acceptd run right next to each other contender's run.

    Which of the two goes first alternates, and each round starts one contender later. A
    target compares the runs of a pair, seconds apart, rather than runs a round apart: the
    machine's speed drifts within a round too (one hello-world run measured 11,667 req/s
    against 6,458 in the same round).
    """
    ours_row, ours = anchor
    for r in range(rounds):
        log(f"{what}: round {r + 1} of {rounds}")
        k = r % len(others)
        for i, (row, theirs) in enumerate(others[k:] + others[:k]):
            if (r + i) % 2:
                b = theirs()
                a = ours()
            else:
                a = ours()
                b = theirs()
            ours_row.runs.append(a)
            row.runs.append(b)
            if b.value:
                row.pair_ratios.append(a.value / b.value)
