"""Reading a response body within bounds, whatever the server sends.

A body is decoded here, not by httpx: httpx inflates each received chunk whole, so 64 KB of
gzip can become 64 MB in one call. Each decoder here yields at most `PIECE` bytes at a time
and the reading stops as soon as the decoded size passes the cap, for every coding of
RFC 9110 section 8.4.1 the monitor asks for (gzip, deflate, br) and for stacked ones
(`Content-Encoding: gzip, gzip`). `BodyBudget` bounds the bodies in flight together.
"""

from __future__ import annotations

import asyncio
import zlib
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Iterable, Iterator

import brotli

ACCEPT_ENCODING = "gzip, deflate, br"
PIECE = 64 * 1024  # the most one decoding step produces (brotli: its buffer's last step past it, < 2x)
MIB = 1024 * 1024


class BodyError(Exception):
    """The body was refused; the message is a plain reason, naming no URL. `kind` is the
    class of error that metrics count: "too_large" or "decoding"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe_size(size: int) -> str:
    """`4 GiB` or `5 MiB` for whole gibi- or mebibytes, else `50,000 bytes`."""
    if size and size % (1024 * MIB) == 0:
        return f"{size // (1024 * MIB)} GiB"
    return f"{size // MIB} MiB" if size and size % MIB == 0 else f"{size:,} bytes"


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _zlib_pieces(chunks: Iterable[bytes], wbits: int, name: str) -> Iterator[bytes]:
    """Inflates gzip (several members allowed, RFC 1952) or zlib-wrapped deflate (RFC 1950;
    raw deflate too, as servers send it), never more than PIECE bytes a step. Data after
    the last stream is ignored, as browsers do. An empty input yields an empty piece: the
    caller has nothing more yet."""
    gzip = wbits != zlib.MAX_WBITS
    decoder = None
    head = b""  # deflate's first two bytes, which tell zlib-wrapped from raw
    try:
        for chunk in chunks:
            if not chunk:
                yield b""
                continue
            data = chunk
            if decoder is None:
                head += data
                if len(head) < 2:
                    continue
                decoder = zlib.decompressobj(wbits if gzip or _zlib_header(head) else -zlib.MAX_WBITS)
                data, head = head, b""
            while data:
                piece = decoder.decompress(data, PIECE)
                if piece:
                    yield piece
                if not decoder.eof:
                    data = decoder.unconsumed_tail
                elif gzip and decoder.unused_data[:2] == b"\x1f\x8b":  # the next gzip member
                    data, decoder = decoder.unused_data, zlib.decompressobj(wbits)
                else:
                    data = b""
        if head or (decoder is not None and not decoder.eof):
            raise BodyError(f"body not compressed as declared ({name} stream ends early)", "decoding")
    except zlib.error:
        raise BodyError(f"body not compressed as declared (not valid {name})", "decoding") from None


def _brotli_pieces(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Brotli (RFC 7932), never more than PIECE bytes a step (`output_buffer_limit`)."""
    decoder = brotli.Decompressor()
    started = False
    try:
        for chunk in chunks:
            if not chunk:
                yield b""
                continue
            started = True
            piece = decoder.process(chunk, output_buffer_limit=PIECE)
            while True:
                if piece:
                    yield piece
                if decoder.can_accept_more_data():
                    break
                piece = decoder.process(b"", output_buffer_limit=PIECE)
        if started and not decoder.is_finished():
            raise BodyError(f"body not compressed as declared ({name} stream ends early)", "decoding")
    except brotli.error:
        raise BodyError(f"body not compressed as declared (not valid {name})", "decoding") from None


BROTLI_MAX_WINDOW = 16 * MIB  # RFC 7932 section 9.1: WBITS <= 24 (large windows are refused)


def brotli_memory(head: bytes) -> int:
    """What a brotli decoder allocates for the stream starting with `head` (bytes): its
    window (RFC 7932 section 9.1), or less when the first meta-block is the last and
    shorter (section 9.2): the reference decoder sizes its ring buffer to fit. A `head` too
    short to tell gives the window, or the largest one."""
    value, available, position = int.from_bytes(head[:8], "little"), 8 * len(head[:8]), 0

    def take(bits: int) -> int:
        nonlocal position
        field = (value >> position) & ((1 << bits) - 1)
        position += bits
        return field

    if take(1) == 0:
        window_bits = 16
    elif n := take(3):
        window_bits = 17 + n
    else:
        m = take(3)
        window_bits = 17 if m == 0 else 8 + m
    window = 1 << window_bits
    if take(1):  # ISLAST
        if take(1):  # ISLASTEMPTY
            return 0
        nibbles = take(2)
        if nibbles != 3:  # 3 is a metadata block
            length = take(4 * (nibbles + 4)) + 1
            if position <= available:
                return min(window, length)
    return window if position <= available else BROTLI_MAX_WINDOW


def _capped(pieces: Iterable[bytes], max_bytes: int, what: str) -> Iterator[bytes]:
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > max_bytes:
            raise BodyError(f"{what} larger than {describe_size(max_bytes)} when decompressed", "too_large")
        yield piece  # an empty one included: it tells the reader that nothing more is there yet


_DECODERS: dict[str, Callable[[Iterable[bytes], str], Iterator[bytes]]] = {
    "gzip": lambda chunks, name: _zlib_pieces(chunks, 16 + zlib.MAX_WBITS, name),
    "x-gzip": lambda chunks, name: _zlib_pieces(chunks, 16 + zlib.MAX_WBITS, name),
    "deflate": lambda chunks, name: _zlib_pieces(chunks, zlib.MAX_WBITS, name),
    "br": _brotli_pieces,
}
_NAMES = {"x-gzip": "gzip", "br": "brotli"}  # as reasons name them


def codings(content_encoding: str) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied, `identity`
    left out. Raises BodyError for one the monitor did not ask for (say "zstd")."""
    applied = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    applied = [c for c in applied if c != "identity"]
    for coding in applied:
        if coding not in _DECODERS:
            raise BodyError(f"body compressed as {coding!r}, which was not asked for", "decoding")
    return applied


class Decoder:
    """Feeds received chunks through the decoders of `content_encoding` (last applied,
    first undone), each stage capped at `max_bytes`: `decode` yields pieces of at most
    PIECE bytes (compressed input) together at most `max_bytes`, and checks at the end that
    every compressed stream ended. Raises BodyError."""

    def __init__(self, content_encoding: str, max_bytes: int) -> None:
        self._inbox: list[bytes] = []
        self._done = False
        stream: Iterator[bytes] = self._received()
        self._codings = codings(content_encoding)
        for coding in reversed(self._codings):
            name = _NAMES.get(coding, coding)
            stream = _capped(_DECODERS[coding](stream, name), max_bytes, f"{name} body")
        self._stream = stream
        self._max = max_bytes
        self._size = 0

    def _received(self) -> Iterator[bytes]:
        while True:
            while self._inbox:
                yield self._inbox.pop(0)
            if self._done:
                return
            yield b""  # nothing more yet: the stages above hand back what they have

    async def decode(self, received: AsyncIterator[bytes], lease: "Lease") -> AsyncIterator[bytes]:
        """The decoded pieces of the `received` chunks, each produced as it is taken. A
        brotli decoder's window is held under `lease` before the decoder sees a byte."""
        first = True
        async for chunk in received:
            if first and self._codings[-1:] == ["br"]:
                await lease.hold(0, decoder_memory=brotli_memory(chunk))
            elif first and "br" in self._codings:  # under another coding: its header is not at hand
                await lease.hold(0, decoder_memory=BROTLI_MAX_WINDOW)
            first = False
            self._inbox.append(chunk)
            for piece in self._drain():
                yield piece
        self._done = True
        for piece in self._drain():
            yield piece

    def _drain(self) -> Iterator[bytes]:
        for piece in self._stream:
            if piece:
                self._size += len(piece)
                if self._size > self._max:
                    raise BodyError(f"body larger than {describe_size(self._max)}", "too_large")
                yield piece
            elif not self._inbox and not self._done:
                return


class BodyBudget:
    """Bounds the memory of the bodies in flight together (being read, or waiting for or in
    the parse). Each body may hold `small` bytes freely; one that grows past that first
    reserves `max_body` bytes of the shared `total`, and a brotli body whose decoder needs
    a large window reserves that window too, before decoding. A body reserves once, all it
    may need, and keeps it to the end of its lease; reservations are served one at a time
    in order, so none waits half-served and none waits for ever. The bodies' memory stays
    under `small x polls at once + total` whatever the servers send, and small bodies
    (nearly every feed) never wait."""

    def __init__(self, total: int, max_body: int, small: int = 128 * 1024) -> None:
        self.total = total
        self.max_body = max_body
        self.small = small
        self._free = total
        self._turn = asyncio.Lock()  # FIFO: the reservation at the head waits, the others queue
        self._released = asyncio.Event()

    @asynccontextmanager
    async def lease(self) -> AsyncIterator["Lease"]:
        lease = Lease(self)
        try:
            yield lease
        finally:
            if lease.reserved:
                self._free += lease.reserved
                self._released.set()

    async def _reserve(self, size: int) -> int:
        size = min(size, self.total)
        async with self._turn:
            while self._free < size:
                self._released.clear()
                await self._released.wait()
            self._free -= size
        return size


class Lease:
    """One body's share of a BodyBudget."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.reserved = 0

    async def hold(self, size: int, decoder_memory: int = 0) -> None:
        """Call before keeping `size` decoded bytes in all, or (`decoder_memory`) before a
        decoder allocates that much; waits for the budget when past the free allowance."""
        if not self.reserved and (size > self._budget.small or decoder_memory > self._budget.small):
            self.reserved = await self._budget._reserve(self._budget.max_body + decoder_memory)
