"""The dispatcher end to end: real Redis, requests finished by the core, receivers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from service.http.monitor import render
from service.queue import keys as core_keys
from service.runtime.config import WebhookSettings
from service.runtime.embedded import free_port
from service.runtime.redis import connect
from tests.support.faults import RestartableRedis
from tests.support.webhooks import HANG, Receiver, finish_request, wait_until
from webhooks import Dispatcher, Endpoint, WebhookStore
from webhooks.dispatcher import GROUP
from webhooks.models import Delivery

OPS = ["echo"]
CLIENT = "anon"


def settings(**overrides: Any) -> WebhookSettings:
    """Fast settings: loopback allowed, sub-second retries, no jitter."""
    base: dict[str, Any] = {
        "allow_networks": ["127.0.0.0/8"],
        "retry_schedule": [0.2, 0.3, 0.5],
        "jitter": 0.0,
        "timeout_seconds": 2.0,
        "concurrency": 8,
        "per_endpoint_concurrency": 2,
    }
    return WebhookSettings(**{**base, **overrides})


StartDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def store(redis_client: Redis) -> WebhookStore:
    """The store the test talks to (the dispatchers build their own)."""
    return WebhookStore(redis_client, OPS)


async def only_delivery(store: WebhookStore, ep: Endpoint) -> Delivery:
    """The endpoint's single delivery."""
    (delivery,) = await store.list_deliveries(CLIENT, ep.id)
    return delivery


async def delivery_status(store: WebhookStore, ep: Endpoint, status: str) -> bool:
    """Whether the endpoint's single delivery has ``status``."""
    deliveries = await store.list_deliveries(CLIENT, ep.id)
    return len(deliveries) == 1 and deliveries[0].status == status


async def test_signed_delivery_verifies(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url + "/hook")
    assert ep.secret is not None
    outcomes: list[str] = []
    start(on_attempt=outcomes.append)
    rid = await finish_request(redis_client, result='{"answer": 42}')

    await wait_until(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    body = got.verify(ep.secret)
    assert got.path == "/hook"
    assert got.headers["User-Agent"].startswith("acceptd-webhooks/")
    assert got.headers["Content-Type"] == "application/json"
    # Answers are kept as sent (no decompression), so none is asked for; no Accept either.
    assert "Accept-Encoding" not in got.headers and "Accept" not in got.headers
    assert body["type"] == "request.succeeded"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["id"] == rid and body["data"]["status"] == "succeeded"
    assert body["data"]["operation"] == "echo"
    assert body["data"]["result"] == {"answer": 42}
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5

    await wait_until(lambda: delivery_status(store, ep, "delivered"))
    delivery = await only_delivery(store, ep)
    assert delivery.id == got.webhook_id and delivery.request_id == rid
    (attempt,) = delivery.to_json()["attempts"]
    assert attempt["status_code"] == 200 and attempt["response"] == "ok"
    assert attempt["duration_ms"] >= 0 and attempt["at"].endswith("Z")
    assert outcomes == ["delivered"]
    # The entry was fanned out and removed from the outbox.
    await wait_until(lambda: _xlen_is(redis_client, 0))


async def test_retries_after_500_keep_the_same_webhook_id(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    receiver.reply(500)
    receiver.reply(500)
    start()
    await finish_request(redis_client)

    await wait_until(lambda: delivery_status(store, ep, "delivered"))
    assert len(receiver.received) == 3
    assert len({r.webhook_id for r in receiver.received}) == 1
    for r in receiver.received:
        r.verify(ep.secret)
    delivery = await only_delivery(store, ep)
    assert [a["status_code"] for a in delivery.attempts] == [500, 500, 200]
    assert delivery.attempts[0]["next_attempt_at"] is not None


async def test_receiver_down_then_up(
    redis_client: Redis, store: WebhookStore, start: StartDispatcher
) -> None:
    receiver = Receiver(port=free_port())
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    start(settings(retry_schedule=[0.2, 0.4, 0.6, 1.0]))
    await finish_request(redis_client)

    async def failed_once() -> bool:
        deliveries = await store.list_deliveries(CLIENT, ep.id)
        return bool(deliveries and deliveries[0].attempts)

    await wait_until(failed_once)
    delivery = await only_delivery(store, ep)
    assert delivery.status == "pending"
    assert delivery.attempts[0]["status_code"] is None and delivery.attempts[0]["error"]
    async with receiver:
        await wait_until(lambda: delivery_status(store, ep, "delivered"))
        assert receiver.received[-1].webhook_id == delivery.id
        receiver.received[-1].verify(ep.secret)


async def test_retry_after_is_honoured(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    receiver.reply(503, {"Retry-After": "1"})
    start(settings(retry_schedule=[0.05, 0.05]))
    await finish_request(redis_client)

    await wait_until(lambda: len(receiver.received) == 2)
    first, second = receiver.received
    assert second.at - first.at >= 0.9
    assert first.webhook_id == second.webhook_id
    await wait_until(lambda: delivery_status(store, ep, "delivered"))


async def test_endpoint_changes_take_effect_on_the_next_attempt(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    # Dispatchers cache an endpoint's url and secrets per version: every change must show.
    ep = await store.create_endpoint(CLIENT, receiver.url)
    receiver.reply(500)
    outcomes: list[str] = []
    start(settings(retry_schedule=[0.3, 0.3]), on_attempt=outcomes.append)
    await finish_request(redis_client)
    await wait_until(lambda: outcomes == ["retry"])

    async with Receiver() as moved:
        await store.update_endpoint(CLIENT, ep.id, url=moved.url)
        rotated = await store.rotate_secret(CLIENT, ep.id, overlap=-1)  # old one stops now
        assert rotated.secret is not None
        await wait_until(lambda: len(moved.received) == 1)
        moved.received[0].verify(rotated.secret)
        assert len(moved.received[0].headers["webhook-signature"].split(" ")) == 1
    assert len(receiver.received) == 1


async def test_a_deleted_endpoint_gets_no_more_attempts(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)  # never changed before deletion
    receiver.reply(500)
    outcomes: list[str] = []
    start(settings(retry_schedule=[0.3, 0.3]), on_attempt=outcomes.append)
    await finish_request(redis_client)
    await wait_until(lambda: outcomes == ["retry"])
    await store.delete_endpoint(CLIENT, ep.id)
    await wait_until(lambda: outcomes == ["retry", "skipped"])
    assert len(receiver.received) == 1  # the retry was not sent


async def test_410_disables_the_endpoint(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    receiver.reply(410)
    start()
    await finish_request(redis_client)

    await wait_until(lambda: delivery_status(store, ep, "failed"))
    disabled = await store.get_endpoint(CLIENT, ep.id)
    assert disabled.disabled and "410" in (disabled.disabled_reason or "")
    # Later events find no enabled endpoint: nothing more is created or sent.
    await finish_request(redis_client)
    await wait_until(lambda: _xlen_is(redis_client, 0))
    assert len(await store.list_deliveries(CLIENT, ep.id)) == 1
    assert len(receiver.received) == 1


async def test_endpoint_failing_too_long_is_disabled(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    receiver.default = (500, {})
    # 0.5 s expressed in days: the failure streak outlasts it within the retry schedule.
    start(settings(retry_schedule=[0.2] * 10, disable_after_days=0.5 / 86_400))
    await finish_request(redis_client)

    async def disabled() -> bool:
        return (await store.get_endpoint(CLIENT, ep.id)).disabled

    await wait_until(disabled)
    reason = (await store.get_endpoint(CLIENT, ep.id)).disabled_reason
    assert reason is not None and "no successful delivery" in reason


async def test_rotated_secrets_both_verify_during_overlap(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    rotated = await store.rotate_secret(CLIENT, ep.id)
    assert ep.secret is not None and rotated.secret is not None
    start()
    await finish_request(redis_client)

    await wait_until(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    got.verify(ep.secret)
    got.verify(rotated.secret)


async def test_failed_delivery_can_be_redelivered(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    receiver.default = (500, {})
    start(settings(retry_schedule=[0.1]))
    await finish_request(redis_client)

    await wait_until(lambda: delivery_status(store, ep, "failed"))
    failed = await only_delivery(store, ep)
    assert [a["status_code"] for a in failed.attempts] == [500, 500]
    assert failed.next_attempt_at is None

    receiver.default = (200, {})
    queued = await store.redeliver(CLIENT, failed.id)
    assert queued.status == "pending"
    await wait_until(lambda: delivery_status(store, ep, "delivered"))
    assert len(receiver.received) == 3
    assert receiver.received[-1].webhook_id == failed.id
    receiver.received[-1].verify(ep.secret)


async def test_callback_url_is_signed_with_the_default_secret(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    start()
    rid = await finish_request(
        redis_client, callback_url=receiver.url + "/cb", callback_events="succeeded"
    )

    await wait_until(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    assert got.path == "/cb"
    body = got.verify(await store.default_secret(CLIENT))
    assert body["type"] == "request.succeeded" and body["data"]["id"] == rid
    delivery = await store.get_delivery(CLIENT, got.webhook_id)
    assert delivery.endpoint_id is None and delivery.url == receiver.url + "/cb"
    await wait_until(lambda: _xlen_is(redis_client, 0))
    assert len(receiver.received) == 1  # request.running was not subscribed


async def test_refused_targets_fail_without_a_request(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    literal = await store.create_endpoint(CLIENT, receiver.url)
    named = await store.create_endpoint(CLIENT, f"http://localhost:{receiver.port}/")
    start(settings(allow_networks=[]))
    await finish_request(redis_client)

    async def both_failed() -> bool:
        return all([await delivery_status(store, ep, "failed") for ep in (literal, named)])

    await wait_until(both_failed)
    for ep in (literal, named):
        (attempt,) = (await only_delivery(store, ep)).attempts
        assert "target refused" in attempt["error"]
    assert receiver.received == []


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    redis_client: Redis, store: WebhookStore, start: StartDispatcher
) -> None:
    async with Receiver() as slow, Receiver() as healthy:
        slow.default = (HANG, {})
        await store.create_endpoint(CLIENT, slow.url)
        await store.create_endpoint(CLIENT, healthy.url)
        start(settings(timeout_seconds=5.0, concurrency=4, per_endpoint_concurrency=2))
        for _ in range(6):
            await finish_request(redis_client)

        # Within a second, while two sends to the slow endpoint hang for seconds.
        await wait_until(lambda: len(healthy.received) == 6 and slow.hanging == 2, timeout=1.0)
        assert len(slow.received) == 2  # its other deliveries wait for its own slots only


async def test_deliveries_recorded_while_no_dispatcher_runs_are_sent_later(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    rids = {await finish_request(redis_client) for _ in range(3)}
    # Only the events an endpoint wants are recorded: succeeded, not running.
    assert await redis_client.xlen(core_keys.key("echo", "outbox")) == 3

    start()
    await wait_until(lambda: len(receiver.received) == 3)
    assert {r.verify(ep.secret)["data"]["id"] for r in receiver.received} == rids
    assert len({r.webhook_id for r in receiver.received}) == 3


async def test_a_crash_mid_send_is_recovered_after_the_lease(
    redis_client: Redis, store: WebhookStore, receiver: Receiver
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    receiver.reply(HANG)
    conf = settings(timeout_seconds=5.0)
    first = Dispatcher(redis_client, conf, OPS, render, lease_seconds=1.0)
    crashed = asyncio.create_task(first.run())
    await finish_request(redis_client)
    await wait_until(lambda: receiver.hanging == 1)
    crashed.cancel()  # like SIGKILL mid-send: the lease stays behind in Redis
    with contextlib.suppress(asyncio.CancelledError):
        await crashed
    assert (await only_delivery(store, ep)).status == "pending"

    second = Dispatcher(redis_client, conf, OPS, render, lease_seconds=1.0)
    task = asyncio.create_task(second.run())
    try:
        await wait_until(lambda: delivery_status(store, ep, "delivered"), timeout=4.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(receiver.received) == 2
    assert receiver.received[0].webhook_id == receiver.received[1].webhook_id
    receiver.received[1].verify(ep.secret)
    errors = [a["error"] for a in (await only_delivery(store, ep)).attempts]
    assert errors[0] is not None and "lease expired" in errors[0]


async def test_entries_a_dead_dispatcher_read_are_reclaimed(
    redis_client: Redis, store: WebhookStore, receiver: Receiver
) -> None:
    await store.create_endpoint(CLIENT, receiver.url)
    dispatcher = Dispatcher(redis_client, settings(), OPS, render, claim_idle_seconds=0.2)
    stream = core_keys.key("echo", "outbox")
    await redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await finish_request(redis_client)
    # A dispatcher that read the entry and died before acknowledging it.
    await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)
    assert (await redis_client.xpending(stream, GROUP))["pending"] == 1

    async def drained() -> bool:
        await dispatcher.drain_once()
        return len(receiver.received) == 1

    try:
        await wait_until(drained, timeout=3.0)
    finally:
        await dispatcher.aclose()
    assert await redis_client.xlen(stream) == 0


async def test_entries_a_dead_dispatcher_read_go_out_within_the_lease(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    # Found by the chaos test: a dispatcher SIGKILLed between reading the outbox and its
    # fan-out left the entries for a fixed 60 s (then up to 30 s more) before another took them.
    ep = await store.create_endpoint(CLIENT, receiver.url)
    stream = core_keys.key("echo", "outbox")
    await redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await finish_request(redis_client)
    await redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)
    read_at = time.monotonic()
    dispatcher = start(settings(timeout_seconds=0.5))

    await wait_until(lambda: delivery_status(store, ep, "delivered"), timeout=10.0)
    assert time.monotonic() - read_at <= 2 * dispatcher.lease_seconds + 1
    assert len(receiver.received) == 1


async def test_drain_once_is_a_deterministic_burst(
    redis_client: Redis, store: WebhookStore, receiver: Receiver
) -> None:
    ep = await store.create_endpoint(CLIENT, receiver.url)
    await finish_request(redis_client)
    dispatcher = Dispatcher(redis_client, settings(), OPS, render)
    try:
        assert await dispatcher.drain_once() == 1
    finally:
        await dispatcher.aclose()
    assert len(receiver.received) == 1
    assert (await only_delivery(store, ep)).status == "delivered"


async def _xlen_is(redis: Redis, n: int) -> bool:
    return int(await redis.xlen(core_keys.key("echo", "outbox"))) == n


async def test_a_decoding_client_is_refused(redis_url: str) -> None:
    # Outbox entries are read as bytes: a client decoding replies would drop them all.
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            Dispatcher(client, settings(), OPS, render)
    finally:
        await client.aclose()


async def test_entries_read_before_an_outage_are_fanned_out_once_redis_is_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Redis goes away between the dispatcher's read of the outbox and its fan-out script:
    # the entries stay in this consumer's pending list. They must be fanned out as soon as
    # Redis is back, not when another dispatcher's reclaim (60 s idle) would take them.
    own = RestartableRedis(tmp_path / "redis", free_port())
    await own.start()
    redis = connect(own.url)
    try:
        store = WebhookStore(redis, OPS)
        ep = await store.create_endpoint(CLIENT, receiver.url)
        assert ep.secret is not None
        rids = {await finish_request(redis) for _ in range(3)}
        # Another dispatcher's takeover (XAUTOCLAIM) waits a minute here: not what recovers it.
        dispatcher = Dispatcher(redis, settings(), OPS, render, claim_idle_seconds=60)
        fanout_many = dispatcher.store.fanout_many
        cut: list[int] = []

        async def fanout_in_an_outage(items: Any, lease: Any = None) -> Any:
            if not cut:
                cut.append(len(items))
                await own.stop()  # the entries were read; the fan-out now fails
                try:
                    return await fanout_many(items, lease)
                finally:
                    await own.start()
            return await fanout_many(items, lease)

        dispatcher.store.fanout_many = fanout_in_an_outage  # type: ignore[method-assign]
        task = asyncio.create_task(dispatcher.run())
        try:
            await wait_until(lambda: len(receiver.received) >= 3, timeout=5.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert cut == [3]
        assert {r.verify(ep.secret)["data"]["id"] for r in receiver.received} == rids
        assert len(receiver.received) == 3  # each once
        assert await redis.xlen(core_keys.key("echo", "outbox")) == 0
    finally:
        await redis.aclose()
        own.close()


async def test_entries_whose_read_reply_was_lost_are_fanned_out_promptly(
    redis_client: Redis, store: WebhookStore, receiver: Receiver, start: StartDispatcher
) -> None:
    # A read that Redis executed but whose reply never arrived (the server went away just
    # after it; redis-py then retries the read, with no error seen) leaves the entry pending
    # on this very consumer, with nothing in the dispatcher to say so.
    ep = await store.create_endpoint(CLIENT, receiver.url)
    assert ep.secret is not None
    stream = core_keys.key("echo", "outbox")
    await redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    rid = await finish_request(redis_client)
    entries: Any = await redis_client.xrange(stream)
    ((entry_id, fields),) = entries
    await redis_client.xdel(stream, entry_id)
    # Another dispatcher's takeover (XAUTOCLAIM) waits a minute here: not what recovers it.
    dispatcher = start(claim_idle_seconds=60)

    async def reading() -> bool:
        consumers = await redis_client.xinfo_consumers(stream, GROUP)
        return any(c["name"].decode() == dispatcher.consumer for c in consumers)

    await wait_until(reading)
    # The entry appears and is read in the dispatcher's name at once: its own blocked read
    # never sees it.
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.xadd(stream, fields)
        pipe.xreadgroup(GROUP, dispatcher.consumer, {stream: ">"}, count=10)
        _, read = await pipe.execute()
    assert read, read
    await wait_until(lambda: len(receiver.received) == 1, timeout=5.0)
    assert receiver.received[0].verify(ep.secret)["data"]["id"] == rid
    await wait_until(lambda: _xlen_is(redis_client, 0))
