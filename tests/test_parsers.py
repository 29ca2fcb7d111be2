"""The pure feed parsers, on real provider feeds (FORMATS.md part a and b)."""

from __future__ import annotations

import pytest
from conftest import AWS_NEW_ITEM, FIXTURES, feed
from hypothesis import given
from hypothesis import strategies as st

from status_monitor.sources import kinds, readers
from status_monitor.sources import text as text_module
from status_monitor.sources.kinds import parse_feed
from status_monitor.sources.readers import FeedError

GITHUB_DAY1 = "statuspage_github_history_snapshot_2026-07-09.atom"
GITHUB_DAY2 = "statuspage_github_history_snapshot_2026-07-10.atom"
GITHUB_DAY3 = "statuspage_github_history_snapshot_2026-07-11.atom"
FEEDS = sorted(p.name for p in (FIXTURES / "feeds").iterdir() if p.suffix in (".rss", ".atom"))


@pytest.fixture(autouse=True, params=["auto", "feedparser"])
def reader(request, monkeypatch):
    """Every test runs with each reader ("auto": the fast one, feedparser where it steps
    aside): the results must not depend on which one ran. A reader asked for by name is kept."""
    original = kinds.read_document

    def read(body, reader="auto", *args):
        return original(body, request.param if reader == "auto" else reader, *args)

    monkeypatch.setattr(kinds, "read_document", read)
    return request.param


def test_the_reader_fixture_switches_readers(reader):
    """The fixture above must change which reader runs, or every test runs one reader twice."""
    body = b'<rss version="2.0"><channel><title>t</title><item><title>a</title><link>https://x.test/</link></item></channel></rss>'
    expected = "rss20" if reader == "feedparser" else None
    seen = []
    original = readers._read_with_feedparser
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "_read_with_feedparser", lambda b: seen.append("rss20") or original(b))
        parse_feed(body, "P", "u")
    assert (seen[0] if seen else None) == expected


def parse(name: str, kind: str | None = None, provider: str = "P"):
    return parse_feed(feed(name), provider, "https://example.test/feed", kind)


def keys(parsed) -> list[str]:
    return [u.key for incident in parsed.incidents for u in incident.updates]


def test_statuspage_rss_and_atom_name_updates_alike():
    rss, atom = parse("statuspage_github_history.rss"), parse("statuspage_github_history.atom")
    assert rss.kind == atom.kind == "statuspage"
    assert len(rss.incidents) == 25
    assert keys(rss) == keys(atom)


def test_statuspage_blocks_are_oldest_first_and_update_label_keeps_status():
    parsed = parse("statuspage_github_history.rss")
    incident = parsed.incidents[0]
    assert incident.incident_id == "f314nlctbfs5"
    assert [u.status for u in incident.updates] == ["Investigating", "Investigating", "Investigating", "Resolved"]
    assert "Update" not in {u.status for i in parsed.incidents for u in i.updates}
    first = incident.updates[0]
    assert first.message == "We are investigating reports of degraded performance for Actions"
    assert first.occurred_at.isoformat() == "2026-02-03T16:10:00+00:00"
    assert first.title == "Delays in UI updates for Actions Runs"
    assert first.url == "https://www.githubstatus.com/incidents/f314nlctbfs5"
    assert "<" not in incident.updates[-1].message
    assert incident.open is False


def test_statuspage_new_blocks_between_snapshots_and_postmortem_edit():
    day1, day2, day3 = parse(GITHUB_DAY1), parse(GITHUB_DAY2), parse(GITHUB_DAY3)
    new = [u for i in day2.incidents for u in i.updates if u.key not in set(keys(day1))]
    assert len(new) == 11
    assert {u.incident_id for u in new} == {"cstx3v63mklm"}
    assert new == sorted(new, key=lambda u: u.occurred_at)
    assert new[-1].status == "Resolved"
    # Day 3 only rewrote the text of the resolved incident: nothing new.
    assert set(keys(day3)) <= set(keys(day2))
    open_day1 = [i for i in day1.incidents if i.open]
    assert [i.incident_id for i in open_day1] == ["cstx3v63mklm"]
    assert open_day1[0].updates[-1].status == "Investigating"


CHANGES = {  # a feed, and the same feed one poll later
    "statuspage, new blocks": (GITHUB_DAY1, GITHUB_DAY2),
    "statuspage, text edited": (GITHUB_DAY2, GITHUB_DAY3),
    "incident.io, new status": (
        "incidentio_openai_feed_trimmed.rss",
        lambda body: body.replace(b"Status: Monitoring", b"Status: Resolved"),
    ),
    "per-update, new entry": ("aws_all.rss", lambda body: body.replace(b"<item>", AWS_NEW_ITEM + b"<item>", 1)),
}


@pytest.mark.parametrize("change", CHANGES)
def test_entries_unchanged_since_the_last_parse_are_skipped_and_no_update_is_missed(change):
    before, after = CHANGES[change]
    body = feed(before)
    later = after(body) if callable(after) else feed(after)
    last = parse_feed(body, "P", "https://example.test/feed")
    full = parse_feed(later, "P", "https://example.test/feed")
    partial = parse_feed(later, "P", "https://example.test/feed", unchanged=last.fingerprints)
    updates = [u for i in full.incidents for u in i.updates]
    assert all(u in updates for i in partial.incidents for u in i.updates)
    assert {u.key for u in updates} - set(keys(last)) <= set(keys(partial))
    assert 0 < len(keys(partial)) < len(updates)
    assert partial.fingerprints == full.fingerprints and partial.entries == full.entries
    assert parse_feed(later, "P", "https://example.test/feed", unchanged=full.fingerprints).incidents == []


def test_an_entry_read_as_another_kind_of_feed_is_not_skipped():
    body = feed("statuspage_github_history.rss")
    last = parse_feed(body, "P", "https://example.test/feed", "per-update")
    assert len(keys(parse_feed(body, "P", "https://example.test/feed", "statuspage", unchanged=last.fingerprints))) == 128


def test_statuspage_markup_spellings_and_other_pages():
    for name, incidents in [("statuspage_claude_history.atom", 25), ("statuspage_moonpay_history.rss", 25),
                            ("statuspage_streamyard_history.rss", 17)]:
        parsed = parse(name)
        assert parsed.kind == "statuspage"
        assert len(parsed.incidents) == incidents
        assert all(i.updates for i in parsed.incidents)
        assert all(u.occurred_at is not None for i in parsed.incidents for u in i.updates)


def test_scheduled_maintenance_header_is_not_an_update():
    parsed = parse("statuspage_github_history_snapshot_2025-05-23.atom")
    maintenance = parsed.incidents[0]
    assert maintenance.updates[0].title == "Codespaces Scheduled Maintenance"
    assert all("THIS IS A SCHEDULED EVENT" not in u.message for u in maintenance.updates)
    assert maintenance.updates[0].status == "Scheduled"
    assert maintenance.open is False


def test_title_edit_alone_changes_no_key():
    body = feed("statuspage_github_history.rss").replace(
        b"<title>Delays in UI updates for Actions Runs</title>", b"<title>Renamed incident</title>"
    )
    assert keys(parse_feed(body, "P", "u")) == keys(parse("statuspage_github_history.rss"))


def test_incidentio_latest_state_components_and_ids():
    parsed = parse("incidentio_openai_feed_trimmed.rss")
    assert parsed.kind == "incidentio"
    sso = parsed.incidents[0]
    assert sso.incident_id == "01K80CBJD5Z64DF82KGT3K3QE0"
    update = sso.updates[0]
    assert update.status == "Monitoring"
    assert update.components == ["Login"]
    assert update.message == "We seeing recovery on impacted services, and we are monitoring."
    assert update.url == "https://status.openai.com/incidents/01K80CBJD5Z64DF82KGT3K3QE0"
    assert sso.open is True
    assert [i.open for i in parsed.incidents[1:]] == [False, False]
    atom = parse("incidentio_openai_feed_trimmed.atom")
    assert atom.incidents[0].updates[0].components == []


def test_incidentio_changed_status_is_a_new_key():
    body = feed("incidentio_openai_feed_trimmed.rss")
    changed = body.replace(b"<b>Status: Monitoring</b>", b"<b>Status: Resolved</b>", 2)
    before, after = parse_feed(body, "P", "u"), parse_feed(changed, "P", "u")
    assert before.incidents[0].updates[0].key != after.incidents[0].updates[0].key
    assert keys(before)[1:] == keys(after)[1:]


def test_aws_per_update_statuses_and_grouping():
    parsed = parse("aws_all.rss")
    assert parsed.kind == "per-update"
    updates = [u for i in parsed.incidents for u in i.updates]
    assert len(updates) == 50 and len(set(u.key for u in updates)) == 50
    packet = next(i for i in parsed.incidents if i.incident_id == "directconnect-eu-central-1")
    assert packet.updates[-1].status == "Resolved"
    assert packet.updates[-1].title == "Increased Packet loss"
    assert packet.updates[0].status == "Service impact"
    assert packet.open is False
    assert parse("aws_connect-eu-west-2_empty.rss").incidents == []


def test_gcp_incident_before_the_dot_and_prefixes():
    parsed = parse("gcp_feed_two_updates_trimmed.atom")
    assert [i.incident_id for i in parsed.incidents] == ["ow5i3PPK96RduMcb1SsW"]
    assert [u.status for u in parsed.incidents[0].updates] == ["Update", "Resolved"]
    escaped = parse("gcp_feed_2022-04-01_escaped.atom").incidents[0].updates[0]
    assert "<" not in escaped.message and escaped.message.startswith("Incident began at 2022-03-31 08:30")


def test_azure_item_rewritten_in_place_is_new():
    west = parse("azure_status_feed_2026-07-23_incident.rss").incidents[0].updates[0]
    east = parse("azure_status_feed_2026-07-23_incident_eus.rss").incidents[0].updates[0]
    assert west.incident_id == east.incident_id
    assert west.key != east.key
    assert "West US" in west.components
    assert parse("azure_status_feed_empty.rss").incidents == []


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<html><head><title>Error</title></head><body>Service unavailable</body></html>", "not an RSS or Atom"),
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (feed("statuspage_github_history.atom")[:20000], "malformed"),
        (b"<rss><channel><title>x</title><item><title>a</titl></item></channel></rss>", "malformed"),
        (b'{"status": "ok"}', "malformed"),
    ],
)
def test_bad_documents_are_errors_not_empty_feeds(body, message):
    with pytest.raises(FeedError, match=message):
        parse_feed(body, "P", "u")


def test_empty_statuspage_feed_is_an_error():
    empty = b'<?xml version="1.0"?><rss version="2.0"><channel><title>X Status</title></channel></rss>'
    assert parse_feed(empty, "P", "u").incidents == []
    with pytest.raises(FeedError, match="Statuspage"):
        parse_feed(empty, "P", "u", kind="statuspage")


@given(st.text(alphabet=st.sampled_from("ab <>/p&;\n\r\t\x0b\x1c\x85\u2028 "), max_size=30))
def test_html_to_text_shortcut_matches_the_line_by_line_rule(text):
    """Text with a line break only at its ends takes a shortcut; it must give what the
    line-by-line rule gives (keys hash this text: a difference would announce old updates)."""
    cleaned = text_module.html_to_text(text)
    if "<" in text:
        text = text_module._TAG.sub("", text_module._LINE_BREAK.sub("\n", text))
    if "&" in text:
        text = text_module.html.unescape(text)
    if "\n" not in text:
        assert cleaned == " ".join(text.split())
    else:
        assert cleaned == "\n".join(line for line in (" ".join(part.split()) for part in text.splitlines()) if line)


def _laughs(levels: int = 10) -> str:
    declarations = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)
    )
    return f"<!DOCTYPE rss [{declarations}]>", f"&lol{levels - 1};"


def _item_feed(doctype: str, text: str, root: str = "rss") -> bytes:
    if root == "feed":
        return (f'<?xml version="1.0"?>{doctype}<feed xmlns="http://www.w3.org/2005/Atom"><title>{text}</title>'
                f"<entry><id>1</id><title>{text}</title><updated>2026-01-01T00:00:00Z</updated></entry></feed>").encode()
    return (f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>T</title><item><title>{text}</title>'
            f"<guid>1</guid><description>{text}</description></item></channel></rss>").encode()


ENTITY_ATTACKS = {
    "billion laughs": _item_feed(*_laughs()),
    "billion laughs, Atom": _item_feed(*_laughs(), root="feed"),
    "quadratic blowup": _item_feed(f'<!DOCTYPE rss [<!ENTITY a "{"A" * 50_000}">]>', "&a;" * 50_000),
    "external file": _item_feed('<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
    "external URL": _item_feed('<!DOCTYPE rss [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>', "&x;"),
    "parameter entity": _item_feed('<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>', "x"),
    "not an RSS root": f'<?xml version="1.0"?>{_laughs()[0]}<lolz>{_laughs()[1]}</lolz>'.encode(),
}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("attack", ENTITY_ATTACKS)
def test_entity_declarations_are_refused_by_both_readers_in_any_encoding(attack, encoding):
    body = ENTITY_ATTACKS[attack]
    if encoding != "utf-8":
        body = body.decode().replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{encoding}"?>').encode(encoding)
    with pytest.raises(FeedError, match="^XML entity expansion refused"):
        parse_feed(body, "P", "u")


def test_a_doctype_without_entities_is_still_read():
    netscape = b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">'
    body = _item_feed(netscape.decode(), "Elevated errors &amp; latency")
    assert [u.title for i in parse_feed(body, "P", "u").incidents for u in i.updates] == ["Elevated errors & latency"]
