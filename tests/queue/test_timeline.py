"""A request's timeline from its stored events, with the record's milestones for what they miss."""

from __future__ import annotations

from typing import Any

from service.queue import timeline


def rec(seq: int, status: str, updated: int, **more: Any) -> dict[str, Any]:
    return {"id": "r1", "evseq": str(seq), "status": status, "created": "1000",
            "updated": str(updated), "attempt": "1", **more}  # fmt: skip


def names(entries: list[timeline.Entry]) -> list[tuple[str, str, int]]:
    return [(e.event, e.source, e.at_ms) for e in entries]


def test_every_stored_event_says_what_changed() -> None:
    events = [
        ("status", rec(1, "queued", 1000)),
        ("status", rec(2, "running", 1100, started="1100")),
        ("progress", rec(3, "running", 1200, started="1100", progress='{"percent": 50}')),
        ("status", rec(4, "queued", 1300, started="1100", attempt="2")),  # a retry's backoff
        ("status", rec(5, "running", 1400, started="1100", attempt="2")),
        ("status", rec(6, "running", 1450, started="1100", attempt="2", cancel="1")),
        ("status", rec(7, "canceled", 1500, error='{"type": "t", "title": "Canceled"}')),
    ]
    record = {**events[-1][1], "finished": "1500", "started": "1100"}
    got = timeline.build(record, events)
    assert names(got) == [
        ("created", "events", 1000),
        ("started", "events", 1100),
        ("progress", "events", 1200),
        ("requeued", "events", 1300),
        ("started", "events", 1400),
        ("cancel_requested", "events", 1450),
        ("canceled", "events", 1500),
    ]
    assert got[2].progress == {"percent": 50} and got[4].attempt == 2
    assert got[-1].error == {"type": "t", "title": "Canceled"}


def test_a_handed_submit_is_created_and_started_at_once() -> None:
    events = [("status", rec(1, "running", 1000, started="1000"))]
    record = {**events[0][1], "progress": '{"percent": 10}', "updated": "1300"}
    got = timeline.build(record, events)
    # The progress reported since (no stream kept it) comes from the record.
    assert names(got) == [
        ("created", "events", 1000),
        ("started", "events", 1000),
        ("progress", "monitor", 1300),
    ]


def test_what_came_before_the_first_kept_event_comes_from_the_record() -> None:
    events = [("status", rec(5, "succeeded", 2000, started="1500"))]
    record = {**events[0][1], "finished": "2000"}
    assert names(timeline.build(record, events)) == [
        ("created", "monitor", 1000),
        ("started", "monitor", 1500),
        ("succeeded", "events", 2000),
    ]
    # Nothing kept at all: the milestones alone.
    assert names(timeline.build(record, [])) == [
        ("created", "monitor", 1000),
        ("started", "monitor", 1500),
        ("succeeded", "monitor", 2000),
    ]
