"""The status monitor's renderers agree with each other."""

from __future__ import annotations

import orjson
import pytest

from service.http.monitor import render, render_accepted


@pytest.mark.parametrize("retry_of", ["", "01KB0000000000000000000000000000CD"])
@pytest.mark.parametrize("started", [False, True])
@pytest.mark.parametrize(
    ("op", "position", "priority", "now"),
    [
        ("echo", 0, 0, 1_764_000_000_123),
        ("thumb-nails_2", 41, 7, 1_764_000_000_000),
        ("échos", None, 10, 86_400_000),
    ],
)
def test_accepted_template_matches_the_renderer(
    op: str, position: int | None, priority: int, now: int, started: bool, retry_of: str
) -> None:
    rid = "01KB0000000000000000000000000000AB"
    record = {
        "id": rid,
        "client": "anonymous",
        "status": "running" if started else "queued",
        "prio": str(priority),
        "attempt": "1",
        "created": str(now),
        "updated": str(now),
    }
    if started:
        record["started"] = str(now)
    if retry_of:
        record["retry_of"] = retry_of
    expected = orjson.dumps(render(op, record, position=position, eta=None))
    accepted = render_accepted(op, rid, position, priority, now, started=started, retry_of=retry_of)
    assert accepted == expected
