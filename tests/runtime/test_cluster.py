"""``redis.cluster: true`` below the HTTP layer: settings, the scripts' sharded pub/sub variant,
and the per-node batcher's handling of a stale slot map, lost scripts and a dead node."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster

from service.queue import keys
from service.queue import scripts as queue_scripts
from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from service.runtime.cluster import ClusterBatcher, sharded, subscribe
from service.runtime.config import ConfigError, load_settings
from service.runtime.redis import connect
from tests.support.cluster import LocalCluster, cmd
from webhooks import scripts as webhook_scripts

LIMITS = Limits(attempts=1, timeout=5, result_ttl=60, max_queue_depth=1000, retry_backoff=1)


@pytest.fixture
async def cluster_client(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    redis_cluster.flush()
    client = connect(redis_cluster.url, cluster=True)
    assert isinstance(client, RedisCluster)
    yield client
    await client.aclose()


def test_cluster_settings_are_checked(tmp_path: Path) -> None:
    s = load_settings(
        None,
        {"ACCEPTD_REDIS__URL": "redis://a:1,redis://b:2", "ACCEPTD_REDIS__CLUSTER": "true"},
    )
    assert s.redis.cluster is True
    with pytest.raises(ConfigError, match=r"redis\.cluster"):
        load_settings(None, {"ACCEPTD_REDIS__CLUSTER": "true"})
    with pytest.raises(ConfigError, match=r"redis\.url"):
        load_settings(None, {"ACCEPTD_REDIS__URL": "redis://a:1,redis://b:2"})
    with pytest.raises(ConfigError, match=r"redis\.url"):
        load_settings(
            None, {"ACCEPTD_REDIS__URL": "unix:///tmp/x.sock", "ACCEPTD_REDIS__CLUSTER": "true"}
        )


def test_the_sharded_variant_publishes_on_the_shard_only() -> None:
    # Every publish and listener count of every script is replaced, and nothing else is.
    for lua in [*queue_scripts.ALL.values(), *webhook_scripts.ALL.values()]:
        variant = sharded(lua.source)
        assert not re.search(r"['\"](PUBLISH|NUMSUB)['\"]", variant), lua.name
        assert re.sub(r"SPUBLISH|SHARDNUMSUB", "", variant) == re.sub(
            r"PUBLISH|NUMSUB", "", lua.source
        ), lua.name
    assert "'SPUBLISH'" in sharded(queue_scripts.FINISH.source)
    assert "'SHARDNUMSUB'" in sharded(queue_scripts.FINISH.source)


async def test_a_stale_slot_map_and_lost_scripts_are_recovered(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    queue = Queue(cluster_client)
    assert isinstance(queue.batcher, ClusterBatcher)
    ops = ["echo", "sleep", "thumbs", "iban"]  # on more than one master
    assert len({redis_cluster.master_of(keys.pending(op)).port for op in ops}) > 1
    first = [
        await queue.submit(NewRequest(op, new_request_id(op, queue.now_ms()), "anon", "{}", LIMITS))
        for op in ops
    ]
    assert all(r.outcome == "created" for r in first)
    # The client believes every slot lives on one master (MOVED from the others), and every
    # master forgot its scripts (its functions): the calls still succeed, in one go.
    await cluster_client.initialize()
    wrong = cluster_client.get_node_from_key(keys.pending("echo"))
    cache = cluster_client.nodes_manager.slots_cache
    for slot in list(cache):
        cache[slot] = [wrong]  # type: ignore[list-item]
    for node in redis_cluster.masters:
        cmd(node, "FUNCTION", "FLUSH")
    again = await asyncio.gather(
        *(
            queue.submit(NewRequest(op, new_request_id(op, queue.now_ms()), "anon", "{}", LIMITS))
            for op in ops
        )
    )
    assert all(r.outcome == "created" for r in again)
    for op in ops:
        assert await queue.depth(op) == 2


async def test_sharded_subscriptions_span_the_nodes(
    cluster_client: RedisCluster, redis_cluster: LocalCluster
) -> None:
    channels = [keys.watched_channel(op) for op in ("echo", "sleep", "thumbs", "iban")]
    got: list[tuple[bytes, bytes]] = []
    live = asyncio.Event()
    task = asyncio.create_task(
        subscribe(cluster_client, channels, lambda c, d: got.append((c, d)), live.set)
    )
    try:
        await asyncio.wait_for(live.wait(), 10)
        for ch in channels:
            # Each node counts the subscriber of its own channel (what the scripts ask).
            owner = redis_cluster.master_of(ch)
            assert cmd(owner, "PUBSUB", "SHARDNUMSUB", ch)[1] == 1
            await cluster_client.execute_command("SPUBLISH", ch, b"x " + ch.encode())

        async def all_arrived() -> None:
            while len(got) < len(channels):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_arrived(), 5)
        assert sorted(c for c, _ in got) == sorted(ch.encode() for ch in channels)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
