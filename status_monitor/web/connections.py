"""Bounds on HTTP clients, below uvicorn: how long a request's head and body may take, how
large its head may be, and how many connections may be open at once.

Uvicorn has none of these. Its `timeout_keep_alive` covers only the silence between two
requests and is cancelled by any byte received, so a client sending its head a byte at a
time keeps its connection for as long as it likes; its `limit_concurrency` counts such
connections too, and past it answers every new request, /health included, with 503; the
httptools parser it uses puts no bound on a request line or header. So the protocol below
extends uvicorn's httptools one:

- a request's head (request line and headers) must arrive within HEAD_TIMEOUT seconds of
  the connection opening, or of its first byte on a kept-alive connection; its body may
  not stall (no byte while the monitor is ready to read) for BODY_TIMEOUT seconds. Either
  closes the connection (a head with 408);
- a request target (path and query) over MAX_REQUEST_LINE bytes gets 414, a head over
  MAX_HEAD bytes 431;
- at most `max_connections` connections are open, over every listener. One more evicts the
  oldest connection that is idle or still sending its request (slow clients, by
  definition, or a flood's); only when every connection is busy with a request being
  answered (or an event stream) is the newcomer answered 503 at once. A flood of slow or
  idle clients thus never keeps out /health or a provider's webhook, which send their
  requests in one go.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0  # seconds for a request line and headers to arrive
BODY_TIMEOUT = 10.0  # seconds a request body may go without a byte
MAX_REQUEST_LINE = 8 * 1024  # bytes of request target (path and query)
MAX_HEAD = 32 * 1024  # bytes of request line and headers together


def _canned(status: str, reason: str) -> bytes:
    body = b'{"detail":"' + reason.encode() + b'"}'
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + (b"retry-after: 1\r\n" if status.startswith("503") else b"")
        + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


BUSY = _canned("503 Service Unavailable", "too many connections; try again later")
HEAD_TIMED_OUT = _canned("408 Request Timeout", "request head not received in time")
LINE_TOO_LONG = _canned("414 URI Too Long", "request line too long")
HEAD_TOO_LARGE = _canned("431 Request Header Fields Too Large", "request headers too large")


@dataclass(eq=False)
class ConnectionLimits:
    """The open connections of every listener, and what was refused. `waiting` holds those
    idle or still receiving a request, oldest first: the ones a newcomer may evict."""

    max_connections: int
    open: set[Any] = field(default_factory=set)
    waiting: dict[Any, None] = field(default_factory=dict)
    refused_total: int = 0  # answered 503: every connection was busy
    evicted_total: int = 0  # closed to make room, being idle or slow
    timed_out_total: int = 0  # head or body not received in time
    too_large_total: int = 0  # request line or head over its limit

    def stats(self) -> dict[str, int]:
        return {
            "open": len(self.open),
            "max": self.max_connections,
            "refused_total": self.refused_total,
            "evicted_total": self.evicted_total,
            "timed_out_total": self.timed_out_total,
            "too_large_total": self.too_large_total,
        }

    def protocol(self) -> type[HttpToolsProtocol]:
        """The protocol class to give uvicorn (`uvicorn.Config(http=...)`) for these limits."""
        return type("LimitedHttpToolsProtocol", (LimitedProtocol,), {"limits": self})


def connections_allowed(wanted: int, reserve: int) -> int:
    """How many connections fit in this process's open-file limit, with `reserve` files kept
    for everything else (feeds, the state file, notifications): the soft limit is raised
    towards the hard one first (commonly 1,024 soft against a far larger hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else max(0, min(wanted, soft - reserve))


class _TooLarge(Exception):
    """Raised in a parser callback: httptools stops and re-raises it as the context of an
    HttpParserCallbackError, and data_received answers with `answer`."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer


class LimitedProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with the timeouts, sizes and connection cap above.

    One timer a connection watches both deadlines (re-armed when it fires, not on every
    request): a request then costs a few attribute writes, not a timer of its own."""

    limits: ConnectionLimits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        self._watch: asyncio.TimerHandle | None = None
        self._head_started: float | None = None  # when the head being awaited began; None when none is
        self._body_moved: float | None = None  # when a body being received last moved; None when none is
        self._head_bytes = 0  # bytes received while awaiting a head (a bound on its size)
        if len(limits.open) >= limits.max_connections:
            if not limits.waiting:
                limits.refused_total += 1
                transport.write(BUSY)
                transport.close()
                return
            limits.evicted_total += 1
            next(iter(limits.waiting))._drop()
        limits.open.add(self)
        limits.waiting[self] = None
        self._head_started = self.loop.time()
        self._watch = self.loop.call_at(self._head_started + HEAD_TIMEOUT, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the bounds on a head's size and the clock of a body that has begun."""
        if self._head_started is not None:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _TooLarge):
                raise
            self.limits.too_large_total += 1
            self._refuse(exc.__context__.answer)
            return
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here: the request was dispatched as plain HTTP when its head ended
        if self._head_started is not None:  # a head not yet whole: httptools keeps what came, so bound it here
            long_line = len(getattr(self, "url", b"")) > MAX_REQUEST_LINE  # (set once a request begins)
            if long_line or self._head_bytes > MAX_HEAD:
                self.limits.too_large_total += 1
                self._refuse(LINE_TOO_LONG if long_line else HEAD_TOO_LARGE)
        elif self.cycle is not None and self.cycle.more_body:
            self._body_moved = self.loop.time()  # a body that did not come whole with its head

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_started is None:  # a kept-alive connection's next request
            self._head_started = self.loop.time()
            self._head_bytes = 0
            self.limits.waiting[self] = None

    def on_headers_complete(self) -> None:
        if len(self.url) > MAX_REQUEST_LINE:
            raise _TooLarge(LINE_TOO_LONG)
        if self._head_bytes > MAX_HEAD and self._head_size() > MAX_HEAD:  # a whole head that came in one go
            raise _TooLarge(HEAD_TOO_LARGE)
        self._head_started = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_moved = None
        self.limits.waiting.pop(self, None)  # busy until its answer is sent

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self in self.limits.open:
            self.limits.waiting.pop(self, None)
            self.limits.waiting[self] = None  # idle now: the newest of the waiting

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _check(self) -> None:
        """The connection's one timer: closes it when its head is late or its body has
        stalled, else sets itself for the next deadline. Time the monitor itself spent not
        reading a body (flow control: the app has not taken what came) does not count."""
        now = self.loop.time()
        if self._head_started is not None and now - self._head_started >= HEAD_TIMEOUT:
            self.limits.timed_out_total += 1
            # A 408 for a head begun; a connection that never sent a byte (a browser's
            # preconnection, say) is closed without one, which a browser might take for the
            # answer to a request it sends at that moment.
            self._refuse(HEAD_TIMED_OUT) if self._head_bytes else self._drop()
            return
        if self._body_moved is not None and self.flow.read_paused:
            self._body_moved = now
        if self._body_moved is not None and now - self._body_moved >= BODY_TIMEOUT:
            self.limits.timed_out_total += 1
            self._drop()
            return
        deadline = now + HEAD_TIMEOUT
        if self._head_started is not None:
            deadline = self._head_started + HEAD_TIMEOUT
        if self._body_moved is not None:
            deadline = min(deadline, self._body_moved + BODY_TIMEOUT)
        self._watch = self.loop.call_at(deadline, self._check)

    def _refuse(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)
        self._drop()

    def _drop(self) -> None:
        self._forget()
        self.transport.close()

    def _forget(self) -> None:
        """Out of the counts and the eviction order, its timer off (idempotent)."""
        self.limits.open.discard(self)
        self.limits.waiting.pop(self, None)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
