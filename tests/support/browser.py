"""Finding (and, where allowed, installing) the Chromium the browser tests drive.

Playwright's own browser download is not available here, so the tests use Debian's
``chromium`` package. Installing it takes a while and must not run twice at once (pytest-xdist
workers, parallel sessions), hence a file lock; a failed attempt leaves a marker so the other
workers of the same run skip at once instead of retrying.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
INSTALL_TIMEOUT = 900  # seconds; a cold apt cache on a slow mirror is the worst case
_LOG_TAIL = 600


class ChromiumUnavailable(Exception):
    """Chromium is missing and cannot be installed; the message says why."""


def ensure_chromium(shared_dir: Path) -> Path:
    """Chromium's path, installing it with apt-get first if needed (root only).

    ``shared_dir`` holds the lock and the failure marker; pass a folder every worker of one
    test run shares, so a run tries the installation at most once.
    """
    if _runs(CHROMIUM):
        return CHROMIUM
    shared_dir.mkdir(parents=True, exist_ok=True)
    failed = shared_dir / "chromium-install-failed"
    with (shared_dir / "chromium-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _runs(CHROMIUM):  # another worker installed it while we waited
            return CHROMIUM
        if failed.exists():
            raise ChromiumUnavailable(failed.read_text())
        try:
            _install()
        except ChromiumUnavailable as exc:
            failed.write_text(str(exc))
            raise
    return CHROMIUM


def _install() -> None:
    if os.geteuid() != 0:
        raise ChromiumUnavailable(
            f"{CHROMIUM} is missing and installing it needs root: apt-get install chromium"
        )
    apt = shutil.which("apt-get")
    if apt is None:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for cmd in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise ChromiumUnavailable(f"{' '.join(cmd)} timed out") from None
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-_LOG_TAIL:]
            raise ChromiumUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
    if not _runs(CHROMIUM):
        raise ChromiumUnavailable(f"apt-get installed chromium but {CHROMIUM} does not run")
    print(f"installed chromium in {time.monotonic() - started:.0f} s")  # shown with -s


def _runs(path: Path) -> bool:
    """The binary exists and starts (a half-installed package has the file but fails)."""
    if not os.access(path, os.X_OK):
        return False
    try:
        proc = subprocess.run(
            [str(path), "--version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
