"""The ingest endpoints, authenticated by the integration key only.

- ``POST /api/v1/alerting/ingest/alertmanager/{key}`` — Alertmanager's webhook (version 4);
  the key may also come as ``Authorization: Bearer <key>`` to
  ``/api/v1/alerting/ingest/alertmanager`` (Alertmanager's ``http_config.authorization``).
- ``POST /v2/enqueue`` — PagerDuty Events API v2: the ``routing_key`` is the key; answers
  PagerDuty's own bodies (202 ``{"status": "success", "message": "Event processed",
  "dedup_key": …}``, 400 ``{"status": "invalid event", "message": …, "errors": [...]}``).
- ``POST /api/v1/alerting/ingest/generic/{key}`` — any JSON, read by the integration's mapping.
- ``POST|GET /api/v1/alerting/heartbeat/{key}`` — a heartbeat's ping.

Each request is read and checked on the event loop (size, key, rate, format) and answered only
after the group committer has committed its alerts (``committer.py``). A key is looked up in
the process's cache, so a steady sender costs no database read before its write. The handlers
run on the fast path (``core/fastpath.py``): plain ASGI, without FastAPI's per-request work;
the routes declared here document them and serve them when the app runs without it.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from lamplighter.alerting import (
    alertmanager,
    committer,
    generic,
    heartbeats,
    integrations,
    pagerduty,
)
from lamplighter.alerting.intake import FormatError, IncomingAlert
from lamplighter.alerting.integrations import Snapshot
from lamplighter.alerting.models import IntegrationKind
from lamplighter.alerting.store import Outcome, Submission
from lamplighter.core import fastpath
from lamplighter.core.db import Database
from lamplighter.core.errors import NotFound, TooManyRequests, Unauthorized
from lamplighter.core.fastpath import Call, Reply, json_reply
from lamplighter.core.settings import Settings
from lamplighter.core.web import BODY_LIMIT_KEY, QUIET_LOG_KEY

MAX_BODY_BYTES = 512 * 1024  # PagerDuty's limit, for every ingest format
INGEST_EXTRA: dict[str, Any] = {BODY_LIMIT_KEY: MAX_BODY_BYTES, QUIET_LOG_KEY: True}
# The bodies are read by the format parsers (alertmanager.py, pagerduty.py, generic.py), which
# name each wrong field; the document says what they read.
PAGERDUTY_EVENT = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "properties": {
        "routing_key": {"type": "string", "description": "The integration key."},
        "event_action": {"type": "string", "enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "maxLength": 255},
        "payload": {
            "type": "object",
            "description": "Required to trigger.",
            "required": ["summary", "source", "severity"],
            "properties": {
                "summary": {"type": "string", "maxLength": 1024},
                "source": {"type": "string"},
                "severity": {"type": "string", "enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {},
            },
        },
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": {"type": "array", "items": {"type": "object"}},
        "images": {"type": "array", "items": {"type": "object"}},
    },
}
ENQUEUE_EXTRA: dict[str, Any] = {
    **INGEST_EXTRA,
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PAGERDUTY_EVENT}},
    },
}
KeyPath = Annotated[str, Path(description="The integration key.")]

router = APIRouter(tags=["alerting: ingest"])
enqueue_router = APIRouter(tags=["alerting: ingest"])


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, burst: float) -> None:
        self.tokens = burst
        self.stamp = time.monotonic()


_BUCKETS: dict[str, _Bucket] = {}


def _take_tokens(settings: Settings, key_hash: str, count: int) -> None:
    """A token bucket per integration key and process: ``alert_ingest_rate_per_s`` alerts a
    second, bursts of ``alert_ingest_burst``; over it, 429 with ``Retry-After``."""
    rate = settings.alert_ingest_rate_per_s
    burst = float(settings.alert_ingest_burst)
    bucket = _BUCKETS.get(key_hash)
    if bucket is None:
        if len(_BUCKETS) > 100_000:
            _BUCKETS.clear()
        bucket = _BUCKETS[key_hash] = _Bucket(burst)
    now = time.monotonic()
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
    bucket.stamp = now
    if bucket.tokens < count:
        wait = math.ceil((count - bucket.tokens) / rate) if rate > 0 else 60
        raise RateLimited(
            f"this integration key sent more than {rate:g} alerts a second; retry later",
            retry_after=max(1, wait),
        )
    bucket.tokens -= count


class RateLimited(TooManyRequests):
    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


async def _integration(app: Any, key: str, kinds: tuple[str, ...]) -> Snapshot:
    settings: Settings = app.state.settings
    db: Database = app.state.db
    if not key or len(key) > 200:
        raise Unauthorized("no valid integration key")
    cached = integrations.cached(key, ttl_s=settings.auth_cache_seconds)
    if cached is integrations.MISS:

        def lookup() -> Snapshot | None:
            with db.sessionmaker() as session:
                return integrations.by_key(session, key, ttl_s=settings.auth_cache_seconds)

        found = await run_in_threadpool(lookup)
    else:
        found = cast(Snapshot | None, cached)
    if found is None or found.kind not in kinds:
        raise Unauthorized("no valid integration key for this endpoint")
    return found


async def _commit(app: Any, integration: Snapshot, alerts: list[IncomingAlert]) -> Outcome:
    settings: Settings = app.state.settings
    _take_tokens(settings, integration.key_hash, max(1, len(alerts)))
    if not alerts:
        return Outcome(accepted=0)
    db: Database = app.state.db
    return await committer.for_database(db).submit(Submission(integration, alerts))


def _bearer(authorization: str | None) -> str:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return ""


# The handlers (served on the fast path, core/fastpath.py); the routes below document them.


async def _alertmanager(call: Call, key: str) -> Reply:
    integration = await _integration(call.app, key, (IntegrationKind.ALERTMANAGER.value,))
    batch = alertmanager.parse_webhook(call.body)
    outcome = await _commit(call.app, integration, list(batch.alerts))
    return json_reply({"status": "success", "accepted": outcome.accepted})


async def _alertmanager_by_path(call: Call) -> Reply:
    return await _alertmanager(call, call.path_params["key"])


async def _alertmanager_by_bearer(call: Call) -> Reply:
    return await _alertmanager(call, _bearer(call.header(b"authorization")))


async def _generic(call: Call) -> Reply:
    integration = await _integration(
        call.app, call.path_params["key"], (IntegrationKind.GENERIC.value,)
    )
    if integration.mapping is None:  # refused when saved; kept safe all the same
        raise NotFound("this integration has no mapping")
    body = generic.parse_body(call.body)
    alert = generic.map_body(integration.mapping, body)
    outcome = await _commit(call.app, integration, [alert])
    return json_reply(
        {"status": "success", "accepted": outcome.accepted, "dedup_key": alert.dedup_key}
    )


async def _ping(call: Call) -> Reply:
    integration = await _integration(
        call.app, call.path_params["key"], (IntegrationKind.HEARTBEAT.value,)
    )
    settings: Settings = call.app.state.settings
    _take_tokens(settings, integration.key_hash, 1)
    db: Database = call.app.state.db
    await run_in_threadpool(heartbeats.ping, db, integration)
    return json_reply({"status": "success"})


async def _enqueue(call: Call) -> Reply:
    try:
        routing_key, alert = pagerduty.parse_event(call.body, generate_key=integrations.new_key)
    except FormatError as exc:
        status = 413 if exc.status == 413 else 400
        return json_reply(pagerduty.error_body(exc.errors), status=status)
    try:
        integration = await _integration(call.app, routing_key, (IntegrationKind.PAGERDUTY.value,))
    except Unauthorized:
        # PagerDuty answers an unknown routing key with 400 "invalid event" too.
        return json_reply(
            pagerduty.error_body(
                [("routing_key", "routing_key is not the key of an integration here")]
            ),
            status=400,
        )
    try:
        await _commit(call.app, integration, [alert])
    except RateLimited as exc:
        return json_reply(
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly.  Please retry later.",
            },
            status=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return json_reply(pagerduty.success_body(alert.dedup_key))


@router.post(
    "/alerting/ingest/alertmanager/{key}",
    status_code=202,
    openapi_extra=INGEST_EXTRA,
    summary="Alertmanager webhook receiver (payload version 4)",
    responses={400: {"description": "Not an Alertmanager webhook"}, 401: {}, 413: {}, 429: {}},
)
@fastpath.serves(_alertmanager_by_path)
async def alertmanager_webhook(request: Request, key: KeyPath) -> Response:
    return await fastpath.answer(request, _alertmanager_by_path)


@router.post(
    "/alerting/ingest/alertmanager",
    status_code=202,
    openapi_extra=INGEST_EXTRA,
    summary="Alertmanager webhook receiver, the key as a bearer credential",
    responses={400: {}, 401: {}, 413: {}, 429: {}},
)
@fastpath.serves(_alertmanager_by_bearer)
async def alertmanager_webhook_bearer(
    request: Request, authorization: Annotated[str | None, Header(max_length=300)] = None
) -> Response:
    return await fastpath.answer(request, _alertmanager_by_bearer)


@router.post(
    "/alerting/ingest/generic/{key}",
    status_code=202,
    openapi_extra=INGEST_EXTRA,
    summary="Generic JSON webhook, read by the integration's mapping",
    responses={400: {}, 401: {}, 413: {}, 429: {}},
)
@fastpath.serves(_generic)
async def generic_webhook(request: Request, key: KeyPath) -> Response:
    return await fastpath.answer(request, _generic)


@router.post(
    "/alerting/heartbeat/{key}",
    status_code=202,
    openapi_extra=INGEST_EXTRA,
    summary="A heartbeat's ping: the next ping resolves a missed-heartbeat alert",
    responses={401: {}, 429: {}},
)
@fastpath.serves(_ping)
async def heartbeat_ping(request: Request, key: KeyPath) -> Response:
    return await fastpath.answer(request, _ping)


@router.get(
    "/alerting/heartbeat/{key}",
    status_code=202,
    openapi_extra=INGEST_EXTRA,
    summary="A heartbeat's ping by GET, for senders that can only fetch a URL",
    responses={401: {}, 429: {}},
)
@fastpath.serves(_ping)
async def heartbeat_ping_get(request: Request, key: KeyPath) -> Response:
    return await fastpath.answer(request, _ping)


@enqueue_router.post(
    "/v2/enqueue",
    status_code=202,
    openapi_extra=ENQUEUE_EXTRA,
    summary="PagerDuty Events API v2: trigger, acknowledge or resolve by dedup_key",
    response_class=Response,
    responses={
        202: {"description": "Event processed", "content": {"application/json": {}}},
        400: {
            "description": "Invalid event (PagerDuty's body)",
            "content": {"application/json": {}},
        },
        413: {"description": "Over 512 KB", "content": {"application/json": {}}},
        429: {"description": "Throttled; see Retry-After", "content": {"application/json": {}}},
    },
)
@fastpath.serves(_enqueue)
async def enqueue(request: Request) -> Response:
    return await fastpath.answer(request, _enqueue)
