"""The soak's webhook endpoint: a bare HTTP/1.1 receiver in a process of its own.

It answers 204 to every delivery and keeps two numbers: the deliveries received and the sum of
the delivered requests' id fingerprints, so the run checks that each request was delivered
exactly once without a set of ids growing with it (its own RSS is in the table too).
``GET /stats`` answers ``{"n": …, "idsum": …}``. Bare, like ``bench/webhook_delivery.py``'s:
an aiohttp server's own CPU per request would be taken from the dispatcher it measures.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from sustained.load import MASK, content_length, fingerprint


class _Receiver(asyncio.Protocol):
    n = 0
    idsum = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = content_length(head)
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            if head.startswith(b"get /stats"):
                cls = type(self)
                out = orjson.dumps({"n": cls.n, "idsum": cls.idsum})
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                )
                continue
            rid = orjson.loads(body)["data"]["id"].encode()
            cls = type(self)
            cls.n += 1
            cls.idsum = (cls.idsum + fingerprint(rid)) & MASK
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


def serve(port: int) -> None:
    """The receiver process's main (``multiprocessing``, spawn)."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Receiver, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())
