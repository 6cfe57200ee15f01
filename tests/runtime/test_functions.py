"""Scripts as Redis Functions (``FCALL``), and by SHA on a server without Functions."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from service.queue import scripts as queue_scripts
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from service.runtime.embedded import find_server_binary, free_port
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


def pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


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
