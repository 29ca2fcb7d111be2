"""The fleet test: three `python3 main.py` replicas on one PostgreSQL database, a loopback
feed server whose feeds keep changing, signed webhooks sent round-robin (with retries to the
others) to all three, and one replica SIGKILLed in the middle. Checked across the replicas'
stdout, the feed server's log and the notification target: nothing lost, nothing printed
twice beyond the bound, no feed polled twice in one interval, failover in time, each
notification delivered once."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import free_port, start_main, wait_http
from hookreceiver import HookReceiver
from test_state import Reader, statuspage_rss

from status_monitor.storage.postgres import HEARTBEAT_EVERY, HEARTBEAT_TIMEOUT

SECRET = "fleet-webhook-secret"
INTERVAL = 1.0
STEPS = 36


@pytest.fixture
def hook(servers):
    return servers(HookReceiver)


def signed(n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"event_type": "incident.updated", "data": {"id": f"fleet-{n}", "incident": {
        "name": f"Fleet incident {n}", "status": {"label": "Investigating"}, "message": f"hook {n}"}}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"x-hub-signature-256": signature, "x-github-delivery": f"delivery-{n}", "content-type": "application/json"}


def pid_with_local_port(pids: list[int], port: int) -> int:
    """Which of `pids` owns the TCP socket bound to 127.0.0.1:`port` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inodes = {row[9] for row in rows if int(row[1].split(":")[1], 16) == port}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in inodes:
                    return pid
            except OSError:
                continue
    raise LookupError(f"no process of {pids} has local port {port}")


def test_three_replicas_with_one_killed_lose_nothing_and_repeat_at_most_the_bound(tmp_path, feeds, hook, pg_url):
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    codes = [f"feed{n}" for n in range(6)]
    blocks = {code: [(base, "Investigating", f"{code} update 0")] for code in codes}
    for code in codes:
        feeds.set(f"/{code}.rss", statuspage_rss(code, blocks[code]))
    ports = [free_port() for _ in range(3)]
    replicas, readers = [], []
    for port in ports:
        config = tmp_path / f"replica-{port}.toml"
        config.write_text(
            f'state = "{pg_url}"\ninterval = {INTERVAL}\nnotify_timeout = 2\n[server]\nport = {port}\n'
            f'[webhooks.secrets]\nAcme = "{SECRET}"\n[[notify]]\nurls = ["{hook.url()}"]\n'
            + "".join(f'[[feeds]]\nname = "{code}"\nurl = "{feeds.url(f"/{code}.rss")}"\n' for code in codes)
        )
        replicas.append(start_main("--config", str(config), "--json", cwd=tmp_path))
        readers.append(Reader(replicas[-1]))
    expected = {f"{code} update 0" for code in codes}  # each feed's open incident, announced (not notified) at its first poll
    notified: set[str] = set()
    killed: list[tuple[int, float]] = []  # (index of the replica, when)
    held = codes[0]  # the feed whose lease the victim holds when it dies
    try:
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=60)

        def printed() -> list[str]:
            return [json.loads(line)["message"] for reader in readers for line in list(reader.lines)]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expected <= set(printed()):  # every feed's first poll made
            time.sleep(0.1)

        def provider() -> None:
            for step in range(1, STEPS + 1):
                code = codes[step % len(codes)]
                text = f"{code} update {len(blocks[code])}"
                blocks[code].append((base + timedelta(minutes=step), "Update", text))
                feeds.set(f"/{code}.rss", statuspage_rss(code, blocks[code]))
                expected.update({text, f"hook {step}"})
                notified.update({text, f"hook {step}"})
                body, headers = signed(step)
                for attempt in range(300):  # round-robin, and on to the next replica until one answers 2xx
                    port = ports[(step + attempt) % 3]
                    try:
                        if httpx.post(f"http://127.0.0.1:{port}/webhook/generic/Acme", content=body,
                                      headers=headers, timeout=5).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                if step == STEPS // 2:  # the next poll of `held` hangs; whoever makes it is killed mid-poll
                    feeds.set(f"/{held}.rss", statuspage_rss(held, blocks[held]), hang=True)
                    while not feeds.hanging:
                        time.sleep(0.02)
                    pids = [r.pid for r in replicas]
                    index = pids.index(pid_with_local_port(pids, feeds.hanging[0][1]))
                    replicas[index].send_signal(signal.SIGKILL)
                    killed.append((index, time.monotonic()))
                    feeds.set(f"/{held}.rss", statuspage_rss(held, blocks[held]), hang=False)
                time.sleep(0.25)

        sender = threading.Thread(target=provider, daemon=True)
        sender.start()
        sender.join(240)
        assert not sender.is_alive(), "the provider could not deliver every webhook"

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (expected <= set(printed()) and notified <= set(notifications(hook))):
            time.sleep(0.2)
        time.sleep(INTERVAL * 3)
        ended = time.monotonic()
        survivors = [i for i in range(3) if i != killed[0][0]]
        deadline = killed[0][1] + HEARTBEAT_TIMEOUT + HEARTBEAT_EVERY + 2  # the count is taken at each heartbeat
        while True:
            stats = [httpx.get(f"http://127.0.0.1:{ports[i]}/stats").json() for i in survivors]
            if all(s["fleet"]["replicas"] == 2 for s in stats) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.wait(15)
            except Exception:
                replica.kill()
        for reader in readers:
            reader.join()

    messages = [json.loads(line)["message"] for reader in readers for line in reader.lines]
    missing = expected - set(messages)
    assert not missing, f"lost: {sorted(missing)}"
    repeated = {m: n for m, n in Counter(messages).items() if n > 1}
    assert sum(n - 1 for n in repeated.values()) <= 3, f"printed twice beyond the bound: {repeated}"
    assert set(messages) == expected
    assert all(len(readers[i].lines) > 0 for i in survivors), "the surviving replicas shared the work"

    _, kill = killed[0]
    for code in codes:
        times = [r.at for r in feeds.requests_to(f"/{code}.rss")]
        gaps = [(earlier, later - earlier) for earlier, later in zip(times, times[1:])]
        assert min(gap for _, gap in gaps) > INTERVAL * 0.8, f"{code} polled twice in one interval: {gaps}"
        assert max(gap for _, gap in gaps) < INTERVAL * 1.1 + HEARTBEAT_TIMEOUT + 3, f"{code}: no failover in time: {gaps}"
        assert max(times) > ended - INTERVAL * 3, f"{code} not polled at the end: last at {max(times) - ended:.1f} s"
    # The held feed: nobody polled it while the dead replica's lease ran (taken at most an
    # interval before the kill, lasting HEARTBEAT_TIMEOUT), and someone did once it lapsed.
    after = [at for at in (r.at for r in feeds.requests_to(f"/{held}.rss")) if at > kill]
    assert after and after[0] > kill + HEARTBEAT_TIMEOUT - INTERVAL * 1.1, f"{held} polled during the dead replica's lease"

    notes = notifications(hook)
    assert not notified - set(notes), f"not notified: {sorted(notified - set(notes))}"
    assert set(notes) == notified  # the state found at a first poll is not news
    assert sum(n - 1 for n in notes.values()) <= 1, f"notified twice beyond the one cut off by the kill: {notes}"
    assert all(s["fleet"]["replicas"] == 2 for s in stats), f"the dead replica still counted: {[s['fleet'] for s in stats]}"


def notifications(hook: HookReceiver) -> Counter:
    """How often each update's message reached the target."""
    return Counter(
        line.removeprefix("Message: ") for received in list(hook.received)
        for line in received.json()["message"].split("\n") if line.startswith("Message: ")
    )
