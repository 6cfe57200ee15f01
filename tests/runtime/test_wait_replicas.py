"""``redis.wait_replicas``: a submit is acknowledged only once that many replicas hold it.

The batcher ends a pipeline carrying submits with ``WAIT n timeout`` on the same connection
(on a cluster, the node owning the operation's slot). With a replica attached the submit
succeeds and the replica already has the request; with none, the submit is answered 503 +
``Retry-After`` after the timeout and no id is handed out.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.queue import keys
from service.runtime.config import ConfigError, load_settings, settings_from_dict
from service.runtime.embedded import EmbeddedRedis, find_server_binary, free_port
from service.state import Roles
from tests.support.cluster import both, is_cluster_url, redis_section

ROOT = Path(__file__).resolve().parents[2]
Client = TestClient[web.Request, web.Application]
ASYNC = {"Prefer": "respond-async"}
TIMEOUT = 0.3


def settings(url: str, replicas: int) -> Any:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"].update(redis_section(url), wait_replicas=replicas, wait_timeout_seconds=TIMEOUT)
    return settings_from_dict(raw)


def waits_issued(url: str) -> int:
    """``WAIT`` calls the server (every master of a cluster) has run."""
    total = 0
    for node in url.split(","):
        with redis.Redis.from_url(node) as r:
            stats = r.info("commandstats")
            total += int(stats.get("cmdstat_wait", {}).get("calls", 0))
    return total


@pytest.fixture
def app_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> Callable[[str, int], Awaitable[Client]]:
    async def make(url: str, replicas: int) -> Client:
        app = create_app(settings(url, replicas), Roles(api=True, worker=False))
        return await aiohttp_client(app)

    return make


def test_settings_are_checked() -> None:
    assert load_settings(None, {}).redis.wait_replicas == 0
    with pytest.raises(ConfigError, match=r"redis\.wait_replicas"):
        load_settings(None, {"ACCEPTD_REDIS__WAIT_REPLICAS": "-1"})
    with pytest.raises(ConfigError, match=r"redis\.wait_timeout_seconds"):
        load_settings(None, {"ACCEPTD_REDIS__WAIT_TIMEOUT_SECONDS": "0"})


@both
async def test_without_enough_replicas_a_submit_is_503_after_the_timeout(
    app_client: Callable[[str, int], Awaitable[Client]], redis_url: str
) -> None:
    # No server of the suite has a replica: WAIT 1 answers 0 after the timeout.
    client = await app_client(redis_url, 1)
    before = waits_issued(redis_url)
    started = time.monotonic()
    resp = await client.post("/v1/echo", json={"a": 1}, headers=ASYNC)
    took = time.monotonic() - started
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert int(resp.headers["Retry-After"]) >= 1
    assert "replica" in body["detail"] and "id" not in body
    assert took >= TIMEOUT  # it waited for the replicas, on the server
    assert waits_issued(redis_url) > before
    # Reads are not held up: the status routes answer at once.
    assert (await client.get("/v1/queue")).status == 200


async def test_a_bulk_submit_without_enough_replicas_is_503_as_a_whole(
    app_client: Callable[[str, int], Awaitable[Client]], redis_url: str
) -> None:
    # A batch is one submit script run: all its items wait together, and none is acknowledged.
    client = await app_client(redis_url, 1)
    batch = {"requests": [{"input": {"i": i}} for i in range(3)]}
    resp = await client.post("/v1/echo/batch", json=batch)
    body = await resp.json()
    assert resp.status == 503, body
    assert int(resp.headers["Retry-After"]) >= 1 and "items" not in body


@both
async def test_wait_replicas_0_sends_no_wait(
    app_client: Callable[[str, int], Awaitable[Client]], redis_url: str
) -> None:
    client = await app_client(redis_url, 0)
    before = waits_issued(redis_url)
    resp = await client.post("/v1/echo", json={"a": 1}, headers=ASYNC)
    assert resp.status == 202
    assert waits_issued(redis_url) == before


@pytest.fixture
def primary_with_replica(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A private server and one replica of it (its URL, a client of the replica)."""
    primary = EmbeddedRedis(tmp_path / "primary", port=free_port(), appendonly=False)
    primary.start()
    port = free_port()
    (tmp_path / "replica").mkdir()
    args = [
        find_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(tmp_path / "replica"),
        "--save", "",
        "--appendonly", "no",
        "--replicaof", "127.0.0.1", str(primary.port),
    ]  # fmt: skip
    replica = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, host="127.0.0.1", socket_timeout=5)
    try:
        deadline = time.monotonic() + 15
        while True:  # polls the replica's own state, with a deadline
            try:
                if client.info("replication").get("master_link_status") == "up":
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        yield primary.url, client
    finally:
        client.close()
        replica.kill()
        replica.wait()
        primary.stop()


async def test_with_a_replica_the_submit_is_on_it_when_acknowledged(
    app_client: Callable[[str, int], Awaitable[Client]],
    primary_with_replica: tuple[str, redis.Redis],
) -> None:
    url, replica = primary_with_replica
    assert not is_cluster_url(url)
    client = await app_client(url, 1)
    for _ in range(3):
        resp = await client.post("/v1/echo", json={"a": 1}, headers=ASYNC)
        body = await resp.json()
        assert resp.status == 202, body
        # WAIT returned 1: the replica had the record before the 202 was sent.
        assert replica.exists(keys.record("echo", body["id"])) == 1
    assert waits_issued(url) >= 1
