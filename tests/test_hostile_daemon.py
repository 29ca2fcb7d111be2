"""The daemon (`python3 main.py`) against a good feed and, at once, 20 servers of each
hostile kind, every one a host of its own: its memory stays bounded, it keeps answering,
the good feed keeps its interval and its update is announced, and each hostile feed shows
in /stats as failing with a plain reason."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import feed, free_port, start_main, wait_http
from hostile import REASONS, HostileServer

GOOD_DAY1 = feed("statuspage_github_history_snapshot_2026-07-09.atom")
GOOD_DAY2 = feed("statuspage_github_history_snapshot_2026-07-10.atom")
TOKEN = "hostileTOKENabc123"
EACH = 20
KINDS = ("gzip-bomb", "br-bomb", "gzip-gzip-bomb", "endless", "drip", "redirect-loop", "laughs", "quadratic",
         "huge-length", "not-compressed")
INTERVAL = 1.0  # the hostile feeds'
GOOD_INTERVAL = 2.0
SLACK = 1.5  # seconds a poll may start late: bombs are inflated to the cap, on 2 shared cores
MEMORY_LIMIT_MB = 200


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class HealthWatch(threading.Thread):
    """Asks /health every 0.2 s; keeps the slowest answer (a failure counts as 'never')."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.slowest = 0.0
        self.asked = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stopped.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self.base + "/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest = max(self.slowest, time.monotonic() - started if ok else float("inf"))
                self.asked += 1
                self.stopped.wait(0.2)


@pytest.fixture
def hostile():
    server = HostileServer()
    yield server
    server.close()


def test_daemon_stays_bounded_and_responsive_among_hostile_servers(tmp_path, hostile):
    good = hostile.add("feed", body=GOOD_DAY1)
    ports = {kind: [hostile.add(kind, body=GOOD_DAY1) for _ in range(EACH)] for kind in KINDS}
    feeds = [(f"{kind} {i}", hostile.url(port, f"/feed.rss?token={TOKEN}"))
              for kind, kind_ports in ports.items() for i, port in enumerate(kind_ports)]
    port = free_port()
    config = tmp_path / "monitor.toml"
    config.write_text(
        f"interval = {INTERVAL}\nrequest_timeout = 2\nstate = \"{tmp_path / 'state.db'}\"\n"
        f"[server]\nport = {port}\n"
        + "".join(f'[[feeds]]\nname = "{name}"\nurl = "{url}"\n' for name, url in feeds)
        + f"[[feeds]]\nname = \"Good\"\nurl = \"{hostile.url(good, '/history.atom')}\"\ninterval = {GOOD_INTERVAL}\n"
    )
    daemon = start_main("--config", str(config), "--json", cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    watch = HealthWatch(base)
    try:
        wait_http(base + "/health")
        watch.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = httpx.get(base + "/stats", timeout=5).json()
            hostile_feeds = [f for f in stats["feeds"] if f["name"] != "Good"]
            if all(f["failing"] for f in hostile_feeds):
                break
            time.sleep(0.5)
        hostile.set_body(good, GOOD_DAY2)
        time.sleep(3 * GOOD_INTERVAL)
        deadline = time.monotonic() + 30  # enough of the good feed's polls to judge its interval
        while len(hostile.hosts[good].requests) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = httpx.get(base + "/stats", timeout=5).json()
        shown = {path: httpx.get(base + path, timeout=5).text for path in ("/stats", "/api/providers", "/metrics", "/")}
        peak = peak_rss_mb(daemon.pid)
    finally:
        watch.stopped.set()
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)

    by_name = {f["name"]: f for f in stats["feeds"]}
    for kind in KINDS:
        reason = REASONS[kind]
        for i in range(EACH):
            status = by_name[f"{kind} {i}"]
            assert status["failing"] and status["last_error"] == reason, (kind, status)
    assert peak < MEMORY_LIMIT_MB, f"peak resident memory {peak:.0f} MB"
    assert watch.asked > 20 and watch.slowest < 1.0, f"/health took {watch.slowest:.2f} s"

    # The good feed kept its interval (+10 % jitter, and some slack for a busy machine) ...
    times = [float(r[":at"]) for r in hostile.hosts[good].requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 5 and max(gaps) < GOOD_INTERVAL * 1.1 + SLACK, gaps
    # ... and its update was announced.
    events = [json.loads(line) for line in out.splitlines()]
    assert len([e for e in events if e["provider"] == "Good"]) == 1 + 11
    for text in (out, err, *shown.values()):
        assert TOKEN not in text
    assert "internal error" not in err and "Traceback" not in err
