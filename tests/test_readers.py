"""The two feed readers agree: on every fixture, on generated feeds and on the constructs
real feeds use, the fast reader gives exactly feedparser's entries or steps aside. And what
both read is what the document means: characters (RFC 7303), times, links and text."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from xml.sax.saxutils import escape

import pytest
from conftest import FIXTURES, feed, fixture_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from status_monitor.sources import readers
from status_monitor.sources.kinds import parse_feed, parse_source
from status_monitor.sources.readers import Declined, FeedError, read_document
from status_monitor.sources.text import html_to_text
from status_monitor.webhooks.payloads import PayloadError, generic_events, incidentio_events

FEEDS = sorted(p.name for p in (FIXTURES / "feeds").iterdir() if p.suffix in (".rss", ".atom"))
# Google Cloud's summaries hold unescaped markup: the fast reader leaves them to feedparser.
FAST_DECLINES = {"gcp_feed_trimmed.atom", "gcp_feed_two_updates_trimmed.atom"}
DECLINED, ERROR = "declined", "error"


def read(body: bytes, reader: str, **options) -> object:
    """What a reader makes of a document, as everything the parsers use: entries' ids,
    links, titles, text, dates and tags, and the feed's title and generator."""
    try:
        document = read_document(body, reader, **options)
    except Declined:
        return DECLINED
    except FeedError:
        return ERROR
    entries = [(e.id, e.link, e.title, html_to_text(e.content), e.published, e.tags) for e in document.entries]
    return document.title, document.generator, entries


def assert_readers_agree(body: bytes, **options) -> object:
    """The fast reader gives feedparser's result, or declines. Returns feedparser's."""
    tolerant = read(body, "feedparser", **options)
    fast = read(body, "fast", **options)
    assert fast == DECLINED or fast == tolerant, f"fast: {fast!r}\nfeedparser: {tolerant!r}"
    return tolerant


@pytest.mark.parametrize("name", FEEDS)
def test_both_readers_give_identical_entries_and_events_on_every_fixture(name):
    assert_readers_agree(feed(name))
    tolerant = parse_feed(feed(name), "P", "https://example.test/feed", reader="feedparser")
    if name in FAST_DECLINES:
        with pytest.raises(Declined):
            read_document(feed(name), "fast")
        return
    fast = parse_feed(feed(name), "P", "https://example.test/feed", reader="fast")  # it must not decline
    assert fast.kind == tolerant.kind and fast.entries == tolerant.entries and fast.title == tolerant.title
    assert fast.incidents == tolerant.incidents


def test_the_differential_check_fails_when_a_reader_drops_a_field(monkeypatch):
    """A test of the test: a fast reader that loses an entry's categories, or its link,
    is caught on the fixtures."""
    original = readers._rss_entry

    def without_tags(item):
        entry = original(item)
        entry.tags = []
        return entry

    monkeypatch.setattr(readers, "_rss_entry", without_tags)
    with pytest.raises(AssertionError):
        assert_readers_agree(feed("azure_status_feed_2026-07-23_incident.rss"))
    monkeypatch.setattr(readers, "_rss_entry", original)
    assert_readers_agree(feed("azure_status_feed_2026-07-23_incident.rss"))

    original_atom = readers._atom_entry

    def without_link(entry):
        read = original_atom(entry)
        read.link = ""
        return read

    monkeypatch.setattr(readers, "_atom_entry", without_link)
    with pytest.raises(AssertionError):
        assert_readers_agree(feed("statuspage_github_history.atom"))


def rss(items: str, channel: str = "<title>Status</title>", head: str = "", namespaces: str = "") -> bytes:
    return (f'{head}<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"{namespaces}><channel>{channel}{items}</channel></rss>').encode()


def atom(entries: str, attributes: str = "") -> bytes:
    return (f'<feed xmlns="http://www.w3.org/2005/Atom"{attributes}><title>Status</title><id>urn:f</id>'
            f"<updated>2026-11-30T10:00:00Z</updated>{entries}</feed>").encode()


def item(inner: str) -> str:
    return f"<item>{inner}</item>"


ENTRY = '<entry><id>urn:e1</id><title>Disk full</title><link href="https://x.test/i/1"/><updated>2026-11-30T10:00:00Z</updated>{}</entry>'
CONSTRUCTS = {
    "child elements in a description": (rss(item("<title>t</title><guid>g1</guid><description>Disk <b>full</b> on <i>db-1</i></description>")), "Disk full on db-1"),
    "a comment inside a title": (rss(item("<title>Disk <!-- x -->full</title><guid>g1</guid>")), None),
    "a processing instruction in text": (rss(item("<title>t</title><guid>g1</guid><description>Disk <?php x ?>full</description>")), None),
    "an internal DTD entity": (b'<!DOCTYPE rss [<!ENTITY co "Example Co">]>' + rss(item("<title>&co; down</title><guid>g1</guid>")), None),
    "xml:base": (atom(ENTRY.replace('href="https://x.test/i/1"', 'href="incidents/1"').format(""), ' xml:base="https://base.test/status/"'), None),
    "Atom xhtml content": (atom(ENTRY.format('<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Disk <b>full</b></p></div></content>')), "Disk full"),
    "Atom base64 content": (atom(ENTRY.format('<content type="application/octet-stream">RGlzayBmdWxs</content>')), None),
    "Atom 0.3 base64 content": (b'<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>S</title><entry><id>e</id><title>t</title>'
                                b'<issued>2026-11-30T10:00:00Z</issued><content type="text/html" mode="base64">RGlzayBmdWxs</content></entry></feed>', "Disk full"),
    "blank content:encoded beside a description": (rss(item("<title>t</title><guid>g1</guid><description>Disk full</description><content:encoded>  </content:encoded>")), "Disk full"),
    "blank Atom content beside a summary": (atom(ENTRY.format('<summary>Disk full</summary><content type="html"> </content>')), "Disk full"),
    "Dublin Core date": (rss(item("<title>t</title><guid>g1</guid><dc:date>2026-11-30T10:00:00+01:00</dc:date>")), None),
    "an empty channel": (rss("", channel=""), None),
    "a guid without a link": (rss(item("<title>t</title><guid>https://x.test/i/1</guid>")), None),
    "a guid that is not a permalink, without a link": (rss(item('<title>t</title><guid isPermaLink="false">https://x.test/i/1</guid>')), None),
    "an Atom entry without a link": (atom("<entry><id>tag:x.test,2026:1</id><title>t</title><updated>2026-11-30T10:00:00Z</updated></entry>"), None),
    "an invalid byte in UTF-8": (rss(item("<title>Zürich</title><guid>g1</guid><description>Paiement échoué</description>")).replace(
        "échoué".encode(), b"\xe9chou\xc3\xa9"), "Paiement \ufffdchoué"),
    "undefined HTML entities": (rss(item("<title>Disk&nbsp;full &mdash; db</title><guid>g1</guid><description>a&hellip;b</description>")), "a\u2026b"),
    "entities in CDATA are text": (rss(item("<title>t</title><guid>g1</guid><description><![CDATA[a&nbsp;b]]></description>")), "a b"),
    "an Atom title of type html": (atom(ENTRY.replace("<title>Disk full</title>", '<title type="html">Disk &lt;b&gt;full&lt;/b&gt;</title>').format("")), None),
    "an Atom content of type text": (atom(ENTRY.format('<content type="text">uploads &lt;10MB fail</content>')), "uploads <10MB fail"),
    "Atom content given by src": (atom(ENTRY.format('<content src="https://x.test/c" type="text/html"/>')), None),
    "two alternate links": (atom(ENTRY.format('<link rel="alternate" href="https://x.test/i/2"/>')), None),
    "Media RSS beside the fields": (rss(item("<title>t</title><guid>g1</guid><media:title>other</media:title>"),
                                        namespaces=' xmlns:media="http://search.yahoo.com/mrss/"'), None),
}


@pytest.mark.parametrize("name", CONSTRUCTS)
def test_constructs_real_feeds_use(name):
    body, text = CONSTRUCTS[name]
    tolerant = assert_readers_agree(body)
    if name == "an internal DTD entity":
        return  # feedparser's to read, or to refuse (entity declarations: issue 15)
    assert tolerant not in (ERROR, DECLINED), name
    if text is not None:
        assert html_to_text(read_document(body).entries[0].content) == text


def test_what_the_constructs_read_as():
    entries = {name: read_document(body).entries for name, (body, _) in CONSTRUCTS.items() if name != "an internal DTD entity"}
    assert entries["an empty channel"] == []
    assert entries["a guid without a link"][0].link == "https://x.test/i/1"
    assert entries["a guid that is not a permalink, without a link"][0].link == ""
    assert entries["xml:base"][0].link == "https://base.test/status/incidents/1"
    assert entries["Dublin Core date"][0].published == datetime(2026, 11, 30, 9, tzinfo=timezone.utc)
    assert entries["undefined HTML entities"][0].title == "Disk\xa0full \u2014 db"
    assert entries["an Atom title of type html"][0].title == "Disk full"
    assert entries["a comment inside a title"][0].title.replace(" ", "") == "Diskfull"


def test_a_channel_with_no_title_and_no_items_is_a_healthy_empty_feed():
    for body in (rss("", channel=""), b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>'):
        for reader in ("fast", "feedparser", "auto"):
            assert read_document(body, reader).entries == []
    with pytest.raises(FeedError):
        read_document(b"<html><head><title>Down</title></head><body>502</body></html>")


# --- generated feeds ---

safe_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("<>&\"' \n"), max_size=30)
markup = st.sampled_from(["<b>bold</b>", "<br/>", "<p>para</p>", "a &lt; b", "&amp;amp;", "&nbsp;", "&#233;", "uploads <10MB"])
dates = st.one_of(
    st.sampled_from([
        "Mon, 30 Nov 2026 10:00:00 GMT", "Mon, 30 Nov 2026 10:00:00", "Mon, 30 Nov 2026 10:00:00 -0000",
        "Mon, 30 Nov 2026 10:00:00 +0530", "30 Nov 2026 10:00 PDT", "Mon, 30 Nov 2026 10:00:00 PT",
        "Mon, 30 Nov 2026 10:00:00 CEST", "Mon, 30 Nov 2026 10:00:00 BST", "Mon, 30 Nov 26 10:00:00 EST",
        "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123+02:00", "2026-11-30T10:00:00", "2026-11-30",
        "Mon, 30 Nov 0000 10:00:00 GMT", "Mon, 30 Nov 99999 10:00:00 GMT", "0000-01-01T00:00:00Z", "yesterday", "",
    ]),
    st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S +0000")),
)


def _text_element(tag: str, value: str, cdata: bool) -> str:
    if cdata and "]]>" not in value:
        return f"<{tag}><![CDATA[{value}]]></{tag}>"
    return f"<{tag}>{escape(value)}</{tag}>"


@st.composite
def rss_items(draw) -> str:
    parts = [_text_element("title", draw(safe_text), draw(st.booleans()))]
    if draw(st.booleans()):
        parts.append(f"<link>{escape(draw(st.sampled_from(['https://x.test/i/1', '/incidents/pay-5521', 'i/2', ' https://x.test/i/3 '])))}</link>")
    if draw(st.booleans()):
        permalink = draw(st.sampled_from(["", ' isPermaLink="false"', ' isPermaLink="true"']))
        parts.append(f"<guid{permalink}>{escape(draw(st.sampled_from(['https://x.test/g/1', 'g-2', 'http://x.test/g/3'])))}</guid>")
    for tag in draw(st.lists(st.sampled_from(["description", "content:encoded"]), max_size=2, unique=True)):
        value = draw(st.one_of(safe_text, markup, st.just("  ")))
        parts.append(_text_element(tag, value, draw(st.booleans())))
    for tag in draw(st.lists(st.sampled_from(["pubDate", "dc:date"]), max_size=2, unique=True)):
        parts.append(f"<{tag}>{escape(draw(dates))}</{tag}>")
    parts.extend(f"<category>{escape(c)}</category>" for c in draw(st.lists(safe_text, max_size=2)))
    return item("".join(draw(st.permutations(parts))))


@st.composite
def atom_entries(draw) -> str:
    kind = draw(st.sampled_from(["text", "html", None]))
    kind_attribute = f' type="{kind}"' if kind else ""
    parts = [f"<id>{escape(draw(st.sampled_from(['urn:e1', 'tag:x.test,2026:1', 'https://x.test/e/1'])))}</id>",
             f"<title{kind_attribute}>{escape(draw(safe_text | markup))}</title>"]
    if draw(st.booleans()):
        parts.append(f'<link href="{escape(draw(st.sampled_from(["https://x.test/i/1", "/incidents/pay-5521"])))}"/>')
    for tag in draw(st.lists(st.sampled_from(["content", "summary"]), max_size=2, unique=True)):
        parts.append(f"<{tag}{kind_attribute}>{escape(draw(safe_text | markup | st.just(' ')))}</{tag}>")
    for tag in draw(st.lists(st.sampled_from(["published", "updated"]), max_size=2, unique=True)):
        parts.append(f"<{tag}>{escape(draw(dates))}</{tag}>")
    parts.extend(f'<category term="{escape(c, {chr(34): "&quot;"})}"/>' for c in draw(st.lists(safe_text, max_size=2)))
    return f"<entry>{''.join(draw(st.permutations(parts)))}</entry>"


GENERATED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(items=st.lists(rss_items(), max_size=4), channel_title=safe_text)
def test_generated_rss_feeds_read_alike(items, channel_title):
    assert_readers_agree(rss("".join(items), channel=_text_element("title", channel_title, False)),
                         base_url="https://status.example.test/feed.rss")


@GENERATED
@given(entries=st.lists(atom_entries(), max_size=4))
def test_generated_atom_feeds_read_alike(entries):
    assert_readers_agree(atom("".join(entries)), base_url="https://status.example.test/feed.atom")


# --- characters (RFC 7303) ---

RUSSIAN = "Сбой оплаты: платежи задерживаются"


@pytest.mark.parametrize("charset", ["koi8-r", "windows-1251", "iso-8859-5"])
@pytest.mark.parametrize("reader", ["auto", "feedparser"])
def test_a_charset_named_only_by_http_is_read(charset, reader):
    body = rss(item(f"<title>{RUSSIAN}</title><guid>g1</guid><description>{RUSSIAN}</description>")).decode().encode(charset)
    entry = read_document(body, reader, charset=charset).entries[0]
    assert entry.title == RUSSIAN and html_to_text(entry.content) == RUSSIAN
    assert_readers_agree(body, charset=charset)


def test_rfc_7303_order_bom_then_http_then_declaration_then_utf8():
    text = rss(item(f"<title>{RUSSIAN}</title><guid>g1</guid>")).decode()
    declared = '<?xml version="1.0" encoding="windows-1251"?>' + text
    # The HTTP charset wins over the declaration; the declaration over the default.
    assert read_document(declared.encode("koi8-r"), charset="koi8-r").entries[0].title == RUSSIAN
    assert read_document(declared.encode("windows-1251")).entries[0].title == RUSSIAN
    # A byte order mark wins over both.
    assert read_document(b"\xef\xbb\xbf" + declared.encode("utf-8"), charset="koi8-r").entries[0].title == RUSSIAN
    assert read_document("\ufeff".encode("utf-16-le") + declared.encode("utf-16-le")).entries[0].title == RUSSIAN
    # An unknown charset name is passed over.
    assert read_document(declared.encode("windows-1251"), charset="x-no-such").entries[0].title == RUSSIAN


@pytest.mark.parametrize("reader", ["auto", "feedparser"])
def test_one_invalid_byte_is_replaced_and_every_other_character_and_key_kept(reader):
    items = "".join(item(f"<title>Zürich {n}</title><guid>https://x.test/{n}</guid><description>Paiement échoué — {n}</description>")
                    for n in range(3))
    clean = rss(items)
    broken = clean.replace("échoué — 1".encode(), b"\xe9chou\xc3\xa9 \xe2\x80\x94 1")  # one latin-1 byte in UTF-8
    before = parse_feed(clean, "P", "u", "per-update", reader=reader).incidents
    after = parse_feed(broken, "P", "u", "per-update", reader=reader).incidents
    assert [u.message for i in after for u in i.updates] == ["Paiement échoué — 0", "Paiement \ufffdchoué — 1", "Paiement échoué — 2"]
    assert [u.title for i in after for u in i.updates] == ["Zürich 0", "Zürich 1", "Zürich 2"]
    assert [i.updates[0].keys for i in after][::2] == [i.updates[0].keys for i in before][::2]


@pytest.mark.parametrize("name", ["statuspage_github_history.rss", "statuspage_claude_history.atom"])
def test_an_invalid_byte_in_a_real_feed_changes_only_its_own_update(name):
    body = feed(name)
    cut = body.index(b"We are investigating")
    broken = body[:cut] + b"\xff" + body[cut + 1:]
    before = [u for i in parse_feed(body, "P", "u").incidents for u in i.updates]
    after = [u for i in parse_feed(broken, "P", "u").incidents for u in i.updates]
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(after) == len(before) and len(changed) == 1
    old, new = changed[0]
    assert new.message == "\ufffd" + old.message[1:] and new.keys[0] == old.keys[0]


# --- times ---

@pytest.fixture(params=["Asia/Tokyo", "America/Los_Angeles", "Australia/Lord_Howe"])
def local_zone(request, monkeypatch):
    """The parsers under a machine time zone other than UTC."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


TIMES = {
    "Mon, 30 Nov 2026 10:00:00": "2026-11-30T10:00:00+00:00",
    "Mon, 30 Nov 2026 10:00:00 -0000": "2026-11-30T10:00:00+00:00",
    "Mon, 30 Nov 2026 10:00:00 +0900": "2026-11-30T01:00:00+00:00",
    "Mon, 30 Nov 2026 10:00:00 PT": "2026-11-30T18:00:00+00:00",
    "Mon, 30 Nov 2026 10:00 EST": "2026-11-30T15:00:00+00:00",
    "Mon, 30 Nov 2026 10:00:00 CEST": "2026-11-30T10:00:00+00:00",  # feedparser knows no CEST: UTC
    "Mon, 30 Nov 2026 10:00:00 BST": "2026-11-30T10:00:00+00:00",
    "Mon, 30 Nov 2026 10:00:00 MEST": "2026-11-30T08:00:00+00:00",
    "2026-11-30T10:00:00": "2026-11-30T10:00:00+00:00",
    "2026-11-30T10:00:00+01:00": "2026-11-30T09:00:00+00:00",
    "Mon, 30 Nov 0000 10:00:00 GMT": None,
    "Mon, 30 Nov 99999 10:00:00 GMT": None,
    "0000-11-30T10:00:00Z": None,
    "Fri, 31 Dec 9999 23:00:00 -0500": None,
}


@pytest.mark.parametrize("reader", ["auto", "feedparser"])
def test_times_are_never_read_in_the_machine_zone(local_zone, reader):
    for written, expected in TIMES.items():
        body = rss(item(f"<title>t</title><guid>g-{written}</guid><pubDate>{written}</pubDate>"))
        published = read_document(body, reader).entries[0].published
        assert (published.isoformat() if published else None) == expected, (local_zone, written)


def test_incidentio_keys_do_not_move_with_the_machine_zone(local_zone):
    body = feed("incidentio_openai_feed_trimmed.rss").replace(b" GMT</pubDate>", b"</pubDate>")
    keys = [u.key for i in parse_feed(body, "P", "u").incidents for u in i.updates]
    time.tzset()
    utc = [u.key for i in parse_feed(feed("incidentio_openai_feed_trimmed.rss"), "P", "u").incidents for u in i.updates]
    assert keys == utc


def keys_and_times(local_zone: str | None) -> list:
    """Every key and time the parsers give for every feed, API and webhook fixture."""
    found = []
    for name in FEEDS:
        found += [(u.keys, u.occurred_at) for i in parse_feed(feed(name), "P", "u").incidents for u in i.updates]
    for kind, name in [("statuspage-api", "statuspage_github_incidents.json"), ("incidentio-api", "incidentio_openai_incidents_subset.json"),
                       ("google-cloud-api", "gcp_incidents.json"), ("slack-api", "slack_history.json")]:
        found += [(u.keys, u.occurred_at) for i in parse_source(feed(name), "P", "https://x.test/api/v2/x.json", kind).incidents
                  for u in i.updates]
    for name in sorted(p.name for p in (FIXTURES / "webhooks").iterdir() if p.suffix == ".json"):
        body = json.loads(fixture_bytes(f"webhooks/{name}"))
        try:
            events = incidentio_events(body, "d") if name.startswith("incidentio") else generic_events("P", body)
        except PayloadError:
            continue
        found += [(e.keys, e.occurred_at) for e in events]
    return found


def test_every_source_gives_the_same_keys_and_times_in_every_zone(local_zone):
    here = keys_and_times(local_zone)
    os.environ["TZ"] = "UTC"
    time.tzset()
    assert here == keys_and_times(None)
    assert len(here) > 300


@pytest.mark.parametrize("reader", ["auto", "feedparser"])
def test_a_date_out_of_range_is_no_date_for_that_entry(reader):
    body = rss(item("<title>a</title><guid>g1</guid><pubDate>Mon, 30 Nov 99999 10:00:00 GMT</pubDate>")
               + item("<title>b</title><guid>g2</guid><pubDate>Mon, 30 Nov 2026 10:00:00 GMT</pubDate>"))
    first, second = parse_feed(body, "P", "u", "per-update", reader=reader).incidents
    assert first.updates[0].occurred_at is None and second.updates[0].occurred_at is not None


# --- links ---

@pytest.mark.parametrize("reader", ["auto", "feedparser"])
def test_relative_links_resolve_against_the_final_url(reader):
    body = rss(item("<title>Payments down</title><link>/incidents/pay-5521</link><guid isPermaLink=\"false\">pay-5521</guid>"))
    parsed = parse_feed(body, "P", "https://old.example.test/feed", reader=reader, base_url="https://status.example.test/feed.rss")
    assert parsed.incidents[0].updates[0].url == "https://status.example.test/incidents/pay-5521"
    xml_base = atom(ENTRY.replace('href="https://x.test/i/1"', 'href="incidents/1"').format(""), ' xml:base="/status/"')
    entry = read_document(xml_base, reader, base_url="https://status.example.test/feed.atom").entries[0]
    assert entry.link == "https://status.example.test/status/incidents/1"
