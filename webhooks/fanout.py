"""Fan-out planning: which deliveries a batch of outbox entries makes.

``fanout.lua`` may touch only the keys it is given, so the store first reads the batch's
clients' endpoints (plain commands) and this module turns each entry into one planned delivery
per matching enabled endpoint and one for its callback url; the script then re-checks each
endpoint as it is when the script runs and creates what does not exist yet. The plan is split by
partition (a delivery lives in its target's, :mod:`webhooks.keys`) and goes to the script in
runs of at most ``FANOUT_RUN`` deliveries of one partition, so one script run touches one slot
and its work is bounded whatever the endpoint count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from webhooks import keys, scripts
from webhooks.models import Claimed

FANOUT_RUN = 200
"""The most deliveries one ``fanout.lua`` run makes: a batch needing more takes several runs."""


@dataclass(frozen=True)
class FanoutItem:
    """One outbox entry to fan out."""

    op: str
    entry_id: str
    event_type: str
    client: str
    request_id: str
    payload: bytes
    callback_url: str = ""
    callback_target: str = ""
    # The outbox's shard tag when not ``op`` (a sharded operation's other shards): stream entry
    # ids are per stream, so the tag names its deliveries.
    source: str = ""


@dataclass(frozen=True)
class LeaseTerms:
    """How a fan-out may lease its new deliveries to the caller at once."""

    token: str
    slots: int
    seconds: float
    per_target: int


@dataclass(frozen=True)
class Fanout:
    """What a fan-out did: the new delivery ids of each entry, and those leased to the caller."""

    created: list[list[str]]
    leased: list[Claimed]


class EndpointFilter(NamedTuple):
    """An enabled endpoint's id and filters as stored (comma-separated; no operations = all)."""

    id: str
    events: str
    operations: str

    def wants(self, event_type: str, op: str) -> bool:
        """Whether this endpoint subscribes to ``event_type`` events of operation ``op``."""
        return _has(self.events, event_type) and (not self.operations or _has(self.operations, op))


class Planned(NamedTuple):
    """One delivery a fan-out creates unless it exists: ``entry`` indexes the batch."""

    entry: int
    id: str
    target: str
    endpoint_id: str
    url: str


def plan(items: Sequence[FanoutItem], endpoints: dict[str, list[EndpointFilter]]) -> list[Planned]:
    """The deliveries of ``items``, given each client's enabled endpoints, in entry order."""
    out: list[Planned] = []
    for index, it in enumerate(items):
        for ep in endpoints.get(it.client, ()):
            if ep.wants(it.event_type, it.op):
                out.append(
                    Planned(
                        index,
                        derived_delivery_id(it.source or it.op, it.entry_id, ep.id),
                        ep.id,
                        ep.id,
                        "",
                    )
                )
        if it.callback_url:
            callback_id = derived_delivery_id(it.source or it.op, it.entry_id, "callback")
            out.append(Planned(index, callback_id, it.callback_target, "", it.callback_url))
    return out


def by_partition(planned: Sequence[Planned], layout: keys.Partitions) -> list[list[Planned]]:
    """``planned`` split by the partition of each delivery's target (in partition order; the
    plan's order within each), empty partitions left out."""
    if layout.count == 1:
        return [list(planned)]
    groups: dict[int, list[Planned]] = {}
    for p in planned:
        groups.setdefault(layout.of(p.target).index, []).append(p)
    return [groups[k] for k in sorted(groups)]


def run_arguments(
    items: Sequence[FanoutItem], run: Sequence[Planned], part: keys.Part
) -> tuple[list[str], list[Any]]:
    """The per-delivery KEYS and ARGV of one ``fanout.lua`` run making ``run``, every
    delivery of which is in partition ``part``."""
    item_keys: list[str] = []
    item_argv: list[Any] = []
    no_endpoint, no_index = part.endpoint(""), part.endpoint_deliveries("")
    previous = -1
    for p in run:
        it = items[p.entry]
        item_keys += scripts.FanoutItemKeys(
            part.delivery(p.id),
            part.endpoint_deliveries(p.endpoint_id) if p.endpoint_id else no_index,
            part.endpoint(p.endpoint_id) if p.endpoint_id else no_endpoint,
            part.request_deliveries(it.request_id),
        )
        item_argv += scripts.FanoutItemArgv(
            p.id,
            p.target,
            p.endpoint_id,
            p.url,
            it.client,
            it.event_type,
            it.op,
            it.request_id,
            # An entry's payload goes once per run, however many deliveries it has.
            b"" if p.entry == previous else it.payload,
        )
        previous = p.entry
    return item_keys, item_argv


def leased_now(items: Sequence[FanoutItem], p: Planned, version: str, token: str) -> Claimed:
    """A new delivery that a fan-out leased to its caller (all of it is known already)."""
    item = items[p.entry]
    return Claimed(
        id=p.id,
        target=p.target,
        endpoint_id=p.endpoint_id or None,
        url=p.url or None,
        client=item.client,
        event_type=item.event_type,
        payload=item.payload,
        tries=0,
        attempts=0,
        token=token,
        endpoint_version=version,
    )


def derived_delivery_id(op: str, entry_id: str, target: str) -> str:
    """The id of an outbox entry's delivery to ``target`` (an endpoint id, or ``callback``).

    A fan-out retried after a crash names the same deliveries, which then exist already.
    """
    return "msg_" + hashlib.sha1(f"{op}/{entry_id}/{target}".encode()).hexdigest()[:26]


def _has(listed: str, item: str) -> bool:
    # The same rule as has.lua, which fanout.lua applies again when it runs.
    return item in listed.split(",")
