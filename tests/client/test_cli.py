"""The ``acceptd-client`` command line against the real service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from acceptd_client import Client, Monitor
from acceptd_client.cli import describe, main

from tests.client.conftest import Serve


def test_call_prints_the_result(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    service = serve()
    assert main(["--url", service.url, "call", "sleep", '{"seconds": 0.3, "steps": 3}']) == 0
    assert json.loads(capsys.readouterr().out) == {"slept": 0.3}


def test_call_reads_a_file_and_env(
    serve: Serve,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = serve()
    monkeypatch.setenv("ACCEPTD_URL", service.url)
    (tmp_path / "in.json").write_text('{"from": "file"}')
    assert main(["call", "echo", f"@{tmp_path / 'in.json'}"]) == 0
    assert json.loads(capsys.readouterr().out) == {"from": "file"}


def test_a_failure_prints_the_problem_and_exits_1(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    service = serve()
    assert main(["--url", service.url, "call", "boom", "{}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "urn:acceptd:problem:internal-error" in captured.err
    assert main(["--url", service.url, "call", "sleep", '{"seconds": "x"}']) == 1
    assert "invalid-input" in capsys.readouterr().err


def test_get_cancel_and_watch(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        rid = client.submit("echo", {"w": 1}).id
    assert main(["--url", service.url, "get", rid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert main(["--url", service.url, "--timeout", "0.3", "watch", rid]) == 1
    assert "still queued" in capsys.readouterr().err
    assert main(["--url", service.url, "cancel", rid]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "canceled"
    assert main(["--url", service.url, "watch", rid]) == 1
    assert "urn:acceptd:problem:canceled" in capsys.readouterr().err


def test_the_live_line() -> None:
    queued: Monitor = {"id": "01abcdefghij", "operation": "sleep", "status": "queued",
                       "position": 3, "eta_seconds": 4.2}  # fmt: skip
    assert describe(queued) == "sleep 01abcdefgh… · queued · position 3 · ETA 4 s"
    running: Monitor = {"id": "01abcdefghij", "operation": "sleep", "status": "running",
               "eta_seconds": None, "progress": {"percent": 40, "message": "resizing"}}  # fmt: skip
    assert describe(running) == "sleep 01abcdefgh… · running · resizing"


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "acceptd-client"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "call" in done.stdout and "watch" in done.stdout
