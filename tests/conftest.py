from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedserver import FeedServer  # noqa: E402
from pgserver import Cluster  # noqa: E402

from main import Monitor  # noqa: E402
from status_monitor import redact  # noqa: E402
from status_monitor.config import Config, FeedConfig  # noqa: E402
from status_monitor.model import Event  # noqa: E402

# An AWS entry that aws_all.rss lacks: a new update in a per-update feed.
AWS_NEW_ITEM = (
    b"<item><title><![CDATA[Service impact: Increased latency]]></title>"
    b"<link>https://status.aws.amazon.com/</link><pubDate>Tue, 18 Aug 2026 06:00:00 PDT</pubDate>"
    b'<guid isPermaLink="false">https://status.aws.amazon.com/#ec2-us-east-1_1787058000</guid>'
    b"<description><![CDATA[We are investigating increased latency.]]></description></item>"
)


def sqlite_state(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


_cluster: Cluster | None = None


def shared_cluster() -> Cluster:
    """One throwaway PostgreSQL server for the session, started on first use."""
    global _cluster
    if _cluster is None:
        cluster = Cluster()
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _cluster = cluster
    return _cluster


def pytest_sessionfinish(session, exitstatus) -> None:
    if _cluster is not None:
        _cluster.stop()


def postgres_state(tmp_path: Path) -> str:
    return shared_cluster().create_database()


# Every storage backend, as a function giving a `--state` value for a fresh state: the
# storage tests (test_storage.py) run once for each.
STORE_BACKENDS = [pytest.param(sqlite_state, id="sqlite"), pytest.param(postgres_state, id="postgresql")]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def feed(name: str) -> bytes:
    return fixture_bytes(f"feeds/{name}")


@pytest.fixture(scope="session")
def pg_cluster() -> Cluster:
    """The session's PostgreSQL server (tests/pgserver.py)."""
    return shared_cluster()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database of the session's server: postgresql://monitor:...@127.0.0.1:port/tN."""
    return pg_cluster.create_database()


@pytest.fixture
def feeds():
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def servers():
    """`servers(FeedServer)` starts another loopback server; all are closed after the test."""
    started = []

    def start(kind):
        started.append(kind())
        return started[-1]

    yield start
    for server in started:
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Captured:
    """An output that keeps events, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture(autouse=True)
def secrets_of_this_test_only(monkeypatch):
    """`scrub` hides the secrets this test's URLs and configs named, not those of the tests
    before it: an earlier test's password ("secret") is an ordinary word in this one."""
    monkeypatch.setattr(redact, "_secrets", set())


def make_config(tmp_path: Path, feeds: list[tuple[str, str]] | None = None, **options: Any) -> Config:
    options.setdefault("state_path", str(tmp_path / "state.db"))
    options.setdefault("request_timeout", 2.0)
    options.setdefault("port", free_port())
    return replace(Config(feeds=tuple(FeedConfig(n, u) for n, u in (feeds or []))), **options)


class RunningMonitor:
    """The real Monitor (uvicorn server, poller, handler, SQLite) on its own thread and loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.output = Captured()
        self.monitor = Monitor(self.config, outputs=[self.output])
        self.base = f"http://127.0.0.1:{self.config.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            await self.monitor.open()
            try:
                await self.monitor.start()
            finally:
                await self.monitor.close()

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def __enter__(self) -> "RunningMonitor":
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"monitor did not start: {self._error!r}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.monitor.stop)
        self._thread.join(15)
        if self._error:
            raise self._error

    def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError("condition not reached in time")


def run_main(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_main(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")
