"""Request journal use cases: request types, tickets, their life cycle, comments and work logs.

A ticket belongs to the team it is assigned to: its members, SREs and admins move it along;
the requester may comment. Every change is audited and emits a ``ticket.*`` event; the
requester is told of status changes in the in-app inbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.core import audit, events, identity, inbox, people
from lamplighter.core.authz import PRIVILEGED, can_write_owned, require_role, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lamplighter.core.models import Role
from lamplighter.core.pagination import keyset
from lamplighter.tickets.defaults import DEFAULT_TARGETS, default_type_rows
from lamplighter.tickets.models import (
    OPEN_STATUSES,
    TRANSITIONS,
    Comment,
    Priority,
    RequestType,
    Resolution,
    Status,
    StatusChange,
    Ticket,
    WorkLog,
)

# The queues moved to their own module; these names stay for callers of service.queue.
from lamplighter.tickets.queues import QueueFilters as QueueFilters
from lamplighter.tickets.queues import queue as queue

OBJECT_TYPE = "ticket"
MAX_WORK_MINUTES = 24 * 60  # one entry cannot be more than a day of work
MAX_EXPECTED_EFFORT = 30 * 24 * 60


# -- request types ---------------------------------------------------------------------------
def ensure_default_types(*, session: Session) -> int:
    """Create the shipped request types that are missing (by slug); return how many."""
    existing = set(session.scalars(sa.select(RequestType.slug)))
    rows = [row for row in default_type_rows() if row["slug"] not in existing]
    for row in rows:
        session.add(RequestType(**row))
    session.flush()
    return len(rows)


def list_types(*, session: Session, include_inactive: bool = False) -> list[RequestType]:
    query = sa.select(RequestType).order_by(RequestType.name)
    if not include_inactive:
        query = query.where(RequestType.is_active.is_(True))
    return list(session.scalars(query))


def get_type(*, session: Session, slug: str, field: str = "body.type") -> RequestType:
    request_type = session.scalar(
        sa.select(RequestType).where(RequestType.slug == slug.strip().lower())
    )
    if request_type is None:
        known = ", ".join(t.slug for t in list_types(session=session))
        raise ValidationFailed.one(field, f"unknown request type {slug!r}; known types: {known}")
    return request_type


def check_targets(
    targets: Mapping[str, Any], field: str = "body.targets"
) -> dict[str, dict[str, int]]:
    clean: dict[str, dict[str, int]] = {}
    for priority, values in targets.items():
        if priority not in {p.value for p in Priority}:
            raise ValidationFailed.one(f"{field}.{priority}", "priorities are P1, P2, P3 and P4")
        if not isinstance(values, Mapping):
            raise ValidationFailed.one(f"{field}.{priority}", "must be an object of minutes")
        entry: dict[str, int] = {}
        for key in ("first_response_minutes", "done_minutes"):
            value = values.get(key)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 1 <= value <= 365 * 24 * 60
            ):
                raise ValidationFailed.one(
                    f"{field}.{priority}.{key}", "must be whole minutes, 1 to a year"
                )
            entry[key] = value
        clean[priority] = entry
    return clean


def save_type(
    *,
    session: Session,
    actor: Actor,
    slug: str,
    name: str,
    description: str = "",
    default_team: str | None = None,
    expected_effort_minutes: int = 30,
    targets: Mapping[str, Any] | None = None,
    template_name: str | None = None,
    is_active: bool = True,
) -> RequestType:
    """Create or change a request type (SREs and admins curate the list)."""
    require_role(actor, *PRIVILEGED, action="managing request types")
    if not 1 <= expected_effort_minutes <= MAX_EXPECTED_EFFORT:
        raise ValidationFailed.one(
            "body.expected_effort_minutes", "must be between 1 minute and 30 days"
        )
    team_id = identity.get_team(session=session, slug=default_team).id if default_team else None
    request_type = session.scalar(
        sa.select(RequestType).where(RequestType.slug == slug.strip().lower())
    )
    before = _type_snapshot(request_type) if request_type else None
    if request_type is None:
        if not identity.SLUG_RE.match(slug.strip().lower()):
            raise ValidationFailed.one(
                "body.slug", "use lowercase letters, digits and inner hyphens"
            )
        request_type = RequestType(slug=slug.strip().lower())
        session.add(request_type)
    request_type.name = name.strip() or request_type.slug
    request_type.description = description
    request_type.default_team_id = team_id
    request_type.expected_effort_minutes = expected_effort_minutes
    request_type.targets = check_targets(targets) if targets else dict(DEFAULT_TARGETS)
    request_type.template_name = template_name
    request_type.is_active = is_active
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="ticket_type.save",
        object_type="ticket_type",
        object_id=request_type.slug,
        before=before,
        after=_type_snapshot(request_type),
    )
    events.emit(
        session=session,
        type="ticket_type.saved",
        subject=f"ticket_type:{request_type.slug}",
        payload={
            "slug": request_type.slug,
            "name": request_type.name,
            "is_active": request_type.is_active,
            "template_name": request_type.template_name,
        },
    )
    return request_type


def _type_snapshot(request_type: RequestType) -> dict[str, Any]:
    return {
        "name": request_type.name,
        "default_team_id": request_type.default_team_id,
        "expected_effort_minutes": request_type.expected_effort_minutes,
        "targets": request_type.targets,
        "template_name": request_type.template_name,
        "is_active": request_type.is_active,
    }


# -- tickets ---------------------------------------------------------------------------------
def get(*, session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket #{ticket_id}")
    return ticket


def _due(
    request_type: RequestType, priority: str, start: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    targets = (request_type.targets or {}).get(priority) or DEFAULT_TARGETS[priority]
    return (
        start + dt.timedelta(minutes=int(targets["first_response_minutes"])),
        start + dt.timedelta(minutes=int(targets["done_minutes"])),
    )


def snapshot(ticket: Ticket) -> dict[str, Any]:
    return {
        "type_id": ticket.type_id,
        "title": ticket.title,
        "priority": ticket.priority,
        "status": ticket.status,
        "assignee_user_id": ticket.assignee_user_id,
        "assignee_team_id": ticket.assignee_team_id,
        "requesting_team_id": ticket.requesting_team_id,
        "entity_id": ticket.entity_id,
        "labels": list(ticket.labels),
        "resolution": ticket.resolution,
        "effort_minutes": ticket.effort_minutes,
    }


def check_labels(labels: Sequence[str], field: str = "body.labels") -> list[str]:
    clean = []
    for index, label in enumerate(labels):
        label = label.strip().lower()
        if not label or len(label) > 50 or any(c.isspace() for c in label):
            raise ValidationFailed.one(
                f"{field}.{index}", "labels are 1-50 characters without spaces"
            )
        clean.append(label)
    return sorted(set(clean))


@dataclass
class TicketInput:
    type: str
    title: str
    description: str = ""
    priority: str = "P3"
    requesting_team: str | None = None
    entity: str | None = None
    labels: Sequence[str] = ()
    assignee: str | None = None
    requester: str | None = None  # email; filing for someone else is for SREs and admins


def _resolve_common(
    session: Session, data: TicketInput
) -> tuple[RequestType, int | None, int | None, int | None]:
    request_type = get_type(session=session, slug=data.type)
    if not request_type.is_active:
        raise ValidationFailed.one("body.type", f"request type {request_type.slug!r} is retired")
    if data.priority not in {p.value for p in Priority}:
        raise ValidationFailed.one("body.priority", "must be P1, P2, P3 or P4")
    team_id = None
    if data.requesting_team:
        team = people.find_team_by_slug(session=session, slug=data.requesting_team)
        if team is None:
            raise ValidationFailed.one(
                "body.requesting_team", f"no team with slug {data.requesting_team!r}"
            )
        team_id = team.id
    entity_id = None
    if data.entity:
        try:
            entity_id = catalog.get_by_ref(session=session, ref=data.entity, field="body.entity").id
        except NotFound as exc:
            raise ValidationFailed.one("body.entity", exc.detail) from exc
    assignee_id = None
    if data.assignee:
        user = identity.require_user_by_email(
            session=session, email=data.assignee, field="body.assignee"
        )
        assignee_id = user.id
    return request_type, team_id, entity_id, assignee_id


def may_file_for_others(actor: Actor) -> bool:
    """SREs and admins (and the local CLI, acting as the system) file tickets for someone else."""
    return actor.role in PRIVILEGED


def _requester_id(session: Session, actor: Actor, email: str | None) -> int | None:
    """Who asks: the actor, or the named person when the actor may file for others."""
    if not email:
        return actor.user_id
    user = identity.require_user_by_email(session=session, email=email, field="body.requester")
    if user.id != actor.user_id and not may_file_for_others(actor):
        raise Forbidden("only SREs and admins may file a ticket for someone else")
    return user.id


def create(
    *, session: Session, actor: Actor, data: TicketInput, now: dt.datetime | None = None
) -> Ticket:
    """Open a ticket: anyone signed in (but viewers) may ask the SRE team for something."""
    require_writer(actor, "open tickets")
    if not data.title.strip():
        raise ValidationFailed.one("body.title", "must not be empty")
    requester_id = _requester_id(session, actor, data.requester)
    request_type, team_id, entity_id, assignee_id = _resolve_common(session, data)
    if team_id is None and requester_id is not None:  # the requester's first team
        team_id = min(identity.team_ids_of(session=session, user_id=requester_id), default=None)
    now = now or utcnow()
    first_due, done_due = _due(request_type, data.priority, now)
    ticket = Ticket(
        type_id=request_type.id,
        title=data.title.strip(),
        description=data.description,
        priority=data.priority,
        requester_user_id=requester_id,
        requesting_team_id=team_id,
        entity_id=entity_id,
        assignee_user_id=assignee_id,
        assignee_team_id=request_type.default_team_id,
        labels=check_labels(data.labels),
        status=Status.NEW.value,
        created_at=now,
        updated_at=now,
        first_response_due_at=first_due,
        done_due_at=done_due,
    )
    session.add(ticket)
    session.flush()
    session.execute(
        sa.insert(StatusChange).values(
            ticket_id=ticket.id,
            from_status=None,
            to_status=Status.NEW.value,
            by_user_id=actor.user_id,
            at=now,
        )
    )
    audit.record(
        session=session,
        actor=actor,
        action="ticket.create",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        after=snapshot(ticket),
    )
    events.emit(
        session=session,
        type="ticket.created",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "type": request_type.slug, "priority": ticket.priority},
    )
    return ticket


def may_work_on(session: Session, actor: Actor, ticket: Ticket) -> bool:
    """The assigned team's members, the assignee, SREs and admins move a ticket along."""
    if actor.role == Role.VIEWER.value:
        return False
    if actor.role in PRIVILEGED or (
        actor.user_id is not None and actor.user_id == ticket.assignee_user_id
    ):
        return True
    return can_write_owned(actor, ticket.assignee_team_id)


def _require_worker(session: Session, actor: Actor, ticket: Ticket) -> None:
    if not may_work_on(session, actor, ticket):
        raise Forbidden(
            f"only the assigned team, the assignee, SREs and admins may change ticket #{ticket.id}"
        )


def _tell_requester(
    session: Session, actor: Actor, ticket: Ticket, title: str, body: str = ""
) -> None:
    if ticket.requester_user_id is not None and ticket.requester_user_id != actor.user_id:
        inbox.notify(
            session=session,
            user_id=ticket.requester_user_id,
            title=title,
            body=body,
            link=f"/tickets/{ticket.id}",
        )


def transition(
    *,
    session: Session,
    actor: Actor,
    ticket_id: int,
    to_status: str,
    resolution: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Ticket:
    """Move a ticket along its life cycle; done and rejected may be reopened, never back to new."""
    ticket = get(session=session, ticket_id=ticket_id)
    _require_worker(session, actor, ticket)
    if to_status not in {s.value for s in Status}:
        raise ValidationFailed.one("body.status", f"unknown status {to_status!r}")
    if to_status not in TRANSITIONS[Status(ticket.status)]:
        allowed = ", ".join(sorted(TRANSITIONS[Status(ticket.status)]))
        raise Conflict(
            f"ticket #{ticket.id} is {ticket.status}; it can move to {allowed}, not {to_status}"
        )
    if resolution is not None and resolution not in {r.value for r in Resolution}:
        raise ValidationFailed.one("body.resolution", "must be manual, self-service or automated")
    now = now or utcnow()
    before = snapshot(ticket)
    previous = ticket.status
    ticket.status = to_status
    ticket.updated_at = now
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    if to_status == Status.DONE.value:
        ticket.done_at = now
        ticket.time_to_done_s = max(0, int((now - ticket.created_at).total_seconds()))
        ticket.resolution = resolution or Resolution.MANUAL.value
    elif previous in {Status.DONE.value, Status.REJECTED.value}:
        ticket.done_at = None
        ticket.time_to_done_s = None
        ticket.resolution = None
    session.add(
        StatusChange(
            ticket_id=ticket.id,
            from_status=previous,
            to_status=to_status,
            by_user_id=actor.user_id,
            at=now,
        )
    )
    if note:
        session.add(
            Comment(ticket_id=ticket.id, author_user_id=actor.user_id, body=note, created_at=now)
        )
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="ticket.transition",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        before=before,
        after=snapshot(ticket),
    )
    events.emit(
        session=session,
        type=f"ticket.{to_status}",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "from": previous, "to": to_status},
    )
    _tell_requester(
        session,
        actor,
        ticket,
        f"Ticket #{ticket.id} is now {to_status.replace('_', ' ')}",
        ticket.title,
    )
    return ticket


def update(*, session: Session, actor: Actor, ticket_id: int, changes: Mapping[str, Any]) -> Ticket:
    """Change title, description, priority, labels, related entity, assignee or assigned team."""
    ticket = get(session=session, ticket_id=ticket_id)
    _require_worker(session, actor, ticket)
    before = snapshot(ticket)
    if "title" in changes and changes["title"] is not None:
        if not str(changes["title"]).strip():
            raise ValidationFailed.one("body.title", "must not be empty")
        ticket.title = str(changes["title"]).strip()
    if changes.get("description") is not None:
        ticket.description = str(changes["description"])
    if changes.get("labels") is not None:
        ticket.labels = check_labels(changes["labels"])
    if changes.get("priority") is not None:
        if changes["priority"] not in {p.value for p in Priority}:
            raise ValidationFailed.one("body.priority", "must be P1, P2, P3 or P4")
        ticket.priority = changes["priority"]
        request_type = session.get(RequestType, ticket.type_id)
        assert request_type is not None
        ticket.first_response_due_at, ticket.done_due_at = _due(
            request_type, ticket.priority, ticket.created_at
        )
    if "entity" in changes:
        ref = changes["entity"]
        try:
            ticket.entity_id = (
                catalog.get_by_ref(session=session, ref=ref, field="body.entity").id
                if ref
                else None
            )
        except NotFound as exc:
            raise ValidationFailed.one("body.entity", exc.detail) from exc
    if "assignee" in changes:
        email = changes["assignee"]
        ticket.assignee_user_id = (
            identity.require_user_by_email(session=session, email=email, field="body.assignee").id
            if email
            else None
        )
    if "team" in changes:
        slug = changes["team"]
        ticket.assignee_team_id = identity.get_team(session=session, slug=slug).id if slug else None
    ticket.updated_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="ticket.update",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        before=before,
        after=(after := snapshot(ticket)),
    )
    events.emit(
        session=session,
        type="ticket.updated",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "changed": sorted(k for k in after if before.get(k) != after[k])},
    )
    return ticket


def may_see_internal(actor: Actor) -> bool:
    """Internal notes are for SREs and admins: not the requester, not other members."""
    return actor.role in PRIVILEGED


def add_comment(
    *, session: Session, actor: Actor, ticket_id: int, body: str, internal: bool = False
) -> Comment:
    """Comment on a ticket; ``internal``: an SRE-only note, never shown or sent to the requester."""
    ticket = get(session=session, ticket_id=ticket_id)
    is_requester = actor.user_id is not None and actor.user_id == ticket.requester_user_id
    if not (is_requester and actor.role != Role.VIEWER.value) and not may_work_on(
        session, actor, ticket
    ):
        raise Forbidden("only the requester, the assigned team, SREs and admins may comment")
    if internal and not may_see_internal(actor):
        raise Forbidden("only SREs and admins may write internal notes")
    if not body.strip():
        raise ValidationFailed.one("body.body", "must not be empty")
    now = utcnow()
    comment = Comment(
        ticket_id=ticket.id,
        author_user_id=actor.user_id,
        body=body,
        internal=internal,
        created_at=now,
    )
    session.add(comment)
    # An internal note is no answer to the requester: it does not stop the first-response clock.
    if not is_requester and not internal and ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.updated_at = now
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="ticket.comment",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        after={"comment_id": comment.id, "internal": internal},
    )
    events.emit(
        session=session,
        type="ticket.commented",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "comment_id": comment.id, "internal": internal},
    )
    if not internal:
        _tell_requester(session, actor, ticket, f"New comment on ticket #{ticket.id}", body[:200])
    return comment


def log_work(
    *,
    session: Session,
    actor: Actor,
    ticket_id: int,
    minutes: int,
    logged_at: dt.datetime | None = None,
    note: str = "",
) -> WorkLog:
    """Record time spent; one entry is 1 minute to 24 hours, and not in the future."""
    ticket = get(session=session, ticket_id=ticket_id)
    _require_worker(session, actor, ticket)
    if isinstance(minutes, bool) or not 1 <= minutes <= MAX_WORK_MINUTES:
        raise ValidationFailed.one(
            "body.minutes", f"must be between 1 and {MAX_WORK_MINUTES} minutes (one day) per entry"
        )
    now = utcnow()
    logged_at = logged_at or now
    if logged_at.tzinfo is None:
        raise ValidationFailed.one("body.logged_at", "must carry a time zone offset")
    if logged_at > now + dt.timedelta(minutes=5):
        raise ValidationFailed.one("body.logged_at", "work cannot be logged in the future")
    entry = WorkLog(
        ticket_id=ticket.id, user_id=actor.user_id, minutes=minutes, logged_at=logged_at, note=note
    )
    session.add(entry)
    ticket.effort_minutes += minutes
    ticket.updated_at = now
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="ticket.log_work",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        after={"minutes": minutes, "logged_at": logged_at.isoformat()},
    )
    events.emit(
        session=session,
        type="ticket.work_logged",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "minutes": minutes},
    )
    return entry


def record_resolved_work(
    *,
    session: Session,
    actor: Actor,
    type_slug: str,
    title: str,
    resolution: str,
    resolved_by: str,
    requester_user_id: int | None = None,
    requesting_team_id: int | None = None,
    entity_id: int | None = None,
    effort_minutes: int | None = None,
) -> Ticket:
    """Journal work done by self-service or automation as a ticket already done.

    The effort is what it would have cost a person: the request type's expected effort unless
    given. Called by template runs and automation executions in their own transaction.
    """
    if resolution not in {Resolution.SELF_SERVICE.value, Resolution.AUTOMATED.value}:
        raise ValidationFailed.one(
            "resolution", "recorded work is resolved by self-service or automated"
        )
    request_type = get_type(session=session, slug=type_slug, field="type_slug")
    now = utcnow()
    ticket = Ticket(
        type_id=request_type.id,
        title=title.strip() or request_type.name,
        requester_user_id=requester_user_id,
        requesting_team_id=requesting_team_id,
        entity_id=entity_id,
        assignee_team_id=request_type.default_team_id,
        priority=Priority.P3.value,
        status=Status.DONE.value,
        resolution=resolution,
        resolved_by=resolved_by,
        effort_minutes=effort_minutes
        if effort_minutes is not None
        else request_type.expected_effort_minutes,
        created_at=now,
        updated_at=now,
        first_response_at=now,
        done_at=now,
        time_to_done_s=0,
    )
    session.add(ticket)
    session.flush()
    session.add(
        StatusChange(
            ticket_id=ticket.id,
            from_status=None,
            to_status=Status.DONE.value,
            by_user_id=None,
            at=now,
        )
    )
    audit.record(
        session=session,
        actor=actor,
        action="ticket.record_resolved_work",
        object_type=OBJECT_TYPE,
        object_id=ticket.id,
        after=snapshot(ticket) | {"resolved_by": resolved_by},
    )
    events.emit(
        session=session,
        type="ticket.created",
        subject=f"ticket:{ticket.id}",
        payload={"id": ticket.id, "type": request_type.slug, "resolution": resolution},
    )
    return ticket


def breach(ticket: Ticket, now: dt.datetime | None = None) -> str | None:
    """Why a ticket is past its targets, if it is."""
    now = now or utcnow()
    if ticket.status not in {s.value for s in OPEN_STATUSES}:
        return None
    if ticket.done_due_at is not None and ticket.done_due_at < now:
        return "past its target time to done"
    if (
        ticket.first_response_at is None
        and ticket.first_response_due_at is not None
        and ticket.first_response_due_at < now
    ):
        return "no first response within its target"
    return None


def comments_of(
    *,
    session: Session,
    ticket_id: int,
    include_internal: bool,
    after_id: int | None,
    limit: int,
) -> list[Comment]:
    """One page of a ticket's comments, oldest first; internal notes only when asked."""
    query = sa.select(Comment).where(Comment.ticket_id == ticket_id)
    if not include_internal:
        query = query.where(Comment.internal.is_(False))
    return list(session.scalars(keyset(query, Comment.id, position=after_id, limit=limit)))


def history(
    *, session: Session, ticket_id: int, include_internal: bool = False
) -> tuple[list[StatusChange], list[Comment], list[WorkLog]]:
    """A ticket's status changes, comments and work logs; internal notes only when asked
    (``include_internal=may_see_internal(actor)``)."""
    comment_query = sa.select(Comment).where(Comment.ticket_id == ticket_id)
    if not include_internal:
        comment_query = comment_query.where(Comment.internal.is_(False))
    changes = list(
        session.scalars(
            sa.select(StatusChange)
            .where(StatusChange.ticket_id == ticket_id)
            .order_by(StatusChange.id)
        )
    )
    comments = list(session.scalars(comment_query.order_by(Comment.id)))
    logs = list(
        session.scalars(
            sa.select(WorkLog).where(WorkLog.ticket_id == ticket_id).order_by(WorkLog.id)
        )
    )
    return changes, comments, logs
