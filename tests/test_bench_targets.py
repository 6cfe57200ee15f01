"""The bench's information rows on what this machine's cores allow a drain."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

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
