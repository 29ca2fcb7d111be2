"""Keeps secrets out of logs, error messages and /stats: `redact_url` for a URL shown on
purpose, `scrub` for any text that leaves the process (log lines, tracebacks included,
and every error text /stats, /metrics, the dashboard and notifications show)."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = (
    "token", "key", "secret", "password", "passwd", "pwd", "auth", "sig", "signature", "credential", "session", "jwt",
)
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_secrets: set[str] = set()
MIN_SECRET = 4  # shorter values would scrub ordinary words


def redact_url(url: str) -> str:
    """The URL with any password and secret-looking query values replaced by `***`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        query = urlencode(
            [(k, "***" if _secret_param(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable URL>"


def _secret_param(name: str) -> bool:
    return any(s in name.lower() for s in _SECRET_PARAMS)


def remember_secret(value: str | None) -> None:
    """`scrub` will replace `value` wherever it appears (values under MIN_SECRET characters
    are left alone: they would scrub ordinary words)."""
    if value and len(value) >= MIN_SECRET:
        _secrets.add(value)


def remember_url_secrets(url: str) -> None:
    """Remembers a URL's password and secret-looking query values, raw and percent-encoded
    as they were written, for `scrub`."""
    parts = urlsplit(url)
    raw = [parts.netloc.rsplit("@", 1)[0].partition(":")[2]] if "@" in parts.netloc else []
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if _secret_param(unquote_plus(name)):
            raw.append(value)
    for value in raw:
        remember_secret(value)
        remember_secret(unquote_plus(value))


def scrub(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`) and every remembered secret
    replaced by `***`: the one filter every error text passes before it leaves the process."""
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's message and traceback (a library's
    exception text can embed a URL with its token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def scrub_every_log_handler() -> None:
    """Puts a ScrubFilter on every logging handler configured so far (the root's, and
    those uvicorn sets on its own loggers), once each."""
    loggers = [logging.getLogger(), *(l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger))]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
