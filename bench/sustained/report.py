"""The soak's minute-by-minute table and its verdicts (PASS/MISS per target).

Memory is *flat* when, after a warm-up of one minute, both hold for a series (Redis
``used_memory``, its key count, each process's RSS):
- the mean of its last three minutes is within ``TOLERANCE`` (10 %) of the mean of minutes
  2 to 4 (the first three after the warm-up), and
- a least-squares line through every minute after the warm-up rises by no more than the same
  tolerance over the run (a slow, steady growth fails here even when the ends look close).
Below 10 MiB of resident memory, and 1 MiB of Redis memory, a few hundred KiB of allocator
noise would be 10 %: the tolerance is at least ``FLOOR`` of the unit. A run too short for
both windows (under 3 minutes: k = min(3, (minutes - 1) // 2) minutes each) says ``n/a``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

TOLERANCE = 0.10
FLOOR = {"rss": 4 << 20, "used_memory": 1 << 20, "keys": 1000}
P99_GROWTH = 2.0
MIB = 1 << 20


@dataclass
class Sample:
    """One row: what happened during one interval, and the state at its end."""

    minute: float  # the interval's end, minutes since the soak's load started
    submits: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    completions: int
    deliveries: int
    sse_events: int
    queued: int  # pending + running + hand-offs at the end
    used_memory: int
    keys: int
    rss: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds the stack (API, workers, dispatcher, valkey) used
    seconds: float = 60.0  # the interval's length

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_job(self) -> float | None:
        return self.cpu_s / self.completions * 1e6 if self.completions else None


@dataclass
class Verdict:
    """A target's outcome."""

    name: str
    value: str
    goal: str
    ok: bool | None  # None: not measurable in this run
    detail: str

    @property
    def mark(self) -> str:
        return "n/a" if self.ok is None else ("**PASS**" if self.ok else "**MISS**")


def windows(values: Sequence[float], per_minute: int) -> tuple[list[float], int]:
    """The values after the warm-up minute, and how many rows each comparison window has."""
    rest = list(values[per_minute:])
    k = min(3 * per_minute, len(rest) // 2)
    return rest, k


def slope(values: Sequence[float]) -> float:
    """Least-squares slope per row."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, statistics.fmean(values)
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / den


def flat(name: str, kind: str, values: Sequence[float], per_minute: int) -> Verdict:
    """Whether a memory series stayed flat after the warm-up (see the module's rule)."""
    rest, k = windows(values, per_minute)
    unit, scale = ("keys", 1.0) if kind == "keys" else ("MiB", MIB)
    goal = f"≤ +{TOLERANCE:.0%}"
    if k < 1:
        return Verdict(name, "—", goal, None, "run too short (needs 3 minutes or more)")
    base, tail = statistics.fmean(rest[:k]), statistics.fmean(rest[-k:])
    tol = max(TOLERANCE * base, FLOOR[kind])
    rise = slope(rest) * (len(rest) - 1)
    ok = tail - base <= tol and rise <= tol
    change = (tail - base) / base if base else 0.0
    detail = (
        f"{base / scale:,.1f} → {tail / scale:,.1f} {unit} (mean of {k} rows after warm-up → "
        f"last {k}); fitted rise {rise / scale:+,.1f} {unit}; allowed {tol / scale:,.1f} {unit}"
    )
    return Verdict(name, f"{change:+.1%}", goal, ok, detail)


def memory_verdicts(samples: Sequence[Sample], per_minute: int) -> list[Verdict]:
    out = [
        flat("Redis used_memory flat", "used_memory", [s.used_memory for s in samples], per_minute),
        flat("Redis key count flat", "keys", [s.keys for s in samples], per_minute),
    ]
    names = list(samples[0].rss) if samples else []
    out += [
        flat(f"RSS {n} flat", "rss", [s.rss.get(n, 0) for s in samples], per_minute) for n in names
    ]
    return out


def p99_verdict(samples: Sequence[Sample]) -> Verdict:
    p99 = [s.p99_ms for s in samples if s.p99_ms is not None]
    goal = f"≤ {P99_GROWTH:g}x"
    if len(p99) < 2:
        return Verdict("p99 submit latency stable", "—", goal, None, "fewer than two rows")
    ratio = p99[-1] / p99[0]
    worst = max(p99)
    detail = f"first {p99[0]:.1f} ms, last {p99[-1]:.1f} ms; worst row {worst:.1f} ms"
    return Verdict("p99 submit latency stable (last / first)", f"{ratio:.2f}x", goal,
                   ratio <= P99_GROWTH, detail)  # fmt: skip


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def table(samples: Sequence[Sample]) -> str:
    """The minute-by-minute markdown table."""
    names = list(samples[0].rss) if samples else []
    head = (
        "| min | submits | errors | p50 ms | p99 ms | completions | webhooks | SSE events "
        "| queued | stack CPU, cores | CPU µs/job | Redis MiB | keys | "
        + " | ".join(f"RSS {n} MiB" for n in names)
        + " |"
    )
    out = [head, "|" + "---:|" * (13 + len(names))]
    for s in samples:
        cells = [
            f"{s.minute:g}", f"{s.submits:,}", f"{s.errors:,}", fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms), f"{s.completions:,}", f"{s.deliveries:,}", f"{s.sse_events:,}",
            f"{s.queued:,}", f"{s.cores:.2f}", fmt_ms(s.cpu_us_per_job),
            f"{s.used_memory / MIB:,.1f}", f"{s.keys:,}",
            *(f"{s.rss[n] / MIB:,.1f}" for n in names),
        ]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    out = ["| target | measured | goal | verdict | detail |", "|---|---:|---|---|---|"]
    out += [f"| {v.name} | {v.value} | {v.goal} | {v.mark} | {v.detail} |" for v in verdicts]
    return "\n".join(out)
