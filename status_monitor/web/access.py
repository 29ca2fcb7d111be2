"""Who may reach what over HTTP: the security headers every page and JSON answer carries,
the admin token that guards the dashboard and its data, and the test that tells a request
straight from this machine from one relayed by a proxy or a tunnel."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Headers a proxy or a tunnel (ngrok, cloudflared, localtunnel, Tailscale Funnel, nginx,
# a CDN) adds to say whom it relays for. A request that carries one did not start here.
FORWARDING_HEADERS = frozenset({
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
    "x-forwarded-server", "x-forwarded", "forwarded-for", "x-real-ip", "x-client-ip", "via",
    "x-cluster-client-ip", "true-client-ip", "cf-connecting-ip", "cf-connecting-ipv6", "cf-ray",
    "fastly-client-ip", "x-original-forwarded-for", "x-envoy-external-address", "x-azure-clientip",
    "tailscale-funnel-request", "ngrok-trace-id",
})

# The dashboard loads its script, style and data from its own origin only, runs no inline
# script, and may not be framed (CSP Level 3; RFC 7034 for X-Frame-Options, for old browsers).
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

SESSION_COOKIE = "monitor_session"
MAX_LOGIN_BODY = 4096  # bytes: a login form holds one token


def straight_from_loopback(client: tuple[str, int] | None, headers: Iterable[str]) -> bool:
    """True when the peer is a loopback address (127.0.0.0/8, ::1, or IPv4 loopback mapped
    into IPv6) and no header says a proxy or tunnel relayed the request. `headers` are the
    request's header names, lower-case."""
    return client is not None and _is_loopback(client[0]) and FORWARDING_HEADERS.isdisjoint(headers)


@functools.lru_cache(maxsize=1024)
def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


class AdminGuard:
    """With an admin token, every path but /health, /login and the page's static files needs
    it: as `Authorization: Bearer <token>`, or as the session cookie /login sets (HttpOnly,
    SameSite=Strict; its value is an HMAC of the token, not the token). Both are compared in
    constant time. The webhook routes never reach this guard (webhook_server.WebhookRoutes
    answers them first)."""

    OPEN = frozenset({"/health"})

    def __init__(self, token: str, app: ASGIApp, login_page: Path) -> None:
        self.app = app
        self._token = token.encode()
        self._session = hmac.new(self._token, b"status-page-monitor dashboard session", hashlib.sha256).hexdigest()
        self._login_page = login_page.read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.OPEN or path.startswith("/static/") or self._authorised(scope["headers"]):
            await self.app(scope, receive, send)
        elif path == "/login":
            await self._login(scope, receive, send)
        elif path == "/" and scope["method"] in ("GET", "HEAD"):
            await send_response(send, 303, b"", [(b"location", b"/login")])
        else:
            body = orjson.dumps({"detail": "admin token required: send 'Authorization: Bearer <token>' or log in at /login"})
            await send_response(send, 401, body, [
                (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="status-page-monitor"'),
            ])

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                if hmac.compare_digest(value[7:].strip(), self._token):
                    return True
            elif name == b"cookie":
                session = _cookies(value).get(SESSION_COOKIE)
                if session is not None and hmac.compare_digest(session.encode(), self._session.encode()):
                    return True
        return False

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET shows the form; POST (`token=...`, form-encoded) sets the session cookie and
        goes to the dashboard, or shows the form again with 401."""
        html = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
        if scope["method"] in ("GET", "HEAD"):
            await send_response(send, 200, self._login_page, html)
            return
        if scope["method"] != "POST":
            await send_response(send, 405, b"", [(b"allow", b"GET, POST")])
            return
        try:
            body = await receive_body(receive, MAX_LOGIN_BODY)
        except BodyTooLarge:
            await send_response(send, 413, b"", [])
            return
        except Disconnected:
            return
        given = dict(parse_qsl(body.decode("latin-1"))).get("token", "").strip()
        if hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
            cookie = f"{SESSION_COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict".encode()
            await send_response(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie)])
            return
        page = self._login_page.replace(b'<p id="login-error" class="error" hidden>', b'<p id="login-error" class="error">')
        await send_response(send, 401, page, html)


def _cookies(header: bytes) -> dict[str, str]:
    """A Cookie header's name=value pairs (RFC 6265, section 4.2)."""
    pairs = (part.strip().partition("=") for part in header.decode("latin-1").split(";"))
    return {name: value for name, _, value in pairs if name}


class Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class BodyTooLarge(Exception):
    pass


async def receive_body(receive: Receive, limit: int) -> bytes:
    """A request's whole body, read from ASGI `http.request` messages. Raises BodyTooLarge
    as soon as more than `limit` bytes came (the rest is never read), Disconnected when the
    client left first."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


async def send_response(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})

