"""`python3 main.py` as a user runs it: a subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import signal
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from conftest import feed, free_port, run_main, start_main, wait_http

JSON_KEYS = {
    "provider", "product", "components", "title", "status", "message", "incident_id",
    "url", "source", "event_type", "impact", "note", "occurred_at", "received_at",
}


def write_config(tmp_path, feeds, extra: str = "") -> str:
    lines = [extra]
    for name, url in feeds:
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{url}"']
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def fixture_feeds(feeds):
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    feeds.set("/openai.rss", feed("incidentio_openai_feed_trimmed.rss"))
    feeds.set("/aws.rss", feed("aws_all.rss"))
    feeds.set("/claude.rss", feed("statuspage_claude_history.rss"))
    feeds.set("/azure.rss", feed("azure_status_feed_empty.rss"))
    return [(n, feeds.url(p)) for n, p in [
        ("GitHub", "/github.atom"), ("OpenAI", "/openai.rss"), ("AWS", "/aws.rss"),
        ("Claude", "/claude.rss"), ("Azure", "/azure.rss"),
    ]]


def test_once_json_prints_open_incidents_and_nothing_else(tmp_path, fixture_feeds):
    config = write_config(tmp_path, fixture_feeds)
    result = run_main("--config", config, "--once", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert all(set(e) == JSON_KEYS for e in events)
    assert sorted((e["provider"], e["status"], e["title"]) for e in events) == [
        ("GitHub", "Investigating", "Delays starting Actions runs"),
        ("OpenAI", "Monitoring", "Single Sign On (SSO) login issues"),
    ]
    openai = next(e for e in events if e["provider"] == "OpenAI")
    assert openai["product"] == "Login" and openai["components"] == ["Login"]
    assert openai["source"] == "rss" and openai["event_type"] is None
    assert openai["occurred_at"] == "2025-10-20T09:43:12Z" and openai["received_at"].endswith("Z")
    assert "state in" in result.stderr
    # The state file remembers: a second run prints nothing.
    again = run_main("--config", config, "--once", "--json", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == ""


def test_once_text_format(tmp_path, fixture_feeds):
    config = write_config(tmp_path, fixture_feeds[1:2])
    result = run_main("--config", config, "--once", "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "[2025-10-20 09:43:12 UTC] Provider: OpenAI | Product: Login\n"
        "Status: Monitoring - We seeing recovery on impacted services, and we are monitoring.\n"
        "Incident: Single Sign On (SSO) login issues https://status.openai.com/incidents/01K80CBJD5Z64DF82KGT3K3QE0\n"
        "\n"
    )
    assert not (tmp_path / "monitor.db").exists()


def test_replay_flag_prints_history(tmp_path, fixture_feeds):
    config = write_config(tmp_path, fixture_feeds[3:4])
    result = run_main("--config", config, "--once", "--json", "--replay", "--state", ":memory:", cwd=tmp_path)
    assert len(result.stdout.splitlines()) == 81


def test_failed_feed_is_reported_on_stderr_and_once_exits_one(tmp_path, feeds, fixture_feeds):
    feeds.set("/broken.rss", b"<html>oops</html>", content_type="text/html")
    config = write_config(tmp_path, [("Broken", feeds.url("/broken.rss")), fixture_feeds[1]])
    result = run_main("--config", config, "--once", "--json", "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 1  # a cron job can tell: a source was not read
    assert len(result.stdout.splitlines()) == 1  # what was read is still printed
    assert "Broken" in result.stderr and "not an RSS or Atom" in result.stderr
    assert "2 sources: 1 ok, 1 failing (not a readable feed: 1)" in result.stderr


@pytest.mark.parametrize(
    "content, expected",
    [
        ("interval = [1\n", "invalid TOML"),
        ('[[feeds]]\nname = "GitHub"\n', "feeds[1] ('GitHub').url: missing"),
        ('[[feeds]]\nname = "GitHub"\nurl = "https://x.test/feed"\ncolour = "red"\n', "feeds[1] ('GitHub').colour: unknown key"),
        ('[[feeds]]\nname = "GitHub"\nurl = "https://x.test/feed"\ninterval = 0\n', "feeds[1] ('GitHub').interval: must be a positive"),
        ('[[feeds]]\nname = "GitHub"\nurl = "ftp://x.test/feed"\n', "url: must be an http"),
        ('[[feeds]]\nname = "A"\nurl = "https://x.test/feed"\nkind = "rss"\n', "kind"),
        ("interval = -3\n", "interval: must be a positive"),
        ("surprise = 1\n", "surprise: unknown key"),
        ('[webhooks]\nincident_io_secret = "whsec_!!notbase64"\n', "not a valid whsec_ secret"),
    ],
)
def test_config_errors_stop_start_up_with_exit_2(tmp_path, content, expected):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = run_main("--config", str(path), "--once", cwd=tmp_path)
    assert result.returncode == 2
    assert str(path) in result.stderr and expected in result.stderr
    assert result.stdout == ""
    assert "notbase64" not in result.stderr


def test_missing_config_file_and_bad_interval_flag(tmp_path):
    result = run_main("--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "not found" in result.stderr
    result = run_main("--interval", "0", "--once", cwd=tmp_path)
    assert result.returncode == 2 and "--interval" in result.stderr


def test_help_documents_every_flag(tmp_path):
    result = run_main("--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--config", "--host", "--port", "--interval", "--json", "--once", "--replay", "--log-level",
                 "--state", "--history", "--provider", "--since", "--require-signatures"):
        assert flag in result.stdout


def test_fast_polling_of_public_pages_warns_without_refusing(tmp_path, fixture_feeds):
    result = run_main("--interval", "5", "--history", "--state", ":memory:", cwd=tmp_path)
    assert result.returncode == 0
    assert "GitHub is polled every 5 s" in result.stderr
    config = write_config(tmp_path, fixture_feeds[4:5])
    quiet = run_main("--config", config, "--interval", "0.5", "--once", "--state", ":memory:", cwd=tmp_path)
    assert quiet.returncode == 0 and "polled every" not in quiet.stderr


def test_daemon_polls_serves_stats_prints_new_updates_and_stops_on_sigterm(tmp_path, feeds, fixture_feeds):
    port = free_port()
    config = write_config(tmp_path, fixture_feeds, extra=f"interval = 0.3\n[server]\nport = {port}\n")
    process = start_main("--config", config, "--json", cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
        dates = [parsedate_to_datetime(httpx.get(f"http://127.0.0.1:{port}/health").headers["date"])]
        time.sleep(2.1)
        dates.append(parsedate_to_datetime(httpx.get(f"http://127.0.0.1:{port}/health").headers["date"]))
        assert 1 <= (dates[1] - dates[0]).total_seconds() <= 4  # the server's clock ticks (once a second)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
            if stats["not_modified_total"] >= 5:
                break
            time.sleep(0.1)
        for key in ("uptime_seconds", "events_total", "duplicates_total", "polls_total", "not_modified_total",
                    "poll_errors_total"):
            assert isinstance(stats[key], (int, float)), key
        assert stats["events_total"] == 2 and stats["not_modified_total"] >= 5
        github = next(f for f in stats["feeds"] if f["name"] == "GitHub")
        assert set(github) >= {"name", "url", "last_status", "last_polled_at", "consecutive_errors", "entries"}
        assert github["entries"] == 25 and github["last_status"] in (200, 304)
        feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-10.atom"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and httpx.get(f"http://127.0.0.1:{port}/stats").json()["events_total"] < 13:
            time.sleep(0.1)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 13
    assert events[-1]["status"] == "Resolved"


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_main("--port", str(port), "--state", ":memory:", cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert f"error: cannot serve HTTP on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
