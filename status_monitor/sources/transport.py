"""An httpx transport on aiohttp's connection pool.

The code is written against httpx; this transport only moves the bytes. httpx's own pool
scans every connection on every request, so at 100 concurrent polls it spends about ten
times the CPU of the request itself (encode/httpx issue 3215); aiohttp's pool does not.
httpx still does redirects and timeouts' bookkeeping; bodies are decoded by the poller
(`bodies`), within its caps. Every error is raised as an httpx one with aiohttp's (or
the socket's) as its cause, for `status_monitor.reasons.plain_reason` to name.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import AsyncIterator

import aiohttp
import httpx
import yarl

CHUNK = 64 * 1024


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


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int, ssl_context: ssl.SSLContext, max_per_host: int = 0) -> None:
        """At most `max_connections` open connections, `max_per_host` (0: no limit) to one
        host, port and scheme (aiohttp's `limit_per_host`)."""
        self._max_connections = max_connections
        self._max_per_host = max_per_host
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

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
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        body = await request.aread()
        # Credentials travel in the Authorization header httpx built, never twice: aiohttp
        # refuses a URL's userinfo beside that header.
        url = request.url.copy_with(userinfo=b"") if request.url.userinfo else request.url
        try:
            response = await self._session_for_loop().request(
                request.method,
                yarl.URL(str(url), encoded=True),  # httpx has encoded it: yarl need not again
                headers=request.headers.multi_items(),
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
            headers=httpx.Headers(response.raw_headers, encoding="latin-1"),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
