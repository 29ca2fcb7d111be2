"""The HTTP side of the monitor: signed webhooks in; /health, /stats, /metrics and /events
out; the dashboard's routes (dashboard.py) mounted beside them.

Each webhook is verified on its raw bytes, bounded in size, parsed, turned into events by a
pure adapter and handed to the same event handler as the feeds, before the answer goes out:
a 2xx means the event was printed and recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from config import Config
from dashboard import STATIC
from event_handler import Event, EventHandler
from notifier import Notifier
from rss_poller import FeedPoller
from signatures import (
    SignatureError,
    standard_webhook_headers,
    standard_webhook_key,
    tokens_match,
    verify_hub_signature,
    verify_standard_webhook,
)
from state import Store
from webhook_adapters import PayloadError, Unhandled, generic_events, incidentio_events

log = logging.getLogger("monitor.webhooks")

MAX_BODY_BYTES = 1024 * 1024


class Rejected(Exception):
    def __init__(self, status: int, reason: str, counter: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.counter = status, reason, counter


@dataclass
class WebhookStats:
    # (endpoint, outcome, reason): outcome is accepted, duplicate, ignored or rejected, and
    # only a rejection has a reason.
    outcomes: Counter = field(default_factory=Counter)

    def total(self, outcome: str) -> int:
        return sum(n for (_, kind, _), n in self.outcomes.items() if kind == outcome)

    def rejected(self) -> dict[str, int]:
        reasons: Counter = Counter()
        for (_, kind, reason), n in self.outcomes.items():
            if kind == "rejected":
                reasons[reason] += n
        return dict(reasons)


class WebhookReceiver:
    """Verification, replay detection and hand-off; the FastAPI routes stay thin."""

    def __init__(self, config: Config, handler: EventHandler, store: Store) -> None:
        self._config = config
        self._handler = handler
        self._store = store
        self._deliveries: set[str] = set()
        self._incident_io_key = standard_webhook_key(config.incident_io_secret) if config.incident_io_secret else None
        self.stats = WebhookStats()

    async def load(self) -> None:
        self._deliveries = await self._store.load_deliveries()

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise Rejected(413, "body larger than 1 MiB", "too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise Rejected(413, "body larger than 1 MiB", "too_large")
        return bytes(body)

    def verify_incident_io(self, request: Request, body: bytes) -> str | None:
        """Returns the delivery id: verified when a secret is set, as sent otherwise."""
        if self._incident_io_key is not None:
            return self._verify_standard(self._incident_io_key, request, body)
        if self._config.require_signatures:
            raise Rejected(401, "signature required but no secret is configured", "unsigned")
        found = standard_webhook_headers(request.headers)
        return found[0] if found else None

    def verify_generic(self, provider: str, request: Request, body: bytes) -> str | None:
        secret = self._config.secret_for(provider)
        delivery = request.headers.get("x-github-delivery")
        found = standard_webhook_headers(request.headers)
        if secret is None:
            if self._config.require_signatures:
                raise Rejected(401, "signature required but no secret is configured", "unsigned")
            return found[0] if found else delivery
        token = request.query_params.get("token")
        hub = request.headers.get("x-hub-signature-256")
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
            return self._verify_standard(standard_webhook_key(secret), request, body)
        raise Rejected(401, "missing signature (X-Hub-Signature-256, webhook-signature or ?token=)", "missing_signature")

    def _verify_standard(self, key: bytes, request: Request, body: bytes) -> str:
        try:
            return verify_standard_webhook(key, request.headers, body)
        except SignatureError as exc:
            counter = "missing_signature" if "missing" in str(exc) else "bad_signature"
            if "window" in str(exc):
                counter = "timestamp"
            raise Rejected(401, str(exc), counter) from None

    async def deliver(self, delivery_id: str | None, build: Callable[[], list[Event]]) -> dict[str, Any]:
        """Replay check, adapter, handler; returns the JSON answer (2xx)."""
        if delivery_id is not None and delivery_id in self._deliveries:
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


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8", "bad_encoding") from None
    except (ValueError, RecursionError):
        raise Rejected(400, "body is not valid JSON", "bad_json") from None


def _answer(receiver: WebhookReceiver, endpoint: str, answer: dict[str, Any]) -> JSONResponse:
    receiver.stats.outcomes[endpoint, answer["status"], ""] += 1
    return JSONResponse(answer)


def _reject(receiver: WebhookReceiver, endpoint: str, exc: Rejected) -> JSONResponse:
    receiver.stats.outcomes[endpoint, "rejected", exc.counter] += 1
    return JSONResponse({"error": exc.reason}, status_code=exc.status)


def create_app(
    config: Config,
    receiver: WebhookReceiver,
    handler: EventHandler,
    store: Store,
    poller: FeedPoller,
    notifier: Notifier,
    registry: CollectorRegistry,
    dashboard: APIRouter,
) -> FastAPI:
    app = FastAPI(
        title="Status-page monitor",
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        # OpenTelemetry hooks look the environment up on every request; nothing here exports.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    started = time.monotonic()

    # Webhooks are plain Starlette routes: FastAPI's dependency machinery would cost a third
    # of each delivery's CPU and gives nothing to an endpoint that reads raw bytes.
    async def incident_io(request: Request) -> JSONResponse:
        try:
            body = await receiver.read_body(request)
            delivery_id = receiver.verify_incident_io(request, body)
            payload = _parse_json(body)
            key = f"incident-io:{delivery_id}" if delivery_id else None
            answer = await receiver.deliver(key, lambda: incidentio_events(payload, delivery_id or ""))
        except Rejected as exc:
            return _reject(receiver, "incident-io", exc)
        except PayloadError as exc:
            return _reject(receiver, "incident-io", Rejected(422, str(exc), "unknown_shape"))
        return _answer(receiver, "incident-io", answer)

    async def generic(request: Request) -> JSONResponse:
        provider = request.path_params["provider"]
        try:
            if not provider.strip() or len(provider) > 100:
                raise Rejected(404, "provider name must be 1 to 100 characters", "bad_provider")
            body = await receiver.read_body(request)
            delivery_id = receiver.verify_generic(provider, request, body)
            payload = _parse_json(body)
            key = f"generic:{provider}:{delivery_id}" if delivery_id else None
            answer = await receiver.deliver(key, lambda: generic_events(provider, payload))
        except Rejected as exc:
            return _reject(receiver, "generic", exc)
        except PayloadError as exc:
            return _reject(receiver, "generic", Rejected(422, str(exc), "unknown_shape"))
        return _answer(receiver, "generic", answer)

    app.add_route("/webhook/incident-io", incident_io, methods=["POST"])
    app.add_route("/webhook/generic/{provider}", generic, methods=["POST"])
    app.include_router(dashboard)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "uptime_seconds": round(time.monotonic() - started, 3)}

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
            "notifications": {
                "sent_total": sum(t["sent_total"] for t in targets),
                "failed_total": sum(t["failed_total"] for t in targets),
                "retries_total": sum(t["retries_total"] for t in targets),
                "pending": notifier.pending,
                "targets": targets,
            },
            "feeds": poller.feed_stats(),
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

    return app
