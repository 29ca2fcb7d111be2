"""Webhooks against the real app served by uvicorn on 127.0.0.1, signed with the providers'
own schemes (the official `standardwebhooks` package, and by hand)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import re
import socket
import subprocess
import time
from datetime import datetime, timezone

import httpx
import pytest
from conftest import ROOT, RunningMonitor, feed, fixture_bytes, free_port, make_config, start_main, wait_http
from standardwebhooks.webhooks import Webhook

from status_monitor.webhooks.signatures import SignatureError, verify_standard_webhook

SECRET = "whsec_" + base64.b64encode(b"test-secret-for-the-monitor-24b").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"an-older-rotated-secret-key").decode()
GENERIC_SECRET = "It's a Secret to Everybody"


def payload(name: str) -> dict:
    return json.loads(fixture_bytes(f"webhooks/{name}"))


def incident_io(event_type: str, **changes) -> dict:
    body = copy.deepcopy(payload(f"incidentio_openapi_example_{event_type.replace('.', '__')}.json"))
    obj = body[event_type]
    incident = obj.get("incident", obj)
    for key, value in changes.items():
        incident[key] = value
    return body


def live(name: str) -> dict:
    return {"category": "live", "name": name, "id": name.lower(), "rank": 1}


def signed(body: bytes, secret: str = SECRET, msg_id: str = "msg_1", family: str = "webhook",
           timestamp: datetime | None = None) -> dict[str, str]:
    when = timestamp or datetime.now(timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        f"{family}-id": msg_id,
        f"{family}-timestamp": str(int(when.timestamp())),
        f"{family}-signature": signature,
        "content-type": "application/json",
    }


def by_hand(body: bytes, key: bytes, msg_id: str, timestamp: int) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.fixture
def monitor(tmp_path):
    config = make_config(
        tmp_path,
        incident_io_secret=SECRET,
        webhook_secrets={"GITHUB_HOOKS": GENERIC_SECRET, "STATUSPAGE_GITHUB": "tok-3f9a"},
    )
    with RunningMonitor(config) as running:
        yield running


def post(monitor, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(monitor.base + path, content=body, headers=headers or {"content-type": "application/json"})


def test_incident_io_signed_with_the_official_package(monitor):
    body = json.dumps(incident_io("public_incident.incident_created_v2", incident_status=live("Investigating"))).encode()
    answer = post(monitor, "/webhook/incident-io", body, signed(body))
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    [event] = monitor.output.events
    assert (event.provider, event.source, event.event_type) == ("incident.io", "webhook", "public_incident.incident_created_v2")
    assert event.status == "Investigating" and event.title == "Our database is sad"
    assert event.message == "We're working on a fix, hoping to ship in the next 30 minutes"
    assert event.url == "https://app.incident.io/incidents/123"


def test_svix_headers_signed_by_hand_and_key_rotation(monitor):
    body = json.dumps(incident_io("public_incident.incident_status_updated_v2")).encode()
    now = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    old_key = base64.b64decode(OLD_SECRET.removeprefix("whsec_"))
    headers = {
        "svix-id": "msg_svix", "svix-timestamp": str(now),
        "svix-signature": f"v1a,bm90IGVkMjU1MTk= {by_hand(body, old_key, 'msg_svix', now)} {by_hand(body, key, 'msg_svix', now)}",
    }
    assert post(monitor, "/webhook/incident-io", body, headers).status_code == 200
    [event] = monitor.output.events
    assert event.status == "Triage"  # judged by category ("triage"), not by the name "Closed"
    headers["svix-id"] = "msg_other"
    headers["svix-signature"] = by_hand(body, old_key, "msg_other", now)
    assert post(monitor, "/webhook/incident-io", body, headers).status_code == 401


def test_closed_category_reads_as_resolved_whatever_its_name(monitor):
    body = incident_io("public_incident.incident_updated_v2", incident_status={"category": "closed", "name": "Done"})
    raw = json.dumps(body).encode()
    assert post(monitor, "/webhook/incident-io", raw, signed(raw)).status_code == 200
    assert monitor.output.events[0].status == "Resolved"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h.pop("webhook-signature"),
        lambda h: h.clear(),
        lambda h: h.update({"webhook-signature": "v1,AAAA"}),
        lambda h: h.update({"webhook-signature": "garbage"}),
        lambda h: h.update({"webhook-signature": "v1,a,b  v1"}),
        lambda h: h.update({"webhook-signature": "sha256=abcdef"}),
        lambda h: h.update({"webhook-signature": "v1,\u00e9\u00e9".encode("latin-1")}),
        lambda h: h.update({"webhook-timestamp": "soon"}),
        lambda h: h.update({"webhook-timestamp": str(int(time.time() * 1000))}),
        lambda h: h.update({"webhook-timestamp": "-5"}),
        lambda h: h.update({"webhook-id": "x" * 1000}),
    ],
)
def test_bad_or_missing_signatures_are_401_and_print_nothing(monitor, mangle):
    body = json.dumps(incident_io("public_incident.incident_created_v2")).encode()
    headers = signed(body)
    mangle(headers)
    answer = post(monitor, "/webhook/incident-io", body, headers)
    assert answer.status_code == 401 and "error" in answer.json()
    assert monitor.output.events == []


def test_timestamp_window_is_five_minutes_both_ways(monitor):
    body = json.dumps(incident_io("public_incident.incident_created_v2")).encode()
    now = time.time()
    for offset, expected in [(-302, 401), (302, 401), (-298, 200)]:  # a second of slack for the clocks
        when = datetime.fromtimestamp(int(now) + offset, tz=timezone.utc)  # whole seconds, as sent
        answer = post(monitor, "/webhook/incident-io", body, signed(body, msg_id=f"msg_{offset}", timestamp=when))
        assert answer.status_code == expected, offset
    assert "timestamp" in httpx.get(monitor.base + "/stats").json()["webhooks_rejected_total"]


@pytest.mark.parametrize("offset, accepted", [(-301, False), (301, False), (-299, True), (299, True)])
def test_tolerance_boundary(offset, accepted):
    body = b'{"a": 1}'
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    headers = {"webhook-id": "m", "webhook-timestamp": "1800000000",
               "webhook-signature": by_hand(body, key, "m", 1800000000)}
    now = 1800000000 - offset
    if accepted:
        assert verify_standard_webhook(key, headers, body, now=now) == "m"
    else:
        with pytest.raises(SignatureError, match="window"):
            verify_standard_webhook(key, headers, body, now=now)


def test_replays_and_retries_with_fresh_timestamps_print_once(monitor):
    body = json.dumps(incident_io("public_incident.incident_created_v2")).encode()
    first = post(monitor, "/webhook/incident-io", body, signed(body, msg_id="msg_replay"))
    retry = post(monitor, "/webhook/incident-io", body, signed(body, msg_id="msg_replay"))
    assert first.json()["status"] == "accepted" and retry.status_code == 200
    assert retry.json()["status"] == "duplicate"
    # The same update under a new delivery id (sent twice by the provider) is also a duplicate.
    again = post(monitor, "/webhook/incident-io", body, signed(body, msg_id="msg_new_id"))
    assert again.json()["status"] == "duplicate"
    assert len(monitor.output.events) == 1
    stats = httpx.get(monitor.base + "/stats").json()
    assert stats["webhooks_duplicate_total"] == 2 and stats["webhooks_received_total"] == 3


def test_out_of_order_update_does_not_roll_status_back(monitor):
    newer = incident_io("public_incident.incident_updated_v2", incident_status={"category": "closed", "name": "Resolved"},
                        updated_at="2026-11-01T12:00:00Z")
    older = incident_io("public_incident.incident_updated_v2", incident_status=live("Investigating"),
                        updated_at="2026-11-01T10:00:00Z", most_recent_update_message="Looking into it")
    for index, body in enumerate([newer, older]):
        raw = json.dumps(body).encode()
        assert post(monitor, "/webhook/incident-io", raw, signed(raw, msg_id=f"m{index}")).status_code == 200
    assert [e.status for e in monitor.output.events] == ["Resolved"]
    stats = httpx.get(monitor.base + "/stats").json()
    assert stats["stale_total"] == 1 and stats["open_incidents"] == {}


def test_private_incidents_are_announced_without_details(monitor):
    for event_type in ("private_incident.incident_created_v2", "private_incident.incident_updated_v2"):
        raw = json.dumps(payload(f"incidentio_openapi_example_{event_type.replace('.', '__')}.json")).encode()
        assert post(monitor, "/webhook/incident-io", raw, signed(raw, msg_id=event_type)).status_code == 200
    created, updated = monitor.output.events
    assert created.title == "Private incident" and created.incident_id == "abc123"
    assert "details are not sent" in created.message and updated.status == "Updated"


def test_unhandled_event_type_is_acknowledged_and_counted(monitor):
    raw = json.dumps({"event_type": "public_incident.follow_up_created_v1", "public_incident.follow_up_created_v1": {}}).encode()
    answer = post(monitor, "/webhook/incident-io", raw, signed(raw))
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert monitor.output.events == []
    assert httpx.get(monitor.base + "/stats").json()["webhooks_ignored_total"] == 1


def test_size_encoding_json_and_shape_errors(monitor):
    huge = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    assert post(monitor, "/webhook/generic/test", huge).status_code == 413

    def chunks():
        for _ in range(300):
            yield b"a" * 4096

    streamed = httpx.post(monitor.base + "/webhook/generic/test", content=chunks())
    assert streamed.status_code == 413
    assert post(monitor, "/webhook/generic/test", b"\xff\xfe{}").status_code == 400
    assert post(monitor, "/webhook/generic/test", b"{not json").status_code == 400
    unknown = post(monitor, "/webhook/generic/test", b'{"hello": "world"}')
    assert unknown.status_code == 422 and "expected" in unknown.json()["error"]
    assert post(monitor, "/webhook/generic/test", b"[1, 2]").status_code == 422
    bad = b"{not json"
    assert post(monitor, "/webhook/incident-io", bad, signed(bad)).status_code == 400
    shapeless = b'{"a": 1}'
    assert post(monitor, "/webhook/incident-io", shapeless, signed(shapeless)).status_code == 422
    assert monitor.output.events == []


def test_no_redirects_on_trailing_slash(monitor):
    for path in ("/webhook/incident-io/", "/webhook/generic/test/"):
        answer = httpx.post(monitor.base + path, content=b"{}")
        assert answer.status_code == 404 and not answer.is_redirect


def test_webhook_routes_answer_like_the_rest_of_the_app(monitor):
    for path in ("/webhook/incident-io", "/webhook/generic/test"):
        answer = httpx.get(monitor.base + path)
        assert (answer.status_code, answer.headers["allow"], answer.json()) == (405, "POST", {"detail": "Method Not Allowed"})
    for path in ("/webhook/generic/", "/webhook/generic/a/b", "/webhook/other"):
        assert httpx.post(monitor.base + path, content=b"{}").status_code == 404
    assert httpx.get(monitor.base + "/health").json()["status"] == "ok"


def test_a_client_gone_mid_body_is_dropped_and_the_next_delivery_goes_through(monitor):
    body = json.dumps(incident_io("public_incident.incident_created_v2", incident_status=live("Investigating"))).encode()
    headers = signed(body)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", monitor.config.port)) as sock:
        sock.sendall(f"POST /webhook/incident-io HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
                     + body[: len(body) // 2])
    time.sleep(0.3)
    assert monitor.output.events == []
    answer = post(monitor, "/webhook/incident-io", body, headers)
    assert answer.json()["status"] == "accepted" and len(monitor.output.events) == 1


def test_a_time_without_a_zone_is_read_as_utc_beside_times_with_one(monitor):
    def hook(label: str, updated_at: str) -> bytes:
        return json.dumps({"event_type": "incident.updated", "data": {"id": "tz-1", "incident": {
            "name": "Zone test", "status": {"label": label}, "updated_at": updated_at}}}).encode()

    assert post(monitor, "/webhook/generic/test", hook("Investigating", "2026-01-01T00:00:00")).json()["status"] == "accepted"
    assert post(monitor, "/webhook/generic/test", hook("Resolved", "2026-01-01T00:05:00Z")).json()["status"] == "accepted"
    first, second = monitor.output.events
    assert first.occurred_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert second.status == "Resolved"


def test_generic_original_shape_and_replay(monitor):
    body = json.dumps({"event_type": "test_event", "data": {"id": "test-123", "incident": {
        "name": "Test Incident", "status": {"label": "Investigating"}}}}).encode()
    assert post(monitor, "/webhook/generic/test", body).json()["status"] == "accepted"
    assert post(monitor, "/webhook/generic/test", body).json()["status"] == "duplicate"
    [event] = monitor.output.events
    assert (event.provider, event.title, event.status, event.event_type) == ("test", "Test Incident", "Investigating", "test_event")


def test_statuspage_incident_and_component_webhooks(monitor):
    url = "/webhook/generic/statuspage-github?token=tok-3f9a"
    created = json.dumps(payload("statuspage_zulip_fixture_incident_created.json")).encode()
    update = json.dumps(payload("statuspage_zulip_fixture_incident_update.json")).encode()
    component = json.dumps(payload("statuspage_zulip_fixture_component_status_update.json")).encode()
    assert post(monitor, url, created).status_code == 200
    first = list(monitor.output.events)
    assert post(monitor, url, update).status_code == 200
    assert post(monitor, url, update).json()["status"] == "duplicate"
    assert post(monitor, url, component).status_code == 200
    events = monitor.output.events
    assert len(first) == 1 and first[0].status == "Identified"
    assert [e.status for e in events] == ["Identified", "Resolved", "Under maintenance"]
    assert events[1].components == ["Management Portal (example)"]
    assert events[2].message == "Database component: Operational -> Under maintenance"
    assert events[2].product == "Database component"


def test_generic_secrets_hub_signature_token_and_standard_headers(monitor):
    body = b"Hello, World!"
    vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"  # GitHub's documented vector
    answer = post(monitor, "/webhook/generic/github-hooks", body, {"X-Hub-Signature-256": vector})
    assert answer.status_code == 400  # the signature passed; the body is not JSON
    good = json.dumps({"event_type": "incident.created", "data": {"id": "gh-1", "incident": {
        "name": "Outage", "status": {"label": "Investigating"}}}}).encode()
    sig = "sha256=" + hmac.new(GENERIC_SECRET.encode(), good, hashlib.sha256).hexdigest()
    assert post(monitor, "/webhook/generic/github-hooks", good, {"X-Hub-Signature-256": sig}).status_code == 200
    assert post(monitor, "/webhook/generic/github-hooks", good, {"X-Hub-Signature-256": "sha256=00"}).status_code == 401
    assert post(monitor, "/webhook/generic/github-hooks", good, {"X-Hub-Signature-256": "md5"}).status_code == 401
    assert post(monitor, "/webhook/generic/github-hooks", good).status_code == 401
    now = int(time.time())
    standard = {"webhook-id": "gen_1", "webhook-timestamp": str(now),
                "webhook-signature": by_hand(good, GENERIC_SECRET.encode(), "gen_1", now)}
    assert post(monitor, "/webhook/generic/github-hooks", good, standard).json()["status"] == "duplicate"
    assert post(monitor, "/webhook/generic/statuspage-github?token=wrong", good).status_code == 401
    assert [e.title for e in monitor.output.events] == ["Outage"]


def test_require_signatures_refuses_unsigned(tmp_path):
    with RunningMonitor(make_config(tmp_path, require_signatures=True)) as running:
        body = b'{"event_type": "x", "data": {"id": "1", "incident": {"name": "n", "status": {"label": "l"}}}}'
        assert post(running, "/webhook/generic/test", body).status_code == 401
        assert post(running, "/webhook/incident-io", body).status_code == 401
        assert running.output.events == []


def test_same_update_by_webhook_and_feed_prints_once(tmp_path, feeds):
    feeds.set("/gh.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    config = make_config(tmp_path, [("GitHub", feeds.url("/gh.atom"))], interval=0.2)
    with RunningMonitor(config) as running:
        running.wait_for(lambda: len(running.output.events) == 1)
        updates = [
            {"id": f"upd{n}", "status": "investigating", "body": f"update {n}", "created_at": at, "display_at": at}
            for n, at in enumerate(["2026-07-09T04:34:10Z", "2026-07-09T04:51:20Z", "2026-07-09T06:01:40Z",
                                    "2026-07-09T10:07:05Z"], start=1)
        ]
        hook = {"meta": {}, "page": {"id": "kctbh9vrtdwd"}, "incident": {
            "id": "cstx3v63mklm", "name": "Delays starting Actions runs", "status": "investigating",
            "incident_updates": list(reversed(updates))}}
        answer = post(running, "/webhook/generic/GitHub", json.dumps(hook).encode())
        assert answer.json() == {"status": "accepted", "events": 1}
        assert running.output.events[-1].message == "update 4"
        feeds.set("/gh.atom", feed("statuspage_github_history_snapshot_2026-07-10.atom"))
        running.wait_for(lambda: len(running.output.events) == 1 + 1 + 10)
        time.sleep(0.5)
        assert len(running.output.events) == 12
        assert [e.source for e in running.output.events].count("webhook") == 1


def test_stats_and_logs_never_show_secrets(monitor, caplog):
    caplog.set_level(logging.DEBUG)
    body = json.dumps(incident_io("public_incident.incident_created_v2")).encode()
    post(monitor, "/webhook/incident-io", body, signed(body, secret=OLD_SECRET))
    post(monitor, "/webhook/generic/statuspage-github?token=nope", b"{}")
    stats = httpx.get(monitor.base + "/stats").text
    for secret in (SECRET, OLD_SECRET, GENERIC_SECRET, "tok-3f9a", SECRET.removeprefix("whsec_")):
        assert secret not in stats and secret not in caplog.text
    assert json.loads(stats)["webhooks_rejected_total"] == {"bad_signature": 1, "bad_token": 1}


def test_main_subprocess_receives_a_signed_webhook_and_the_readme_curl_example(tmp_path):
    port = free_port()
    process = start_main("--port", str(port), "--state", str(tmp_path / "s.db"), "--config", str(_no_feeds(tmp_path)),
                         cwd=tmp_path, env={"INCIDENT_IO_WEBHOOK_SECRET": SECRET})
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = json.dumps(incident_io("public_incident.incident_created_v2", incident_status=live("Investigating"))).encode()
        answer = httpx.post(f"http://127.0.0.1:{port}/webhook/incident-io", content=body, headers=signed(body))
        assert answer.status_code == 200
        curl = re.search(r"```bash\n(curl -X POST http://localhost:8000/webhook/generic/test.*?)```",
                         (ROOT / "README.md").read_text(), re.S).group(1)
        result = subprocess.run(["bash", "-c", curl.replace("localhost:8000", f"127.0.0.1:{port}")],
                                capture_output=True, text=True, timeout=10)
        assert '"accepted"' in result.stdout
        process.terminate()
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Provider: incident.io\nStatus: Investigating - We're working on a fix" in out
    assert "Event: public_incident.incident_created_v2" in out
    assert "Provider: test\nStatus: Investigating\nIncident: Test Incident\nEvent: test_event" in out
    assert "accepts unsigned requests" in err and SECRET not in err


def _no_feeds(tmp_path):
    path = tmp_path / "nofeeds.toml"
    path.write_text("[[feeds]]\nname = \"Local\"\nurl = \"http://127.0.0.1:9/feed\"\n")
    return path
