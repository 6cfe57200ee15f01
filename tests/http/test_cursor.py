"""The all-requests stream's event ids (service.http.cursor), without a server."""

from __future__ import annotations

import pytest

from service.http import cursor
from service.http.cursor import MAX_LENGTH, MAX_SEQ, BadCursor, Cursor, parse

KEYS = ["acceptd:{hot}:cev:a", "acceptd:{hot~1}:cev:a", "acceptd:{echo}:cev:a"]


def test_a_cursor_reads_back_as_the_positions_it_holds() -> None:
    at = cursor.fresh(KEYS, 1_700_000_000_000, [None, (1_700_000_000_000, 3), None])
    assert at.position(0) == (1_699_999_999_999, MAX_SEQ)
    assert at.position(1) == (1_700_000_000_000, 3)
    at.advance(2, (1_700_000_000_000, 0))
    at.advance(0, (1_700_000_000_005, 2**63))
    text = at.text()
    assert text.startswith("v1.") and len(text) < 80
    again = parse(text, KEYS)
    assert [again.position(i) for i in range(3)] == [at.position(i) for i in range(3)]
    assert again.text() == text  # the same position reads the same, whatever the order


def test_entries_are_in_stream_order_whatever_the_order_events_came_in() -> None:
    one, two = Cursor(KEYS, (10, 0)), Cursor(KEYS, (10, 0))
    for i, pos in [(2, (12, 0)), (0, (11, 1))]:
        one.advance(i, pos)
    for i, pos in [(0, (11, 1)), (2, (12, 0))]:
        two.advance(i, pos)
    assert one.text() == two.text()


def test_a_plain_id_applies_to_every_stream() -> None:
    at = parse("1795908727450-3", KEYS)
    assert [at.position(i) for i in range(3)] == [(1795908727450, 3)] * 3
    assert parse("1795908727450", KEYS).position(1) == (1795908727450, 0)


def test_one_stream_keeps_its_plain_ids() -> None:
    at = parse("1795908727450-3", KEYS[:1])
    at.advance(0, (1795908727451, 0))
    assert at.text("1795908727451-0") == "1795908727451-0"
    assert at.position(0) == (1795908727451, 0)


def test_another_subscriptions_cursor_resumes_from_its_base() -> None:
    at = Cursor(KEYS, (100, 5))
    at.advance(1, (200, 0))
    other = parse(at.text(), KEYS[:2])  # same text, other streams: its fingerprint differs
    assert other.positions == {} and other.position(0) == other.position(1) == (100, 5)


@pytest.mark.parametrize(
    "value",
    [
        "v1.",
        "v1.0000000.1",  # fingerprint of 7
        "v1.0000000g.1",
        "V1.00000000.1",
        "v2.00000000.1",
        "v1.00000000.1.",
        "v1.00000000.1.1",
        "v1.00000000.1.1_",
        "v1.00000000.1.1_2-",
        "v1.00000000.1-10000000000000000",  # sequence past 64 bits
        "v1.00000000.1.2_1.1_1",  # indexes out of order
        "v1.00000000.1.1_1.1_2",  # twice
        "v1.00000000.5-3.1_0-1",  # below the base
        "v1.00000000.1" + ".0_1" * 2000,  # too long
        "1795908727450-99999999999999999999",
    ],
)
def test_malformed_cursors_are_refused(value: str) -> None:
    with pytest.raises(BadCursor):
        parse(value, KEYS)


def test_an_index_past_the_streams_is_refused() -> None:
    at = Cursor(KEYS, (10, 0))
    text = at.text().split(".")
    bad = ".".join([*text[:3], "3_1"])
    with pytest.raises(BadCursor):
        parse(bad, KEYS)


def test_a_cursor_stays_short_enough_to_come_back() -> None:
    many = [f"acceptd:{{op{i}}}:cev:a" for i in range(1000)]
    at = Cursor(many, (1_700_000_000_000, 0))
    for i in range(1000):
        at.advance(i, (1_700_000_000_000 + 10_000_000 + i, 2**40))
    text = at.text()
    assert len(text) <= MAX_LENGTH
    back = parse(text, many)
    # The streams it had to forget are the ones furthest behind: they resume from the base.
    kept = sorted(back.positions)
    assert kept == list(range(1000 - len(kept), 1000))
    assert back.position(0) == (1_700_000_000_000, 0)
