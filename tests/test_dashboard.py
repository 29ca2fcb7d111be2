"""The dashboard's JSON (/api/providers) and its live stream (/events/stream), against the real
monitor on 127.0.0.1. The page itself is tested in a real browser in test_browser.py."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
from conftest import RunningMonitor, make_config
from test_state import statuspage_rss


def hook(incident: str, status: str = "Investigating", components: list[str] | None = None) -> dict:
    return {"event_type": "incident.updated", "data": {"id": incident, "incident": {
        "name": f"Incident {incident}", "status": {"label": status}, "message": f"{status} {incident}",
        "url": f"https://status.example/incidents/{incident}", "components": components or []}}}


def post(monitor: RunningMonitor, provider: str, body: dict) -> None:
    assert httpx.post(f"{monitor.base}/webhook/generic/{provider}", json=body).status_code == 200


def cards(monitor: RunningMonitor) -> dict[str, dict]:
    providers = httpx.get(monitor.base + "/api/providers").json()["providers"]
    return {card["name"]: card for card in providers} | {"_order": [c["name"] for c in providers]}


class StreamReader:
    """Reads /events/stream on a thread, as a browser's EventSource would."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: list[dict] = []
        self.ids: list[int] = []
        self._client = httpx.Client(timeout=None)
        self._response = self._client.send(self._client.build_request("GET", url, headers=headers), stream=True)
        assert self._response.headers["content-type"].startswith("text/event-stream")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        frame: dict[str, str] = {}
        try:
            for line in self._response.iter_lines():
                if not line:
                    if "data" in frame:
                        self.ids.append(int(frame["id"]))
                        self.frames.append(json.loads(frame["data"]))
                    frame = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    frame[name] = value
        except httpx.HTTPError:
            pass

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.frames) >= count, f"{len(self.frames)} of {count} events streamed"
        return self.frames

    def close(self) -> None:
        self._response.close()
        self._client.close()


def test_page_and_its_files_are_served(tmp_path):
    with RunningMonitor(make_config(tmp_path)) as monitor:
        page = httpx.get(monitor.base + "/")
        script = httpx.get(monitor.base + "/static/app.js")
        style = httpx.get(monitor.base + "/static/style.css")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and "http" not in page.text.split("<body>")[0].replace("http-equiv", "")
    assert script.status_code == 200 and "EventSource" in script.text
    assert style.status_code == 200


def test_provider_cards_show_state_incidents_components_and_source_health(tmp_path, feeds):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    feeds.set("/open.rss", statuspage_rss("inc1", [(now - timedelta(minutes=20), "Investigating", "Errors on login")]))
    feeds.set("/calm.rss", statuspage_rss("old1", [(now - timedelta(days=3), "Resolved", "Fine")]))
    config = make_config(tmp_path, [("Calm", feeds.url("/calm.rss")), ("Open", feeds.url("/open.rss")),
                                    ("Down", "http://127.0.0.1:9/down.rss")], interval=0.3)
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: cards(monitor)["Down"]["state"] == "unknown" and cards(monitor)["Open"]["incidents"])
        first = cards(monitor)
        post(monitor, "Hooked", hook("w1", components=["API", "Chat"]))
        second = cards(monitor)
        post(monitor, "Hooked", hook("w1", "Resolved"))
        third = cards(monitor)
    assert first["_order"] == ["Open", "Down", "Calm"]  # open incidents first, then the unreachable
    open_card = first["Open"]
    assert open_card["state"] == "incident" and open_card["page_url"] == f"http://127.0.0.1:{feeds.port}"
    incident = open_card["incidents"][0]
    assert incident["title"] == "Incident inc1" and incident["status"] == "Investigating"
    assert incident["since"].startswith((now - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M"))
    assert open_card["sources"][0]["last_success_at"] and open_card["sources"][0]["consecutive_errors"] == 0
    assert first["Calm"]["state"] == "operational" and first["Calm"]["incidents"] == []
    assert first["Down"]["sources"][0]["last_error"] and first["Down"]["sources"][0]["last_success_at"] is None
    assert second["_order"][:2] == ["Hooked", "Open"] and second["Hooked"]["components"] == ["API", "Chat"]
    assert third["Hooked"]["state"] == "operational"


def test_open_incidents_are_shown_again_after_a_restart(tmp_path):
    config = make_config(tmp_path)
    with RunningMonitor(config) as monitor:
        post(monitor, "Hooked", hook("r1"))
        post(monitor, "Other", hook("r2"))
        post(monitor, "Other", hook("r2", "Resolved"))
    with RunningMonitor(config) as monitor:
        after = cards(monitor)
    assert after["Hooked"]["state"] == "incident" and after["Hooked"]["incidents"][0]["title"] == "Incident r1"
    assert after["Other"]["state"] == "operational"


def test_stream_delivers_new_events_live_with_their_ids(tmp_path):
    with RunningMonitor(make_config(tmp_path)) as monitor:
        reader = StreamReader(monitor.base + "/events/stream")
        try:
            time.sleep(0.2)
            started = time.monotonic()
            post(monitor, "Live", hook("s1"))
            frames = reader.wait_for(1, timeout=1.0)
            elapsed = time.monotonic() - started
            post(monitor, "Live", hook("s1"))  # a duplicate: nothing streamed
            post(monitor, "Live", hook("s1", "Resolved"))
            frames = reader.wait_for(2)
            time.sleep(0.3)
        finally:
            reader.close()
        stored = httpx.get(monitor.base + "/events").json()["events"]
    assert elapsed < 1.0
    assert [f["status"] for f in reader.frames] == ["Investigating", "Resolved"]
    assert reader.ids == [f["id"] for f in frames] == sorted(e["id"] for e in stored)


def test_stream_resumes_after_the_last_event_id_without_gaps_or_repeats(tmp_path):
    with RunningMonitor(make_config(tmp_path)) as monitor:
        for n in range(3):
            post(monitor, "P", hook(f"a{n}"))
        ids = sorted(e["id"] for e in httpx.get(monitor.base + "/events").json()["events"])
        resumed = StreamReader(monitor.base + "/events/stream", headers={"Last-Event-ID": str(ids[0])})
        by_query = StreamReader(monitor.base + f"/events/stream?after={ids[1]}")
        everything = StreamReader(monitor.base + "/events/stream", headers={"Last-Event-ID": "0"})
        try:
            resumed.wait_for(2)
            by_query.wait_for(1)
            post(monitor, "P", hook("later"))
            resumed.wait_for(3)
            by_query.wait_for(2)
            everything.wait_for(4)
            time.sleep(0.3)
        finally:
            for reader in (resumed, by_query, everything):
                reader.close()
    assert resumed.ids == ids[1:] + [ids[-1] + 1]
    assert by_query.ids == ids[2:] + [ids[-1] + 1]
    assert [f["title"] for f in everything.frames] == ["Incident a0", "Incident a1", "Incident a2", "Incident later"]


def test_shutdown_ends_open_streams_at_once(tmp_path):
    monitor = RunningMonitor(make_config(tmp_path)).__enter__()
    reader = StreamReader(monitor.base + "/events/stream")
    started = time.monotonic()
    monitor.stop()
    reader.close()
    assert time.monotonic() - started < 2.5  # not the 3-second grace of a hung connection


def test_an_event_committed_while_a_stream_catches_up_is_sent_once(tmp_path):
    """The race no timing can provoke on demand: an event is committed and published after
    the stream subscribed but before its read of the store returns. It must come once."""
    import asyncio

    from status_monitor.model import Event
    from status_monitor.outputs.dashboard import EventStream
    from status_monitor.storage import open_store

    def event(key: str) -> Event:
        return Event("P", f"Incident {key}", "Investigating", "m", key, None, "webhook", (key,),
                     received_at=datetime.now(timezone.utc))

    async def scenario() -> list[int]:
        store = open_store(str(tmp_path / "state.db"))
        await store.open()
        stream = EventStream(store)
        await store.add_event(event("a"))
        read_store = store.events_after

        async def racing(after: int, limit: int):
            late = event("b")
            stream.publish(await store.add_event(late), late)
            return await read_store(after, limit)

        store.events_after = racing
        ids = []
        async for frame in stream.frames(stream.subscribe(), 0):
            if frame.startswith("id: "):
                ids.append(int(frame.split()[1]))
            if len(ids) == 2:
                stream.close()
        await store.close()
        return ids

    assert asyncio.run(scenario()) == [1, 2]
