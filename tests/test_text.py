"""Text is text, HTML is HTML, as the source declares: plain fields keep every character,
declared HTML is converted keeping the words of every element, and an update's text is the
same from its feed, its API and its webhook."""

from __future__ import annotations

import html
import json

import pytest
from conftest import feed, fixture_bytes
from hypothesis import given
from hypothesis import strategies as st

from status_monitor.sources import apis
from status_monitor.sources.kinds import parse_feed
from status_monitor.sources.text import html_to_text, plain_text
from status_monitor.webhooks.payloads import generic_events, incidentio_events

BUILDS = "Builds failing on images <ubuntu-24> and <macos-15>"
UPLOADS = "uploads <10MB and >1KB fail"


@pytest.fixture(params=["auto", "feedparser"])
def reader(request):
    return request.param


def one(parsed):
    [incident] = parsed.incidents
    return incident.updates[-1]


def rss_item(title: str, description: str = "", title_cdata: bool = False) -> bytes:
    title_xml = f"<![CDATA[{title}]]>" if title_cdata else html.escape(title, quote=False)
    return (f'<rss version="2.0"><channel><title>S</title><item><title>{title_xml}</title><guid>https://x.test/1</guid>'
            f"<description>{description}</description><pubDate>Mon, 30 Nov 2026 10:00:00 GMT</pubDate></item></channel></rss>").encode()


@pytest.mark.parametrize("title", [BUILDS, UPLOADS, "a < b && c > d", "<script>not run</script>", "AT&amp;T"])
@pytest.mark.parametrize("cdata", [False, True])
def test_an_rss_title_is_plain_text(reader, title, cdata):
    update = one(parse_feed(rss_item(title, title_cdata=cdata), "P", "u", "per-update", reader=reader))
    assert update.title == title


@pytest.mark.parametrize("text", [BUILDS, UPLOADS, "a < b && c > d"])
def test_an_atom_text_construct_of_type_text_is_plain_text(reader, text):
    for attribute in ("", ' type="text"'):
        body = (f'<feed xmlns="http://www.w3.org/2005/Atom"><title>S</title><entry><id>urn:1</id>'
                f"<title{attribute}>{html.escape(text)}</title><updated>2026-11-30T10:00:00Z</updated>"
                f"<content{attribute}>{html.escape(text)}</content></entry></feed>").encode()
        update = one(parse_feed(body, "P", "u", "per-update", reader=reader))
        assert update.title == text and update.message == text


@pytest.mark.parametrize("description, message", [
    (html.escape(f"<p>{html.escape(BUILDS)}</p>"), BUILDS),  # HTML that says "<ubuntu-24>" as text
    (html.escape(f"<p>{UPLOADS}</p>"), UPLOADS),  # "<1" opens no tag in HTML
    ("<![CDATA[<p>Disk <b>full</b> on <i>db-1</i></p><p>Second line</p>]]>", "Disk full on db-1\nSecond line"),
    ("a&amp;nbsp;b &amp;mdash; c", "a b \u2014 c"),  # white space made regular, as everywhere
])
def test_declared_html_is_converted_keeping_every_word(reader, description, message):
    assert one(parse_feed(rss_item("t", description), "P", "u", "per-update", reader=reader)).message == message


def test_google_cloud_unescaped_html_summaries_give_the_full_message(reader):
    update = one(parse_feed(feed("gcp_feed_trimmed.atom"), "P", "u", reader=reader))
    assert update.message == ("Incident began at 2025-06-12 10:51 and ended at 2025-06-12 18:18 "
                              "(all times are US/Pacific).")
    two = parse_feed(feed("gcp_feed_two_updates_trimmed.atom"), "P", "u", reader=reader).incidents[0].updates
    assert two[0].message.startswith("Vertex AI Online Prediction: The issue causing elevated 5xx errors")
    assert len({u.key for u in two}) == 2 and all(u.message for u in two)


def test_json_api_strings_are_plain_text():
    incidentio = {"incidents": [{"id": "01K80CBJD5Z64DF82KGT3K3QE0", "name": BUILDS, "status": "investigating",
                                 "incident_updates": [{"id": "u1", "status": "investigating", "body": UPLOADS,
                                                       "created_at": "2026-11-30T10:00:00Z"}]}]}
    [update] = apis.incidentio_incidents(incidentio, "OpenAI", "https://status.openai.com/api/v2/incidents.json")[0].updates
    assert (update.title, update.message) == (BUILDS, UPLOADS)
    statuspage = {"incidents": [{"id": "abc", "name": BUILDS, "status": "investigating", "components": [{"name": "Jobs <Linux>"}],
                                 "incident_updates": [{"id": "u1", "status": "investigating", "body": "x",
                                                       "created_at": "2026-11-30T10:00:00Z"}]}]}
    [update] = apis.statuspage_incidents(statuspage, "GitHub", "u")[0].updates
    assert update.title == BUILDS and update.components == ["Jobs <Linux>"]


def test_webhook_strings_are_plain_text():
    body = json.loads(fixture_bytes("webhooks/incidentio_openapi_example_public_incident__incident_status_updated_v2.json"))
    body["public_incident.incident_status_updated_v2"]["message"] = UPLOADS
    assert incidentio_events(body, "d1")[0].message == UPLOADS
    generic = {"event_type": "incident.updated", "data": {"id": "i1", "incident": {"name": BUILDS, "message": BUILDS,
                                                                                       "status": {"label": "Investigating"}}}}
    [event] = generic_events("P", generic)
    assert event.title == BUILDS and event.message == BUILDS


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=60))
def test_a_message_reads_the_same_as_plain_text_and_as_the_html_a_feed_makes_of_it(message):
    """A feed shows a plain message as HTML, escaped with its line breaks as <br />: its
    text, and so its share of the update's key, is the API's and the webhook's."""
    rendered = html.escape(message, quote=False).replace("\r\n", "\n").replace("\n", "<br />")
    assert html_to_text(rendered) == plain_text(message.replace("\r\n", "\n"))


def test_incidentio_feed_api_and_webhook_agree_on_a_message_with_angle_brackets():
    """The feed's item, rendered as incident.io renders it, and the API's update: one key."""
    body = feed("incidentio_openai_feed_trimmed.rss")
    body = body.replace(b"We seeing recovery on impacted services, and we are monitoring.", html.escape(UPLOADS).encode())
    [update] = parse_feed(body, "OpenAI", "u").incidents[0].updates
    assert update.message == UPLOADS
    api = {"incidents": [{"id": update.incident_id, "name": update.title, "status": "monitoring",
                          "incident_updates": [{"id": "u9", "status": "monitoring", "body": UPLOADS,
                                                "created_at": update.occurred_at.isoformat()}]}]}
    [from_api] = apis.incidentio_incidents(api, "OpenAI", "https://status.openai.com/api/v2/incidents.json")[0].updates
    assert update.key in from_api.keys
