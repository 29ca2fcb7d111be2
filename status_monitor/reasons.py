"""Plain reasons: the one place that turns an exception raised while fetching into words a
person understands ("cannot resolve host status.example.com", "connection refused by
...", "TLS certificate of ... not trusted (certificate has expired)").

A library's own text is never passed on: it can embed the full URL, credentials included,
and say what the library's parser thought ("400") rather than what the server sent.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Iterator

import aiohttp
import httpx


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def plain_reason(exc: BaseException, host: str) -> tuple[str, str]:
    """(reason, kind) for an error raised while talking to `host`. The reason names the
    host and no URL; `kind` is the class of error metrics count: "dns", "tls",
    "timeout", "redirects", "protocol" or "connection". Any exception is accepted: an
    unknown one is "could not fetch from <host> (<its class name>)"."""
    chain = list(_chain(exc))
    for cause in chain:
        if isinstance(cause, httpx.TooManyRedirects):
            return "too many redirects (a redirect loop?)", "redirects"
        if isinstance(cause, (aiohttp.ClientConnectorDNSError, socket.gaierror)):
            return f"cannot resolve host {host}", "dns"
        if isinstance(cause, (ssl.SSLCertVerificationError, aiohttp.ClientConnectorCertificateError)):
            detail = next((c.verify_message for c in chain if getattr(c, "verify_message", None)), "")
            return f"TLS certificate of {host} not trusted" + (f" ({detail})" if detail else ""), "tls"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {host} failed", "tls"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {host}", "connection"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{host} is unreachable", "connection"
    for cause in chain:
        if isinstance(cause, httpx.ConnectTimeout):
            return f"connecting to {host} timed out", "timeout"
        if isinstance(cause, (httpx.TimeoutException, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return f"timed out waiting for {host}", "timeout"
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return f"{host} closed the connection without answering", "connection"
        if isinstance(cause, aiohttp.ClientPayloadError):
            return f"{host} broke off the body (incomplete or malformed)", "protocol"
        if isinstance(cause, aiohttp.ClientResponseError):
            # aiohttp's parser says "400" for a response it could not read, whatever was sent
            return f"malformed HTTP response from {host}", "protocol"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return f"{host} reset the connection", "connection"
        if isinstance(cause, httpx.UnsupportedProtocol):
            return "not an http or https URL", "protocol"
        if isinstance(cause, httpx.InvalidURL):
            return "invalid URL", "protocol"
    if any(isinstance(cause, httpx.ConnectError) for cause in chain):
        return f"cannot connect to {host}", "connection"
    return f"could not fetch from {host} ({type(exc).__name__})", "connection"
