"""A real HTTP feed server on 127.0.0.1 for the tests: serves documents with ETag and
Last-Modified, answers 304 only when the conditional headers match, and can be told to
change a feed, serve HTML, hang, fail, redirect or rate-limit; a route at "*" answers every
path no other route takes, as catch-all sites do."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def serve_on_loopback(serve: Callable[[BaseHTTPRequestHandler], None], method: str) -> ThreadingHTTPServer:
    """An HTTP/1.1 server on a free port of 127.0.0.1, answering `method` requests with
    `serve(handler)` on threads of its own; quiet (no access log)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

    setattr(Handler, f"do_{method}", lambda handler: serve(handler))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/xml"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    validators: bool = True
    hang: bool = False
    gzip: bool = False
    etag: str = ""
    last_modified: str = ""


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)  # when it was answered


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.hanging: list[tuple[str, int]] = []  # (path, client port) of each request left hanging
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stamp = 1_700_000_000
        self.httpd = serve_on_loopback(self._serve, "GET")
        self.port = self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, body: bytes | str, **options: object) -> None:
        """Puts a document at `path`; a changed body gets new validators."""
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            route = self.routes.get(path) or Route()
            changed = body != route.body
            route.body = body
            for name, value in options.items():
                setattr(route, name, value)
            if changed or not route.etag:
                self._stamp += 60
                route.etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                route.last_modified = formatdate(self._stamp, usegmt=True)
            self.routes[path] = route

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            route = self.routes.get(handler.path) or self.routes.get("*")  # "*": a catch-all site
            headers = {k.lower(): v for k, v in handler.headers.items()}
        if route is None:
            self._answer(handler, 404, b"not found", {"Content-Type": "text/plain"}, headers)
            return
        if route.hang:
            with self._lock:
                self.hanging.append((handler.path, handler.client_address[1]))
            self._release.wait(60)
            return
        extra = dict(route.headers)
        if route.status != 200:
            self._answer(handler, route.status, b"", extra, headers)
            return
        if route.validators:
            extra["ETag"] = route.etag
            extra["Last-Modified"] = route.last_modified
            inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
            if (inm is not None and inm == route.etag) or (inm is None and ims == route.last_modified):
                self._answer(handler, 304, b"", extra, headers)
                return
        body = route.body
        if route.gzip:
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        extra["Content-Type"] = route.content_type
        self._answer(handler, 200, body, extra, headers)

    def _answer(self, handler, status: int, body: bytes, extra: dict[str, str], request_headers) -> None:
        with self._lock:
            self.requests.append(Request(handler.path, request_headers, status))
        try:
            handler.send_response(status)
            for name, value in extra.items():
                handler.send_header(name, value)
            if status != 304:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if status != 304:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
