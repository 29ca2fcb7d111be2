"""An update's identity survives what page owners really do: edits of its displayed time or
text and deletions of other updates announce nothing, whichever source (feed, API, webhook)
brings the copy; genuinely new updates are announced once each, oldest first. Through the
real handler and a real SQLite state."""

from __future__ import annotations

import asyncio
import html
import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import Captured, feed, fixture_bytes

from event_handler import EventHandler
from status_monitor.model import Event
from status_monitor.sources import apis
from status_monitor.sources.kinds import parse_feed
from status_monitor.storage import open_store
from status_monitor.webhooks.payloads import generic_events, incidentio_events

GITHUB_HISTORY = [  # real captures of githubstatus.com/history.atom, oldest first
    "statuspage_github_history_snapshot_2025-05-23.atom",
    "statuspage_github_history.atom",  # 2026-02-04
    "statuspage_github_history_snapshot_2026-07-09.atom",
    "statuspage_github_history_snapshot_2026-07-10.atom",
    "statuspage_github_history_snapshot_2026-07-11.atom",
]


class Monitor:
    """The real event handler on a real SQLite state; `feed()`, `api()` and `webhook()`
    hand it what each source brings and return what it announced."""

    def __init__(self, path: str) -> None:
        self.output = Captured()
        self.store = open_store(path)
        self.handler = EventHandler(self.store, [self.output])

    async def open(self) -> "Monitor":
        await self.store.open()
        await self.handler.load()
        return self

    async def incidents(self, incidents, first_poll: bool = False) -> list[Event]:
        before = len(self.output.events)
        await self.handler.handle_feed(incidents, first_poll=first_poll, replay=False)
        return self.output.events[before:]

    async def feed(self, body: bytes, first_poll: bool = False) -> list[Event]:
        return await self.incidents(parse_feed(body, "GitHub", "https://www.githubstatus.com/history.atom").incidents,
                                    first_poll)

    async def api(self, document: dict) -> list[Event]:
        return await self.incidents(apis.statuspage_incidents(document, "GitHub", "https://www.githubstatus.com/api/v2/incidents.json"))

    async def events(self, events: list[Event], delivery: str | None = None) -> list[Event]:
        before = len(self.output.events)
        await self.handler.handle(events, delivery_id=delivery)
        return self.output.events[before:]


def scenario(tmp_path, steps):
    async def run():
        monitor = await Monitor(str(tmp_path / "state.db")).open()
        try:
            return await steps(monitor)
        finally:
            await monitor.store.close()

    return asyncio.run(run())


# --- Statuspage: a feed of one incident, and its API, as GitHub's incident x696x0g4t85l ---

CODE = "x696x0g4t85l"
TEXTS = {
    "a": "We are investigating reports of degraded performance for Copilot",
    "b": "We are seeing elevated error rates for Copilot Chat in VS Code and are working on mitigation.",
    "c": "The mitigation is rolled out and error rates are recovering.",
    "d": "This incident has been resolved. Thank you for your patience.",
    "e": "Error rates rose again for a subset of users; we are investigating.",
}
# Incident x696x0g4t85l on 2025-12-18 (UTC), as its feed showed it, and a day later when the
# owner had moved the first two updates' displayed times ten minutes earlier.
DAY1 = [("Investigating", "16:43", "a"), ("Update", "16:45", "b"), ("Update", "17:29", "c"), ("Resolved", "17:41", "d")]
DAY2 = [("Investigating", "16:33", "a"), ("Update", "16:35", "b"), ("Update", "17:29", "c"), ("Resolved", "17:41", "d")]


def statuspage_feed(blocks, code: str = CODE) -> bytes:
    """A Statuspage history.atom with one incident, its blocks newest first (FORMATS.md A1)."""
    content = "".join(
        f"<p><small>Dec <var data-var='date'>18</var>, <var data-var='time'>{at}</var> UTC</small><br>"
        f"<strong>{label}</strong> - {html.escape(TEXTS.get(text, text))}</p>"
        for label, at, text in reversed(blocks)
    )
    last = blocks[-1][1]
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xml:lang="en-US" xmlns="http://www.w3.org/2005/Atom">'
        "<id>tag:www.githubstatus.com,2005:/history</id><title>GitHub Status - Incident History</title>"
        "<updated>2025-12-19T10:00:00Z</updated><entry><id>tag:www.githubstatus.com,2005:Incident/99</id>"
        f"<published>2025-12-18T{last}:00Z</published><updated>2025-12-19T09:00:00Z</updated>"
        f'<link rel="alternate" type="text/html" href="https://www.githubstatus.com/incidents/{code}"/>'
        f'<title>Disruption with some GitHub services</title><content type="html">{html.escape(content)}</content>'
        "</entry></feed>"
    ).encode()


def statuspage_api(blocks, created=None, code: str = CODE) -> dict:
    """The same incident from /api/v2/incidents.json: `created` keeps each update's
    created_at (an edit moves display_at only)."""
    status = {"Investigating": "investigating", "Resolved": "resolved"}
    updates, current = [], "investigating"
    for n, (label, at, text) in enumerate(blocks):
        current = status.get(label, current)
        made = (created or blocks)[n][1]
        updates.append({"id": f"upd{n}", "status": current, "body": TEXTS.get(text, text),
                        "created_at": f"2025-12-18T{made}:05.000Z", "display_at": f"2025-12-18T{at}:00.000Z"})
    return {"incidents": [{"id": code, "name": "Disruption with some GitHub services", "status": current,
                           "shortlink": "https://stspg.io/x", "incident_updates": updates[::-1]}]}


def said(events) -> list[str]:
    return [event.message for event in events]


def test_edited_display_times_announce_nothing_from_the_feed_alone(tmp_path):
    async def steps(monitor):
        first = await monitor.feed(statuspage_feed(DAY1))
        assert said(first) == [TEXTS[t] for _, _, t in DAY1]
        assert await monitor.feed(statuspage_feed(DAY2)) == []
        assert await monitor.feed(statuspage_feed(DAY1)) == []  # and moved back

    scenario(tmp_path, steps)


def test_edited_times_announce_nothing_when_the_api_brought_the_edit_first(tmp_path):
    async def steps(monitor):
        assert len(await monitor.api(statuspage_api(DAY1))) == 4
        assert await monitor.api(statuspage_api(DAY2, created=DAY1)) == []
        assert await monitor.feed(statuspage_feed(DAY2)) == []

    scenario(tmp_path, steps)


def test_an_update_known_by_one_key_has_its_other_keys_recorded(tmp_path):
    """The API brings the time edit (known by its id); the feed then shows that time with
    the text edited as well: known only by the time key the API's copy carried."""
    edited = [("Investigating", "16:33", "a"), ("Update", "16:35", "b, edited: Copilot Chat only"), *DAY1[2:]]

    async def steps(monitor):
        assert len(await monitor.api(statuspage_api(DAY1))) == 4
        assert await monitor.api(statuspage_api(DAY2, created=DAY1)) == []
        assert await monitor.feed(statuspage_feed(edited)) == []

    scenario(tmp_path, steps)
    assert_fails_without_recording_every_key(tmp_path, edited)


def assert_fails_without_recording_every_key(tmp_path, edited):
    """The same run against a handler that records only an announced update's keys."""
    async def steps(monitor):
        async def forgetful_add_keys(keys, delivery_id=None):
            if delivery_id is not None:
                await monitor.store.add_delivery(delivery_id)

        await monitor.api(statuspage_api(DAY1))
        monitor.store.add_keys = forgetful_add_keys
        seen_update = monitor.handler._seen.update
        monitor.handler._seen.update = lambda keys: None
        await monitor.api(statuspage_api(DAY2, created=DAY1))
        monitor.handler._seen.update = seen_update
        return await monitor.feed(statuspage_feed(edited))

    (tmp_path / "forgetful").mkdir()
    assert len(scenario(tmp_path / "forgetful", steps)) == 1


def test_text_edits_announce_nothing(tmp_path):
    edited = [*DAY1[:2], ("Update", "17:29", "The mitigation is rolled out; error rates recovered by 17:35."), DAY1[3]]

    async def steps(monitor):
        await monitor.feed(statuspage_feed(DAY1))
        assert await monitor.feed(statuspage_feed(edited)) == []
        assert await monitor.api(statuspage_api(edited)) == []

    scenario(tmp_path, steps)


def test_deleting_an_update_and_adding_one_announces_only_the_new_one(tmp_path):
    three = DAY1[:3]
    after = [three[0], three[2], ("Update", "17:35", "e")]

    async def steps(monitor):
        await monitor.feed(statuspage_feed(three))
        assert said(await monitor.feed(statuspage_feed(after))) == [TEXTS["e"]]
        assert await monitor.api(statuspage_api(after)) == []

    scenario(tmp_path, steps)


def test_several_new_updates_between_polls_are_announced_once_each_oldest_first(tmp_path):
    """Including two in one minute and a text repeated word for word."""
    later = [*DAY1, ("Investigating", "17:50", "e"), ("Update", "17:50", "c"), ("Update", "18:02", "e"), ("Resolved", "18:30", "d")]

    async def steps(monitor):
        await monitor.feed(statuspage_feed(DAY1[:1]))
        new = await monitor.feed(statuspage_feed(later))
        assert said(new) == [TEXTS[t] for _, _, t in later[1:]]
        assert [e.occurred_at for e in new] == sorted(e.occurred_at for e in new)
        assert await monitor.api(statuspage_api(later)) == []
        assert await monitor.feed(statuspage_feed(later)) == []

    scenario(tmp_path, steps)


def test_feed_api_and_webhook_copies_of_one_update_match(tmp_path):
    async def steps(monitor):
        await monitor.feed(statuspage_feed(DAY1[:2]))
        hook = {"incident": statuspage_api(DAY1[:3])["incidents"][0]}
        assert said(await monitor.events(generic_events("GitHub", hook))) == [TEXTS["c"]]
        assert await monitor.api(statuspage_api(DAY1[:3])) == []
        assert said(await monitor.feed(statuspage_feed(DAY1))) == [TEXTS["d"]]

    scenario(tmp_path, steps)


def test_replaying_githubs_real_history_announces_each_new_update_once(tmp_path):
    """Five captures of history.atom from May 2025 to July 2026, in order: an update is
    announced when neither its displayed time nor its text was shown before in its incident;
    nothing twice."""
    async def steps(monitor):
        shown: dict[str, set] = {}
        announced = []
        for n, name in enumerate(GITHUB_HISTORY):
            parsed = parse_feed(feed(name), "GitHub", "https://www.githubstatus.com/history.atom")
            expected = [u for i in parsed.incidents for u in i.updates
                        if n and (u.occurred_at, None) not in shown.get(i.incident_id, set())
                        and (None, u.message) not in shown.get(i.incident_id, set())]
            got = await monitor.incidents(parsed.incidents, first_poll=n == 0)
            if n:
                assert [(e.incident_id, e.message) for e in got] == [
                    (e.incident_id, e.message) for e in sorted(expected, key=lambda e: e.occurred_at)]
            announced += got
            for incident in parsed.incidents:
                for update in incident.updates:
                    shown.setdefault(incident.incident_id, set()).update({(update.occurred_at, None), (None, update.message)})
        assert len({e.key for e in announced}) == len(announced)
        return announced

    announced = scenario(tmp_path, steps)
    new_in_july = [e for e in announced if e.incident_id == "cstx3v63mklm"]
    assert len(new_in_july) >= 11 and new_in_july[-1].status == "Resolved"


def test_rss_and_atom_of_one_moment_are_one_set_of_updates(tmp_path):
    async def steps(monitor):
        await monitor.feed(feed("statuspage_github_history.atom"), first_poll=True)
        assert await monitor.feed(feed("statuspage_github_history.rss")) == []
        assert await monitor.api(json.loads(feed("statuspage_github_incidents.json"))) != []  # a later moment

    scenario(tmp_path, steps)


# --- incident.io: a status taken again, with the same text, is a new update ---

def _incidentio_delivery(status: str, category: str, minutes: int, message: str = "We are looking into it.") -> list[Event]:
    body = json.loads(fixture_bytes("webhooks/incidentio_openapi_example_public_incident__incident_status_updated_v2.json"))
    event = body["public_incident.incident_status_updated_v2"]
    event["new_status"] = {"category": category, "name": status, "id": status.lower()}
    event["message"] = message
    event["incident"]["updated_at"] = (datetime(2026, 11, 30, 10, tzinfo=timezone.utc) + timedelta(minutes=minutes)).isoformat()
    return incidentio_events(body, f"msg_{status}_{minutes}")


def test_incidentio_webhook_status_taken_again_is_announced(tmp_path):
    async def steps(monitor):
        said = []
        for status, category, minutes in [("Investigating", "live", 0), ("Monitoring", "live", 10),
                                          ("Investigating", "live", 20), ("Resolved", "closed", 30)]:
            said += await monitor.events(_incidentio_delivery(status, category, minutes))
            if status == "Investigating" and minutes == 20:
                assert [o.latest.status for o in monitor.handler.open_incident_list()] == ["Investigating"]
        assert [e.status for e in said] == ["Investigating", "Monitoring", "Investigating", "Resolved"]
        assert monitor.handler.open_incident_list() == []
        # The same update delivered again (a retry with a new delivery id) is a duplicate.
        assert await monitor.events(_incidentio_delivery("Investigating", "live", 20)) == []

    scenario(tmp_path, steps)


def test_incidentio_api_status_taken_again_is_announced(tmp_path):
    updates = [{"id": f"u{n}", "status": s, "body": "We are looking into it.", "created_at": f"2026-11-30T10:{n}0:00Z"}
               for n, s in enumerate(["investigating", "monitoring", "investigating", "resolved"])]
    document = {"incidents": [{"id": "01K80CBJD5Z64DF82KGT3K3QE0", "name": "Login", "status": "resolved",
                               "incident_updates": updates[::-1]}]}

    async def steps(monitor):
        incidents = apis.incidentio_incidents(document, "OpenAI", "https://status.openai.com/api/v2/incidents.json")
        assert [e.status for e in await monitor.incidents(incidents)] == ["Investigating", "Monitoring", "Investigating", "Resolved"]

    scenario(tmp_path, steps)


def test_incidentio_feed_status_taken_again_is_announced(tmp_path):
    body = feed("incidentio_openai_feed_trimmed.rss")
    pub = body[body.index(b"<pubDate>"):body.index(b"</pubDate>") + 10]

    def state(status: str, minute: int) -> bytes:
        changed = body.replace(b"Status: Monitoring", f"Status: {status}".encode())
        return changed.replace(pub, f"<pubDate>Mon, 30 Nov 2026 10:{minute:02d}:00 GMT</pubDate>".encode(), 1)

    async def steps(monitor):
        said = []
        for status, minute in [("Investigating", 0), ("Monitoring", 10), ("Investigating", 20), ("Resolved", 30)]:
            incidents = parse_feed(state(status, minute), "OpenAI", "https://status.openai.com/feed.rss").incidents
            said += [e for e in await monitor.incidents(incidents[:1])]
        assert [e.status for e in said] == ["Investigating", "Monitoring", "Investigating", "Resolved"]

    scenario(tmp_path, steps)


# --- per-update feeds: ids that change form ---

@pytest.mark.parametrize("change", ["http to https", "https to http"])
def test_guids_moving_to_https_announce_nothing_again(tmp_path, change):
    https = feed("aws_all.rss")
    http = https.replace(b"<guid isPermaLink=\"false\">https://", b"<guid isPermaLink=\"false\">http://")
    assert http != https
    before, after = (http, https) if change == "http to https" else (https, http)

    async def steps(monitor):
        first = parse_feed(before, "AWS", "https://status.aws.amazon.com/rss/all.rss").incidents
        assert len(await monitor.incidents(first)) == 50
        again = parse_feed(after, "AWS", "https://status.aws.amazon.com/rss/all.rss").incidents
        assert await monitor.incidents(again) == []

    scenario(tmp_path, steps)


# --- what identity does not survive (README, Limits), and the upgrade ---

def test_time_and_text_both_edited_between_two_polls_is_announced_again(tmp_path):
    both = [*DAY1[:2], ("Update", "17:20", "The mitigation is rolled out."), DAY1[3]]

    async def steps(monitor):
        await monitor.feed(statuspage_feed(DAY1))
        assert said(await monitor.feed(statuspage_feed(both))) == ["The mitigation is rolled out."]

    scenario(tmp_path, steps)


def test_a_state_written_by_the_previous_version_re_announces_nothing(tmp_path):
    """The previous version recorded one key a block: (ordinal, label, displayed time)."""
    async def steps(monitor):
        legacy = [u.keys[-1] for i in parse_feed(statuspage_feed(DAY1), "GitHub", "u").incidents for u in i.updates]
        assert all(key.startswith(f"statuspage:{CODE}:") for key in legacy)
        await monitor.store.add_keys(legacy)
        await monitor.store.close()
        upgraded = await Monitor(str(tmp_path / "state.db")).open()
        assert await upgraded.feed(statuspage_feed(DAY1)) == []
        assert await upgraded.feed(statuspage_feed(DAY2)) == []
        monitor.store = upgraded.store

    scenario(tmp_path, steps)
