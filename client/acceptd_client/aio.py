"""The asyncio client: ``AsyncClient`` and the ``AsyncRequest`` handles it returns (the same
API as the synchronous one in ``sync.py``, awaited)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from types import TracebackType
from typing import Any, cast

import httpx

from acceptd_client import core
from acceptd_client.core import Event, Monitor, RetryPolicy
from acceptd_client.errors import AcceptdError, ConnectionFailed, WaitTimeout

log = logging.getLogger("acceptd_client")

OnEvent = Callable[[Event], Awaitable[None] | None]


class _Refused(Exception):
    """The event stream was refused; poll instead (or retry the stream after ``delay``)."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay


class AsyncClient:
    """An asyncio acceptd client; an async context manager (closes its connections)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        *,
        max_retry_after: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.policy = RetryPolicy(max_retries=max_retries, max_retry_after=max_retry_after)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=core.base_headers(api_key),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    # -- plumbing ------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One call with retries: GET/DELETE and keyed POSTs on connection errors, 429 and
        502-504, waiting ``Retry-After`` when given, else a jittered backoff."""
        may_retry = core.retryable(method, headers or {})
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    method, url, content=content, headers=headers, params=params
                )
            except httpx.TransportError as exc:
                if not may_retry or attempt >= self.policy.max_retries:
                    raise ConnectionFailed(f"{method} {url}: {exc!r}") from exc
                delay = self.policy.delay(attempt, None)
                log.info("retrying %s %s in %.2f s after %r", method, url, delay, exc)
            else:
                if (
                    response.status_code not in core.RETRY_STATUSES
                    or not may_retry
                    or attempt >= self.policy.max_retries
                ):
                    return response
                asked = core.parse_retry_after(response.headers.get("Retry-After"))
                delay = self.policy.delay(attempt, asked)
                log.info("retrying %s %s in %.2f s after HTTP %d", method, url, delay,
                         response.status_code)  # fmt: skip
            attempt += 1
            await asyncio.sleep(delay)

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> Any:
        """GET a JSON resource (errors raised as exceptions)."""
        return core.json_of(await self.send("GET", url, params=params))

    # -- the API -------------------------------------------------------------------------------

    async def submit(
        self,
        operation: str,
        input: Any,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        callback_events: Sequence[str] | str | None = None,
        queue_timeout: float | None = None,
    ) -> AsyncRequest:
        """Queue ``input`` for ``operation``; the request at once (always ``respond-async``).

        An ``Idempotency-Key`` is generated when none is given: a retry after a lost answer
        resends the same bytes with the same key and gets the same request back.
        """
        headers, body = core.submit_request(
            input,
            priority=priority,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            callback_events=callback_events,
            queue_timeout=queue_timeout,
        )
        monitor = core.json_of(
            await self.send("POST", f"/v1/{operation}", content=body, headers=headers)
        )
        return AsyncRequest(self, cast(Monitor, monitor))

    async def submit_many(
        self,
        operation: str,
        inputs: Iterable[Any],
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        callback_events: Sequence[str] | str | None = None,
        queue_timeout: float | None = None,
    ) -> list[AsyncRequest | AcceptdError]:
        """Queue many inputs for ``operation`` (bulk submit, 1,000 per call): in order, each
        one's request, or the error that refused it (``InvalidInput``, ``QueueFull``,
        ``RateLimited``…; returned, not raised). An entry may be a ``BatchItem`` with settings
        of its own; the keyword arguments apply to the others. An error of a whole call (bad
        header, unreachable service) is raised.
        """
        out: list[AsyncRequest | AcceptdError] = []
        for headers, body in core.batch_requests(
            inputs,
            priority=priority,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            callback_events=callback_events,
            queue_timeout=queue_timeout,
        ):
            response = await self.send(
                "POST", f"/v1/{operation}/batch", content=body, headers=headers
            )
            for answer in core.batch_answers(response):
                if isinstance(answer, AcceptdError):
                    out.append(answer)
                else:
                    out.append(AsyncRequest(self, cast(Monitor, answer)))
        return out

    async def run(
        self, operation: str, input: Any, *, timeout: float | None = None, **submit: Any
    ) -> Any:
        """Submit, wait and return the result; raises ``RequestFailed``, ``RequestCanceled`` or
        ``WaitTimeout`` (the request goes on)."""
        deadline = core.deadline_of(timeout)
        request = await self.submit(operation, input, **submit)
        return await request.result(timeout=core.remaining(deadline))

    async def request(self, request_id: str) -> AsyncRequest:
        """The request with this id (its current monitor)."""
        monitor = await self.get_json(f"/v1/queue/requests/{request_id}")
        return AsyncRequest(self, cast(Monitor, monitor))

    async def requests(
        self, status: str | None = None, operation: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[AsyncRequest]:
        """This client's requests, newest first, across every page of the listing."""
        params = {"limit": str(page_size)}
        if status is not None:
            params["status"] = status
        if operation is not None:
            params["operation"] = operation
        while True:
            page = await self.get_json("/v1/queue/requests", params)
            for item in page["items"]:
                yield AsyncRequest(self, item)
            if not page.get("next"):
                return
            params["cursor"] = page["next"]

    async def operations(self) -> list[dict[str, Any]]:
        """The operations the service offers, with their input schemas."""
        body = await self.get_json("/v1/operations")
        return list(body["items"])

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncRequest:
    """One request: its id, operation and last known status monitor."""

    def __init__(self, client: AsyncClient, monitor: Monitor) -> None:
        self.client = client
        self.monitor: Monitor = monitor
        self.id: str = monitor["id"]
        self.operation: str = monitor["operation"]

    def __repr__(self) -> str:
        return f"<AsyncRequest {self.id} {self.operation} {self.status}>"

    @property
    def status(self) -> str:
        """The last known status."""
        return str(self.monitor.get("status", ""))

    @property
    def done(self) -> bool:
        """Whether the last known status is terminal."""
        return core.is_terminal(self.monitor)

    async def refresh(self) -> Monitor:
        """Read the status monitor again."""
        self.monitor = cast(Monitor, await self.client.get_json(f"/v1/queue/requests/{self.id}"))
        return self.monitor

    async def cancel(self) -> Monitor:
        """Cancel: a queued request at once, a running one once its handler stops.

        Raises ``Conflict`` when the request already succeeded or failed.
        """
        response = await self.client.send("DELETE", f"/v1/queue/requests/{self.id}")
        self.monitor = cast(Monitor, core.json_of(response))
        return self.monitor

    async def retry(self, *, idempotency_key: str | None = None) -> AsyncRequest:
        """A new request with this one's operation, input and priority (its monitor's
        ``retry_of`` names this one). Only a failed or canceled request can be retried:
        ``Conflict`` otherwise."""
        response = await self.client.send(
            "POST",
            f"/v1/queue/requests/{self.id}/retry",
            headers=core.retry_headers(idempotency_key),
        )
        return AsyncRequest(self.client, cast(Monitor, core.json_of(response)))

    async def events(self, *, timeout: float | None = None) -> AsyncIterator[Event]:
        """The request's events (status, position, progress) until it finishes.

        Reconnects after a dropped connection with ``Last-Event-ID`` (no event missed or
        repeated); a refused stream (429/503) is retried after its ``Retry-After``.
        """
        deadline = core.deadline_of(timeout)
        last_id: str | None = None
        failures = 0
        while True:
            try:
                async with contextlib.aclosing(self._stream(last_id, deadline)) as stream:
                    async for event in stream:
                        last_id, failures = event.id or last_id, 0
                        yield event
                return
            except _Refused as refused:
                delay = self.client.policy.delay(failures, refused.delay)
            except (httpx.TransportError, _Dropped) as exc:
                delay = self.client.policy.delay(failures, None) if failures else 0.0
                log.info("event stream of %s dropped (%r); resuming after %s", self.id, exc,
                         last_id)  # fmt: skip
            failures += 1
            await self._pause(delay, deadline)

    async def wait(self, timeout: float | None = None, on_event: OnEvent | None = None) -> Monitor:
        """Return the final monitor once the request has finished (whatever its status).

        Streams events, resuming dropped streams; polls the monitor, honouring ``Retry-After``,
        when streams are refused. ``WaitTimeout`` after ``timeout`` s (the request goes on).
        """
        deadline = core.deadline_of(timeout)
        if self.done:
            return self.monitor
        last_id: str | None = None
        failures = 0
        while failures <= self.client.policy.max_retries:
            try:
                async with contextlib.aclosing(self._stream(last_id, deadline)) as stream:
                    async for event in stream:
                        last_id, failures = event.id or last_id, 0
                        core.apply_event(cast(dict[str, Any], self.monitor), event)
                        await _notify(on_event, event)
                if not self.done:
                    await self.refresh()  # a 204: it finished before this connection
                return self.monitor
            except _Refused as refused:
                # The monitor GETs honour their own Retry-After: no reason to wait here.
                log.info("event stream of %s refused (%s); polling", self.id, refused.delay)
                break
            except (httpx.TransportError, _Dropped) as exc:
                log.info("event stream of %s dropped (%r); resuming", self.id, exc)
                delay = self.client.policy.delay(failures, None) if failures else 0.0
                failures += 1
                await self._pause(delay, deadline)
        return await self._poll(deadline, on_event)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait, then the result; ``RequestFailed`` / ``RequestCanceled`` if it did not succeed."""
        monitor = await self.wait(timeout)
        error = core.terminal_error(monitor, self)
        if error is not None:
            raise error
        return await self.client.get_json(core.result_url(self.client.base_url, monitor))

    # -- internals -----------------------------------------------------------------------------

    async def _pause(self, delay: float, deadline: float | None) -> None:
        left = core.remaining(deadline)
        if left is not None and left <= delay:
            raise WaitTimeout(f"request {self.id} still {self.status}", request=self)
        await asyncio.sleep(delay)

    async def _stream(
        self, last_id: str | None, deadline: float | None
    ) -> AsyncGenerator[Event, None]:
        """One connection's events; returns after the terminal event or a 204."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        left = core.remaining(deadline)
        if left is not None and left <= 0:
            raise WaitTimeout(f"request {self.id} still {self.status}", request=self)
        # The server sends a comment every 15 s: a longer silence is a dead connection.
        read = 45.0 if left is None else min(45.0, left)
        timeout = httpx.Timeout(self.client.timeout, read=read)
        url = f"/v1/queue/requests/{self.id}/events"
        try:
            async with self.client._http.stream(
                "GET", url, headers=headers, timeout=timeout
            ) as resp:
                if resp.status_code == 204:
                    return
                if core.stream_refused(resp):
                    await resp.aread()
                    raise _Refused(core.parse_retry_after(resp.headers.get("Retry-After")))
                if resp.status_code != 200:
                    await resp.aread()
                    raise core.error_from(resp)
                parser = core.SSEParser()
                async for line in resp.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    yield event
                    if event.event == "status" and core.is_terminal(event.data):
                        return
        except httpx.ReadTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"request {self.id} still {self.status}", request=self) from None
            raise
        raise _Dropped("the stream ended before the request finished")

    async def _poll(self, deadline: float | None, on_event: OnEvent | None) -> Monitor:
        """Poll the monitor until terminal, waiting what ``Retry-After`` asks each time."""
        while True:
            response = await self.client.send("GET", f"/v1/queue/requests/{self.id}")
            monitor = cast(Monitor, core.json_of(response))
            if monitor != self.monitor:
                await _notify(on_event, Event("status", None, dict(monitor)))
            self.monitor = monitor
            if self.done:
                return monitor
            left = core.remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(f"request {self.id} still {self.status}", request=self)
            await asyncio.sleep(core.poll_delay(response, self.client.policy, left))


class _Dropped(AcceptdError):
    """A stream that ended (or broke) before the terminal event."""


async def _notify(on_event: OnEvent | None, event: Event) -> None:
    """Call ``on_event`` (a plain function or a coroutine function)."""
    if on_event is not None:
        done = on_event(event)
        if done is not None:
            await done
