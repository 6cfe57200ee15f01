"""The client's parts that need no service: Retry-After, SSE parsing, problem mapping, retry
policy and webhook signatures (checked against the ``standardwebhooks`` library)."""

from __future__ import annotations

import base64
import email.utils
from datetime import UTC, datetime

import pytest
from acceptd_client import (
    AcceptdError,
    InvalidInput,
    NotFound,
    QueueFull,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    WebhookVerificationError,
    verify_webhook,
)
from acceptd_client.core import Event, RetryPolicy, SSEParser, parse_retry_after, submit_request
from acceptd_client.errors import error_for
from standardwebhooks import Webhook

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 30.0
    assert parse_retry_after(date, now=1_000_100) == 0.0  # in the past: at once


def test_retry_policy_honours_retry_after_capped_else_jittered_backoff() -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=0.5, backoff_cap=4, max_retry_after=10)
    assert policy.delay(0, 5) == 5 and policy.delay(0, 3600) == 10
    for attempt, ceiling in ((0, 0.5), (1, 1.0), (5, 4.0)):
        assert ceiling / 2 <= policy.delay(attempt, None) <= ceiling


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = ["retry: 2000", "", ": keep-alive", "id: 3", "event: status", 'data: {"a": 1}', ""]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert events == [Event("status", "3", {"a": 1})]
    assert parser.retry_ms == 2000 and parser.last_id == "3"
    more = ["event: progress", "data: not json", "data: two", ""]
    assert [parser.feed(line) for line in more][-1] == Event("progress", "3", "not json\ntwo")


def test_submit_request_keys_each_submit_and_encodes_once() -> None:
    one, body = submit_request(
        {"é": 1},
        priority=2,
        idempotency_key=None,
        callback_url="https://example.com/h",
        callback_events=["succeeded", "failed"],
        queue_timeout=1.5,
    )
    two, _ = submit_request({"é": 1}, priority=None, idempotency_key=None, callback_url=None,
                            callback_events=None, queue_timeout=None)  # fmt: skip
    assert one["Idempotency-Key"] != two["Idempotency-Key"]
    assert one["Prefer"] == "respond-async" and one["Queue-Priority"] == "2"
    assert one["Callback-Events"] == "succeeded,failed" and one["Queue-Timeout"] == "1.5"
    assert body == '{"é":1}'.encode()


@pytest.mark.parametrize(
    ("status", "slug", "cls"),
    [
        (503, "queue-full", QueueFull),
        (503, "unavailable", ServiceUnavailable),
        (429, "rate-limited", RateLimited),
        (429, "too-many-streams", RateLimited),
        (422, "invalid-input", InvalidInput),
        (401, "unauthorized", Unauthorized),
        (404, "unknown-request", NotFound),
        (500, "internal-error", AcceptdError),
    ],
)
def test_problem_types_map_to_exceptions(status: int, slug: str, cls: type) -> None:
    problem = {"type": f"urn:acceptd:problem:{slug}", "status": status, "detail": "d",
               "errors": [{"path": "$.x", "message": "m"}]}  # fmt: skip
    error = error_for(status, problem, 5.0)
    assert type(error) is cls and error.status == status and error.retry_after == 5.0
    assert isinstance(error, AcceptdError) and error.type == problem["type"]
    if isinstance(error, InvalidInput):
        assert error.errors == [{"path": "$.x", "message": "m"}]


def test_verify_webhook_matches_standardwebhooks() -> None:
    body = b'{"type":"request.succeeded","timestamp":"t","data":{"id":"r"}}'
    now = datetime.now(tz=UTC)
    signature = Webhook(SECRET).sign("msg_1", now, body.decode())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": f"{Webhook(OTHER).sign('msg_1', now, body.decode())} {signature}",
    }
    assert verify_webhook(body, headers, SECRET)["data"] == {"id": "r"}
    assert verify_webhook(body.decode(), headers, [OTHER])["type"] == "request.succeeded"
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(body, headers, [other])
    with pytest.raises(WebhookVerificationError, match="missing header"):
        verify_webhook(body, {"webhook-id": "msg_1"}, SECRET)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(body, headers, SECRET, now=now.timestamp() - 400)
