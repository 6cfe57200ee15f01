"""Every Redis key of the webhook package, built in one place.

Webhook data is global (not per operation), so all of it shares the hash tag ``{wh}``: every
script touches one Redis Cluster slot. The per-operation ``outbox`` and ``hooked`` keys belong to
the core and are named by :mod:`service.queue.keys`.
"""

from __future__ import annotations

from service.queue import keys as core_keys

TAG = "wh"
# Built once: scripts are given every key they touch, several per call (fanout: per delivery).
_PREFIX = core_keys.prefix(TAG)


def key(*parts: str) -> str:
    """A webhook key: ``acceptd:{wh}:part:part``."""
    return _PREFIX + ":".join(parts)


def endpoint(endpoint_id: str) -> str:
    """The hash holding one endpoint."""
    return key("ep", endpoint_id)


def client_endpoints(client: str) -> str:
    """A client's endpoint ids, scored by creation time."""
    return key("eps", client)


def default_secret(client: str) -> str:
    """A client's default secret (signs per-request callbacks)."""
    return key("secret", client)


def delivery(delivery_id: str) -> str:
    """The hash holding one delivery."""
    return key("d", delivery_id)


def delivery_log(delivery_id: str) -> str:
    """The list of a delivery's attempts (JSON objects, oldest first)."""
    return key("dlog", delivery_id)


def endpoint_deliveries(endpoint_id: str) -> str:
    """An endpoint's delivery ids, scored by creation time (capped)."""
    return key("epd", endpoint_id)


def request_deliveries(request_id: str) -> str:
    """A request's delivery ids (endpoints' and its callback's), scored by creation time (capped).

    It expires with the deliveries it names (refreshed at each fan-out of the request).
    """
    return key("rqd", request_id)


def due() -> str:
    """Pending deliveries (see :func:`due_member`), scored by their next attempt time (ms)."""
    return _DUE


def due_member(delivery_id: str, target: str) -> str:
    """A delivery's member in :func:`due`: its id and target (``member.lua`` builds it alike).

    The target lets a claim check its free slots, and name its endpoint's key, unread.
    """
    return f"{delivery_id}\n{target}"


def split_due_member(member: str) -> tuple[str, str]:
    """The delivery id and target of a member of :func:`due`."""
    delivery_id, _, target = member.partition("\n")
    return delivery_id, target


CALLBACK_TARGET = "cb:"
"""How a callback's target (its url's origin) starts; an endpoint's deliveries target its id."""


def target_endpoint(target: str) -> str:
    """The endpoint id a delivery's target names ('' for a callback's)."""
    return "" if target.startswith(CALLBACK_TARGET) else target


def inflight() -> str:
    """Leased delivery ids, scored by their lease deadline (ms)."""
    return _INFLIGHT


def busy() -> str:
    """The hash of sends in flight per target (endpoint id or callback origin)."""
    return _BUSY


def wake() -> str:
    """The list idle dispatchers block on; it holds at most one marker."""
    return _WAKE


_DUE, _INFLIGHT, _BUSY, _WAKE = key("due"), key("inflight"), key("busy"), key("wake")


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
