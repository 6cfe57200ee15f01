"""A small Server-Sent Events reader over aiohttp's client, for the tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class SSEvent:
    """One dispatched event (or a comment or retry line)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


async def read_events(resp: aiohttp.ClientResponse) -> AsyncIterator[SSEvent]:
    """Parse the stream per the WHATWG rules (the subset the service uses)."""
    current = SSEvent()
    data_lines: list[str] = []
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data_lines or current.retry is not None or current.comments:
                current.data = "\n".join(data_lines)
                yield current
            current, data_lines = SSEvent(), []
            continue
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry":
            current.retry = int(value)
