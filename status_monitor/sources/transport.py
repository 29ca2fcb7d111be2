"""An httpx client on aiohttp's connection pool.

httpx's own pool scans every connection on every request, so at 100 concurrent polls it
spends about ten times the CPU of the request itself (encode/httpx issue 3215); aiohttp's
pool does not. `AiohttpTransport` moves httpx's requests over that pool.
`PollClient.get_streamed`, the poll's GET, sends a plain request straight to the pool, and
only one that needs httpx (credentials in the URL, an answer that redirects) through
httpx's client; either way its `Reply` is the same plain data. Bodies are decoded by the
poller (`bodies`), within its caps. Every error is raised as an httpx one with aiohttp's
(or the socket's) as its cause, for `plain_reason` to name.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import yarl

CHUNK = 64 * 1024
NO_BODY = httpx.ByteStream(b"")  # a request's empty body: the transport sends none without reading it


async def _chunks(response: aiohttp.ClientResponse, request: httpx.Request | None) -> AsyncIterator[bytes]:
    """The body as it arrives, its read errors raised as httpx's."""
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(type(exc).__name__, request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.ReadError(type(exc).__name__, request=request) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _chunks(self._response, self._request)

    async def aclose(self) -> None:
        self._response.release()


@dataclass
class Reply:
    """An answer whose body is still to be read, as plain data whichever path sent it."""

    status: int
    headers: dict[str, str]  # names in lower case; of a repeated header, the last value
    url: str  # where the answer came from, when it was redirected; else ""
    chunks: AsyncIterator[bytes]  # the body as it arrives, still encoded (Content-Encoding)
    aclose: Callable[[], Awaitable[None]]  # hands the connection back: always call it


REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _text(value: str) -> str:
    """A header value as aiohttp read it (UTF-8, each invalid byte a lone surrogate) as text
    that can be stored: a value that is not UTF-8 is read as Latin-1 instead, as httpx does."""
    if value.isascii():
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class PollClient(httpx.AsyncClient):
    """httpx's client on an `AiohttpTransport`, with `get_streamed` for the poll's GET. A 304
    sent straight to aiohttp's pool costs about a fifth fewer instructions than one through
    httpx's request and response objects (README, Performance)."""

    def __init__(self, transport: AiohttpTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._direct = transport
        self._raw_headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.headers.raw]

    async def get_streamed(self, url: httpx.URL, headers: list[tuple[str, str]]) -> Reply:
        """A GET of `url` with the client's headers (as given when it was made), its timeouts,
        and `headers` (name, value). A URL without credentials goes straight to aiohttp's
        pool; one with credentials, and an answer that redirects (asked again of httpx, which
        follows up to `max_redirects`), go through httpx's client. Raises httpx.HTTPError
        (TooManyRedirects included); call the reply's `aclose` once done with it."""
        if not url.userinfo:
            response = await self._direct.open("GET", url, self._raw_headers + headers, self.timeout.as_dict())
            if not (response.status in REDIRECTS and "Location" in response.headers):
                answer = {name.lower(): _text(value) for name, value in response.headers.items()}

                async def release() -> None:
                    response.release()

                return Reply(response.status, answer, "", _chunks(response, None), release)
            response.release()
        request = httpx.Request(
            "GET", url, headers=httpx.Headers([*self.headers.multi_items(), *headers]), stream=NO_BODY,
            extensions={"timeout": self.timeout.as_dict()},
        )
        sent = await self.send(request, stream=True)

        async def close() -> None:
            await sent.aclose()
            # httpx's response and its stream refer to each other: a cycle that only the
            # garbage collector frees, ~35 objects a poll. Broken here, they go at once.
            sent.stream = NO_BODY

        return Reply(sent.status_code, dict(sent.headers.multi_items()), str(sent.url) if sent.history else "",
                     sent.aiter_raw(), close)


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

    async def open(
        self, method: str, url: httpx.URL, headers: list[tuple[str, str]], timeouts: dict[str, float | None],
        body: bytes | None = None, request: httpx.Request | None = None,
    ) -> aiohttp.ClientResponse:
        """Sends a request and returns aiohttp's response once its headers are in, its body
        still to read (release it after). `timeouts` as httpx gives them ("connect", "read":
        seconds or None). Errors are raised as httpx's, naming `request` if given."""
        connect, read = timeouts.get("connect"), timeouts.get("read")
        timeout = self._timeouts.get((connect, read))
        if timeout is None:  # a client has one or two: kept, not built for every request
            timeout = self._timeouts[connect, read] = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        try:
            return await self._session_for_loop().request(
                method, self._url(url), headers=headers, data=body, allow_redirects=False, timeout=timeout
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(type(exc).__name__, request=request) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:  # no headers in time
            raise httpx.ReadTimeout(type(exc).__name__, request=request) from exc
        except (aiohttp.ClientConnectorError, OSError) as exc:
            raise httpx.ConnectError(type(exc).__name__, request=request) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise httpx.RemoteProtocolError(type(exc).__name__, request=request) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = None if request.stream is NO_BODY else await request.aread()
        response = await self.open(
            request.method, request.url,
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
            request.extensions.get("timeout", {}), body or None, request,
        )
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
