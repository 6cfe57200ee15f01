"""Ceilings: an aiohttp hello-world under the same load client, Redis EVALSHA alone, and the
synchronous path's floor (its six hops with no work in them)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import hiredis
from procs import Server, run_client
from report import Row, Run

from scenarios.context import BENCH, Bench, cpu_per_job, need
from scenarios.plan import Step
from service.runtime.embedded import free_port

PIPELINE = 1000  # EVALSHA calls per pipeline


def hello_row(bench: Bench) -> Row:
    return Row(
        "4",
        "aiohttp hello-world POST",
        "aiohttp (no uvloop)",
        "req/s",
        note=f"same load client: {bench.client_name()}; server CPU in the A column",
    )


@contextmanager
def hello_step(bench: Bench, row: Row) -> Iterator[Step]:
    """The hello-world server, running while its step is used."""
    port = free_port()
    server = Server(
        "hello", [sys.executable, str(BENCH / "hello_server.py"), "--port", str(port)], bench.tmp
    )
    try:
        server.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        yield row, lambda: hello_run(bench, server, port)
    finally:
        server.stop()


def hello_run(bench: Bench, server: Server, port: int) -> Run:
    c0 = bench.cpu_snapshot({"api": server})
    fin = bench.http_load(f"http://127.0.0.1:{port}/", bench.plan.wrk_seconds, prefer="")
    c1 = bench.cpu_snapshot({"api": server})
    if fin.result is None:
        raise RuntimeError(f"load client failed: {fin.output[-1000:]}")
    n = fin.result["requests"]
    return Run(n / fin.result["elapsed"], cpu_per_job(c0, c1, n, fin))


def resp_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def evalsha_batches(sha: str) -> list[bytes]:
    """Ten pipelines of EVALSHA calls, each on its own keys and members."""
    return [
        b"".join(
            resp_command(
                "EVALSHA",
                sha,
                "2",
                f"k:{(b * PIPELINE + i) % 1000}",
                "z",
                f"m{b * PIPELINE + i}",
                str(i),
            )
            for i in range(PIPELINE)
        )
        for b in range(10)
    ]


def evalsha_run(bench: Bench, batches: list[bytes]) -> Run:
    """Two seconds of pipelines over one raw socket."""
    bench.flush()
    r0 = float(sum(bench.redis_proc.cpu_times()[:2]))
    with socket.create_connection(("127.0.0.1", bench.redis_port)) as sock:
        reader = hiredis.Reader()
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            sock.sendall(batches[(done // PIPELINE) % len(batches)])
            got = 0
            while got < PIPELINE:
                reader.feed(sock.recv(1 << 20))
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise RuntimeError(str(reply))
                    got += 1
            done += PIPELINE
        elapsed = time.perf_counter() - t0
    r1 = float(sum(bench.redis_proc.cpu_times()[:2]))
    return Run(done / elapsed, {"redis": (r1 - r0) / done * 1e6})


def evalsha(bench: Bench) -> Row:
    """EVALSHA of a SET+ZADD script: raw RESP over one socket, pipelined (no client cost)."""
    row = Row("4", "Redis EVALSHA (SET+ZADD script)", "valkey-server", "calls/s")
    sha = bench.r.script_load(
        "redis.call('SET', KEYS[1], ARGV[1]) redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) return 1"
    )
    batches = evalsha_batches(sha)
    for _ in range(bench.plan.runs):
        row.runs.append(evalsha_run(bench, batches))
    bench.flush()
    row.note = (
        "no redis-benchmark/valkey-benchmark binary here: raw RESP from Python over one "
        f"connection, {PIPELINE} calls per pipeline (server-bound), 2 s"
    )
    return row


def floor_row() -> Row:
    return Row(
        "4",
        "sync floor: the six hops with no work in them",
        "aiohttp + Redis lists",
        "ms",
        note="`bench/sync_floor.py`'s `http+queue`: row 3's client and requests to an aiohttp "
        "server (uvloop) that pushes each job onto a list and pops its reply in one write; a "
        "worker process pops the job and pushes it back; hiredis only, no client library: what "
        "no design with acceptd's hops goes below on this machine; p50 (p99)",
    )


def sync_floor(bench: Bench, row: Row) -> None:
    """One run of the floor: its server and worker, then the latency client against them."""
    script = [sys.executable, str(BENCH / "sync_floor.py")]
    port = free_port()
    worker = Server("floor-worker", [*script, "--work", str(bench.redis_port)], bench.tmp)
    server = Server(
        "floor-api", [*script, "--serve", str(port), str(bench.redis_port), "1"], bench.tmp
    )
    try:
        worker.wait_for_output("READY")
        server.wait_for_output("READY")
        seconds = bench.plan.latency_seconds
        args = [sys.executable, str(BENCH / "http_client.py"), "sync", "--url",
                f"http://127.0.0.1:{port}", "--n", str(bench.plan.latency_n),
                "--duration", f"{seconds:g}"]  # fmt: skip
        servers = {"api": server, "worker": worker}
        c0 = bench.cpu_snapshot(servers)
        fin = run_client(args, bench.log_path("lat-floor"), seconds + 30)
        c1 = bench.cpu_snapshot(servers)
        res = need(fin, "the sync floor's client")
        cpu = cpu_per_job(c0, c1, res["n"], fin, res.get("cpu_s"))
        row.runs.append(Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"], "samples": res["n"]}))
    finally:
        server.stop()
        worker.stop()
