"""An httpx transport on aiohttp's connection pool.

The code is written against httpx; this transport only moves the bytes. httpx's own pool
scans every connection on every request, so at 100 concurrent polls it spends about ten
times the CPU of the request itself (encode/httpx issue 3215); aiohttp's pool does not.
httpx still does redirects and credentials (`PollClient`); bodies are decoded by the poller
(`bodies`), within its caps. Every error is raised as an httpx one with aiohttp's (or
the socket's) as its cause, for `plain_reason` to name.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any, AsyncIterator

import aiohttp
import httpx
import yarl

CHUNK = 64 * 1024
NO_BODY = httpx.ByteStream(b"")  # a request's empty body: the transport sends none without reading it


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(type(exc).__name__, request=self._request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(type(exc).__name__, request=self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class PollClient(httpx.AsyncClient):
    """httpx's client on an `AiohttpTransport`, whose streamed sends skip its layers when they
    have nothing to do: a request with its timeouts set (as `conditional_get` sets them), no
    credentials and no hooks goes straight to the transport, and only an answer that
    redirects is sent again through httpx's redirect handling. A 304 then costs about
    40 µs of CPU less (README, Performance); a feed that redirects costs one more request
    to its old address a poll."""

    def __init__(self, transport: AiohttpTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """As httpx.AsyncClient.send."""
        direct = (
            stream and not self.is_closed and self.follow_redirects and self.auth is None
            and auth is httpx.USE_CLIENT_DEFAULT and follow_redirects is httpx.USE_CLIENT_DEFAULT
            and not request.url.userinfo and "timeout" in request.extensions
            and not self.event_hooks["request"] and not self.event_hooks["response"]
        )
        if direct:
            response = await self._direct.handle_async_request(request)  # its errors name the request
            if not response.has_redirect_location:
                response.request = request
                return response
            await response.aclose()
        return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, max_connections: int, ssl_context: ssl.SSLContext, max_per_host: int = 0, urls_kept: int = 1024
    ) -> None:
        """At most `max_connections` open connections, `max_per_host` (0: no limit) to one
        host, port and scheme (aiohttp's `limit_per_host`). The aiohttp form of up to
        `urls_kept` URLs is kept: the same feeds are asked again and again."""
        self._max_connections = max_connections
        self._max_per_host = max_per_host
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}
        self._urls_kept = urls_kept

    def _url(self, url: httpx.URL) -> yarl.URL:
        """aiohttp's form of `url`, kept: yarl's own cache holds 128 URLs, and one parsed again
        also loses the parts aiohttp has read of it since (about 5 % of a 304's CPU, ~0.8 KB
        a URL). httpx has encoded the URL, so yarl need not again; credentials travel in the
        Authorization header httpx built, never twice: aiohttp refuses a URL's userinfo
        beside that header."""
        text = str(url.copy_with(userinfo=b"") if url.userinfo else url)
        parsed = self._urls.get(text)
        if parsed is None:
            if len(self._urls) >= self._urls_kept:  # a source that redirects somewhere new each time
                self._urls.clear()
            parsed = self._urls[text] = yarl.URL(text, encoded=True)
        return parsed

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_per_host, ssl=self._ssl, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        connect, read = timeouts.get("connect"), timeouts.get("read")
        timeout = self._timeouts.get((connect, read))
        if timeout is None:  # a client has one or two: kept, not built for every request
            timeout = self._timeouts[connect, read] = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        body = None if request.stream is NO_BODY else await request.aread()
        try:
            response = await self._session_for_loop().request(
                request.method,
                self._url(request.url),
                headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(type(exc).__name__, request=request) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:  # no headers in time
            raise httpx.ReadTimeout(type(exc).__name__, request=request) from exc
        except (aiohttp.ClientConnectorError, OSError) as exc:
            raise httpx.ConnectError(type(exc).__name__, request=request) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise httpx.RemoteProtocolError(type(exc).__name__, request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def plain_reason(exc: BaseException, url: httpx.URL) -> tuple[str, str]:
    """Why a request to `url` failed, in plain words: (category, message), e.g.
    ("name resolution failed", "cannot resolve host status.openai.com"). The category, free
    of names, groups failures in summaries; the message is for logs, /stats and the dashboard
    and holds no secret (a host and port, never a path or query). Looks through the chain of
    causes (httpx's exception wraps aiohttp's, which wraps the OSError)."""
    host = url.host or "the server"
    port = url.port or (443 if url.scheme == "https" else 80)
    chain = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for cause in chain:  # aiohttp's reading of the answer, under httpx's RemoteProtocolError
        if isinstance(cause, aiohttp.ClientPayloadError):
            return "malformed response", f"{host} broke off the body (incomplete or malformed)"
        if isinstance(cause, aiohttp.ClientResponseError):  # aiohttp says "400" for an answer it could not read
            return "malformed response", f"malformed HTTP response from {host}"
    for cause in chain:
        if isinstance(cause, (aiohttp.ClientConnectorDNSError, socket.gaierror)):
            return "name resolution failed", f"cannot resolve host {host}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            original = getattr(cause, "certificate_error", cause)  # aiohttp's wrapper keeps ssl's error
            detail = getattr(original, "verify_message", None) or "not trusted"
            return "TLS certificate not trusted", f"TLS certificate of {host} not trusted ({detail})"
        if isinstance(cause, ssl.SSLError):
            return "TLS failed", f"TLS handshake with {host} failed ({cause.reason or 'no reason given'})"
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "connection refused", f"connection refused by {host}:{port}"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable", f"no route to {host}:{port} (network unreachable)"
        if isinstance(cause, (httpx.TimeoutException, asyncio.TimeoutError)):
            return "timed out", f"{host} did not answer in time"
        if isinstance(cause, (aiohttp.ServerDisconnectedError, ConnectionResetError, httpx.RemoteProtocolError)):
            return "connection dropped", f"{host} closed the connection before the answer was complete"
        if isinstance(cause, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return "invalid URL", "not a valid http or https URL"
    return "connection failed", f"cannot connect to {host}:{port} ({type(chain[0]).__name__})"
