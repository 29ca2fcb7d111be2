"""Failures said at once and plainly: a source never read is reported at its first failure,
one line sums up the first poll of every source, errors read as plain words, /health says
"degraded", and --once exits 1 when a source failed."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import httpx
import pytest
import trustme
from aiohttp.client_reqrep import ConnectionKey
from conftest import RunningMonitor, feed, free_port, make_config, run_main

from status_monitor.sources.transport import plain_reason

EMPTY = "azure_status_feed_empty.rss"


@pytest.fixture
def untrusted_tls():
    """An HTTPS server on 127.0.0.1 whose certificate comes from a CA nobody trusts."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # never reached: the client refuses the certificate
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.handle_error = lambda *args: None  # the refused handshakes
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/feed.rss"
    httpd.shutdown()
    httpd.server_close()


def test_once_exits_1_naming_each_failure_in_plain_words_and_sums_up(tmp_path, feeds, untrusted_tls):
    feeds.set("/ok.rss", feed(EMPTY))
    refused = f"http://127.0.0.1:{free_port()}/feed.rss"
    config = tmp_path / "monitor.toml"
    config.write_text("".join(f'[[feeds]]\nname = "{n}"\nurl = "{u}"\n' for n, u in [
        ("Fine", feeds.url("/ok.rss")), ("Closed", refused), ("Selfsigned", untrusted_tls)]))
    result = run_main("--config", str(config), "--once", "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    port = refused.split(":")[2].split("/")[0]
    assert f"feed Closed ({refused}) cannot be read: connection refused by 127.0.0.1:{port} (still retrying)" in result.stderr
    assert "feed Selfsigned" in result.stderr and "TLS certificate of 127.0.0.1 not trusted (" in result.stderr
    assert "Error:" not in result.stderr and "Errno" not in result.stderr  # no library's wording
    summary = [line for line in result.stderr.splitlines() if "3 sources:" in line]
    assert len(summary) == 1
    assert summary[0].endswith(
        "WARNING monitor.poller: 3 sources: 1 ok, 2 failing (connection refused: 1, TLS certificate not trusted: 1)")
    fine_only = tmp_path / "fine.toml"
    fine_only.write_text(f'[[feeds]]\nname = "Fine"\nurl = "{feeds.url("/ok.rss")}"\n')
    ok = run_main("--config", str(fine_only), "--once", "--state", ":memory:", cwd=tmp_path)
    assert ok.returncode == 0 and "1 source: 1 ok" in ok.stderr


def test_every_source_unreachable_asks_about_this_machines_network(tmp_path):
    closed = [f"http://127.0.0.1:{free_port()}/{n}.rss" for n in range(3)]
    config = tmp_path / "monitor.toml"
    config.write_text("".join(f'[[feeds]]\nname = "S{n}"\nurl = "{u}"\n' for n, u in enumerate(closed)))
    result = run_main("--config", str(config), "--once", "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 1
    assert ("3 sources: 0 ok, 3 failing (connection refused: 3); can this machine reach the internet"
            " (DNS, proxy, firewall)?") in result.stderr


def test_plain_words_for_a_name_that_does_not_resolve():
    """No test may query DNS, so aiohttp's own exception is built as its connector builds it
    when getaddrinfo fails, and wrapped as our transport wraps it."""
    url = httpx.URL("https://status.openai.com/api/v2/incidents.json?token=s3cret")
    key = ConnectionKey("status.openai.com", 443, True, True, None, None, None)
    error = aiohttp.ClientConnectorDNSError(key, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    try:
        try:
            raise error
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc.os_error)) from exc
    except httpx.ConnectError as wrapped:
        assert plain_reason(wrapped, url) == ("name resolution failed", "cannot resolve host status.openai.com")


def test_daemon_reports_a_never_read_source_at_its_first_failure_and_health_degrades(tmp_path, feeds, caplog):
    feeds.set("/ok.rss", feed(EMPTY))
    refused = f"http://127.0.0.1:{free_port()}/down.rss"
    # One poll each: no retry within the test.
    config = make_config(tmp_path, [("Up", feeds.url("/ok.rss")), ("Down", refused)], interval=3600.0)
    caplog.set_level(logging.INFO, logger="monitor")
    with RunningMonitor(config) as running:
        running.wait_for(lambda: any("2 sources:" in r.getMessage() for r in caplog.records))
        health = httpx.get(running.base + "/health").json()
        stats = httpx.get(running.base + "/stats").json()
    assert health["status"] == "degraded" and health["failing_sources"] == 1 and health["sources"] == 2
    down = next(f for f in stats["feeds"] if f["name"] == "Down")
    assert down["failing"] and down["consecutive_errors"] == 1
    assert down["last_error"] == f"connection refused by 127.0.0.1:{refused.split(':')[2].split('/')[0]}"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("monitor")]
    assert any(m.startswith(f"feed Down ({refused}) cannot be read: connection refused") for m in messages)
    assert "2 sources: 1 ok, 1 failing (connection refused: 1)" in messages
    assert any(m.startswith("monitoring 2 providers (2 sources)") for m in messages)


def test_a_source_read_in_this_run_fails_after_three_errors_and_its_recovery_is_info(tmp_path, feeds, caplog):
    feeds.set("/ok.rss", feed(EMPTY))
    config = make_config(tmp_path, [("Flaky", feeds.url("/ok.rss"))], interval=0.2)
    caplog.set_level(logging.INFO, logger="monitor")
    with RunningMonitor(config) as running:
        running.wait_for(lambda: any("1 source: 1 ok" in r.getMessage() for r in caplog.records))
        assert httpx.get(running.base + "/health").json()["status"] == "ok"
        feeds.set("/ok.rss", "down for maintenance", status=503, content_type="text/plain")
        running.wait_for(lambda: any("is failing" in r.getMessage() for r in caplog.records), timeout=20)
        stats = httpx.get(running.base + "/stats").json()["feeds"][0]
        assert stats["failing"] and stats["consecutive_errors"] == 3 and stats["last_error"] == "HTTP 503"
        feeds.set("/ok.rss", feed(EMPTY), status=200, content_type="application/xml")
        running.wait_for(lambda: any("recovered" in r.getMessage() for r in caplog.records), timeout=20)
        assert httpx.get(running.base + "/health").json() | {"uptime_seconds": 0} == {
            "status": "ok", "uptime_seconds": 0, "sources": 1, "failing_sources": 0,
            "state": {"backend": "sqlite", "ok": True}}
    recovered = next(r for r in caplog.records if "recovered" in r.getMessage())
    assert recovered.levelno == logging.INFO
    assert not any("cannot be read" in r.getMessage() for r in caplog.records)


def test_refused_webhooks_are_logged_once_per_path_and_reason_then_rate_limited(tmp_path, caplog, monkeypatch):
    import webhook_server

    monkeypatch.setattr(webhook_server, "REFUSAL_LOG_EVERY", 1.0)
    config = make_config(tmp_path, webhook_secrets={"ACME": "acme-secret-0123456789", "BETA": "beta-secret-0123456789"},
                         require_signatures=True)
    caplog.set_level(logging.INFO, logger="monitor")
    body = b'{"event_type": "x", "data": {"id": "1", "incident": {"name": "n", "status": {"label": "Investigating"}}}}'
    with RunningMonitor(config) as running:
        def post(path: str, **headers: str) -> None:
            answer = httpx.post(running.base + path, content=body, headers={"content-type": "application/json", **headers})
            assert answer.status_code == 401

        for _ in range(5):
            post("/webhook/generic/acme?token=wrong-token-s3cret")
        post("/webhook/generic/acme")
        post("/webhook/generic/beta", **{"x-hub-signature-256": "sha256=" + "0" * 64})
        post("/webhook/generic/acme%0Aforged%20line?token=x")
        running.wait_for(lambda: len(refusals(caplog)) == 4)
        time.sleep(1.1)
        post("/webhook/generic/acme?token=again")
        running.wait_for(lambda: len(refusals(caplog)) == 5)
    lines = refusals(caplog)
    assert lines[:4] == [
        "webhook to /webhook/generic/acme refused (401): invalid token",
        "webhook to /webhook/generic/acme refused (401): missing signature (X-Hub-Signature-256, webhook-signature or ?token=)",
        "webhook to /webhook/generic/beta refused (401): no matching signature",
        "webhook to /webhook/generic/acme?forged line refused (401): signature required but no secret is configured",
    ]
    assert lines[4] == "webhook to /webhook/generic/acme refused (401): invalid token (4 more since the last report)"
    assert all(r.levelno == logging.WARNING for r in caplog.records if "refused (401)" in r.getMessage())
    assert "s3cret" not in caplog.text and "acme-secret" not in caplog.text


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused (401)" in r.getMessage()]
