"""Child processes for the bench: long-running servers and bounded one-shot clients."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from peerlib import RESULT_PREFIX


def proc_cpu(p: psutil.Process) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        t = p.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


class Server:
    """A long-running child (API, worker, hello-world server) with its output in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(args),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.proc = psutil.Process(self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        """CPU seconds of the process and its live children (Dramatiq's CLI forks its workers)."""
        try:
            children = self.proc.children(recursive=True)
        except psutil.Error:
            children = []
        return proc_cpu(self.proc) + sum(proc_cpu(c) for c in children)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, marker: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.output():
                return
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready ({marker!r}); log:\n{self.output()[-2000:]}")

    def wait_for_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url}; log:\n{self.output()[-2000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


@dataclass
class Finished:
    """A one-shot child's outcome."""

    returncode: int
    result: dict[str, Any] | None
    cpu_s: float  # from the kernel (wait4), the whole process
    elapsed: float
    output: str


def run_client(
    args: Sequence[str],
    log: Path,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    on_tick: Callable[[subprocess.Popen[bytes]], None] | None = None,
    tick: float = 0.005,
) -> Finished:
    """Run a bounded client to its end (SIGINT, then SIGKILL past ``time_limit``).

    ``on_tick`` is called every ``tick`` s while it runs (e.g. to stop it when enough is done).
    """
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        popen = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + time_limit
        interrupted = False
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if now > deadline + 5:
                popen.kill()
            elif now > deadline and not interrupted:
                popen.send_signal(signal.SIGINT)
                interrupted = True
            elif on_tick is not None:
                on_tick(popen)
            time.sleep(tick)
        popen.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    result = None
    for line in text.splitlines():
        if line.startswith(RESULT_PREFIX):
            with contextlib.suppress(ValueError):
                result = json.loads(line[len(RESULT_PREFIX) :])
    cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
    return Finished(popen.returncode, result, cpu, elapsed, text)
