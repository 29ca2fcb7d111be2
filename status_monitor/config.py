"""Configuration: read once at start-up (file, then environment, then flags) into one typed object."""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from status_monitor.sources.catalogue import CatalogueError, Provider, SourceKind, http_url, load_catalogue, lookup
from status_monitor.webhooks.signatures import standard_webhook_key

DEFAULT_STATE = "monitor.db"
PUBLIC_MIN_INTERVAL = 30.0
ADMIN_TOKEN_MIN = 16  # characters


class ConfigError(Exception):
    """The configuration has problems: `problems` lists every one, each naming where it is
    (file and full key path, environment variable, or flag) and what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


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
    per_host_connections: int = 6  # polls (and connections) at once to one host, as browsers do
    request_timeout: float = 20.0
    max_body_bytes: int = 5 * 1024 * 1024  # one body's cap, decoded
    body_budget_bytes: int = 32 * 1024 * 1024  # large bodies in flight together (see sources.bodies.BodyBudget)
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


def _secret(value: str) -> str:
    standard_webhook_key(value)  # its ValueError names the problem, never the secret
    return value


def _notify_url(value: str) -> str:
    """Never echoes the URL: notification URLs carry their service's credentials."""
    if not notification_url_is_valid(value):
        raise ValueError("not a notification URL Apprise understands")
    return value


@functools.cache
def _catalogue() -> dict[str, Provider]:
    """The catalogue, read once per build_config (each provider name is checked against it)."""
    return load_catalogue()


def _provider_name(value: str) -> str:
    try:
        lookup(_catalogue(), value)
    except CatalogueError as exc:
        raise ValueError(str(exc)) from None
    return value


Secret = Annotated[str, AfterValidator(_secret)]
NotifyUrl = Annotated[str, AfterValidator(_notify_url)]
ProviderName = Annotated[str, AfterValidator(_provider_name)]


class _WebhooksFile(_Strict):
    incident_io_secret: Optional[Secret] = None
    secrets: dict[str, Secret] = {}
    require_signatures: Optional[bool] = None
    allow_unsigned: Optional[bool] = None


class _NotifyFile(_Strict):
    urls: list[NotifyUrl] = Field(min_length=1)
    providers: list[str] = []
    components: list[str] = []
    statuses: list[str] = []
    sources: list[Literal["rss", "api", "webhook"]] = []


class _ProviderFile(_Strict):
    name: ProviderName
    components: list[str] = []
    min_impact: Optional[Impact] = None
    interval: Optional[float] = None

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float | None) -> float | None:
        return value if value is None else _positive(value)


class _ConfigFile(_Strict):
    providers: list[Union[ProviderName, _ProviderFile]] = []
    interval: Optional[float] = None
    state: Optional[str] = None
    retention_days: Optional[int] = Field(default=None, ge=1)
    concurrency: Optional[int] = Field(default=None, ge=1, le=10000)
    per_host_connections: Optional[int] = Field(default=None, ge=1, le=1000)
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


# Which model checks the keys of each table, by its path with list positions left out.
_TABLES: dict[tuple[str, ...], type[BaseModel]] = {
    (): _ConfigFile,
    ("server",): _ServerFile,
    ("webhooks",): _WebhooksFile,
    ("feeds",): _FeedFile,
    ("notify",): _NotifyFile,
    ("providers",): _ProviderFile,
}


def _key_path(loc: Sequence[Any], raw: Mapping[str, Any]) -> str:
    """`webhooks.secrets.providers`, `feeds[2] ('GitHub').colour`: list positions count from 1."""
    path, node = "", raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            path += f"[{part + 1}]" + (f" ({name!r})" if isinstance(name, str) else "")
            node = item
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return path


def _hints(loc: Sequence[Any], error_type: str) -> str:
    """A suggestion for a misspelt key, and a hint for a top-level key that TOML filed under
    the table whose header comes before it."""
    key = loc[-1] if loc and isinstance(loc[-1], str) else None
    if key is None:
        return ""
    table = tuple(part for part in loc[:-1] if isinstance(part, str))
    model = _TABLES.get(table)
    if table:
        header = "[[" + table[0] + "]]" if table[0] in ("feeds", "notify") else "[" + ".".join(table) + "]"
        move = f"TOML files every key under the last header above it, so move it above {header} (before the first [header])"
        if key in _ConfigFile.model_fields and (model is None or key not in model.model_fields):
            return f"; {key!r} is a top-level key: {move}"
    if error_type != "extra_forbidden" or model is None:
        return ""
    close = difflib.get_close_matches(key, list(model.model_fields), n=3, cutoff=0.6)
    if close:
        return f"; did you mean {', '.join(repr(c) for c in close)}?"
    top = difflib.get_close_matches(key, list(_ConfigFile.model_fields), n=1, cutoff=0.6) if table else []
    return f"; did you mean the top-level key {top[0]!r}? {move}" if top else ""


def describe_errors(error: ValidationError, raw: dict[str, Any]) -> list[str]:
    """Every problem pydantic found, each as `full.key.path: what is wrong`."""
    problems: dict[str, None] = {}
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) >= 3 and loc[0] == "providers" and isinstance(loc[1], int):
            # An entry is a name or a table, and pydantic reports both branches: keep the one that fits.
            entry, table_branch = raw["providers"][loc[1]], loc[2] == _ProviderFile.__name__
            if isinstance(entry, dict) != table_branch:
                continue
            loc = loc[:2] + loc[3:]
            if not isinstance(entry, (str, dict)):
                problems[f"{_key_path(loc, raw)}: must be a provider name or a table {{ name = ... }}"] = None
                continue
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "missing"
        problems[f"{_key_path(loc, raw)}: {message}{_hints(loc, item['type'])}"] = None
    return list(problems)


def load_file(path: str | Path) -> _ConfigFile:
    """The config file, validated. Raises ConfigError listing every problem at once."""
    path = Path(path)
    where = f"config file {path}"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{where}: not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{where}: cannot be read ({exc})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: invalid TOML: {exc}"]) from None
    try:
        return _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([f"{where}: {problem}" for problem in describe_errors(exc, raw)]) from None


def provider_env_name(provider: str) -> str:
    """`WEBHOOK_SECRET_<PROVIDER>`'s suffix: upper-cased, other characters as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", provider.upper())


def build_config(
    defaults: tuple[FeedConfig, ...],
    file_path: str | None,
    env: Mapping[str, str] = os.environ,
    watch: Sequence[str] = (),
    catalogue: dict[str, Provider] | None = None,
    **flags: Any,
) -> Config:
    """File, then environment, then flags (flags set to None are not given). The sources are
    the file's [[feeds]] and `providers`, and `watch` (--watch); `defaults` if none is named.
    A relative `state` in the file is taken from the file's folder. Raises ConfigError with
    every problem found (file, secrets and notification URLs from the environment, flags).
    Provider names are looked up in `catalogue` (the built-in one when None)."""
    _catalogue.cache_clear()  # read afresh at each build: a reload sees an edited providers.toml
    problems: list[str] = []
    config = Config(feeds=defaults)
    chosen: list[FeedConfig] = []
    refs: list[tuple[str | _ProviderFile, str]] = [(name, "--watch") for name in watch]
    if file_path:
        where = f"config file {file_path}"
        try:
            data = load_file(file_path)
        except ConfigError as exc:
            problems += exc.problems
            data = None
        if data is not None:
            chosen = [FeedConfig(f.name, f.url, f.kind, f.interval, tuple(f.components), f.min_impact) for f in data.feeds]
            refs = [(ref, f"{where}: providers[{i + 1}]") for i, ref in enumerate(data.providers)] + refs
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
                state_path=_beside(file_path, data.state) if data.state else config.state_path,
                retention_days=data.retention_days or config.retention_days,
                concurrency=data.concurrency or config.concurrency,
                per_host_connections=data.per_host_connections or config.per_host_connections,
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
            if data.server.admin_token is not None:
                problems += _admin_token_problems(data.server.admin_token, f"{where}: server.admin_token")

    if refs:
        try:
            catalogue = catalogue if catalogue is not None else _catalogue()
        except CatalogueError as exc:
            raise ConfigError(problems + [str(exc)]) from None
        for ref, where in refs:
            try:
                chosen.append(_from_catalogue(catalogue, ref))
            except CatalogueError as exc:
                problems.append(f"{where}: {exc}")
    if chosen:
        config = replace(config, feeds=tuple(chosen))
        problems += _repeated_urls(config.feeds, f"config file {file_path}" if file_path else "--watch")
    secrets = dict(config.webhook_secrets)
    for name, value in env.items():
        if name.startswith("WEBHOOK_SECRET_") and value:
            problems += _secret_problems(value, f"environment variable {name}")
            secrets[name.removeprefix("WEBHOOK_SECRET_")] = value
    if env.get("INCIDENT_IO_WEBHOOK_SECRET"):
        problems += _secret_problems(env["INCIDENT_IO_WEBHOOK_SECRET"], "environment variable INCIDENT_IO_WEBHOOK_SECRET")
    if env.get("MONITOR_ADMIN_TOKEN"):
        problems += _admin_token_problems(env["MONITOR_ADMIN_TOKEN"], "environment variable MONITOR_ADMIN_TOKEN")
    if env.get("MONITOR_STATE"):
        config = replace(config, state_path=env["MONITOR_STATE"])
    env_urls = tuple(split_urls(env.get("NOTIFY_URLS", "")))
    problems += _notify_url_problems(env_urls, "environment variable NOTIFY_URLS")
    config = replace(
        config,
        admin_token=env.get("MONITOR_ADMIN_TOKEN") or config.admin_token,
        incident_io_secret=env.get("INCIDENT_IO_WEBHOOK_SECRET") or config.incident_io_secret,
        webhook_secrets=secrets,
        notify=config.notify + ((NotifyRoute(env_urls),) if env_urls else ()),
    )
    given = {k: v for k, v in flags.items() if v is not None}
    if "interval" in given:
        try:
            _positive(given["interval"])
        except ValueError as exc:
            problems.append(f"--interval: {exc}")
    config = replace(config, **given)
    problems += _listener_problems(config, f"config file {file_path}" if file_path else "flags")
    if problems:
        raise ConfigError(problems)
    return config


def _admin_token_problems(token: str, where: str) -> list[str]:
    """Never echoes the token."""
    if len(token) < ADMIN_TOKEN_MIN or not token.isascii() or not token.isprintable() or " " in token:
        return [f"{where}: must be at least {ADMIN_TOKEN_MIN} printable ASCII characters without spaces"]
    return []


def _listener_problems(config: Config, where: str) -> list[str]:
    problems = []
    if config.public_port is not None and not 1 <= config.public_port <= 65535:
        problems.append(f"{where}: the public port must be from 1 to 65535")
    if config.public_port is not None and config.public_port == config.port:
        problems.append(f"{where}: the public port {config.public_port} is also the main port; choose another")
    if config.allow_unsigned and config.require_signatures:
        problems.append(f"{where}: allow_unsigned and require_signatures contradict each other; choose one")
    return problems


def _beside(file_path: str, state: str) -> str:
    """A relative state path in a config file means beside that file, wherever one runs from;
    ":memory:" and a database URL (`scheme://...`) are kept as they are."""
    if state == ":memory:" or "://" in state:
        return state
    path = Path(state).expanduser()
    return str(path if path.is_absolute() else Path(file_path).resolve().parent / path)


def _secret_problems(secret: str, where: str) -> list[str]:
    try:
        standard_webhook_key(secret)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    return []


def notification_url_is_valid(url: str) -> bool:
    import apprise

    return apprise.Apprise.instantiate(url) is not None


def split_urls(value: str) -> list[str]:
    """NOTIFY_URLS: URLs separated by spaces, commas or semicolons, as Apprise's own CLI reads them."""
    from apprise.utils.parse import parse_urls

    return parse_urls(value)


def _notify_url_problems(urls: tuple[str, ...], where: str) -> list[str]:
    """Never echoes a URL: notification URLs carry their service's credentials."""
    return [
        f"{where}[{position + 1}]: not a notification URL Apprise understands"
        for position, url in enumerate(urls)
        if not notification_url_is_valid(url)
    ]


def _from_catalogue(catalogue: dict[str, Provider], ref: str | _ProviderFile) -> FeedConfig:
    """Raises CatalogueError (with close names) for a name that is not in the catalogue."""
    provider = lookup(catalogue, ref if isinstance(ref, str) else ref.name)
    if isinstance(ref, str):
        return provider_feed(provider)
    return replace(
        provider_feed(provider), interval=ref.interval, components=tuple(ref.components), min_impact=ref.min_impact
    )


def provider_feed(provider: Provider) -> FeedConfig:
    return FeedConfig(provider.name, provider.source_url, provider.kind)


def _repeated_urls(feeds: tuple[FeedConfig, ...], where: str) -> list[str]:
    seen: set[str] = set()
    problems = []
    for feed in feeds:
        if feed.url in seen:
            problems.append(f"{where}: {feed.name!r}: url {feed.url} is listed twice")
        seen.add(feed.url)
    return problems


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
