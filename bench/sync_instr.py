"""Redis server instructions per synchronous request, counted exactly (callgrind).

    .venv/bin/python bench/sync_instr.py CHECKOUT[,CHECKOUT...] [N]

``bench/script_instr.py`` counts the merged runs of a busy queue; a synchronous caller's
request pays one-call runs instead (its submit, handed to an idle worker, and its finish), whose
fixed costs a merged run shares. Per checkout, this tool runs a private valkey-server (this
venv's binary) under valgrind's callgrind, that checkout's own API and worker (``python -m
service`` from the checkout, as ``bench/ab.py``), 100 warm-up requests, then N (300)
sequential synchronous ``POST /v1/echo`` (``bench/http_client.py sync``, which sends 20 more
warm-ups, counted too) between two instruction dumps. The server's work while idle (its cron,
the processes' timers and blocking pops) is counted over an idle interval as long as the run
and subtracted. Runs of one checkout agree to about 1 % (the idle work is not exactly
repeatable). Needs valgrind, as ``bench/script_instr.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ab import free_port, sync_client, wait_port
from script_instr import Counter, counted_server

BENCH = Path(__file__).resolve().parent
WARMUP = 100


def sync_requests(api_port: int, n: int) -> int:
    """``n`` sequential synchronous requests (plus the client's own warm-ups): how many."""
    return int(sync_client(api_port, n, 600)["statuses"]["201"])


def wait_ready(api_port: int, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"sync_instr: the API on {api_port} did not become ready")


def measure(root: Path, n: int) -> float:
    """Thousands of server instructions per synchronous request of the checkout ``root``."""
    port, api_port = free_port(), free_port()
    data = Path(tempfile.mkdtemp(prefix="sync-instr-"))
    server, out = counted_server(data, port)
    env = {
        **os.environ,
        "ACCEPTD_REDIS__URL": f"redis://127.0.0.1:{port}",
        "ACCEPTD_SERVER__PORT": str(api_port),
        "ACCEPTD_WORKER__CONCURRENCY": "50",
    }
    roles: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(port, 120)
        for role in ("api", "worker"):
            args = [sys.executable, "-m", "service", role, "--config", str(root / "config.yaml")]
            quiet = subprocess.DEVNULL
            roles.append(subprocess.Popen(args, cwd=root, env=env, stdout=quiet, stderr=quiet))
        wait_ready(api_port)
        sync_requests(api_port, WARMUP)
        time.sleep(1)  # the warm-up's last finishes and events settle
        counter = Counter(server.pid, out)
        counter.since_last()
        t0 = time.monotonic()
        requests = sync_requests(api_port, n)
        elapsed = time.monotonic() - t0
        busy = counter.since_last()
        time.sleep(elapsed)
        idle = counter.since_last()
        return (busy - idle) / requests / 1000
    finally:
        for proc in reversed(roles):
            proc.terminate()
            proc.wait(30)
        server.terminate()
        server.wait(60)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("sync_instr: needs valgrind (apt-get install valgrind)")
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    results: dict[Path, float] = {}
    for root in roots:
        t0 = time.perf_counter()
        results[root] = measure(root, n)
        print(f"{root.name}: {results[root]:,.1f}k instructions per synchronous request "
              f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    for root in roots[1:]:
        print(f"{root.name} / {roots[0].name}: {results[root] / results[roots[0]]:.3f}")


if __name__ == "__main__":
    main()
