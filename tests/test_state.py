"""Part 3: state across restarts and crashes, in real SQLite files and real subprocesses."""

from __future__ import annotations

import asyncio
import html
import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from conftest import RunningMonitor, feed, free_port, make_config, run_main, start_main, wait_http

from status_monitor.model import Event
from status_monitor.storage import open_store


def statuspage_rss(code: str, blocks: list[tuple[datetime, str, str]]) -> bytes:
    """A Statuspage-style history feed with one incident; blocks are given oldest first."""
    markup = "".join(
        f"<p><small>{d:%b} <var data-var='date'>{d.day:2d}</var>, <var data-var='time'>{d:%H:%M}</var> UTC</small>"
        f"<br><strong>{label}</strong> - {text}</p>"
        for d, label, text in reversed(blocks)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Test Status - Incident History</title><link>https://x.test</link><description>Statuspage</description>"
        f"<item><title>Incident {code}</title><description>{html.escape(markup)}</description>"
        f"<pubDate>{format_datetime(blocks[-1][0])}</pubDate>"
        f"<link>https://x.test/incidents/{code}</link><guid>https://x.test/incidents/{code}</guid></item>"
        "</channel></rss>"
    ).encode()


def generic_hook(n: int) -> bytes:
    return json.dumps({"event_type": "incident.updated", "data": {"id": f"wh-{n}", "incident": {
        "name": f"Hook incident {n}", "status": {"label": "Investigating"}, "message": f"hook {n}"}}}).encode()


def write_feeds_config(tmp_path, feeds, paths, extra="") -> str:
    lines = [extra] + [f'[[feeds]]\nname = "{p.strip("/")}"\nurl = "{feeds.url(p)}"' for p in paths]
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --- the state file itself ---

def create_state(path) -> None:
    """An empty state file of this version, as a monitor's first start leaves it."""
    async def create() -> None:
        store = open_store(str(path))
        await store.open()
        await store.close()

    asyncio.run(create())


def test_default_state_file_is_in_the_current_folder_and_named(tmp_path, feeds):
    feeds.set("/azure.rss", feed("azure_status_feed_empty.rss"))
    config = write_feeds_config(tmp_path, feeds, ["/azure.rss"])
    result = run_main("--config", config, "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "monitor.db").exists()
    assert "state in monitor.db" in result.stderr


def test_missing_folder_is_created(tmp_path, feeds):
    feeds.set("/azure.rss", feed("azure_status_feed_empty.rss"))
    path = tmp_path / "a" / "b" / "state.db"
    config = write_feeds_config(tmp_path, feeds, ["/azure.rss"])
    assert run_main("--config", config, "--once", "--state", str(path), cwd=tmp_path).returncode == 0
    assert path.exists()


def test_history_never_creates_a_state_file(tmp_path):
    result = run_main("--history", "--state", "mistyped/monitr.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "state file mistyped/monitr.db: does not exist (a mistyped --state?" in result.stderr
    again = run_main("--history", cwd=tmp_path)
    assert again.returncode == 2 and "state file monitor.db: does not exist" in again.stderr
    assert list(tmp_path.iterdir()) == []


def _refused(tmp_path, path, expected: str) -> None:
    before = path.read_bytes()
    result = run_main("--history", "--state", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before  # never overwritten


def test_foreign_database_text_file_and_newer_schema_are_refused(tmp_path):
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign, isolation_level=None)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    _refused(tmp_path, foreign, "another program")
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a database\n" * 100)
    _refused(tmp_path, text, "not a usable SQLite database")
    newer = tmp_path / "newer.db"
    create_state(newer)
    with closing(sqlite3.connect(newer, isolation_level=None)) as db:
        db.execute("PRAGMA user_version = 99")
    _refused(tmp_path, newer, "newer version")


def test_a_file_of_the_previous_schema_is_upgraded_in_place(tmp_path):
    path = tmp_path / "v1.db"
    create_state(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # as schema 1 left it
        db.execute("DROP TABLE outbox")
        db.execute("INSERT INTO seen VALUES (42, 0)")
        db.execute("PRAGMA user_version = 1")
    assert run_main("--history", "--state", str(path), cwd=tmp_path).returncode == 0  # readable as it is
    create_state(path)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert db.execute("SELECT hash FROM seen").fetchall() == [(42,)]


def test_corrupt_database_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    assert run_main("--history", "--state", str(path), cwd=tmp_path).returncode == 2  # foreign: refused as is
    ours = tmp_path / "ours.db"
    create_state(ours)
    with closing(sqlite3.connect(ours)) as db, db:
        db.executemany("INSERT INTO events (key, provider, source, received_at, body) VALUES (?, 'p', 'rss', '', ?)",
                       [(f"key-{i}", "x" * 200) for i in range(2000)])
    data = bytearray(ours.read_bytes())
    data[8192:16384] = b"\xde\xad" * 4096
    ours.write_bytes(bytes(data))
    _refused(tmp_path, ours, "not a usable SQLite database")


def test_read_only_folder_gives_a_clear_error(tmp_path, feeds):
    feeds.set("/azure.rss", feed("azure_status_feed_empty.rss"))
    config = write_feeds_config(tmp_path, feeds, ["/azure.rss"])
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {mounted.stderr.decode().strip()}")
    try:
        result = run_main("--config", config, "--once", "--state", str(folder / "state.db"), cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert result.returncode == 2
    assert "state.db" in result.stderr and "writable" in result.stderr and "Traceback" not in result.stderr


def test_retention_drops_old_events_and_delivery_ids(tmp_path):
    path = str(tmp_path / "state.db")

    async def scenario():
        store = open_store(path)
        await store.open()
        for days, key in [(100, "old"), (1, "new")]:
            when = datetime.now(timezone.utc) - timedelta(days=days)
            await store.add_event(Event("P", "t", "Resolved", "m", "i", None, "rss", (key,), received_at=when))
        await store.add_delivery("recent")
        store.db.execute("INSERT INTO deliveries VALUES ('ancient', ?)", (time.time() - 73 * 3600,))
        await store.prune(90)
        events = await store.list_events()
        deliveries = await store.load_deliveries()
        seen = await store.load_seen_keys()
        await store.close()
        return events, deliveries, seen

    events, deliveries, seen = asyncio.run(scenario())
    assert [s.event.key for s in events] == ["new"]
    assert deliveries == {"recent"}
    assert "old" in seen and "new" in seen  # keys stay: an old item still in a feed must not come back


def test_the_log_is_checkpointed_into_the_database_file_while_writes_go_on(tmp_path):
    """Checkpoints are not automatic (a commit on the loop must never sync): the store runs
    them itself, so the database file grows and the log does not keep everything."""
    path = tmp_path / "state.db"

    async def scenario():
        store = open_store(str(path))
        await store.open()
        empty = path.stat().st_size
        for n in range(600):  # 1,800 rows: an event, its key and its delivery id each
            event = Event("P", f"t{n}", "Investigating", "m" * 500, f"i{n}", None, "webhook", (f"key{n}",),
                          received_at=datetime.now(timezone.utc))
            reading = store.list_events(limit=1) if n % 50 == 0 else asyncio.sleep(0)  # now and then on the thread
            await asyncio.gather(store.add_event(event, delivery_id=f"d{n}"), reading)
        deadline = time.monotonic() + 10
        while path.stat().st_size == empty and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        grown = path.stat().st_size > empty
        await store.close()
        return grown

    assert asyncio.run(scenario())
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 600
        assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 600


# --- /events and --history ---

def test_events_endpoint_filters_and_validates(tmp_path, feeds):
    feeds.set("/openai.rss", feed("incidentio_openai_feed_trimmed.rss"))
    config = make_config(tmp_path, [("OpenAI", feeds.url("/openai.rss"))], interval=0.2)
    with RunningMonitor(config) as running:
        running.wait_for(lambda: len(running.output.events) == 1)
        for n in range(3):
            httpx.post(running.base + "/webhook/generic/acme", content=generic_hook(n))
        listing = httpx.get(running.base + "/events").json()
        assert listing["count"] == 4
        assert [e["message"] for e in listing["events"][:3]] == ["hook 2", "hook 1", "hook 0"]  # newest first
        assert [e["provider"] for e in httpx.get(running.base + "/events?provider=openai").json()["events"]] == ["OpenAI"]
        assert httpx.get(running.base + "/events?source=webhook&limit=2").json()["count"] == 2
        future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        assert httpx.get(running.base + "/events", params={"since": future}).json()["count"] == 0
        for query, name in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                            ("since=yesterday", "since"), ("source=email", "source")]:
            answer = httpx.get(running.base + "/events?" + query)
            assert answer.status_code == 422
            assert name in json.dumps(answer.json()), query


def test_history_prints_stored_events_with_filters(tmp_path, feeds):
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    feeds.set("/openai.rss", feed("incidentio_openai_feed_trimmed.rss"))
    config = write_feeds_config(tmp_path, feeds, ["/github.atom", "/openai.rss"])
    first = run_main("--config", config, "--once", "--json", cwd=tmp_path)
    assert len(first.stdout.splitlines()) == 2
    history = run_main("--history", "--json", cwd=tmp_path)
    assert history.returncode == 0
    assert sorted(history.stdout.splitlines()) == sorted(first.stdout.splitlines())
    only = run_main("--history", "--provider", "openai.rss", cwd=tmp_path)
    assert only.stdout.startswith("[2025-10-20 09:43:12 UTC] Provider: openai.rss") and only.stdout.count("Provider:") == 1
    later = run_main("--history", "--since", (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat(), cwd=tmp_path)
    assert later.stdout == ""
    bad = run_main("--history", "--since", "last tuesday", cwd=tmp_path)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_a_second_monitor_on_the_same_state_file_is_refused_and_history_still_reads(tmp_path, feeds):
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    config = write_feeds_config(tmp_path, feeds, ["/github.atom"], extra="interval = 60")
    port = free_port()
    first = start_main("--config", config, "--port", str(port), "--json", cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        deadline = time.monotonic() + 10
        while not run_main("--history", cwd=tmp_path).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        for args in (["--once"], ["--port", str(free_port())]):
            second = run_main("--config", config, *args, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            assert f"state file monitor.db: in use by another monitor (pid {first.pid}); stop it first" in second.stderr
            assert second.stdout == ""
        history = run_main("--history", cwd=tmp_path)
        assert history.returncode == 0 and "Delays starting Actions runs" in history.stdout
    finally:
        first.kill()  # a monitor that dies without cleaning up leaves no lock behind
        first.communicate(timeout=10)
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-10.atom"))
    after = run_main("--config", config, "--once", "--json", cwd=tmp_path)
    assert after.returncode == 0 and len(after.stdout.splitlines()) == 11


# --- restarts, signals, crashes ---

def test_restart_announces_what_was_missed_and_nothing_twice(tmp_path, feeds):
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-09.atom"))
    config = write_feeds_config(tmp_path, feeds, ["/github.atom"])
    assert len(run_main("--config", config, "--once", "--json", cwd=tmp_path).stdout.splitlines()) == 1
    feeds.set("/github.atom", feed("statuspage_github_history_snapshot_2026-07-10.atom"))
    missed = run_main("--config", config, "--once", "--json", cwd=tmp_path).stdout.splitlines()
    assert len(missed) == 11
    again = run_main("--config", config, "--once", "--json", cwd=tmp_path)
    assert again.stdout == ""
    statuses = [r.status for r in feeds.requests_to("/github.atom")]
    assert statuses == [200, 200, 304]  # validators survived the restarts


def test_sigint_with_a_poll_in_flight_exits_zero_within_five_seconds(tmp_path, feeds):
    feeds.set("/hang.rss", b"", hang=True)
    port = free_port()
    config = write_feeds_config(tmp_path, feeds, ["/hang.rss"], extra=f"interval = 0.1\nrequest_timeout = 60\n[server]\nport = {port}")
    process = start_main("--config", config, cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        deadline = time.monotonic() + 10
        while not feeds.requests_to("/hang.rss") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


class Reader:
    """Collects a process's stdout lines on a thread, so the test can watch them arrive."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.endswith("\n"):  # a line cut by SIGKILL was never printed whole
                self.lines.append(line)

    def join(self) -> None:
        self._thread.join(10)


def test_sigkill_at_random_moments_loses_nothing_and_repeats_at_most_the_one_in_flight(tmp_path, feeds):
    rng = random.Random(20261127)
    base = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
    codes = [f"inc{n}" for n in range(4)]
    blocks = {code: [(base, "Investigating", f"{code} update 0")] for code in codes}
    for code in codes:
        feeds.set(f"/{code}.rss", statuspage_rss(code, blocks[code]))
    port = free_port()
    config = write_feeds_config(tmp_path, feeds, [f"/{c}.rss" for c in codes],
                                extra=f"interval = 0.1\n[server]\nport = {port}")
    state = ["--config", config, "--json", "--state", str(tmp_path / "state.db")]
    printed: list[str] = [json.loads(l)["message"] for l in run_main(*state, "--once", cwd=tmp_path).stdout.splitlines()]
    expected = set(printed)
    done = threading.Event()

    def provider() -> None:
        """Adds feed updates and sends webhooks, retrying each delivery until it gets a 2xx."""
        for step in range(1, 41):
            code = codes[step % len(codes)]
            text = f"{code} update {len(blocks[code])}"
            blocks[code].append((base + timedelta(minutes=step), "Update", text))
            feeds.set(f"/{code}.rss", statuspage_rss(code, blocks[code]))
            expected.add(text)
            expected.add(f"hook {step}")
            while True:
                try:
                    if httpx.post(f"http://127.0.0.1:{port}/webhook/generic/acme", content=generic_hook(step),
                                  timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            time.sleep(0.05)
        done.set()

    sender = threading.Thread(target=provider, daemon=True)
    sender.start()
    kills = 0
    while not done.is_set():
        process = start_main(*state, cwd=tmp_path)
        reader = Reader(process)
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60)  # up, however loaded the machine: each life makes progress
        time.sleep(rng.uniform(0.0, 1.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        reader.join()
        kills += 1
        printed += [json.loads(line)["message"] for line in reader.lines]
    process = start_main(*state, cwd=tmp_path)
    reader = Reader(process)
    wait_http(f"http://127.0.0.1:{port}/health")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not expected <= set(printed + [json.loads(l)["message"] for l in reader.lines]):
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(10)
    reader.join()
    printed += [json.loads(line)["message"] for line in reader.lines]
    assert process.returncode == 0
    assert kills >= 3
    missing = expected - set(printed)
    assert not missing, f"lost: {sorted(missing)}"
    repeated = len(printed) - len(set(printed))
    assert repeated <= kills, f"{repeated} repeats over {kills} kills"
    assert set(printed) == expected


def test_burst_of_200_webhooks_while_100_feeds_poll_loses_nothing(tmp_path, feeds):
    base = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
    paths = [f"/f{n}.rss" for n in range(100)]
    for n, path in enumerate(paths):
        feeds.set(path, statuspage_rss(f"c{n}", [(base, "Investigating", f"feed {n}")]))
    config = make_config(tmp_path, [(p.strip("/"), feeds.url(p)) for p in paths], interval=0.2, concurrency=20)
    with RunningMonitor(config) as running:
        running.wait_for(lambda: len(running.output.events) == 100, timeout=30)

        async def burst():
            async with httpx.AsyncClient(base_url=running.base, timeout=30) as client:
                for n, path in enumerate(paths):
                    feeds.set(path, statuspage_rss(f"c{n}", [(base, "Investigating", f"feed {n}"),
                                                             (base + timedelta(minutes=5), "Resolved", f"feed {n} done")]))
                answers = await asyncio.gather(*(
                    client.post("/webhook/generic/acme", content=generic_hook(n)) for n in range(200)))
                return [a.status_code for a in answers]

        assert asyncio.run(burst()) == [200] * 200
        running.wait_for(lambda: len(running.output.events) == 400, timeout=30)
        messages = [e.message for e in running.output.events]
        assert len(set(messages)) == 400
        stats = httpx.get(running.base + "/stats").json()
        assert stats["events_total"] == 400 and stats["webhooks_received_total"] == 200
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 400
