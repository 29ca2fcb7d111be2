"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), against the real
monitor in its own process, fed by a loopback feed server and webhooks. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, start_main, wait_http
from playwright.sync_api import Page, expect, sync_playwright
from test_dashboard import hook
from test_state import statuspage_rss

CHROMIUM = Path("/usr/bin/chromium")
SECRET = "a-browser-test-secret-0123456789"
PROVIDERS = ("GitHub", "Hooked", "Tokyo")  # the webhook senders, each with its secret
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed for the browser tests: apt-get install chromium (make test does it)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


class Daemon:
    """`python3 main.py` with a config file, restartable on the same port and state file."""

    def __init__(self, tmp_path: Path, feeds, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "monitor.toml"
        secrets = "".join(f'{name} = "{SECRET}"\n' for name in PROVIDERS)
        self.config.write_text(
            f'state = "{tmp_path / "state.db"}"\ninterval = 0.5\n[server]\nport = {self.port}\n'
            f"[webhooks]\nrequire_signatures = true\n[webhooks.secrets]\n{secrets}"
            f'[[feeds]]\nname = "Acme"\nurl = "{feeds.url("/acme.rss")}"\n'
            f'[[feeds]]\nname = "Calm"\nurl = "{feeds.url("/calm.rss")}"\n'
        )
        self.cwd = tmp_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_main("--config", str(self.config), cwd=self.cwd, env=self.env)
        wait_http(self.base + "/health")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.communicate(timeout=15)

    def post(self, provider: str, body: dict) -> None:
        """Signed as GitHub signs its webhooks (X-Hub-Signature-256); unsigned ones are refused."""
        data = json.dumps(body).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
        response = httpx.post(
            f"{self.base}/webhook/generic/{provider}", content=data,
            headers={"content-type": "application/json", "x-hub-signature-256": signature},
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def daemon(tmp_path, feeds, request):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    feeds.set("/acme.rss", statuspage_rss("acme1", [(now - timedelta(minutes=90), "Investigating", "Elevated errors on the API")]))
    feeds.set("/calm.rss", statuspage_rss("calm1", [(now - timedelta(days=2), "Resolved", "All fine")]))
    running = Daemon(tmp_path, feeds, getattr(request, "param", None))
    running.start()
    deadline = time.monotonic() + 15  # both feeds' first polls (spread over 5 s) are done
    token = (running.env or {}).get("MONITOR_ADMIN_TOKEN")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    while httpx.get(running.base + "/stats", headers=auth).json()["polls_total"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    yield running
    running.stop()
    if running.proc:
        running.proc.kill()


def card(page: Page, name: str):
    return page.locator(f'.card[data-provider="{name}"]')


def open_page(browser, daemon: Daemon, **context_options) -> Page:
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    page = context.new_page()
    page.goto(daemon.base + "/")
    expect(page.locator("#connection")).to_have_text("Live")
    return page


def test_cards_and_timeline_show_the_monitor_state(browser, daemon):
    unsigned = httpx.post(f"{daemon.base}/webhook/generic/GitHub", json=hook("forged"))
    assert unsigned.status_code == 401
    page = open_page(browser, daemon)
    expect(card(page, "Acme")).to_have_attribute("data-state", "incident")
    expect(card(page, "Acme").locator(".state")).to_contain_text("Open incident: Investigating")
    expect(card(page, "Acme")).to_contain_text("Incident acme1")
    expect(card(page, "Acme")).to_contain_text(re.compile(r"Open for 1 h 3[01] min"))  # 90 minutes, rounded
    expect(card(page, "Acme")).to_contain_text("last good poll")
    expect(card(page, "Calm").locator(".state")).to_have_text("✓ Operational")
    assert page.locator(".card").first.get_attribute("data-provider") == "Acme"  # open incidents first
    expect(page.locator("#summary")).to_have_text("1 of 2 providers have an open incident")
    expect(page.locator("#timeline .event")).to_have_count(1)
    expect(page.locator("#timeline .event").first).to_contain_text("Elevated errors on the API")
    page.screenshot(path=ARTIFACTS / "dashboard-wide.png", full_page=True)


def test_a_webhook_changes_its_card_live_and_the_timeline_filters_by_provider(browser, daemon):
    page = open_page(browser, daemon)
    daemon.post("GitHub", hook("gh1", components=["Actions"]))
    expect(card(page, "GitHub")).to_have_attribute("data-state", "incident", timeout=2000)
    expect(card(page, "GitHub")).to_contain_text("Affected: Actions")
    expect(page.locator("#timeline .event").first).to_contain_text("Incident gh1", timeout=2000)
    daemon.post("GitHub", hook("gh1", "Resolved"))
    expect(card(page, "GitHub")).to_have_attribute("data-state", "operational", timeout=2000)
    expect(page.locator("#timeline .event")).to_have_count(3)
    for _ in range(30):  # keyboard only: Tab reaches the filter, arrow keys choose GitHub
        if page.evaluate("document.activeElement.id") == "filter":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "filter"
    options = page.locator("#filter option").all_inner_texts()
    for _ in range(options.index("GitHub")):
        page.keyboard.press("ArrowDown")
    expect(page.locator("#filter")).to_have_value("GitHub")
    expect(page.locator("#timeline .event")).to_have_count(2)
    expect(page.locator('#timeline .event[data-provider="Acme"]')).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "dashboard-filtered.png", full_page=True)


def test_the_page_reconnects_after_a_restart_and_catches_up_once(browser, daemon):
    page = open_page(browser, daemon)
    daemon.post("Hooked", hook("before"))
    expect(page.locator("#timeline .event")).to_have_count(2)
    daemon.stop()
    expect(page.locator("#connection")).to_have_text("Reconnecting…", timeout=5000)
    daemon.start()
    daemon.post("Hooked", hook("after"))  # very likely before the page is back: caught up on reconnect
    expect(page.locator("#connection")).to_have_text("Live", timeout=10000)
    expect(page.locator("#timeline .event")).to_have_count(3, timeout=5000)
    time.sleep(1.0)
    titles = page.locator("#timeline .event a").all_inner_texts()
    assert sorted(titles) == ["Incident acme1", "Incident after", "Incident before"]  # no gap, no repeat
    expect(card(page, "Hooked").locator(".state")).to_contain_text("2 open incidents")


def test_phone_layout_and_times_in_the_browsers_time_zone(browser, daemon):
    daemon.post("Tokyo", {"event_type": "incident.updated", "data": {"id": "tz1", "incident": {
        "name": "Clock check", "status": "Investigating", "message": "m", "updated_at": "2026-01-02T03:04:05Z"}}})
    page = open_page(browser, daemon, viewport={"width": 390, "height": 844}, locale="en-US", timezone_id="Asia/Tokyo")
    event = page.locator('#timeline .event[data-provider="Tokyo"] time')
    expect(event).to_have_text("1/2/2026, 12:04:05 PM")  # 03:04:05 UTC is noon in Tokyo
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone: no sideways scrolling
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)


def test_the_page_works_under_its_content_security_policy(browser, daemon):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    response = page.goto(daemon.base + "/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["referrer-policy"] == "no-referrer"
    expect(page.locator("#connection")).to_have_text("Live")
    daemon.post("GitHub", {"event_type": "incident.updated", "data": {"id": "xss1", "incident": {
        "name": "Scripted link", "status": "Investigating", "url": "javascript:alert(document.domain)"}}})
    row = page.locator('#timeline .event[data-provider="GitHub"]')
    expect(row).to_contain_text("Scripted link", timeout=2000)
    expect(row.locator("a")).to_have_count(0)  # a link only for http(s)
    expect(card(page, "GitHub").locator(".incident a")).to_have_count(0)
    expect(page.locator('#timeline .event[data-provider="Acme"] a')).to_have_attribute("href", re.compile("^https://"))
    # The page itself makes a link only of an http(s) URL, whatever it is given.
    for url, expected in (("javascript:alert(1)", None), ("data:text/html,x", None), (" vbscript:x", None),
                          ("https://status.example/i/1", "https://status.example/i/1")):
        href = page.evaluate("""(url) => { const a = renderEvent({id: 1, provider: "P", status: "s", title: "T",
                                        url, message: ""}, false).querySelector("a"); return a && a.href; }""", url)
        assert href == expected, url
    # The browser enforces the policy: a script written into the page does not run.
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.injected = 1";
                             document.body.append(s); }""")
    assert page.evaluate("window.injected") is None
    assert any("Content Security Policy" in text for text in problems)  # the refusal of that script, and only it
    assert [text for text in problems if "Content Security Policy" not in text] == []
    assert sum("Content Security Policy" in text for text in problems) == 1, problems
    context.close()


@pytest.mark.parametrize("daemon", [{"MONITOR_ADMIN_TOKEN": "browser-admin-token-0123456789"}], indirect=True)
def test_with_an_admin_token_the_browser_logs_in_once_and_the_page_works(browser, daemon):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(daemon.base + "/")
    expect(page).to_have_url(daemon.base + "/login")
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    page.fill("#token", "browser-admin-token-0123456789")
    page.click("button[type=submit]")
    expect(page).to_have_url(daemon.base + "/")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(card(page, "Acme")).to_have_attribute("data-state", "incident")
    daemon.post("GitHub", hook("gh-live"))
    expect(page.locator("#timeline .event").first).to_contain_text("Incident gh-live", timeout=2000)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read the session
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert httpx.get(daemon.base + "/api/providers").status_code == 401  # another client, no session
    context.close()


def _wait_failing(daemon: Daemon, count: int) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(daemon.base + "/health").json()["failing_sources"] < count:
        assert time.monotonic() < deadline, "the source was never reported failing"
        time.sleep(0.1)


def test_failing_sources_lead_the_header_and_stay_visible_on_a_card_with_an_incident(browser, daemon, feeds):
    page = open_page(browser, daemon)
    expect(page.locator("#summary")).to_have_attribute("data-failing", "false")
    feeds.set("/acme.rss", "upstream broke", status=500, content_type="text/plain")
    _wait_failing(daemon, 1)  # after 3 errors in a row: it was read in this run
    assert httpx.get(daemon.base + "/health").json()["status"] == "degraded"
    page.reload()
    expect(page.locator("#summary")).to_have_text("⚠ 1 source failing at 1 provider · 1 of 2 providers have an open incident")
    expect(page.locator("#summary")).to_have_attribute("data-failing", "true")
    acme = card(page, "Acme")
    expect(acme).to_have_attribute("data-state", "incident")  # the incident it knows of is still shown
    expect(acme.locator(".stale")).to_have_text("⚠ 1 source failing: this may be out of date")
    expect(acme.locator(".health")).to_contain_text("Source failing: HTTP 500")
    feeds.set("/calm.rss", "upstream broke", status=500, content_type="text/plain")
    _wait_failing(daemon, 2)
    page.reload()
    expect(card(page, "Calm")).to_have_attribute("data-state", "unknown")
    expect(card(page, "Calm").locator(".state")).to_have_text("? Unknown: its source is failing")
    expect(card(page, "Calm").locator(".stale")).to_have_count(0)
    expect(page.locator("#summary")).to_have_text("⚠ 2 sources failing at 2 providers · 1 of 2 providers have an open incident")
    page.screenshot(path=ARTIFACTS / "dashboard-failing.png", full_page=True)
