"""Feed documents as plain entries: bytes in, a `Document` out, whichever reader ran.

The bytes are first decoded as RFC 7303 section 8 orders it (byte order mark, then the
HTTP charset, then the XML declaration, then UTF-8), a bad byte replaced by U+FFFD and the
rest kept, and given to the readers as UTF-8. HTML character entity names a feed uses
without declaring them (`&nbsp;`) become character references.

Two readers then read the same bytes: a fast one (a strict lxml tree, read directly) and
feedparser. The fast one reads only what it is sure to read as feedparser does (RSS 2.0
and Atom 1.0 of the usual shapes) and declines anything else (malformed XML, a DTD,
xml:base, markup inside a text element, xhtml or base64 content, elements feedparser maps
onto the fields read), which feedparser then reads. tests/test_readers.py holds the two to
identical entries. Nothing here touches the network, the clock or any state.
"""

from __future__ import annotations

import codecs
import html
import html.entities
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin

from lxml import etree

from status_monitor.sources.text import html_to_text

_STRICT_XML = etree.XMLParser(recover=False, resolve_entities=False, no_network=True, huge_tree=False)


class FeedError(Exception):
    """The body is not a usable feed: an error for that feed, never "no incidents"."""


class Declined(FeedError):
    """The fast reader leaves this document to feedparser."""


@dataclass
class Entry:
    """One feed item or entry, as plain data, whichever reader produced it."""

    id: str
    link: str  # absolute where the feed's base or final URL made it so
    title: str  # plain text
    content: str  # HTML
    published: datetime | None  # the item's date: published, else updated; UTC, whole seconds
    tags: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str  # plain text
    generator: str
    entries: list[Entry]


# An entity declaration as UTF-8 (and every ASCII-compatible encoding), UTF-16 and UTF-32
# write it. No status feed declares entities; billion laughs and quadratic blowup need them.
_ENTITY_DECLARATIONS = tuple("<!ENTITY".encode(e) for e in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))


def refuse_entity_declarations(body: bytes) -> None:
    """Raises FeedError for a document that declares XML entities (in its DTD, RFC 7303
    section 5; or in text, where a real feed never writes the sequence unescaped): neither
    reader is then given it, so no entity is expanded, internal (billion laughs, quadratic
    blowup) or external (a file or URL), and the refusal costs one scan of the bytes."""
    if any(declaration in body for declaration in _ENTITY_DECLARATIONS):
        raise FeedError("XML entity expansion refused (the document declares entities)")


def read_document(body: bytes, reader: str = "auto", base_url: str = "", charset: str | None = None) -> Document:
    """The feed in `body`. `reader` is "auto" (fast, else feedparser), "fast" (raises
    Declined where it would step aside) or "feedparser"; `base_url` is the URL the body
    came from after redirects (relative links resolve against xml:base, then it);
    `charset` the HTTP Content-Type's charset parameter, if any. Raises FeedError for a
    body that holds no RSS or Atom feed, or one that declares entities."""
    refuse_entity_declarations(body)
    body = _with_entities_as_references(decode_document(body, charset))
    if reader == "feedparser":
        document = _read_with_feedparser(body)
    else:
        try:
            document = _read_fast(body)
        except Declined:
            if reader == "fast":
                raise
            document = _read_with_feedparser(body)
    if base_url:
        for entry in document.entries:
            if entry.link and not _ABSOLUTE.match(entry.link):
                entry.link = urljoin(base_url, entry.link)
    return document


_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# --- characters (RFC 7303 section 8; XML 1.0 appendix F) ---

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_UNMARKED = ((b"<\x00\x00\x00", "utf-32-le"), (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00?\x00", "utf-16-le"),
             (b"\x00<\x00?", "utf-16-be"))
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")
_DECLARATION_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")


def decode_document(body: bytes, charset: str | None = None) -> bytes:
    """The document as UTF-8, its XML declaration saying so. The encoding is the byte order
    mark's, else `charset` (from HTTP) if Python knows it, else the XML declaration's, else
    UTF-8 (RFC 7303 section 8.5). Bytes that are not valid in it become U+FFFD, one
    for each bad sequence, and everything valid is kept."""
    encoding = None
    for mark, name in _BOMS:
        if body.startswith(mark):
            encoding, body = name, body[len(mark):]
            break
    declared = _declared_encoding(body)
    encoding = encoding or _codec(charset) or declared or "utf-8"
    if encoding == "utf-8" and declared in (None, "utf-8"):
        try:
            body.decode("utf-8")
            return body
        except UnicodeDecodeError:
            pass
    text = body.decode(encoding, "replace")
    return _DECLARATION_ENCODING.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8")


def _declared_encoding(body: bytes) -> str | None:
    for start, name in _UNMARKED:
        if body.startswith(start):
            return name
    match = _DECLARED.match(body[:200])
    return _codec(match[1].decode("ascii")) if match else None


def _codec(name: str | None) -> str | None:
    """Python's name for a charset ("utf-8", "koi8-r", "cp1251"), or None if unknown."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


_UNDECLARED_ENTITY = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z][A-Za-z0-9]{1,31});")
_NOT_MARKUP = re.compile(rb"(<!\[CDATA\[.*?\]\]>|<!--.*?-->)", re.S)


def _with_entities_as_references(body: bytes) -> bytes:
    """HTML's named character references (`&nbsp;`, `&mdash;`) that a feed uses without
    declaring them, as numeric ones: XML knows only its five. A document with a DTD, where
    they may be declared, and text in CDATA sections and comments are left as they are."""
    if b"&" not in body or not _UNDECLARED_ENTITY.search(body) or b"<!DOCTYPE" in body:
        return body
    parts = _NOT_MARKUP.split(body)
    parts[::2] = [_UNDECLARED_ENTITY.sub(_reference, part) for part in parts[::2]]
    return b"".join(parts)


def _reference(match: re.Match) -> bytes:
    codepoint = html.entities.name2codepoint.get(match[1].decode("ascii"))
    return b"&#%d;" % codepoint if codepoint else match[0]


# --- times ---

_RFC822 = re.compile(
    r"^\s*(?:[A-Za-z]+\s*,\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,5})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s*(?:([+-])(\d{2}):?(\d{2})|([A-Za-z]+))?\s*$"
)
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
# Zone names as feedparser reads them (feedparser/datetimes/rfc822.py); any other name is UTC.
_ZONE_HOURS = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0, "adt": -3, "ast": -4, "at": -4, "edt": -4, "est": -5, "et": -5,
    "cdt": -5, "cst": -6, "ct": -6, "mdt": -6, "mst": -7, "mt": -7, "pdt": -7, "pst": -8, "pt": -8,
    "a": -1, "n": 1, "m": -12, "y": 12, "met": 1, "mest": 2,
}


def parse_time(value: Any) -> datetime | None:
    """A time as feeds, APIs and webhooks write it: ISO 8601 (RFC 3339, W3C-DTF; in an RSS
    pubDate too) or RFC 822/2822. Always aware and never in the machine's zone: a time
    with no zone, or `-0000`, is UTC; zone names are read as feedparser reads them (an
    unknown one as UTC). None for anything else, a date datetime cannot hold (year 0,
    year 99999) included."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        if value[0].isdigit() and "-" in value[:5]:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        match = _RFC822.match(value)
        if not match or (month := _MONTHS.get(match[2].lower())) is None:
            return None
        day, year, hour, minute, second = int(match[1]), int(match[3]), int(match[4]), int(match[5]), int(match[6] or 0)
        if len(match[3]) == 2:
            year += 2000 if year < 50 else 1900
        if match[7]:
            offset = timedelta(hours=int(match[8]), minutes=int(match[9])) * (-1 if match[7] == "-" else 1)
        else:
            offset = timedelta(hours=_ZONE_HOURS.get((match[10] or "").lower(), 0))
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset)).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _whole_seconds(when: datetime | None) -> datetime | None:
    return when.astimezone(timezone.utc).replace(microsecond=0) if when else None


# --- the fast reader ---

_ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
_DC_DATE = "{http://purl.org/dc/elements/1.1/}date"
_DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
# RSS item children read, or known to be ignored by feedparser for the fields read; any
# other child (Atom, Media RSS, other Dublin Core elements, `summary`, `updated`, ...) may
# feed one of them in feedparser, so the fast reader declines the document.
_RSS_READ = frozenset({"title", "link", "guid", "description", _CONTENT_ENCODED, "pubDate", _DC_DATE, "category"})
_RSS_IGNORED = frozenset({"author", "comments", "enclosure", "source", _DC_CREATOR})
_ATOM_READ = frozenset(_ATOM + name for name in ("id", "link", "title", "content", "summary", "published", "updated", "category"))
_ATOM_IGNORED = frozenset(_ATOM + name for name in ("author", "contributor", "rights", "source"))


def _read_fast(body: bytes) -> Document:
    """RSS 2.0 and Atom 1.0 straight from a strict lxml tree (see the module's docstring)."""
    if b"xml:base" in body or b"<!DOCTYPE" in body:
        raise Declined("xml:base or a DTD")
    try:
        root = etree.fromstring(body, _STRICT_XML)
    except etree.XMLSyntaxError as exc:
        raise Declined(f"malformed XML: {exc}") from None
    if root.tag == "rss" and (channel := root.find("channel")) is not None:
        return Document(_text(channel.find("title")).strip(), _text(channel.find("generator")).strip(),
                        [_rss_entry(item) for item in channel.iterchildren("item")])
    if root.tag == _ATOM + "feed":
        return Document(_atom_title(root.find(_ATOM + "title")), _text(root.find(_ATOM + "generator")).strip(),
                        [_atom_entry(entry) for entry in root.iterchildren(_ATOM + "entry")])
    raise Declined("not RSS 2.0 or Atom 1.0")


def _text(element: Any) -> str:
    """An element's text; markup, comments, processing instructions or entity references
    inside it, and text feedparser would rewrite, are left to feedparser."""
    if element is None:
        return ""
    if len(element):
        raise Declined("markup inside a text element")
    value = element.text or ""
    if not value.isascii() and _feedparser_rewrites(value.strip()):
        raise Declined("text feedparser rewrites")
    return value


_LATIN1_HIGH = re.compile("[\x80-\xff]")
_C1_CONTROL = re.compile("[\x80-\x9f]")


def _feedparser_rewrites(value: str) -> bool:
    """feedparser (mixin.py, `pop`) maps C1 controls to their windows-1252 characters, and
    re-decodes as UTF-8 text whose characters all fit in Latin-1 and form valid UTF-8
    ("CafÃ©" becomes "Café")."""
    if not _LATIN1_HIGH.search(value):
        return False
    if _C1_CONTROL.search(value):
        return True
    try:
        return value.encode("latin-1").decode("utf-8") != value
    except UnicodeError:
        return False


def _children(parent: Any, read: frozenset, ignored: frozenset) -> dict[str, list]:
    fields: dict[str, list] = {}
    for child in parent.iterchildren():
        if not isinstance(child.tag, str):  # a comment or processing instruction between fields
            continue
        if child.tag in read:
            fields.setdefault(child.tag, []).append(child)
        elif child.tag not in ignored and (child.tag.startswith("{") or child.tag in _FEEDPARSER_NAMES):
            raise Declined(f"an item element feedparser may read as a field: {child.tag}")
    if any(len(elements) > 1 for tag, elements in fields.items() if tag not in ("category", _ATOM + "link")):
        raise Declined("a field given twice")
    return fields


# Un-namespaced names feedparser reads as one of the fields taken here, whatever the format.
_FEEDPARSER_NAMES = frozenset({
    "summary", "content", "updated", "published", "issued", "modified", "created", "id", "body", "fullitem",
    "date", "subtitle", "tagline", "info", "abstract", "entry", "item", "image", "textinput", "textInput",
})


def _first(fields: dict[str, list], tag: str) -> Any:
    return fields[tag][0] if tag in fields else None


def _rss_entry(item: Any) -> Entry:
    fields = _children(item, _RSS_READ, _RSS_IGNORED)
    guid_element = _first(fields, "guid")
    guid = _text(guid_element).strip()
    link = _text(_first(fields, "link")).strip()
    if not link and guid and guid_element.get("isPermaLink", "true") == "true":
        link = guid  # as feedparser does: a permalink guid is the item's link
    content = _text(_first(fields, _CONTENT_ENCODED)).strip() or _text(_first(fields, "description")).strip()
    date = _text(_first(fields, "pubDate")).strip() or _text(_first(fields, _DC_DATE)).strip()
    tags = _unique(_text(c).strip() for c in fields.get("category", []))
    return Entry(guid, link, _text(_first(fields, "title")).strip(), content, _whole_seconds(parse_time(date)), tags)


def _atom_entry(entry: Any) -> Entry:
    fields = _children(entry, _ATOM_READ, _ATOM_IGNORED)
    alternates = [e for e in fields.get(_ATOM + "link", []) if e.get("rel", "alternate") == "alternate"]
    if len(alternates) > 1 or any(e.get("type", "text/html") != "text/html" for e in alternates):
        raise Declined("several alternate links, or one that is not HTML")
    entry_id = _text(_first(fields, _ATOM + "id")).strip()
    link = alternates[0].get("href", "").strip() if alternates else entry_id  # feedparser: the id stands in
    content = _atom_content(_first(fields, _ATOM + "content")) or _atom_content(_first(fields, _ATOM + "summary"))
    date = _text(_first(fields, _ATOM + "published")).strip() or _text(_first(fields, _ATOM + "updated")).strip()
    tags = _unique((c.get("term") or "").strip() for c in fields.get(_ATOM + "category", []))
    return Entry(entry_id, link, _atom_title(_first(fields, _ATOM + "title")), content,
                 _whole_seconds(parse_time(date)), tags)


def _unique(terms: Any) -> list[str]:
    """Categories as feedparser keeps them: each once, in order, the empty ones dropped."""
    return [term for term in dict.fromkeys(terms) if term]


def _atom_type(element: Any) -> str:
    kind = element.get("type", "text")
    if kind not in ("text", "html") or element.get("src") is not None or element.get("mode") is not None:
        raise Declined(f"an Atom text construct of type {kind!r}, or with src or mode")
    return kind


def _atom_title(element: Any) -> str:
    """A text construct as plain text: type text is already, type html is converted."""
    if element is None:
        return ""
    value = _text(element).strip()
    return html_to_text(value) if _atom_type(element) == "html" else value


def _atom_content(element: Any) -> str:
    """A text construct as HTML: type text is escaped."""
    if element is None:
        return ""
    value = _text(element).strip()
    return value if _atom_type(element) == "html" else html.escape(value, quote=False)


# --- feedparser ---

def _read_with_feedparser(body: bytes) -> Document:
    import feedparser  # only for the documents the fast reader declines: it costs memory

    # A file object, never a string: feedparser fetches URLs and opens paths it is given.
    doc = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    benign = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)  # warnings, not breakage
    if doc.bozo and not isinstance(doc.bozo_exception, benign):
        raise FeedError(f"malformed feed: {doc.bozo_exception}")
    if not doc.version:
        raise FeedError("not an RSS or Atom feed (an HTML page or unknown document)")
    rss = doc.version.startswith("rss")
    entries = []
    for e in doc.entries:
        content = _feedparser_html(e.get("content", [{}])[0], rss) or _feedparser_html(e.get("summary_detail"), rss)
        entries.append(
            Entry(
                id=e.get("id") or "",
                link=e.get("link") or "",
                title=_feedparser_plain(e.get("title_detail"), rss),
                content=content,
                published=_whole_seconds(parse_time(e.get("published") or dict.get(e, "updated"))),
                tags=_unique((t.get("term") or "").strip() for t in e.get("tags", [])),
            )
        )
    return Document(_feedparser_plain(doc.feed.get("title_detail"), rss), doc.feed.get("generator", "") or "", entries)


def _feedparser_plain(detail: Any, rss: bool) -> str:
    """feedparser guesses from the content whether an RSS title is HTML; RSS says it is text."""
    if not detail:
        return ""
    value = (detail.get("value") or "").strip()
    return value if rss or detail.get("type") == "text/plain" else html_to_text(value)


def _feedparser_html(detail: Any, rss: bool) -> str:
    """RSS description and content:encoded are HTML whatever feedparser guesses; Atom says."""
    if not detail:
        return ""
    value = (detail.get("value") or "").strip()
    return html.escape(value, quote=False) if not rss and detail.get("type") == "text/plain" else value
