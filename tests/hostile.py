"""Loopback HTTP servers that misbehave the way real ones do, all on one event loop in a
thread of their own: each `add(kind)` opens a new port (a new host, as far as per-host
limits go) whose every request gets that kind of answer, whatever its path.

Kinds: "feed" (a good document, optionally after `delay` seconds), "gzip-bomb",
"deflate-bomb", "br-bomb", "gzip-gzip-bomb" (64 MiB of spaces, compressed), "endless"
(a chunked body that never ends), "drip" (no length, one byte a second), "redirect" (to
its `headers`' Location), "redirect-loop",
"laughs" and "quadratic" (XML entity expansion), "huge-length" (4 GiB announced, never
sent), "malformed" (a response line and headers no HTTP parser accepts),
"not-compressed" (says gzip, sends plain text), "304" (answers 304 to everything).
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field

import brotli

BOMB_SIZE = 64 * 1024 * 1024
BOMB_KINDS = ("gzip-bomb", "gzip-gzip-bomb", "deflate-bomb", "br-bomb")


def _bombs() -> dict[str, tuple[bytes, str]]:
    spaces = b" " * BOMB_SIZE
    once = gzip.compress(spaces, 9)
    deflate = zlib.compressobj(9)
    return {
        "gzip-bomb": (once, "gzip"),
        "gzip-gzip-bomb": (gzip.compress(once, 9), "gzip, gzip"),
        "deflate-bomb": (deflate.compress(spaces) + deflate.flush(), "deflate"),
        "br-bomb": (brotli.compress(spaces, quality=5), "br"),
    }


_BOMBS: dict[str, tuple[bytes, str]] = {}


def bombs() -> dict[str, tuple[bytes, str]]:
    if not _BOMBS:
        _BOMBS.update(_bombs())
    return _BOMBS


# What the poller says of each kind, with the default 5-MiB cap and a 2-s request timeout
# (a poll's deadline is 1.5 times that).
REASONS = {
    "gzip-bomb": "gzip body larger than 5 MiB when decompressed",
    "deflate-bomb": "deflate body larger than 5 MiB when decompressed",
    "br-bomb": "brotli body larger than 5 MiB when decompressed",
    "gzip-gzip-bomb": "gzip body larger than 5 MiB when decompressed",
    "endless": "body larger than 5 MiB",
    "drip": "no complete answer within 3 s",
    "redirect-loop": "more than 5 redirects (a redirect loop?)",
    "laughs": "XML entity expansion refused (the document declares entities)",
    "quadratic": "XML entity expansion refused (the document declares entities)",
    "huge-length": "body of 4 GiB announced, larger than 5 MiB",
    "malformed": "malformed HTTP response from 127.0.0.1",
    "not-compressed": "body not compressed as declared (not valid gzip)",
    "304": "answered 304 Not Modified to a request that sent no validators (a misbehaving cache?)",
}


def laughs() -> bytes:
    entities = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    return (f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel><title>&lol9;</title>'
            "<item><title>&lol9;</title><guid>1</guid></item></channel></rss>").encode()


def quadratic() -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{"A" * 100_000}">]><rss version="2.0"><channel>'
            f'<title>{"&a;" * 100_000}</title></channel></rss>').encode()


@dataclass
class Host:
    kind: str
    body: bytes = b""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    open_connections: int = 0
    peak_connections: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)


class HostileServer:
    def __init__(self) -> None:
        self.hosts: dict[int, Host] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, kind: str, body: bytes = b"", delay: float = 0.0, headers: dict[str, str] | None = None,
            tls: ssl.SSLContext | None = None) -> int:
        """Opens a port answering as `kind` (over TLS with `tls`); returns the port."""
        if kind in BOMB_KINDS:
            bombs()  # made once, here: making them in the server's loop would stall every answer
        host = Host(kind, body, delay, dict(headers or {}))
        future = asyncio.run_coroutine_threadsafe(self._start(host, tls), self._loop)
        return future.result(10)

    def url(self, port: int, path: str = "/feed.rss") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def set_body(self, port: int, body: bytes) -> None:
        self.hosts[port].body = body

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self, host: Host, tls: ssl.SSLContext | None) -> int:
        server = await asyncio.start_server(
            lambda r, w: self._connection(host, r, w), "127.0.0.1", 0, backlog=1024, ssl=tls
        )
        self._servers.append(server)
        port = server.sockets[0].getsockname()[1]
        self.hosts[port] = host
        return port

    async def _connection(self, host: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host.open_connections += 1
        host.peak_connections = max(host.peak_connections, host.open_connections)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                headers[":path"] = lines[0].split(" ")[1]
                headers[":raw"] = head.decode("latin-1")
                headers[":at"] = repr(time.monotonic())
                host.requests.append(headers)
                if not await self._answer(host, headers, writer):
                    return
        except (ConnectionError, OSError, asyncio.CancelledError):  # CancelledError: closed by close()
            return
        finally:
            host.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, host: Host, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Answers one request; returns whether the connection may serve another."""
        kind = host.kind
        if host.delay:
            await asyncio.sleep(host.delay)
        if kind in ("feed", "not-compressed"):
            extra = {"Content-Encoding": "gzip"} if kind == "not-compressed" else {}
            await self._send(writer, 200, host.body, {**extra, **host.headers})
            return True
        if kind in BOMB_KINDS:
            body, coding = bombs()[kind]
            await self._send(writer, 200, body, {"Content-Encoding": coding})
            return True
        if kind == "laughs":
            await self._send(writer, 200, laughs(), {})
            return True
        if kind == "quadratic":
            await self._send(writer, 200, quadratic(), {})
            return True
        if kind == "redirect":
            await self._send(writer, 302, b"", host.headers)
            return True
        if kind == "redirect-loop":
            await self._send(writer, 302, b"", {"Location": headers[":path"]})
            return True
        if kind == "304":
            await self._send(writer, 304, None, {})
            return True
        if kind == "malformed":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\nX-Bad\x00Header: 1\r\n\r\nnot a feed")
            await writer.drain()
            return False
        if kind == "huge-length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 4294967296\r\n\r\n<rss>")
            await writer.drain()
            await asyncio.sleep(3600)
            return False
        if kind == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"<item>" + b"x" * 65_000 + b"</item>"
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            while True:
                writer.write(frame)
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield while the reader keeps up
        if kind == "drip":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n")
            while True:
                writer.write(b"<")
                await writer.drain()
                await asyncio.sleep(1)
        raise ValueError(f"unknown kind {kind!r}")

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: bytes | None, headers: dict[str, str]) -> None:
        reason = {200: "OK", 302: "Found", 304: "Not Modified"}[status]
        lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/xml"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await writer.drain()

