"""Signing: what we send verifies with the standardwebhooks library receivers use."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.signing import headers, new_secret, sign

BODY = b'{"type":"request.succeeded","data":{"id":"r1","result":"\xc3\xa9"}}'


def test_new_secret_is_prefixed_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signature_verifies() -> None:
    secret = new_secret()
    ts = int(time.time())
    hdrs = headers("msg_1", ts, sign([secret], "msg_1", ts, BODY))
    assert hdrs["webhook-id"] == "msg_1"
    assert hdrs["webhook-timestamp"] == str(ts)
    assert hdrs["content-type"] == "application/json"
    assert hdrs["user-agent"].startswith("acceptd-webhooks/")
    assert Webhook(secret).verify(BODY, hdrs)["data"]["id"] == "r1"


def test_every_live_secret_signs() -> None:
    old, new = new_secret(), new_secret()
    ts = int(time.time())
    signature = sign([new, old], "msg_2", ts, BODY)
    assert len(signature.split(" ")) == 2
    assert all(part.startswith("v1,") for part in signature.split(" "))
    hdrs = headers("msg_2", ts, signature)
    Webhook(old).verify(BODY, hdrs)
    Webhook(new).verify(BODY, hdrs)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, hdrs)


def test_tampering_fails_verification() -> None:
    secret = new_secret()
    ts = int(time.time())
    hdrs = headers("msg_3", ts, sign([secret], "msg_3", ts, BODY))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"r1", b"r2"), hdrs)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**hdrs, "webhook-id": "msg_4"})


def test_signatures_equal_the_reference_implementation() -> None:
    # The standardwebhooks package's own sign is the reference our fast path must match.
    for body in (BODY, b"{}", "é".encode() * 300):
        secret = new_secret()
        ts = int(time.time())
        when = datetime.fromtimestamp(ts, tz=UTC)
        expected = Webhook(secret).sign("msg_9", when, body.decode())
        assert sign([secret], "msg_9", ts, body) == expected


def test_no_secret_is_an_error() -> None:
    with pytest.raises(ValueError):
        sign([], "msg_5", 0, BODY)
