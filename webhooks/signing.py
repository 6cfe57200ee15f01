"""Standard Webhooks signatures: pure functions, no I/O.

Signatures are HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the standard library's one-shot
``hmac.digest`` (OpenSSL, no Python HMAC object). The ``standardwebhooks`` package's own
``Webhook.sign`` computes the same value but costs twice as much per call (it goes through a
``datetime`` and a text copy of the body), and the dispatcher signs every attempt. That package
stays the oracle: the tests check our signatures against its ``sign`` and verify every delivery
with its ``verify``, so the two cannot drift apart. Secrets are never logged or put in exception
messages.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets as _secrets
from collections.abc import Sequence

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
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(_key(secret), signed, "sha256")).decode()
        for secret in secrets
    )


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    # Parsing a secret (base64) once per secret, not once per delivery. Unpadded base64 is
    # accepted, as the spec's libraries do.
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    """The headers of one signed delivery attempt."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
