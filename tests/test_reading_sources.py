"""What a source's HTTP answer says about its body is used: the final URL after redirects
for relative links, the Content-Type charset for the characters (RFC 7303), and a webhook
body's byte order mark is ignored once its signature is verified over the raw bytes.
Against the real poller, loopback feed servers and the real monitor under uvicorn."""

from __future__ import annotations

import asyncio
import json

import httpx
from conftest import RunningMonitor, make_config
from test_poller import Rig
from test_webhooks import SECRET, incident_io, live, signed

RUSSIAN_TITLE = "Сбой оплаты"
RUSSIAN_TEXT = "Платежи задерживаются до 10 минут."


def russian_feed() -> str:
    return ('<rss version="2.0"><channel><title>Статус</title><item>'
            f"<title>{RUSSIAN_TITLE}</title><link>/incidents/pay-5521</link>"
            '<guid isPermaLink="false">pay-5521-1</guid><pubDate>Mon, 30 Nov 2026 10:00:00 GMT</pubDate>'
            f"<description>{RUSSIAN_TEXT}</description></item><item><title>{RUSSIAN_TITLE} 2</title>"
            '<link>incidents/pay-5522</link><guid isPermaLink="false">pay-5522-1</guid>'
            f"<pubDate>Mon, 30 Nov 2026 10:05:00 GMT</pubDate><description>{RUSSIAN_TEXT}</description></item>"
            "</channel></rss>")


def test_redirected_feed_in_a_header_only_charset_prints_right_with_absolute_links(tmp_path, feeds):
    for charset in ("koi8-r", "windows-1251"):
        path = f"/status/{charset}/feed.rss"
        feeds.set(path, russian_feed().encode(charset), content_type=f"application/rss+xml; charset={charset.upper()}")
        feeds.set(f"/old-{charset}.rss", b"", status=301, headers={"Location": feeds.url(path)})

    async def scenario():
        urls = [("KOI8", feeds.url("/old-koi8-r.rss")), ("CP1251", feeds.url("/old-windows-1251.rss"))]
        async with Rig(make_config(tmp_path, urls, replay=True)) as rig:
            return await rig.cycle()

    events = asyncio.run(scenario())
    assert sorted(e.provider for e in events) == ["CP1251", "CP1251", "KOI8", "KOI8"]
    for event in events:
        assert event.title.startswith(RUSSIAN_TITLE) and event.message == RUSSIAN_TEXT
        charset = "koi8-r" if event.provider == "KOI8" else "windows-1251"
        # Against the final URL, not the one configured: /status/<charset>/feed.rss
        assert event.url in (feeds.url("/incidents/pay-5521"), feeds.url(f"/status/{charset}/incidents/pay-5522"))
    assert len({e.url for e in events}) == 3


def test_a_webhook_body_with_a_utf8_byte_order_mark_is_accepted(tmp_path):
    config = make_config(tmp_path, incident_io_secret=SECRET, webhook_secrets={"GITHUB_HOOKS": "It's a Secret"})
    raw = json.dumps(incident_io("public_incident.incident_created_v2", incident_status=live("Investigating"))).encode()
    with RunningMonitor(config) as monitor:
        body = b"\xef\xbb\xbf" + raw
        answer = httpx.post(monitor.base + "/webhook/incident-io", content=body, headers=signed(body, msg_id="bom"))
        assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        assert [e.title for e in monitor.output.events] == ["Our database is sad"]
        # The signature is over the bytes received, the mark included.
        refused = httpx.post(monitor.base + "/webhook/incident-io", content=body, headers=signed(raw, msg_id="bom2"))
        assert refused.status_code == 401
        generic = b"\xef\xbb\xbf" + json.dumps({"event_type": "incident.updated", "data": {
            "id": "i1", "incident": {"name": "Queue delays", "status": {"label": "Investigating"}}}}).encode()
        answer = httpx.post(monitor.base + "/webhook/generic/open", content=generic)
        assert answer.status_code == 200, answer.text
        assert [e.title for e in monitor.output.events][-1] == "Queue delays"
