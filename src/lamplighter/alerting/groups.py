"""What people do with alert groups: read, acknowledge, resolve, escalate, reassign, note.

Who may act on a group: the owning team's members, SREs and admins — and the people the
on-call domain notified about it, whom it names in ``also_allowed`` (an infrastructure SRE
paged by the third tier need not be in the service's team). Every action is audited and
announced as an ``alert.group_*`` event; on-call stops or moves the escalation on them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting.event_types import (
    GroupAcknowledged,
    GroupEscalated,
    GroupReassigned,
    GroupResolved,
)
from lamplighter.alerting.models import (
    Alert,
    AlertGroup,
    AlertGroupLog,
    AlertKindNote,
    AlertStatus,
)
from lamplighter.alerting.schemas import AlertRead, GroupDetail, GroupRead, NoteRead, TimelineEntry
from lamplighter.alerting.store import OPEN
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, events, identity, people
from lamplighter.core.authz import can_write_owned, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, Forbidden, NotFound, ValidationFailed

OBJECT_TYPE = "alert_group"
MAX_ALERTS_SHOWN = 200


def get(session: Session, group_id: int) -> AlertGroup:
    group = session.get(AlertGroup, group_id)
    if group is None:
        raise NotFound(f"no alert group {group_id}")
    return group


def get_many(session: Session, group_ids: Iterable[int]) -> list[AlertGroup]:
    """The groups among ``group_ids``, in one query (a worker's batch reads its groups so)."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return []
    return list(session.scalars(sa.select(AlertGroup).where(AlertGroup.id.in_(wanted))))


def entity_ref(session: Session, entity_id: int | None) -> str | None:
    if entity_id is None:
        return None
    entity = session.get(Entity, entity_id)
    return entity.ref if entity is not None else None


def read(session: Session, group: AlertGroup) -> GroupRead:
    team = people.find_team(session=session, team_id=group.team_id)
    return GroupRead(
        id=group.id,
        integration_id=group.integration_id,
        team=team.slug if team else "",
        entity=entity_ref(session, group.entity_id),
        status=group.status,
        severity=group.severity,
        summary=group.summary,
        kind=group.kind,
        runbook_url=group.runbook_url,
        labels=dict(group.labels or {}),
        alert_count=group.alert_count,
        policy_id=group.policy_id,
        assignee_user_id=group.assignee_user_id,
        created_at=group.created_at,
        last_alert_at=group.last_alert_at,
        acknowledged_at=group.acknowledged_at,
        acknowledged_by_user_id=group.acknowledged_by_user_id,
        resolved_at=group.resolved_at,
        resolved_by_user_id=group.resolved_by_user_id,
    )


def alert_read(alert: Alert) -> AlertRead:
    return AlertRead(
        id=alert.id,
        group_id=alert.group_id,
        integration_id=alert.integration_id,
        dedup_key=alert.dedup_key,
        status=alert.status,
        severity=alert.severity,
        summary=alert.summary,
        source=alert.source,
        kind=alert.kind,
        labels=dict(alert.labels or {}),
        annotations=dict(alert.annotations or {}),
        details=dict(alert.details or {}),
        runbook_url=alert.runbook_url,
        silence_id=alert.silence_id,
        occurrences=alert.occurrences,
        starts_at=alert.starts_at,
        created_at=alert.created_at,
        last_seen_at=alert.last_seen_at,
        resolved_at=alert.resolved_at,
    )


def detail(session: Session, group: AlertGroup) -> GroupDetail:
    alerts = session.scalars(
        sa.select(Alert)
        .where(Alert.group_id == group.id)
        .order_by(Alert.id)
        .limit(MAX_ALERTS_SHOWN)
    )
    return GroupDetail(
        **read(session, group).model_dump(),
        alerts=[alert_read(alert) for alert in alerts],
        timeline=timeline(session, group.id),
        note=note_for(session, team_id=group.team_id, kind=group.kind),
    )


def timeline(session: Session, group_id: int) -> list[TimelineEntry]:
    rows = session.scalars(
        sa.select(AlertGroupLog)
        .where(AlertGroupLog.group_id == group_id)
        .order_by(AlertGroupLog.id)
    )
    return [
        TimelineEntry(at=row.at, what=row.what, actor_user_id=row.actor_user_id, detail=row.detail)
        for row in rows
    ]


def list_(
    session: Session,
    *,
    status: str | None = None,
    team_id: int | None = None,
    entity_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[AlertGroup]:
    """Newest first; ``status`` "open" means triggered or acknowledged."""
    query = sa.select(AlertGroup).order_by(AlertGroup.id.desc()).limit(limit)
    if status == "open":
        query = query.where(AlertGroup.status.in_(OPEN))
    elif status:
        query = query.where(AlertGroup.status == status)
    if team_id is not None:
        query = query.where(AlertGroup.team_id == team_id)
    if entity_id is not None:
        query = query.where(AlertGroup.entity_id == entity_id)
    if before is not None:
        query = query.where(AlertGroup.id < before)
    return list(session.scalars(query))


def may_act(actor: Actor, group: AlertGroup, also_allowed: Collection[int] = ()) -> bool:
    if can_write_owned(actor, group.team_id):
        return True
    return actor.user_id is not None and (
        actor.user_id in also_allowed or actor.user_id == group.assignee_user_id
    )


def _require_act(actor: Actor, group: AlertGroup, also_allowed: Collection[int], what: str) -> None:
    require_writer(actor, what)
    if not may_act(actor, group, also_allowed):
        raise Forbidden(
            f"only the owning team, SREs, admins and the people paged may {what} this alert group"
        )


def _ref(session: Session, group: AlertGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "team_id": group.team_id,
        "entity": entity_ref(session, group.entity_id),
        "integration_id": group.integration_id,
        "summary": group.summary[:300],
        "severity": group.severity,
    }


def _state(group: AlertGroup) -> dict[str, Any]:
    return {
        "status": group.status,
        "assignee_user_id": group.assignee_user_id,
        "acknowledged_by_user_id": group.acknowledged_by_user_id,
        "resolved_by_user_id": group.resolved_by_user_id,
    }


def _log(session: Session, group: AlertGroup, what: str, actor: Actor, **detail: Any) -> None:
    session.add(
        AlertGroupLog(
            group_id=group.id, at=utcnow(), what=what, actor_user_id=actor.user_id, detail=detail
        )
    )


def _audit(
    session: Session, actor: Actor, action: str, group: AlertGroup, before: dict[str, Any]
) -> None:
    audit.record(
        session=session,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=group.id,
        before=before,
        after=_state(group),
    )


def acknowledge(
    *,
    session: Session,
    actor: Actor,
    group_id: int,
    also_allowed: Collection[int] = (),
    via: str = "api",
) -> AlertGroup:
    """Acknowledge: the escalation stops. Acknowledging an acknowledged group changes nothing."""
    group = _locked(session, group_id)
    _require_act(actor, group, also_allowed, "acknowledge")
    if group.status == AlertStatus.RESOLVED.value:
        raise Conflict("this alert group is resolved already")
    if group.status == AlertStatus.ACKNOWLEDGED.value:
        return group
    before = _state(group)
    now = utcnow()
    group.status = AlertStatus.ACKNOWLEDGED.value
    group.acknowledged_at = now
    group.acknowledged_by_user_id = actor.user_id
    session.execute(
        sa.update(Alert)
        .where(Alert.group_id == group.id, Alert.status == AlertStatus.TRIGGERED.value)
        .values(status=AlertStatus.ACKNOWLEDGED.value)
        .execution_options(synchronize_session=False)
    )
    _log(session, group, "acknowledged", actor, via=via)
    _audit(session, actor, "alert.acknowledge", group, before)
    events.emit(
        session=session,
        type="alert.group_acknowledged",
        subject=f"alert-group:{group.id}",
        payload=GroupAcknowledged(**_ref(session, group), by_user_id=actor.user_id),
    )
    return group


def resolve(
    *,
    session: Session,
    actor: Actor,
    group_id: int,
    also_allowed: Collection[int] = (),
    via: str = "api",
) -> AlertGroup:
    """Resolve the group and every open alert in it; the next firing opens a new group."""
    group = _locked(session, group_id)
    _require_act(actor, group, also_allowed, "resolve")
    if group.status == AlertStatus.RESOLVED.value:
        return group
    before = _state(group)
    now = utcnow()
    group.status = AlertStatus.RESOLVED.value
    group.resolved_at = now
    group.resolved_by_user_id = actor.user_id
    group.accepting = False
    session.execute(
        sa.update(Alert)
        .where(Alert.group_id == group.id, Alert.status.in_(OPEN))
        .values(status=AlertStatus.RESOLVED.value, resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    _log(session, group, "resolved", actor, via=via)
    _audit(session, actor, "alert.resolve", group, before)
    events.emit(
        session=session,
        type="alert.group_resolved",
        subject=f"alert-group:{group.id}",
        payload=GroupResolved(**_ref(session, group), by_user_id=actor.user_id),
    )
    return group


def escalate(
    *, session: Session, actor: Actor, group_id: int, also_allowed: Collection[int] = ()
) -> AlertGroup:
    """Escalate now: the next tier is notified at once (on-call reacts to the event)."""
    group = _locked(session, group_id)
    _require_act(actor, group, also_allowed, "escalate")
    if group.status == AlertStatus.RESOLVED.value:
        raise Conflict("this alert group is resolved; there is nobody left to escalate to")
    before = _state(group)
    if group.status == AlertStatus.ACKNOWLEDGED.value:
        # Escalating an acknowledged group asks for help: it is open again for the next tier.
        group.status = AlertStatus.TRIGGERED.value
    _log(session, group, "escalated", actor)
    _audit(session, actor, "alert.escalate", group, before)
    events.emit(
        session=session,
        type="alert.group_escalated",
        subject=f"alert-group:{group.id}",
        payload=GroupEscalated(**_ref(session, group), by_user_id=actor.user_id or 0),
    )
    return group


def reassign(
    *,
    session: Session,
    actor: Actor,
    group_id: int,
    to_email: str,
    also_allowed: Collection[int] = (),
) -> AlertGroup:
    """Hand the group to someone else; they are notified, and it is theirs to acknowledge."""
    group = _locked(session, group_id)
    _require_act(actor, group, also_allowed, "reassign")
    if group.status == AlertStatus.RESOLVED.value:
        raise Conflict("this alert group is resolved already")
    target = identity.get_user_by_email(session=session, email=to_email.strip().lower())
    if target is None or not target.is_active:
        raise ValidationFailed.one("body.user", f"no active user {to_email!r}")
    before = _state(group)
    group.assignee_user_id = target.id
    if group.status == AlertStatus.ACKNOWLEDGED.value:
        group.status = AlertStatus.TRIGGERED.value  # the new assignee has not seen it yet
    _log(session, group, "reassigned", actor, to_user_id=target.id, to=target.display_name)
    _audit(session, actor, "alert.reassign", group, before)
    events.emit(
        session=session,
        type="alert.group_reassigned",
        subject=f"alert-group:{group.id}",
        payload=GroupReassigned(
            **_ref(session, group), by_user_id=actor.user_id or 0, to_user_id=target.id
        ),
    )
    return group


def _locked(session: Session, group_id: int) -> AlertGroup:
    """The group, row-locked on PostgreSQL: two people acting at once act one after the other."""
    query = sa.select(AlertGroup).where(AlertGroup.id == group_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    group = session.scalar(query)
    if group is None:
        raise NotFound(f"no alert group {group_id}")
    return group


def log_entries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Timeline entries written by another domain: on-call's ``notified`` (``actor_user_id``
    is then the person told), ``escalated`` to a tier, ``repeated``."""
    if rows:
        table = cast("sa.Table", AlertGroupLog.__table__)
        # Core, executemany: the ORM's bulk path cost more than the insert.
        session.execute(sa.insert(table), [{"at": utcnow(), **row} for row in rows])


def responders(session: Session, group_id: int) -> frozenset[int]:
    """The people on-call notified about the group: they may act on it."""
    return frozenset(
        session.scalars(
            sa.select(AlertGroupLog.actor_user_id)
            .where(
                AlertGroupLog.group_id == group_id,
                AlertGroupLog.what == "notified",
                AlertGroupLog.actor_user_id.is_not(None),
            )
            .distinct()
        )
    )


def alerts_of(session: Session, *, group_id: int, after: int | None, limit: int) -> list[Alert]:
    get(session, group_id)
    query = sa.select(Alert).where(Alert.group_id == group_id).order_by(Alert.id).limit(limit)
    if after is not None:
        query = query.where(Alert.id > after)
    return list(session.scalars(query))


# -- notes on alert kinds --------------------------------------------------------------------
def note_for(session: Session, *, team_id: int, kind: str) -> str | None:
    return session.scalar(
        sa.select(AlertKindNote.body).where(
            AlertKindNote.team_id == team_id, AlertKindNote.kind == kind
        )
    )


def set_note(*, session: Session, actor: Actor, group_id: int, body: str) -> NoteRead:
    """The team's "how to handle this" for the group's alert kind, shown when it fires again."""
    group = get(session, group_id)
    require_writer(actor, "write notes")
    if not can_write_owned(actor, group.team_id):
        raise Forbidden("only the owning team, SREs and admins may write its alert notes")
    note = session.scalar(
        sa.select(AlertKindNote).where(
            AlertKindNote.team_id == group.team_id, AlertKindNote.kind == group.kind
        )
    )
    before = {"body": note.body} if note else None
    if note is None:
        note = AlertKindNote(team_id=group.team_id, kind=group.kind, body=body)
        session.add(note)
    note.body = body
    note.updated_by_user_id = actor.user_id
    note.updated_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="alert.note",
        object_type="alert_kind_note",
        object_id=note.id,
        before=before,
        after={"team_id": group.team_id, "kind": group.kind, "body": body},
    )
    team = people.find_team(session=session, team_id=group.team_id)
    return NoteRead(
        team=team.slug if team else "",
        kind=note.kind,
        body=note.body,
        updated_by_user_id=note.updated_by_user_id,
        updated_at=note.updated_at,
    )


def open_count_by_entity(session: Session, entity_ids: Collection[int]) -> dict[int, int]:
    rows = session.execute(
        sa.select(AlertGroup.entity_id, sa.func.count())
        .where(AlertGroup.entity_id.in_(list(entity_ids)), AlertGroup.status.in_(OPEN))
        .group_by(AlertGroup.entity_id)
    )
    return {entity_id: count for entity_id, count in rows}


def since(session: Session, *, start: dt.datetime, end: dt.datetime) -> list[AlertGroup]:
    return list(
        session.scalars(
            sa.select(AlertGroup)
            .where(AlertGroup.created_at >= start, AlertGroup.created_at < end)
            .order_by(AlertGroup.id)
        )
    )
