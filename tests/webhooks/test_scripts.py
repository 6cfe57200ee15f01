"""The webhook scripts' files against their callers: names, order, named locals, derived keys."""

from __future__ import annotations

import re

import pytest
from redis.asyncio import Redis

from service.runtime.lua import parse_header
from webhooks import WebhookStore, keys, scripts
from webhooks.store import derived_delivery_id

FILES = sorted(scripts.DIRECTORY.glob("*.lua"))
INCLUDE = re.compile(r'^--- @include "([\w/-]+)"\s*$', re.M)
# `local name = KEYS[n]` (or `tonumber(ARGV[n])`) at the top of a script.
FIXED_LOCAL = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$", re.M)
# `name = KEYS[k + n],` in the table a script builds for each of its entries.
ENTRY_FIELD = re.compile(r"^\s+(\w+) = (KEYS|ARGV)\[[a-z] \+ (\d+)\],?$", re.M)
INDEXING = re.compile(r"\b(?:KEYS|ARGV)\[")
DERIVED = re.compile(r"prefix \.\. '(\w+):'")


def _includes() -> set[str]:
    return {name for f in FILES for name in INCLUDE.findall(f.read_text())}


def _body(name: str) -> str:
    text = (scripts.DIRECTORY / f"{name}.lua").read_text()
    return text[text.index("]]") + 2 :]


def test_every_script_file_is_registered_and_every_include_exists() -> None:
    names = {f.stem for f in FILES}
    includes = _includes()
    assert includes <= names
    assert names - includes == set(scripts.ALL)


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
def test_derived_keys_are_listed_in_the_header(name: str) -> None:
    text = (scripts.DIRECTORY / f"{name}.lua").read_text()
    header, body = text[: text.index("]]")], _body(name)
    derived = set(DERIVED.findall(body))
    assert ("prefix" in scripts.ALL[name].header.keys) == bool(derived)
    if derived:
        listed = header.split("Derived keys (not yet declared):")[1]
        assert derived == set(re.findall(r"^\s+(\w+):<id>", listed, re.M))


async def test_fanout_names_the_callbacks_delivery_as_its_caller_does(redis_client: Redis) -> None:
    store = WebhookStore(redis_client, ["echo"])
    ep = await store.create_endpoint("alice", "https://hooks.example.com/acceptd")
    created = await store.fanout(
        "echo", "1-0", "request.succeeded", "alice", "r1", b"{}", "https://cb.example.com/x", "cb"
    )
    callback = derived_delivery_id("echo", "1-0", "callback")
    assert created == [derived_delivery_id("echo", "1-0", ep.id), callback]
    assert await redis_client.hget(keys.delivery(callback), "url") == b"https://cb.example.com/x"
