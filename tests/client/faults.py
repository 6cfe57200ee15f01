"""httpx transports that break the way networks do, around the real one: an answer lost after
the service acted on the request, an event stream cut mid-way. Each records what it saw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Seen:
    """One call as the transport saw it."""

    method: str
    path: str
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Faults:
    """What to break: the first ``lose_posts`` POST answers, the first ``cut_streams`` event
    streams (each after ``cut_after`` events)."""

    lose_posts: int = 0
    cut_streams: int = 0
    cut_after: int = 2
    seen: list[Seen] = field(default_factory=list)

    def record(self, request: httpx.Request, status: int) -> None:
        self.seen.append(
            Seen(request.method, request.url.path, status, request.content, dict(request.headers))
        )

    def to_lose(self, request: httpx.Request) -> bool:
        if request.method == "POST" and self.lose_posts > 0:
            self.lose_posts -= 1
            return True
        return False

    def to_cut(self, request: httpx.Request, response: httpx.Response) -> bool:
        if (
            request.url.path.endswith("/events")
            and response.status_code == 200
            and self.cut_streams > 0
        ):
            self.cut_streams -= 1
            return True
        return False

    def calls(self, method: str, suffix: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.endswith(suffix)]


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, after: int) -> None:
        self.inner, self.after = inner, after

    def __iter__(self) -> Iterator[bytes]:
        events = 0
        for chunk in self.inner:
            yield chunk
            events += chunk.count(b"data:")
            if events >= self.after:
                raise httpx.ReadError("connection cut by the test")

    def close(self) -> None:
        self.inner.close()


class _AsyncCut(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, after: int) -> None:
        self.inner, self.after = inner, after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = 0
        async for chunk in self.inner:
            yield chunk
            events += chunk.count(b"data:")
            if events >= self.after:
                raise httpx.ReadError("connection cut by the test")

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultyTransport(httpx.BaseTransport):
    """The real transport, with ``faults`` applied."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.faults.record(request, response.status_code)
        if self.faults.to_lose(request):
            response.read()
            response.close()
            raise httpx.ReadError("the answer was lost", request=request)
        if self.faults.to_cut(request, response):
            assert isinstance(response.stream, httpx.SyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_Cut(response.stream, self.faults.cut_after),
                extensions=response.extensions,
            )
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncFaultyTransport(httpx.AsyncBaseTransport):
    """The real asyncio transport, with ``faults`` applied."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.faults.record(request, response.status_code)
        if self.faults.to_lose(request):
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("the answer was lost", request=request)
        if self.faults.to_cut(request, response):
            assert isinstance(response.stream, httpx.AsyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_AsyncCut(response.stream, self.faults.cut_after),
                extensions=response.extensions,
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
