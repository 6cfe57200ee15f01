"""A process group: N API processes sharing one port, plus the worker and dispatcher of ``serve``.

``acceptd serve|api --processes N`` (or ``server.processes: N``, N > 1) runs this supervisor
instead of the role. It serves nothing and runs no event loop. It checks that the port can be
shared, starts the embedded Redis once when no ``redis.url`` is configured, then starts every
member as ``python -m service <its own arguments> --member NAME`` (``--member`` is the
child-only flag: ``api-1``…``api-N``, ``worker-1``, ``dispatcher-1``), with
``ACCEPTD_REDIS__URL``, ``ACCEPTD_SERVER__PORT`` and ``PROMETHEUS_MULTIPROC_DIR`` in its
environment. API members listen with ``SO_REUSEPORT``: the kernel spreads connections over them.

Lifecycle. SIGTERM or SIGINT: SIGTERM to every member, each stops gracefully as a single
process does (within ``server.shutdown_grace_seconds``; 10 s past it, SIGKILL), then the
embedded server stops. A second SIGTERM or SIGINT while stopping kills the members at once. A
member that exits on its own is restarted with backoff, like gunicorn's arbiter (0.5 s doubling
to 30 s; at once if it had run for a minute); one that exits with code 2 (its configuration
refused) stops the group with that code. Members and the embedded server get SIGTERM from the
kernel when the supervisor dies (``PR_SET_PDEATHSIG``, Linux), so even a SIGKILLed supervisor
leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from service.runtime.config import Settings
from service.runtime.embedded import EmbeddedRedis, EmbeddedServerError
from service.runtime.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

MEMBER_FLAG = "--member"
GROUP_ROLES = ("serve", "api")
CONFIG_ERROR_EXIT = 2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 60.0
STOP_MARGIN = 10.0
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


class GroupError(RuntimeError):
    """The group cannot start (the port is taken, the embedded server fails)."""


def resolve_processes(n: int) -> int:
    """``server.processes``: 0 means one per CPU core this process may run on."""
    if n > 0:
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def member_names(role: str, processes: int) -> list[str]:
    """``api-1``…``api-N``, and for ``serve`` one worker and one dispatcher."""
    names = [f"api-{i}" for i in range(1, processes + 1)]
    if role == "serve":
        names += ["worker-1", "dispatcher-1"]
    return names


def member_role(member: str) -> str:
    """The role a member runs: ``api-2`` → ``api``."""
    return member.rpartition("-")[0]


def run_group(settings: Settings, role: str, argv: Sequence[str], processes: int) -> int:
    """Supervise the group until SIGTERM or SIGINT; the exit code."""
    try:
        return Supervisor(settings, role, argv, processes).run()
    except (GroupError, EmbeddedServerError) as exc:
        print(f"acceptd: {exc}", file=sys.stderr)
        return 1


class _ChildSetup:
    """Runs in each child between fork and exec (the supervisor has no other thread)."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.prctl: Callable[..., int] | None = None
        if sys.platform.startswith("linux"):
            self.prctl = ctypes.CDLL(None, use_errno=True).prctl

    def __call__(self) -> None:
        # The supervisor blocks the signals it waits for; the child must not inherit that.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which
        # then stops the members once, in order.
        os.setpgrp()
        if self.prctl is not None:
            self.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != self.parent:  # the supervisor died before prctl took effect
            os._exit(1)


@dataclass
class Member:
    """One child process of the group."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    due: float | None = 0.0  # monotonic time to (re)start it at; None while it runs


class Supervisor:
    """Starts, restarts and stops the members of one group."""

    def __init__(self, settings: Settings, role: str, argv: Sequence[str], processes: int) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.members = [Member(name) for name in member_names(role, processes)]
        self.setup = _ChildSetup()
        self.embedded: EmbeddedRedis | None = None
        self.env: dict[str, str] = {}
        self.metrics_dir = ""
        self.own_metrics_dir = False
        self.exit_code = 0

    def run(self) -> int:
        """Start the members and supervise them until a stop; the exit code."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._prepare(self._check_port())
            self._loop()
        finally:
            try:
                self._stop_members()
            finally:
                self._cleanup()
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        log.info("process group stopped")
        return self.exit_code

    def _check_port(self) -> int:
        """Bind the port the members will share, as they will; the port (0 picks one)."""
        host, port = self.settings.server.host, self.settings.server.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise GroupError(f"server.host {host!r}: {exc}") from None
        for family, kind, proto, _, addr in infos:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((addr[0], port, *addr[2:]))
                except OSError as exc:
                    raise GroupError(
                        f"cannot listen on {host}:{port}: {exc.strerror}; the API processes "
                        "share the port (SO_REUSEPORT), so no other program may hold it"
                    ) from None
                port = int(s.getsockname()[1])  # with 0, the first address picks for all
        return port

    def _prepare(self, port: int) -> None:
        url = self.settings.redis.url
        if not url:
            self.embedded = EmbeddedRedis(
                Path(self.settings.redis.data_dir),
                appendfsync=self.settings.redis.appendfsync,
                preexec_fn=self.setup,
            )
            self.embedded.start()
            url = self.embedded.url
        given = os.environ.get(MULTIPROC_ENV)
        if given:
            # The operator's directory: last run's files would add to this run's counts.
            Path(given).mkdir(parents=True, exist_ok=True)
            for stale in Path(given).glob("*.db"):
                stale.unlink()
            self.metrics_dir = given
        else:
            self.metrics_dir = tempfile.mkdtemp(prefix="acceptd-metrics-")
            self.own_metrics_dir = True
        self.env = {
            **os.environ,
            "ACCEPTD_REDIS__URL": url,
            "ACCEPTD_SERVER__PORT": str(port),
            MULTIPROC_ENV: self.metrics_dir,
        }
        log.info(
            "process group on %s:%d: %s; redis %s; metrics in %s",
            self.settings.server.host,
            port,
            ", ".join(m.name for m in self.members),
            url,
            self.metrics_dir,
        )

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            for member in self.members:
                if member.proc is None and member.due is not None and member.due <= now:
                    self._start(member)
            dues = [m.due for m in self.members if m.due is not None]
            timeout = max(0.0, min(dues) - time.monotonic()) if dues else 60.0
            info = signal.sigtimedwait(_SIGNALS, timeout)
            if info is None:
                continue
            if info.si_signo != signal.SIGCHLD:
                log.info("%s: stopping the group", signal.Signals(info.si_signo).name)
                return
            if not self._reap():
                return
            self._check_embedded()

    def _start(self, member: Member) -> None:
        cmd = [sys.executable, "-m", "service", *self.argv, MEMBER_FLAG, member.name]
        member.proc = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=self.setup
        )
        member.started = time.monotonic()
        member.due = None
        log.info("%s started (pid %d)", member.name, member.proc.pid)

    def _reap(self) -> bool:
        """Schedule the restart of every member that exited; False: stop the group."""
        for member in self.members:
            if member.proc is None or member.proc.poll() is None:
                continue
            code, pid = member.proc.returncode, member.proc.pid
            member.proc = None
            mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if code == CONFIG_ERROR_EXIT:
                log.error("%s (pid %d) refused the configuration: stopping", member.name, pid)
                self.exit_code = CONFIG_ERROR_EXIT
                return False
            lived = time.monotonic() - member.started
            member.failures = 0 if lived >= HEALTHY_AFTER else member.failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (member.failures - 1))
            delay = 0.0 if member.failures == 0 else delay
            member.due = time.monotonic() + delay
            log.warning(
                "%s (pid %d) exited (%s) after %.1f s; restarting in %.1f s",
                member.name,
                pid,
                _describe(code),
                lived,
                delay,
            )
        return True

    def _check_embedded(self) -> None:
        if self.embedded is None or self.embedded.running:
            return
        log.error("the embedded server exited; restarting it (members reconnect)")
        self.embedded.stop()
        self.embedded.start()

    def _stop_members(self) -> None:
        live = [m.proc for m in self.members if m.proc is not None and m.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.shutdown_grace_seconds + STOP_MARGIN
        while any(proc.poll() is None for proc in live):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("members still running %.0f s after SIGTERM: SIGKILL", STOP_MARGIN)
                break
            info = signal.sigtimedwait(_SIGNALS, left)
            if info is not None and info.si_signo != signal.SIGCHLD:
                log.warning("%s again: killing the members now", signal.Signals(info.si_signo).name)
                break
        for proc in live:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for member in self.members:
            member.proc = None

    def _cleanup(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self.own_metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"code {code}"
