"""Webhook signature schemes: Standard Webhooks / Svix (incident.io) and GitHub-style
`X-Hub-Signature-256`. Every failure is a SignatureError with a short, secret-free reason."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Mapping

TOLERANCE_SECONDS = 300
MAX_ID_LENGTH = 256


class SignatureError(Exception):
    pass


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret is the decoded bytes; a secret without the
    prefix (a generic provider's shared secret) is used as its UTF-8 bytes."""
    if not secret.startswith("whsec_"):
        return secret.encode()
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a valid whsec_ secret (the part after whsec_ must be base64)") from None
    if not key:
        raise ValueError("empty whsec_ secret")
    return key


def _header(headers: Mapping[str, str], family: str, name: str) -> str | None:
    return headers.get(f"{family}-{name}")


def standard_webhook_headers(headers: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(id, timestamp, signature) from the `webhook-*` headers, else the `svix-*` ones."""
    for family in ("webhook", "svix"):
        found = [_header(headers, family, n) for n in ("id", "timestamp", "signature")]
        if all(found):
            return found[0], found[1], found[2]  # type: ignore[return-value]
    return None


def verify_standard_webhook(
    key: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str:
    """Verifies a Standard Webhooks signature over the raw body; returns the message id."""
    found = standard_webhook_headers(headers)
    if found is None:
        raise SignatureError("missing signature headers (webhook-id, webhook-timestamp, webhook-signature)")
    msg_id, timestamp, signatures = found
    if len(msg_id) > MAX_ID_LENGTH:
        raise SignatureError("webhook id too long")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("malformed timestamp header")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the 5-minute window")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    matched = False
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value.encode("utf-8", "replace")):
            matched = True
    if not matched:
        raise SignatureError("no matching signature")
    return msg_id


def verify_hub_signature(secret: str, header: str, body: bytes) -> None:
    """GitHub style: `sha256=<hex HMAC-SHA256(secret, raw body)>`."""
    scheme, _, value = header.strip().partition("=")
    if scheme.lower() != "sha256" or not value:
        raise SignatureError("malformed X-Hub-Signature-256 header")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), value.lower().encode("utf-8", "replace")):
        raise SignatureError("no matching signature")


def tokens_match(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode())
