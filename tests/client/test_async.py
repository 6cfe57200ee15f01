"""``AsyncClient`` and webhook verification against the real service."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from acceptd_client import (
    AsyncClient,
    Event,
    RequestCanceled,
    RequestFailed,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from standardwebhooks import Webhook

from tests.client.conftest import Serve
from tests.client.faults import AsyncFaultyTransport, Faults
from tests.support.webhooks import Receiver, wait_until


async def test_async_run_result_listing_and_cancel(serve: Serve) -> None:
    service = serve()
    async with AsyncClient(service.url) as client:
        assert await client.run("echo", {"a": 1}, timeout=10) == {"a": 1}
        request = await client.submit("sleep", {"seconds": 30, "steps": 1})
        with pytest.raises(WaitTimeout):
            await request.wait(timeout=0.2)
        assert (await request.cancel())["status"] in ("canceled", "running")
        with pytest.raises(RequestCanceled):
            await request.result(timeout=10)
        again = await client.request(request.id)
        assert again.status == "canceled" and (await again.refresh())["id"] == request.id
        assert [r.id async for r in client.requests(status="canceled")] == [request.id]
        retried = await request.retry()
        assert retried.id != request.id and retried.monitor.get("retry_of") == request.id
        assert (await retried.cancel())["status"] in ("canceled", "running", "queued")
        assert {op["name"] for op in await client.operations()} >= {"echo"}
        with pytest.raises(RequestFailed):
            await client.run("boom", {}, timeout=10)


async def test_async_events_resume_and_lost_submit_answer(serve: Serve) -> None:
    service = serve()
    faults = Faults(lose_posts=1, cut_streams=2, cut_after=2)
    seen: list[Event] = []

    async def on_event(event: Event) -> None:
        seen.append(event)

    async with AsyncClient(service.url, transport=AsyncFaultyTransport(faults)) as client:
        request = await client.submit("sleep", {"seconds": 0.8, "steps": 8})
        posts = faults.calls("POST")
        assert [p.status for p in posts] == [202, 202] and posts[0].body == posts[1].body
        assert [r.id async for r in client.requests()] == [request.id]
        assert (await request.wait(timeout=15, on_event=on_event))["status"] == "succeeded"
        events = [e async for e in request.events(timeout=5)]  # finished: its state, once
    ids = [int(e.id) for e in seen if e.event != "position" and e.id is not None]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    assert len(faults.calls("GET", "/events")) >= 3
    assert [e.event for e in events] == ["status"] and events[0].data["status"] == "succeeded"


async def test_webhooks_verify_with_two_live_secrets(serve: Serve) -> None:
    async with Receiver() as receiver:
        service = serve(dispatcher=True, webhooks={"allow_networks": ["127.0.0.0/8"]})
        async with httpx.AsyncClient(base_url=service.url) as http:
            made = await http.post("/v1/webhooks/endpoints", json={"url": receiver.url + "/h"})
            assert made.status_code == 201, made.text
            old = made.json()["secret"]
            rotated = await http.post(f"/v1/webhooks/endpoints/{made.json()['id']}/rotate-secret")
            new = rotated.json()["secret"]
        async with AsyncClient(service.url) as client:
            request = await client.submit("echo", {"paid": True})
            await request.wait(timeout=10)
        await wait_until(lambda: bool(receiver.received), timeout=10)
    delivery = receiver.received[0]
    body, headers = delivery.body, delivery.headers
    assert len(headers["webhook-signature"].split()) == 2  # both secrets sign
    wrong = "whsec_" + base64.b64encode(b"w" * 32).decode()
    for secrets in (old, new, [old, new], [wrong, new], (wrong, old)):
        event = verify_webhook(body, headers, secrets)
        assert event["type"] == "request.succeeded" and event["data"]["id"] == request.id
    assert event == json.loads(body) == Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, wrong)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body + b" ", headers, [old, new])
    stamp = int(headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError, match="old or too new"):
        verify_webhook(body, headers, new, now=stamp + 301)


async def test_async_submit_many(serve: Serve) -> None:
    service = serve()
    async with AsyncClient(service.url) as client:
        out = await client.submit_many("echo", [{"n": 1}, {"n": 2}])
        results = []
        for request in out:
            assert not isinstance(request, Exception)
            results.append(await request.result(timeout=10))
        assert results == [{"n": 1}, {"n": 2}]
