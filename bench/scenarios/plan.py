"""How much to measure (full or quick), the time budget, and how rounds interleave."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from report import Row, Run

# A contender's row and one run of it.
Step = tuple[Row, Callable[[], Run]]


@dataclass
class Plan:
    """How much to measure: full or ``--quick``."""

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


FULL = Plan(20_000, 3, 5.0, 500, 300, 100_000, 1_000_000, 150.0, 3.0, 10_000, 3)
QUICK = Plan(2_000, 1, 2.0, 100, 100, 10_000, 100_000, 30.0, 1.5, 2_000, 1)


class Budget:
    """The run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
