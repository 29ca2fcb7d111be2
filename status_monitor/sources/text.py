"""The text of an update, and the share of its key that text gives.

Whether a string is HTML is decided by the field it came from, never by its content:
`html_to_text` is for fields their format declares HTML (RSS description and
content:encoded, Atom text constructs of type html or xhtml, Statuspage's update body,
Slack's note body); `plain_text` for every other string (RSS titles, Atom type="text",
JSON strings). Both end in the same white-space rule, so a message written once and
delivered as HTML by a feed and as plain text by an API or webhook reads, and hashes, the
same.
"""

from __future__ import annotations

import hashlib
import html
import re

_LINE_BREAK = re.compile(r"<\s*(?:br|/p|/li|/div|/h\d)\b[^>]*>", re.I)
# A tag as HTML tokenises one (WHATWG HTML 13.2.5.6-8): `<` then a letter, `/` and a letter,
# `!` (comment, doctype) or `?`. "<10MB" and "a < b" are text; quoted attribute values may hold `>`.
_TAG = re.compile(r"<(?:!--.*?--|/?[A-Za-z][^\"'>]*(?:(?:\"[^\"]*\"|'[^']*')[^\"'>]*)*|[!?][^>]*)>", re.S)


def html_to_text(fragment: str) -> str:
    """An HTML fragment's words, with line breaks where the markup broke lines (br, and
    the ends of p, li, div, h1-h6), tags dropped and character references decoded."""
    if "<" in fragment:
        fragment = _TAG.sub("", _LINE_BREAK.sub("\n", fragment))
    if "&" in fragment:
        fragment = html.unescape(fragment)
    return plain_text(fragment)


def plain_text(text: str) -> str:
    """Plain text with its white space made regular: runs of white space within a line are
    one space, blank lines go, and a text on one line stays on one line."""
    if "\n" not in text:
        return " ".join(text.split())
    stripped = text.strip()
    if stripped.isprintable():  # the line breaks were only at the ends (a closing </p>, say)
        return " ".join(stripped.split())
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def digest(text: str) -> str:
    """A text's share of an update key (feeds, APIs and webhooks must agree on it)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
