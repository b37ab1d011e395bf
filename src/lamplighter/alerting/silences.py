"""Silences (label matchers over a time range) and maintenance windows (a catalog entity over
a time range): alerts they cover are stored and shown, and page nobody.

A silence belongs to a team and covers that team's integrations; its author, reason and
expiry are required, like Alertmanager's. Ending one early ("expire") keeps it in the list.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.alerting import matchers
from lamplighter.alerting.models import Silence, SilenceKind
from lamplighter.alerting.schemas import MaintenanceIn, SilenceIn, SilenceRead
from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, people
from lamplighter.core.authz import require_owned_write, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, FieldError, NotFound, ValidationFailed

OBJECT_TYPE = "alert_silence"
MAX_LENGTH = dt.timedelta(days=90)
MAX_ACTIVE_PER_TEAM = 500


def is_active(silence: Silence, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return silence.expired_at is None and silence.starts_at <= now < silence.ends_at


def read(session: Session, silence: Silence) -> SilenceRead:
    team = people.find_team(session=session, team_id=silence.team_id)
    entity = session.get(Entity, silence.entity_id) if silence.entity_id else None
    return SilenceRead(
        id=silence.id,
        kind=silence.kind,
        team=team.slug if team else "",
        entity=entity.ref if entity else None,
        matchers=list(silence.matchers or []),
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        reason=silence.reason,
        created_by_user_id=silence.created_by_user_id,
        created_at=silence.created_at,
        expired_at=silence.expired_at,
        active=is_active(silence),
    )


def _snapshot(silence: Silence) -> dict[str, object]:
    return {
        "kind": silence.kind,
        "team_id": silence.team_id,
        "entity_id": silence.entity_id,
        "matchers": list(silence.matchers or []),
        "starts_at": silence.starts_at.isoformat(),
        "ends_at": silence.ends_at.isoformat(),
        "reason": silence.reason,
        "expired_at": silence.expired_at.isoformat() if silence.expired_at else None,
    }


def _range(starts_at: dt.datetime | None, ends_at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    now = utcnow()
    start = starts_at.astimezone(dt.UTC) if starts_at else now
    end = ends_at.astimezone(dt.UTC)
    if end <= start:
        raise ValidationFailed.one("body.ends_at", "must be after starts_at")
    if end <= now:
        raise ValidationFailed.one("body.ends_at", "is in the past: the silence would never act")
    if end - start > MAX_LENGTH:
        raise ValidationFailed.one("body.ends_at", "a silence lasts at most 90 days")
    return start, end


def _team_for(session: Session, actor: Actor, slug: str | None) -> int:
    if slug:
        team = people.find_team_by_slug(session=session, slug=slug)
        if team is None:
            raise ValidationFailed.one("body.team", f"no team {slug!r}")
        return team.id
    if len(actor.team_ids) == 1:
        return next(iter(actor.team_ids))
    raise ValidationFailed.one("body.team", "name the team whose alerts it silences")


def _check_room(session: Session, team_id: int) -> None:
    active = session.scalar(
        sa.select(sa.func.count())
        .select_from(Silence)
        .where(Silence.team_id == team_id, Silence.ends_at > utcnow(), Silence.expired_at.is_(None))
    )
    if (active or 0) >= MAX_ACTIVE_PER_TEAM:
        raise Conflict(f"a team has at most {MAX_ACTIVE_PER_TEAM} silences in force")


def create(*, session: Session, actor: Actor, data: SilenceIn) -> Silence:
    require_writer(actor, "silence alerts")
    team_id = _team_for(session, actor, data.team)
    require_owned_write(actor, team_id, "the alerts of this team")
    _, problems = matchers.parse_all(data.matchers, "body.matchers")
    if problems:
        raise ValidationFailed(
            f"{problems[0][0]}: {problems[0][1]}",
            errors=[FieldError(path, reason) for path, reason in problems],
        )
    start, end = _range(data.starts_at, data.ends_at)
    _check_room(session, team_id)
    silence = Silence(
        kind=SilenceKind.SILENCE.value,
        team_id=team_id,
        matchers=list(data.matchers),
        starts_at=start,
        ends_at=end,
        reason=data.reason,
        created_by_user_id=actor.user_id,
    )
    session.add(silence)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="silence.create",
        object_type=OBJECT_TYPE,
        object_id=silence.id,
        after=_snapshot(silence),
    )
    return silence


def create_maintenance(*, session: Session, actor: Actor, data: MaintenanceIn) -> Silence:
    require_writer(actor, "schedule maintenance")
    entity = catalog.get_by_ref(session=session, ref=data.entity, field="body.entity")
    if entity.owner_team_id is None:
        raise ValidationFailed.one("body.entity", f"{entity.ref} has no owning team")
    require_owned_write(actor, entity.owner_team_id, f"the alerts of {entity.ref}")
    start, end = _range(data.starts_at, data.ends_at)
    _check_room(session, entity.owner_team_id)
    silence = Silence(
        kind=SilenceKind.MAINTENANCE.value,
        team_id=entity.owner_team_id,
        entity_id=entity.id,
        matchers=[],
        starts_at=start,
        ends_at=end,
        reason=data.reason,
        created_by_user_id=actor.user_id,
    )
    session.add(silence)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="maintenance.create",
        object_type=OBJECT_TYPE,
        object_id=silence.id,
        after=_snapshot(silence),
    )
    return silence


def get(session: Session, silence_id: int) -> Silence:
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"no silence {silence_id}")
    return silence


def expire(*, session: Session, actor: Actor, silence_id: int) -> Silence:
    """End a silence or maintenance window now; it stays listed."""
    silence = get(session, silence_id)
    require_owned_write(actor, silence.team_id, "the silences of this team")
    if silence.expired_at is not None or silence.ends_at <= utcnow():
        return silence
    before = _snapshot(silence)
    silence.expired_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="silence.expire",
        object_type=OBJECT_TYPE,
        object_id=silence.id,
        before=before,
        after=_snapshot(silence),
    )
    return silence


def list_(
    session: Session,
    *,
    active_only: bool = False,
    kind: str | None = None,
    team_id: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Silence]:
    query = sa.select(Silence).order_by(Silence.id.desc()).limit(limit)
    if active_only:
        now = utcnow()
        query = query.where(
            Silence.starts_at <= now, Silence.ends_at > now, Silence.expired_at.is_(None)
        )
    if kind:
        query = query.where(Silence.kind == kind)
    if team_id is not None:
        query = query.where(Silence.team_id == team_id)
    if before is not None:
        query = query.where(Silence.id < before)
    return list(session.scalars(query))
