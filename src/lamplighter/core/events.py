"""The event spine: domain events appended in the transaction of the change that caused them.

Three things read an event, all through the ``events`` table and the job queue:

- **webhooks**: each active subscription whose patterns match gets a ``webhook.deliver`` job;
- **in-app subscribers**: a domain declares ``pattern -> job kind`` in its manifest
  (``Subscription("catalog.entity_deleted", "slo.detach")``); :func:`emit` enqueues one job per
  matching subscriber in the same transaction, keyed by the event id, so a reaction is durable,
  retried with backoff, and never runs twice for one event. Its handler reads the event with
  :func:`delivered`;
- **pollers**: ``GET /api/v1/events?after=<id>``.

Every event type is declared once with a Pydantic model of its payload (:func:`event_type`), and
``GET /api/v1/events/types`` publishes them. :func:`emit` checks the payload against the model;
with ``STRICT`` on (the test suite) a mismatch or an undeclared type raises, in production it is
logged and the event kept as emitted.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pydantic
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import jobs
from lamplighter.core.journal import lock_journal
from lamplighter.core.models import Event, WebhookSubscription

log = logging.getLogger("lamplighter.events")
WEBHOOK_DELIVER = "webhook.deliver"

# The test suite turns this on: an undeclared type or a payload that does not match its model
# then fails the test that emitted it.
STRICT = False


class EventPayload(pydantic.BaseModel):
    """Base of every event's payload model. Extra keys are refused: a payload says exactly what
    its model says, so a subscriber written against the model reads every event."""

    model_config = pydantic.ConfigDict(extra="forbid")


P = TypeVar("P", bound=type[EventPayload])


@dataclass(frozen=True)
class EventType:
    name: str
    model: type[EventPayload]
    description: str
    subject: str  # what the subject names, e.g. "catalog entity reference"


TYPES: dict[str, EventType] = {}


def event_type(name: str, *, description: str, subject: str) -> Callable[[P], P]:
    """Declare an event type and its payload model (a class decorator)."""

    def register(model: P) -> P:
        TYPES[name] = EventType(name=name, model=model, description=description, subject=subject)
        return model

    return register


@dataclass(frozen=True)
class Subscription:
    """A domain's reaction to other domains' events: matching events enqueue a ``kind`` job."""

    pattern: str
    kind: str


SUBSCRIPTIONS: list[Subscription] = []


def subscribe(subscription: Subscription) -> None:
    if subscription not in SUBSCRIPTIONS:
        SUBSCRIPTIONS.append(subscription)
        _subscribers_of.cache_clear()


def unsubscribe(subscription: Subscription) -> None:
    if subscription in SUBSCRIPTIONS:
        SUBSCRIPTIONS.remove(subscription)
        _subscribers_of.cache_clear()


@functools.cache
def _subscribers_of(event_type: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.kind for s in SUBSCRIPTIONS if matches([s.pattern], event_type)))


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Event-type patterns are exact names or shell-style globs: ``team.*``, ``*``."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


class UndeclaredEvent(RuntimeError):
    pass


def check(type: str, payload: dict[str, Any] | EventPayload) -> dict[str, Any]:
    """The payload as JSON-ready data, checked against its declared model."""
    if isinstance(payload, EventPayload):
        data: dict[str, Any] = payload.model_dump(mode="json", by_alias=True)
    else:
        data = orjson.loads(orjson.dumps(payload, default=str))
    declared = TYPES.get(type)
    try:
        if declared is None:
            raise UndeclaredEvent(f"event type {type!r} is not declared (events.event_type)")
        declared.model.model_validate(data)
    except (UndeclaredEvent, pydantic.ValidationError) as exc:
        if STRICT:
            raise
        log.warning("event payload does not match its type", extra={"type": type, "error": exc})
    return data


@dataclass(frozen=True)
class Pending:
    type: str
    subject: str
    payload: dict[str, Any] | EventPayload


def emit(
    *, session: Session, type: str, subject: str, payload: dict[str, Any] | EventPayload
) -> int:
    """Append an event; schedule a job for every webhook and in-app subscriber that wants it.

    Returns the event's id. A Core insert, not an ORM object: nothing reads the event back in
    the transaction that emits it, and the unit of work costs more than the insert."""
    return emit_many(session=session, pending=[Pending(type, subject, payload)])[0]


def emit_many(*, session: Session, pending: Iterable[Pending]) -> list[int]:
    """Append many events in one statement (an import's per-entity events) and fan them out."""
    rows: list[dict[str, Any]] = [
        {"type": p.type, "subject": p.subject[:200], "payload": check(p.type, p.payload)}
        for p in pending
    ]
    if not rows:
        return []
    lock_journal(session)
    ids: list[int] = list(
        session.scalars(
            sa.insert(Event).returning(Event.id, sort_by_parameter_order=True),
            rows,
        )
    )
    webhooks = session.execute(
        sa.select(WebhookSubscription.id, WebhookSubscription.event_types).where(
            WebhookSubscription.is_active.is_(True)
        )
    ).all()
    jobs_to_add: list[dict[str, Any]] = []
    for event_id, row in zip(ids, rows, strict=True):
        for subscription_id, patterns in webhooks:
            if matches(patterns, row["type"]):
                jobs_to_add.append(
                    {
                        "kind": WEBHOOK_DELIVER,
                        "payload": {"subscription_id": subscription_id, "event_id": event_id},
                        "idempotency_key": f"webhook:{subscription_id}:{event_id}",
                    }
                )
        for kind in _subscribers_of(row["type"]):
            jobs_to_add.append(
                {
                    "kind": kind,
                    "payload": {"event_id": event_id, **row},
                    "idempotency_key": f"event:{kind}:{event_id}",
                }
            )
    if jobs_to_add:
        jobs.enqueue_keyed(session=session, jobs=jobs_to_add)
    return ids


@dataclass(frozen=True)
class Delivered:
    """The event a subscriber's job was enqueued for."""

    id: int
    type: str
    subject: str
    payload: dict[str, Any]

    def model(self) -> EventPayload:
        """The payload as its declared model."""
        return TYPES[self.type].model.model_validate(self.payload)


def delivered(ctx: jobs.JobContext) -> Delivered:
    """The event behind a subscriber's job (see :class:`Subscription`)."""
    return Delivered(
        id=int(ctx.payload["event_id"]),
        type=str(ctx.payload["type"]),
        subject=str(ctx.payload["subject"]),
        payload=dict(ctx.payload["payload"]),
    )


def list_after(
    *, session: Session, after: int = 0, types: Sequence[str] | None = None, limit: int = 100
) -> list[Event]:
    query = sa.select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if types:
        query = query.where(Event.type.in_(list(types)))
    return list(session.scalars(query))


def catalogue() -> list[dict[str, Any]]:
    """Every declared event type with its payload's JSON schema and who reacts to it in-app."""
    return [
        {
            "type": spec.name,
            "description": spec.description,
            "subject": spec.subject,
            "payload_schema": spec.model.model_json_schema(),
            "subscribers": list(_subscribers_of(spec.name)),
        }
        for spec in sorted(TYPES.values(), key=lambda s: s.name)
    ]
