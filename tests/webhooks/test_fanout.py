"""Fan-out with many endpoints: bounded work per script run, nothing lost or doubled (issue 13).

Before, one ``fanout.lua`` run made every delivery of a batch of outbox entries: with 5,000
endpoints of one client, one run took 1.5 s and Redis answered nobody else meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from service.http.monitor import render
from tests.support.webhooks import Receiver, finish_request
from tests.webhooks.test_dispatch import CLIENT, OPS, settings
from webhooks import Dispatcher, Endpoint, WebhookStore, scripts
from webhooks.fanout import FANOUT_RUN, FanoutItem, derived_delivery_id

MANY = 450  # more than two runs' worth for one entry


@pytest.fixture
def store(redis_client: Redis) -> WebhookStore:
    """A store whose clients may have more endpoints than one fan-out run makes deliveries."""
    return WebhookStore(redis_client, OPS, max_endpoints=MANY)


def count_runs(store: WebhookStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The deliveries given to each ``fanout.lua`` run of ``store``, as they happen."""
    runs: list[int] = []
    run = store._run

    async def counting(lua: Any, *args: Any, **kwargs: Any) -> Any:
        if lua is scripts.FANOUT:
            runs.append(len(kwargs["entry_keys"]) // len(scripts.FanoutItemKeys._fields))
        return await run(lua, *args, **kwargs)

    monkeypatch.setattr(store, "_run", counting)
    return runs


async def many_endpoints(store: WebhookStore, url: str) -> list[Endpoint]:
    """``MANY`` endpoints of one client, each at its own path of ``url``."""
    made: list[Endpoint] = []
    for start in range(0, MANY, 50):
        made += await asyncio.gather(
            *(store.create_endpoint(CLIENT, f"{url}/e{i}") for i in range(start, start + 50))
        )
    return made[:MANY]


async def test_many_endpoints_get_one_delivery_each_in_bounded_runs(
    redis_client: Redis, store: WebhookStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Receiver() as receiver:
        endpoints = await many_endpoints(store, receiver.url)
        assert len(endpoints) == MANY
        runs = count_runs(store, monkeypatch)
        await finish_request(redis_client)
        dispatcher = Dispatcher(redis_client, settings(concurrency=64), OPS, render, store=store)
        try:
            assert await dispatcher.drain_once() == MANY
        finally:
            await dispatcher.aclose()
        # Every endpoint got exactly one delivery (one POST, its own webhook-id).
        paths = Counter(r.path for r in receiver.received)
        assert paths == Counter(f"/e{i}" for i in range(MANY))
        assert len({r.webhook_id for r in receiver.received}) == MANY
    # No script run made more than FANOUT_RUN of them: the entry took several runs.
    assert 2 * FANOUT_RUN < MANY
    assert runs == [FANOUT_RUN, FANOUT_RUN, MANY - 2 * FANOUT_RUN]


async def test_a_fanout_cut_off_between_runs_resumes_without_doubles(
    store: WebhookStore, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = await many_endpoints(store, "http://example.org")
    item = FanoutItem("echo", "1-1", "request.succeeded", CLIENT, "r1", b"{}")
    run = store._run
    calls = 0

    async def dying(lua: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if lua is scripts.FANOUT:
            calls += 1
            if calls == 2:
                raise ConnectionError("the dispatcher died here")
        return await run(lua, *args, **kwargs)

    monkeypatch.setattr(store, "_run", dying)
    with pytest.raises(ConnectionError):
        await store.fanout_many([item])
    monkeypatch.setattr(store, "_run", run)
    # The entry is read again (it was never acknowledged): the first run's deliveries exist.
    again = await store.fanout_many([item])
    expected = {derived_delivery_id("echo", "1-1", ep.id) for ep in endpoints}
    assert len(again.created[0]) == MANY - FANOUT_RUN
    assert set(again.created[0]) < expected
    assert await redis_client.exists(*(store.layout.first.delivery(d) for d in expected)) == MANY
    due = await redis_client.zcard(store.layout.first.due)
    assert due == MANY  # each queued once
    assert (await store.fanout_many([item])).created == [[]]
