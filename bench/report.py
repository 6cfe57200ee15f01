"""Results: measured rows, targets, and the one markdown table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

CPU_ORDER = ("client", "api", "worker", "redis")


@dataclass
class Run:
    """One run of one measure: its value and CPU µs per job per process."""

    value: float
    cpu_us: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """One line of the table: a measure of one contender over its runs."""

    section: str
    measure: str
    contender: str
    unit: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    higher_is_better: bool = True
    skipped: str = ""
    # Measured in pairs with an acceptd run (see scenarios.plan.alternate): that run's value
    # over this row's, per pair.
    pair_ratios: list[float] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.runs]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.runs else None

    def median_run(self) -> Run | None:
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda r: r.value)
        return ordered[(len(ordered) - 1) // 2]

    def median_extra(self, name: str) -> float | None:
        vals = [r.extra[name] for r in self.runs if name in r.extra]
        return statistics.median(vals) if vals else None


@dataclass
class Target:
    """A target as a ratio: PASS when ``ratio`` satisfies ``goal``."""

    name: str
    ratio: float | None
    goal: str  # e.g. ">= 2.0" or "<= 1.0"; "" for a ratio shown for information (no verdict)
    detail: str

    @property
    def verdict(self) -> str:
        if not self.goal:
            return "info"
        if self.ratio is None:
            return "n/a"
        op, _, bound = self.goal.partition(" ")
        ok = self.ratio >= float(bound) if op == ">=" else self.ratio <= float(bound)
        return "**PASS**" if ok else "**MISS**"


def fmt(value: float | None, unit: str = "") -> str:
    """A number the way a reader wants it: thousands separators, few digits."""
    if value is None:
        return "—"
    if unit in ("ms",):
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cpu_cell(run: Run | None) -> str:
    if run is None or not run.cpu_us:
        return "—"
    return " · ".join(f"{k[0].upper()} {run.cpu_us[k]:,.0f}" for k in CPU_ORDER if k in run.cpu_us)


def table(rows: list[Row], targets: list[Target]) -> str:
    """The one markdown table: every measure, then every target."""
    out = [
        "| # | measure | contender | median | min - max | runs "
        "| CPU µs/job (C client · A api · W worker · R redis) | how, notes |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if r.skipped:
            out.append(
                f"| {r.section} | {r.measure} | {r.contender} | skipped | — | 0 | — | {r.skipped} |"
            )
            continue
        rng = f"{fmt(min(r.values), r.unit)} - {fmt(max(r.values), r.unit)}" if r.runs else "—"
        med = f"{fmt(r.median, r.unit)} {r.unit}" if r.runs else "—"
        p99 = r.median_extra("p99_ms")
        if p99 is not None:
            med += f" (p99 {fmt(p99, 'ms')})"
        out.append(
            f"| {r.section} | {r.measure} | {r.contender} | {med} | {rng} | {len(r.runs)} "
            f"| {cpu_cell(r.median_run())} | {r.note} |"
        )
    for t in targets:
        ratio = "—" if t.ratio is None else f"{t.ratio:.2f}x"
        out.append(
            f"| target | {t.name} | acceptd | {ratio} | goal {t.goal or '—'} | — | {t.verdict} "
            f"| {t.detail} |"
        )
    return "\n".join(out)
