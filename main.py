"""Status-page monitor: polls feeds and receives webhooks in one asyncio loop, and prints
each new incident update once. `python3 main.py --help` lists the options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import difflib
import gc
import logging
import signal
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
import uvicorn

from event_handler import EventHandler
from rss_poller import FeedPoller, FetchError, fetch, make_client
from status_monitor import __version__
from status_monitor.config import Config, ConfigError, FeedConfig, build_config, fast_public_feeds, is_loopback_host
from status_monitor.filters import filters_by_provider
from status_monitor.outputs.dashboard import EventStream, create_router, provider_cards
from status_monitor.outputs.metrics import MonitorCollector, create_registry
from status_monitor.outputs.notify import Notifier, send_test
from status_monitor.outputs.stdout import Output, StreamOutput
from status_monitor.redact import redact_url, remember_secret, remember_url_secrets, scrub_every_log_handler
from status_monitor.sources.bodies import BodyBudget
from status_monitor.sources.catalogue import (
    DEFAULT_PROVIDERS,
    CatalogueError,
    Provider,
    load_catalogue,
    lookup,
    merged_catalogue,
)
from status_monitor.sources.check import HEADER, OK, Unreachable, check_providers
from status_monitor.sources.detect import Answer
from status_monitor.storage import StateError, StoreUnavailable, open_store
from status_monitor.storage.sqlite import SQLiteStore
from status_monitor.web.connections import ConnectionLimits, connections_allowed
from webhook_server import WebhookReceiver, create_app

log = logging.getLogger("monitor")

CATALOGUE = load_catalogue()
# The sources monitored when the config names none: the catalogue's entries for the
# default list, each with its best source.
feed_configs = [
    {"name": p.name, "url": p.source_url, "kind": p.kind} for p in (CATALOGUE[i] for i in DEFAULT_PROVIDERS)
]

FLUSH_EVERY = 5.0  # seconds between two writes of feeds' validators and health
TRIM_EVERY = 60.0  # at most this often, and only after this many parses, is freed memory returned
TRIM_AFTER_PARSES = 50
PRUNE_EVERY = 6 * 3600.0  # seconds between two deletions of expired events and delivery ids
SHUTDOWN_GRACE = 3.0  # seconds in-flight polls, webhooks and notifications get after SIGINT/SIGTERM


class _Server(uvicorn.Server):
    """Uvicorn inside our loop: the monitor, not uvicorn, owns the signals, and the server's
    loop wakes once a second (its Date header's resolution) rather than ten times to see
    whether it should exit: `exit()` tells it at once."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield

    def exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # a counter of 0 refreshes the Date header
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()


class ServeError(Exception):
    """The HTTP server could not start (uvicorn has said why on stderr)."""


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind; a task must raise, not exit
        raise ServeError(f"cannot serve HTTP on {server.config.host}:{server.config.port}") from None


def remember_config_secrets(config: Config) -> None:
    """Every secret of the config, for `redact.scrub`: feed URLs' credentials and tokens,
    webhook secrets, notification URLs."""
    for feed in config.feeds:
        remember_url_secrets(feed.url)
    for secret in (config.incident_io_secret, *config.webhook_secrets.values()):
        remember_secret(secret)
    for route in config.notify:
        for url in route.urls:
            remember_secret(url)
            remember_url_secrets(url)


# Settings a reload cannot change in a running process: they keep their value, with a warning.
RESTART_ONLY = (
    "host", "port", "public_host", "public_port", "admin_token", "max_connections", "max_event_streams",
    "state_path", "concurrency", "request_timeout", "max_body_bytes", "json_output",
)


class Monitor:
    def __init__(
        self, config: Config, outputs: list[Output] | None = None, reload_config: Callable[[], Config] | None = None
    ) -> None:
        """`reload_config` builds the config again (raising ConfigError): with it, SIGHUP
        reloads the config file in place (see `reload`)."""
        self.config = config
        remember_config_secrets(config)
        self._reload_config = reload_config
        self._reloading: asyncio.Task | None = None
        self._poller: FeedPoller | None = None
        self._receiver: WebhookReceiver | None = None
        self.store = open_store(config.state_path)
        self.notifier = Notifier(config, self.store)
        self.handler = EventHandler(
            self.store, outputs or [StreamOutput(config.json_output)], self.notifier, filters_by_provider(config.feeds)
        )
        self._stop = asyncio.Event()

    async def open(self) -> None:
        await self.store.open()
        log.info("state in %s", self.store.path)
        await self.store.prune(self.config.retention_days)
        await self.handler.load()

    async def start(
        self,
        feed_configs: Sequence[dict[str, Any]] | None = None,
        rss_interval: float | None = None,
        webhook_port: int | None = None,
    ) -> None:
        """Runs until SIGINT/SIGTERM (or `stop()`), then shuts down within the grace period."""
        if feed_configs is not None:
            self.config = replace(self.config, feeds=_feeds(feed_configs))
        if rss_interval is not None:
            self.config = replace(self.config, interval=float(rss_interval))
        if webhook_port is not None:
            self.config = replace(self.config, port=webhook_port)
        config = self.config
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        async with make_client(config) as client:
            self._poller = poller = FeedPoller(config, self.handler, self.store, client)
            await poller.load()
            self._receiver = receiver = WebhookReceiver(config, self.handler, self.store)
            await receiver.load()
            handler = self.handler
            registry = create_registry(MonitorCollector(
                handler.stats, lambda: handler.open_incidents, poller.stats, poller.feeds, receiver.stats, self.notifier,
                (lambda: self.store.fleet) if self.store.shared else None,
            ))
            stream = EventStream(self.store, config.max_event_streams)
            if self.store.shared:  # every replica's events, read from the database in id order
                self.store.listen(stream.wake)
            else:
                handler.subscribe(stream.publish)
            dashboard = create_router(
                lambda: provider_cards(poller.feeds.values(), handler.providers, handler.open_incident_list()), stream
            )
            limits = connection_limits(config)
            app, public_app = create_app(
                config, receiver, self.handler, self.store, poller, self.notifier, registry, dashboard, limits
            )
            freeze_startup_heap()
            listeners = [(app, config.host, config.port)]
            if config.public_port is not None:
                listeners.append((public_app, config.public_host, config.public_port))
            servers = [_Server(_server_config(config, limits, *listener)) for listener in listeners]
            scrub_every_log_handler()  # uvicorn has set up its loggers' own handlers
            serving = [asyncio.create_task(_serve(server)) for server in servers]
            while not all(server.started for server in servers) and not any(task.done() for task in serving):
                await asyncio.sleep(0.01)
            failed = [task for task in serving if task.done()]
            if failed:  # one listener could not bind: stop the others, and say why
                for server in servers:
                    server.exit()
                await asyncio.gather(*serving, return_exceptions=True)
                failed[0].result()
            self._announce_start(config, len(poller.feeds))
            await self.notifier.start()
            if self.store.shared:
                await self.store.join_fleet()
            poller.start()
            housekeeping = asyncio.create_task(self._housekeeping(poller))
            await self._stop.wait()
            log.info("shutting down")
            housekeeping.cancel()
            if self._reloading is not None:
                self._reloading.cancel()
            stream.close()
            for server in servers:
                server.exit()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(poller.stop(SHUTDOWN_GRACE), *serving, self.notifier.stop(SHUTDOWN_GRACE)),
                    SHUTDOWN_GRACE + 1,
                )

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: reload the config; a second signal during a reload waits for it to end."""
        previous = self._reloading

        async def reload_after() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self.reload()
            except Exception:  # the monitor goes on; the next SIGHUP tries again
                log.exception("reload failed")

        self._reloading = asyncio.create_task(reload_after(), name="reload")

    async def reload(self) -> bool:
        """Builds the config again and applies it without a restart: sources, providers,
        filters, notification routes and secrets are added, changed or removed; what was
        announced stays announced. A config with problems is refused, and the running one
        kept. Returns whether the new config was applied."""
        if self._reload_config is None or self._poller is None or self._receiver is None:
            log.warning("reload: nothing to reload from (no config loader, or not running)")
            return False
        try:
            new = self._reload_config()
        except ConfigError as exc:
            log.error("config not reloaded, the running one is kept: %s", "; ".join(exc.problems))
            return False
        kept = [key for key in RESTART_ONLY if getattr(new, key) != getattr(self.config, key)]
        if kept:
            log.warning("reload: %s changed; that takes a restart (kept as it was)", ", ".join(kept))
        new = replace(new, **{key: getattr(self.config, key) for key in RESTART_ONLY}, once=self.config.once)
        added, removed, changed = await self._poller.reconfigure(new)
        self.handler.set_filters(filters_by_provider(new.feeds))
        self._receiver.reconfigure(new)
        await self.notifier.reconfigure(new)
        if new.log_level != self.config.log_level:
            logging.getLogger().setLevel(new.log_level)
        self.config = new
        log.info(
            "config reloaded: %s (%s added, %s removed, %s changed), %s",
            plural(len(self._poller.feeds), "source"), _names(added), _names(removed), _names(changed),
            plural(len(self.notifier.targets), "notification target"),
        )
        return True

    async def _housekeeping(self, poller: FeedPoller) -> None:
        """Writes feeds' health to disk now and then, drops expired events, and gives the
        memory freed by a burst of parsing back to the system."""
        last_prune = last_trim = time.monotonic()
        parsed_at_trim = poller.stats.parsed_total
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.store.flush()
            burst = poller.stats.parsed_total - parsed_at_trim >= TRIM_AFTER_PARSES
            if burst and time.monotonic() - last_trim > TRIM_EVERY:
                last_trim, parsed_at_trim = time.monotonic(), poller.stats.parsed_total
                release_free_memory()
            if time.monotonic() - last_prune > PRUNE_EVERY:
                last_prune = time.monotonic()
                await self.store.prune(self.config.retention_days)

    async def run_once(self) -> bool:
        """Polls every source once; returns whether all were read (each failure is logged)."""
        async with make_client(self.config) as client:
            poller = FeedPoller(self.config, self.handler, self.store, client)
            await poller.load()
            await self.notifier.start()
            await poller.poll_all()
            await self.notifier.stop(self.config.notify_timeout)
            return not poller.failing

    async def close(self) -> None:
        await self.store.close()

    def _announce_start(self, config: Config, sources: int) -> None:
        providers = len({feed.name.casefold() for feed in config.feeds})
        if config.public_port is None:
            where = f"dashboard and webhooks on http://{config.host}:{config.port}"
        else:
            where = (
                f"dashboard on http://{config.host}:{config.port}; webhooks on it and on the public listener "
                f"http://{config.public_host}:{config.public_port} (webhooks and /health only)"
            )
        log.info(
            "monitoring %s (%s) every %g s; %s",
            plural(providers, "provider"), plural(sources, "source"), config.interval, where,
        )
        unsigned = (
            "from anywhere (--allow-unsigned): anyone who reaches it can post events"
            if config.allow_unsigned else "straight from this machine only"
        )
        if config.incident_io_secret is None:
            if config.require_signatures:
                log.warning("no incident.io secret: /webhook/incident-io refuses every request (--require-signatures)")
            else:
                log.warning("no incident.io secret: /webhook/incident-io accepts unsigned requests %s", unsigned)
        if not config.webhook_secrets and not config.require_signatures:
            log.warning("no generic webhook secrets: /webhook/generic/{provider} accepts unsigned requests %s", unsigned)
        if config.admin_token is None and not is_loopback_host(config.host):
            log.warning(
                "the dashboard, /events, /stats and /metrics on %s:%d are open to every machine that reaches it: "
                "set MONITOR_ADMIN_TOKEN, or serve them on 127.0.0.1 and expose --public-port instead",
                config.host, config.port,
            )
        for target in self.notifier.targets.values():
            log.info("notifying %s", target.label)


def connection_limits(config: Config) -> ConnectionLimits:
    """`max_connections`, or fewer where the process may not open that many files."""
    allowed = connections_allowed(config.max_connections, reserve=config.concurrency + 100)
    if allowed < config.max_connections:
        log.warning(
            "max_connections %d lowered to %d: the limit on open files (ulimit -n) leaves no room for more",
            config.max_connections, allowed,
        )
    return ConnectionLimits(max(allowed, 1))


def _server_config(config: Config, limits: ConnectionLimits, app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=limits.protocol(),  # uvicorn's httptools protocol, with timeouts and limits (connections.py)
        ws="none",
        lifespan="off",
        access_log=config.log_level == "DEBUG",
        log_config=None,  # uvicorn's lines go through our handler and format
        log_level=config.log_level.lower(),
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=False,  # the peer address is the one the socket sees: forwarding headers are not trusted
        server_header=False,
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def freeze_startup_heap() -> None:
    """Moves every object alive after start-up (about 70,000, mostly imported modules) out of
    the collector's reach: a full collection no longer walks them, which took about 40 ms a
    time here, each one a pause of the loop (README, Performance)."""
    gc.collect()
    gc.freeze()


def release_free_memory() -> None:
    """glibc keeps freed memory for reuse; after a cold cycle that is half the resident
    size. malloc_trim hands it back (Linux with glibc; elsewhere nothing happens). It takes
    a few milliseconds, so it runs after bursts of parsing, not on every tick."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _feeds(configs: Sequence[dict[str, Any]]) -> tuple[FeedConfig, ...]:
    return tuple(FeedConfig(c["name"], c["url"], c.get("kind"), c.get("interval")) for c in configs)


def _since(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Monitor third-party status pages (feeds and webhooks); print each new incident update once.",
        epilog="Events go to stdout; logs go to stderr.",
    )
    parser.add_argument("--version", action="version", version=f"status-page-monitor {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (flags override it)")
    parser.add_argument(
        "--check-config", action="store_true",
        help="check the config file and the environment's secrets, list every problem, exit (0 valid, 2 not)",
    )
    parser.add_argument(
        "--watch", action="append", default=[], metavar="NAME",
        help="monitor this provider from the catalogue (repeatable; see --list-providers)",
    )
    parser.add_argument("--list-providers", action="store_true", help="print the provider catalogue and exit")
    parser.add_argument(
        "--catalogue", metavar="FILE",
        help="a provider catalogue of your own (providers.toml's format), added to the built-in one; an id in both is yours",
    )
    parser.add_argument(
        "--check-providers", nargs="*", metavar="ID",
        help="fetch every catalogue entry's source (or the named ones) now, print what was found, exit 0 only if all are OK",
    )
    parser.add_argument("--host", help="address to serve HTTP on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve HTTP on (default 8000)")
    parser.add_argument(
        "--public-port", type=int, metavar="PORT",
        help="also serve the webhook routes and /health, and nothing else, on this port: the one to expose",
    )
    parser.add_argument("--public-host", metavar="HOST", help="address of the --public-port listener (default 127.0.0.1)")
    parser.add_argument("--interval", type=float, metavar="SECONDS", help="seconds between polls of a feed (default 180)")
    parser.add_argument("--json", action="store_true", default=None, dest="json_output", help="print one JSON object per line")
    parser.add_argument("--once", action="store_true", help="poll every feed once, print, exit (no HTTP server)")
    parser.add_argument("--replay", action="store_true", default=None, help="on a feed's first poll, announce its history too")
    parser.add_argument(
        "--state", dest="state_path", metavar="PATH|URL",
        help="SQLite state file (default ./monitor.db; :memory: keeps nothing), or a PostgreSQL database "
        "shared by replicas: postgresql://user:password@host:port/db (also MONITOR_STATE)",
    )
    parser.add_argument("--require-signatures", action="store_true", default=None, help="refuse unsigned webhooks (401)")
    parser.add_argument(
        "--allow-unsigned", action="store_true", default=None,
        help="accept unsigned webhooks from anywhere, not only straight from this machine (warned about)",
    )
    parser.add_argument("--history", action="store_true", help="print stored events and exit")
    parser.add_argument(
        "--test-notify", action="store_true",
        help="send a test message to every notification target, report each, exit (0 all delivered, 1 any failed)",
    )
    parser.add_argument(
        "--migrate-state", nargs=2, metavar=("SQLITE_FILE", "POSTGRESQL_URL"),
        help="copy a SQLite state into an empty PostgreSQL database (seen keys, events, feeds, outbox...), exit",
    )
    parser.add_argument("--provider", help="with --history: only this provider")
    parser.add_argument(
        "--since", type=_since, metavar="TIME",
        help="with --history: only events posted since this ISO 8601 time (the time printed; UTC if no zone is given)",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper, help="stderr log level (default INFO)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):  # until the loop takes over: stop at once, cleanly
        signal.signal(sig, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload asked for before start-up ends: nothing to do
    args = parse_args(argv)
    try:
        catalogue = merged_catalogue(Path(args.catalogue)) if args.catalogue else CATALOGUE
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list_providers:
        print_catalogue(catalogue)
        return 0
    if args.migrate_state:
        return asyncio.run(migrate_state(*args.migrate_state))

    def load() -> Config:
        try:  # the catalogue is read afresh at each reload, the user's file included
            own = merged_catalogue(Path(args.catalogue)) if args.catalogue else None  # None: the built-in one
        except CatalogueError as exc:
            raise ConfigError([str(exc)]) from None
        return build_config(
            _feeds(feed_configs),
            args.config,
            watch=args.watch,
            catalogue=own,
            host=args.host,
            port=args.port,
            public_port=args.public_port,
            public_host=args.public_host,
            interval=args.interval,
            json_output=args.json_output,
            replay=args.replay,
            state_path=args.state_path,
            require_signatures=args.require_signatures,
            allow_unsigned=args.allow_unsigned,
            log_level=args.log_level,
            once=args.once or None,
        )

    try:
        config = load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        if args.check_config:
            print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return 2
    if args.check_config:
        print(describe_config(config))
        return 0
    configure_logging(config.log_level)
    scrub_every_log_handler()
    if config.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
    for feed in fast_public_feeds(config):
        log.warning("%s is polled every %g s: public status pages ask for 30 s or more", feed.name, config.feed_interval(feed))
    if args.check_providers is not None:
        try:
            chosen = [lookup(catalogue, name) for name in args.check_providers] or list(catalogue.values())
        except CatalogueError as exc:
            print(f"error: --check-providers: {exc}", file=sys.stderr)
            return 2
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_check_providers(config, chosen))
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(_run(config, args, load))


def configure_logging(level: str) -> None:
    """One format for every log line on stderr, uvicorn's included: `2026-11-30T13:44:08Z
    WARNING monitor.poller: ...`, times in UTC."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)


def describe_config(config: Config) -> str:
    """`--check-config`'s answer for a valid config: what the monitor would do with it."""
    targets = {url for route in config.notify for url in route.urls}
    names = ", ".join(feed.name for feed in config.feeds)
    return (
        f"config OK: {plural(len(config.feeds), 'source')} ({names}) every {config.interval:g} s; "
        f"state {config.state_path}; HTTP on {config.host}:{config.port}; "
        f"{plural(len(config.notify), 'notification route')} to {plural(len(targets), 'target')}"
    )


def print_catalogue(catalogue: dict[str, Provider]) -> None:
    """One row an entry: id, name, page, the date of its newest evidence, and its source
    (the kind, or how it is found, then the source's URL where it is not the page)."""
    rows = [
        (p.id, p.name, p.page, p.checked.isoformat(), p.kind or ("detected at start-up" if not p.url else "feed"))
        + ((p.url,) if p.url else ())
        for p in catalogue.values()
    ]
    rows.insert(0, ("ID", "NAME", "PAGE", "CHECKED", "SOURCE"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + "  ".join(row[4:]))


async def _check_providers(config: Config, providers: list[Provider]) -> int:
    """--check-providers: one line an entry on stdout, in catalogue order; 0 only if all are OK."""
    budget = BodyBudget(config.body_budget_bytes, config.max_body_bytes)
    async with make_client(config) as client:

        async def get(url: str) -> Answer:
            try:
                async with budget.lease() as lease:
                    result = await fetch(client, httpx.URL(url), [], config.max_body_bytes, config.request_timeout * 1.5, lease)
            except (FetchError, httpx.InvalidURL) as exc:
                raise Unreachable(str(exc)) from None
            return Answer(result.status, result.body, result.url or url)

        results = await check_providers(providers, get, config.concurrency)
    print(HEADER)
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if r.verdict != OK]
    print(f"{len(results) - len(failed)} of {len(results)} OK", file=sys.stderr)
    return 0 if not failed else 1


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (requirements.txt has it): cheaper sockets and TLS."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def migrate_state(sqlite_path: str, url: str) -> int:
    """--migrate-state: copies a SQLite state into an empty PostgreSQL database; says what was
    copied (or why nothing was) on stderr. Returns the exit status: 0, or 2 on an error."""
    if not Path(sqlite_path).is_file():
        print(f"error: state file {sqlite_path}: not found", file=sys.stderr)
        return 2
    if not url.startswith(("postgresql://", "postgres://")):
        print(f"error: {redact_url(url)}: not a postgresql:// URL", file=sys.stderr)
        return 2
    source, target = SQLiteStore(sqlite_path), open_store(url)
    try:
        await source.open()
        await target.open()
        copied = await target.copy_from(source.db)
    except (StateError, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await source.close()
        await target.close()
    counts = ", ".join(f"{n} {table}" for table, n in copied.items())
    print(f"copied {sqlite_path} to {target.path}: {counts}", file=sys.stderr)
    return 0


async def _test_notify(config: Config) -> int:
    if not config.notify:
        print("error: no notification targets: add [[notify]] to the config file or set NOTIFY_URLS", file=sys.stderr)
        return 2
    results = await send_test(config)
    for result in results:
        print(f"delivered  {result.target}" if result.delivered else f"FAILED     {result.target}: {result.reason}")
    return 0 if all(result.delivered for result in results) else 1


class HistoryError(Exception):
    """`--history` was asked for something the state file does not have."""


async def print_history(config: Config, provider: str | None, since: datetime | None) -> None:
    """`--history`: the stored events, oldest first, in the output format; `since` applies
    to the time printed (when the provider posted the update, else when it was received).
    Reads the state file without locking or creating it, so it runs beside a monitor.
    Raises StateError, or HistoryError for a provider with no events that is not configured."""
    store = open_store(config.state_path, read_only=True)
    await store.open()
    try:
        stored = await store.list_events(provider=provider, limit=1_000_000, oldest_first=True)
        if provider and not stored and provider.casefold() not in {f.name.casefold() for f in config.feeds}:
            known = await store.event_providers()
            close = difflib.get_close_matches(provider.casefold(), [k.casefold() for k in known], n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(k) for k in known if k.casefold() in close)}?" if close else ""
            listed = ", ".join(known) if known else "none yet"
            raise HistoryError(f"--provider {provider!r}: no stored events{hint} (providers with events: {listed})")
        output = StreamOutput(config.json_output)
        for event in (s.event for s in stored):
            printed_time = event.occurred_at or event.received_at
            if since is None or (printed_time is not None and printed_time >= since):
                output.emit(event)
    finally:
        await store.close()


async def _run(config: Config, args: argparse.Namespace, load: Callable[[], Config]) -> int:
    if args.test_notify:
        return await _test_notify(config)
    if args.history:
        try:
            await print_history(config, args.provider, args.since)
        except (StateError, HistoryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    monitor = Monitor(config, reload_config=load)
    try:
        await monitor.open()
        try:
            if config.once:
                if not await monitor.run_once():
                    return 1
            else:
                await monitor.start()
        finally:
            await monitor.close()
    except (StateError, ServeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
