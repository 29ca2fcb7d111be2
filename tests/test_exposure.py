"""What faces the network, against `python3 main.py` on 127.0.0.1: links that are not http(s)
reach no output, unsigned webhooks only straight from loopback, the public listener serves
only webhooks and /health, the admin token guards the rest, and slow or too many clients are
bounded without keeping /health or a signed webhook out."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, run_main, start_main, wait_http
from hookreceiver import HookReceiver

from status_monitor.model import web_url
from status_monitor.web.access import straight_from_loopback
from status_monitor.web.connections import BODY_TIMEOUT, HEAD_TIMEOUT, MAX_HEAD, MAX_REQUEST_LINE

SECRET = "a-provider-secret-0123456789"
TOKEN = "admin-token-for-the-tests-5f1c2a"
BAD_URLS = ("javascript:alert(document.domain)", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)")


class Daemon:
    """`python3 main.py --config ...` as a user runs it, watching `feeds` on loopback (never
    the built-in list: no test touches the internet); stop() returns (stdout, stderr)."""

    def __init__(self, tmp_path: Path, feeds, config: str = "", *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if "[[feeds]]" not in config:
            feeds.set("/quiet.rss", per_update_rss([]))
            config += f'[[feeds]]\nname = "Quiet"\nurl = "{feeds.url("/quiet.rss")}"\n'
        path = tmp_path / "monitor.toml"
        path.write_text(f'state = "{tmp_path / "state.db"}"\ninterval = 0.5\n[server]\nport = {self.port}\n{config}')
        self.proc = start_main("--config", str(path), "--json", *args, cwd=tmp_path, env=env)
        try:
            wait_http(self.base + "/health")
        except AssertionError:
            self.proc.kill()
            raise AssertionError(f"the monitor did not start: {self.proc.communicate()[1]}") from None

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.communicate(timeout=15)
        finally:
            self.proc.kill()


@pytest.fixture
def daemons(feeds):
    started: list[Daemon] = []

    def start(tmp_path: Path, *args, **kwargs) -> Daemon:
        started.append(Daemon(tmp_path, feeds, *args, **kwargs))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def signed(body: dict) -> tuple[bytes, dict[str, str]]:
    """Signed as GitHub signs its webhooks (X-Hub-Signature-256)."""
    data = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
    return data, {"content-type": "application/json", "x-hub-signature-256": signature}


def hook(incident: str, url: str | None = None) -> dict:
    return {"event_type": "incident.updated", "data": {"id": incident, "incident": {
        "name": f"Incident {incident}", "status": {"label": "Investigating"}, "message": "m", "url": url}}}


# --- links: http(s) only, from every source to every output ---

def test_web_url_keeps_http_and_https_only():
    assert web_url("https://status.example/incidents/1") == "https://status.example/incidents/1"
    assert web_url("  HTTP://status.example/x \n") == "HTTP://status.example/x"
    for bad in (*BAD_URLS, " JavaScript:alert(1)", "java\tscript:alert(1)", "\x01javascript:alert(1)",
                "https://a.example/\nb", "//evil.example/x", "/incidents/1", "file:///etc/passwd", "", None):
        assert web_url(bad) is None, bad


def per_update_rss(items: list[tuple[str, str, datetime]]) -> bytes:
    entries = "".join(
        f"<item><title>{title}</title><link>{link.replace('&', '&amp;').replace('<', '&lt;')}</link>"
        f"<guid isPermaLink='false'>{title}</guid><pubDate>{format_datetime(when)}</pubDate>"
        f"<description>Investigating {title}</description></item>"
        for title, link, when in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed</title>{entries}</channel></rss>'.encode()


def statuspage_incidents(codes_and_links: list[tuple[str, str]], when: datetime) -> bytes:
    stamp = when.isoformat().replace("+00:00", "Z")
    return json.dumps({"page": {"id": "p1", "name": "Api"}, "incidents": [
        {"id": code, "name": f"Api {code}", "status": "investigating", "impact": "minor", "shortlink": link,
         "incident_updates": [{"id": f"u-{code}", "status": "investigating", "body": "Looking",
                               "created_at": stamp, "display_at": stamp}]}
        for code, link in codes_and_links]}).encode()


def test_links_that_are_not_http_reach_no_output(tmp_path, feeds, servers, daemons):
    receiver = servers(HookReceiver)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    feeds.set("/feed.rss", per_update_rss([("Old", "https://x.test/old", now - timedelta(days=30))]))
    feeds.set("/api/v2/incidents.json", statuspage_incidents([], now))
    feeds.set("/api/v2/summary.json", json.dumps({"page": {"id": "p1"}, "components": [], "incidents": []}))
    daemon = daemons(
        tmp_path,
        f'[[feeds]]\nname = "Feed"\nurl = "{feeds.url("/feed.rss")}"\n'
        f'[[feeds]]\nname = "Api"\nurl = "{feeds.url("/")}"\nkind = "statuspage-api"\n',
        env={"NOTIFY_URLS": receiver.url()},
    )
    deadline = time.monotonic() + 15  # both sources' first polls: the baseline, announced nowhere
    while httpx.get(daemon.base + "/stats").json()["polls_total"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Then every source brings incidents whose links are javascript:, data: and vbscript:.
    feeds.set("/feed.rss", per_update_rss([(f"Feed {n}", url, now) for n, url in enumerate(BAD_URLS)]))
    feeds.set("/api/v2/incidents.json", statuspage_incidents([(f"api{n}", url) for n, url in enumerate(BAD_URLS)], now))
    for n, url in enumerate(BAD_URLS):
        assert httpx.post(daemon.base + "/webhook/generic/Hooks", json=hook(f"generic{n}", url)).status_code == 200
        statuspage = json.loads(statuspage_incidents([(f"sp{n}", url)], now))["incidents"][0]
        assert httpx.post(daemon.base + "/webhook/generic/Pages", json={"incident": statuspage}).status_code == 200
    incident_io = {"event_type": "public_incident.incident_created_v2", "public_incident.incident_created_v2": {
        "incident": {"id": "01J", "name": "Io incident", "permalink": BAD_URLS[0], "summary": "s",
                     "incident_status": {"category": "live", "name": "Investigating"}}}}
    assert httpx.post(daemon.base + "/webhook/incident-io", json=incident_io).status_code == 200
    expected = 3 * 4 + 1  # feed, API, generic and Statuspage webhooks, three each; one incident.io
    notified = receiver.wait_for(expected)
    stored = httpx.get(daemon.base + "/events?limit=1000").json()["events"]
    cards = httpx.get(daemon.base + "/api/providers").json()["providers"]
    stdout, _ = daemon.stop()
    printed = [json.loads(line) for line in stdout.splitlines()]
    assert len(printed) == len(stored) == expected
    assert {e["provider"] for e in printed} == {"Feed", "Api", "Hooks", "Pages", "incident.io"}
    assert all(e["url"] is None for e in printed + stored)
    assert all(i["url"] is None for card in cards for i in card["incidents"])
    assert sum(len(card["incidents"]) for card in cards) == expected
    everything = (stdout + json.dumps(stored) + json.dumps(cards) + "".join(n.body.decode() for n in notified)).lower()
    for scheme in ("javascript", "data:text", "vbscript"):
        assert scheme not in everything


def test_links_stored_before_this_check_are_not_served_either(tmp_path, daemons):
    """A state file written by an older monitor may hold such links: they are dropped as
    they are read, for /events, the open incidents rebuilt at start-up and --history."""
    daemon = daemons(tmp_path)
    assert httpx.post(daemon.base + "/webhook/generic/Old", json=hook("old1", "https://x.test/1")).status_code == 200
    daemon.stop()
    with sqlite3.connect(tmp_path / "state.db") as db:
        [(body,)] = db.execute("SELECT body FROM events").fetchall()
        db.execute("UPDATE events SET body = ?", (body.replace("https://x.test/1", BAD_URLS[0]),))
    daemon = daemons(tmp_path)
    [stored] = httpx.get(daemon.base + "/events").json()["events"]
    [card] = [c for c in httpx.get(daemon.base + "/api/providers").json()["providers"] if c["name"] == "Old"]
    assert stored["url"] is None and card["incidents"][0]["url"] is None
    daemon.stop()
    history = run_main("--history", "--json", "--state", str(tmp_path / "state.db"), cwd=tmp_path)
    assert history.returncode == 0 and json.loads(history.stdout)["url"] is None


def test_the_dashboard_and_its_json_carry_the_security_headers(tmp_path, daemons):
    daemon = daemons(tmp_path)
    for path in ("/", "/api/providers", "/events", "/stats", "/static/app.js", "/nowhere"):
        headers = httpx.get(daemon.base + path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


# --- unsigned webhooks: straight from loopback only ---

FORWARDED = [
    {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9;proto=https"}, {"X-Real-IP": "203.0.113.9"},
    {"CF-Connecting-IP": "203.0.113.9"}, {"Via": "1.1 tunnel"}, {"X-Forwarded-Proto": "https"},
]


def test_straight_from_loopback_means_a_loopback_peer_and_no_forwarding_header():
    for peer in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert straight_from_loopback((peer, 5000), {"content-type": "application/json"}), peer
    for peer in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "not-an-address"):
        assert not straight_from_loopback((peer, 5000), {}), peer
    assert not straight_from_loopback(None, {})
    for name in ("x-forwarded-for", "forwarded", "x-real-ip", "via", "cf-connecting-ip", "true-client-ip"):
        assert not straight_from_loopback(("127.0.0.1", 5000), {name: "203.0.113.9"}), name


@pytest.mark.parametrize("path", ["/webhook/generic/Unsigned", "/webhook/incident-io"])
def test_an_unsigned_webhook_is_accepted_straight_from_loopback_and_refused_when_forwarded(tmp_path, daemons, path):
    daemon = daemons(tmp_path)
    body = hook("direct") if "generic" in path else {
        "event_type": "public_incident.incident_created_v2", "public_incident.incident_created_v2": {
            "incident": {"id": "01K", "name": "Io", "incident_status": {"category": "live", "name": "Investigating"}}}}
    for n, headers in enumerate(FORWARDED):
        refused = httpx.post(daemon.base + path, json=body, headers=headers)
        assert refused.status_code == 401, headers
        assert "configure a secret" in refused.json()["error"]
    assert httpx.post(daemon.base + path, json=body).status_code == 200  # the README's curl, as written
    stats = httpx.get(daemon.base + "/stats").json()
    assert stats["webhooks_rejected_total"] == {"unsigned_remote": len(FORWARDED)}
    stdout, stderr = daemon.stop()
    assert len(stdout.splitlines()) == 1
    assert "accepts unsigned requests straight from this machine only" in stderr


def test_a_signed_webhook_is_accepted_through_a_tunnel(tmp_path, daemons):
    daemon = daemons(tmp_path, f'[webhooks.secrets]\nTunnelled = "{SECRET}"\n')
    data, headers = signed(hook("t1"))
    answer = httpx.post(daemon.base + "/webhook/generic/Tunnelled", content=data,
                        headers={**headers, "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"


def test_allow_unsigned_accepts_them_from_anywhere_with_a_warning(tmp_path, daemons):
    daemon = daemons(tmp_path, "", "--allow-unsigned")
    answer = httpx.post(daemon.base + "/webhook/generic/Anywhere", json=hook("a1"), headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 200
    _, stderr = daemon.stop()
    assert "WARNING" in stderr and "from anywhere (--allow-unsigned)" in stderr


# --- the public listener ---

def test_the_public_port_serves_only_the_webhooks_and_health(tmp_path, daemons):
    public = free_port()
    daemon = daemons(tmp_path, f'[webhooks.secrets]\nSigned = "{SECRET}"\n', "--public-port", str(public))
    outside = f"http://127.0.0.1:{public}"
    assert httpx.get(outside + "/health").json()["status"] == "ok"
    data, headers = signed(hook("p1"))
    assert httpx.post(outside + "/webhook/generic/Signed", content=data, headers=headers).status_code == 200
    for path in ("/", "/api/providers", "/events", "/events/stream", "/stats", "/metrics", "/static/app.js"):
        assert httpx.get(outside + path).status_code == 404, path
        with httpx.stream("GET", daemon.base + path, timeout=5) as inside:
            assert inside.status_code == 200, path
    # A tunnel to the public port may add no header at all (ssh -R): unsigned is refused there anyway.
    unsigned = httpx.post(outside + "/webhook/generic/Unsigned", json=hook("u1"))
    assert unsigned.status_code == 401 and "configure a secret" in unsigned.json()["error"]
    assert httpx.post(daemon.base + "/webhook/generic/Unsigned", json=hook("u1")).status_code == 200
    _, stderr = daemon.stop()
    assert f"public listener http://127.0.0.1:{public} (webhooks and /health only)" in stderr


def test_the_public_port_cannot_be_the_main_one(tmp_path):
    port = str(free_port())
    result = run_main("--port", port, "--public-port", port, "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 2 and "public port" in result.stderr


# --- the admin token ---

GUARDED = ("/api/providers", "/events", "/events/stream", "/stats", "/metrics")


@pytest.mark.parametrize("where", ["environment", "config"])
def test_the_admin_token_guards_the_dashboard_and_its_data_and_nothing_else(tmp_path, daemons, where):
    if where == "environment":
        daemon = daemons(tmp_path, "", "--log-level", "DEBUG", env={"MONITOR_ADMIN_TOKEN": TOKEN})
    else:
        daemon = daemons(tmp_path, f'admin_token = "{TOKEN}"\n', "--log-level", "DEBUG")
    def get(path: str, **options) -> httpx.Response:
        """The answer's status and headers, without reading a body (an event stream never ends)."""
        with httpx.stream("GET", daemon.base + path, timeout=5, **options) as answer:
            return answer

    for path in GUARDED:
        assert get(path).status_code == 401, path
        assert get(path, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401, path
        assert get(path, headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status_code == 401, path
        assert get(path, cookies={"monitor_session": TOKEN}).status_code == 401, path
        assert get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
    page = get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert get("/health").status_code == 200
    assert httpx.post(daemon.base + "/webhook/generic/Open", json=hook("o1")).status_code == 200
    # The browser's way in: a login form that sets an HttpOnly, SameSite=Strict cookie.
    assert httpx.get(daemon.base + "/login").status_code == 200
    assert httpx.post(daemon.base + "/login", data={"token": "t" * 5000}).status_code == 413
    wrong = httpx.post(daemon.base + "/login", data={"token": "not-the-token-at-all"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    login = httpx.post(daemon.base + "/login", data={"token": TOKEN})
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = dict(login.cookies)
    for path in ("/", *GUARDED):
        assert get(path, cookies=session).status_code == 200, path
    _, stderr = daemon.stop()
    assert TOKEN not in stderr and TOKEN[:12] not in stderr


def test_a_short_admin_token_stops_start_up_without_echoing_it(tmp_path):
    result = run_main("--state", ":memory:", cwd=tmp_path, env={"MONITOR_ADMIN_TOKEN": "short-tok"})
    assert result.returncode == 2 and "MONITOR_ADMIN_TOKEN" in result.stderr and "short-tok" not in result.stderr


# --- bounded clients ---

def open_stream(client: httpx.Client, url: str) -> httpx.Response:
    """An event stream left open (its body unread) until the response is closed."""
    return client.send(client.build_request("GET", url), stream=True)


def open_sockets(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its side (EOF or reset), reading whatever it sent."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


@pytest.fixture
def many_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 5000:
        pytest.fail(f"this test opens 2,000 sockets and the hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 5000), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_two_thousand_trickling_clients_are_closed_and_health_and_webhooks_still_answer(tmp_path, daemons, many_files):
    daemon = daemons(tmp_path, f'[webhooks.secrets]\nSigned = "{SECRET}"\n')
    started = time.monotonic()
    tricklers = open_sockets(daemon.port, 2000)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    sent = 0
    checks = []
    while time.monotonic() - started < HEAD_TIMEOUT + 3:
        for sock in tricklers:  # one more byte of the head from each, about every 0.5 s
            try:
                sock.send(head[sent:sent + 1] if sent < len(head) else b"a")
            except OSError:
                pass
        sent += 1
        if len(checks) < 3 and time.monotonic() - started > 2 + 3 * len(checks):
            began = time.monotonic()
            assert httpx.get(daemon.base + "/health", timeout=5).status_code == 200
            data, headers = signed(hook(f"flood{len(checks)}"))
            answer = httpx.post(daemon.base + "/webhook/generic/Signed", content=data, headers=headers, timeout=5)
            assert answer.status_code == 200 and answer.json()["status"] == "accepted"
            checks.append(time.monotonic() - began)
        time.sleep(0.5)
    assert len(checks) == 3 and max(checks) < 1.0, checks  # /health and a signed webhook, each time
    still_open = [sock for sock in tricklers if not closed_by_server(sock)]
    assert not still_open, f"{len(still_open)} trickling connections still open after {HEAD_TIMEOUT + 3} s"
    stats = httpx.get(daemon.base + "/stats").json()["http_connections"]
    assert stats["timed_out_total"] + stats["evicted_total"] >= 2000
    for sock in tricklers:
        sock.close()
    stdout, _ = daemon.stop()
    assert len(stdout.splitlines()) == 3


def read_all(sock: socket.socket) -> bytes:
    """What the server sent, without waiting."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (BlockingIOError, ConnectionError):
        pass
    return data


def test_slow_clients_are_closed_when_they_stall_and_not_while_they_send(tmp_path, daemons):
    daemon = daemons(tmp_path)
    head = (b"POST /webhook/generic/Slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n")
    body = json.dumps(hook("slow1")).encode()
    stalled, idle, kept, slow = open_sockets(daemon.port, 4)
    stalled.send(head % 100 + b'{"event_type"')  # then nothing: a stalled body
    kept.setblocking(True)
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
    kept.setblocking(False)
    next_head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100  # a kept-alive connection's next head, trickled
    slow.send(head % len(body))
    started = time.monotonic()
    closed: dict[str, float] = {}
    answers: dict[str, bytes] = {}
    sent = 0
    while time.monotonic() - started < BODY_TIMEOUT + 3:  # the slow body takes longer than that, a byte at a time
        elapsed = time.monotonic() - started
        if sent < len(body) - 1 and sent < elapsed / (BODY_TIMEOUT + 3) * len(body):
            slow.send(body[sent:sent + 1])
            sent += 1
            if sent % 4 == 1 and "kept" not in closed:
                with contextlib.suppress(OSError):
                    kept.send(next_head[sent // 4:sent // 4 + 1])
        for name, sock in (("stalled", stalled), ("idle", idle), ("kept", kept)):
            if name not in closed:
                answers[name] = answers.get(name, b"") + read_all(sock)
                if closed_by_server(sock):
                    closed[name] = elapsed
        assert not closed_by_server(slow), "a body that never stalled was closed"
        time.sleep(0.02)
    assert BODY_TIMEOUT - 0.5 <= closed["stalled"] <= BODY_TIMEOUT + 1.5, closed
    assert HEAD_TIMEOUT - 0.5 <= closed["idle"] <= HEAD_TIMEOUT + 1.5, closed
    assert HEAD_TIMEOUT - 0.5 <= closed["kept"] <= HEAD_TIMEOUT + 1.5, closed
    assert b"HTTP/1.1 408 " in answers["kept"]  # (after the end of the first answer, if it came late)
    assert answers["idle"] == b""  # a silent client gets no answer
    slow.setblocking(True)
    slow.settimeout(5)
    slow.sendall(body[sent:])
    assert slow.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert httpx.get(daemon.base + "/stats").json()["http_connections"]["timed_out_total"] == 3
    stdout, _ = daemon.stop()
    assert json.loads(stdout)["title"] == "Incident slow1"


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except ConnectionError:
            pass  # the server answered and closed before taking it all
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:
            pass
        return answer


def test_request_lines_and_heads_have_size_limits(tmp_path, daemons):
    daemon = daemons(tmp_path)
    long_line = b"GET /health?" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(daemon.port, long_line).startswith(b"HTTP/1.1 414 ")
    def head(size: int) -> bytes:
        pads = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"b" * 1000) for n in range(size // 1000))
        return b"GET /health HTTP/1.1\r\nHost: x\r\n" + pads + b"Connection: close\r\n\r\n"

    assert raw_request(daemon.port, head(MAX_HEAD - 2000)).startswith(b"HTTP/1.1 200 ")
    assert raw_request(daemon.port, head(MAX_HEAD + 2000)).startswith(b"HTTP/1.1 431 ")
    endless = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"c" * (20 * MAX_HEAD)
    assert raw_request(daemon.port, endless).startswith(b"HTTP/1.1 431 ")
    assert httpx.get(daemon.base + "/stats").json()["http_connections"]["too_large_total"] == 3


def test_past_the_connection_cap_idle_clients_make_room_and_busy_ones_get_503(tmp_path, daemons):
    daemon = daemons(tmp_path, "max_connections = 10\nmax_event_streams = 50\n")
    idle = open_sockets(daemon.port, 10)
    assert httpx.get(daemon.base + "/health", timeout=2).status_code == 200  # an idle one was closed for it
    assert sum(closed_by_server(sock) for sock in idle) >= 1
    streams = [httpx.Client(timeout=5) for _ in range(10)]
    opened = [open_stream(client, daemon.base + "/events/stream") for client in streams]
    assert all(response.status_code == 200 for response in opened)
    began = time.monotonic()
    refused = httpx.get(daemon.base + "/health", timeout=5)
    assert refused.status_code == 503 and time.monotonic() - began < 1.0
    stats_after = None
    for response, client in zip(opened, streams):
        response.close()
        client.close()
    deadline = time.monotonic() + 5
    while stats_after is None and time.monotonic() < deadline:
        try:
            stats_after = httpx.get(daemon.base + "/stats", timeout=2).json()["http_connections"]
        except httpx.HTTPError:
            time.sleep(0.1)
    assert stats_after["refused_total"] >= 1 and stats_after["evicted_total"] >= 1
    for sock in idle:
        sock.close()


def test_the_cap_fits_the_open_file_limit(tmp_path, feeds):
    """With a hard limit of 600 open files, 1,000 connections cannot be: the cap is lowered
    to leave room for the polls (concurrency 100) and 100 more files, and start-up says so."""
    port = free_port()
    feeds.set("/quiet.rss", per_update_rss([]))
    config = tmp_path / "monitor.toml"
    config.write_text(f'state = "{tmp_path / "state.db"}"\n[server]\nport = {port}\n'
                      f'[[feeds]]\nname = "Quiet"\nurl = "{feeds.url("/quiet.rss")}"\n')
    proc = subprocess.Popen(["bash", "-c", 'ulimit -n 600 && exec "$0" "$@"', sys.executable, str(ROOT / "main.py"),
                             "--config", str(config)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        assert httpx.get(f"http://127.0.0.1:{port}/stats").json()["http_connections"]["max"] == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert "max_connections 1000 lowered to 400" in stderr


def test_event_streams_past_the_cap_get_503_at_once(tmp_path, daemons):
    daemon = daemons(tmp_path, "max_event_streams = 3\n")
    clients = [httpx.Client(timeout=5) for _ in range(4)]
    opened = [open_stream(client, daemon.base + "/events/stream") for client in clients[:3]]
    assert all(response.status_code == 200 for response in opened)
    began = time.monotonic()
    refused = clients[3].get(daemon.base + "/events/stream")
    assert refused.status_code == 503 and time.monotonic() - began < 1.0
    assert refused.headers["retry-after"]
    opened[0].close()
    clients[0].close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the closed stream's place is free again
        with clients[3].stream("GET", daemon.base + "/events/stream") as again:
            if again.status_code == 200:
                break
        time.sleep(0.1)
    else:
        raise AssertionError("a closed stream's place was never freed")
    for response, client in zip(opened[1:], clients[1:3]):
        response.close()
        client.close()
