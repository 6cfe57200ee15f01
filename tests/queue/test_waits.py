"""A synchronous caller's wait for a request to finish, fed by the event hub's routing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
import redis.asyncio as aredis

from service.queue import keys
from service.queue.events import EventHub
from service.queue.store import Snapshot
from service.queue.waits import TerminalWait


@pytest.fixture
def hub(redis_client: aredis.Redis) -> EventHub:
    # Not started: the tests hand messages to its routing as the subscription would.
    return EventHub(redis_client, ["echo"])


def publish(hub: EventHub, rid: str, status: str, result: str | None = None) -> None:
    body = {"kind": "status", "rec": {"id": rid, "status": status}, "res": result}
    hub.dispatch(
        keys.watched_channel("echo").encode(), f"{rid} alice - ".encode() + orjson.dumps(body)
    )


class Reads:
    """A stand-in for the re-read from Redis that counts its calls."""

    def __init__(self, status: str, then: Callable[[], None] | None = None) -> None:
        self.status = status
        self.calls = 0
        self.then = then

    async def __call__(self) -> Snapshot:
        self.calls += 1
        if self.then is not None:
            asyncio.get_running_loop().call_soon(self.then)
        return Snapshot({"status": self.status}, None, 0, 0, None)


async def test_a_terminal_event_with_its_result_answers_without_a_read(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    reads = Reads("queued")
    asyncio.get_running_loop().call_soon(publish, hub, "r1", "succeeded", '{"ok":1}')
    snap = await wait.until_terminal(5, reads)
    wait.close()
    assert snap.record["status"] == "succeeded" and snap.result == '{"ok":1}'
    assert reads.calls == 0


async def test_a_finish_before_the_wait_starts_is_not_missed(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    publish(hub, "r1", "failed")  # between the submit and the wait
    snap = await wait.until_terminal(5, Reads("queued"))
    wait.close()
    assert snap.record["status"] == "failed"


async def test_a_result_too_large_for_the_event_is_read(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    reads = Reads("succeeded")
    asyncio.get_running_loop().call_soon(publish, hub, "r1", "succeeded", None)
    snap = await wait.until_terminal(5, reads)
    wait.close()
    assert snap.record["status"] == "succeeded" and reads.calls == 1


async def test_the_deadline_answers_with_a_fresh_read(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    reads = Reads("running")
    publish(hub, "r1", "running")  # not terminal: no answer
    snap = await wait.until_terminal(0.05, reads)
    wait.close()
    assert snap.record["status"] == "running" and reads.calls == 1


async def test_a_replay_follows_the_first_request_and_reads_it_first(hub: EventHub) -> None:
    wait = TerminalWait(hub, "new")
    wait.follow("first")
    publish(hub, "new", "succeeded", "1")  # the id the replay did not create: ignored
    done = await wait.until_terminal(5, Reads("succeeded"), read_first=True)
    assert done.record["status"] == "succeeded"
    reads = Reads("running")
    asyncio.get_running_loop().call_soon(publish, hub, "first", "canceled")
    snap = await wait.until_terminal(5, reads, read_first=True)
    wait.close()
    assert snap.record["status"] == "canceled" and reads.calls == 1
    assert "first" not in hub._by_request and "new" not in hub._by_request


async def test_after_a_resync_it_reads_and_waits_for_the_rest_of_the_time(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    # The finish arrives right after the read that follows the resync.
    reads = Reads("running", then=lambda: publish(hub, "r1", "succeeded", "2"))
    asyncio.get_running_loop().call_soon(hub._resync)
    snap = await wait.until_terminal(5, reads)
    wait.close()
    assert snap.record["status"] == "succeeded" and snap.result == "2"
    assert reads.calls == 1


async def test_a_resync_that_finds_it_finished_answers_from_the_read(hub: EventHub) -> None:
    wait = TerminalWait(hub, "r1")
    reads = Reads("failed")
    asyncio.get_running_loop().call_soon(hub._resync)
    snap = await wait.until_terminal(5, reads)
    wait.close()
    assert snap.record["status"] == "failed" and reads.calls == 1


async def test_an_event_after_the_deadline_or_a_cancelled_wait_is_ignored(hub: EventHub) -> None:
    # The deadline answers with a read; the outcome arriving later finds the wait over.
    wait = TerminalWait(hub, "r1")
    snap = await wait.until_terminal(0.01, Reads("running"))
    assert snap.record["status"] == "running"
    publish(hub, "r1", "succeeded", "1")
    wait.close()
    # A wait cancelled (its client went away) leaves nothing behind that an event could trip.
    wait = TerminalWait(hub, "r2")
    task = asyncio.create_task(wait.until_terminal(5, Reads("queued")))
    await asyncio.sleep(0)  # the task is now waiting for its event
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    publish(hub, "r2", "succeeded", "1")
    wait.close()
    assert "r1" not in hub._by_request and "r2" not in hub._by_request
