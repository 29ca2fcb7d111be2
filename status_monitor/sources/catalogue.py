"""The provider catalogue: well-known status pages and the best source of each, kept as data
in providers.toml beside this file, so that adding a provider is an edit, not code. A user's
own catalogue file (`--catalogue FILE`, same format) is laid over the built-in one."""

from __future__ import annotations

import datetime
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
    checked: datetime.date

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
    page: str  # what a person opens
    kind: str | None  # None: detected from the page at start-up
    url: str | None  # the source's URL where it is not the page itself (a feed on another host, say)
    checked: datetime.date  # the date of the newest evidence the entry rests on
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Everything it is looked up by, case-folded: id, display name, aliases."""
        return (self.id, self.name.casefold(), *(alias.casefold() for alias in self.aliases))

    @property
    def source_url(self) -> str:
        return self.url or self.page


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Provider]:
    """The entries of one catalogue file, by id, in file order. Raises CatalogueError for a
    file that cannot be read, is not TOML, breaks the schema or lists an id or name twice."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"provider catalogue {path}: {exc}") from None
    try:
        data = _File.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError(f"provider catalogue {path}: {'; '.join(_describe(e, raw) for e in exc.errors())}") from None
    providers: dict[str, Provider] = {}
    taken: set[str] = set()
    for entry in data.provider:
        provider = Provider(entry.id, entry.name, entry.page, entry.kind, entry.url, entry.checked, tuple(entry.aliases))
        if taken & set(provider.names):
            raise CatalogueError(f"provider catalogue {path}: {entry.id!r} ({entry.name}) is listed twice")
        taken.update(provider.names)
        providers[entry.id] = provider
    return providers


def _describe(error: dict, raw: dict) -> str:
    """One schema error as `provider #3 ('github'): checked: field required`."""
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "provider" and isinstance(loc[1], int):
        entries = raw.get("provider") or []
        entry = entries[loc[1]] if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else {}
        where = f"provider #{loc[1] + 1}" + (f" ({entry['id']!r})" if isinstance(entry.get("id"), str) else "") + ": "
        loc = loc[2:]
    field = ".".join(str(part) for part in loc)
    return f"{where}{field + ': ' if field else ''}{error['msg'].lower()}"


def merged_catalogue(user_path: Path | None) -> dict[str, Provider]:
    """The built-in catalogue with a user's catalogue file laid over it: an entry whose id is
    in both is the user's (it keeps the built-in one's place); the user's new ids follow.
    A user's entry named (or aliased) like another built-in entry replaces that one too, so
    that a name still means one provider."""
    catalogue = load_catalogue()
    if user_path is None:
        return catalogue
    for provider in load_catalogue(user_path).values():
        same_name = [p.id for p in catalogue.values() if set(p.names) & set(provider.names) and p.id != provider.id]
        for other in same_name:
            del catalogue[other]
        catalogue[provider.id] = provider
    return catalogue


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
