"""Outgoing webhooks: subscriptions to event types, signed deliveries run as jobs."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, jobs, outbound
from lamplighter.core.authz import require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox, hmac_sha256
from lamplighter.core.errors import NotFound, ValidationFailed
from lamplighter.core.events import WEBHOOK_DELIVER
from lamplighter.core.identity import get_team
from lamplighter.core.models import Event, WebhookDelivery, WebhookSubscription
from lamplighter.core.pagination import keyset
from lamplighter.core.settings import get_settings

SIGNATURE_HEADER = "X-Lamplighter-Signature-256"
# Tests may swap the whole network for a transport (httpx.MockTransport); None means the
# outbound policy's client, which checks every address it connects to.
TRANSPORT: httpx.BaseTransport | None = None


def check_url(url: str, field: str = "body.url", policy: outbound.Policy | None = None) -> str:
    """Accept absolute http(s) URLs whose host, when it is an address literal (in any spelling),
    the outbound policy allows; names are checked after resolution, at delivery."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed.one(field, "must be an absolute http or https URL")
    try:
        (policy or outbound.Policy.from_settings(get_settings())).check_url(url, resolve=False)
    except outbound.Refused as exc:
        raise ValidationFailed.one(field, str(exc)) from exc
    return url


def check_patterns(patterns: list[str]) -> list[str]:
    if not patterns:
        raise ValidationFailed.one(
            "body.event_types", "name at least one event type or pattern (e.g. team.*)"
        )
    for index, pattern in enumerate(patterns):
        if not pattern or len(pattern) > 100 or any(c.isspace() for c in pattern):
            raise ValidationFailed.one(
                f"body.event_types.{index}", "must be a non-empty name without spaces"
            )
    return patterns


def snapshot(sub: WebhookSubscription) -> dict[str, Any]:
    return {
        "name": sub.name,
        "url": sub.url,
        "event_types": list(sub.event_types),
        "is_active": sub.is_active,
        "owner_team_id": sub.owner_team_id,
    }


def get(*, session: Session, subscription_id: int) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise NotFound(f"no webhook subscription with id {subscription_id}")
    return sub


def list_(
    *, session: Session, after_id: int | None, limit: int, team_id: int | None = None
) -> list[WebhookSubscription]:
    query = keyset(
        sa.select(WebhookSubscription), WebhookSubscription.id, position=after_id, limit=limit
    )
    if team_id is not None:
        query = query.where(WebhookSubscription.owner_team_id == team_id)
    return list(session.scalars(query))


def create(
    *,
    session: Session,
    actor: Actor,
    box: SecretBox,
    name: str,
    url: str,
    event_types: list[str],
    owner_team: str,
    secret: str | None = None,
    policy: outbound.Policy | None = None,
) -> tuple[WebhookSubscription, str]:
    """Create a subscription; return it with its signing secret (shown once)."""
    team = get_team(session=session, slug=owner_team)
    require_owned_write(actor, team.id, f"webhooks of team {team.slug}")
    if not name.strip():
        raise ValidationFailed.one("body.name", "must not be empty")
    secret = secret or secrets.token_urlsafe(32)
    if len(secret) < 16:
        raise ValidationFailed.one("body.secret", "must be at least 16 characters")
    sub = WebhookSubscription(
        name=name.strip(),
        url=check_url(url, policy=policy),
        event_types=check_patterns(event_types),
        secret_encrypted=box.encrypt(secret),
        owner_team_id=team.id,
    )
    session.add(sub)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="webhook.create",
        object_type="webhook",
        object_id=sub.id,
        after=snapshot(sub),
    )
    return sub, secret


def update(
    *,
    session: Session,
    actor: Actor,
    subscription_id: int,
    url: str | None = None,
    event_types: list[str] | None = None,
    is_active: bool | None = None,
    policy: outbound.Policy | None = None,
) -> WebhookSubscription:
    sub = get(session=session, subscription_id=subscription_id)
    require_owned_write(actor, sub.owner_team_id, "this webhook")
    before = snapshot(sub)
    if url is not None:
        sub.url = check_url(url, policy=policy)
    if event_types is not None:
        sub.event_types = check_patterns(event_types)
    if is_active is not None:
        sub.is_active = is_active
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="webhook.update",
        object_type="webhook",
        object_id=sub.id,
        before=before,
        after=snapshot(sub),
    )
    return sub


def delete(*, session: Session, actor: Actor, subscription_id: int) -> None:
    sub = get(session=session, subscription_id=subscription_id)
    require_owned_write(actor, sub.owner_team_id, "this webhook")
    before = snapshot(sub)
    session.delete(sub)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="webhook.delete",
        object_type="webhook",
        object_id=subscription_id,
        before=before,
    )


def list_deliveries(
    *, session: Session, subscription_id: int, before_id: int | None, limit: int
) -> list[WebhookDelivery]:
    query = sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    return list(
        session.scalars(
            keyset(query, WebhookDelivery.id, position=before_id, limit=limit, newest_first=True)
        )
    )


def event_body(event: Event) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "type": event.type,
            "subject": event.subject,
            "payload": event.payload,
            "at": event.at.isoformat(),
        }
    )


class DeliveryFailed(Exception):
    pass


@jobs.handler(WEBHOOK_DELIVER)
def deliver(ctx: jobs.JobContext) -> None:
    """POST the event to the subscriber, signed with HMAC-SHA256 over the exact body bytes."""
    session = ctx.session
    sub = session.get(WebhookSubscription, ctx.payload["subscription_id"])
    event = session.get(Event, ctx.payload["event_id"])
    if sub is None or event is None or not sub.is_active:
        return  # stale: the subscription was removed or paused
    policy = outbound.Policy.from_settings(ctx.settings)
    box = SecretBox(ctx.settings.effective_secret_key())
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Lamplighter-Webhooks/1",
        "X-Lamplighter-Event": event.type,
        "X-Lamplighter-Delivery": f"{sub.id}-{event.id}",
        SIGNATURE_HEADER: "sha256=" + hmac_sha256(box.decrypt(sub.secret_encrypted).encode(), body),
    }
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    refused = False
    try:
        # Checked before sending and again, on the address itself, when the client connects.
        policy.check_url(sub.url, resolve=False)
        with outbound.client(
            policy, timeout_s=ctx.settings.webhook_timeout_s, transport=TRANSPORT
        ) as client:
            response = client.post(sub.url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"subscriber answered HTTP {status_code}"
    except outbound.Refused:
        # Neither the reason nor a status code: the log must not map internal hosts and ports.
        error, refused = outbound.REFUSED, True
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    delivery = dict(
        subscription_id=sub.id,
        event_id=event.id,
        attempt=ctx.attempt,
        succeeded=error is None,
        status_code=status_code,
        error=error,
        duration_ms=(time.monotonic() - started) * 1000,
    )
    if error is None:
        session.add(WebhookDelivery(**delivery))
        return
    # The job's transaction rolls back on failure; the delivery log must survive it.
    with Session(session.get_bind()) as log_session, log_session.begin():
        log_session.add(WebhookDelivery(**delivery))
    if refused:
        raise jobs.PermanentFailure(error)
    raise DeliveryFailed(error)
