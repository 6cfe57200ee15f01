"""Scripts as Redis Functions (``FCALL``), and by SHA on a server without Functions."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio import RedisCluster

from service.queue import scripts as queue_scripts
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from service.runtime.cluster import sharded
from service.runtime.embedded import find_server_binary, free_port
from service.runtime.libraries import drop_other_releases
from service.runtime.redis import Client, connect
from tests.support.cluster import both, is_cluster_url
from webhooks import scripts as webhook_scripts

LIMITS = Limits(attempts=1, timeout=10, result_ttl=60, max_queue_depth=100, retry_backoff=1.0)
EVERY = [*queue_scripts.ALL.values(), *webhook_scripts.ALL.values()]


async def test_every_script_loads_as_a_library_of_one_function_named_after_its_text(
    redis_client: aredis.Redis,
) -> None:
    await redis_client.function_flush()
    for lua in EVERY:
        assert lua.library is not None and lua.function is not None
        assert await redis_client.function_load(lua.library) == lua.function.encode()
    listed: Any = await redis_client.function_list()
    libraries = [pairs(lib) for lib in listed]  # RESP2: flat name, value lists
    functions = {
        lib[b"library_name"]: [pairs(f)[b"name"] for f in lib[b"functions"]] for lib in libraries
    }
    names = [lua.function.encode() for lua in EVERY if lua.function]
    assert functions == {name: [name] for name in names}


def pairs(entry: Any) -> dict[Any, Any]:
    # A map, or its flat list (RESP2 without redis-py's reply callback).
    return entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=True))


async def test_a_library_is_loaded_on_first_use_then_only_called(
    redis_client: aredis.Redis,
) -> None:
    await redis_client.function_flush()
    queue = Queue(redis_client)
    await redis_client.config_resetstat()
    for _ in range(3):
        rid = new_request_id("echo", queue.now_ms())
        created = await queue.submit(NewRequest("echo", rid, "ann", "{}", LIMITS))
        assert created.outcome == "created"
    stats: Any = await redis_client.info("commandstats")
    assert stats["cmdstat_function|load"]["calls"] == 1
    # The first call was refused (not loaded yet), then sent again after the load.
    assert stats["cmdstat_fcall"]["calls"] == 4
    assert "cmdstat_evalsha" not in stats


def stub(name: str) -> str:
    return f"#!lua name={name}\nredis.register_function('{name}', function() return 1 end)"


async def on_every_master(redis: Client, *command: Any) -> list[Any]:
    """``command``'s reply from the server, or from each master of a cluster."""
    nodes: list[Any] = [None]
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        nodes = redis.get_primaries()
    replies = []
    for node in nodes:
        at: dict[str, Any] = {"target_nodes": node} if node is not None else {}
        replies.append(await redis.execute_command(*command, **at))
    return replies


async def library_names(redis: Client) -> set[str]:
    """Every library on the server (each master of a cluster: the union)."""
    listed = await on_every_master(redis, "FUNCTION", "LIST")
    return {pairs(lib)[b"library_name"].decode() for libs in listed for lib in libs}


@both
async def test_a_start_deletes_its_packages_libraries_of_other_releases(
    redis_client: Client,
) -> None:
    cluster = isinstance(redis_client, RedisCluster)
    masters = 3 if cluster else 1
    await on_every_master(redis_client, "FUNCTION", "FLUSH")
    old_queue = "acceptd_queue_submit_0123456789abcdef"
    old_webhooks = "acceptd_webhooks_claim_0123456789abcdef"
    foreign = "someone_elses"
    for name in (old_queue, old_webhooks, foreign):
        await on_every_master(redis_client, "FUNCTION", "LOAD", stub(name))
    queue = Queue(redis_client)
    await submit_one(queue)  # loads this release's submit on its master
    mine = (queue_scripts.SUBMIT.edited(sharded) if cluster else queue_scripts.SUBMIT).function
    assert await library_names(redis_client) == {old_queue, old_webhooks, foreign, mine}
    assert await queue.drop_other_releases() == [old_queue] * masters
    assert await library_names(redis_client) == {old_webhooks, foreign, mine}
    dropped = await drop_other_releases(redis_client, webhook_scripts.ALL.values(), "webhooks")
    assert dropped == [old_webhooks] * masters
    assert await library_names(redis_client) == {foreign, mine}
    await submit_one(queue)  # this release's library stayed: called, not loaded again


async def submit_one(queue: Queue) -> None:
    rid = new_request_id("echo", queue.now_ms())
    assert (await queue.submit(NewRequest("echo", rid, "ann", "{}", LIMITS))).outcome == "created"


@pytest.fixture
def without_functions(tmp_path: Path) -> Iterator[str]:
    """A private server of the same binary with ``FCALL`` and ``FUNCTION`` disabled, as a
    Redis before 7.0 has neither: its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--rename-command", "FCALL", "",
         "--rename-command", "FUNCTION", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url) as r:
                    r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # polling the server's start-up, not a synchronisation
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def old_server_client(without_functions: str) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(without_functions)
    yield client
    await client.aclose()


async def test_a_server_without_functions_runs_every_step_by_sha(
    old_server_client: aredis.Redis,
) -> None:
    queue = Queue(old_server_client)
    rids = [new_request_id("echo", queue.now_ms()) for _ in range(3)]
    for rid in rids:
        res = await queue.submit(NewRequest("echo", rid, "ann", '{"n": 1}', LIMITS))
        assert res.outcome == "created"
    assert queue.batcher.functions is False
    jobs, _ = await queue.claim("echo", "w1", "t1", 3, lease=30, worker_ttl=10)
    assert sorted(j.request_id for j in jobs) == sorted(rids)
    for job in jobs:
        assert await queue.finish(job, "succeeded", '"done"') == "succeeded"
    snap = await queue.read("echo", rids[0], with_result=True)
    assert snap is not None and snap.record["status"] == "succeeded"
    assert snap.result == '"done"'
    stats: Any = await old_server_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] >= 5


async def test_a_worker_and_a_dispatcher_delete_other_releases_libraries_as_they_start(
    redis_url: str, redis_client: Client
) -> None:
    from service.http.monitor import render
    from service.runtime.tasks import stop
    from tests.webhooks.test_dispatch import OPS, settings
    from tests.worker.test_hand_offs import make_worker
    from webhooks import Dispatcher

    old = {"acceptd_queue_finish_0123456789abcdef", "acceptd_webhooks_lease_0123456789abcdef"}
    for name in old:
        await on_every_master(redis_client, "FUNCTION", "LOAD", stub(name))
    queue = Queue(redis_client)
    worker = make_worker(redis_url, queue)
    dispatcher = Dispatcher(redis_client, settings(), OPS, render)
    running = [asyncio.create_task(worker.run()), asyncio.create_task(dispatcher.run())]
    try:
        async with asyncio.timeout(10):
            while await library_names(redis_client) & old:
                await asyncio.sleep(0.01)  # polling for the start-up's deletions
    finally:
        await worker.shutdown(1)
        for task in running:
            await stop(task)


@both
async def test_a_user_who_may_not_load_functions_runs_the_scripts_by_sha(
    redis_client: Client, redis_url: str
) -> None:
    # As on a managed service that keeps FUNCTION LOAD to itself: the batcher falls back to
    # EVALSHA for good, and the calls that found their function missing still succeed.
    await on_every_master(redis_client, "FUNCTION", "FLUSH")
    user = ("nofunctions", "on", ">pw", "~*", "&*", "+@all", "-function|load")
    await on_every_master(redis_client, "ACL", "SETUSER", *user)
    url = ",".join(u.replace("redis://", "redis://nofunctions:pw@") for u in redis_url.split(","))
    client = connect(url, cluster=is_cluster_url(redis_url))
    try:
        queue = Queue(client)
        await submit_one(queue)
        assert queue.batcher.functions is False
        await submit_one(queue)
        jobs, _ = await queue.claim("echo", "w1", "t1", 2, lease=30, worker_ttl=10)
        assert [await queue.finish(j, "succeeded", "1") for j in jobs] == ["succeeded"] * 2
        assert await library_names(redis_client) == set()
    finally:
        await client.aclose()
        await on_every_master(redis_client, "ACL", "DELUSER", "nofunctions")
