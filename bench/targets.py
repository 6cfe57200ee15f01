"""The targets: acceptd's measures as ratios to the best peer, the ceiling or a fixed line."""

from __future__ import annotations

import os
import statistics

from report import CPU_ORDER, Row, Target


def best(rows: list[Row], higher: bool = True) -> Row | None:
    """The peer with the best median."""
    measured = [r for r in rows if r.median is not None and not r.skipped]
    if not measured:
        return None
    return (max if higher else min)(measured, key=lambda r: r.median or 0.0)


def round_ratios(a: Row, b: Row | None) -> list[float]:
    """a / b per pair (``alternate``) or per round (``interleave``: runs of one round are
    index-aligned); empty if not paired."""
    if b is not None and b.pair_ratios:
        return b.pair_ratios
    if b is None or not a.runs or len(a.runs) != len(b.runs):
        return []
    return [x.value / y.value for x, y in zip(a.runs, b.runs, strict=True)]


def paired(a: Row, b: Row | None) -> float | None:
    """a / b as the median of the rounds' ratios (of the medians when not paired)."""
    rounds = round_ratios(a, b)
    if not rounds:
        return ratio(a.median, b.median if b else None)
    return statistics.median(rounds)


def by_round(a: Row, b: Row | None) -> str:
    rounds = round_ratios(a, b)
    per = "per pair" if b is not None and b.pair_ratios else "per round"
    return f"; {per} {', '.join(f'{r:.2f}' for r in rounds)}" if rounds else ""


def against_peers(
    ours: dict[str, Row],
    hello: Row,
    peers: dict[str, list[Row]],
    bullmq: dict[str, Row],
    floor: Row | None = None,
) -> list[Target]:
    """acceptd's rows against the best Python peer's (issue 17's targets), the hello-world's,
    and, for information, BullMQ's (the anchor).

    ``ours`` and ``peers`` by measure: ``enqueue``, ``drain``, ``backlog``, ``sync`` (the
    peers' ``latency``), and ours ``drain_wrk`` when wrk ran; ``bullmq`` its ``drain`` and
    ``backlog`` rows (skipped when missing); ``floor`` the synchronous path's floor, shown
    against the sync goal for information.
    """

    def who(row: Row | None) -> str:
        return row.contender if row else "none"

    def versus(name: str, a: Row, b: Row | None, goal: str, unit: str = "jobs/s") -> Target:
        digits = 2 if unit == "ms" else 0
        return Target(
            name,
            paired(a, b),
            goal,
            f"acceptd {fmtn(a.median, digits)} {unit} vs {who(b)} "
            f"{fmtn(b.median if b else None, digits)} {unit}" + by_round(a, b),
        )

    def anchor(mode: str) -> Row | None:
        row = bullmq.get(mode)
        return row if row is not None and not row.skipped and row.runs else None

    out = [
        versus("drain vs best peer's drain", ours["drain"], best(peers["drain"]), ">= 2.5"),
        versus(
            "backlog drain vs best peer's backlog drain",
            ours["backlog"],
            best(peers["backlog"]),
            ">= 3.0",
        ),
    ]
    wrk = ours.get("drain_wrk")
    if wrk is not None and wrk.runs:
        # For information: the server side's drain when the producer costs next to nothing
        # (issue 17's note: two cores cannot carry 2.5x with a Python HTTP producer).
        out.append(
            versus("drain, wrk as producer, vs best peer's drain", wrk, best(peers["drain"]), "")
        )
    producer_us = client_us(ours["drain"])
    if producer_us is not None:
        # For information: the most the drain could reach were everything but its producer
        # free (a producer of one process does not go faster than its own CPU per submit).
        ceiling = 1e6 / producer_us
        peer = best(peers["drain"])
        out.append(
            Target(
                "drain: its producer's own ceiling vs best peer's drain",
                ratio(ceiling, peer.median if peer else None),
                "",
                f"the aiohttp producer's {producer_us:,.0f} µs of CPU per submit cap it at "
                f"{ceiling:,.0f} jobs/s",
            )
        )
    cores = cores_ceiling(
        "drain: this machine's cores' ceiling vs best peer's drain",
        ours["drain"],
        best(peers["drain"]),
    )
    if cores is not None:
        out.append(cores)
    for mode, what in (("drain", "drain"), ("backlog", "backlog drain")):
        row = anchor(mode)
        if row is not None:
            out.append(versus(f"{what} vs BullMQ's (anchor)", ours[mode], row, ""))
    out.append(
        versus(
            "HTTP enqueue vs best peer's direct enqueue",
            ours["enqueue"],
            best(peers["enqueue"]),
            ">= 1.0",
        )
    )
    out.append(
        Target(
            "HTTP enqueue vs aiohttp hello-world",
            paired(ours["enqueue"], hello),
            ">= 0.6",
            f"{fmtn(ours['enqueue'].median)} vs {fmtn(hello.median)} req/s"
            + by_round(ours["enqueue"], hello),
        )
    )
    fastest = best(peers["latency"], higher=False)
    out.append(versus("sync p50 vs best peer p50", ours["sync"], fastest, "<= 0.5", "ms"))
    if floor is not None and floor.median and fastest is not None and fastest.median:
        out.append(sync_floor(ours["sync"], floor, fastest.median / 2))
    return out


def sync_floor(sync: Row, floor: Row, goal_ms: float) -> Target:
    """For information: the six-hop floor against the sync goal's p50, and how far above the
    floor acceptd is (what the goal leaves for all the work on the path)."""
    assert floor.median is not None
    detail = f"floor {fmtn(floor.median, 2)} ms vs the goal's {fmtn(goal_ms, 2)} ms"
    if sync.median is not None:
        detail += (
            f"; acceptd {fmtn(sync.median - floor.median, 2)} ms above the floor, where the "
            f"goal leaves {fmtn(goal_ms - floor.median, 2)} ms"
        )
    return Target("sync: the six-hop floor vs the goal's p50", floor.median / goal_ms, "", detail)


def cpu_per_job(row: Row) -> float | None:
    """The median over ``row``'s runs of the CPU µs per job of every process of the measure
    together (client, API, worker and Redis), or None when no run measured all four."""
    totals = [
        sum(r.cpu_us[k] for k in CPU_ORDER)
        for r in row.runs
        if all(r.cpu_us.get(k) for k in CPU_ORDER)
    ]
    return statistics.median(totals) if totals else None


def cores_ceiling(name: str, row: Row, peer: Row | None) -> Target | None:
    """For information: the most ``row``'s drain could reach with every core of this machine
    busy at its measured CPU per job, against ``peer``'s drain; what it reached of that."""
    total = cpu_per_job(row)
    if total is None or row.median is None:
        return None
    cores = os.cpu_count() or 1
    ceiling = cores * 1e6 / total
    return Target(
        name,
        ratio(ceiling, peer.median if peer else None),
        "",
        f"client, API, worker and Redis spend {total:,.0f} µs of CPU per job: {cores} cores "
        f"fully busy cap it at {ceiling:,.0f} jobs/s; it ran at {row.median / ceiling:.0%} "
        "of that",
    )


def client_us(row: Row) -> float | None:
    """The producer's median CPU µs per job over ``row``'s runs, or None when not measured."""
    spent = [r.cpu_us["client"] for r in row.runs if r.cpu_us.get("client")]
    return statistics.median(spent) if spent else None


def bulk(
    enqueue: Row,
    drain: Row,
    bullmq: list[Row],
    peers: list[Row],
    paired_peer: Row | None = None,
    paired_enqueue: Row | None = None,
) -> list[Target]:
    """Bulk submits against the Python peers' best and BullMQ's best (issue 17's targets).

    ``paired_peer``: the best Python peer's drain run again in the bulk drain's rounds; the
    drain target then takes the median of the rounds' ratios (else the headline's rate).
    ``paired_enqueue``: likewise its direct enqueue, in the bulk enqueue's rounds."""

    def best_of(sec: str) -> Row | None:
        return best([r for r in peers if r.section == sec])

    def who(row: Row | None) -> str:
        return f"{row.contender} {fmtn(row.median)}" if row else "none measured"

    def against_peer(name: str, ours: Row, goal: str, section: str, again: Row | None) -> Target:
        # Paired round by round with the peer's runs in the same rounds (``again``) when
        # there are some, else against its headline rate.
        b = best_of(section)
        if again is not None and again.runs:
            return Target(
                name,
                paired(ours, again),
                goal,
                f"acceptd {fmtn(ours.median)} vs {who(again)} jobs/s in the same rounds"
                + by_round(ours, again)
                + f"; in the headline: {who(b)}",
            )
        return Target(
            name,
            ratio(ours.median, b.median if b else None),
            goal,
            f"acceptd {fmtn(ours.median)} vs {who(b)} jobs/s",
        )

    out = [
        against_peer(
            "bulk HTTP enqueue vs best Python peer's direct enqueue",
            enqueue, ">= 3.0", "1", paired_enqueue,
        ),
        against_peer(
            "drain with bulk submits vs best Python peer's drain",
            drain, ">= 5.0", "2", paired_peer,
        ),
    ]  # fmt: skip
    cores = cores_ceiling(
        "drain with bulk submits: this machine's cores' ceiling vs best Python peer's drain",
        drain,
        paired_peer if paired_peer is not None and paired_peer.runs else best_of("2"),
    )
    if cores is not None:
        out.append(cores)
    b = best([r for r in bullmq if r.section == "2"])
    out.append(
        Target(
            "drain with bulk submits vs BullMQ's best drain",
            paired(drain, b),
            ">= 1.0",
            f"acceptd {fmtn(drain.median)} vs {who(b)} jobs/s" + by_round(drain, b),
        )
    )
    return out


def scale(rows: list[Row]) -> list[Target]:
    """Bytes per queued request, and the monitor at depth against an empty queue."""
    mem, empty, big = rows
    return [
        Target(
            "Redis bytes per queued request vs 600",
            ratio(mem.median, 600.0),
            "<= 1.0",
            f"{fmtn(mem.median)} B",
        ),
        Target(
            "monitor p50 at depth vs empty",
            ratio(big.median, empty.median),
            "<= 2.0",
            f"{fmtn(big.median, 2)} ms vs {fmtn(empty.median, 2)} ms",
        ),
    ]


def webhooks(rows: list[Row]) -> Target:
    """Backlog deliveries per second from one dispatcher against 2,000."""
    return Target(
        "webhook deliveries/s (backlog, one dispatcher) vs 2,000",
        ratio(rows[0].median, 2000.0),
        ">= 1.0",
        f"{fmtn(rows[0].median)} deliveries/s",
    )


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmtn(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"
