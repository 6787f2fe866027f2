"""A caching HTTP front for the Cliniko emulator: the ingestion benchmark measures loaders, not the server.

The emulator answers ~300 pages/s in Python, below what a fast loader can take, so the benchmark would
measure the emulator. This front answers each GET the emulator has answered before, byte for byte (status,
headers, body), from memory; a request it has not seen goes to the emulator (in process, through ASGI) and is
remembered. The data and the rate limit are static during the benchmark, so a replayed answer is exactly the
emulator's answer. The benchmark warms it with one untimed run of each method and reports the misses during
timed runs, which should be 0 (a miss means the emulator's time was in the measurement).

It speaks just enough HTTP/1.1 for these clients: GET, keep-alive, no request bodies.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx

_DROP = {b"date", b"server", b"content-length", b"transfer-encoding", b"connection"}


class ReplayFront:
    def __init__(self, app: Any) -> None:
        self.upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")
        self.cache: dict[tuple[bytes, bytes], bytes] = {}
        self.misses = 0
        self.hits = 0

    async def answer(self, target: bytes, headers: dict[bytes, bytes]) -> bytes:
        key = (target, headers.get(b"authorization", b""))
        cached = self.cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        response = await self.upstream.get(
            target.decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()},
        )
        head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}".encode()]
        head += [k + b": " + v for k, v in response.headers.raw if k.lower() not in _DROP]
        head.append(b"content-length: %d" % len(response.content))
        raw = b"\r\n".join(head) + b"\r\n\r\n" + response.content
        self.cache[key] = raw
        return raw

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A page (~140 KB) leaves in one send instead of several turns of the event loop.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].split(b" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(b":")
                        headers[name.strip().lower()] = value.strip()
                if target == b"/__replay_stats":
                    body = b'{"hits": %d, "misses": %d}' % (self.hits, self.misses)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                elif method != b"GET":
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                else:
                    writer.write(await self.answer(target, headers))
                await writer.drain()
        finally:
            writer.close()


async def serve_replay(app: Any, host: str, ready: asyncio.Future | None = None) -> None:
    """Serve until cancelled; `ready` gets (front, port) once bound."""
    front = ReplayFront(app)
    server = await asyncio.start_server(front.handle, host, 0, limit=1 << 20)
    if ready is not None:
        ready.set_result((front, server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()
