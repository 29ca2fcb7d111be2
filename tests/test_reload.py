"""SIGHUP reloads the config file in a running `python3 main.py`: sources, filters,
notification routes and secrets change without a restart and nothing is announced twice;
a config with problems is refused and the running one kept."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
from conftest import free_port, start_main, wait_http
from hookreceiver import HookReceiver
from test_catalogue import _entry
from test_dashboard import hook
from test_state import statuspage_rss

SECRET = "acme-shared-secret-0123456789"


class Lines:
    """A process's stream, line by line on a thread, so the test can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if text in line]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r} in:\n{''.join(self.lines)}")


def test_sighup_reloads_sources_filters_routes_and_secrets_and_refuses_a_bad_config(tmp_path, feeds, servers):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    a_blocks = [(now - timedelta(minutes=30), "Investigating", "A is down")]
    feeds.set("/a.rss", statuspage_rss("a1", a_blocks))
    feeds.set("/b.rss", statuspage_rss("b1", [(now - timedelta(minutes=20), "Investigating", "B is down")]))
    receiver = servers(HookReceiver)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitor.toml"
    top = f'state = "{tmp_path / "state.db"}"\ninterval = 0.3\n[server]\nport = {port}\n'
    feed_a = f'[[feeds]]\nname = "A"\nurl = "{feeds.url("/a.rss")}"\n'
    feed_a_filtered = feed_a + 'components = ["API*"]\n'
    feed_b = f'[[feeds]]\nname = "B"\nurl = "{feeds.url("/b.rss")}"\n'
    secrets = f'[webhooks.secrets]\nacme = "{SECRET}"\n'
    route = f'[[notify]]\nurls = ["{receiver.url()}"]\n'

    def reload(content: str, expected: str) -> str:
        config.write_text(content)
        process.send_signal(signal.SIGHUP)
        return err.wait_for(expected)

    config.write_text(top + feed_a)
    process = start_main("--config", str(config), "--json", cwd=tmp_path)
    out, err = Lines(process.stdout), Lines(process.stderr)
    try:
        wait_http(base + "/health")
        out.wait_for("A is down")
        assert httpx.post(f"{base}/webhook/generic/acme", json=hook("u1")).status_code == 200  # no secret yet
        assert httpx.post(f"{base}/webhook/generic/A", json=hook("w1", components=["Billing"])).status_code == 200
        out.wait_for("Investigating w1")

        # Add a source, a filter, a secret and a notification route.
        line = reload(top + secrets + feed_a_filtered + feed_b + route, "config reloaded")
        assert "config reloaded: 2 sources (B added, none removed, A changed), 1 notification target" in line
        out.wait_for("B is down")  # a new source's first poll: its open incident, once
        assert httpx.post(f"{base}/webhook/generic/acme", json=hook("u2")).status_code == 401  # the secret applies
        for incident, components in (("w2", ["Billing"]), ("w3", ["API gateway"])):
            assert httpx.post(f"{base}/webhook/generic/A", json=hook(incident, components=components)).status_code == 200
        out.wait_for("Investigating w3")
        feeds.set("/a.rss", statuspage_rss("a1", a_blocks + [(now - timedelta(minutes=1), "Resolved", "A is fine")]))
        out.wait_for("A is fine")
        sent = receiver.wait_for(2)  # the new route: w3 and A's update, not what came before
        assert sorted(r.json()["title"] for r in sent) == ["A: Incident a1", "A: Incident w3"]

        # A config with problems is refused; the running one goes on.
        line = reload(top + "intervl = 1\n" + secrets + feed_a + route, "config not reloaded")
        assert "the running one is kept: config file" in line
        assert "server.intervl: unknown key; did you mean the top-level key 'interval'? TOML files every key" in line
        assert process.poll() is None
        assert httpx.post(f"{base}/webhook/generic/acme", json=hook("u3")).status_code == 401
        assert [f["name"] for f in httpx.get(base + "/stats").json()["feeds"]] == ["A", "B"]
        assert httpx.get(base + "/health").json()["status"] == "ok"

        # Remove a source and the secret; a port change needs a restart and says so.
        line = reload(top.replace(str(port), str(port + 1)) + feed_a + route, "config reloaded: 1 source ")
        assert "(none added, B removed, A changed)" in line
        err.wait_for("reload: port changed; that takes a restart (kept as it was)")
        polls = len(feeds.requests_to("/b.rss"))
        time.sleep(1.5)
        assert len(feeds.requests_to("/b.rss")) == polls  # no longer polled
        assert httpx.post(f"{base}/webhook/generic/acme", json=hook("u4")).status_code == 200
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert process.returncode == 0, "".join(err.lines)
    time.sleep(0.2)
    messages = [json.loads(line)["message"] for line in out.lines]
    assert sorted(messages) == sorted([
        "A is down", "Investigating u1", "Investigating w1", "B is down", "Investigating w3", "A is fine",
        "Investigating u4",
    ])  # each once; w2 filtered out


def test_sighup_with_an_unchanged_config_changes_nothing_and_the_monitor_goes_on(tmp_path):
    """`kill -HUP` used to kill the monitor with status 129."""
    config = tmp_path / "monitor.toml"
    port = free_port()
    config.write_text(f'state = ":memory:"\n[server]\nport = {port}\n[[feeds]]\nname = "X"\n'
                      f'url = "http://127.0.0.1:{free_port()}/x.rss"\ninterval = 3600\n')
    process = start_main("--config", str(config), cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "config reloaded: 1 source (none added, none removed, none changed), 0 notification targets" in stderr


def test_sighup_reads_the_users_catalogue_file_again_and_refuses_a_broken_one(tmp_path, feeds):
    """`--catalogue FILE` is read afresh at a reload, as the config is: an entry moved to
    another source is polled there; a broken file is refused and the running entry kept."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    feeds.set("/old.rss", statuspage_rss("o1", [(now - timedelta(minutes=30), "Investigating", "Old source says")]))
    feeds.set("/new.rss", statuspage_rss("n1", [(now - timedelta(minutes=20), "Investigating", "New source says")]))
    mine = tmp_path / "mine.toml"
    mine.write_text(_entry("acme", feeds.url("/"), "statuspage", url=feeds.url("/old.rss")))
    port = free_port()
    process = start_main("--catalogue", str(mine), "--watch", "acme", "--interval", "0.3", "--port", str(port),
                         "--state", str(tmp_path / "state.db"), cwd=tmp_path)
    out, err = Lines(process.stdout), Lines(process.stderr)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        out.wait_for("Old source says")
        mine.write_text(_entry("acme", feeds.url("/"), "statuspage", url=feeds.url("/new.rss")))
        process.send_signal(signal.SIGHUP)
        assert "(Acme added, Acme removed, none changed)" in err.wait_for("config reloaded")  # by its URL
        out.wait_for("New source says")
        mine.write_text("[[provider]]\nid = 'acme'\n")
        process.send_signal(signal.SIGHUP)
        refused = err.wait_for("config not reloaded")
        assert "mine.toml" in refused and "checked" in refused
        polled = len(feeds.requests_to("/new.rss"))
        time.sleep(1.0)
        assert len(feeds.requests_to("/new.rss")) > polled and process.poll() is None  # the running entry kept
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except Exception:
            process.kill()
