"""``oncall.notify``: hand one notification to its channel, and log every attempt.

A notification job names the group, the person, the contact method (None: the in-app inbox)
and the escalation stage; its idempotency key is ``notify:<group>:<stage>:<user>:<method>``,
so a stage run twice notifies nobody twice. When it runs:

- the group acknowledged or resolved since: ``skipped`` (a rule "after 5 minutes by email"
  does not fire once someone has acknowledged);
- the person was told about this group through this method moments ago (``FOLD_WINDOW``): the
  repeat is ``folded``;
- the method has had ``THROTTLE_COUNT`` notifications in ``THROTTLE_WINDOW``: ``throttled``,
  and one digest at the end of the window tells the person how many were held back;
- otherwise the channel is asked (``channels.send``). A refusal is logged as ``failed`` and
  falls through at once to the person's next contact method (brought forward if it was due
  later; the inbox when there is no other), then the job retries with backoff while a retry may
  help. Nothing is dropped: the in-app inbox always receives the page.

The failure is recorded in a transaction of its own, since the job's is rolled back for the
retry.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting import service as alerting
from lamplighter.catalog.models import Entity
from lamplighter.core import jobs, people
from lamplighter.core.db import utcnow
from lamplighter.core.errors import NotFound
from lamplighter.core.models import Job, JobStatus
from lamplighter.core.settings import Settings
from lamplighter.oncall import channels, contacts, links
from lamplighter.oncall.escalation import NOTIFY, NOTIFY_INBOX
from lamplighter.oncall.escalation import memo as escalation_memo
from lamplighter.oncall.models import ContactKind, ContactMethod, Delivery, DeliveryStatus

log = logging.getLogger("lamplighter.oncall.notify")

FOLD_WINDOW = dt.timedelta(seconds=60)
THROTTLE_WINDOW = dt.timedelta(minutes=5)
THROTTLE_COUNT = 10
DIGEST = "oncall.digest"
MAX_RETRIES = 5


def runbook_of(session: Session, group: alerting.AlertGroup) -> str | None:
    """The alert's runbook link, else the catalog entity's."""
    return group.runbook_url or _entity_runbook(session, group.entity_id)


def _entity_runbook(session: Session, entity_id: int | None) -> str | None:
    if entity_id is None:
        return None
    entity = session.get(Entity, entity_id)
    for link in (entity.links if entity else None) or []:
        if link.get("type") == "runbook" and link.get("url"):
            return str(link["url"])
    return None


def notification_for(
    session: Session,
    settings: Settings,
    group: alerting.AlertGroup,
    *,
    user_id: int,
    tier_name: str = "",
    is_repeat: bool = False,
    folded_count: int = 0,
) -> channels.Notification:
    teams = escalation_memo(session, "team names")
    if group.team_id not in teams:
        team = people.find_team(session=session, team_id=group.team_id)
        teams[group.team_id] = team.name if team else ""
    entities = escalation_memo(session, "entities")
    if group.entity_id not in entities:
        entities[group.entity_id] = (
            alerting.entity_ref(session, group.entity_id),
            _entity_runbook(session, group.entity_id),
        )
    entity, entity_runbook = entities[group.entity_id]
    team_name = teams[group.team_id]
    runbook = group.runbook_url or entity_runbook
    base = settings.base_url.rstrip("/")
    return channels.Notification(
        group_id=group.id,
        summary=group.summary,
        severity=group.severity,
        entity=entity,
        team=team_name,
        runbook_url=runbook,
        page_url=f"{base}/alerts/groups/{group.id}",
        ack_url=links.url(
            settings, links.sign(settings, group_id=group.id, action="ack", user_id=user_id)
        ),
        resolve_url=links.url(
            settings, links.sign(settings, group_id=group.id, action="resolve", user_id=user_id)
        ),
        alert_count=group.alert_count,
        tier_name=tier_name,
        is_repeat=is_repeat,
        folded_count=folded_count,
    )


def _recent(
    session: Session,
    *,
    user_id: int,
    method_id: int | None,
    group_id: int | None,
    since: dt.datetime,
) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(
            Delivery.user_id == user_id,
            Delivery.status == DeliveryStatus.SENT.value,
            Delivery.at >= since,
        )
    )
    query = query.where(
        Delivery.contact_method_id == method_id
        if method_id is not None
        else Delivery.contact_method_id.is_(None)
    )
    if group_id is not None:
        query = query.where(Delivery.group_id == group_id)
    return int(session.scalar(query) or 0)


def _delivery(
    payload: dict[str, Any],
    method: ContactMethod | None,
    status: str,
    *,
    attempt: int = 1,
    error: str = "",
) -> Delivery:
    return Delivery(
        group_id=int(payload["group_id"]),
        user_id=int(payload["user_id"]),
        contact_method_id=method.id if method is not None else None,
        channel=method.kind if method is not None else ContactKind.INBOX.value,
        tier=int(payload.get("tier", 0)),
        round=int(payload.get("round", 0)),
        attempt=attempt,
        status=status,
        error=error[:2000],
        at=utcnow(),
    )


def fall_through(
    session: Session, payload: dict[str, Any], method: ContactMethod | None
) -> str | None:
    """Bring the person's next contact method forward (or the inbox); the key it runs under."""
    user_id = int(payload["user_id"])
    order = [m.id if m is not None else None for _, m in contacts.effective_rules(session, user_id)]
    failed = method.id if method is not None else None
    after = order[order.index(failed) + 1 :] if failed in order else order
    candidates = [m for m in after if m != failed]
    if candidates:
        following: int | None = candidates[0]
    elif failed is not None:
        following = None  # the inbox
    else:
        return None  # the inbox itself failed: there is nothing below it
    key_part = str(following) if following is not None else "inbox"
    key = f"notify:{payload['group_id']}:{payload['stage']}:{user_id}:{key_part}"
    now = utcnow()
    moved = session.execute(
        sa.update(Job)
        .where(Job.idempotency_key == key, Job.status == JobStatus.QUEUED.value, Job.due_at > now)
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(moved, "rowcount", 0):
        jobs.enqueue_keyed(
            session=session,
            jobs=[
                {
                    "kind": NOTIFY if following is not None else NOTIFY_INBOX,
                    "payload": {**payload, "method_id": following, "fallthrough": True},
                    "idempotency_key": key,
                }
            ],
        )
    return key


def deliver_inbox(
    session: Session, settings: Settings, group: alerting.AlertGroup, payload: dict[str, Any]
) -> None:
    """The in-app inbox item of a tier's notification, written in the tier's transaction."""
    user_id = int(payload["user_id"])
    note = notification_for(
        session,
        settings,
        group,
        user_id=user_id,
        tier_name=str(payload.get("tier_name", "")),
        is_repeat=int(payload.get("round", 0)) > 0,
    )
    delivery = _delivery(payload, None, DeliveryStatus.SENT.value)
    batch = jobs.in_batch(session)
    # A worker's batch adds its items unflushed and writes them at once; the delivery, which
    # names the item's id, follows them (escalation.flush_deferred).
    done = channels.send(None, user_id, note, session=session, settings=settings, flush=not batch)
    unflushed = channels.unflushed_inbox(session) if batch else []
    if unflushed:
        deferred = escalation_memo(session, "deferred_inbox")
        deferred.setdefault("pairs", []).append((unflushed.pop(), delivery))
        return
    delivery.error = done[:2000]
    session.add(delivery)


@jobs.handler(NOTIFY_INBOX, batch_safe=True)
@jobs.handler(NOTIFY)
def notify(ctx: jobs.JobContext) -> None:
    with ctx.session.no_autoflush:  # a batch's earlier deliveries are flushed once, at commit
        _notify(ctx)


def _notify(ctx: jobs.JobContext) -> None:
    payload = ctx.payload
    session = ctx.session
    group_id, user_id = int(payload["group_id"]), int(payload["user_id"])
    method = session.get(ContactMethod, payload["method_id"]) if payload.get("method_id") else None
    if payload.get("method_id") and (method is None or method.user_id != user_id):
        method = None  # the method was deleted since: the inbox takes it
    try:
        group = alerting.get(session, group_id)
    except Exception:
        return
    now = utcnow()
    if (
        group.status != alerting.AlertStatus.TRIGGERED.value
        and payload.get("stage", "").find("reassign") != 0
    ):
        session.add(
            _delivery(
                payload, method, DeliveryStatus.SKIPPED.value, error=f"the group is {group.status}"
            )
        )
        return
    method_id = method.id if method is not None else None
    if _recent(
        session, user_id=user_id, method_id=method_id, group_id=group_id, since=now - FOLD_WINDOW
    ):
        session.add(
            _delivery(payload, method, DeliveryStatus.FOLDED.value, error="told moments ago")
        )
        return
    if method is not None and method.kind != ContactKind.INBOX.value:
        window_start = now - THROTTLE_WINDOW
        if (
            _recent(
                session, user_id=user_id, method_id=method_id, group_id=None, since=window_start
            )
            >= THROTTLE_COUNT
        ):
            session.add(
                _delivery(
                    payload, method, DeliveryStatus.THROTTLED.value, error="over the contact's rate"
                )
            )
            window = int(now.timestamp() // THROTTLE_WINDOW.total_seconds())
            jobs.enqueue_keyed(
                session=session,
                jobs=[
                    {
                        "kind": DIGEST,
                        "payload": {
                            "user_id": user_id,
                            "method_id": method_id,
                            "since": window_start.isoformat(),
                        },
                        "idempotency_key": f"digest:{user_id}:{method_id}:{window}",
                        "due_at": now + THROTTLE_WINDOW,
                    }
                ],
            )
            return
    note = notification_for(
        session,
        ctx.settings,
        group,
        user_id=user_id,
        tier_name=str(payload.get("tier_name", "")),
        is_repeat=int(payload.get("round", 0)) > 0,
    )
    try:
        done = channels.send(method, user_id, note, session=session, settings=ctx.settings)
    except channels.ChannelError as exc:
        _record_failure(session, payload, method, ctx.attempt, exc)
        if exc.retryable and ctx.attempt < MAX_RETRIES:
            raise  # the job system retries with backoff
        raise jobs.PermanentFailure(exc.reason) from None
    delivery = _delivery(payload, method, DeliveryStatus.SENT.value, attempt=ctx.attempt)
    delivery.error = done[:2000]
    session.add(delivery)


def _record_failure(
    session: Session,
    payload: dict[str, Any],
    method: ContactMethod | None,
    attempt: int,
    exc: channels.ChannelError,
) -> None:
    """In a transaction of its own: the failed attempt, and the next method brought forward."""
    with Session(bind=session.get_bind()) as own:
        own.add(
            _delivery(
                payload, method, DeliveryStatus.FAILED.value, attempt=attempt, error=exc.reason
            )
        )
        if attempt == 1:  # the first failure falls through; retries only retry
            fall_through(own, payload, method)
        own.commit()
    log.warning(
        "notification failed",
        extra={
            "group_id": payload["group_id"],
            "channel": method.kind if method else "inbox",
            "attempt": attempt,
            "reason": exc.reason[:300],
        },
    )


@jobs.handler(DIGEST)
def digest(ctx: jobs.JobContext) -> None:
    """Tell a throttled person, once, how many notifications were held back."""
    user_id = int(ctx.payload["user_id"])
    method = None
    if ctx.payload.get("method_id"):
        found = ctx.session.get(ContactMethod, ctx.payload["method_id"])
        method = found if found is not None and found.user_id == user_id else None
    since = dt.datetime.fromisoformat(ctx.payload["since"])
    held = (
        ctx.session.execute(
            sa.select(Delivery.group_id)
            .where(
                Delivery.user_id == user_id,
                Delivery.status == DeliveryStatus.THROTTLED.value,
                Delivery.at >= since,
            )
            .order_by(Delivery.id.desc())
        )
        .scalars()
        .all()
    )
    if not held:
        return
    try:
        group = alerting.get(ctx.session, held[0])
    except NotFound:  # deleted with its integration since (on-call forgets its rows soon)
        return
    note = notification_for(
        ctx.session, ctx.settings, group, user_id=user_id, folded_count=len(set(held)) - 1
    )
    try:
        channels.send(method, user_id, note, session=ctx.session, settings=ctx.settings)
    except channels.ChannelError:
        channels.send(None, user_id, note, session=ctx.session, settings=ctx.settings)
