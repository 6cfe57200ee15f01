"""Bare HTTP/1.1 webhook receivers for the benches, each run in a process of its own.

:class:`Receiver` answers 204 to every POST and hands its body to ``received``; ``GET /stats``
answers ``stats()`` as JSON. Keep-alive, Content-Length bodies, nothing checked that costs:
on a shared 2-core machine an aiohttp server's own ~200 µs per request would be taken from
the dispatcher being measured (a real receiver runs elsewhere). Subclasses keep what their
bench counts in class attributes (one process, one receiver):

- :class:`Counting` (the soak's): the deliveries received and the sum of the delivered
  requests' id fingerprints, so the run checks that each request was delivered exactly once
  without a set of ids growing with it (its own RSS is in the table too); ``{"n", "idsum"}``;
- ``bench/webhook_delivery.py``'s ``Arrivals``: when each request's delivery first arrived.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sustained.load import MASK, content_length, fingerprint


class Receiver(asyncio.Protocol):
    """204 to every POST (its body to :meth:`received`); ``GET /stats``: :meth:`stats`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            total = end + 4 + content_length(head)
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            if head.startswith(b"get /stats"):
                out = orjson.dumps(type(self).stats())
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                )
                continue
            type(self).received(body)
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    @classmethod
    def received(cls, body: bytes) -> None:
        """One delivery's body arrived."""

    @classmethod
    def stats(cls) -> Any:
        """What ``GET /stats`` answers (JSON)."""
        return {}


class Counting(Receiver):
    """Counts deliveries and sums their request ids' fingerprints."""

    n = 0
    idsum = 0

    @classmethod
    def received(cls, body: bytes) -> None:
        rid = orjson.loads(body)["data"]["id"].encode()
        cls.n += 1
        cls.idsum = (cls.idsum + fingerprint(rid)) & MASK

    @classmethod
    def stats(cls) -> Any:
        return {"n": cls.n, "idsum": cls.idsum}


def serve(port: int, protocol: type[Receiver] = Counting) -> None:
    """A receiver process's main (``multiprocessing``, spawn): ``protocol`` on 127.0.0.1:port."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())
