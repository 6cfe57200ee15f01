"""Helpers for tests that run real ``acceptd`` processes: start, wait, stop, kill.

Every wait is bounded polling of real state (a process's exit status, Redis keys, HTTP
answers); nothing sleeps as a means of synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import aiohttp
import redis.asyncio as aredis

from service.queue import keys

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.yaml"

T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float,
    *,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll the async ``predicate`` until it returns something truthy; return that.

    Raises AssertionError naming ``message`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def acceptd_command(role: str, config: Path | str = CONFIG, args: Sequence[str] = ()) -> list[str]:
    """The command line of one ``acceptd`` role: the venv's console script when present."""
    script = Path(sys.executable).parent / "acceptd"
    if script.exists():
        return [str(script), role, "--config", str(config), *args]
    return [sys.executable, "-m", "service", role, "--config", str(config), *args]


def clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``ACCEPTD_*`` variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCEPTD_")}
    env.update(overrides)
    return env


class RoleProcess:
    """One ``acceptd ROLE`` subprocess, its output captured in a log file."""

    def __init__(
        self,
        role: str,
        env: Mapping[str, str],
        log_path: Path,
        *,
        config: Path | str = CONFIG,
        args: Sequence[str] = (),
    ) -> None:
        self.role = role
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                acceptd_command(role, config, args),
                cwd=ROOT,
                env=clean_env(env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown kills its children
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Fail with the process's output if it has exited."""
        if not self.alive:
            raise AssertionError(
                f"acceptd {self.role} exited with {self.proc.returncode}:\n{self.output()}"
            )

    async def wait_exit(self, timeout: float) -> int:
        """Wait (without blocking the loop) until the process exits; return its code."""

        async def exited() -> bool:
            return self.proc.poll() is not None

        await wait_until(exited, timeout, message=f"acceptd {self.role} (pid {self.pid}) to exit")
        return self.proc.wait()

    async def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit code (a graceful stop)."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash. Idempotent."""
        if self.alive:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Kill the process and any child it left (its process group); release the log."""
        try:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            self._log.close()


class Processes:
    """Starts role processes for one test and kills every one of them at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[RoleProcess] = []

    def start(self, role: str, env: Mapping[str, str], args: Sequence[str] = ()) -> RoleProcess:
        """Start ``acceptd ROLE [ARGS]`` with ``env`` overrides (no readiness wait)."""
        n = len(self.started)
        proc = RoleProcess(role, env, self.log_dir / f"{role}-{n}.log", args=args)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        """Kill whatever still runs."""
        for proc in self.started:
            proc.close()


async def worker_registered(redis: aredis.Redis, op: str, pid: int) -> bool:
    """Whether a worker process with ``pid`` has claimed from ``op`` (it is then idle or busy)."""
    members = await redis.zrange(keys.key(op, "workers"), 0, -1)
    marker = f":{pid}:"
    return any(marker in (m.decode() if isinstance(m, bytes) else str(m)) for m in members)


async def wait_worker_ready(
    proc: RoleProcess, redis: aredis.Redis, op: str, timeout: float = 15.0
) -> None:
    """Wait until the worker has registered on ``op``'s queue (its first claim ran)."""

    async def ready() -> bool:
        proc.check_alive()
        return await worker_registered(redis, op, proc.pid)

    await wait_until(ready, timeout, interval=0.05, message=f"worker {proc.pid} to claim {op}")


async def wait_http_ready(
    proc: RoleProcess, session: aiohttp.ClientSession, base: str, timeout: float = 15.0
) -> None:
    """Wait until the process answers ``GET /healthz`` with 200."""

    async def ready() -> bool:
        proc.check_alive()
        try:
            async with session.get(
                base + "/healthz", timeout=aiohttp.ClientTimeout(total=1)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    await wait_until(ready, timeout, interval=0.05, message=f"{base}/healthz")
