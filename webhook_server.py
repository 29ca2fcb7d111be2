"""The HTTP side of the monitor: signed webhooks in; /health, /stats, /metrics and /events
out; the dashboard's routes (status_monitor.outputs.dashboard) mounted beside them.

Each webhook is verified on its raw bytes, bounded in size, parsed, turned into events by a
pure adapter and handed to the same event handler as the feeds, before the answer goes out:
a 2xx means the event was printed and recorded.
"""

from __future__ import annotations

import codecs
import logging
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Awaitable, Callable, Literal, Mapping
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, FastAPI, Query, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from event_handler import EventHandler
from rss_poller import FeedPoller
from status_monitor.config import Config, provider_env_name
from status_monitor.model import Event
from status_monitor.outputs.dashboard import STATIC
from status_monitor.outputs.notify import Notifier
from status_monitor.stats import WebhookStats
from status_monitor.storage import Store, StoreUnavailable
from status_monitor.web.access import (
    AdminGuard,
    BodyTooLarge,
    Disconnected,
    SecurityHeaders,
    receive_body,
    straight_from_loopback,
)
from status_monitor.web.connections import ConnectionLimits
from status_monitor.webhooks.payloads import PayloadError, Unhandled, generic_events, incidentio_events
from status_monitor.webhooks.signatures import (
    SignatureError,
    standard_webhook_headers,
    standard_webhook_key,
    tokens_match,
    verify_hub_signature,
    verify_standard_webhook,
)

log = logging.getLogger("monitor.webhooks")

MAX_BODY_BYTES = 1024 * 1024
REFUSAL_LOG_EVERY = 600.0  # seconds between two log lines about refused webhooks of one path and reason
MAX_REFUSAL_KEYS = 1000


class Rejected(Exception):
    def __init__(self, status: int, reason: str, counter: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.counter = status, reason, counter


class WebhookReceiver:
    """Body limit, verification, replay detection and hand-off, on raw ASGI parts: each
    endpoint takes the request's headers and body stream and returns (status, JSON answer)."""

    def __init__(self, config: Config, handler: EventHandler, store: Store) -> None:
        self._config = config
        self._handler = handler
        self._store = store
        self._deliveries: set[str] = set()
        self._incident_io_key = standard_webhook_key(config.incident_io_secret) if config.incident_io_secret else None
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}  # (path, reason) -> (logged at, since)
        self.stats = WebhookStats()

    async def load(self) -> None:
        self._deliveries = await self._store.load_deliveries()

    def reconfigure(self, config: Config) -> None:
        """New secrets and `require_signatures` (a config reload): the next request uses them."""
        self._config = config
        self._incident_io_key = standard_webhook_key(config.incident_io_secret) if config.incident_io_secret else None

    async def incident_io(
        self, headers: Mapping[str, str], receive: Receive, direct: bool
    ) -> tuple[int, dict[str, Any]]:
        """`direct`: the request came straight from loopback, through no proxy or tunnel
        (access.straight_from_loopback); only such a request may go unsigned."""
        try:
            body = await read_body(headers, receive)
            delivery_id = self._verify_incident_io(headers, body, direct)
            payload = _parse_json(body)
            key = f"incident-io:{delivery_id}" if delivery_id else None
            answer = await self._deliver(key, lambda: incidentio_events(payload, delivery_id or ""))
        except StoreUnavailable as exc:
            return self._unavailable("incident-io", exc)
        except Rejected as exc:
            return self._reject("incident-io", exc)
        except PayloadError as exc:
            return self._reject("incident-io", Rejected(422, str(exc), "unknown_shape"))
        return self._answer("incident-io", answer)

    async def generic(
        self, provider: str, headers: Mapping[str, str], token: str | None, receive: Receive, direct: bool
    ) -> tuple[int, dict[str, Any]]:
        try:
            if not provider.strip() or len(provider) > 100:
                raise Rejected(404, "provider name must be 1 to 100 characters", "bad_provider")
            body = await read_body(headers, receive)
            delivery_id = self._verify_generic(provider, headers, token, body, direct)
            payload = _parse_json(body)
            key = f"generic:{provider}:{delivery_id}" if delivery_id else None
            answer = await self._deliver(key, lambda: generic_events(provider, payload))
        except StoreUnavailable as exc:
            return self._unavailable("generic", exc)
        except Rejected as exc:
            return self._reject("generic", exc, provider if exc.counter != "bad_provider" else None)
        except PayloadError as exc:
            return self._reject("generic", Rejected(422, str(exc), "unknown_shape"))
        return self._answer("generic", answer)

    def _verify_incident_io(self, headers: Mapping[str, str], body: bytes, direct: bool) -> str | None:
        """Returns the delivery id: verified when a secret is set, as sent otherwise."""
        if self._incident_io_key is not None:
            return self._verify_standard(self._incident_io_key, headers, body)
        self._check_unsigned(direct, "INCIDENT_IO_WEBHOOK_SECRET or [webhooks] incident_io_secret")
        found = standard_webhook_headers(headers)
        return found[0] if found else None

    def _verify_generic(
        self, provider: str, headers: Mapping[str, str], token: str | None, body: bytes, direct: bool
    ) -> str | None:
        secret = self._config.secret_for(provider)
        delivery = headers.get("x-github-delivery")
        found = standard_webhook_headers(headers)
        if secret is None:
            self._check_unsigned(direct, f"WEBHOOK_SECRET_{provider_env_name(provider)} or [webhooks.secrets]")
            return found[0] if found else delivery
        hub = headers.get("x-hub-signature-256")
        if token is not None:
            if not tokens_match(token, secret):
                raise Rejected(401, "invalid token", "bad_token")
            return found[0] if found else delivery
        if hub is not None:
            try:
                verify_hub_signature(secret, hub, body)
            except SignatureError as exc:
                raise Rejected(401, str(exc), "bad_signature") from None
            return delivery
        if found is not None:
            return self._verify_standard(standard_webhook_key(secret), headers, body)
        raise Rejected(401, "missing signature (X-Hub-Signature-256, webhook-signature or ?token=)", "missing_signature")

    def _check_unsigned(self, direct: bool, where: str) -> None:
        """An endpoint without a secret accepts unsigned requests straight from loopback only
        (a local test, the README's curl), or from anywhere with --allow-unsigned."""
        if self._config.require_signatures:
            raise Rejected(401, "signature required but no secret is configured", "unsigned")
        if not direct and not self._config.allow_unsigned:
            raise Rejected(
                401,
                f"unsigned webhooks are accepted only straight from this machine; configure a secret ({where})",
                "unsigned_remote",
            )

    def _verify_standard(self, key: bytes, headers: Mapping[str, str], body: bytes) -> str:
        try:
            return verify_standard_webhook(key, headers, body)
        except SignatureError as exc:
            counter = "missing_signature" if "missing" in str(exc) else "bad_signature"
            if "window" in str(exc):
                counter = "timestamp"
            raise Rejected(401, str(exc), counter) from None

    async def _deliver(self, delivery_id: str | None, build: Callable[[], list[Event]]) -> dict[str, Any]:
        """Replay check, adapter, handler; returns the JSON answer (2xx)."""
        if delivery_id is not None and delivery_id in self._deliveries:
            return {"status": "duplicate"}
        if delivery_id is not None and self._store.shared and await self._store.has_delivery(delivery_id):
            self._deliveries.add(delivery_id)  # recorded by another replica
            return {"status": "duplicate"}
        try:
            events = build()
        except Unhandled as exc:
            return {"status": "ignored", "event_type": str(exc)}
        if delivery_id is not None:
            self._deliveries.add(delivery_id)  # at once: a concurrent retry is a duplicate
        try:
            announced = await self._handler.handle(events, delivery_id)
        except BaseException:
            self._deliveries.discard(delivery_id)  # not recorded: the provider's retry must get through
            raise
        if events and not announced:
            return {"status": "duplicate"}
        return {"status": "accepted", "events": len(announced)}

    def _answer(self, endpoint: str, answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.stats.outcomes[endpoint, answer["status"], ""] += 1
        return 200, answer

    def _unavailable(self, endpoint: str, exc: StoreUnavailable) -> tuple[int, dict[str, Any]]:
        """503: nothing was recorded, and the provider's retry will be accepted once the
        database is back."""
        log.warning("webhook %s refused with 503: %s", endpoint, exc)
        self.stats.outcomes[endpoint, "rejected", "unavailable"] += 1
        return 503, {"error": "state database unavailable; retry later"}

    def _reject(self, endpoint: str, exc: Rejected, provider: str | None = None) -> tuple[int, dict[str, Any]]:
        self.stats.outcomes[endpoint, "rejected", exc.counter] += 1
        if exc.status == 401:
            self._log_refusal(f"/webhook/{endpoint}" + (f"/{provider}" if provider else ""), exc.counter, exc.reason)
        return exc.status, {"error": exc.reason}

    def _log_refusal(self, path: str, counter: str, reason: str) -> None:
        """A refused (401) webhook is a warning: a wrong secret on either side loses every
        delivery. Said once per path and reason, then at most every REFUSAL_LOG_EVERY seconds
        with the count meanwhile, so a flood of forged requests cannot flood the log."""
        path = "".join(c if c.isprintable() else "?" for c in path)  # the provider part is the sender's
        if (path, counter) not in self._refusals and len(self._refusals) >= MAX_REFUSAL_KEYS:
            path = path.rsplit("/", 1)[0] + "/*"  # random provider names share one line: bounded memory
        now = time.monotonic()
        last, missed = self._refusals.get((path, counter), (None, 0))
        if last is not None and now - last < REFUSAL_LOG_EVERY:
            self._refusals[path, counter] = (last, missed + 1)
            return
        self._refusals[path, counter] = (now, 0)
        more = f" ({missed} more since the last report)" if missed else ""
        log.warning("webhook to %s refused (401): %s%s", path, reason, more)


async def read_body(headers: Mapping[str, str], receive: Receive) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Rejected(413, "body larger than 1 MiB", "too_large")
    try:
        return await receive_body(receive, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise Rejected(413, "body larger than 1 MiB", "too_large") from None


def _parse_json(body: bytes) -> Any:
    """The JSON of a body whose signature was verified over its raw bytes. A UTF-8 byte
    order mark before it is ignored, as RFC 8259 section 8.1 allows."""
    try:
        return orjson.loads(body.removeprefix(codecs.BOM_UTF8).decode("utf-8"))
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8", "bad_encoding") from None
    except (ValueError, RecursionError):
        raise Rejected(400, "body is not valid JSON", "bad_json") from None


class WebhookRoutes:
    """The webhook routes as a bare ASGI app in front of FastAPI; every other request goes to
    FastAPI. A delivery needs none of Starlette's middleware, routing, Request or Response,
    and skipping them takes about a quarter off each one's CPU (README, Performance)."""

    INCIDENT_IO = "/webhook/incident-io"
    GENERIC = "/webhook/generic/"

    def __init__(self, receiver: WebhookReceiver, app: ASGIApp, public: bool = False) -> None:
        """`public`: this listener is the one exposed (--public-port), so no request on it
        counts as straight from loopback, whatever its peer address: a tunnel such as
        `ssh -R` relays from loopback and adds no header."""
        self.receiver = receiver
        self.app = app
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        generic = path.startswith(self.GENERIC) and "/" not in path[len(self.GENERIC):] and path != self.GENERIC
        if path != self.INCIDENT_IO and not generic:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send_json(send, 405, {"detail": "Method Not Allowed"}, ((b"allow", b"POST"),))
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        direct = not self.public and straight_from_loopback(scope.get("client"), headers)
        try:
            if generic:
                query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
                status, answer = await self.receiver.generic(
                    path[len(self.GENERIC):], headers, query.get("token"), receive, direct
                )
            else:
                status, answer = await self.receiver.incident_io(headers, receive, direct)
        except Disconnected:
            return
        await _send_json(send, status, answer)


async def _send_json(send: Send, status: int, answer: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps(answer)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    config: Config,
    receiver: WebhookReceiver,
    handler: EventHandler,
    store: Store,
    poller: FeedPoller,
    notifier: Notifier,
    registry: CollectorRegistry,
    dashboard: APIRouter,
    connections: ConnectionLimits | None = None,
) -> tuple[WebhookRoutes, WebhookRoutes]:
    """The whole HTTP side, as two apps: the main listener's (the webhook routes, then
    FastAPI for everything else, behind the security headers and, with an admin token, its
    guard) and the public listener's (the webhook routes and /health, nothing else)."""
    app = FastAPI(
        title="Status-page monitor",
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        # OpenTelemetry hooks look the environment up on every request; nothing here exports.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    started = time.monotonic()

    app.include_router(dashboard)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def health_status() -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 while the process runs and its state is reachable, 503
        while the state is not; "degraded" while any source is failing or the state is
        unreachable (the body says which)."""
        failing = len(poller.failing)
        state = await store.health()
        answer = {
            "status": "degraded" if failing or not state["ok"] else "ok",
            "uptime_seconds": round(time.monotonic() - started, 3),
            "sources": len(poller.feeds),
            "failing_sources": failing,
            "state": state,
        }
        return (200 if state["ok"] else 503), answer

    @app.get("/health")
    async def health() -> Response:
        status, answer = await health_status()
        return Response(orjson.dumps(answer), status_code=status, media_type="application/json")

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        s, w = handler.stats, receiver.stats
        targets = notifier.target_stats()
        return {
            "uptime_seconds": round(time.monotonic() - started, 3),
            "events_total": s.events_total,
            "duplicates_total": s.duplicates_total,
            "stale_total": s.stale_total,
            "filtered_total": s.filtered_total,
            "baseline_total": s.baseline_total,
            **poller.stats.totals(),
            "webhooks_received_total": sum(w.total(kind) for kind in ("accepted", "duplicate", "ignored")),
            "webhooks_rejected_total": w.rejected(),
            "webhooks_duplicate_total": w.total("duplicate"),
            "webhooks_ignored_total": w.total("ignored"),
            "open_incidents": handler.open_incidents,
            "fleet": store.fleet if store.shared else {"replica_id": None, "replicas": 1, "feeds_held": len(poller.feeds)},
            "notifications": {
                "sent_total": sum(t["sent_total"] for t in targets),
                "failed_total": sum(t["failed_total"] for t in targets),
                "retries_total": sum(t["retries_total"] for t in targets),
                "pending": notifier.pending,
                "targets": targets,
            },
            "feeds": poller.feed_stats(),
            **({"http_connections": connections.stats()} if connections else {}),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/events")
    async def events(
        provider: str | None = None,
        source: Literal["rss", "api", "webhook"] | None = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        found = await store.list_events(provider=provider, source=source, since=since, limit=limit)
        return {"events": [{"id": s.id, **s.event.to_dict()} for s in found], "count": len(found)}

    guarded = AdminGuard(config.admin_token, app, STATIC / "login.html") if config.admin_token else app
    return (
        WebhookRoutes(receiver, SecurityHeaders(guarded)),
        WebhookRoutes(receiver, _HealthOnly(health_status), public=True),
    )


class _HealthOnly:
    """The public listener's one route besides the webhooks: GET /health; 404 for the rest."""

    def __init__(self, health: Callable[[], Awaitable[tuple[int, dict[str, Any]]]]) -> None:
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        nosniff = ((b"x-content-type-options", b"nosniff"),)
        if scope["path"] != "/health":
            await _send_json(send, 404, {"detail": "Not Found"}, nosniff)
        elif scope["method"] not in ("GET", "HEAD"):
            await _send_json(send, 405, {"detail": "Method Not Allowed"}, ((b"allow", b"GET"), *nosniff))
        else:
            status, answer = await self.health()
            await _send_json(send, status, answer, nosniff)
