"""Access grants: who may read, write or administer a catalog resource, and until when.

A user or a team asks for access to an entity; the entity's accountable person (or, without
one, its owning team's lead) approves or rejects, and admins may always decide. An approved
grant is active until ``expires_at``; the recurring ``selfservice.expire_grants`` job moves it
to ``expired`` once that instant passes. Every change is audited, emits an ``access.*`` event and
tells the people concerned through the in-app inbox. Nothing is ever deleted: the resource's
page lists every grant, revocation and expiry (:func:`grants_for_entity`).

Durations are exact: 30 days is 30 x 24 hours from the approval, stored in UTC, so a DST change
in anyone's time zone moves the local wall-clock time of the expiry, never the instant.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from lamplighter.catalog.models import Entity
from lamplighter.core import audit, events, identity, inbox, jobs, people
from lamplighter.core.context import Actor
from lamplighter.core.db import Base, utcnow
from lamplighter.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lamplighter.core.models import Role, User
from lamplighter.selfservice import decisions

OBJECT_TYPE = "access_grant"
EXPIRE_JOB = "selfservice.expire_grants"
DEFAULT_DURATION = dt.timedelta(days=30)
MAX_DURATION = dt.timedelta(days=365)


class AccessLevel(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class GrantStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REVOKED = "revoked"


LIVE_STATUSES = (GrantStatus.PENDING.value, GrantStatus.ACTIVE.value)


class AccessGrant(Base):
    __tablename__ = "access_grants"
    __table_args__ = (
        sa.CheckConstraint(
            "(grantee_user_id IS NULL) <> (grantee_team_id IS NULL)", name="one_grantee"
        ),
        sa.Index("ix_access_grants_entity", "entity_id", "created_at"),
        sa.Index("ix_access_grants_status_expires", "status", "expires_at"),
        sa.Index("ix_access_grants_grantee_user", "grantee_user_id"),
        sa.Index("ix_access_grants_grantee_team", "grantee_team_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"))
    grantee_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE")
    )
    grantee_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE")
    )
    access: Mapped[str] = mapped_column(sa.String(8))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default=GrantStatus.PENDING.value)
    requested_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    approver_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    decided_at: Mapped[dt.datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    revoked_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    run_id: Mapped[int | None]  # the template run that asked; no FK, runs may be pruned
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def snapshot(grant: AccessGrant) -> dict[str, object]:
    return {
        "entity_id": grant.entity_id,
        "grantee_user_id": grant.grantee_user_id,
        "grantee_team_id": grant.grantee_team_id,
        "access": grant.access,
        "status": grant.status,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "approver_user_id": grant.approver_user_id,
        "decision_reason": grant.decision_reason,
        "revoked_by_user_id": grant.revoked_by_user_id,
        "run_id": grant.run_id,
    }


# -- reading ---------------------------------------------------------------------------------
def get(*, session: Session, grant_id: int) -> AccessGrant:
    grant = session.get(AccessGrant, grant_id)
    if grant is None:
        raise NotFound(f"no access grant with id {grant_id}")
    return grant


def get_by_idempotency_key(*, session: Session, key: str) -> AccessGrant | None:
    return session.scalar(sa.select(AccessGrant).where(AccessGrant.idempotency_key == key))


def grants_for_entity(session: Session, entity_id: int) -> list[AccessGrant]:
    """Every grant of an entity, whatever its status, newest first (for the resource's page)."""
    return list(
        session.scalars(
            sa.select(AccessGrant)
            .where(AccessGrant.entity_id == entity_id)
            .order_by(AccessGrant.created_at.desc(), AccessGrant.id.desc())
        )
    )


def deciders(session: Session, entity: Entity) -> list[User]:
    """Who is asked to decide: the accountable person if active, else the owning team's lead
    (for a team without a lead, the nearest lead above it).

    Admins may decide too but are not asked, unless the entity has neither (an orphan)."""
    if entity.accountable_user_id is not None:
        accountable = people.find_user(session=session, user_id=entity.accountable_user_id)
        if accountable is not None and accountable.is_active:
            return [accountable]
    if entity.owner_team_id is not None:
        lead = identity.nearest_lead(session=session, team_id=entity.owner_team_id)
        if lead is not None and lead.is_active:
            return [lead]
    return people.active_users_with_role(session=session, role=Role.ADMIN)


def may_decide(session: Session, actor: Actor, entity: Entity) -> bool:
    if actor.role == Role.ADMIN.value:
        return True
    if actor.user_id is None or actor.role == Role.VIEWER.value:
        return False
    return any(user.id == actor.user_id for user in deciders(session, entity))


PENDING_SCAN = 500  # pending requests looked at for "waiting for your decision"


def waiting_for(*, session: Session, user_id: int, limit: int = 50) -> list[AccessGrant]:
    """Pending requests this person is asked to decide (see :func:`deciders`), oldest first."""
    found: list[AccessGrant] = []
    asked: dict[int, bool] = {}
    pending = session.scalars(
        sa.select(AccessGrant)
        .where(AccessGrant.status == GrantStatus.PENDING.value)
        .order_by(AccessGrant.created_at, AccessGrant.id)
        .limit(PENDING_SCAN)
    )
    for grant in pending:
        if grant.entity_id not in asked:
            entity = session.get(Entity, grant.entity_id)
            asked[grant.entity_id] = entity is not None and any(
                u.id == user_id for u in deciders(session, entity)
            )
        if asked[grant.entity_id]:
            found.append(grant)
            if len(found) >= limit:
                break
    return found


# -- writing ---------------------------------------------------------------------------------
def _aware(value: dt.datetime, field: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed.one(field, "must carry a time zone offset")
    return value.astimezone(dt.UTC)


def _describe(session: Session, grant: AccessGrant, entity: Entity) -> str:
    if grant.grantee_user_id is not None:
        user = people.find_user(session=session, user_id=grant.grantee_user_id)
        who = user.email if user else f"user {grant.grantee_user_id}"
    else:
        team = people.find_team(session=session, team_id=grant.grantee_team_id)
        who = f"team {team.slug}" if team else f"team {grant.grantee_team_id}"
    return f"{grant.access} access to {entity.ref} for {who}"


def _link(entity: Entity) -> str:
    return f"/catalog/{entity.kind}/{entity.namespace}/{entity.name}"


def _payload(grant: AccessGrant, entity: Entity) -> dict[str, object]:
    return {
        "id": grant.id,
        "entity": entity.ref,
        "grantee_user_id": grant.grantee_user_id,
        "grantee_team_id": grant.grantee_team_id,
        "access": grant.access,
        "status": grant.status,
        "expires_at": grant.expires_at.isoformat(),
        "run_id": grant.run_id,
    }


def _emit(session: Session, type_: str, grant: AccessGrant, entity: Entity) -> None:
    events.emit(
        session=session,
        type=type_,
        subject=f"{OBJECT_TYPE}:{grant.id}",
        payload=_payload(grant, entity),
    )


@dataclass(frozen=True)
class Grantee:
    """Exactly one of the two."""

    user_id: int | None = None
    team_id: int | None = None


def existing(
    *, session: Session, entity_id: int, grantee: Grantee, access: str, now: dt.datetime
) -> int | None:
    """The id of a live grant (pending, or active and not expired) that already gives or asks
    for this access to this grantee, if any."""
    return session.scalar(
        sa.select(AccessGrant.id).where(
            AccessGrant.entity_id == entity_id,
            AccessGrant.grantee_user_id == grantee.user_id
            if grantee.user_id is not None
            else AccessGrant.grantee_user_id.is_(None),
            AccessGrant.grantee_team_id == grantee.team_id
            if grantee.team_id is not None
            else AccessGrant.grantee_team_id.is_(None),
            AccessGrant.access == access,
            AccessGrant.status.in_(LIVE_STATUSES),
            AccessGrant.expires_at > now,
        )
    )


def request_grant(
    *,
    session: Session,
    actor: Actor,
    entity_id: int,
    grantee: Grantee,
    access: str,
    reason: str,
    duration: dt.timedelta | None = None,
    expires_at: dt.datetime | None = None,
    run_id: int | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> AccessGrant:
    """Ask for access; active at once when the requester may approve it, pending otherwise.

    The expiry is ``expires_at`` or ``duration`` from now (30 days by default), at most a year
    ahead. A pending grant keeps its duration: approval starts the clock again."""
    if actor.role == Role.VIEWER.value or actor.user_id is None:
        raise Forbidden("only signed-in members may ask for access")
    now = _aware(now, "now") if now is not None else utcnow()
    entity = session.get(Entity, entity_id)
    if entity is None:
        raise NotFound(f"no catalog entity with id {entity_id}")
    if (grantee.user_id is None) == (grantee.team_id is None):
        raise ValidationFailed.one("body.grantee", "name exactly one user or one team")
    if access not in {level.value for level in AccessLevel}:
        raise ValidationFailed.one("body.access", "must be read, write or admin")
    if not reason.strip():
        raise ValidationFailed.one("body.reason", "say why the access is needed")
    if expires_at is not None:
        expires_at = _aware(expires_at, "body.expires_at")
    else:
        expires_at = now + (duration if duration is not None else DEFAULT_DURATION)
    if expires_at <= now:
        raise ValidationFailed.one("body.expires_at", "must be in the future")
    if expires_at - now > MAX_DURATION:
        raise ValidationFailed.one("body.expires_at", "access is granted for at most 365 days")
    if grantee.user_id is not None:
        user = people.find_user(session=session, user_id=grantee.user_id)
        if user is None or not user.is_active:
            raise ValidationFailed.one("body.grantee", "no active user with that id")
    elif people.find_team(session=session, team_id=grantee.team_id) is None:
        raise ValidationFailed.one("body.grantee", "no team with that id")
    duplicate = existing(
        session=session, entity_id=entity.id, grantee=grantee, access=access, now=now
    )
    if duplicate is not None:
        raise Conflict(
            f"access grant #{duplicate} already gives or asks for {access} access to {entity.ref}"
        )
    grant = AccessGrant(
        entity_id=entity.id,
        grantee_user_id=grantee.user_id,
        grantee_team_id=grantee.team_id,
        access=access,
        reason=reason.strip(),
        status=GrantStatus.PENDING.value,
        requested_by_user_id=actor.user_id,
        expires_at=expires_at,
        run_id=run_id,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="access.request",
        object_type=OBJECT_TYPE,
        object_id=grant.id,
        after=snapshot(grant),
    )
    _emit(session, "access.requested", grant, entity)
    if may_decide(session, actor, entity):
        _decide(
            session, actor, grant, entity, approve=True, reason="requested by an approver", now=now
        )
        return grant
    what = _describe(session, grant, entity)
    days = max(1, round((grant.expires_at - grant.created_at).total_seconds() / 86_400))
    for decider in deciders(session, entity):
        inbox.notify(
            session=session,
            user_id=decider.id,
            title=f"Decide on an access request: {what}",
            body=f"Reason: {grant.reason}\nFor {days} day{'s' if days != 1 else ''} from approval.",
            link=decision_link(grant),
        )
    return grant


def decision_link(grant: AccessGrant) -> str:
    """Where a decider approves or rejects the request: its row on the access page."""
    return f"/selfservice/access#grant-{grant.id}"


def _decide(
    session: Session,
    actor: Actor,
    grant: AccessGrant,
    entity: Entity,
    *,
    approve: bool,
    reason: str | None,
    now: dt.datetime,
) -> None:
    before = snapshot(grant)
    if approve:
        # The clock starts at approval: a request decided late keeps its full duration.
        grant.expires_at = min(now + (grant.expires_at - grant.created_at), now + MAX_DURATION)
    grant.status = GrantStatus.ACTIVE.value if approve else GrantStatus.REJECTED.value
    grant.approver_user_id = actor.user_id
    grant.decided_at = now
    grant.decision_reason = reason
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="access.approve" if approve else "access.reject",
        object_type=OBJECT_TYPE,
        object_id=grant.id,
        before=before,
        after=snapshot(grant),
    )
    _emit(session, "access.granted" if approve else "access.rejected", grant, entity)
    if grant.run_id is not None:
        # A self-service run waits on this decision: it goes on (or ends), and tells its
        # requester itself, linking the run.
        decisions.step_decided(
            session,
            actor,
            run_id=grant.run_id,
            approved=approve,
            reason=reason,
            what=f"access grant #{grant.id}",
            output_changes={"status": grant.status, "expires_at": grant.expires_at.isoformat()},
        )
        return
    if grant.requested_by_user_id is not None and grant.requested_by_user_id != actor.user_id:
        verdict = "approved" if approve else "rejected"
        inbox.notify(
            session=session,
            user_id=grant.requested_by_user_id,
            title=f"Access request {verdict}: {_describe(session, grant, entity)}",
            body=reason or "",
            link=_link(entity),
        )


def _pending_for_decision(
    session: Session, actor: Actor, grant_id: int
) -> tuple[AccessGrant, Entity]:
    grant = get(session=session, grant_id=grant_id)
    entity = session.get(Entity, grant.entity_id)
    assert entity is not None  # the grant cascades away with its entity
    if not may_decide(session, actor, entity):
        raise Forbidden(
            f"only the accountable person of {entity.ref} (or its team's lead) and admins "
            "may decide on access to it"
        )
    if grant.status != GrantStatus.PENDING.value:
        raise Conflict(f"access grant #{grant.id} is {grant.status}; only pending ones are decided")
    return grant, entity


def approve(
    *,
    session: Session,
    actor: Actor,
    grant_id: int,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> AccessGrant:
    """Approve a pending request (the accountable person, else the team lead, or an admin)."""
    now = _aware(now, "now") if now is not None else utcnow()
    grant, entity = _pending_for_decision(session, actor, grant_id)
    _decide(
        session, actor, grant, entity, approve=True, reason=(reason or "").strip() or None, now=now
    )
    return grant


def reject(
    *,
    session: Session,
    actor: Actor,
    grant_id: int,
    reason: str,
    now: dt.datetime | None = None,
) -> AccessGrant:
    """Reject a pending request; the requester is told why."""
    now = _aware(now, "now") if now is not None else utcnow()
    grant, entity = _pending_for_decision(session, actor, grant_id)
    if not reason.strip():
        raise ValidationFailed.one("body.reason", "say why the request is rejected")
    _decide(session, actor, grant, entity, approve=False, reason=reason.strip(), now=now)
    return grant


def may_revoke(session: Session, actor: Actor, grant: AccessGrant, entity: Entity) -> bool:
    """Deciders, admins, the grantee (a member of a grantee team) and the requester."""
    if may_decide(session, actor, entity):
        return True
    if actor.user_id is None or actor.role == Role.VIEWER.value:
        return False
    if actor.user_id in (grant.grantee_user_id, grant.requested_by_user_id):
        return True
    return grant.grantee_team_id is not None and people.is_member(
        session=session, user_id=actor.user_id, team_ids=[grant.grantee_team_id]
    )


def revoke(
    *,
    session: Session,
    actor: Actor,
    grant_id: int,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> AccessGrant:
    """End a pending or active grant before its time; a grant already over is left as is."""
    now = _aware(now, "now") if now is not None else utcnow()
    grant = get(session=session, grant_id=grant_id)
    entity = session.get(Entity, grant.entity_id)
    assert entity is not None
    if not may_revoke(session, actor, grant, entity):
        raise Forbidden(
            f"only the approvers of {entity.ref}, admins, the grantee and the requester "
            "may revoke this access"
        )
    if grant.status not in LIVE_STATUSES:
        raise Conflict(f"access grant #{grant.id} is {grant.status} already")
    before = snapshot(grant)
    grant.status = GrantStatus.REVOKED.value
    grant.revoked_at = now
    grant.revoked_by_user_id = actor.user_id
    if reason:
        grant.decision_reason = reason.strip()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="access.revoke",
        object_type=OBJECT_TYPE,
        object_id=grant.id,
        before=before,
        after=snapshot(grant),
    )
    _emit(session, "access.revoked", grant, entity)
    if before["status"] == GrantStatus.PENDING.value and grant.run_id is not None:
        decisions.step_decided(  # a request withdrawn before its decision ends its run
            session,
            actor,
            run_id=grant.run_id,
            approved=False,
            reason=reason or "the request was withdrawn",
            what=f"access grant #{grant.id}",
            output_changes={"status": grant.status},
        )
    told = {actor.user_id}
    for user_id in (grant.grantee_user_id, grant.requested_by_user_id):
        if user_id is not None and user_id not in told:
            told.add(user_id)
            inbox.notify(
                session=session,
                user_id=user_id,
                title=f"Access revoked: {_describe(session, grant, entity)}",
                body=reason or "",
                link=_link(entity),
            )
    return grant


def expire_due(session: Session, now: dt.datetime, *, actor: Actor | None = None) -> int:
    """Move every active grant whose ``expires_at`` is at or before ``now`` to expired."""
    now = _aware(now, "now")
    actor = actor or Actor.system("access-grant expiry")
    due = list(
        session.scalars(
            sa.select(AccessGrant)
            .where(AccessGrant.status == GrantStatus.ACTIVE.value, AccessGrant.expires_at <= now)
            .order_by(AccessGrant.id)
            .with_for_update(skip_locked=True)
        )
    )
    for grant in due:
        entity = session.get(Entity, grant.entity_id)
        assert entity is not None
        before = snapshot(grant)
        grant.status = GrantStatus.EXPIRED.value
        session.flush()
        audit.record(
            session=session,
            actor=actor,
            action="access.expire",
            object_type=OBJECT_TYPE,
            object_id=grant.id,
            before=before,
            after=snapshot(grant),
        )
        _emit(session, "access.expired", grant, entity)
        notified = {grant.grantee_user_id, grant.requested_by_user_id} - {None}
        for user_id in sorted(u for u in notified if u is not None):
            inbox.notify(
                session=session,
                user_id=user_id,
                title=f"Access expired: {_describe(session, grant, entity)}",
                link=_link(entity),
            )
    return len(due)


@jobs.handler(EXPIRE_JOB)
def _expire_job(ctx: jobs.JobContext) -> None:
    """Expire the grants whose time has come (runs every five minutes)."""
    expire_due(ctx.session, utcnow(), actor=ctx.actor)


jobs.recurring(EXPIRE_JOB, every_s=300, kind=EXPIRE_JOB)
