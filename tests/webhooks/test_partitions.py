"""Webhook state spread over partitions (hash tags): where keys live, and data moved when the
partition count changes (a release before partitions had one, ``{wh}``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from service.http.monitor import render
from service.queue import keys as core_keys
from service.runtime.config import WebhookSettings
from tests.support.cluster import LocalCluster, both
from tests.support.webhooks import Receiver, finish_request, wait_until
from tests.webhooks.test_dispatch import CLIENT, OPS, StartDispatcher, settings
from webhooks import Dispatcher, WebhookStore, keys
from webhooks.keys import Partitions

ENDPOINTS = 12


@pytest.fixture
async def start(redis_client: Redis) -> AsyncIterator[StartDispatcher]:
    """Start dispatchers running in the background; all are stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    def run(conf: WebhookSettings | None = None, **kwargs: Any) -> Dispatcher:
        dispatcher = Dispatcher(redis_client, conf or settings(), OPS, render, **kwargs)
        tasks.append(asyncio.create_task(dispatcher.run()))
        return dispatcher

    yield run
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver answering 200."""
    async with Receiver() as r:
        yield r


def test_partition_zero_is_the_tag_of_every_release_before_partitions() -> None:
    assert [p.tag for p in keys.partitions(1).parts] == ["wh"]
    layout = keys.partitions(16)
    assert layout.first.tag == "wh"
    assert len({p.tag for p in layout.parts}) == 16
    # Each partition falls in its own sixteenth of the slot space: three masters owning
    # equal slot ranges hold 5, 5 and 6 of them.
    slots = sorted(core_keys.key_slot(p.tag) for p in layout.parts)
    assert [s * 16 // core_keys.SLOTS for s in slots] == list(range(16))
    # A name's partition is the same in every process.
    assert Partitions(16).of("we_0123").tag == layout.of("we_0123").tag


@both
async def test_deliveries_to_many_endpoints_spread_over_masters_and_are_all_signed(
    request: pytest.FixtureRequest,
    redis_backend: str,
    redis_client: Redis,
    receiver: Receiver,
    start: StartDispatcher,
) -> None:
    store = WebhookStore(redis_client, OPS)
    endpoints = [
        await store.create_endpoint(CLIENT, f"{receiver.url}/ep{i}") for i in range(ENDPOINTS)
    ]
    start(settings(concurrency=32))
    rids = [await finish_request(redis_client) for _ in range(3)]

    await wait_until(lambda: len(receiver.received) == 3 * ENDPOINTS, timeout=15)
    secrets = {f"/ep{i}": ep.secret for i, ep in enumerate(endpoints)}
    seen = set()
    for got in receiver.received:
        secret = secrets[got.path]
        assert secret is not None
        body = got.verify(secret)
        seen.add((got.path, body["data"]["id"]))
    assert len(seen) == 3 * ENDPOINTS  # each once
    for ep in endpoints:
        deliveries = await store.list_deliveries(CLIENT, ep.id)
        assert sorted(d.request_id for d in deliveries) == sorted(rids)
        assert {d.status for d in deliveries} == {"delivered"}
    listed = await store.request_deliveries(CLIENT, rids[0])
    assert {d.endpoint_id for d in listed} == {ep.id for ep in endpoints}

    # Where the deliveries live: each with its endpoint, in the endpoint's partition.
    parts = {store.layout.of(ep.id).tag for ep in endpoints}
    for ep in endpoints:
        (d, *_) = await store.list_deliveries(CLIENT, ep.id)
        part = store.layout.of(ep.id)
        assert await redis_client.exists(part.delivery(d.id), part.endpoint(ep.id)) == 2
    if redis_backend == "node":
        assert parts == {"wh"}
    else:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        masters = {cluster.master_of(core_keys.prefix(tag) + "x").port for tag in parts}
        assert len(parts) > 3 and len(masters) > 1


@both
async def test_data_of_one_partition_is_moved_and_delivered_after_the_upgrade(
    redis_client: Redis, receiver: Receiver, start: StartDispatcher
) -> None:
    # What a release before partitions left in {wh}: endpoints, a queued delivery, a delivered
    # one (its log and indexes), a callback's and the client's default secret.
    old = WebhookStore(redis_client, OPS, partitions=1)
    endpoints = [await old.create_endpoint(CLIENT, f"{receiver.url}/ep{i}") for i in range(6)]
    delivered = await old.fanout("echo", "1-0", "request.succeeded", CLIENT, "r0", b'{"n": 0}')
    claimed, _ = await old.claim("t", 100, lease=30, per_target=4)
    for item in claimed:
        await old.finish(item, "delivered", {"at": 1}, None, 86_400)
    cb = (f"{receiver.url}/cb", "cb:" + receiver.url)
    queued = await old.fanout("echo", "2-0", "request.succeeded", CLIENT, "r1", b'{"n": 1}', *cb)
    secret = await old.default_secret(CLIENT)
    assert len(queued) == 7 and len(delivered) == 6

    new = WebhookStore(redis_client, OPS, partitions=8)
    assert await new.upgrade() > 0
    assert await new.upgrade() == 0  # once moved, one GET
    assert await new.default_secret(CLIENT) == secret
    page = await new.list_endpoints(CLIENT)
    assert sorted(e.id for e in page.items) == sorted(e.id for e in endpoints)
    assert len({new.layout.of(e.id).index for e in endpoints}) > 1
    for delivery_id in delivered:
        d = await new.get_delivery(CLIENT, delivery_id)
        assert (d.status, len(d.attempts)) == ("delivered", 1)
        assert d.endpoint_id is not None
        listed = {x.id for x in await new.list_deliveries(CLIENT, d.endpoint_id)}
        assert delivery_id in listed and len(listed) == 2  # with the queued one
    assert {d.id for d in await new.request_deliveries(CLIENT, "r1")} == set(queued)

    # A dispatcher of the new layout sends what was queued, signed with the same secrets.
    start(settings(partitions=8))
    await wait_until(lambda: len(receiver.received) == 7, timeout=15)
    by_path = {got.path: got for got in receiver.received}
    for i, ep in enumerate(endpoints):
        assert ep.secret is not None
        assert by_path[f"/ep{i}"].verify(ep.secret)["n"] == 1
    assert by_path["/cb"].verify(secret)["n"] == 1
    for delivery_id in queued:
        await wait_until(lambda i=delivery_id: _delivered(new, i))  # type: ignore[misc]


async def _delivered(store: WebhookStore, delivery_id: str) -> bool:
    return (await store.get_delivery(CLIENT, delivery_id)).status == "delivered"
