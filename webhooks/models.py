"""Webhook records as the package passes them around, and their client-facing shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from service.queue.times import rfc3339


@dataclass(frozen=True)
class Endpoint:
    """A client's webhook subscription; ``secret`` is set only right after create or rotate."""

    id: str
    client: str
    url: str
    events: list[str]
    operations: list[str]
    description: str
    created_at: int
    disabled: bool
    disabled_reason: str | None
    secret: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The representation clients see."""
        doc: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "operations": self.operations,
            "description": self.description,
            "created_at": rfc3339(self.created_at),
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
        }
        if self.secret is not None:
            doc["secret"] = self.secret
        return doc


@dataclass(frozen=True)
class Delivery:
    """One event bound for one target, with its attempt log."""

    id: str
    client: str
    endpoint_id: str | None
    url: str | None
    event_type: str
    operation: str
    request_id: str
    status: str
    created_at: int
    next_attempt_at: int | None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The representation clients see."""
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "url": self.url,
            "event_type": self.event_type,
            "operation": self.operation,
            "request_id": self.request_id,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "next_attempt_at": rfc3339(self.next_attempt_at),
            "attempts": [
                {
                    **a,
                    "at": rfc3339(a.get("at")),
                    "next_attempt_at": rfc3339(a.get("next_attempt_at")),
                }
                for a in self.attempts
            ],
        }


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to one dispatcher for one attempt."""

    id: str
    target: str
    endpoint_id: str | None
    url: str | None
    client: str
    event_type: str
    payload: bytes
    tries: int
    attempts: int
    token: str
    endpoint_version: str = "0"


@dataclass(frozen=True)
class SendTarget:
    """Where an endpoint's delivery goes and the secrets that sign it."""

    url: str
    secrets: list[str]  # the current one, then the previous one (see ``old_until``)
    disabled: bool
    old_until: int = 0  # ms; until then the previous secret signs too

    def live(self, now_ms: int) -> list[str]:
        """The secrets that sign at ``now_ms``: a target stays valid as its old secret expires."""
        return self.secrets if now_ms < self.old_until else self.secrets[:1]


def split_list(value: str | None) -> list[str]:
    """A stored comma list as a list."""
    return [v for v in (value or "").split(",") if v]


def endpoint_from_hash(raw: dict[str, str]) -> Endpoint:
    """An endpoint from its decoded Redis hash (without secrets)."""
    return Endpoint(
        id=raw["id"],
        client=raw["client"],
        url=raw["url"],
        events=split_list(raw.get("events")),
        operations=split_list(raw.get("operations")),
        description=raw.get("description", ""),
        created_at=int(raw.get("created") or 0),
        disabled=raw.get("disabled") == "1",
        disabled_reason=raw.get("disabled_reason") or None,
    )


def delivery_from_hash(row: dict[str, str], log: list[Any]) -> Delivery:
    """A delivery from its decoded Redis hash and attempt log."""
    return Delivery(
        id=row["id"],
        client=row["client"],
        endpoint_id=row.get("ep") or None,
        url=row.get("url") or None,
        event_type=row.get("type", ""),
        operation=row.get("op", ""),
        request_id=row.get("rid", ""),
        status=row.get("status", ""),
        created_at=int(row.get("created") or 0),
        next_attempt_at=int(row["next_at"]) if row.get("next_at") else None,
        attempts=[json.loads(text(entry)) for entry in log],
    )


def decode(raw: Any) -> dict[str, str]:
    """A Redis hash reply as text (clients may or may not decode responses)."""
    return {text(k): text(v) for k, v in (raw or {}).items()}


def text(value: Any) -> str:
    """A Redis reply value as text; None as empty."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
