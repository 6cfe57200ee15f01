"""Every Redis key of the webhook package, built in one place.

Webhook data is global (not per operation) and spread over **partitions**, each under a hash
tag of its own: partition 0 is ``{wh}`` (the one tag of every release before partitions, so a
one-partition deployment's keys never moved), partition ``k`` is ``{wh~k}`` or ``{wh~k.n}`` —
the first that falls in its own Pth of the slot space (:func:`service.queue.keys.shard_tag`),
so P partitions spread evenly over masters owning equal slot ranges. What belongs together
lives in one partition, so every script touches one slot:

- an endpoint, its delivery index, and every delivery *to* it (hash, attempt log, due and
  in-flight entries, its send counter) live in the partition of the endpoint id;
- a per-request callback's deliveries live in the partition of their target (the callback
  url's origin), so the per-origin concurrency limit stays one counter;
- a client's endpoint list and default secret live in the partition of the client's name;
- a request's delivery index is kept per partition (each fan-out script writes its own);
  reading it merges the partitions.

The per-operation ``outbox`` and ``hooked`` keys belong to the core and are named by
:mod:`service.queue.keys`.
"""

from __future__ import annotations

import functools
import zlib

from service.queue import keys as core_keys

TAG = "wh"
MAX_PARTITIONS = 256
CLUSTER_PARTITIONS = 16
"""Partitions on a cluster unless ``webhooks.partitions`` says otherwise (one on one node)."""


class Part:
    """The keys of one webhook partition."""

    __slots__ = ("busy", "due", "index", "inflight", "prefix", "tag", "wake")

    def __init__(self, index: int, tag: str) -> None:
        self.index = index
        self.tag = tag
        # Built once: scripts are given every key they touch, several per call.
        self.prefix = core_keys.prefix(tag)
        self.due = self.key("due")
        """Pending deliveries (see :func:`due_member`), scored by their next attempt time (ms)."""
        self.inflight = self.key("inflight")
        """Leased delivery ids, scored by their lease deadline (ms)."""
        self.busy = self.key("busy")
        """The hash of sends in flight per target (endpoint id or callback origin)."""
        self.wake = self.key("wake")
        """The list idle dispatchers block on; it holds at most one marker."""

    def __repr__(self) -> str:
        return f"Part({self.index}, {self.tag!r})"

    def key(self, *parts: str) -> str:
        """A key of this partition: ``acceptd:{wh…}:part:part``."""
        return self.prefix + ":".join(parts)

    def endpoint(self, endpoint_id: str) -> str:
        """The hash holding one endpoint."""
        return self.prefix + "ep:" + endpoint_id

    def client_endpoints(self, client: str) -> str:
        """A client's endpoint ids, scored by creation time."""
        return self.prefix + "eps:" + client

    def default_secret(self, client: str) -> str:
        """A client's default secret (signs per-request callbacks)."""
        return self.prefix + "secret:" + client

    def delivery(self, delivery_id: str) -> str:
        """The hash holding one delivery."""
        return self.prefix + "d:" + delivery_id

    def delivery_log(self, delivery_id: str) -> str:
        """The list of a delivery's attempts (JSON objects, oldest first)."""
        return self.prefix + "dlog:" + delivery_id

    def endpoint_deliveries(self, endpoint_id: str) -> str:
        """An endpoint's delivery ids, scored by creation time (capped)."""
        return self.prefix + "epd:" + endpoint_id

    def request_deliveries(self, request_id: str) -> str:
        """This partition's share of a request's delivery ids, scored by creation time (capped).

        It expires with the deliveries it names (refreshed at each fan-out of the request).
        """
        return self.prefix + "rqd:" + request_id

    def layout(self) -> str:
        """Partition 0 only: how many partitions the data is laid out in (absent: one)."""
        return self.prefix + "partitions"

    def moving(self) -> str:
        """Partition 0 only: held (with an expiry) while a dispatcher moves data between
        partitions, so only one does."""
        return self.prefix + "repartitioning"


class Partitions:
    """The ``count`` webhook partitions, and which one a name belongs to."""

    def __init__(self, count: int) -> None:
        if not 1 <= count <= MAX_PARTITIONS:
            raise ValueError(f"webhook partitions: 1 to {MAX_PARTITIONS}, not {count}")
        self.count = count
        self.parts = tuple(Part(k, t) for k, t in enumerate(core_keys.shard_tags(TAG, count)))
        self.first = self.parts[0]

    def of(self, name: str) -> Part:
        """The partition of an endpoint id, a delivery target or a client name."""
        if self.count == 1:
            return self.first
        return self.parts[zlib.crc32(name.encode()) % self.count]


@functools.lru_cache(maxsize=8)
def partitions(count: int) -> Partitions:
    """The layout of ``count`` partitions (shared: it is immutable)."""
    return Partitions(count)


def due_member(delivery_id: str, target: str) -> str:
    """A delivery's member in a due set: its id and target (``member.lua`` builds it alike).

    The target lets a claim check its free slots, and name its endpoint's key, unread.
    """
    return f"{delivery_id}\n{target}"


def split_due_member(member: str) -> tuple[str, str]:
    """The delivery id and target of a member of a due set."""
    delivery_id, _, target = member.partition("\n")
    return delivery_id, target


CALLBACK_TARGET = "cb:"
"""How a callback's target (its url's origin) starts; an endpoint's deliveries target its id."""


def target_endpoint(target: str) -> str:
    """The endpoint id a delivery's target names ('' for a callback's)."""
    return "" if target.startswith(CALLBACK_TARGET) else target


def outbox(op: str) -> str:
    """The core's stream of webhook events for operation ``op``."""
    return core_keys.outbox(op)


def shard_tags(op: str, shards: int) -> tuple[str, ...]:
    """The tags of the core's shards of ``op`` (``(op,)`` unsharded): each has an outbox."""
    return core_keys.shard_tags(op, shards)


def hooked(op: str, event_type: str) -> str:
    """The core's set of clients with an endpoint for ``event_type`` (``request.<status>``).

    The core writes an outbox entry for a state change only when the client is in its set, so
    events no endpoint wants (most often ``request.running``) cost the dispatcher nothing.
    """
    return core_keys.hooked(op, event_type.removeprefix("request."))
