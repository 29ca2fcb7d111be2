"""The poller against a real loopback feed server, with the real handler and SQLite state."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import re
import ssl
import time

import httpx
from conftest import AWS_NEW_ITEM, Captured, feed, make_config
from feedserver import FeedServer

from event_handler import EventHandler
from rss_poller import FeedPoller, make_client
from status_monitor.sources.transport import AiohttpTransport
from status_monitor.storage import open_store

GITHUB_DAY1 = feed("statuspage_github_history_snapshot_2026-07-09.atom")
GITHUB_DAY2 = feed("statuspage_github_history_snapshot_2026-07-10.atom")
GITHUB_DAY3 = feed("statuspage_github_history_snapshot_2026-07-11.atom")


class Rig:
    """One monitor's poller, handler and store; `cycle()` polls every feed once."""

    def __init__(self, config):
        self.config = config
        self.output = Captured()

    async def __aenter__(self):
        self.store = open_store(self.config.state_path)
        await self.store.open()
        self.handler = EventHandler(self.store, [self.output])
        await self.handler.load()
        self.client = make_client(self.config)
        self.poller = FeedPoller(self.config, self.handler, self.store, self.client)
        await self.poller.load()
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self.store.close()

    async def cycle(self) -> list:
        before = len(self.output.events)
        await self.poller.poll_all()
        return self.output.events[before:]

    def status(self, url):
        return self.poller.feeds[url]


def run(coro):
    return asyncio.run(coro)


def test_first_poll_announces_open_incidents_then_only_new_blocks(tmp_path, feeds):
    feeds.set("/gh.atom", GITHUB_DAY1)
    url = feeds.url("/gh.atom")

    async def scenario():
        async with Rig(make_config(tmp_path, [("GitHub", url)])) as rig:
            first = await rig.cycle()
            assert [(e.incident_id, e.status) for e in first] == [("cstx3v63mklm", "Investigating")]
            assert await rig.cycle() == []
            assert rig.poller.stats.not_modified_total == 1
            feeds.set("/gh.atom", GITHUB_DAY2)
            second = await rig.cycle()
            assert len(second) == 11
            # Only the one entry that changed was read: its 3 older updates were met again,
            # the other 24 entries' 128 updates were not handled a second time.
            assert rig.handler.stats.duplicates_total == 3
            assert [e.occurred_at for e in second] == sorted(e.occurred_at for e in second)
            assert second[-1].status == "Resolved" and second[-1].message.startswith("This incident has been resolved")
            assert "Update" not in {e.status for e in second}
            feeds.set("/gh.atom", GITHUB_DAY3)  # postmortem text rewritten in place, <updated> moved
            assert await rig.cycle() == []
            assert rig.handler.stats.events_total == 12

    run(scenario())
    conditional = feeds.requests_to("/gh.atom")[1]
    assert conditional.headers["if-none-match"].startswith('"')
    assert conditional.headers["if-modified-since"].endswith("GMT")
    assert conditional.status == 304


def test_replay_announces_history_oldest_first(tmp_path, feeds):
    feeds.set("/gh.rss", feed("statuspage_github_history.rss"))

    async def scenario():
        async with Rig(make_config(tmp_path, [("GitHub", feeds.url("/gh.rss"))], replay=True)) as rig:
            events = await rig.cycle()
            assert len(events) == 128
            assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
            assert await rig.cycle() == []

    run(scenario())


def test_incidentio_state_change_and_aws_new_entry(tmp_path, feeds):
    openai = feed("incidentio_openai_feed_trimmed.rss")
    aws = feed("aws_all.rss")
    feeds.set("/openai.rss", openai)
    feeds.set("/aws.rss", aws)
    config = make_config(tmp_path, [("OpenAI", feeds.url("/openai.rss")), ("AWS", feeds.url("/aws.rss"))])

    async def scenario():
        async with Rig(config) as rig:
            first = await rig.cycle()
            assert [(e.provider, e.status) for e in first] == [("OpenAI", "Monitoring")]
            feeds.set("/openai.rss", openai.replace(b"Status: Monitoring", b"Status: Resolved").replace(
                b"Mon, 20 Oct 2025 09:43:12 GMT", b"Mon, 20 Oct 2025 10:15:00 GMT"))
            feeds.set("/aws.rss", aws.replace(b"<item>", AWS_NEW_ITEM + b"<item>", 1))
            second = await rig.cycle()
            assert sorted((e.provider, e.status, e.incident_id) for e in second) == [
                ("AWS", "Service impact", "ec2-us-east-1"),
                ("OpenAI", "Resolved", "01K80CBJD5Z64DF82KGT3K3QE0"),
            ]
            # An item dropping out of the feed is not an event.
            feeds.set("/aws.rss", re.sub(rb"<item>.*?</item>", b"", aws, count=5, flags=re.S))
            assert await rig.cycle() == []

    run(scenario())


def test_html_page_is_an_error_and_its_validators_are_not_kept(tmp_path, feeds):
    feeds.set("/gh.atom", GITHUB_DAY1)
    url = feeds.url("/gh.atom")

    async def scenario():
        async with Rig(make_config(tmp_path, [("GitHub", url)])) as rig:
            await rig.cycle()
            feeds.set("/gh.atom", b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
            assert await rig.cycle() == []
            status = rig.status(url)
            assert status.record.consecutive_errors == 1 and "not an RSS or Atom" in status.last_error
            assert rig.poller.stats.poll_errors_total == 1
            feeds.set("/gh.atom", GITHUB_DAY2, content_type="application/atom+xml")
            events = await rig.cycle()
            assert len(events) == 11  # nothing lost while the page served HTML
            assert status.record.consecutive_errors == 0 and status.last_error is None

    run(scenario())
    requests = feeds.requests_to("/gh.atom")
    html_etag = requests[1].headers.get("if-none-match")
    assert requests[2].headers.get("if-none-match") == html_etag != None  # the HTML's validators were not sent


def test_hanging_and_failing_feeds_do_not_hold_up_the_others(tmp_path, feeds):
    feeds.set("/hang.rss", b"", hang=True)
    feeds.set("/fail.rss", b"", status=500)
    feeds.set("/gh.atom", GITHUB_DAY1)
    config = make_config(
        tmp_path,
        [("Hang", feeds.url("/hang.rss")), ("Fail", feeds.url("/fail.rss")), ("GitHub", feeds.url("/gh.atom"))],
        request_timeout=1.0,
    )

    async def scenario():
        async with Rig(config) as rig:
            started = time.monotonic()
            events = await rig.cycle()
            elapsed = time.monotonic() - started
            assert [e.provider for e in events] == ["GitHub"]
            assert rig.status(feeds.url("/hang.rss")).last_error in ("127.0.0.1 did not answer in time", "no complete answer within 1.5 s")
            assert rig.status(feeds.url("/fail.rss")).last_error == "HTTP 500"
            assert rig.status(feeds.url("/fail.rss")).record.last_status == 500
            assert elapsed < 10  # bounded by the deadline, not by the hanging server

    run(scenario())


def test_retry_after_gone_redirects_gzip_and_size_cap(tmp_path, feeds, servers):
    limiting = servers(FeedServer)  # Retry-After pauses a whole host: these two get one of their own
    limiting.set("/limited.rss", b"", status=429, headers={"Retry-After": "120"})
    limiting.set("/busy.rss", b"", status=503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    feeds.set("/gone.rss", b"", status=410)
    feeds.set("/moved.rss", b"", status=301, headers={"Location": "/claude.rss"})
    feeds.set("/claude.rss", feed("statuspage_claude_history.rss"))
    feeds.set("/loop.rss", b"", status=302, headers={"Location": "/loop.rss"})
    feeds.set("/gz.rss", feed("incidentio_openai_feed_trimmed.rss"), gzip=True)
    feeds.set("/huge.rss", feed("aws_all.rss"))
    urls = {n: feeds.url(f"/{n}.rss") for n in ["gone", "moved", "loop", "gz", "huge"]}
    urls |= {n: limiting.url(f"/{n}.rss") for n in ["limited", "busy"]}
    config = make_config(tmp_path, list(urls.items()), max_body_bytes=50_000)

    async def scenario():
        async with Rig(config) as rig:
            now = time.time()
            events = await rig.cycle()
            assert [e.provider for e in events] == ["gz"]
            status = {n: rig.status(u) for n, u in urls.items()}
            assert status["moved"].record.last_status == 200 and status["moved"].record.entries == 25
            assert 110 < status["limited"].record.backoff_until - now < 130
            assert status["busy"].record.backoff_until - now > 3000  # capped at an hour
            assert rig.poller._next_delay(status["limited"], 1.0) > 100
            assert status["gone"].record.gone
            assert status["loop"].last_error == "more than 5 redirects (a redirect loop?)"
            assert status["huge"].last_error == "body of 71,886 bytes announced, larger than 50,000 bytes"
            await rig.cycle()
            assert len(feeds.requests_to("/gone.rss")) == 1  # 410: never polled again

    run(scenario())


def test_failing_feed_is_reported_once_and_again_when_recovered(tmp_path, feeds, caplog):
    feeds.set("/flaky.rss", b"", status=502)
    url = feeds.url("/flaky.rss")
    caplog.set_level(logging.INFO, logger="monitor.poller")

    async def scenario():
        async with Rig(make_config(tmp_path, [("Flaky", url)])) as rig:
            for _ in range(5):
                await rig.cycle()
            assert rig.status(url).failing and rig.status(url).record.consecutive_errors == 5
            feeds.set("/flaky.rss", GITHUB_DAY1, status=200)
            await rig.cycle()
            assert not rig.status(url).failing

    run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    # Never read in this run: failing at its first error, said once.
    assert len([m for m in messages if "cannot be read: HTTP 502" in m]) == 1
    assert not [m for m in messages if "is failing" in m]
    assert len([m for m in messages if "recovered" in m]) == 1


def test_restart_resumes_with_stored_validators_and_announces_what_was_missed(tmp_path, feeds):
    feeds.set("/gh.atom", GITHUB_DAY1)
    feeds.set("/openai.rss", feed("incidentio_openai_feed_trimmed.rss"))
    config = make_config(tmp_path, [("GitHub", feeds.url("/gh.atom")), ("OpenAI", feeds.url("/openai.rss"))])

    async def first_run():
        async with Rig(config) as rig:
            return await rig.cycle()

    async def second_run():
        async with Rig(config) as rig:
            return await rig.cycle(), rig.poller.stats.not_modified_total

    assert len(run(first_run())) == 2
    assert run(second_run()) == ([], 2)  # mostly 304s, nothing repeated
    feeds.set("/gh.atom", GITHUB_DAY2)  # updates posted while the monitor was down
    events, _ = run(second_run())
    assert len(events) == 11


def test_same_entries_under_a_new_channel_date_are_not_parsed_again(tmp_path, feeds):
    body = feed("statuspage_github_history.rss")
    feeds.set("/gh.rss", body, validators=False)
    url = feeds.url("/gh.rss")

    async def scenario():
        async with Rig(make_config(tmp_path, [("GitHub", url)])) as rig:
            await rig.cycle()
            feeds.set("/gh.rss", body.replace(b"Thu, 05 Feb 2026 05:10:57 +0000", b"Thu, 05 Feb 2026 05:13:00 +0000"),
                      validators=False)
            assert await rig.cycle() == []
            assert rig.poller.stats.unchanged_total == 1
            feeds.set("/gh.rss", body.replace(b"We are investigating reports of degraded performance for Actions",
                                              b"Edited in place"), validators=False)
            assert await rig.cycle() == []  # parsed (the body changed), nothing new: text edits are not events
            assert rig.poller.stats.unchanged_total == 1

    run(scenario())


def test_brotli_bodies_are_decoded_and_cookies_are_not_kept(tmp_path, feeds):
    import brotli

    feeds.set("/openai.rss", brotli.compress(feed("incidentio_openai_feed_trimmed.rss")),
              headers={"Content-Encoding": "br", "Set-Cookie": "session=abc; Path=/"})
    url = feeds.url("/openai.rss")

    async def scenario():
        async with Rig(make_config(tmp_path, [("OpenAI", url)])) as rig:
            assert [e.status for e in await rig.cycle()] == ["Monitoring"]
            await rig.cycle()

    run(scenario())
    assert all("cookie" not in r.headers for r in feeds.requests_to("/openai.rss"))
    assert "br" in feeds.requests_to("/openai.rss")[0].headers["accept-encoding"]


def test_a_plain_poll_goes_straight_to_the_transport_and_a_redirect_or_credentials_through_httpx(
    tmp_path, feeds, monkeypatch
):
    """PollClient skips httpx's client layers for a poll that needs none of them (README,
    Performance): what those layers do must still happen when it is needed."""
    feeds.set("/plain.rss", feed("statuspage_claude_history.rss"))
    feeds.set("/moved.rss", b"", status=301, headers={"Location": "/plain.rss"})
    feeds.set("/private.rss", feed("incidentio_openai_feed_trimmed.rss"))
    urls = {"plain": feeds.url("/plain.rss"), "moved": feeds.url("/moved.rss"),
            "private": feeds.url("/private.rss").replace("://", "://reader:secret@")}
    through_httpx = []
    httpx_send = httpx.AsyncClient.send

    async def counting_send(client, request, **kwargs):
        through_httpx.append(request.url.path)
        return await httpx_send(client, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)

    async def poll(rig, name):
        await rig.poller.poll(rig.status(urls[name]))
        return rig.status(urls[name]).record

    async def scenario():
        async with Rig(make_config(tmp_path, list(urls.items()))) as rig:
            assert (await poll(rig, "plain")).last_status == 200
            assert (await poll(rig, "plain")).last_status == 304
            assert through_httpx == []
            assert [r.headers.get("if-none-match") is not None for r in feeds.requests_to("/plain.rss")] == [False, True]
            moved = await poll(rig, "moved")
            assert moved.last_status == 200 and moved.entries == 25
            assert through_httpx == ["/moved.rss"]
            assert len(feeds.requests_to("/moved.rss")) == 2  # the direct answer, then httpx's redirect
            assert (await poll(rig, "private")).last_status == 200
            assert through_httpx == ["/moved.rss", "/private.rss"]
            sent = feeds.requests_to("/private.rss")
            assert [r.headers.get("authorization") for r in sent] == ["Basic " + base64.b64encode(b"reader:secret").decode()]

    run(scenario())


def test_validators_that_are_not_ascii_are_stored_and_never_break_a_poll(tmp_path, feeds):
    """RFC 9110 lets an ETag hold bytes beyond ASCII (obs-text). Whether they are UTF-8 or
    not, and whether the poll goes straight to aiohttp or through httpx (credentials), the
    poll succeeds, the record is stored and read back, and the next poll sends no
    If-None-Match it could not send exactly (If-Modified-Since still makes it a 304)."""
    body = feed("statuspage_claude_history.rss")
    tags = {"/utf8.rss": "caf\u00e9-1".encode().decode("latin-1"), "/latin1.rss": "caf\u00e9-2", "/private.rss": "caf\u00e9-3"}
    for path, tag in tags.items():
        feeds.set(path, body)
        feeds.set(path, body, etag=f'"{tag}"')  # the server sends these characters as Latin-1 bytes
    urls = [(path.strip("/"), feeds.url(path)) for path in tags]
    urls[2] = ("private", urls[2][1].replace("://", "://reader:secret@"))

    async def scenario():
        config = make_config(tmp_path, urls)
        async with Rig(config) as rig:
            await rig.cycle()
            await rig.cycle()
            records = {url: rig.status(url).record for _, url in urls}
            failing = [s.last_error for s in rig.poller.feeds.values() if s.last_error]
        async with Rig(config) as again:  # the state file holds them
            stored = await again.store.load_feeds()
        return records, failing, stored

    records, failing, stored = run(scenario())
    assert failing == []
    assert [r.last_status for r in records.values()] == [304, 304, 304]
    assert [stored[url].etag for _, url in urls] == ['"caf\u00e9-1"', '"caf\u00e9-2"', '"caf\u00e9-3"']
    for path in tags:
        first, second = feeds.requests_to(path)
        assert "if-none-match" not in second.headers and second.headers["if-modified-since"]


def test_the_transport_parses_a_url_once_and_keeps_a_bounded_number(feeds):
    """aiohttp's form of a URL is kept from one request to the next (README, Performance),
    the same with or without credentials in it, and no more than the transport's bound are
    kept when sources send it to a new URL each time."""

    async def scenario():
        transport = AiohttpTransport(4, ssl.create_default_context(), urls_kept=8)
        try:
            for i in range(20):
                request = httpx.Request("GET", feeds.url(f"/hop{i}.rss"), extensions={"timeout": {"read": 5.0}})
                response = await transport.handle_async_request(request)
                assert response.status_code == 404
                await response.aclose()
                assert len(transport._urls) <= 8
            kept = transport._urls[feeds.url("/hop19.rss")]
            private = transport._url(httpx.URL(feeds.url("/hop19.rss").replace("://", "://reader:secret@")))
            assert transport._url(httpx.URL(feeds.url("/hop19.rss"))) is kept is private and not kept.user
        finally:
            await transport.aclose()

    run(scenario())
    assert len(feeds.requests_to("/hop0.rss")) == 1


def test_a_poll_leaves_nothing_for_the_garbage_collector(tmp_path, feeds):
    """What a poll leaves in reference cycles waits for the collector, whose passes over it
    were a tenth of a steady poll's CPU in the daemon: a 304 and a parsed 200 free all they
    made as they finish."""
    feeds.set("/gh.atom", GITHUB_DAY1)
    url = feeds.url("/gh.atom")

    async def scenario():
        async with Rig(make_config(tmp_path, [("GitHub", url)])) as rig:
            await rig.cycle()
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                await rig.cycle()
                feeds.set("/gh.atom", GITHUB_DAY2)
                assert len(await rig.cycle()) == 11
                gc.collect()
                left = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage})
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
            assert rig.poller.stats.not_modified_total == 1 and rig.poller.stats.parsed_total == 2
            assert left == []

    run(scenario())


def test_feeds_due_within_a_tick_share_one_timer_and_wait_at_most_a_tick(tmp_path, feeds):
    """The loop wakes once a tick (a tenth of the interval, at most 1 s), not once a feed:
    300 feeds due over 2 s take 3 timers, and each starts within a tick after it is due."""
    config = make_config(tmp_path, [(f"F{i}", feeds.url(f"/f{i}.rss")) for i in range(300)], interval=10)

    async def scenario():
        async with Rig(config) as rig:
            loop = asyncio.get_running_loop()
            delays = {}
            for i, status in enumerate(rig.poller.feeds.values()):
                delays[status.feed.url] = i * 2 / 300
                rig.poller._schedule(status, delays[status.feed.url])
            now = loop.time()
            assert len(rig.poller._timers) <= 3
            for at, due in rig.poller._due.items():
                for status in due:
                    assert 0 <= at - (now + delays[status.feed.url]) <= 1.0 + 0.05
            assert sum(len(due) for due in rig.poller._due.values()) == 300
            await rig.poller.stop(1)
            assert not rig.poller._due

    run(scenario())


def test_first_polls_start_at_most_200_a_second_however_short_the_interval(tmp_path, feeds):
    """2,000 feeds every 2 s: their first polls are spread over 10 s (200 a second, as
    README's "Polling" says), not squeezed into the interval."""
    config = make_config(tmp_path, [(f"F{i}", feeds.url(f"/f{i}.rss")) for i in range(2000)], interval=2)

    async def scenario():
        async with Rig(config) as rig:
            now = asyncio.get_running_loop().time()
            rig.poller.start()
            starts = sorted(at - now for at, due in rig.poller._due.items() for _ in due)
            await rig.poller.stop(1)
            assert len(starts) == 2000
            assert 9 <= starts[-1] <= 10 + 0.2
            assert sum(1 for s in starts if s <= 3) < 800  # ~600 at 200 a second

    run(scenario())


def test_a_poll_holds_its_slot_until_its_outcome_is_stored(tmp_path, feeds):
    """A cold start must not queue first polls' baselines faster than the state stores them:
    with the state slowed down (each save waits 0.2 s first, as a busy disk would) and first
    polls starting at 200 a second, at most `concurrency` saves are ever waiting, and every
    feed's baseline is stored."""
    paths = [f"/f{i}.atom" for i in range(120)]
    for path in paths:
        feeds.set(path, GITHUB_DAY1)
    config = make_config(tmp_path, [(f"F{i}", feeds.url(p)) for i, p in enumerate(paths)], concurrency=8,
                         per_host_connections=8, interval=60)
    waiting, most = 0, 0

    async def scenario():
        nonlocal waiting, most
        async with Rig(config) as rig:
            save_feed = rig.store.save_feed

            async def slow_save(record, silent_keys=()):
                nonlocal waiting, most
                waiting += 1
                most = max(most, waiting)
                try:
                    await asyncio.sleep(0.2)
                    await save_feed(record, silent_keys)
                finally:
                    waiting -= 1

            rig.store.save_feed = slow_save
            rig.poller.start()  # the daemon's way: first polls from timers, 200 a second
            deadline = time.monotonic() + 30
            while not all(s.known for s in rig.poller.feeds.values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await rig.poller.stop(5)
            await rig.store.flush()
        async with Rig(config) as again:
            return len(again.handler._seen), sum(1 for s in again.poller.feeds.values() if s.known)

    seen, known = run(scenario())
    assert most <= 8
    assert known == 120 and seen > 0  # every feed's first poll stored, with its baseline
