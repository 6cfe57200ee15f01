"""The webhook store: endpoints scoped by client, secrets, idempotent fan-out."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from service.queue import keys as core_keys
from webhooks import (
    DeliveryNotFound,
    EndpointNotFound,
    InvalidEndpoint,
    WebhookStore,
    keys,
    scripts,
)
from webhooks.models import text

URL = "https://hooks.example.com/acceptd"


@pytest.fixture
def store(redis_client: Redis) -> WebhookStore:
    """A store for two operations."""
    return WebhookStore(redis_client, ["echo", "sleep"])


async def test_create_get_list_and_hooked(store: WebhookStore, redis_client: Redis) -> None:
    ep = await store.create_endpoint("alice", URL, description="main")
    assert ep.id.startswith("we_")
    assert ep.secret is not None and ep.secret.startswith("whsec_")
    assert ep.events == ["request.succeeded", "request.failed", "request.canceled"]
    doc = ep.to_json()
    assert doc["secret"] == ep.secret
    assert doc["disabled"] is False and doc["disabled_reason"] is None
    assert doc["created_at"].endswith("Z")

    got = await store.get_endpoint("alice", ep.id)
    assert got.secret is None and "secret" not in got.to_json()
    assert got.url == URL and got.description == "main"
    assert [e.id for e in (await store.list_endpoints("alice")).items] == [ep.id]
    for op in ("echo", "sleep"):
        for status in ("succeeded", "failed", "canceled"):
            assert await redis_client.sismember(core_keys.key(op, f"hooked:{status}"), "alice")
        # Nobody asked for running events: the core writes no outbox entry for them.
        assert not await redis_client.sismember(core_keys.key(op, "hooked:running"), "alice")


async def test_changing_events_hooks_the_new_ones(store: WebhookStore, redis_client: Redis) -> None:
    ep = await store.create_endpoint("alice", URL, events=["request.failed"])
    assert not await redis_client.sismember(core_keys.key("echo", "hooked:running"), "alice")
    await store.update_endpoint("alice", ep.id, events=["request.running"])
    assert await redis_client.sismember(core_keys.key("echo", "hooked:running"), "alice")


async def test_rehook_covers_operations_added_later(redis_client: Redis) -> None:
    await WebhookStore(redis_client, ["echo"]).create_endpoint(
        "alice", URL, events=["request.running"]
    )
    await WebhookStore(redis_client, ["echo"]).create_endpoint("bob", URL)
    assert not await redis_client.sismember(core_keys.key("sleep", "hooked:running"), "alice")
    assert await WebhookStore(redis_client, ["echo", "sleep"]).rehook() == 2
    assert await redis_client.sismember(core_keys.key("sleep", "hooked:running"), "alice")
    assert not await redis_client.sismember(core_keys.key("sleep", "hooked:running"), "bob")
    assert await redis_client.sismember(core_keys.key("sleep", "hooked:succeeded"), "bob")


async def test_other_clients_see_nothing(store: WebhookStore) -> None:
    ep = await store.create_endpoint("alice", URL)
    with pytest.raises(EndpointNotFound):
        await store.get_endpoint("bob", ep.id)
    with pytest.raises(EndpointNotFound):
        await store.update_endpoint("bob", ep.id, description="x")
    with pytest.raises(EndpointNotFound):
        await store.delete_endpoint("bob", ep.id)
    with pytest.raises(EndpointNotFound):
        await store.rotate_secret("bob", ep.id)
    with pytest.raises(EndpointNotFound):
        await store.list_deliveries("bob", ep.id)
    assert (await store.list_endpoints("bob")).items == []


async def test_update_is_a_patch(store: WebhookStore) -> None:
    ep = await store.create_endpoint("alice", URL, operations=["echo"], description="d")
    updated = await store.update_endpoint("alice", ep.id, events=["request.running"])
    assert updated.events == ["request.running"]
    assert updated.operations == ["echo"] and updated.description == "d"
    disabled = await store.update_endpoint("alice", ep.id, disabled=True)
    assert disabled.disabled and disabled.disabled_reason
    enabled = await store.update_endpoint("alice", ep.id, disabled=False)
    assert not enabled.disabled and enabled.disabled_reason is None


async def test_invalid_fields_are_refused(store: WebhookStore) -> None:
    with pytest.raises(InvalidEndpoint, match="events"):
        await store.create_endpoint("alice", URL, events=["request.exploded"])
    with pytest.raises(InvalidEndpoint, match="operations"):
        await store.create_endpoint("alice", URL, operations=["nope"])
    with pytest.raises(InvalidEndpoint, match="url"):
        await store.create_endpoint("alice", "ftp://x")


async def test_delete(store: WebhookStore) -> None:
    ep = await store.create_endpoint("alice", URL)
    await store.delete_endpoint("alice", ep.id)
    with pytest.raises(EndpointNotFound):
        await store.get_endpoint("alice", ep.id)
    assert (await store.list_endpoints("alice")).items == []


async def test_rotation_keeps_the_old_secret_for_a_while(store: WebhookStore) -> None:
    ep = await store.create_endpoint("alice", URL)
    rotated = await store.rotate_secret("alice", ep.id)
    assert rotated.secret not in (None, ep.secret)
    target = await store.send_target(ep.id)
    assert target is not None
    assert target.live(store.now_ms()) == [rotated.secret, ep.secret]
    # A target read during the overlap stops using the old secret once it expires.
    assert target.live(target.old_until) == [rotated.secret]
    expired = await store.rotate_secret("alice", ep.id, overlap=-1)
    target = await store.send_target(ep.id)
    assert target is not None and target.live(store.now_ms()) == [expired.secret]


async def test_default_secret_is_stable_per_client(store: WebhookStore) -> None:
    first = await store.default_secret("alice")
    assert first.startswith("whsec_")
    assert await store.default_secret("alice") == first
    assert await store.default_secret("bob") != first


async def test_fanout_is_idempotent_per_entry(store: WebhookStore) -> None:
    ep = await store.create_endpoint("alice", URL)
    args = ("echo", "1-0", "request.succeeded", "alice", "r1", b"{}")
    created = await store.fanout(*args, "https://cb.example.com/x", "cb:https://cb.example.com")
    assert len(created) == 2 and all(i.startswith("msg_") for i in created)
    again = await store.fanout(*args, "https://cb.example.com/x", "cb:https://cb.example.com")
    assert again == []
    (listed,) = await store.list_deliveries("alice", ep.id)
    assert listed.status == "pending" and listed.event_type == "request.succeeded"
    assert listed.to_json()["endpoint_id"] == ep.id
    with pytest.raises(DeliveryNotFound):
        await store.get_delivery("bob", listed.id)
    with pytest.raises(DeliveryNotFound):
        await store.redeliver("bob", listed.id)


async def test_a_requests_deliveries_are_indexed_with_a_ttl(
    store: WebhookStore, redis_client: Redis
) -> None:
    ep = await store.create_endpoint("alice", URL)
    cb = ("https://cb.example.com/x", "cb:https://cb.example.com")
    await store.fanout("echo", "1-0", "request.succeeded", "alice", "r1", b"{}", *cb)
    await store.fanout("echo", "2-0", "request.succeeded", "alice", "r2", b"{}")
    listed = await store.request_deliveries("alice", "r1")
    assert {(d.endpoint_id, d.url) for d in listed} == {(ep.id, None), (None, cb[0])}
    assert all(d.request_id == "r1" for d in listed)
    assert [d.request_id for d in await store.request_deliveries("alice", "r2")] == ["r2"]
    assert await store.request_deliveries("bob", "r1") == []  # only the owner's
    index = store.layout.first.request_deliveries("r1")
    assert 0 < await redis_client.ttl(index) <= 2 * store.retention
    assert index.startswith("acceptd:{wh}:")


async def test_fanout_filters_events_and_operations(store: WebhookStore) -> None:
    await store.create_endpoint("alice", URL, operations=["sleep"])
    await store.create_endpoint("alice", URL, events=["request.running"])
    assert await store.fanout("echo", "1-0", "request.succeeded", "alice", "r", b"{}") == []
    assert len(await store.fanout("sleep", "1-0", "request.failed", "alice", "r", b"{}")) == 1
    assert len(await store.fanout("echo", "2-0", "request.running", "alice", "r", b"{}")) == 1


async def test_due_members_of_an_older_release_are_upgraded(
    store: WebhookStore, redis_client: Redis
) -> None:
    await store.create_endpoint("alice", URL)
    (delivery_id,) = await store.fanout(
        "echo", "1-0", "request.succeeded", "alice", "r1", b"{}", "", ""
    )
    rows: list[tuple[bytes, float]] = await redis_client.zrange(
        store.layout.first.due, 0, -1, withscores=True
    )  # type: ignore[assignment]
    member, score = rows[0]
    target = member.decode().split("\n")[1]
    # What an older release left: the bare id, and one whose delivery has since expired.
    await redis_client.zrem(store.layout.first.due, member)
    await redis_client.zadd(store.layout.first.due, {delivery_id: score, "msg_gone": score})

    assert await store.upgrade_due() == 2
    assert await redis_client.zrange(store.layout.first.due, 0, -1, withscores=True) == [
        (keys.due_member(delivery_id, target).encode(), score)
    ]
    claimed, _ = await store.claim("t", 10, lease=30, per_target=4)
    assert [(c.id, c.target) for c in claimed] == [(delivery_id, target)]
    assert await store.upgrade_due() == 0


async def test_a_ticks_attempt_records_run_as_one_script_each_its_own(
    store: WebhookStore, redis_client: Redis
) -> None:
    # Three records made in one tick (one merged finish.lua run): a success, a retry, and one
    # whose lease is not the caller's; each gets its own answer and its own effects.
    await store.create_endpoint("alice", URL)
    for n in range(3):
        await store.fanout("echo", f"{n}-0", "request.succeeded", "alice", f"r{n}", b"{}")
    items, _ = await store.claim("t1", 10, 30.0, 10)
    assert len(items) == 3
    stolen = replace(items[2], token="another")
    later = store.now_ms() + 60_000
    assert scripts.FINISH.library is not None
    await redis_client.function_load(scripts.FINISH.library, replace=True)  # loaded: one round
    await redis_client.config_resetstat()
    replies = await asyncio.gather(
        store.finish(items[0], "delivered", {"at": 1}, None, 86_400),
        store.finish(items[1], "retry", {"at": 2}, later, 86_400),
        store.finish(stolen, "delivered", {"at": 3}, None, 86_400),
    )
    assert list(replies) == ["delivered", "pending", "lost"]
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] == 1
    done = await store.get_delivery("alice", items[0].id)
    retried = await store.get_delivery("alice", items[1].id)
    untouched = await store.get_delivery("alice", items[2].id)
    assert (done.status, len(done.attempts), done.next_attempt_at) == ("delivered", 1, None)
    assert (retried.status, len(retried.attempts), retried.next_attempt_at) == ("pending", 1, later)
    assert (untouched.status, untouched.attempts) == ("pending", [])
    due = await redis_client.zrange(store.layout.first.due, 0, -1, withscores=True)
    assert [(keys.split_due_member(text(m))[0], int(s)) for m, s in due] == [  # type: ignore[str-unpack]
        (items[1].id, later)
    ]
    # The lease of the third is still held (its record was refused), the others' are gone.
    assert await redis_client.zcard(store.layout.first.inflight) == 1
    assert int(await redis_client.hget(store.layout.first.busy, items[2].target) or 0) == 1
