"""``Client`` and ``Request`` against the real service (private Redis, real HTTP)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from acceptd_client import (
    BatchItem,
    Client,
    Conflict,
    Event,
    InvalidInput,
    NotFound,
    QueueFull,
    Request,
    RequestCanceled,
    RequestFailed,
    Unauthorized,
    WaitTimeout,
)

from tests.client.conftest import Serve
from tests.client.faults import Faults, FaultyTransport

KEY = "client-test-key-0123456789"


def test_run_submit_wait_result_and_request(serve: Serve) -> None:
    service = serve()
    with Client(service.url) as client:
        assert client.run("echo", {"hello": "world"}, timeout=10) == {"hello": "world"}
        request = client.submit("echo", [1, 2], priority=3)
        assert request.operation == "echo" and request.status in ("queued", "running")
        assert request.monitor["priority"] == 3
        assert request.result(timeout=10) == [1, 2]
        again = client.request(request.id)
        assert again.status == "succeeded" and again.refresh()["id"] == request.id
        assert {op["name"] for op in client.operations()} >= {"echo", "sleep"}


def test_wait_sees_progress_and_returns_the_final_monitor(serve: Serve) -> None:
    service = serve()
    seen: list[Event] = []
    with Client(service.url) as client:
        request = client.submit("sleep", {"seconds": 0.5, "steps": 5})
        final = request.wait(timeout=10, on_event=seen.append)
    assert final["status"] == "succeeded" and request.done
    kinds = [e.event for e in seen]
    assert kinds[0] == "status" and kinds.count("progress") >= 1, kinds
    assert seen[-1].event == "status" and seen[-1].data["status"] == "succeeded"


def _state_changes(events: list[Event]) -> list[int]:
    return [int(e.id) for e in events if e.event != "position" and e.id is not None]


def test_dropped_streams_resume_without_missing_or_repeating(serve: Serve) -> None:
    service = serve()
    faults = Faults(cut_streams=3, cut_after=2)
    with Client(service.url, transport=FaultyTransport(faults)) as client:
        request = client.submit("sleep", {"seconds": 1.0, "steps": 10})
        events = list(request.events(timeout=15))
        assert request.refresh()["status"] == "succeeded"
    ids = _state_changes(events)
    assert ids == list(range(ids[0], ids[0] + len(ids))), (
        ids
    )  # consecutive: none missed or repeated
    assert len(faults.calls("GET", "/events")) >= 4  # three cut, then one to the end
    resumed = [s.headers.get("last-event-id") for s in faults.calls("GET", "/events")[1:]]
    assert all(resumed), resumed
    assert events[-1].event == "status" and events[-1].data["status"] == "succeeded"


def test_wait_resumes_a_dropped_stream(serve: Serve) -> None:
    service = serve()
    faults = Faults(cut_streams=2, cut_after=2)
    seen: list[Event] = []
    with Client(service.url, transport=FaultyTransport(faults)) as client:
        request = client.submit("sleep", {"seconds": 0.8, "steps": 8})
        assert request.wait(timeout=15, on_event=seen.append)["status"] == "succeeded"
    ids = _state_changes(seen)
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids


def test_a_lost_submit_answer_is_retried_into_the_same_request(serve: Serve) -> None:
    service = serve(worker=False)
    faults = Faults(lose_posts=1)
    with Client(service.url, transport=FaultyTransport(faults)) as client:
        request = client.submit("echo", {"n": 1})
        posts = faults.calls("POST")
        assert [p.status for p in posts] == [202, 202]
        assert posts[0].body == posts[1].body
        assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
        assert len(list(client.requests())) == 1
        assert request.id == next(iter(client.requests())).id
        # A second submit of the same input is a new request: a key per submit.
        assert client.submit("echo", {"n": 1}).id != request.id


def test_queue_full_503_honours_retry_after(serve: Serve) -> None:
    service = serve(worker=False)  # "tiny" holds 2 queued requests
    with Client(service.url, max_retries=0) as client:
        first = client.submit("tiny", 1)
        client.submit("tiny", 2)
        with pytest.raises(QueueFull) as refused:
            client.submit("tiny", 3)
    assert refused.value.status == 503 and refused.value.retry_after == 5
    faults = Faults()
    outcome: dict[str, Any] = {}
    with Client(service.url, max_retries=1, transport=FaultyTransport(faults)) as client:

        def submit() -> None:
            outcome["request"] = client.submit("tiny", 3)

        thread = threading.Thread(target=submit)
        started = time.monotonic()
        thread.start()
        deadline = time.monotonic() + 10
        while not faults.calls("POST") and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the recorded calls: the first attempt was answered
        assert [c.status for c in faults.calls("POST")] == [503]
        client.request(first.id).cancel()  # room for one more
        thread.join(15)
    assert outcome["request"].status == "queued"
    assert [c.status for c in faults.calls("POST")] == [503, 202]
    assert time.monotonic() - started >= 4.5  # waited the 5 s Retry-After asked for


def test_refused_streams_fall_back_to_polling(serve: Serve) -> None:
    service = serve(server={"max_streams_per_client": 1})
    faults = Faults()
    seen: list[Event] = []
    with Client(service.url, transport=FaultyTransport(faults)) as client:
        holder = client.submit("sleep", {"seconds": 30, "steps": 1})
        # One stream open: this client's only one; every other stream it opens gets 429.
        with httpx.stream("GET", f"{service.url}/v1/queue/requests/{holder.id}/events") as held:
            assert held.status_code == 200
            request = client.submit("sleep", {"seconds": 0.3, "steps": 1})
            assert request.wait(timeout=15, on_event=seen.append)["status"] == "succeeded"
            assert client.run("echo", 5, timeout=15) == 5
        holder.cancel()
    assert {c.status for c in faults.calls("GET", "/events")} == {429}
    assert seen and seen[-1].data["status"] == "succeeded"


def test_cancel_and_the_errors_of_a_canceled_request(serve: Serve) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        request = client.submit("echo", {"x": 1})
        assert request.cancel()["status"] == "canceled"
        assert request.wait(timeout=5)["status"] == "canceled"
        with pytest.raises(RequestCanceled) as canceled:
            request.result(timeout=5)
        assert canceled.value.request is request
        assert request.cancel()["status"] == "canceled"  # again: still 200
        with pytest.raises(NotFound):
            client.request("0" * 34)


def test_cancel_of_a_finished_request_is_a_conflict(serve: Serve) -> None:
    service = serve()
    with Client(service.url) as client:
        request = client.submit("echo", 1)
        request.wait(timeout=10)
        with pytest.raises(Conflict):
            request.cancel()


def test_failures_raise_from_their_problem_types(serve: Serve) -> None:
    service = serve()
    with Client(service.url) as client:
        with pytest.raises(RequestFailed) as failed:
            client.run("boom", {}, timeout=10)
        assert failed.value.problem["type"] == "urn:acceptd:problem:internal-error"
        assert failed.value.request is not None and failed.value.request.status == "failed"
        with pytest.raises(InvalidInput) as invalid:
            client.submit("sleep", {"seconds": "soon"})
        assert invalid.value.status == 422 and invalid.value.errors
        with pytest.raises(NotFound):
            client.submit("no-such-operation", {})


def test_retry_of_a_canceled_request_makes_a_new_one_and_of_a_queued_one_a_conflict(
    serve: Serve,
) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        first = client.submit("echo", {"x": 1}, priority=3)
        with pytest.raises(Conflict):
            first.retry()  # still queued
        first.cancel()
        second = first.retry(idempotency_key="retry-once")
        assert second.id != first.id and second.status == "queued"
        assert second.monitor.get("retry_of") == first.id
        assert first.retry(idempotency_key="retry-once").id == second.id  # keyed: no third
        assert client.request(second.id).monitor.get("priority") == 3


def test_wait_timeout_leaves_the_request_going(serve: Serve) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        request = client.submit("echo", 1)
        with pytest.raises(WaitTimeout) as timed_out:
            request.wait(timeout=0.3)
        assert timed_out.value.request is request
        with pytest.raises(WaitTimeout):
            client.run("echo", 2, timeout=0.3)
        assert client.request(request.id).status == "queued"


def test_requests_iterates_every_page(serve: Serve) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        ids = [client.submit("echo", n).id for n in range(3)]
        client.submit("sleep", {"seconds": 1})
        listed = [r.id for r in client.requests(operation="echo", page_size=1)]
        assert listed == list(reversed(ids))
        assert [r.operation for r in client.requests(status="queued")].count("sleep") == 1


def test_api_keys(serve: Serve) -> None:
    service = serve(auth={"clients": [{"name": "alice", "key": KEY}]})
    with Client(service.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.submit("echo", 1)
    with Client(service.url, api_key=KEY) as client:
        request = client.submit("sleep", {"seconds": 0.2, "steps": 2})
        seen: list[Event] = []
        assert request.wait(timeout=10, on_event=seen.append)["status"] == "succeeded"
        assert seen[0].event == "status"  # the stream was open (Bearer on the stream too)


def test_submit_many_answers_each_input_in_order_and_retries_safely(serve: Serve) -> None:
    service = serve(worker=False)
    faults = Faults(lose_posts=1)  # the first answer is lost: the retry replays every item
    with Client(service.url, transport=FaultyTransport(faults)) as client:
        out = client.submit_many(
            "sleep",
            [{"seconds": 1}, {"seconds": "soon"}, BatchItem({"seconds": 2}, priority=7)],
            priority=2,
        )
        assert len(faults.calls("POST", "/v1/sleep/batch")) == 2
        first, bad, third = out
        assert isinstance(first, Request) and isinstance(third, Request)
        assert first.monitor["priority"] == 2 and first.status == "queued"
        assert isinstance(bad, InvalidInput) and bad.problem["pointer"] == "/requests/1/input"
        assert third.monitor["priority"] == 7 and third.monitor["position"] == 0
        assert first.refresh()["position"] == 1
        # More than one call's worth goes in calls of 1,000, answered in one list.
        many = client.submit_many("echo", range(1001))
        assert [r.monitor["position"] for r in many if isinstance(r, Request)] == list(range(1001))
