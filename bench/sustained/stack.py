"""The service stack a soak runs on, all on 127.0.0.1: a private valkey-server with AOF
(appendfsync everysec, as the embedded server runs by default), one ``acceptd api``, the
worker(s), one ``acceptd dispatcher`` and the webhook receiver."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import psutil
import redis.asyncio as aredis
from procs import Server

from service.queue import history
from service.queue import keys as qkeys
from service.runtime.embedded import EmbeddedRedis, free_port
from sustained import receiver
from webhooks import keys as wkeys
from webhooks.store import partition_count

ROOT = Path(__file__).resolve().parents[2]
OPS = ("echo", "sleep")  # what the soak submits: the load's echo, the stream lanes' sleep
CONCURRENCY = 50


class Stack:
    """The processes, the Redis client the soak reads with, and the receiver's address."""

    # Stacks not yet stopped: the driver stops them on its way out, whatever ends it.
    live: ClassVar[list[Stack]] = []

    def __init__(self, tmp: Path, workers: int, keep_seconds: int) -> None:
        self.tmp = tmp
        self.embedded = EmbeddedRedis(tmp / "redis", port=free_port())  # AOF everysec
        self.servers: list[Server] = []
        Stack.live.append(self)
        self.embedded.start()
        assert self.embedded._proc is not None
        self.valkey = psutil.Process(self.embedded._proc.pid)
        # Generous: on a loaded machine a nice'd server can pause for seconds (an AOF rewrite).
        self.r = aredis.Redis.from_url(self.embedded.url, socket_timeout=60)
        self.hook_port = free_port()
        self.receiver = mp.get_context("spawn").Process(
            target=receiver.serve, args=(self.hook_port,), daemon=True
        )
        self.receiver.start()
        self.api_port = free_port()
        env = self._env(keep_seconds)
        try:
            self.api = self._acceptd("api", "api", env)
            self.workers = [self._acceptd("worker", f"worker{i + 1}", env) for i in range(workers)]
            self.dispatcher = self._acceptd("dispatcher", "dispatcher", env)
            self.api.wait_for_http(f"{self.base}/readyz")
            for s in [*self.workers, self.dispatcher]:
                s.wait_for_output("acceptd: running")
            self._wait_for_receiver(30.0)
        except BaseException:
            self.stop_processes()
            raise

    def _wait_for_receiver(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.receiver.is_alive():
            try:
                socket.create_connection(("127.0.0.1", self.hook_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the webhook receiver did not start")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _env(self, keep_seconds: int) -> dict[str, str]:
        # Results and settled deliveries are kept `keep_seconds` (not the shipped hour and
        # week): the steady state then comes within the warm-up, and whatever still grows is
        # growth, not retention.
        env = {
            "ACCEPTD_REDIS__URL": self.embedded.url,
            "ACCEPTD_SERVER__PORT": str(self.api_port),
            "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
            "ACCEPTD_WORKER__CONCURRENCY": str(CONCURRENCY),
            "ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "127.0.0.0/8",
            "ACCEPTD_WEBHOOKS__PER_ENDPOINT_CONCURRENCY": "256",
            "ACCEPTD_WEBHOOKS__DELIVERY_RETENTION_SECONDS": str(keep_seconds),
            "ACCEPTD_SERVER__STREAM_EVENTS_SECONDS": str(keep_seconds),
        }
        for op in OPS:
            env[f"ACCEPTD_OPERATIONS__{op.upper()}__RESULT_TTL"] = str(keep_seconds)
            env[f"ACCEPTD_OPERATIONS__{op.upper()}__MAX_QUEUE_DEPTH"] = "10000000"
        return env

    def _acceptd(self, role: str, name: str, env: dict[str, str]) -> Server:
        args = [str(Path(sys.executable).parent / "acceptd"), role]
        args += ["--config", str(ROOT / "config.yaml"), "--log-level", "WARNING"]
        server = Server(name, args, self.tmp, env=env, cwd=ROOT)
        self.servers.append(server)
        return server

    async def register_endpoint(self, session: aiohttp.ClientSession) -> None:
        async with session.post(
            f"{self.base}/v1/webhooks/endpoints",
            json={"url": f"http://127.0.0.1:{self.hook_port}/hook", "description": "soak"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"endpoint not registered: {resp.status} {await resp.text()}")

    async def deliveries(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(f"http://127.0.0.1:{self.hook_port}/stats") as resp:
            data: dict[str, int] = await resp.json()
            return data

    def processes(self) -> dict[str, psutil.Process]:
        out = {"api": self.api.proc}
        out |= {s.name: s.proc for s in self.workers}
        out |= {"dispatcher": self.dispatcher.proc, "valkey": self.valkey}
        out["driver"] = psutil.Process(os.getpid())
        if self.receiver.pid is not None:
            out["receiver"] = psutil.Process(self.receiver.pid)
        return out

    async def totals(self, since: float) -> dict[str, int]:
        """Requests submitted, succeeded, failed and canceled since ``since`` (unix s), from
        the console's per-minute history rings (written by the scripts themselves)."""
        window = max(history.SECONDS_KEPT + 1, int(time.time() - since) + 180)
        out = dict.fromkeys(("submitted", "succeeded", "failed", "canceled"), 0)
        for s in await history.read(self.r, OPS, window, int(time.time() * 1000)):
            for name in out:
                out[name] += sum(getattr(s, name))
        return out

    async def left(self) -> dict[str, int]:
        """What is still queued or in flight, per kind (all zero once drained)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for op in OPS:
                pipe.zcard(qkeys.pending(op))
                pipe.zcard(qkeys.running(op))
                pipe.zcard(qkeys.delayed(op))
                pipe.llen(qkeys.hand(op))
                pipe.xlen(qkeys.outbox(op))
            parts = wkeys.partitions(partition_count(self.r)).parts
            for part in parts:
                pipe.zcard(part.due)
                pipe.zcard(part.inflight)
            got = [int(x) for x in await pipe.execute()]
        names = ("pending", "running", "delayed", "hand", "outbox")
        out = {n: sum(got[i] for i in range(k, len(OPS) * 5, 5)) for k, n in enumerate(names)}
        hooks = got[len(OPS) * 5 :]
        out["webhooks due"], out["webhooks in flight"] = sum(hooks[0::2]), sum(hooks[1::2])
        return out

    async def memory(self) -> tuple[int, int]:
        """Redis ``used_memory`` and key count."""
        info: dict[str, Any] = await self.r.info("memory")
        return int(info["used_memory"]), int(await self.r.dbsize())

    async def close(self) -> None:
        try:
            await self.r.aclose()
        finally:
            self.stop_processes()

    def stop_processes(self) -> None:
        """Stop every process of the stack (idempotent)."""
        for s in self.servers:
            s.stop()
        if hasattr(self, "receiver") and self.receiver.pid is not None:
            self.receiver.terminate()
            self.receiver.join(5)
        self.embedded.stop()
        if self in Stack.live:
            Stack.live.remove(self)


def rss(proc: psutil.Process, children: bool = True) -> int:
    """Resident memory of a process and, with ``children``, of its children (a worker's
    process pool); 0 once gone."""
    try:
        kids = proc.children(recursive=True) if children else []
        return int(proc.memory_info().rss + sum(c.memory_info().rss for c in kids))
    except psutil.Error:
        return 0
