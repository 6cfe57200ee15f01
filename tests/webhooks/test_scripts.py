"""The webhook scripts' files against their callers: names, order, named locals, declared keys."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.runtime.lua import parse_header
from webhooks import WebhookStore, keys, scripts
from webhooks.fanout import EndpointFilter, FanoutItem, derived_delivery_id
from webhooks.models import text

FILES = sorted(scripts.DIRECTORY.glob("*.lua"))
INCLUDE_FILES = sorted(scripts.DIRECTORY.glob("includes/*.lua"))
INCLUDE = re.compile(r'^--- @include "([\w/-]+)"\s*$', re.M)
# `local name = KEYS[n]` (or `tonumber(ARGV[n])`) at the top of a script.
FIXED_LOCAL = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$", re.M)
# `name = KEYS[k + n],` in the table a script builds for each of its entries.
ENTRY_FIELD = re.compile(r"^\s+(\w+) = (KEYS|ARGV)\[[a-z] \+ (\d+)\],?$", re.M)
INDEXING = re.compile(r"\b(?:KEYS|ARGV)\[")
# A key built inside Lua: a string ending in a key kind's colon, joined to something.
DERIVED = re.compile(r"(?:prefix|'\w+:')\s*\.\.")


def _includes() -> set[str]:
    return {name for f in FILES for name in INCLUDE.findall(f.read_text())}


def _body(name: str) -> str:
    text = (scripts.DIRECTORY / f"{name}.lua").read_text()
    return text[text.index("]]") + 2 :]


def test_every_script_file_is_registered_and_every_include_exists() -> None:
    assert {f.stem for f in FILES} == set(scripts.ALL)
    assert _includes() == {f"includes/{f.stem}" for f in INCLUDE_FILES}


@pytest.mark.parametrize("path", INCLUDE_FILES, ids=lambda p: p.stem)
def test_includes_index_nothing_and_say_what_they_expect(path: Path) -> None:
    text = path.read_text()
    assert not INDEXING.search(text), path
    assert re.search(r"Expects (no locals|the locals? )", text), path
    assert not DERIVED.search(text), path


@pytest.mark.parametrize("name", sorted(scripts.ALL))
def test_callers_pass_the_headers_names_in_order(name: str) -> None:
    lua = scripts.ALL[name]
    header = parse_header(name, (scripts.DIRECTORY / f"{name}.lua").read_text())
    assert header.keys == lua.keys_type._fields
    assert header.argv == lua.argv_type._fields
    assert lua.header == header


@pytest.mark.parametrize("name", sorted(scripts.ALL))
def test_named_locals_match_the_header(name: str) -> None:
    header = scripts.ALL[name].header
    body = _body(name)
    fixed = {"KEYS": header.keys, "ARGV": header.argv}
    per_entry = {"KEYS": header.call_keys, "ARGV": header.call_argv}
    seen: dict[str, list[str]] = {"KEYS": [], "ARGV": [], "+KEYS": [], "+ARGV": []}
    for local, kind, n in FIXED_LOCAL.findall(body):
        assert fixed[kind][int(n) - 1] == local, f"{name}.lua: local {local} = {kind}[{n}]"
        seen[kind].append(local)
    for field, kind, n in ENTRY_FIELD.findall(body):
        assert per_entry[kind][int(n) - 1] == field, f"{name}.lua: {field} = {kind}[+{n}]"
        seen["+" + kind].append(field)
    assert seen == {
        "KEYS": list(header.keys),
        "ARGV": list(header.argv),
        "+KEYS": list(header.call_keys),
        "+ARGV": list(header.call_argv),
    }
    # Those locals are the only places that index KEYS or ARGV.
    assert len(INDEXING.findall(body)) == sum(len(v) for v in seen.values())


@pytest.mark.parametrize("name", sorted(scripts.ALL))
def test_every_key_is_declared(name: str) -> None:
    # Redis (and a cluster migrating a slot) needs every key a script touches in its KEYS:
    # no script takes a prefix to build keys from.
    text = (scripts.DIRECTORY / f"{name}.lua").read_text()
    header = scripts.ALL[name].header
    assert "prefix" not in header.keys + header.call_keys
    assert "Derived keys" not in text[: text.index("]]")]
    assert not DERIVED.search(scripts.ALL[name].source)


async def test_fanout_names_the_callbacks_delivery_as_its_caller_does(redis_client: Redis) -> None:
    store = WebhookStore(redis_client, ["echo"])
    ep = await store.create_endpoint("alice", "https://hooks.example.com/acceptd")
    created = await store.fanout(
        "echo", "1-0", "request.succeeded", "alice", "r1", b"{}", "https://cb.example.com/x", "cb"
    )
    callback = derived_delivery_id("echo", "1-0", "callback")
    assert created == [derived_delivery_id("echo", "1-0", ep.id), callback]
    assert (
        await redis_client.hget(store.layout.first.delivery(callback), "url")
        == b"https://cb.example.com/x"
    )


async def test_queued_deliveries_carry_their_target_as_the_caller_reads_it(
    redis_client: Redis,
) -> None:
    store = WebhookStore(redis_client, ["echo"])
    ep = await store.create_endpoint("alice", "https://hooks.example.com/acceptd")
    (created,) = await store.fanout("echo", "1-0", "request.succeeded", "alice", "r1", b"{}")
    (member,) = [text(m) for m in await redis_client.zrange(store.layout.first.due, 0, -1)]
    assert member == keys.due_member(created, ep.id)
    assert keys.split_due_member(member) == (created, ep.id)


async def test_fanout_rechecks_each_endpoint_when_it_runs(redis_client: Redis) -> None:
    # The caller's read of the endpoints may be stale by the time the script runs.
    store = WebhookStore(redis_client, ["echo"])
    kept = await store.create_endpoint("alice", "https://hooks.example.com/a")
    disabled = await store.create_endpoint("alice", "https://hooks.example.com/b")
    refiltered = await store.create_endpoint("alice", "https://hooks.example.com/c")
    deleted = await store.create_endpoint("alice", "https://hooks.example.com/d")
    item = FanoutItem("echo", "1-0", "request.succeeded", "alice", "r1", b"{}")
    endpoints = await store._enabled_endpoints({"alice"})
    await store.update_endpoint("alice", disabled.id, disabled=True)
    await store.update_endpoint("alice", refiltered.id, events=["request.failed"])
    await store.delete_endpoint("alice", deleted.id)

    async def stale(clients: set[str]) -> dict[str, list[EndpointFilter]]:
        return endpoints

    store._enabled_endpoints = stale  # type: ignore[method-assign]
    done = await store.fanout_many([item])
    assert done.created == [[derived_delivery_id("echo", "1-0", kept.id)]]
    assert not await redis_client.exists(
        store.layout.of(deleted.id).endpoint_deliveries(deleted.id)
    )


async def test_two_claims_of_one_delivery_lease_it_once(redis_client: Redis) -> None:
    store = WebhookStore(redis_client, ["echo"])
    await store.create_endpoint("alice", "https://hooks.example.com/acceptd")
    (created,) = await store.fanout("echo", "1-0", "request.succeeded", "alice", "r1", b"{}")
    first, second = await asyncio.gather(store.claim("a", 5, 30, 2), store.claim("b", 5, 30, 2))
    assert sorted(len(items) for items, _ in (first, second)) == [0, 1]
    (claimed,) = first[0] or second[0]
    assert claimed.id == created and claimed.endpoint_version == "0"
    assert await redis_client.zrange(store.layout.first.due, 0, -1) == []
