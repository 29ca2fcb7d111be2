"""Replicas sharing one PostgreSQL database (a real server, tests/pgserver.py): whole monitors
receiving the same webhooks, an outage of the database, the password kept out of every output."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningMonitor, feed, free_port, make_config, run_main, start_main, wait_http
from feedserver import FeedServer
from hookreceiver import HookReceiver
from pgserver import PASSWORD
from test_dashboard import StreamReader
from test_state import statuspage_rss

from status_monitor.config import FeedConfig, NotifyRoute
from status_monitor.model import Event
from status_monitor.storage import OutboxItem, open_store
from status_monitor.storage.postgres import HEARTBEAT_EVERY
from status_monitor.storage.sqlite import SQLiteStore


@pytest.fixture
def hooks(servers):
    return lambda: servers(HookReceiver)


def hook_body(n: int, status: str = "Investigating") -> bytes:
    return json.dumps({"event_type": "incident.updated", "data": {"id": f"wh-{n}", "incident": {
        "name": f"Hook incident {n}", "status": {"label": status}, "message": f"hook {n} {status}"}}}).encode()


def post(monitor: RunningMonitor, body: bytes, delivery: str) -> httpx.Response:
    return httpx.post(monitor.base + "/webhook/generic/acme", content=body, headers={"x-github-delivery": delivery}, timeout=30)


def test_webhooks_sent_to_every_replica_are_announced_once(tmp_path, pg_url):
    """Each delivery reaches both replicas (a provider retrying through a load balancer), in
    turn or at once: every update is printed once across the two, and the later copy is
    answered as a duplicate by either replica."""
    with RunningMonitor(make_config(tmp_path, state_path=pg_url)) as a, RunningMonitor(make_config(tmp_path, state_path=pg_url)) as b:
        answers = []
        for n in range(20):
            first, second = (a, b) if n % 2 else (b, a)
            answers.append(post(first, hook_body(n), f"d-{n}").json()["status"])
            answers.append(post(second, hook_body(n), f"d-{n}").json()["status"])
        # the same update under a new delivery id: the seen keys, not the id, catch it
        answers.append(post(a, hook_body(3), "d-new").json()["status"])
        printed = [e.key for e in a.output.events + b.output.events]
    assert sorted(printed) == sorted({*printed}) and len(printed) == 20
    assert answers[0::2][:20] == ["accepted"] * 20 and answers[1::2][:20] == ["duplicate"] * 20
    assert answers[-1] == "duplicate"
    assert a.output.events and b.output.events  # both replicas announced some


def test_an_unreachable_database_gets_503_and_the_replica_recovers_by_itself(tmp_path, feeds, pg_cluster, pg_url):
    """While the database refuses connections: webhooks get 503, /health says degraded,
    polling pauses; an update posted meanwhile (to the feed or by webhook) is announced once
    after the database returns, without a restart."""
    database = urlsplit(pg_url).path.lstrip("/")
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    feeds.set("/o.rss", statuspage_rss("o1", [(base, "Investigating", "first")]))
    config = make_config(tmp_path, [("Outage", feeds.url("/o.rss"))], state_path=pg_url, interval=1.0)
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: len(monitor.output.events) == 1, timeout=20)
        assert post(monitor, hook_body(1), "d-1").json()["status"] == "accepted"
        assert httpx.get(monitor.base + "/health").json()["state"] == {"backend": "postgresql", "ok": True}
        pg_cluster.refuse_connections(database)
        feeds.set("/o.rss", statuspage_rss("o1", [(base, "Investigating", "first"), (base + timedelta(minutes=5), "Update", "during")]))
        refused = post(monitor, hook_body(2), "d-2")
        health = httpx.get(monitor.base + "/health", timeout=30)
        time.sleep(3)
        during = [e.message for e in monitor.output.events]
        pg_cluster.allow_connections(database)
        monitor.wait_for(lambda: httpx.get(monitor.base + "/health", timeout=30).status_code == 200, timeout=30)
        retried = post(monitor, hook_body(2), "d-2")
        again = post(monitor, hook_body(2), "d-2")
        monitor.wait_for(lambda: any(e.message == "during" for e in monitor.output.events), timeout=30)
        time.sleep(2)
        stats = httpx.get(monitor.base + "/stats").json()
        printed = [e.message for e in monitor.output.events]
    assert refused.status_code == 503 and PASSWORD not in refused.text
    assert health.status_code == 503 and health.json()["status"] == "degraded" and PASSWORD not in health.text
    assert retried.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    assert "during" not in during  # nothing announced that could not be stored
    assert sorted(printed) == sorted(["first", "hook 1 Investigating", "during", "hook 2 Investigating"])
    assert stats["webhooks_rejected_total"] == {"unavailable": 1}


def test_the_password_appears_in_no_output(tmp_path, pg_cluster, pg_url):
    """Logs, errors, /health, /stats and /metrics name the database with the password hidden,
    whether it is given by flag, config file or MONITOR_STATE, right or wrong."""
    absent = run_main("--history", "--state", pg_url, cwd=tmp_path)  # --history neither creates nor migrates
    assert absent.returncode == 2 and "holds no state yet" in absent.stderr and PASSWORD not in absent.stderr

    async def create() -> None:
        store = open_store(pg_url)
        await store.open()
        await store.close()

    asyncio.run(create())
    config = tmp_path / "monitor.toml"
    config.write_text(f'state = "{pg_url}"\n')
    for args, env in [(["--state", pg_url], {}), (["--config", str(config)], {}), ([], {"MONITOR_STATE": pg_url})]:
        done = run_main("--history", *args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    wrong = run_main("--history", "--state", pg_url.replace(PASSWORD, "Wr0ng-pass-word"), cwd=tmp_path)
    assert wrong.returncode == 2 and "Wr0ng-pass-word" not in wrong.stdout + wrong.stderr
    assert "password authentication failed" in wrong.stderr
    with RunningMonitor(make_config(tmp_path, state_path=pg_url)) as monitor:
        pages = [httpx.get(monitor.base + path).text for path in ("/health", "/stats", "/metrics", "/")]
    assert all(PASSWORD not in page for page in pages)


def test_replicas_share_the_polls_and_announce_each_update_once(tmp_path, feeds, pg_url):
    """Six feeds polled every 2 s by replica A; B joins once A has polled them all and takes
    half of them, for good: each feed is fetched about once an interval (never by both
    replicas in one), each replica holds three, and each update is printed once."""
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    paths = [f"/f{i}" for i in range(6)]
    for i, path in enumerate(paths):
        feeds.set(path, statuspage_rss(f"c{i}", [(base, "Investigating", f"looking at {i}")]))
    sources = [(path.strip("/"), feeds.url(path)) for path in paths]

    def held(*monitors: RunningMonitor) -> list[int]:
        return [httpx.get(m.base + "/stats").json()["fleet"]["feeds_held"] for m in monitors]

    with RunningMonitor(make_config(tmp_path, sources, state_path=pg_url, interval=2.0)) as a:
        a.wait_for(lambda: len(a.output.events) == 6 and held(a) == [6], timeout=20)
        with RunningMonitor(make_config(tmp_path, sources, state_path=pg_url, interval=2.0)) as b:
            # A hears of B at its next heartbeat; each count is taken at a heartbeat
            a.wait_for(lambda: held(a, b) == [3, 3], timeout=3 * HEARTBEAT_EVERY + 6)
            split = []  # and keeps them: a feed does not wander between replicas
            for _ in range(int(2.5 * HEARTBEAT_EVERY / 0.5)):
                split.append(held(a, b))
                time.sleep(0.5)
            assert all(counts == [3, 3] for counts in split), split
            feeds.set("/f0", statuspage_rss("c0", [(base, "Investigating", "looking at 0"), (base + timedelta(minutes=10), "Resolved", "fixed")]))
            a.wait_for(lambda: any(e.status == "Resolved" for e in a.output.events + b.output.events), timeout=15)
            time.sleep(2)
            stats = [httpx.get(m.base + "/stats").json() for m in (a, b)]
            metrics = httpx.get(a.base + "/metrics").text
            printed = [(e.incident_id, e.status) for e in a.output.events + b.output.events]
    assert sorted(printed) == sorted(set(printed)) and len(printed) == 7
    for path in paths:
        times = [r.at for r in feeds.requests_to(path)]
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert len(times) >= 3 and min(gaps) > 1.5, (path, gaps)
    assert all(s["fleet"]["replicas"] == 2 for s in stats)
    assert [s["fleet"]["feeds_held"] for s in stats] == [3, 3]
    replica = stats[0]["fleet"]["replica_id"]
    assert "statusmon_replicas 2.0" in metrics
    assert f'statusmon_feeds_held{{replica="{replica}"}} ' in metrics


def test_replicas_started_together_each_detect_the_page_roots_and_share_their_feeds(tmp_path, servers, pg_url):
    """Four page roots (no kind), two replicas started together: whichever detects a page
    first hands its lease back, so the other detects it too; then each polls two of the
    four feeds found. (A replica started later reads what was found from the database.)"""
    roots = [servers(FeedServer) for _ in range(4)]
    for page in roots:
        page.set("/", '<html><link rel="alternate" type="application/atom+xml" href="/history.atom"></html>',
                 content_type="text/html")
        page.set("/history.atom", feed("statuspage_claude_history.atom"))
    pages = tuple(FeedConfig(f"page{n}", page.url("")) for n, page in enumerate(roots))

    def feeds_of(monitor: RunningMonitor) -> dict[str, dict]:
        return {f["url"]: f for f in httpx.get(monitor.base + "/stats").json()["feeds"]}

    def detected(monitor: RunningMonitor) -> bool:
        return [f["kind"] for f in feeds_of(monitor).values()] == ["statuspage"] * 4

    def polled_over(seconds: float, *monitors: RunningMonitor) -> list[set[str]]:
        """The feeds each replica polled in the next `seconds`."""
        before = [feeds_of(m) for m in monitors]
        time.sleep(seconds)
        return [{url for url, f in feeds_of(m).items() if f["last_polled_at"] != was[url]["last_polled_at"]}
                for m, was in zip(monitors, before)]

    with RunningMonitor(replace(make_config(tmp_path, state_path=pg_url, interval=2.0), feeds=pages)) as a, \
            RunningMonitor(replace(make_config(tmp_path, state_path=pg_url, interval=2.0), feeds=pages)) as b:
        a.wait_for(lambda: detected(a) and detected(b), timeout=30)
        a.wait_for(lambda: [len(p) for p in polled_over(6.6, a, b)] == [2, 2], timeout=40)
        by_a, by_b = polled_over(6.6, a, b)
    assert len(by_a) == len(by_b) == 2 and not by_a & by_b


def test_a_notification_left_by_a_killed_replica_is_sent_once_by_another(tmp_path, hooks, pg_url):
    """Replica A announces an update and keeps failing to notify; it is SIGKILLed. Replica B,
    running all along, leaves A's claimed notification alone until the claim lapses, then
    sends it: the target receives it once."""
    hook = hooks()
    hook.fail_next = 10**6
    port = free_port()
    config = tmp_path / "a.toml"
    config.write_text(
        f'state = "{pg_url}"\nnotify_timeout = 2\n[server]\nport = {port}\n'
        f'[[feeds]]\nname = "None"\nurl = "http://127.0.0.1:9/none.rss"\n[[notify]]\nurls = ["{hook.url()}"]\n'
    )
    a = start_main("--config", str(config), "--interval", "60", cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        b_config = make_config(tmp_path, state_path=pg_url, notify=(NotifyRoute((hook.url(),)),), notify_timeout=2.0)
        with RunningMonitor(b_config) as b:
            answer = httpx.post(f"http://127.0.0.1:{port}/webhook/generic/Acme", content=hook_body(7), timeout=10)
            assert answer.json()["status"] == "accepted"
            deadline = time.monotonic() + 10
            while hook.attempts < 2 and time.monotonic() < deadline:  # A is retrying
                time.sleep(0.05)
            time.sleep(6)  # B looked for unclaimed notifications at least once meanwhile
            sent_while_a_lived = len(hook.received)
            b_while_a_lived = httpx.get(b.base + "/stats").json()["notifications"]
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            hook.fail_next = 0
            received = hook.wait_for(1, timeout=40)  # A's claim lapses within 15 s; B looks every 5 s
            time.sleep(6)
            printed_by_b = len(b.output.events)
    finally:
        a.kill()
    assert sent_while_a_lived == 0 and len(received) == 1 and len(hook.received) == 1
    assert b_while_a_lived["pending"] == 0 and b_while_a_lived["retries_total"] == 0  # A's claim held
    assert received[0].json()["title"] == "Acme: Hook incident 7"
    assert printed_by_b == 0  # A printed the update; B only sent what A could not


def test_every_replica_streams_every_replicas_events_in_order_without_gap_or_repeat(tmp_path, pg_url):
    """Updates arrive at two replicas at once; a dashboard on either sees all of them live,
    in id order, once; one resuming after an id gets exactly the rest."""
    with RunningMonitor(make_config(tmp_path, state_path=pg_url)) as a, RunningMonitor(make_config(tmp_path, state_path=pg_url)) as b:
        on_a = StreamReader(a.base + "/events/stream")
        on_b = StreamReader(b.base + "/events/stream?after=0")
        try:
            time.sleep(0.5)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: post(a if n % 2 else b, hook_body(n), f"d-{n}"), range(30)))
            on_a.wait_for(30, timeout=20)
            on_b.wait_for(30, timeout=20)
            resumed = StreamReader(b.base + "/events/stream", headers={"Last-Event-ID": str(on_a.ids[11])})
            resumed.wait_for(18, timeout=20)
            time.sleep(0.5)
        finally:
            for reader in (on_a, on_b):
                reader.close()
        stored = sorted(e["id"] for e in httpx.get(a.base + "/events?limit=1000").json()["events"])
    assert len(stored) == 30
    assert on_a.ids == on_b.ids == stored
    assert resumed.ids == stored[12:]
    assert len(a.output.events) + len(b.output.events) == 30


def test_migrate_state_moves_a_sqlite_state_and_nothing_is_announced_again(tmp_path, feeds, pg_url):
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    for code in ("m0", "m1"):
        feeds.set(f"/{code}", statuspage_rss(code, [(base, "Investigating", f"{code} open")]))
    sources = [(code, feeds.url(f"/{code}")) for code in ("m0", "m1")]
    sqlite_path = tmp_path / "monitor.db"
    with RunningMonitor(make_config(tmp_path, sources, state_path=str(sqlite_path), interval=60)) as before:
        before.wait_for(lambda: len(before.output.events) == 2)
        assert post(before, hook_body(1), "d-1").json()["status"] == "accepted"
        events_before = httpx.get(before.base + "/events").json()["events"]

    async def extra():
        store = SQLiteStore(str(sqlite_path))
        await store.open()
        await store.add_event(Event("Acme", "t", "Investigating", "m", "i9", None, "webhook", ("k9",), received_at=base),
                              outbox=[OutboxItem("target-1", "k9", "title", "body", "info", 1.0)])
        await store.save_components("https://x.test/summary", {"c1": "major_outage"})
        await store.save_source("https://x.test/", "statuspage", "https://x.test/api/v2/summary.json")
        await store.close()

    asyncio.run(extra())
    moved = run_main("--migrate-state", str(sqlite_path), pg_url, cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "4 events" in moved.stderr and "2 feeds" in moved.stderr and "1 outbox" in moved.stderr
    assert PASSWORD not in moved.stdout + moved.stderr
    again = run_main("--migrate-state", str(sqlite_path), pg_url, cwd=tmp_path)
    assert again.returncode == 2 and "holds a state already" in again.stderr and PASSWORD not in again.stderr

    async def read():
        store = open_store(pg_url)
        await store.open()
        result = await store.load_outbox(), await store.load_components(), await store.load_sources()
        await store.close()
        return result

    outbox, components, detected = asyncio.run(read())  # before a monitor without targets drops the outbox
    assert [(o.target, o.event_key) for o in outbox] == [("target-1", "k9")]
    assert components == {"https://x.test/summary": {"c1": "major_outage"}}
    assert detected["https://x.test/"] == ("statuspage", "https://x.test/api/v2/summary.json")
    assert {url: kind for url, (kind, _) in detected.items() if url.startswith(feeds.url(""))} == {
        url: "statuspage" for _, url in sources}  # what detection found for the two feeds came along too

    polled = {code: len(feeds.requests_to(f"/{code}")) for code in ("m0", "m1")}
    with RunningMonitor(make_config(tmp_path, sources, state_path=pg_url, interval=60)) as after:
        after.wait_for(lambda: all(len(feeds.requests_to(f"/{c}")) > polled[c] for c in polled), timeout=20)
        replayed = post(after, hook_body(1), "d-1").json()["status"]
        same_update = post(after, hook_body(1), "d-other").json()["status"]
        events_after = httpx.get(after.base + "/events").json()["events"]
        printed = list(after.output.events)
    conditional = [feeds.requests_to(f"/{c}")[-1] for c in polled]
    assert all(r.status == 304 and r.headers.get("if-none-match") for r in conditional)  # validators came along
    assert printed == [] and replayed == "duplicate" and same_update == "duplicate"
    assert [(e["id"], e["title"]) for e in events_after][1:] == [(e["id"], e["title"]) for e in events_before]
