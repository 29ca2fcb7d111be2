"""Benchmark feed server, run as its own process: N distinct Statuspage-style feeds of about
20 KB (25 incidents each), with ETag and Last-Modified, on 127.0.0.1.

    python3 bench/feedserver.py --feeds 1000 --port 0 [--no-validators] [--tls CERT KEY] [--close]

Prints `port=<n>` once listening. `POST /_mutate?fraction=0.015` adds an update to that share
of the feeds; `GET /_stats` counts the answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import random
import ssl
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import uvloop
from aiohttp import web

BASE = datetime(2026, 6, 1, tzinfo=timezone.utc)
WORDS = ("database", "latency", "errors", "API", "webhooks", "degraded", "recovering", "customers", "region",
         "mitigation", "deploy", "queue", "monitoring", "investigating", "elevated", "requests", "timeouts")


class Feeds:
    def __init__(self, count: int, validators: bool, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.validators = validators
        self.incidents: list[list[list[tuple[datetime, str, str]]]] = []
        for feed in range(count):
            incidents = []
            for n in range(25):
                start = BASE - timedelta(hours=6 * (25 - n) + feed % 6)
                blocks = [(start, "Investigating", self._text()), (start + timedelta(minutes=20), "Update", self._text()),
                          (start + timedelta(minutes=50), "Resolved", self._text())]
                incidents.append(blocks)
            self.incidents.append(incidents)
        self.bodies: list[bytes] = [self._render(i) for i in range(count)]
        self.etags = [self._etag(i) for i in range(count)]
        self.modified = [format_datetime(BASE, usegmt=True)] * count
        self.clock = 0
        self.counts: dict[int, int] = {}

    def _text(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(3, 8))) + "."

    def _etag(self, index: int) -> str:
        return '"' + hashlib.sha1(self.bodies[index]).hexdigest()[:20] + '"'

    def _render(self, index: int, channel_date: str = "") -> bytes:
        items = []
        for n, blocks in reversed(list(enumerate(self.incidents[index]))):
            markup = "".join(
                f"<p><small>{d:%b} <var data-var='date'>{d.day:2d}</var>, <var data-var='time'>{d:%H:%M}</var> UTC"
                f"</small><br><strong>{label}</strong> - {text}</p>"
                for d, label, text in reversed(blocks)
            )
            code = f"f{index}i{n}"
            items.append(
                f"<item><title>Incident {n} on feed {index}</title><description>{html.escape(markup)}</description>"
                f"<pubDate>{format_datetime(blocks[-1][0])}</pubDate><link>https://bench.test/incidents/{code}</link>"
                f"<guid>https://bench.test/incidents/{code}</guid></item>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Feed {index} Status - Incident History</title><link>https://bench.test/{index}</link>"
            f"<description>Statuspage</description><pubDate>{channel_date}</pubDate>{''.join(items)}</channel></rss>"
        ).encode()

    def mutate(self, fraction: float) -> int:
        chosen = self.rng.sample(range(len(self.bodies)), max(1, round(len(self.bodies) * fraction)))
        for index in chosen:
            incident = self.incidents[index][-1]
            incident.append((incident[-1][0] + timedelta(minutes=5), "Update", self._text()))
            self.bodies[index] = self._render(index)
            self.etags[index] = self._etag(index)
            self.modified[index] = format_datetime(BASE + timedelta(seconds=len(incident)), usegmt=True)
        return len(chosen)

    async def handle(self, request: web.Request) -> web.Response:
        index = int(request.match_info["index"])
        if not self.validators:
            # Some servers stamp every answer with the time: the bytes change, the content does not.
            self.clock += 1
            body = self._render(index, format_datetime(BASE + timedelta(seconds=self.clock), usegmt=True))
            return self._answer(200, body, {})
        headers = {"ETag": self.etags[index], "Last-Modified": self.modified[index]}
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        if inm == self.etags[index] or (inm is None and ims == self.modified[index]):
            return self._answer(304, None, headers)
        return self._answer(200, self.bodies[index], headers)

    def _answer(self, status: int, body: bytes | None, headers: dict[str, str]) -> web.Response:
        self.counts[status] = self.counts.get(status, 0) + 1
        return web.Response(status=status, body=body, headers=headers, content_type="application/rss+xml" if body else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-validators", action="store_true")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--close", action="store_true", help="close the connection after every answer")
    args = parser.parse_args()
    feeds = Feeds(args.feeds, validators=not args.no_validators)

    @web.middleware
    async def close(request, handler):
        response = await handler(request)
        if args.close:
            response.force_close()
        return response

    async def mutate(request: web.Request) -> web.Response:
        return web.json_response({"mutated": feeds.mutate(float(request.query.get("fraction", "0.015")))})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({str(k): v for k, v in feeds.counts.items()})

    app = web.Application(middlewares=[close])
    app.router.add_get("/feeds/{index}.rss", feeds.handle)
    app.router.add_post("/_mutate", mutate)
    app.router.add_get("/_stats", stats)
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)

    runner = web.AppRunner(app, access_log=None)

    async def serve() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=context, backlog=4096)
        await site.start()
        print(f"port={runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    try:
        uvloop.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
