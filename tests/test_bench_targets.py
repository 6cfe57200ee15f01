"""The bench's information rows on what this machine's cores allow a drain."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("targets", "report"):
        sys.modules.pop(name, None)
    return importlib.import_module("targets"), importlib.import_module("report")


def test_the_cores_ceiling_is_the_cores_over_every_processs_cpu_per_job(
    bench: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, report = bench
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cpu = [
        {"client": 150, "api": 100, "worker": 50, "redis": 100},  # 400 µs a job
        {"client": 100, "api": 100, "worker": 50, "redis": 50},  # 300
        {"client": 200, "api": 100, "worker": 100, "redis": 100},  # 500
    ]
    ours = report.Row("2", "drain", "acceptd", "jobs/s")
    ours.runs = [report.Run(v, c) for v, c in zip((4000.0, 4500.0, 3500.0), cpu, strict=True)]
    peer = report.Row("2", "drain", "peer", "jobs/s", [report.Run(2500.0)])
    got = targets.cores_ceiling("ceiling", ours, peer)
    # The median run's 400 µs: 2 cores cap it at 5,000 jobs/s, 2x the peer; it ran at 4,000.
    assert got.ratio == pytest.approx(2.0) and got.verdict == "info"
    assert "400 µs" in got.detail and "5,000 jobs/s" in got.detail and "80%" in got.detail
    # A run missing a process's CPU is left out; with none complete there is no row.
    ours.runs = [report.Run(4000.0, {"client": 150, "api": 100, "worker": 50})]
    assert targets.cores_ceiling("ceiling", ours, peer) is None


def test_a_drain_ends_when_a_poll_while_its_producer_runs_finds_it_done(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # acceptd's drain clock stops at the first poll (run_client's tick) that finds every
    # submitted request finished, as each peer's producer stops its own, not after the
    # producer's process has exited.
    import redis

    monkeypatch.syspath_prepend(str(BENCH))
    for name in [m for m in sys.modules if m == "scenarios" or m.startswith("scenarios.")]:
        monkeypatch.delitem(sys.modules, name)
    drain = importlib.import_module("scenarios.drain")
    echo = importlib.import_module("scenarios.context").ECHO
    with redis.Redis.from_url(redis_url) as r:
        watch = drain.DoneWatch(SimpleNamespace(r=r), 5)
        r.set(echo + "seq", 3)
        r.hset(echo + "tput", "n:1", 3)
        watch(None)
        assert watch.at is None  # caught up, but the producer has submitted 3 of 5
        r.set(echo + "seq", 5)
        r.zadd(echo + "pending", {"a": 1})
        r.hset(echo + "tput", "n:1", 4)
        watch(None)
        assert watch.at is None  # all submitted, one still queued
        r.delete(echo + "pending")
        r.hset(echo + "tput", "n:2", 1)
        watch(None)
        done = watch.at
        assert done is not None and watch.end() == done
        watch(None)  # later ticks keep the first time it held
        assert watch.at == done and watch.end() == done
