"""Helpers for the fault tests: a Redis that can be stopped and started again on the same port
and data, role environments, bounded HTTP calls and an SSE client that reconnects like a browser.

Every wait is bounded polling of real state; nothing sleeps as a means of synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from service.runtime.embedded import EmbeddedRedis
from tests.support.processes import ROOT, RoleProcess, wait_until
from tests.support.sse_client import SSEvent, read_events

TERMINAL = ("succeeded", "failed", "canceled")
PROBLEM_JSON = "application/problem+json"
# Every HTTP call of a fault test is bounded: a hang is a failure, not a slow test.
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)


class RestartableRedis:
    """An embedded server on a fixed port whose process can be stopped and started again.

    AOF with ``appendfsync always`` and the same data folder on every start, so a restart
    keeps every acknowledged write.
    """

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self._server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        """The URL every role is given."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._server is not None and self._server.running

    async def start(self) -> None:
        """Start a fresh server process on the same port and data (off the event loop)."""
        server = EmbeddedRedis(self.data_dir, port=self.port, appendfsync="always", appendonly=True)
        await asyncio.to_thread(server.start)
        self._server = server

    async def stop(self) -> None:
        """SIGTERM the server (it flushes its AOF) and wait for it to exit."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    def close(self) -> None:
        """Teardown: stop whatever runs."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()


def role_env(redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of every role in the fault tests (short leases, loopback webhooks)."""
    env = {
        # The console script does not put the working folder on sys.path: the test handlers
        # (tests.support.fault_handlers) are importable through this.
        "PYTHONPATH": str(ROOT),
        "ACCEPTD_REDIS__URL": redis_url,
        "ACCEPTD_SERVER__PORT": str(port),
        "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "2",
        "ACCEPTD_WORKER__LEASE_SECONDS": "2",
        "ACCEPTD_WORKER__IDLE_CHECK_SECONDS": "0.5",
        "ACCEPTD_WEBHOOKS__ALLOW_NETWORKS": "127.0.0.0/8",
        # YAML flow syntax: the README's comma-separated form fails for numbers (see
        # test_faults.py::test_comma_separated_numeric_list_from_env).
        "ACCEPTD_WEBHOOKS__RETRY_SCHEDULE": "[0.2, 0.5, 1]",
        "ACCEPTD_WEBHOOKS__JITTER": "0",
        "ACCEPTD_WEBHOOKS__TIMEOUT_SECONDS": "2",
    }
    env.update(extra)
    return env


# The progress-free test operation (tests/fault_handlers.py), for work in flight across an
# outage that must not depend on Redis while it runs.
NAP_ENV = {"ACCEPTD_OPERATIONS__NAP__HANDLER": "tests.support.fault_handlers:nap"}


@dataclass
class Reply:
    """One HTTP answer, read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One bounded HTTP call; the whole answer is read."""
    async with session.request(
        method, url, json=body, headers=headers, timeout=HTTP_TIMEOUT
    ) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def assert_unavailable(reply: Reply) -> None:
    """A 503 problem+json with a usable ``Retry-After``."""
    assert reply.status == 503, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"].startswith(PROBLEM_JSON), reply.headers
    assert int(reply.headers["Retry-After"]) >= 1
    problem = reply.json()
    assert problem["status"] == 503 and problem["title"], problem


async def submit_async(session: aiohttp.ClientSession, base: str, op: str, body: Any) -> str:
    """Submit with ``Prefer: respond-async``; the request id (asserts 202)."""
    reply = await call(
        session, "POST", f"{base}/v1/{op}", body=body, headers={"Prefer": "respond-async"}
    )
    assert reply.status == 202, (reply.status, reply.body[:300])
    return str(reply.json()["id"])


async def status_of(session: aiohttp.ClientSession, base: str, rid: str) -> dict[str, Any] | None:
    """The status monitor, or None while the API cannot answer it (e.g. 503)."""
    try:
        reply = await call(session, "GET", f"{base}/v1/queue/requests/{rid}")
    except (aiohttp.ClientError, TimeoutError):
        return None
    if reply.status != 200:
        assert reply.status == 503, (reply.status, reply.body[:300])  # never 500
        return None
    body: dict[str, Any] = reply.json()
    return body


async def wait_statuses(
    session: aiohttp.ClientSession,
    base: str,
    ids: list[str],
    statuses: tuple[str, ...],
    timeout: float,
) -> dict[str, dict[str, Any]]:
    """Poll every request until each one's status is in ``statuses``; their monitors."""
    done: dict[str, dict[str, Any]] = {}

    async def check() -> bool:
        for rid in ids:
            if rid in done:
                continue
            body = await status_of(session, base, rid)
            if body is not None and body["status"] in statuses:
                done[rid] = body
        return len(done) == len(ids)

    try:
        await wait_until(check, timeout, interval=0.05, message=f"{len(ids)} requests")
    except AssertionError:
        missing = [rid for rid in ids if rid not in done]
        raise AssertionError(
            f"{len(missing)} of {len(ids)} requests not {statuses} within {timeout}s: "
            f"{[await status_of(session, base, rid) for rid in missing[:3]]}"
        ) from None
    return done


async def wait_log(proc: RoleProcess, text: str, timeout: float) -> None:
    """Wait until the process's output contains ``text``."""

    async def logged() -> bool:
        return text in proc.output()

    await wait_until(logged, timeout, interval=0.05, message=f"{text!r} in {proc.role}'s log")


@dataclass
class Followed:
    """What a reconnecting SSE client saw."""

    events: list[SSEvent] = field(default_factory=list)
    connections: int = 0
    refused: list[int] = field(default_factory=list)
    ended_with_204: bool = False

    def statuses(self) -> list[str]:
        """The ``status`` of every ``status`` event, in order."""
        return [str(e.json()["status"]) for e in self.events if e.event == "status"]


async def follow_events(
    session: aiohttp.ClientSession,
    url: str,
    timeout: float,
    *,
    reconnect_delay: float = 0.2,
    opened: asyncio.Event | None = None,
) -> Followed:
    """Read a request's event stream like a browser's ``EventSource``.

    On a stream end, a network error or an unsuccessful answer, reconnect after
    ``reconnect_delay`` with ``Last-Event-ID`` set to the last id seen; stop after the terminal
    ``status`` event or a 204. Fails after ``timeout`` seconds overall.
    """
    seen = Followed()
    last_id: str | None = None
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout):
            while True:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                try:
                    async with session.get(
                        url,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(
                            total=None, connect=3, sock_read=max(deadline - time.monotonic(), 0.1)
                        ),
                    ) as resp:
                        seen.connections += 1
                        if resp.status == 204:
                            seen.ended_with_204 = True
                            return seen
                        if resp.status != 200:
                            seen.refused.append(resp.status)
                        else:
                            if opened is not None:
                                opened.set()
                            async for event in read_events(resp):
                                if event.id is not None:
                                    last_id = event.id
                                if event.event in ("status", "progress", "position"):
                                    seen.events.append(event)
                                if event.event == "status" and event.json()["status"] in TERMINAL:
                                    return seen
                except (aiohttp.ClientError, ConnectionError):
                    pass
                await asyncio.sleep(reconnect_delay)  # the browser's reconnection delay
    except TimeoutError:
        raise AssertionError(
            f"no terminal event within {timeout}s; saw {seen.statuses()} over "
            f"{seen.connections} connection(s), refused {seen.refused}"
        ) from None


async def close_quietly(session: aiohttp.ClientSession) -> None:
    """Close a client session, ignoring errors from connections the server dropped."""
    with contextlib.suppress(Exception):
        await session.close()
