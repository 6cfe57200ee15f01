"""What every scenario shares: one private Redis, the acceptd processes and the load client."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import redis
from procs import Finished, Server, run_client

from scenarios.plan import Budget, Plan
from service.runtime.embedded import EmbeddedRedis, free_port

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
CONCURRENCY = 50  # worker concurrency, and the peers' producers'
# The HTTP load client's connections (acceptd and the hello-world alike): enough to keep the
# server busy. At 50 the API waited on Redis about 9 % of the time (91 % busy); at 100 it is
# about 98 % busy, while hello-world (always 100 % busy) measured the same at both.
HTTP_CONNECTIONS = 100
ECHO = "acceptd:{echo}:"


def find_wrk() -> str | None:
    """``wrk`` if installed (``make peers`` installs it from Debian's packages when root)."""
    return shutil.which("wrk")


class Bench:
    """The run's environment: its Redis, the API and worker it started, its load client."""

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
        # N of the drains after the headline (cluster, bulk): the plan's, or fewer on a slow
        # machine (the headline sets it: ``drain_seconds`` at acceptd's wrk drain rate).
        self.n = plan.n

    def close(self) -> None:
        for s in (self.worker, self.api):
            if s is not None:
                s.stop()
        self.r.close()
        self.embedded.stop()

    def server_version(self) -> str:
        info = self.r.info("server")
        return str(info.get("valkey_version") or info.get("redis_version"))

    def log_path(self, name: str) -> Path:
        self.seq += 1
        return self.tmp / f"{self.seq:03d}-{name}.log"

    def flush(self) -> None:
        self.r.flushall()

    def cpu_snapshot(self, servers: dict[str, Any]) -> dict[str, float]:
        snap = {name: s.cpu() for name, s in servers.items()}
        snap["redis"] = float(sum(self.redis_proc.cpu_times()[:2]))
        return snap

    def runs_for(self, estimate: float, reserve: float) -> int:
        """How many runs fit: the plan's, fewer when the budget is short."""
        spare = self.budget.left() - reserve
        return max(1, min(self.plan.runs, int(spare // max(estimate, 0.1))))

    # acceptd's processes -----------------------------------------------------------------

    def acceptd_env(self, redis_url: str, port: int) -> dict[str, str]:
        return {
            "ACCEPTD_REDIS__URL": redis_url,
            "ACCEPTD_SERVER__PORT": str(port),
            "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
            "ACCEPTD_OPERATIONS__ECHO__MAX_QUEUE_DEPTH": "10000000",
            "ACCEPTD_WORKER__CONCURRENCY": str(CONCURRENCY),
        }

    def acceptd(self, role: str, name: str, redis_url: str, port: int) -> Server:
        """An ``acceptd <role>`` process on ``redis_url`` (not yet ready)."""
        args = [str(Path(sys.executable).parent / "acceptd"), role]
        args += ["--config", str(ROOT / "config.yaml"), "--log-level", "WARNING"]
        env = self.acceptd_env(redis_url, port)
        return Server(name, args, self.tmp, env=env, cwd=ROOT)

    def start_api(self, redis_url: str | None = None, name: str = "api") -> tuple[Server, int]:
        port = free_port()
        api = self.acceptd("api", name, redis_url or self.url, port)
        api.wait_for_http(f"http://127.0.0.1:{port}/readyz")
        return api, port

    def start_worker(self) -> Server:
        worker = self.acceptd("worker", "worker", self.url, 0)
        worker.wait_for_output("acceptd: running")
        time.sleep(0.3)
        return worker

    # the HTTP load client ----------------------------------------------------------------

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

    def sequential(
        self,
        mode: str,
        extra: list[str],
        servers: dict[str, Any],
        what: str,
        log_name: str,
        seconds: float = 60.0,
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """``http_client.py <mode>`` against the API: sequential requests on one connection,
        for at most ``seconds``.

        Its result and the CPU µs per request of each process (the client's as it counted it).
        """
        args = [sys.executable, str(BENCH / "http_client.py"), mode]
        args += ["--url", f"http://127.0.0.1:{self.api_port}", *extra, "--duration", f"{seconds:g}"]
        c0 = self.cpu_snapshot(servers)
        fin = run_client(args, self.log_path(log_name), seconds + 30)
        c1 = self.cpu_snapshot(servers)
        res = need(fin, what)
        return res, cpu_per_job(c0, c1, res["n"], fin, res.get("cpu_s"))


def need(fin: Finished, what: str) -> dict[str, Any]:
    """The client's result, or an error with the end of its output."""
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
