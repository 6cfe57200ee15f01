"""Shared fixtures: a private Redis started by the suite itself, on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from service.runtime.embedded import EmbeddedRedis, free_port
from service.runtime.redis import Client, connect
from tests.support.cluster import LocalCluster, is_cluster_url
from tests.support.processes import Processes


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One private server for the whole session (same discovery as the embedded default)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-master cluster for the whole session, formed only if a test asks for it."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_backend() -> str:
    """Which server ``redis_url`` names: ``node``, or ``cluster`` where a test parametrizes it
    (``tests.support.cluster.both``)."""
    return "node"


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_backend: str) -> str:
    """The server's URL, with an empty keyspace for this test.

    On the cluster: the masters' URLs, comma-separated (see ``tests.support.cluster``).
    """
    if redis_backend == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return cluster.url
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    with redis.Redis.from_url(server.url) as r:
        r.flushall()
    return server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Client]:
    """An asyncio client to the clean server (a cluster client on the cluster)."""
    client = connect(redis_url, cluster=is_cluster_url(redis_url))
    yield client
    await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A private folder for an embedded server's data."""
    return tmp_path / "data"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Role processes started by the test; all killed (with their children) at teardown."""
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.close()
