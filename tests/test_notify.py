"""Notifications (Apprise) and metrics (Prometheus), against real receivers and real scrapes:
Apprise's json:// and form:// targets post to an HTTP server these tests run on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from dataclasses import replace

import httpx
import pytest
from conftest import RunningMonitor, free_port, make_config, run_main, start_main, wait_http
from hookreceiver import HookReceiver
from prometheus_client.parser import text_string_to_metric_families
from test_state import statuspage_rss

from status_monitor.config import NotifyRoute
from status_monitor.model import Event
from status_monitor.outputs.notify import describe, render, route_matches


@pytest.fixture
def hooks(servers):
    return lambda: servers(HookReceiver)


def hook_body(incident: str, status: str = "Investigating", message: str = "Looking into it",
              components: list[str] | None = None) -> dict:
    return {"event_type": "incident.updated", "data": {"id": incident, "incident": {
        "name": f"Incident {incident}", "status": {"label": status}, "message": message,
        "url": f"https://status.example/incidents/{incident}", "components": components or []}}}


def post(monitor: RunningMonitor, provider: str, body: dict) -> httpx.Response:
    return httpx.post(f"{monitor.base}/webhook/generic/{provider}", json=body, timeout=10)


def notify_config(tmp_path, *routes: NotifyRoute, **options):
    options.setdefault("notify_timeout", 2.0)
    return make_config(tmp_path, notify=routes, **options)


def event(**changes) -> Event:
    base = Event(provider="GitHub", title="Actions delayed", status="Investigating", message="We are looking",
                 incident_id="abc", url="https://www.githubstatus.com/incidents/abc", source="rss", keys=("k",),
                 components=["Actions"])
    return replace(base, **changes)


# --- pure parts ---

def test_message_carries_provider_product_status_message_title_and_link():
    title, body, kind = render(event())
    assert title == "GitHub: Actions delayed"
    assert body.splitlines() == [
        "Provider: GitHub", "Product: Actions", "Status: Investigating", "Message: We are looking",
        "Incident: Actions delayed", "Link: https://www.githubstatus.com/incidents/abc",
    ]
    assert kind == "warning"


def test_resolved_update_says_so_and_keeps_the_incident_title():
    title, body, kind = render(event(status="Resolved", message="All good"))
    assert title == "GitHub: Actions delayed"  # same thread as the updates before it
    assert "Status: Resolved (resolved: this incident is over)" in body
    assert kind == "success"


def test_routes_filter_by_provider_component_status_and_source():
    route = NotifyRoute(("json://x",), providers=("openai", "GitHub"), components=("Actions*",),
                        statuses=("investigating", "resolved"), sources=("rss",))
    assert route_matches(route, event())
    assert route_matches(route, event(components=["actions runners"]))  # globs ignore case
    assert route_matches(route, event(components=[]))  # names no component: passes
    assert not route_matches(route, event(components=["Pages"]))
    assert not route_matches(route, event(provider="Slack"))
    assert not route_matches(route, event(status="Monitoring"))
    assert not route_matches(route, event(source="webhook"))
    assert route_matches(NotifyRoute(("json://x",)), event(provider="Anyone", source="webhook"))


def test_target_descriptions_hide_credentials_and_secret_paths():
    shown = describe("json://user:hunter2pass@hooks.example:8080/status/s3cretpath?token=abcdef")
    assert shown.startswith("json://user:") and "hooks.example:8080" in shown
    for secret in ("hunter2pass", "s3cretpath", "abcdef"):
        assert secret not in shown
    slack = describe("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general")
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in slack and slack.startswith("slack://")


# --- real deliveries ---

def test_new_events_reach_json_and_form_targets_with_their_details(tmp_path, hooks):
    json_hook, form_hook = hooks(), hooks()
    config = notify_config(tmp_path, NotifyRoute((json_hook.url("json"), form_hook.url("form"))))
    with RunningMonitor(config) as monitor:
        assert post(monitor, "GitHub", hook_body("i1", components=["Actions"])).json()["status"] == "accepted"
        assert post(monitor, "GitHub", hook_body("i1", "Resolved", "Fixed")).json()["status"] == "accepted"
        sent = json_hook.wait_for(2)
        forms = form_hook.wait_for(2)
        assert post(monitor, "GitHub", hook_body("i1", "Resolved", "Fixed")).json()["status"] == "duplicate"
        time.sleep(0.5)
    first, resolved = sent[0].json(), sent[1].json()
    assert first["title"] == resolved["title"] == "GitHub: Incident i1"
    assert "Product: Actions" in first["message"] and "Status: Investigating" in first["message"]
    assert "Link: https://status.example/incidents/i1" in first["message"]
    assert "this incident is over" in resolved["message"] and resolved["type"] == "success"
    assert forms[0].form()["title"] == "GitHub: Incident i1" and "Looking into it" in forms[0].form()["message"]
    assert len(json_hook.received) == len(form_hook.received) == 2  # the duplicate sent nothing


def test_first_poll_baseline_never_notifies_but_a_later_update_does(tmp_path, hooks, feeds):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    opened = [(now - timedelta(minutes=30), "Investigating", "Looking")]
    feeds.set("/a.rss", statuspage_rss("open1", opened))
    hook = hooks()
    config = notify_config(tmp_path, NotifyRoute((hook.url(),)), feeds=(), interval=0.3)
    config = replace(config, feeds=make_config(tmp_path, [("Acme", feeds.url("/a.rss"))]).feeds)
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: len(monitor.output.events) == 1)  # the open incident, printed
        time.sleep(1.0)
        assert hook.received == []  # ...but the state found at start is not news
        feeds.set("/a.rss", statuspage_rss("open1", opened + [(now, "Resolved", "Fixed")]))
        received = hook.wait_for(1)
    assert "Status: Resolved" in received[0].json()["message"]


def test_a_failing_target_is_retried_until_it_recovers(tmp_path, hooks):
    hook = hooks()
    hook.fail_next = 2
    with RunningMonitor(notify_config(tmp_path, NotifyRoute((hook.url(),)))) as monitor:
        post(monitor, "Acme", hook_body("r1"))
        hook.wait_for(1, timeout=20)
        stats = httpx.get(monitor.base + "/stats").json()["notifications"]
    assert hook.attempts == 3 and len(hook.received) == 1
    assert stats["sent_total"] == 1 and stats["retries_total"] == 2 and stats["pending"] == 0


def test_a_target_that_never_recovers_is_given_up_with_one_error(tmp_path, hooks, caplog):
    hook = hooks()
    hook.fail_next = 10**6
    config = notify_config(tmp_path, NotifyRoute((hook.url(),)), notify_retry_for=2.5)
    with RunningMonitor(config) as monitor:
        post(monitor, "Acme", hook_body("g1"))
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["notifications"]["failed_total"] == 1)
        stats = httpx.get(monitor.base + "/stats").json()["notifications"]
    assert stats["pending"] == 0 and hook.attempts >= 2
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "not delivered" in r.getMessage()]
    assert len(errors) == 1 and "given up" in errors[0].getMessage()


def test_a_hanging_target_delays_neither_stdout_nor_other_targets(tmp_path, hooks):
    stuck, fine = hooks(), hooks()
    stuck.hang = True
    config = notify_config(tmp_path, NotifyRoute((stuck.url(), fine.url())), notify_timeout=20.0)
    with RunningMonitor(config) as monitor:
        for n in range(3):
            started = time.monotonic()
            assert post(monitor, "Acme", hook_body(f"h{n}")).status_code == 200
            assert time.monotonic() - started < 2  # the webhook is answered, the event printed
        assert len(monitor.output.events) == 3
        fine.wait_for(3, timeout=5)
        assert stuck.received == []


def test_routes_send_each_provider_and_status_where_configured(tmp_path, hooks):
    github, resolved, everything = hooks(), hooks(), hooks()
    config = notify_config(
        tmp_path,
        NotifyRoute((github.url(),), providers=("github",)),
        NotifyRoute((resolved.url(),), statuses=("resolved",), components=("API*",)),
        NotifyRoute((everything.url(),), sources=("webhook",)),
    )
    with RunningMonitor(config) as monitor:
        post(monitor, "GitHub", hook_body("a"))
        post(monitor, "OpenAI", hook_body("b", components=["Chat"]))
        post(monitor, "OpenAI", hook_body("b", "Resolved", "ok", components=["API"]))
        post(monitor, "Slack", hook_body("c", "Resolved", "ok"))
        everything.wait_for(4)
        time.sleep(1.0)
    assert [r.json()["title"] for r in github.received] == ["GitHub: Incident a"]
    assert sorted(r.json()["title"] for r in resolved.received) == ["OpenAI: Incident b", "Slack: Incident c"]


def test_secrets_in_notification_urls_stay_out_of_logs_and_stats(tmp_path, hooks, caplog):
    hook = hooks()
    hook.fail_next = 10**6
    url = f"json://alice:hunter2pass@127.0.0.1:{hook.port}/hooks/s3cretpath"
    config = notify_config(tmp_path, NotifyRoute((url,)), notify_retry_for=2.0)
    with RunningMonitor(config) as monitor:
        post(monitor, "Acme", hook_body("s1"))
        monitor.wait_for(lambda: httpx.get(monitor.base + "/stats").json()["notifications"]["failed_total"] == 1)
        stats = httpx.get(monitor.base + "/stats").text
        scrape = httpx.get(monitor.base + "/metrics").text
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in stats and "not delivered" in logs
    for text in (stats, scrape, logs):
        assert "hunter2pass" not in text and "s3cretpath" not in text


# --- across restarts (real processes, real state file) ---

def _config_file(tmp_path, port: int, url: str, retry_for: float = 3600) -> str:
    path = tmp_path / "monitor.toml"
    path.write_text(
        f"notify_timeout = 2\nnotify_retry_for = {retry_for}\n[server]\nport = {port}\n"
        f'[[feeds]]\nname = "None"\nurl = "http://127.0.0.1:9/none.rss"\n'
        f'[[notify]]\nurls = ["{url}"]\n'
    )
    return str(path)


def test_a_send_cut_off_by_shutdown_is_made_after_restart_and_never_twice(tmp_path, hooks):
    hook = hooks()
    hook.fail_next = 10**6
    port = free_port()
    config = _config_file(tmp_path, port, hook.url())
    proc = start_main("--config", config, "--interval", "60", cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        httpx.post(f"http://127.0.0.1:{port}/webhook/generic/Acme", json=hook_body("x1"))
        deadline = time.monotonic() + 10
        while hook.attempts < 2 and time.monotonic() < deadline:  # retrying
            time.sleep(0.05)
        assert hook.attempts >= 2 and hook.received == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        hook.fail_next = 0
        for _ in range(2):  # the first restart sends it; the second has nothing to send
            proc = start_main("--config", config, "--interval", "60", cwd=tmp_path)
            wait_http(f"http://127.0.0.1:{port}/health")
            hook.wait_for(1)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert len(hook.received) == 1 and hook.received[0].json()["title"] == "Acme: Incident x1"


def test_sends_left_for_a_target_no_longer_configured_are_dropped_with_a_warning(tmp_path, hooks):
    old, new = hooks(), hooks()
    old.fail_next = 10**6
    port = free_port()
    proc = start_main("--config", _config_file(tmp_path, port, old.url()), cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        httpx.post(f"http://127.0.0.1:{port}/webhook/generic/Acme", json=hook_body("o1"))
        deadline = time.monotonic() + 10
        while old.attempts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
    proc = start_main("--config", _config_file(tmp_path, port, new.url()), cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert "dropping 1 unsent notifications for targets no longer configured" in stderr
    assert new.attempts == 0


def test_test_notify_reports_each_target_and_exits_by_outcome(tmp_path, hooks):
    good, bad = hooks(), hooks()
    bad.fail_next = 10**6
    both = run_main("--test-notify", cwd=tmp_path, env={"NOTIFY_URLS": f"{good.url()}, {bad.url('json', '/s3cret')}"})
    assert both.returncode == 1, both.stderr
    lines = both.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("delivered") and lines[1].startswith("FAILED")
    assert "s3cret" not in both.stdout + both.stderr
    assert "test" in good.received[0].json()["title"].lower()
    alone = run_main("--test-notify", cwd=tmp_path, env={"NOTIFY_URLS": good.url()})
    assert alone.returncode == 0 and alone.stdout.startswith("delivered")
    assert len(good.received) == 2
    none = run_main("--test-notify", cwd=tmp_path, env={"NOTIFY_URLS": ""})
    assert none.returncode == 2 and "no notification targets" in none.stderr


def test_a_url_apprise_cannot_use_stops_start_up_without_echoing_it(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[notify]]\nurls = ["nosuchservice://t0psecret@x"]\n')
    result = run_main("--config", str(path), "--once", cwd=tmp_path)
    assert result.returncode == 2
    assert "notify[1].urls[1]: not a notification URL" in result.stderr and "t0psecret" not in result.stderr
    env = run_main("--once", cwd=tmp_path, env={"NOTIFY_URLS": "json://ok.example nosuchservice://t0psecret"})
    assert env.returncode == 2 and "NOTIFY_URLS[2]: not a notification URL" in env.stderr and "t0psecret" not in env.stderr


# --- metrics ---

def scrape(monitor: RunningMonitor) -> dict[tuple[str, tuple], float]:
    response = httpx.get(monitor.base + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_move_as_events_polls_webhooks_and_sends_flow(tmp_path, hooks, feeds):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    feeds.set("/a.rss", statuspage_rss("m1", [(now - timedelta(minutes=5), "Investigating", "Looking")]))
    hook = hooks()
    config = replace(
        notify_config(tmp_path, NotifyRoute((hook.url(),))),
        feeds=make_config(tmp_path, [("Acme", feeds.url("/a.rss")), ("Gone", "http://127.0.0.1:9/x.rss")]).feeds,
        interval=0.3,
    )
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: scrape(monitor).get(("statusmon_polls_total", (("result", "304"),)), 0) >= 1)
        before = scrape(monitor)
        post(monitor, "GitHub", hook_body("w1", components=["Actions"]))
        httpx.post(monitor.base + "/webhook/incident-io", content=b"{}", headers={"content-type": "application/json"})
        hook.wait_for(1)
        monitor.wait_for(lambda: scrape(monitor).get(("statusmon_feed_consecutive_errors", (("feed", "Gone"),)), 0) >= 2)
        monitor.wait_for(lambda: scrape(monitor)[("statusmon_polls_total", (("result", "304"),))] >= 2)
        after = scrape(monitor)

    def value(metrics, name, **labels):
        return metrics.get((name, tuple(sorted(labels.items()))), 0)

    assert value(after, "statusmon_events_total", provider="Acme", source="rss", status="investigating") == 1
    assert value(after, "statusmon_events_total", provider="GitHub", source="webhook", status="investigating") == 1
    assert value(after, "statusmon_polls_total", result="200") == 1
    assert value(before, "statusmon_events_total", provider="GitHub", source="webhook", status="investigating") == 0
    assert value(after, "statusmon_polls_total", result="connection") >= 2
    assert value(after, "statusmon_poll_duration_seconds_count") >= 4
    assert value(after, "statusmon_webhooks_total", endpoint="generic", outcome="accepted", reason="") == 1
    assert value(after, "statusmon_webhooks_total", endpoint="incident-io", outcome="rejected", reason="unknown_shape") == 1
    assert value(after, "statusmon_notifications_total", service="JSON", outcome="sent") == 1
    assert value(after, "statusmon_feed_last_success_timestamp_seconds", feed="Acme") > time.time() - 60
    assert ("statusmon_feed_last_success_timestamp_seconds", (("feed", "Gone"),)) not in after
    assert value(after, "statusmon_open_incidents", provider="Acme") == 1
    assert value(after, "statusmon_open_incidents", provider="GitHub") == 1
    labels = {v for (_, pairs) in after for _, v in pairs}
    assert not any("127.0.0.1" in v or "w1" in v for v in labels)  # no URLs or incident ids as labels
