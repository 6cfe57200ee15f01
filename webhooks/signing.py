"""Standard Webhooks signatures: pure functions, no I/O.

Signing uses the ``standardwebhooks`` package (``Webhook(secret).sign``), the same code receivers
verify with, so sender and verifier cannot drift apart; it is a dependency-free module already
required by the service. Secrets are never logged or put in exception messages.
"""

from __future__ import annotations

import base64
import functools
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "acceptd-webhooks/0.1"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<b64>`` per live secret, space-separated."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    # The library signs text; bodies are JSON, so always valid UTF-8.
    text = body.decode()
    return " ".join(_signer(secret).sign(msg_id, when, text) for secret in secrets)


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    # Parsing a secret (base64) once per secret, not once per delivery.
    return Webhook(secret)


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    """The headers of one signed delivery attempt."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
