"""``make bench``: acceptd against arq, SAQ and Dramatiq on one private Redis, in one run.

Prints one markdown table (also written to ``bench/results.md``). Everything runs on
127.0.0.1; every loop is bounded in count and time; the whole run stops itself within
``--budget`` seconds (default 840), trimming runs of the slowest parts when it must.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / ".peers"
sys.path[:0] = [str(BENCH), str(ROOT)]


def ensure_psutil() -> None:
    """psutil measures CPU per process; install it into this venv if it is missing."""
    try:
        importlib.import_module("psutil")
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "psutil"],
            check=True,
            timeout=300,
        )


ensure_psutil()

import psutil  # noqa: E402
import redis  # noqa: E402
from procs import Finished, Server, run_client  # noqa: E402
from report import Row, Run, Target, table  # noqa: E402

from service.runtime.embedded import EmbeddedRedis, free_port  # noqa: E402

PEERS: dict[str, list[str]] = {
    "arq": ["arq"],
    "saq": ["saq[redis,hiredis]", "typing_extensions"],
    "dramatiq": ["dramatiq[redis]", "hiredis"],
}
PEER_PKG = {"arq": "arq", "saq": "saq", "dramatiq": "dramatiq"}
CONCURRENCY = 50  # worker concurrency, and the peers' producers'
# The HTTP load client's connections (acceptd and the hello-world alike): enough to keep the
# server busy. At 50 the API waited on Redis about 9 % of the time (91 % busy); at 100 it is
# about 98 % busy, while hello-world (always 100 % busy) measured the same at both.
HTTP_CONNECTIONS = 100
ECHO = "acceptd:{echo}:"


@dataclass
class Plan:
    """How much to measure: full or ``--quick``."""

    n: int
    runs: int
    wrk_seconds: float
    latency_n: int
    monitor_n: int
    mem_n: int
    big_n: int
    fill_budget: float
    aof_seconds: float
    webhook_n: int
    webhook_runs: int


FULL = Plan(20_000, 3, 5.0, 500, 300, 100_000, 1_000_000, 150.0, 3.0, 10_000, 3)
QUICK = Plan(2_000, 1, 2.0, 100, 100, 10_000, 100_000, 30.0, 1.5, 2_000, 1)


class Budget:
    """The run's time budget."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- setup -------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """``wrk`` from Debian's packages: installed when we are root and it is missing."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    log("installing wrk (apt-get)")
    for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(cmd, capture_output=True, timeout=240, check=False)
        if cmd[1] == "update":
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    ["apt-get", "install", "-y", "-q", "wrk"],
                    capture_output=True,
                    timeout=240,
                    check=False,
                )
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


def ensure_peer(name: str) -> tuple[Path | None, str]:
    """A venv of the peer's own under bench/.peers/<name>; (python, version or error)."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    spec = " ".join(PEERS[name])
    pkg = PEER_PKG[name]
    try:
        if not (marker.exists() and marker.read_text() == spec and python.exists()):
            PEERS_DIR.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["python3", "-m", "venv", str(venv)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                + PEERS[name],
                check=True,
                capture_output=True,
                timeout=600,
            )
            marker.write_text(spec)
        version = subprocess.run(
            [
                str(python),
                "-c",
                f"import importlib.metadata as m; print(m.version({pkg!r}))",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        return python, version
    except (subprocess.SubprocessError, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        text = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
        return None, f"could not be installed: {exc} {text.strip()[-200:]}"


def install_peers() -> dict[str, tuple[Path | None, str]]:
    out: dict[str, tuple[Path | None, str]] = {}

    def one(name: str) -> None:
        out[name] = ensure_peer(name)

    threads = [threading.Thread(target=one, args=(n,)) for n in PEERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(700)
    for name in PEERS:
        out.setdefault(name, (None, "install timed out"))
    return out


# -- the bench ---------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, budget: Budget, tmp: Path, wrk: str | None) -> None:
        self.plan = plan
        self.budget = budget
        self.tmp = tmp
        self.wrk = wrk
        self.redis_port = free_port()
        self.embedded = EmbeddedRedis(tmp / "redis", port=self.redis_port, appendonly=False)
        self.embedded.start()
        self.url = self.embedded.url
        self.r = redis.Redis.from_url(self.url)
        assert self.embedded._proc is not None
        self.redis_proc = psutil.Process(self.embedded._proc.pid)
        self.api: Server | None = None
        self.api_port = 0
        self.worker: Server | None = None
        self.seq = 0

    def close(self) -> None:
        for s in (self.worker, self.api):
            if s is not None:
                s.stop()
        self.r.close()
        self.embedded.stop()

    # helpers ------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        self.seq += 1
        return self.tmp / f"{self.seq:03d}-{name}.log"

    def flush(self) -> None:
        self.r.flushall()

    def cpu_snapshot(self, servers: dict[str, Any]) -> dict[str, float]:
        snap = {name: s.cpu() for name, s in servers.items()}
        snap["redis"] = float(sum(self.redis_proc.cpu_times()[:2]))
        return snap

    def acceptd_env(self, redis_url: str, port: int) -> dict[str, str]:
        return {
            "ACCEPTD_REDIS__URL": redis_url,
            "ACCEPTD_SERVER__PORT": str(port),
            "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
            "ACCEPTD_OPERATIONS__ECHO__MAX_QUEUE_DEPTH": "10000000",
            "ACCEPTD_WORKER__CONCURRENCY": str(CONCURRENCY),
        }

    def start_api(self, redis_url: str | None = None, name: str = "api") -> tuple[Server, int]:
        port = free_port()
        api = Server(
            name,
            [
                str(Path(sys.executable).parent / "acceptd"),
                "api",
                "--config",
                str(ROOT / "config.yaml"),
                "--log-level",
                "WARNING",
            ],
            self.tmp,
            env=self.acceptd_env(redis_url or self.url, port),
            cwd=ROOT,
        )
        api.wait_for_http(f"http://127.0.0.1:{port}/readyz")
        return api, port

    def start_worker(self) -> Server:
        worker = Server(
            "worker",
            [
                str(Path(sys.executable).parent / "acceptd"),
                "worker",
                "--config",
                str(ROOT / "config.yaml"),
                "--log-level",
                "WARNING",
            ],
            self.tmp,
            env=self.acceptd_env(self.url, 0),
            cwd=ROOT,
        )
        worker.wait_for_output("acceptd: running")
        time.sleep(0.3)
        return worker

    def wrk_args(self, url: str, seconds: float) -> list[str]:
        assert self.wrk is not None
        return [
            self.wrk,
            "-t1",
            f"-c{HTTP_CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(BENCH / "post.lua"),
            url,
        ]

    def http_load(
        self,
        url: str,
        seconds: float,
        prefer: str = "respond-async",
        limit: int = 0,
        on_tick: Any = None,
    ) -> Finished:
        """The load client: wrk, else the aiohttp client in its own process."""
        if self.wrk is not None:
            env = {"BENCH_PREFER": prefer, "BENCH_LIMIT": str(limit)}
            fin = run_client(
                self.wrk_args(url, seconds), self.log_path("wrk"), seconds + 30, env, on_tick
            )
            if fin.result is not None:
                fin.result["elapsed"] = fin.result["duration_us"] / 1e6
            return fin
        n = limit or 10_000_000
        args = [
            sys.executable,
            str(BENCH / "http_client.py"),
            "load",
            "--url",
            url,
            "--prefer",
            prefer,
            "--n",
            str(n),
            "--duration",
            str(seconds),
            "--concurrency",
            str(HTTP_CONNECTIONS),
        ]
        return run_client(args, self.log_path("http-load"), seconds + 30, None, on_tick)

    def client_name(self) -> str:
        n = HTTP_CONNECTIONS
        return (
            f"wrk (1 thread, {n} connections)" if self.wrk else f"aiohttp client, {n} connections"
        )

    def runs_for(self, estimate: float, reserve: float) -> int:
        """How many runs fit: the plan's, fewer when the budget is short."""
        spare = self.budget.left() - reserve
        return max(1, min(self.plan.runs, int(spare // max(estimate, 0.1))))

    # 4. ceilings ----------------------------------------------------------------------

    def start_hello(self) -> tuple[Server, int]:
        port = free_port()
        server = Server(
            "hello", [sys.executable, str(BENCH / "hello_server.py"), "--port", str(port)], self.tmp
        )
        server.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        return server, port

    def hello_run(self, server: Server, port: int) -> Run:
        c0 = self.cpu_snapshot({"api": server})
        fin = self.http_load(f"http://127.0.0.1:{port}/", self.plan.wrk_seconds, prefer="")
        c1 = self.cpu_snapshot({"api": server})
        if fin.result is None:
            raise RuntimeError(f"load client failed: {fin.output[-1000:]}")
        n = fin.result["requests"]
        return Run(n / fin.result["elapsed"], cpu_per_job(c0, c1, n, fin))

    def evalsha_ceiling(self) -> Row:
        """EVALSHA of a SET+ZADD script: raw RESP over one socket, pipelined (no client cost)."""
        import socket

        import hiredis

        row = Row("4", "Redis EVALSHA (SET+ZADD script)", "valkey-server", "calls/s")
        sha = self.r.script_load(
            "redis.call('SET', KEYS[1], ARGV[1]) "
            "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) return 1"
        )
        depth = 1000

        def cmd(*parts: str) -> bytes:
            out = [f"*{len(parts)}\r\n".encode()]
            for p in parts:
                b = p.encode()
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
            return b"".join(out)

        batches = [
            b"".join(
                cmd(
                    "EVALSHA",
                    sha,
                    "2",
                    f"k:{(b * depth + i) % 1000}",
                    "z",
                    f"m{b * depth + i}",
                    str(i),
                )
                for i in range(depth)
            )
            for b in range(10)
        ]
        for _ in range(self.plan.runs):
            self.flush()
            r0 = float(sum(self.redis_proc.cpu_times()[:2]))
            with socket.create_connection(("127.0.0.1", self.redis_port)) as sock:
                reader = hiredis.Reader()
                done = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < 2.0:
                    sock.sendall(batches[(done // depth) % len(batches)])
                    got = 0
                    while got < depth:
                        reader.feed(sock.recv(1 << 20))
                        while (reply := reader.gets()) is not False:
                            if isinstance(reply, hiredis.ReplyError):
                                raise RuntimeError(str(reply))
                            got += 1
                    done += depth
                elapsed = time.perf_counter() - t0
            r1 = float(sum(self.redis_proc.cpu_times()[:2]))
            row.runs.append(Run(done / elapsed, {"redis": (r1 - r0) / done * 1e6}))
        self.flush()
        row.note = (
            "no redis-benchmark/valkey-benchmark binary here: raw RESP from Python over one "
            f"connection, {depth} calls per pipeline (server-bound), 2 s"
        )
        return row

    # acceptd ---------------------------------------------------------------------------

    def acceptd_enqueue_run(self) -> Run:
        assert self.api is not None
        url = f"http://127.0.0.1:{self.api_port}/v1/echo"
        self.flush()
        c0 = self.cpu_snapshot({"api": self.api})
        fin = self.http_load(url, self.plan.wrk_seconds)
        c1 = self.cpu_snapshot({"api": self.api})
        if fin.result is None:
            raise RuntimeError(f"load client failed: {fin.output[-1000:]}")
        accepted = int(self.r.zcard(ECHO + "pending"))
        self.flush()
        return Run(accepted / fin.result["elapsed"], cpu_per_job(c0, c1, accepted, fin))

    def acceptd_enqueue_note(self) -> str:
        return (
            f"{self.client_name()}, {self.plan.wrk_seconds:g} s per run; rate = requests "
            "queued (ZCARD pending) / duration; one `acceptd api` process, no worker; "
            "one run next to each other contender's in every round (the targets compare pairs)"
        )

    def acceptd_done(self, deadline: float) -> tuple[int, int]:
        """Wait until every submitted request has finished: (submitted, finished).

        One atomic read of the submit counter, the queues and the finish counts in ``tput``
        (each is changed in the same script as the state it counts).
        """
        submitted = finished = 0
        while time.monotonic() < deadline:
            pipe = self.r.pipeline(transaction=True)
            pipe.get(ECHO + "seq")
            pipe.zcard(ECHO + "pending")
            pipe.zcard(ECHO + "running")
            pipe.hgetall(ECHO + "tput")
            seq, pending, running, tput = pipe.execute()
            submitted = int(seq or 0)
            finished = sum(int(v) for k, v in tput.items() if k.startswith(b"n:"))
            if pending + running == 0 and finished == submitted:
                break
            time.sleep(0.005)
        return submitted, finished

    def acceptd_drain_run(self) -> Run:
        assert self.api is not None and self.worker is not None
        url = f"http://127.0.0.1:{self.api_port}/v1/echo"
        n = self.plan.n
        self.flush()
        stopped = [False]

        def tick(popen: subprocess.Popen[bytes], stopped: list[bool] = stopped) -> None:
            if not stopped[0] and int(self.r.get(ECHO + "seq") or 0) >= n:
                popen.send_signal(2)  # SIGINT: wrk prints its summary and exits
                stopped[0] = True

        servers = {"api": self.api, "worker": self.worker}
        c0 = self.cpu_snapshot(servers)
        t0 = time.perf_counter()
        fin = self.http_load(url, 120, limit=n, on_tick=tick)
        total, finished = self.acceptd_done(time.monotonic() + 120)
        elapsed = time.perf_counter() - t0
        c1 = self.cpu_snapshot(servers)
        if finished != total:
            raise RuntimeError(f"acceptd drain: {finished} finished of {total} submitted")
        self.flush()
        return Run(total / elapsed, cpu_per_job(c0, c1, total, fin))

    def acceptd_drain_note(self) -> str:
        return (
            f"`acceptd api` + `acceptd worker` (concurrency 50), producer {self.client_name()} "
            "concurrent (stopped at N, a few in flight may add); done when the finish count "
            "(`tput` hash) equals the submit counter (`seq`) and pending+running are empty"
        )

    def acceptd_latency_run(self, mode: str) -> Run:
        assert self.api is not None
        servers = {"api": self.api, "worker": self.worker}
        self.flush()
        args = [
            sys.executable,
            str(BENCH / "http_client.py"),
            mode,
            "--url",
            f"http://127.0.0.1:{self.api_port}",
            "--n",
            str(self.plan.latency_n),
            "--duration",
            "60",
        ]
        c0 = self.cpu_snapshot(servers)
        fin = run_client(args, self.log_path(f"lat-{mode}"), 90)
        c1 = self.cpu_snapshot(servers)
        res = need(fin, "latency client")
        bad = {
            k: v for k, v in res["statuses"].items() if k != ("201" if mode == "sync" else "200")
        }
        if bad:
            raise RuntimeError(f"acceptd {mode} latency: unexpected statuses {bad}")
        self.flush()
        return Run(
            res["p50_ms"],
            cpu_per_job(c0, c1, res["n"], fin, res.get("cpu_s")),
            {"p99_ms": res["p99_ms"]},
        )

    @staticmethod
    def acceptd_latency_note(mode: str) -> str:
        if mode == "sync":
            return (
                "aiohttp client, one connection, no Prefer: the API waits on its events "
                "subscription and answers 201 with the result; p50 (p99)"
            )
        return (
            "POST respond-async (202), then GET …/requests/{id}/events read until the "
            "stream ends after the terminal event"
        )

    # 5. scale ----------------------------------------------------------------------------

    def fill(self, count: int, time_limit: float) -> tuple[int, str]:
        """Queue ``count`` echo requests through ``Queue.submit``, pipelined; (done, last id)."""
        from filler import fill_queue

        return fill_queue(self.url, count, time_limit)

    def scale(self) -> list[Row]:
        p = self.plan
        mem = Row("5", "Redis memory per queued request", "acceptd", "bytes")
        mon_empty = Row("5", "status monitor GET, 1 request queued", "acceptd", "ms")
        mon_big = Row("5", f"status monitor GET, {p.big_n:,} queued (last one)", "acceptd", "ms")
        self.flush()
        _, one = self.fill(1, 10)
        mon_empty.runs.append(self.monitor(one))
        # Fill with no API subscribed (its events subscription would otherwise buffer events).
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.flush()
        base = int(self.r.info("memory")["used_memory"])
        t0 = time.perf_counter()
        done, last = self.fill(p.mem_n, p.fill_budget)
        used = int(self.r.info("memory")["used_memory"])
        mem.runs.append(Run((used - base) / max(done, 1)))
        budget = min(p.fill_budget, self.budget.left() - 120)
        more, last2 = self.fill(p.big_n - done, max(budget, 5))
        total = done + more
        rate = total / (time.perf_counter() - t0)
        last = last2 or last
        used_big = int(self.r.info("memory")["used_memory"])
        mem.note = (
            f"INFO used_memory delta over {done:,} requests queued by real submit-script calls "
            f"built by `Queue.submit`, pipelined ({rate:,.0f}/s); at {total:,}: "
            f"{(used_big - base) / total:,.0f} B/request"
        )
        self.api, self.api_port = self.start_api()
        mon_big.runs.append(self.monitor(last))
        if total < p.big_n:
            mon_big.measure = f"status monitor GET, {total:,} queued (last one; time-bounded fill)"
        self.flush()
        mon_big.note = f"{p.monitor_n} sequential GETs of the last request (position {total - 1:,})"
        mon_empty.note = f"{p.monitor_n} sequential GETs, aiohttp client, one connection"
        return [mem, mon_empty, mon_big]

    def monitor(self, rid: str) -> Run:
        assert self.api is not None
        args = [
            sys.executable,
            str(BENCH / "http_client.py"),
            "monitor",
            "--url",
            f"http://127.0.0.1:{self.api_port}",
            "--id",
            rid,
            "--n",
            str(self.plan.monitor_n),
            "--duration",
            "60",
        ]
        c0 = self.cpu_snapshot({"api": self.api})
        fin = run_client(args, self.log_path("monitor"), 90)
        c1 = self.cpu_snapshot({"api": self.api})
        res = need(fin, "monitor client")
        if set(res["statuses"]) != {"200"}:
            raise RuntimeError(f"monitor: unexpected statuses {res['statuses']}")
        return Run(
            res["p50_ms"],
            cpu_per_job(c0, c1, res["n"], fin, res.get("cpu_s")),
            {"p99_ms": res["p99_ms"]},
        )

    def durability(self, no_aof: float | None) -> Row:
        row = Row("5", "enqueue with AOF (HTTP 202)", "acceptd", "req/s")
        notes = []
        for policy in ("everysec", "always"):
            if self.budget.left() < 60:
                notes.append(f"{policy}: skipped for time")
                continue
            emb = EmbeddedRedis(self.tmp / f"aof-{policy}", port=free_port(), appendfsync=policy)
            emb.start()
            api: Server | None = None
            try:
                api, port = self.start_api(emb.url, name=f"api-aof-{policy}")
                fin = self.http_load(f"http://127.0.0.1:{port}/v1/echo", self.plan.aof_seconds)
                res = need(fin, "load client")
                with redis.Redis.from_url(emb.url) as r:
                    accepted = int(r.zcard(ECHO + "pending"))
                rate = accepted / res["elapsed"]
                row.runs.append(Run(rate))
                ratio = f" ({rate / no_aof:.0%} of no-AOF)" if no_aof else ""
                notes.append(f"appendfsync {policy}: {rate:,.0f} req/s{ratio}")
            finally:
                if api is not None:
                    api.stop()
                emb.stop()
        row.contender = "acceptd, AOF"
        row.note = (
            "; ".join(notes)
            + f"; one {self.plan.aof_seconds:g} s run each on this disk; median/min/max over both"
        )
        return row

    def webhooks(self) -> list[Row]:
        """bench/webhook_delivery.py, a few runs: its own Redis, dispatcher and receiver."""
        rate = Row("6", "webhook deliveries, backlog, one dispatcher", "acceptd", "deliveries/s")
        live = Row("6", "webhook deliveries while requests finish", "acceptd", "deliveries/s")
        delay = Row("6", "webhook finish → arrival", "acceptd", "ms", higher_is_better=False)
        n = self.plan.webhook_n
        for _ in range(self.plan.webhook_runs):
            if self.budget.left() < 45:
                break
            out = subprocess.run(
                [sys.executable, str(BENCH / "webhook_delivery.py"), "--n", str(n),
                 "--latency-n", "500", "--json"],
                capture_output=True, text=True, timeout=300, cwd=BENCH.parent,
            )  # fmt: skip
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                log(f"webhook bench failed: {out.stderr[-500:]}")
                continue
            res = json.loads(line[7:])
            cpu = {"redis": res["cpu_redis"]}
            rate.runs.append(Run(res["backlog_per_second"], cpu, {"d": res["cpu_dispatcher"]}))
            live.runs.append(Run(res["live_per_second"]))
            delay.runs.append(Run(res["p50_ms"], extra={"p99_ms": res["p99_ms"]}))
        mid = rate.median_run()
        dispatcher_cpu = f"{mid.extra['d']:,.0f}" if mid else "—"
        rate.note = (
            f"`bench/webhook_delivery.py --n {n}`: {n:,} deliveries wait in the outbox, then one "
            f"`acceptd dispatcher` (default concurrency, 256, all for the one endpoint) sends "
            f"them, signed, to a bare HTTP receiver "
            f"on 127.0.0.1; rate between first and last arrival; dispatcher CPU "
            f"{dispatcher_cpu} µs/delivery (R: Redis)"
        )
        live.note = (
            f"the same dispatcher while {n:,} more requests finish as fast as one process can"
        )
        delay.note = "500 requests finishing in batches of 50 every 50 ms; p50 (p99)"
        return [rate, live, delay]

    # peers -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def peer_worker(self, name: str, python: Path) -> Iterator[Server]:
        """The peer's worker process, started for one run and stopped after it."""
        common = ["--url", self.url, "--concurrency", str(CONCURRENCY)]
        worker = Server(
            f"{name}-worker",
            [str(python), str(BENCH / f"peer_{name}.py"), "worker", *common],
            self.tmp,
        )
        try:
            worker.wait_for_output("READY")
            time.sleep(0.5)
            yield worker
        finally:
            worker.stop()

    def peer_run(self, name: str, python: Path, mode: str) -> Run:
        """One run of a peer: ``enqueue`` (no worker), ``drain`` or ``latency``."""
        n = self.plan.latency_n if mode == "latency" else self.plan.n
        args = [
            str(python),
            str(BENCH / f"peer_{name}.py"),
            mode,
            "--n",
            str(n),
            "--url",
            self.url,
            "--concurrency",
            str(CONCURRENCY),
            "--time-limit",
            "100" if mode == "drain" else "60",
        ]
        self.flush()
        with contextlib.ExitStack() as stack:
            servers: dict[str, Any] = {}
            if mode != "enqueue":
                servers["worker"] = stack.enter_context(self.peer_worker(name, python))
            c0 = self.cpu_snapshot(servers)
            fin = run_client(args, self.log_path(f"{name}-{mode}"), 130)
            c1 = self.cpu_snapshot(servers)
        self.flush()
        res = need(fin, f"{name} {mode}")
        cpu = cpu_per_job(c0, c1, res["n"], fin, res["cpu_s"])
        if mode == "enqueue":
            return Run(res["n"] / res["enqueue_elapsed"], cpu)
        if mode == "drain":
            if not res["finished"]:
                raise RuntimeError(f"{name} drain did not finish in time")
            return Run(res["n"] / res["elapsed"], cpu)
        return Run(res["p50_ms"], cpu, {"p99_ms": res["p99_ms"]})

    def peer_rows(self, name: str, version: str) -> dict[str, Row]:
        label = f"{name} {version}"
        how = PEER_NOTES[name]
        p = self.plan
        return {
            "enqueue": Row(
                "1", "enqueue (direct, one Python process)", label, "jobs/s", note=how["enqueue"]
            ),
            "drain": Row(
                "2",
                f"drain N={p.n:,} (first submit → last result)",
                label,
                "jobs/s",
                note=how["drain"],
            ),
            "latency": Row(
                "3",
                f"latency, {p.latency_n} sequential: enqueue → result",
                label,
                "ms",
                note=how["latency"],
            ),
        }


PEER_NOTES = {
    "arq": {
        "enqueue": "`enqueue_job` from 50 coroutines",
        "drain": "1 worker, max_jobs 50, poll_delay 10 ms (default 0.5 s); "
        "done: ZCARD arq:queue = 0",
        "latency": "`job.result(poll_delay=1 ms)` (polls); worker poll 10 ms",
    },
    "saq": {
        "enqueue": "`queue.enqueue` from 50 coroutines (max_concurrent_ops 50)",
        "drain": "1 worker, concurrency 50; done: ZCARD saq:default:incomplete = 0",
        "latency": "pub/sub `queue.listen` on the job key, then `enqueue`, `job.refresh()` "
        "(`queue.apply` polls every 0.5 s)",
    },
    "dramatiq": {
        "enqueue": "`actor.send` from 50 threads (sync redis-py)",
        "drain": "1 worker process, 50 threads, Results middleware; "
        "done: HLEN dramatiq:default.msgs = 0",
        "latency": "Results middleware, `message.get_result(block=True)` (blocking list pop)",
    },
}


def need(fin: Finished, what: str) -> dict[str, Any]:
    if fin.result is None:
        raise RuntimeError(f"{what} failed (rc {fin.returncode}): {fin.output[-1500:]}")
    return fin.result


def cpu_per_job(
    c0: dict[str, float],
    c1: dict[str, float],
    jobs: int,
    client: Finished | None,
    client_section_cpu: float | None = None,
) -> dict[str, float]:
    """µs of CPU per job for each process; the client's from its own count when it gives one."""
    out = {k: (c1[k] - c0[k]) / max(jobs, 1) * 1e6 for k in c0}
    if client is not None:
        cpu = client_section_cpu if client_section_cpu is not None else client.cpu_s
        out["client"] = cpu / max(jobs, 1) * 1e6
    return out


@contextlib.contextmanager
def background_load() -> Iterator[dict[str, float]]:
    """How busy the machine was with other work: load average before and after."""
    info: dict[str, float] = {"load_before": os.getloadavg()[0]}
    yield info
    info["load_after"] = os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small N, one run: to try it out")
    ap.add_argument("--budget", type=float, default=840.0, help="seconds for the whole run")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--out", default=str(BENCH / "results.md"))
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    budget = Budget(args.budget)
    wanted = [p for p in args.peers.split(",") if p in PEERS]

    log("setting up: wrk, peer venvs under bench/.peers/")
    wrk = ensure_wrk()
    peers = install_peers()
    log(f"setup done in {budget.elapsed():.0f} s; wrk: {wrk or 'missing, aiohttp client'}")

    rows: list[Row] = []
    skipped: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="acceptd-bench-") as tmpdir, background_load() as load:
        bench = Bench(plan, budget, Path(tmpdir), wrk)
        server_version = str(
            bench.r.info("server").get("valkey_version")
            or bench.r.info("server").get("redis_version")
        )
        try:
            log("ceiling: Redis EVALSHA")
            evalsha = bench.evalsha_ceiling()
            peer_rows: dict[str, dict[str, Row]] = {}
            ready: list[tuple[str, Path]] = []
            for name in wanted:
                python, version = peers[name]
                if python is None:
                    skipped.append(Row("1-3", "all", name, "", skipped=version))
                    continue
                peer_rows[name] = bench.peer_rows(name, version)
                ready.append((name, python))

            def peer_steps(mode: str) -> list[tuple[Row, Callable[[], Run]]]:
                return [
                    (peer_rows[name][mode], functools.partial(bench.peer_run, name, python, mode))
                    for name, python in ready
                ]

            # Each round runs every contender once (enqueue: each next to an acceptd run), so
            # the machine's drift (±20 % between minutes here) moves all of them alike; the
            # targets compare runs of one round (enqueue: of one pair).
            acc_enq = Row(
                "1",
                "enqueue (HTTP 202, POST /v1/echo respond-async)",
                "acceptd",
                "req/s",
                note=bench.acceptd_enqueue_note(),
            )
            hello = Row(
                "4",
                "aiohttp hello-world POST",
                "aiohttp (no uvloop)",
                "req/s",
                note=f"same load client: {bench.client_name()}; server CPU in the A column",
            )
            hello_server, hello_port = bench.start_hello()
            bench.api, bench.api_port = bench.start_api()
            try:
                alternate(
                    bench.runs_for(
                        2 * plan.wrk_seconds + len(ready) * (plan.wrk_seconds + 10) + 4, 480
                    ),
                    (acc_enq, bench.acceptd_enqueue_run),
                    [
                        (hello, functools.partial(bench.hello_run, hello_server, hello_port)),
                        *peer_steps("enqueue"),
                    ],
                    "enqueue",
                )
            finally:
                hello_server.stop()
            bench.worker = bench.start_worker()
            acc_drain = Row(
                "2",
                f"drain N={plan.n:,} (first submit → last result)",
                "acceptd",
                "jobs/s",
                note=bench.acceptd_drain_note(),
            )
            interleave(
                bench.runs_for(plan.n / 1500 * (1 + len(ready)) + 4 * len(ready) + 5, 380),
                [(acc_drain, bench.acceptd_drain_run), *peer_steps("drain")],
                "drain",
            )
            label = f"latency, {plan.latency_n} sequential: "
            acc_sync = Row(
                "3",
                label + "sync POST (201) round trip",
                "acceptd sync",
                "ms",
                note=bench.acceptd_latency_note("sync"),
            )
            acc_sse = Row(
                "3",
                label + "respond-async + SSE until terminal",
                "acceptd async+SSE",
                "ms",
                note=bench.acceptd_latency_note("sse"),
            )
            interleave(
                bench.runs_for(plan.latency_n * 0.004 * (2 + len(ready)) + 3 * len(ready), 300),
                [
                    (acc_sync, functools.partial(bench.acceptd_latency_run, "sync")),
                    (acc_sse, functools.partial(bench.acceptd_latency_run, "sse")),
                    *peer_steps("latency"),
                ],
                "latency",
            )
            bench.worker.stop()
            bench.worker = None
            log("scale: memory, monitor at depth")
            scale_rows = bench.scale()
            log("durability: AOF everysec / always")
            aof = bench.durability(acc_enq.median)
            log("webhooks: one dispatcher")
            hook_rows = bench.webhooks()
        finally:
            bench.close()

    by_section: dict[str, list[Row]] = {"1": [acc_enq], "2": [acc_drain], "3": [acc_sync, acc_sse]}
    for prow in peer_rows.values():
        for r in prow.values():
            by_section[r.section].append(r)
    for sec in ("1", "2", "3"):
        rows.extend(by_section[sec])
    rows.extend(skipped)
    rows.extend([hello, evalsha])
    rows.extend(scale_rows)
    rows.append(aof)
    rows.extend(hook_rows)

    targets = make_targets(
        acc_enq,
        acc_drain,
        acc_sync,
        hello,
        [r for p in peer_rows.values() for r in p.values()],
        scale_rows,
    )
    targets.append(
        Target(
            "webhook deliveries/s (backlog, one dispatcher) vs 2,000",
            ratio(hook_rows[0].median, 2000.0),
            ">= 1.0",
            f"{fmtn(hook_rows[0].median)} deliveries/s",
        )
    )
    caption = (
        f"acceptd bench — {'quick' if args.quick else 'full'} run, N={plan.n:,}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.python_implementation()} "
        f"{platform.python_version()}, valkey-server {server_version} on loopback (no AOF unless "
        f"noted); {os.cpu_count()} cores ({cpu_model()}); load average {load['load_before']:.1f} "
        f"before, {load['load_after']:.1f} after (other work on this machine shows here); "
        f"runtime {budget.elapsed():.0f} s"
    )
    text = caption + "\n\n" + table(rows, targets) + "\n"
    print(text)
    Path(args.out).write_text(text)
    log(f"written to {args.out}")
    return 0


def interleave(rounds: int, steps: list[tuple[Row, Callable[[], Run]]], what: str) -> None:
    """Run every step once per round; each round starts one step later than the last."""
    for r in range(rounds):
        log(f"{what}: round {r + 1} of {rounds}")
        k = r % len(steps)
        for row, run in steps[k:] + steps[:k]:
            row.runs.append(run())


def alternate(
    rounds: int,
    anchor: tuple[Row, Callable[[], Run]],
    others: list[tuple[Row, Callable[[], Run]]],
    what: str,
) -> None:
    """Each round, an acceptd run right next to each other contender's run.

    Which of the two goes first alternates, and each round starts one contender later. A
    target compares the runs of a pair, seconds apart, rather than runs a round apart: the
    machine's speed drifts within a round too (one hello-world run measured 11,667 req/s
    against 6,458 in the same round).
    """
    ours_row, ours = anchor
    for r in range(rounds):
        log(f"{what}: round {r + 1} of {rounds}")
        k = r % len(others)
        for i, (row, theirs) in enumerate(others[k:] + others[:k]):
            if (r + i) % 2:
                b = theirs()
                a = ours()
            else:
                a = ours()
                b = theirs()
            ours_row.runs.append(a)
            row.runs.append(b)
            if b.value:
                row.pair_ratios.append(a.value / b.value)


def best(rows: list[Row], higher: bool = True) -> Row | None:
    """The peer with the best median."""
    measured = [r for r in rows if r.median is not None and not r.skipped]
    if not measured:
        return None
    return (max if higher else min)(measured, key=lambda r: r.median or 0.0)


def round_ratios(a: Row, b: Row | None) -> list[float]:
    """a / b per pair (``alternate``) or per round (``interleave``: runs of one round are
    index-aligned); empty if not paired."""
    if b is not None and b.pair_ratios:
        return b.pair_ratios
    if b is None or not a.runs or len(a.runs) != len(b.runs):
        return []
    return [x.value / y.value for x, y in zip(a.runs, b.runs, strict=True)]


def paired(a: Row, b: Row | None) -> float | None:
    """a / b as the median of the rounds' ratios (of the medians when not paired)."""
    rounds = round_ratios(a, b)
    if not rounds:
        return ratio(a.median, b.median if b else None)
    return statistics.median(rounds)


def by_round(a: Row, b: Row | None) -> str:
    rounds = round_ratios(a, b)
    per = "per pair" if b is not None and b.pair_ratios else "per round"
    return f"; {per} {', '.join(f'{r:.2f}' for r in rounds)}" if rounds else ""


def make_targets(
    enq: Row, drain: Row, sync: Row, hello: Row, peers: list[Row], scale: list[Row]
) -> list[Target]:
    def section(sec: str) -> list[Row]:
        return [r for r in peers if r.section == sec]

    def who(row: Row | None) -> str:
        return row.contender if row else "none"

    out = []
    b = best(section("2"))
    out.append(
        Target(
            "drain vs best peer",
            paired(drain, b),
            ">= 2.0",
            f"acceptd {fmtn(drain.median)} vs {who(b)} {fmtn(b.median if b else None)} jobs/s"
            + by_round(drain, b),
        )
    )
    b = best(section("1"))
    out.append(
        Target(
            "HTTP enqueue vs best peer's direct enqueue",
            paired(enq, b),
            ">= 1.0",
            f"acceptd {fmtn(enq.median)} req/s vs {who(b)} {fmtn(b.median if b else None)} jobs/s"
            + by_round(enq, b),
        )
    )
    out.append(
        Target(
            "HTTP enqueue vs aiohttp hello-world",
            paired(enq, hello),
            ">= 0.6",
            f"{fmtn(enq.median)} vs {fmtn(hello.median)} req/s" + by_round(enq, hello),
        )
    )
    b = best(section("3"), higher=False)
    out.append(
        Target(
            "sync p50 vs best peer p50",
            paired(sync, b),
            "<= 1.0",
            f"acceptd {fmtn(sync.median, 2)} ms vs {who(b)} {fmtn(b.median if b else None, 2)} ms"
            + by_round(sync, b),
        )
    )
    mem, empty, big = scale
    out.append(
        Target(
            "Redis bytes per queued request vs 600",
            ratio(mem.median, 600.0),
            "<= 1.0",
            f"{fmtn(mem.median)} B",
        )
    )
    out.append(
        Target(
            "monitor p50 at depth vs empty",
            ratio(big.median, empty.median),
            "<= 2.0",
            f"{fmtn(big.median, 2)} ms vs {fmtn(empty.median, 2)} ms",
        )
    )
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmtn(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
