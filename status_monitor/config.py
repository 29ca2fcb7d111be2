"""Configuration: read once at start-up (file, then environment, then flags) into one typed object."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from status_monitor.sources.catalogue import CatalogueError, Provider, SourceKind, http_url, load_catalogue, lookup
from status_monitor.webhooks.signatures import standard_webhook_key

DEFAULT_STATE = "monitor.db"
PUBLIC_MIN_INTERVAL = 30.0
ADMIN_TOKEN_MIN = 16  # characters


class ConfigError(Exception):
    """A configuration problem; the message names the file, the feed and the problem."""


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    kind: str | None = None
    interval: float | None = None
    # Filters on what is printed and notified (never on what is remembered).
    components: tuple[str, ...] = ()
    min_impact: str | None = None


@dataclass(frozen=True)
class NotifyRoute:
    """Where events go ([[notify]] in the config file): every filter left empty lets all through."""

    urls: tuple[str, ...] = field(repr=False)
    providers: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    feeds: tuple[FeedConfig, ...]
    interval: float = 180.0
    host: str = "127.0.0.1"
    port: int = 8000
    # A second listener serving only the webhook routes and /health: the one to expose.
    public_port: int | None = None
    public_host: str = "127.0.0.1"
    # With a token, every route but /health and the webhooks needs it (bearer or login cookie).
    admin_token: str | None = field(default=None, repr=False)
    max_connections: int = 1000  # open HTTP connections, all listeners together
    max_event_streams: int = 100  # open /events/stream connections
    json_output: bool = False
    once: bool = False
    replay: bool = False
    log_level: str = "INFO"
    state_path: str = DEFAULT_STATE
    retention_days: int = 90
    concurrency: int = 100
    request_timeout: float = 20.0
    max_body_bytes: int = 5 * 1024 * 1024
    require_signatures: bool = False
    allow_unsigned: bool = False  # accept unsigned webhooks from anywhere, not only straight from loopback
    incident_io_secret: str | None = field(default=None, repr=False)
    webhook_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    notify: tuple[NotifyRoute, ...] = ()
    notify_retry_for: float = 3600.0  # seconds a failing notification is retried before it is given up
    notify_timeout: float = 15.0  # seconds one send may take

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval if feed.interval is not None else self.interval

    def secret_for(self, provider: str) -> str | None:
        return self.webhook_secrets.get(provider_env_name(provider))


# --- the TOML file, validated at the edge ---

def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


Impact = Literal["minor", "major", "critical"]


class _FeedFile(_Strict):
    name: str = Field(min_length=1)
    url: str
    kind: Optional[SourceKind] = None
    interval: Optional[float] = None
    components: list[str] = []
    min_impact: Optional[Impact] = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float | None) -> float | None:
        return value if value is None else _positive(value)


class _ServerFile(_Strict):
    host: Optional[str] = None
    port: Optional[int] = Field(default=None, ge=0, le=65535)
    public_host: Optional[str] = None
    public_port: Optional[int] = Field(default=None, ge=1, le=65535)
    admin_token: Optional[str] = None
    max_connections: Optional[int] = Field(default=None, ge=10, le=100_000)
    max_event_streams: Optional[int] = Field(default=None, ge=1, le=10_000)


class _WebhooksFile(_Strict):
    incident_io_secret: Optional[str] = None
    secrets: dict[str, str] = {}
    require_signatures: Optional[bool] = None
    allow_unsigned: Optional[bool] = None


class _NotifyFile(_Strict):
    urls: list[str] = Field(min_length=1)
    providers: list[str] = []
    components: list[str] = []
    statuses: list[str] = []
    sources: list[Literal["rss", "api", "webhook"]] = []


class _ProviderFile(_Strict):
    name: str
    components: list[str] = []
    min_impact: Optional[Impact] = None
    interval: Optional[float] = None

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float | None) -> float | None:
        return value if value is None else _positive(value)


class _ConfigFile(_Strict):
    providers: list[Union[str, _ProviderFile]] = []
    interval: Optional[float] = None
    state: Optional[str] = None
    retention_days: Optional[int] = Field(default=None, ge=1)
    concurrency: Optional[int] = Field(default=None, ge=1, le=10000)
    request_timeout: Optional[float] = None
    server: _ServerFile = _ServerFile()
    webhooks: _WebhooksFile = _WebhooksFile()
    feeds: list[_FeedFile] = []
    notify: list[_NotifyFile] = []
    notify_retry_for: Optional[float] = None
    notify_timeout: Optional[float] = None

    @field_validator("interval", "request_timeout", "notify_retry_for", "notify_timeout")
    @classmethod
    def _positive_seconds(cls, value: float | None) -> float | None:
        return value if value is None else _positive(value)


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "feeds" and isinstance(loc[1], int):
        index = loc[1]
        feeds = raw.get("feeds") or []
        name = feeds[index].get("name") if index < len(feeds) and isinstance(feeds[index], dict) else None
        where = f"feed #{index + 1}" + (f" ({name!r})" if name else "") + ": "
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "notify" and isinstance(loc[1], int):
        where = f"notify #{loc[1] + 1}: "
        loc = loc[2:]
    key = ".".join(str(part) for part in loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing"
    return f"{where}{key}: {message}" if key else f"{where}{message}"


def load_file(path: str | Path) -> _ConfigFile:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    try:
        return _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, raw) for e in exc.errors())
        raise ConfigError(f"config file {path}: {problems}") from None


def provider_env_name(provider: str) -> str:
    """`WEBHOOK_SECRET_<PROVIDER>`'s suffix: upper-cased, other characters as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", provider.upper())


def build_config(
    defaults: tuple[FeedConfig, ...],
    file_path: str | None,
    env: Mapping[str, str] = os.environ,
    watch: Sequence[str] = (),
    **flags: Any,
) -> Config:
    """File, then environment, then flags (flags set to None are not given). The sources are
    the file's [[feeds]] and `providers`, and `watch` (--watch); `defaults` if none is named."""
    config = Config(feeds=defaults)
    chosen: list[FeedConfig] = []
    refs: list[tuple[str | _ProviderFile, str]] = [(name, "--watch") for name in watch]
    if file_path:
        data = load_file(file_path)
        chosen = [FeedConfig(f.name, f.url, f.kind, f.interval, tuple(f.components), f.min_impact) for f in data.feeds]
        refs = [(ref, f"config file {file_path}: providers") for ref in data.providers] + refs
        secrets = {provider_env_name(k): v for k, v in data.webhooks.secrets.items()}
        config = replace(
            config,
            interval=data.interval or config.interval,
            host=data.server.host or config.host,
            port=data.server.port if data.server.port is not None else config.port,
            public_host=data.server.public_host or config.public_host,
            public_port=data.server.public_port,
            admin_token=data.server.admin_token,
            max_connections=data.server.max_connections or config.max_connections,
            max_event_streams=data.server.max_event_streams or config.max_event_streams,
            state_path=data.state or config.state_path,
            retention_days=data.retention_days or config.retention_days,
            concurrency=data.concurrency or config.concurrency,
            request_timeout=data.request_timeout or config.request_timeout,
            incident_io_secret=data.webhooks.incident_io_secret,
            webhook_secrets=secrets,
            require_signatures=bool(data.webhooks.require_signatures),
            allow_unsigned=bool(data.webhooks.allow_unsigned),
            notify=tuple(
                NotifyRoute(tuple(n.urls), tuple(n.providers), tuple(n.components), tuple(n.statuses), tuple(n.sources))
                for n in data.notify
            ),
            notify_retry_for=data.notify_retry_for or config.notify_retry_for,
            notify_timeout=data.notify_timeout or config.notify_timeout,
        )
        if data.webhooks.incident_io_secret:
            _check_secret(data.webhooks.incident_io_secret, f"config file {file_path}: webhooks.incident_io_secret")
        for provider, secret in data.webhooks.secrets.items():
            _check_secret(secret, f"config file {file_path}: webhooks.secrets.{provider}")
        if data.server.admin_token is not None:
            _check_admin_token(data.server.admin_token, f"config file {file_path}: server.admin_token")
        for index, route in enumerate(config.notify):
            _check_notify_urls(route.urls, f"config file {file_path}: notify #{index + 1}")
    if refs:
        catalogue = _catalogue()
        chosen += [_from_catalogue(catalogue, ref, where) for ref, where in refs]
    if chosen:
        config = replace(config, feeds=tuple(chosen))
        _check_unique(config.feeds, f"config file {file_path}" if file_path else "--watch")
    secrets = dict(config.webhook_secrets)
    for name, value in env.items():
        if name.startswith("WEBHOOK_SECRET_") and value:
            _check_secret(value, f"environment variable {name}")
            secrets[name.removeprefix("WEBHOOK_SECRET_")] = value
    if env.get("INCIDENT_IO_WEBHOOK_SECRET"):
        _check_secret(env["INCIDENT_IO_WEBHOOK_SECRET"], "environment variable INCIDENT_IO_WEBHOOK_SECRET")
    if env.get("MONITOR_ADMIN_TOKEN"):
        _check_admin_token(env["MONITOR_ADMIN_TOKEN"], "environment variable MONITOR_ADMIN_TOKEN")
    env_urls = tuple(split_urls(env.get("NOTIFY_URLS", "")))
    config = replace(
        config,
        admin_token=env.get("MONITOR_ADMIN_TOKEN") or config.admin_token,
        incident_io_secret=env.get("INCIDENT_IO_WEBHOOK_SECRET") or config.incident_io_secret,
        webhook_secrets=secrets,
        notify=config.notify + ((NotifyRoute(env_urls),) if env_urls else ()),
    )
    _check_notify_urls(env_urls, "environment variable NOTIFY_URLS")
    given = {k: v for k, v in flags.items() if v is not None}
    if "interval" in given:
        _positive_flag(given["interval"])
    config = replace(config, **given)
    _check_listeners(config, f"config file {file_path}" if file_path else "flags")
    return config


def _check_admin_token(token: str, what: str) -> None:
    """Never echoes the token."""
    if len(token) < ADMIN_TOKEN_MIN or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"{what}: must be at least {ADMIN_TOKEN_MIN} printable ASCII characters without spaces")


def _check_listeners(config: Config, where: str) -> None:
    if config.public_port is not None and not 1 <= config.public_port <= 65535:
        raise ConfigError(f"{where}: the public port must be from 1 to 65535")
    if config.public_port is not None and config.public_port == config.port:
        raise ConfigError(f"{where}: the public port {config.public_port} is also the main port; choose another")
    if config.allow_unsigned and config.require_signatures:
        raise ConfigError(f"{where}: allow_unsigned and require_signatures contradict each other; choose one")


def _check_secret(secret: str, what: str) -> None:
    try:
        standard_webhook_key(secret)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def notification_url_is_valid(url: str) -> bool:
    import apprise

    return apprise.Apprise.instantiate(url) is not None


def split_urls(value: str) -> list[str]:
    """NOTIFY_URLS: URLs separated by spaces, commas or semicolons, as Apprise's own CLI reads them."""
    from apprise.utils.parse import parse_urls

    return parse_urls(value)


def _check_notify_urls(urls: tuple[str, ...], where: str) -> None:
    """Never echoes a URL: notification URLs carry their service's credentials."""
    for position, url in enumerate(urls):
        if not notification_url_is_valid(url):
            raise ConfigError(f"{where}: url #{position + 1} is not a notification URL Apprise understands")


def _positive_flag(value: float) -> None:
    try:
        _positive(value)
    except ValueError as exc:
        raise ConfigError(f"--interval: {exc}") from None


def _catalogue() -> dict[str, Provider]:
    try:
        return load_catalogue()
    except CatalogueError as exc:
        raise ConfigError(str(exc)) from None


def _from_catalogue(catalogue: dict[str, Provider], ref: str | _ProviderFile, where: str) -> FeedConfig:
    name = ref if isinstance(ref, str) else ref.name
    try:
        provider = lookup(catalogue, name)
    except CatalogueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if isinstance(ref, str):
        return provider_feed(provider)
    return replace(
        provider_feed(provider), interval=ref.interval, components=tuple(ref.components), min_impact=ref.min_impact
    )


def provider_feed(provider: Provider) -> FeedConfig:
    return FeedConfig(provider.name, provider.source_url, provider.kind)


def _check_unique(feeds: tuple[FeedConfig, ...], where: str) -> None:
    seen: set[str] = set()
    for feed in feeds:
        if feed.url in seen:
            raise ConfigError(f"{where}: {feed.name!r}: url {feed.url} is listed twice")
        seen.add(feed.url)


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def is_loopback_host(host: str) -> bool:
    host = host.lower().strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def fast_public_feeds(config: Config) -> list[FeedConfig]:
    """Public feeds polled more often than every 30 s: worth a warning, not a refusal."""
    return [
        feed for feed in config.feeds
        if config.feed_interval(feed) < PUBLIC_MIN_INTERVAL and not is_loopback(feed.url)
    ]
