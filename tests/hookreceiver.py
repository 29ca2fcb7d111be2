"""A real HTTP receiver on 127.0.0.1 for notification tests: records every POST, and can be
told to fail the next N requests or to hang until released."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from feedserver import serve_on_loopback


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class HookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []  # answered 2xx
        self.attempts = 0  # every POST, failed or not
        self.fail_next = 0
        self.hang = False
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.httpd = serve_on_loopback(self._serve, "POST")
        self.port = self.httpd.server_address[1]

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        with self._lock:
            self.attempts += 1
            failing = self.fail_next > 0
            self.fail_next -= failing
        if self.hang:
            self._release.wait(30)
        status = 500 if failing else 200
        if not failing:
            with self._lock:
                self.received.append(Received(request.path, request.headers.get("Content-Type", ""), body))
        request.send_response(status)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"{}")

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notifications, got {len(self.received)}")

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
