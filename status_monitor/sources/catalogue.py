"""The provider catalogue: well-known status pages and the best source of each, kept as data
in providers.toml beside this file, so that adding a provider is an edit, not code."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from status_monitor.sources.kinds import API_KINDS, FEED_KINDS

CATALOGUE_PATH = Path(__file__).resolve().parent / "providers.toml"
# What `python3 main.py` monitors when the config names nothing.
DEFAULT_PROVIDERS = ("openai", "github", "aws", "cloudflare", "slack", "google-cloud", "anthropic")

# Every kind a config or catalogue entry may name: those the registry (kinds.py) reads.
SourceKind = Literal[(*FEED_KINDS, *API_KINDS)]


class CatalogueError(Exception):
    """The catalogue file is broken, or a name is not in it (the message suggests names)."""


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    page: str
    kind: Optional[SourceKind] = None
    url: Optional[str] = None
    aliases: list[str] = []  # other names people know it by (Anthropic: "claude")

    @field_validator("page", "url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return value if value is None else http_url(value)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: list[_Entry]


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    page: str
    kind: str | None  # None: detected from the page at start-up
    url: str | None  # the source's URL where it is not the page itself
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Everything it is looked up by, case-folded: id, display name, aliases."""
        return (self.id, self.name.casefold(), *(alias.casefold() for alias in self.aliases))

    @property
    def source_url(self) -> str:
        return self.url or self.page


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Provider]:
    try:
        data = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise CatalogueError(f"provider catalogue {path}: {exc}") from None
    providers: dict[str, Provider] = {}
    taken: set[str] = set()
    for entry in data.provider:
        provider = Provider(entry.id, entry.name, entry.page, entry.kind, entry.url, tuple(entry.aliases))
        if taken & set(provider.names):
            raise CatalogueError(f"provider catalogue {path}: {entry.id!r} ({entry.name}) is listed twice")
        taken.update(provider.names)
        providers[entry.id] = provider
    return providers


def lookup(catalogue: dict[str, Provider], name: str) -> Provider:
    """By id, display name or alias, ignoring case. Raises CatalogueError naming close ones."""
    wanted = name.strip().casefold()
    ids = {known: p.id for p in catalogue.values() for known in p.names}
    if wanted in ids:
        return catalogue[ids[wanted]]
    close = [ids[n] for n in difflib.get_close_matches(wanted, list(ids), n=5, cutoff=0.6)]
    close += [ident for key, ident in ids.items() if wanted and wanted in key]
    close = list(dict.fromkeys(close))[:3]
    hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    raise CatalogueError(f"unknown provider {name!r}{hint} (python3 main.py --list-providers lists them)")
