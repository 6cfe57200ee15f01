"""Verifying the webhooks acceptd sends (Standard Webhooks signatures), secrets rotating."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from acceptd_client.errors import WebhookVerificationError

TOLERANCE_SECONDS = 300  # the Standard Webhooks default: a replay window of 5 minutes


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("a webhook secret is not whsec_ + base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery with one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secrets: str | Sequence[str],
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event of a verified delivery (``{"type", "timestamp", "data"}``).

    ``secrets`` is one secret or several (during a rotation both the old and the new one
    verify). Raises ``WebhookVerificationError`` on a missing header, a stale or future
    timestamp (beyond ``tolerance`` seconds) or a signature no secret made.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, signatures = (
            lower["webhook-id"],
            lower["webhook-timestamp"],
            lower["webhook-signature"],
        )
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or too new")
    offered = {s.partition(",")[2] for s in signatures.split() if s.startswith("v1,")}
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        expected = sign(secret, msg_id, timestamp, raw).partition(",")[2]
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise WebhookVerificationError("the body is not a JSON object")
            return event
    raise WebhookVerificationError("no signature matches the secrets given")
