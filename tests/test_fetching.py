"""Fetching against loopback servers that misbehave: bounded bodies, plain reasons, no
secret in any error text, credentials sent once, 304s that were not asked for."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import socket
import ssl
import time
import zlib

import brotli
import pytest
import trustme
from conftest import RunningMonitor, feed, make_config
from feedserver import FeedServer
from hostile import REASONS, HostileServer, bombs
from test_poller import Rig, run

from status_monitor.redact import ScrubFilter
from status_monitor.sources.bodies import PIECE, BodyBudget, BodyError, Decoder

DOC = feed("incidentio_openai_feed_trimmed.rss")
TOKEN = "tok3nSECRETvalue42"
PASSWORD = "pa55-SECRET-word"


@pytest.fixture
def hostile():
    server = HostileServer()
    yield server
    server.close()


async def _decode(encoding: str, body: bytes, max_bytes: int, chunk: int = 1000) -> list[bytes]:
    async def chunks():
        for start in range(0, len(body), chunk):
            yield body[start:start + chunk]

    async with BodyBudget(32 * 1024 * 1024, max_bytes).lease() as lease:
        return [piece async for piece in Decoder(encoding, max_bytes).decode(chunks(), lease)]


def decode(encoding: str, body: bytes, max_bytes: int = 5 * 1024 * 1024, chunk: int = 1000) -> bytes:
    return b"".join(asyncio.run(_decode(encoding, body, max_bytes, chunk)))


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding, encode", [
    ("", lambda d: d),
    ("identity", lambda d: d),
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),  # what some servers send as "deflate"
    ("br", brotli.compress),
    ("gzip, gzip", lambda d: gzip.compress(gzip.compress(d))),
    ("deflate, br", lambda d: brotli.compress(zlib.compress(d))),
    ("gzip", lambda d: gzip.compress(d[:1000]) + gzip.compress(d[1000:])),  # two gzip members
])
@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_every_coding_decodes_whatever_the_chunking(encoding, encode, chunk):
    assert decode(encoding, encode(DOC), chunk=chunk) == DOC


@pytest.mark.parametrize("kind", ["gzip-bomb", "deflate-bomb", "br-bomb", "gzip-gzip-bomb"])
def test_a_bomb_is_inflated_piece_by_piece_and_stops_at_the_cap(kind):
    body, encoding = bombs()[kind]
    pieces: list[int] = []

    async def scenario():
        async def chunks():
            yield body  # the whole bomb arrives at once: still no step inflates more than PIECE

        with pytest.raises(BodyError, match=r"body larger than 1 MiB when decompressed") as error:
            async with BodyBudget(32 * 1024 * 1024, 1024 * 1024).lease() as lease:
                async for piece in Decoder(encoding, 1024 * 1024).decode(chunks(), lease):
                    pieces.append(len(piece))
        return error.value

    error = asyncio.run(scenario())
    assert error.kind == "too_large"
    assert max(pieces) <= 2 * PIECE  # brotli stops growing its buffer once past the limit
    assert sum(pieces) <= 1024 * 1024
    name = {"br-bomb": "brotli", "deflate-bomb": "deflate"}.get(kind, "gzip")
    assert str(error).startswith(name)


@pytest.mark.parametrize("encoding, body, reason", [
    ("gzip", DOC, "body not compressed as declared (not valid gzip)"),
    ("br", DOC, "body not compressed as declared (not valid brotli)"),
    ("gzip", gzip.compress(DOC)[:-20], "body not compressed as declared (gzip stream ends early)"),
    ("br", brotli.compress(DOC)[:-5], "body not compressed as declared (brotli stream ends early)"),
    ("deflate", zlib.compress(DOC)[:100], "body not compressed as declared (deflate stream ends early)"),
    ("zstd", DOC, "body compressed as 'zstd', which was not asked for"),
    ("gzip, compress", DOC, "body compressed as 'compress', which was not asked for"),
])
def test_a_body_not_compressed_as_declared_is_refused_with_a_plain_reason(encoding, body, reason):
    with pytest.raises(BodyError) as error:
        decode(encoding, body)
    assert str(error.value) == reason


def test_each_hostile_server_is_an_error_for_its_feed_with_a_plain_reason(tmp_path, hostile):
    ports = {kind: hostile.add(kind, body=DOC) for kind in REASONS}
    good = hostile.add("feed", body=DOC)
    urls = {kind: hostile.url(port) for kind, port in ports.items()}
    config = make_config(tmp_path, [*urls.items(), ("good", hostile.url(good))], request_timeout=2.0)

    async def scenario():
        async with Rig(config) as rig:
            events = await rig.cycle()
            assert {e.provider for e in events} == {"good"}
            reasons = {kind: rig.status(url).last_error for kind, url in urls.items()}
            assert reasons == REASONS
            assert rig.poller.stats.results["internal"] == 0

    run(scenario())


def test_credentials_in_a_feed_url_are_sent_once_as_basic_auth_and_never_shown(tmp_path, hostile, caplog):
    port = hostile.add("feed", body=DOC)
    url = f"http://reader:{PASSWORD}@127.0.0.1:{port}/feed.rss?token={TOKEN}"
    config = make_config(tmp_path, [("Internal", url)])
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(ScrubFilter())  # as main.py filters its handlers (httpx logs each URL)

    async def scenario():
        async with Rig(config) as rig:
            assert [e.status for e in await rig.cycle()] == ["Monitoring"]
            assert rig.status(url).last_error is None
            return rig.poller.feed_stats()

    stats = run(scenario())
    request = hostile.hosts[port].requests[0]
    expected = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    assert request[":raw"].lower().count("authorization:") == 1
    assert request["authorization"] == expected
    assert request[":path"] == f"/feed.rss?token={TOKEN}"
    assert PASSWORD not in str(stats) and TOKEN not in str(stats)
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text


def test_credentials_are_not_sent_on_to_another_host_by_a_redirect(tmp_path, hostile):
    other = hostile.add("feed", body=DOC)
    first = hostile.add("redirect", headers={"Location": hostile.url(other)})
    url = f"http://reader:{PASSWORD}@127.0.0.1:{first}/feed.rss"

    async def scenario():
        async with Rig(make_config(tmp_path, [("Internal", url)])) as rig:
            await rig.cycle()

    run(scenario())
    assert "authorization" in hostile.hosts[first].requests[0]
    assert "authorization" not in hostile.hosts[other].requests[0]


def test_no_error_class_shows_a_feed_urls_credentials_or_token(tmp_path, hostile, caplog, monkeypatch):
    """Every error the poller can produce, each feed's URL carrying a password and a token:
    the reasons are plain and neither secret is in /stats' feed list or any log line."""
    ca = trustme.CA()  # a CA nobody trusts
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = closed.getsockname()[1]
    ports = {
        "timeout": hostile.add("feed", body=DOC, delay=5),
        "malformed": hostile.add("malformed"),
        "redirects": hostile.add("redirect-loop"),
        "oversize": hostile.add("endless"),
        "parse": hostile.add("feed", body=b"<html><body>Error for " + TOKEN.encode() + b"</body></html>"),
        "tls": hostile.add("feed", body=DOC, tls=tls),
        "internal": hostile.add("feed", body=DOC),
    }
    hosts = {kind: f"127.0.0.1:{port}" for kind, port in ports.items()}
    hosts |= {"dns": "status.invalid", "refused": f"127.0.0.1:{refused}"}
    scheme = {"tls": "https"}
    urls = {kind: f"{scheme.get(kind, 'http')}://reader:{PASSWORD}@{host}/feed.rss?token={TOKEN}"
            for kind, host in hosts.items()}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # no DNS server here: the resolver's answer for a name that does not exist
        if host == "status.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    def parse_naming_the_url(body, provider, url, *args):
        raise ValueError(f"a bug, with the URL in its text: {url}")

    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(ScrubFilter())

    async def scenario():
        async with Rig(make_config(tmp_path, list(urls.items()), request_timeout=1.0)) as rig:
            monkeypatch.setattr(rig.poller, "_process", _failing_for(rig.poller, urls["internal"], parse_naming_the_url))
            await rig.cycle()
            return {kind: rig.status(url).last_error for kind, url in urls.items()}, rig.poller.feed_stats()

    reasons, stats = run(scenario())
    assert reasons["timeout"] == "127.0.0.1 did not answer in time"
    assert reasons["malformed"] == "malformed HTTP response from 127.0.0.1"
    assert reasons["redirects"] == "more than 5 redirects (a redirect loop?)"
    assert reasons["oversize"] == "body larger than 5 MiB"
    assert reasons["parse"] == "not an RSS or Atom feed (an HTML page or unknown document)"
    assert reasons["tls"].startswith("TLS certificate of 127.0.0.1 not trusted (")
    assert reasons["dns"] == "cannot resolve host status.invalid"
    assert reasons["refused"].startswith("connection refused by 127.0.0.1:")
    assert reasons["internal"] == "internal error (see the log)"
    assert "a bug, with the URL in its text" in caplog.text  # the traceback is logged, scrubbed
    for text in (str(reasons), str(stats), caplog.text):
        assert PASSWORD not in text and TOKEN not in text


def _failing_for(poller, url, fail):
    original = poller._process

    async def process(status, result, sent_validators):
        if status.feed.url == url:
            fail(result.body, status.feed.name, status.feed.url)
        return await original(status, result, sent_validators)

    return process


def test_a_brotli_decoders_window_is_reserved_before_it_decodes_and_small_bodies_never_wait():
    bomb, _ = bombs()["br-bomb"]
    max_body = 1024 * 1024

    async def scenario():
        budget = BodyBudget(12 * 1024 * 1024, max_body)

        async def one(body: bytes) -> tuple[int, list[int]]:
            async def chunks():
                yield body

            sizes: list[int] = []
            async with budget.lease() as lease:
                try:
                    async for piece in Decoder("br", max_body).decode(chunks(), lease):
                        sizes.append(budget._free)  # the pool while this decoder runs
                except BodyError:
                    pass
                return lease.reserved, sizes

        bomb_reserved, during = await one(bomb)
        assert bomb_reserved == 4 * 1024 * 1024 + max_body  # its 4-MiB window (lgwin 22) and a body
        assert max(during) == 12 * 1024 * 1024 - bomb_reserved  # reserved before the first piece
        legit_reserved, _ = await one(brotli.compress(DOC))  # one short last meta-block: a small window
        assert legit_reserved == 0
        # The pool is full: a small body still goes through at once; a bomb waits its turn.
        async with budget.lease() as hog:
            await hog.hold(0, decoder_memory=12 * 1024 * 1024)
            assert budget._free == 0
            assert (await asyncio.wait_for(one(gzip.compress(DOC)), 5))[0] == 0
            waiting = asyncio.create_task(one(bomb))
            await asyncio.sleep(0.1)
            assert not waiting.done()
        assert (await asyncio.wait_for(waiting, 5))[0] == bomb_reserved
        assert budget._free == budget.total

    asyncio.run(scenario())


def test_a_slow_host_gets_at_most_its_cap_and_never_holds_up_another_host(tmp_path, hostile):
    slow = hostile.add("feed", body=DOC, delay=2.0)
    fast = hostile.add("feed", body=DOC)
    feeds = [(f"slow {i}", hostile.url(slow, f"/{i}.rss")) for i in range(300)]
    feeds += [(f"fast {i}", hostile.url(fast, f"/{i}.rss")) for i in range(50)]
    config = make_config(tmp_path, feeds, interval=1.0, request_timeout=10.0)
    assert config.per_host_connections == 6 and config.concurrency == 100
    with RunningMonitor(config):
        time.sleep(8)
    assert 0 < hostile.hosts[slow].peak_connections <= 6
    polls: dict[str, list[float]] = {}
    for request in hostile.hosts[fast].requests:
        polls.setdefault(request[":path"], []).append(float(request[":at"]))
    assert len(polls) == 50
    for times in polls.values():
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(gaps) >= 4 and max(gaps) < 1.1 + 1.0, gaps  # its interval, +10 % jitter, +1 s slack


def test_a_rate_limit_pauses_every_feed_of_that_host_and_no_other(tmp_path, feeds, servers):
    other = servers(FeedServer)
    feeds.set("/limited.rss", b"", status=429, headers={"Retry-After": "3"})
    for name in ("a", "b", "c"):
        feeds.set(f"/{name}.rss", DOC)
        other.set(f"/{name}.rss", DOC)
    urls = [feeds.url(f"/{n}.rss") for n in ("limited", "a", "b", "c")] + [other.url(f"/{n}.rss") for n in "abc"]
    config = make_config(tmp_path, [(f"feed {i}", url) for i, url in enumerate(urls)], interval=0.5)
    with RunningMonitor(config) as monitor:
        monitor.wait_for(lambda: any(r.status == 429 for r in feeds.requests), timeout=10)
        paused_at = next(r.at for r in feeds.requests if r.status == 429)
        feeds.set("/limited.rss", DOC, status=200)
        time.sleep(5)
    during = [r for r in feeds.requests if paused_at + 0.2 < r.at < paused_at + 2.9]
    after = [r for r in feeds.requests if r.at > paused_at + 3]
    assert during == []  # no feed of the host that asked was polled while it waited
    assert {r.path for r in after} == {"/limited.rss", "/a.rss", "/b.rss", "/c.rss"}
    assert [r for r in other.requests if paused_at + 0.2 < r.at < paused_at + 2.9]  # the other host was


def test_a_single_cycle_polls_other_hosts_while_a_slow_host_is_at_its_cap(tmp_path, hostile):
    """--once: the workers take feeds of hosts below their cap, so the fast host's feeds
    are all polled while the slow host's first answers are still coming."""
    slow = hostile.add("feed", body=DOC, delay=0.5)
    fast = hostile.add("feed", body=DOC)
    feeds = [(f"slow {i}", hostile.url(slow, f"/{i}.rss")) for i in range(12)]
    feeds += [(f"fast {i}", hostile.url(fast, f"/{i}.rss")) for i in range(20)]
    config = make_config(tmp_path, feeds, concurrency=10, per_host_connections=2)

    async def scenario():
        async with Rig(config) as rig:
            await rig.cycle()
            assert all(status.last_error is None for status in rig.poller.feeds.values())

    run(scenario())
    slow_times = sorted(float(r[":at"]) for r in hostile.hosts[slow].requests)
    fast_times = sorted(float(r[":at"]) for r in hostile.hosts[fast].requests)
    assert len(slow_times) == 12 and len(fast_times) == 20
    assert hostile.hosts[slow].peak_connections <= 2
    assert fast_times[-1] < slow_times[2]  # all 20 before the slow host's third request
