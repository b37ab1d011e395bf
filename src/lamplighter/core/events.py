"""The event spine: domain events appended in the transaction of the change that caused them."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import jobs
from lamplighter.core.journal import lock_journal
from lamplighter.core.models import Event, WebhookSubscription

WEBHOOK_DELIVER = "webhook.deliver"


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Event-type patterns are exact names or shell-style globs: ``team.*``, ``*``."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def emit(*, session: Session, type: str, subject: str, payload: dict[str, Any]) -> int:
    """Append an event; schedule a delivery job for every subscription that wants it.

    Returns the event's id. A Core insert, not an ORM object: nothing reads the event back in
    the transaction that emits it, and the unit of work costs more than the insert."""
    lock_journal(session)
    event_id: int = session.execute(
        sa.insert(Event)
        .values(
            type=type, subject=subject, payload=orjson.loads(orjson.dumps(payload, default=str))
        )
        .returning(Event.id)
    ).scalar_one()
    subscriptions = session.execute(
        sa.select(WebhookSubscription.id, WebhookSubscription.event_types).where(
            WebhookSubscription.is_active.is_(True)
        )
    ).all()
    for subscription_id, patterns in subscriptions:
        if matches(patterns, type):
            jobs.enqueue(
                session=session,
                kind=WEBHOOK_DELIVER,
                payload={"subscription_id": subscription_id, "event_id": event_id},
                idempotency_key=f"webhook:{subscription_id}:{event_id}",
            )
    return event_id


def list_after(
    *, session: Session, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
) -> list[Event]:
    query = sa.select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if types:
        query = query.where(Event.type.in_(list(types)))
    return list(session.scalars(query))
