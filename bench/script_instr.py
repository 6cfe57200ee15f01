"""Redis server instructions per job of each queue step, counted exactly (callgrind).

    .venv/bin/python bench/script_instr.py CHECKOUT[,CHECKOUT...] [N]

Time measurements of one script's cost move by 20-30 % from run to run on this kind of
machine (a VM without hardware counters: ``perf stat`` has no ``instructions``), which hides
the few per cent a Lua change makes. Instructions do not move: this tool runs a private
valkey-server (this venv's binary) under valgrind's callgrind per checkout, drives that
checkout's own ``Queue`` (its Python and its scripts, as the API and worker call them), and
counts the server's instructions in each step, per job:

- ``submit``: N (2,000) echo requests in bulk submits of 100 (one ``submit.lua`` run each);
- ``claim+start``: claims of 25 (``claim.lua``, then ``start.lua`` for what it took);
- ``finish``: each claim's 25 outcomes finished together (merged into one ``finish.lua`` run).

``SPLIT=1`` counts ``claim`` and ``start`` apart: every claim first (``claim.lua`` alone, as
``Queue.claim_shard`` sends it), then the starts of what they popped. ``BULK`` and ``CLAIM``
set those sizes (``BULK=1 CLAIM=1``: one request at a time, each step
its own script run, as at low load). Nobody streams or waits, no webhook is configured: the
bench's bulk drain. With ``WAITED=1`` every request is submitted as a synchronous caller's
(its outcome is published to the watched channel, as for a 201). The counts include reading
each command and writing its reply. Needs valgrind (Debian's ``valgrind`` package; not needed
by anything else). Twice the same checkout gives the same counts to within 0.1 %.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SPLIT = bool(os.environ.get("SPLIT"))
PHASES = ("submit", "claim", "start", "finish") if SPLIT else ("submit", "claim+start", "finish")
BULK = int(os.environ.get("BULK", "100"))
CLAIM = int(os.environ.get("CLAIM", "25"))
WAITED = bool(os.environ.get("WAITED"))


class Counter:
    """The instructions a callgrind-run server executed since the last call (dump and read)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out

    def since_last(self) -> int:
        for old in self.out.parent.glob(self.out.name + ".*"):
            old.unlink()
        subprocess.run(["callgrind_control", "-d", str(self.pid)], capture_output=True, check=True)
        total = 0
        for dump in self.out.parent.glob(self.out.name + ".*"):
            for line in dump.read_text().splitlines():
                if line.startswith("totals:") or line.startswith("summary:"):
                    total += int(line.split()[1])
                    break
        return total


async def drive(root: Path, port: int, pid: int, out: Path, n: int) -> dict[str, float]:
    """One checkout's steps against the server on ``port``: instructions per job of each."""
    sys.path.insert(0, str(root))
    from service.queue.store import Limits, NewRequest, Queue
    from service.runtime.redis import connect

    client = connect(f"redis://127.0.0.1:{port}")
    queue = Queue(client)
    limits = Limits(attempts=1, timeout=10.0, result_ttl=3600, max_queue_depth=10**6,
                    retry_backoff=1.0)  # fmt: skip
    counter = Counter(pid, out)
    counts: dict[str, float] = {}
    await client.ping()
    counter.since_last()
    for i in range(0, n, BULK):
        ids = [queue.new_id("echo", 0, "anonymous") for _ in range(BULK)]
        body = f'{{"n":{i}}}'
        reqs = [NewRequest("echo", rid, "anonymous", body, limits, waited=WAITED) for rid in ids]
        await queue.submit_many(reqs)
    counts["submit"] = counter.since_last() / n
    claims = []
    if SPLIT:
        claims = await claims_apart(queue, counter, counts, n)
    else:
        for c in range(0, n, CLAIM):
            got = await queue.claim_shard("echo", "w", f"w:{c}", CLAIM, 60.0, 30.0)
            claims.append(got.jobs)
        counts["claim+start"] = counter.since_last() / n
    claimed = sum(len(jobs) for jobs in claims)
    for jobs in claims:
        outcomes = await asyncio.gather(*(queue.finish(j, "succeeded", j.input) for j in jobs))
        assert set(outcomes) == {"succeeded"}, outcomes
    counts["finish"] = counter.since_last() / n
    await client.aclose()
    if claimed != n:
        raise SystemExit(f"script_instr: {root} claimed {claimed} of {n}")
    return counts


async def claims_apart(queue: Any, counter: Counter, counts: dict[str, float], n: int) -> list[Any]:
    """``SPLIT``: every claim's ``claim.lua`` run first, then every start of what it popped;
    the jobs started, per claim."""
    from service.queue import scripts
    from service.queue.scripts import ClaimArgv
    from service.queue.store import _claim_keys

    popped = []
    for c in range(0, n, CLAIM):
        now = queue.now_ms()
        argv = ClaimArgv(now, 60_000, "w", CLAIM, 30_000, 0, "1", "")
        res = await scripts.CLAIM.call(queue.batcher, _claim_keys("echo", "w"), argv)
        popped.append((f"w:{c}", res[0], now))
    counts["claim"] = counter.since_last() / n
    claims = []
    for token, members, now in popped:
        jobs, failed = await queue._start("echo", members, token, "w", now)
        if failed is not None:
            raise failed
        claims.append(jobs)
    counts["start"] = counter.since_last() / n
    return claims


def counted_server(data: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """A private valkey-server (this venv's binary) on ``port`` under callgrind, its data in
    ``data``, not yet listening: the process and its dump file (for :class:`Counter`)."""
    from ab import valkey_binary

    out = data / "callgrind.out"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", valkey_binary(),
         "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return server, out


def measure(root: Path, n: int) -> dict[str, float]:
    """Run ``drive`` for one checkout in its own interpreter against its own server."""
    from ab import free_port, wait_port

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="script-instr-"))
    server, out = counted_server(data, port)
    try:
        wait_port(port, 120)
        child = subprocess.run(
            [sys.executable, __file__, "--drive", str(root), str(port), str(server.pid),
             str(out), str(n)],
            cwd=root, capture_output=True, text=True,
        )  # fmt: skip
        if child.returncode:
            raise SystemExit(f"script_instr: {root}: {child.stderr[-2000:]}")
        return dict(json.loads(child.stdout.splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(60)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    if sys.argv[1] == "--drive":
        root, port, pid, out, n = sys.argv[2:7]
        counts = asyncio.run(drive(Path(root), int(port), int(pid), Path(out), int(n)))
        print(json.dumps(counts))
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("script_instr: needs valgrind (apt-get install valgrind)")
    roots = [Path(a).resolve() for a in sys.argv[1].split(",")]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    results: dict[Path, dict[str, float]] = {}
    for root in roots:
        t0 = time.perf_counter()
        results[root] = counts = measure(root, n)
        cells = ", ".join(f"{k} {counts[k] / 1000:,.1f}k" for k in PHASES)
        total = sum(counts[k] for k in PHASES)
        print(f"{root.name}: instructions per job: {cells}, total {total / 1000:,.1f}k "
              f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    first = results[roots[0]]
    for root in roots[1:]:
        ratios = ", ".join(f"{k} {results[root][k] / first[k]:.3f}" for k in PHASES)
        total = sum(results[root].values()) / sum(first.values())
        print(f"{root.name} / {roots[0].name}: {ratios}, total {total:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
