"""Ticket REST routes: intake, queue views, life cycle, comments, work logs, request types."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from lamplighter.core import identity, inbox
from lamplighter.core.context import Actor
from lamplighter.core.deps import CurrentActor, Id, PageDep, SessionDep
from lamplighter.core.pagination import encode_cursor, page_of
from lamplighter.core.schemas import Page
from lamplighter.tickets import queues, service
from lamplighter.tickets.models import RequestType, Ticket
from lamplighter.tickets.schemas import (
    CommentCreate,
    CommentRead,
    InboxItemRead,
    RequestTypeRead,
    RequestTypeWrite,
    StatusChangeRead,
    TicketCreate,
    TicketDetail,
    TicketRead,
    TicketUpdate,
    Transition,
    WorkLogCreate,
    WorkLogRead,
)

router = APIRouter(tags=["tickets"])


_NAMES = sa.text(
    "SELECT t.id, rt.slug AS type, ru.email AS requester, au.email AS assignee, "
    "rteam.slug AS requesting_team, ateam.slug AS team, "
    "e.kind AS entity_kind, e.namespace AS entity_namespace, e.name AS entity_name "
    "FROM tickets t JOIN ticket_types rt ON rt.id = t.type_id "
    "LEFT JOIN users ru ON ru.id = t.requester_user_id "
    "LEFT JOIN users au ON au.id = t.assignee_user_id "
    "LEFT JOIN teams rteam ON rteam.id = t.requesting_team_id "
    "LEFT JOIN teams ateam ON ateam.id = t.assignee_team_id "
    "LEFT JOIN catalog_entities e ON e.id = t.entity_id "
    "WHERE t.id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))


def read_many(session: Session, tickets: list[Ticket]) -> list[TicketRead]:
    """Ticket rows with their names resolved in one query, not one per ticket."""
    if not tickets:
        return []
    names = {row.id: row for row in session.execute(_NAMES, {"ids": [t.id for t in tickets]})}
    return [_read(t, names[t.id]) for t in tickets]


def _read(t: Ticket, names: Any) -> TicketRead:
    entity = (
        f"{names.entity_kind}:{names.entity_namespace}/{names.entity_name}"
        if names.entity_kind is not None
        else None
    )
    return TicketRead(
        id=t.id,
        type=names.type,
        title=t.title,
        description=t.description,
        priority=t.priority,
        status=t.status,
        labels=list(t.labels),
        requester=names.requester,
        requesting_team=names.requesting_team,
        entity=entity,
        assignee=names.assignee,
        team=names.team,
        resolution=t.resolution,
        resolved_by=t.resolved_by,
        effort_minutes=t.effort_minutes,
        created_at=t.created_at,
        updated_at=t.updated_at,
        first_response_at=t.first_response_at,
        done_at=t.done_at,
        first_response_due_at=t.first_response_due_at,
        done_due_at=t.done_due_at,
        breach=service.breach(t),
    )


def detail(session: Session, ticket: Ticket, actor: Actor, *, new: bool = False) -> TicketDetail:
    """The ticket with its history, as ``actor`` may see it (internal notes for SREs and
    admins only). ``new``: the ticket was created in this request, so its history is the one
    status change to ``new`` and nothing need be read back."""
    if new:
        changes: list[Any] = [
            StatusChangeRead(
                from_status=None,
                to_status=ticket.status,
                by_user_id=actor.user_id,
                at=ticket.created_at,
            )
        ]
        comments: list[Any] = []
        logs: list[Any] = []
    else:
        changes, comments, logs = service.history(
            session=session,
            ticket_id=ticket.id,
            include_internal=service.may_see_internal(actor),
        )
    return TicketDetail(
        **read_many(session, [ticket])[0].model_dump(),
        status_changes=[StatusChangeRead.model_validate(c) for c in changes],
        comments=[CommentRead.model_validate(c) for c in comments],
        work_logs=[WorkLogRead.model_validate(w) for w in logs],
    )


@router.get("/tickets", response_model=Page[TicketRead])
def list_tickets(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    view: Annotated[
        str, Query(pattern="^(all|triage|mine|team|breaching)$", description="Queue view")
    ] = "all",
    team: Annotated[
        str | None,
        Query(
            max_length=63,
            description="Assigned team slug (view=team); by default your first team, as on the page",
        ),
    ] = None,
    type: Annotated[str | None, Query(max_length=63)] = None,
    status_: Annotated[
        str | None,
        Query(alias="status", pattern="^(new|triaged|in_progress|waiting|done|rejected)$"),
    ] = None,
    priority: Annotated[str | None, Query(pattern="^P[1-4]$")] = None,
    label: Annotated[str | None, Query(pattern="^[a-z0-9:._-]{1,50}$")] = None,
    requesting_team: Annotated[str | None, Query(max_length=63)] = None,
    assignee: Annotated[
        str | None, Query(max_length=320, description="me, none (unassigned) or an email")
    ] = None,
    requester: Annotated[str | None, Query(max_length=320, description="me or an email")] = None,
    sort: Annotated[
        str, Query(pattern=f"^({'|'.join(queues.SORTS)})$", description="The order")
    ] = queues.DEFAULT_SORT,
    dir: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> Page[TicketRead]:
    """The SRE queues: triage (new), mine, a team's, breaching (past targets), or all; by number
    (oldest first) unless ``sort`` names another column."""
    team_id = identity.get_team(session=session, slug=team).id if team else None
    if view == "team" and team_id is None:
        # Like the queue page: your first team; someone in no team has no team's queue.
        team_id = min(actor.team_ids, default=None)
        if team_id is None:
            return Page[TicketRead](items=[], next_cursor=None)
    assignee_id, unassigned = queues.person_filter(
        session=session,
        actor=actor,
        value=assignee or "",
        field="query.assignee",
        allow_unassigned=True,
    )
    requester_id, _ = queues.person_filter(
        session=session, actor=actor, value=requester or "", field="query.requester"
    )
    filters = queues.QueueFilters(
        view=view,
        user_id=actor.user_id,
        team_id=team_id,
        type_id=service.get_type(session=session, slug=type, field="query.type").id
        if type
        else None,
        status=status_,
        priority=priority,
        label=label,
        requesting_team_id=identity.get_team(session=session, slug=requesting_team).id
        if requesting_team
        else None,
        assignee_user_id=assignee_id,
        unassigned=unassigned,
        requester_user_id=requester_id,
    )
    items, cursor = queues.queue_page(
        session=session,
        filters=filters,
        order=queues.check_order(sort, dir),
        position=page.position,
        limit=page.limit,
    )
    return Page[TicketRead](items=read_many(session, items), next_cursor=cursor)


@router.post("/tickets", response_model=TicketDetail, status_code=status.HTTP_201_CREATED)
def create_ticket(body: TicketCreate, session: SessionDep, actor: CurrentActor) -> TicketDetail:
    """Ask the SRE team for something. Every request is journaled, however small."""
    ticket = service.create(
        session=session, actor=actor, data=service.TicketInput(**body.model_dump())
    )
    session.commit()
    return detail(session, ticket, actor, new=True)


@router.get("/tickets/{ticket_id:int}", response_model=TicketDetail)
def read_ticket(ticket_id: Id, session: SessionDep, actor: CurrentActor) -> TicketDetail:
    """The ticket and its history; internal notes are listed for SREs and admins only."""
    return detail(session, service.get(session=session, ticket_id=ticket_id), actor)


@router.get("/tickets/{ticket_id:int}/comments", response_model=Page[CommentRead])
def list_comments(
    ticket_id: Id, session: SessionDep, actor: CurrentActor, page: PageDep
) -> Page[CommentRead]:
    """The ticket's comments, oldest first; internal notes for SREs and admins only."""
    ticket = service.get(session=session, ticket_id=ticket_id)
    rows = service.comments_of(
        session=session,
        ticket_id=ticket.id,
        include_internal=service.may_see_internal(actor),
        after_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda c: c.id)
    return Page[CommentRead](
        items=[CommentRead.model_validate(c) for c in items], next_cursor=cursor
    )


@router.patch("/tickets/{ticket_id:int}", response_model=TicketDetail)
def update_ticket(
    ticket_id: Id, body: TicketUpdate, session: SessionDep, actor: CurrentActor
) -> TicketDetail:
    ticket = service.update(
        session=session,
        actor=actor,
        ticket_id=ticket_id,
        changes=body.model_dump(exclude_unset=True),
    )
    session.commit()
    return detail(session, ticket, actor)


@router.post("/tickets/{ticket_id:int}/transitions", response_model=TicketDetail)
def transition_ticket(
    ticket_id: Id, body: Transition, session: SessionDep, actor: CurrentActor
) -> TicketDetail:
    """Move the ticket: new → triaged → in_progress → waiting → done (or rejected); 409 if not allowed."""
    ticket = service.transition(
        session=session,
        actor=actor,
        ticket_id=ticket_id,
        to_status=body.status,
        resolution=body.resolution,
        note=body.note,
    )
    session.commit()
    return detail(session, ticket, actor)


@router.post(
    "/tickets/{ticket_id:int}/comments",
    response_model=CommentRead,
    status_code=status.HTTP_201_CREATED,
)
def comment_ticket(
    ticket_id: Id, body: CommentCreate, session: SessionDep, actor: CurrentActor
) -> CommentRead:
    """Comment; ``"internal": true`` makes it an SRE-only note (403 for anyone else)."""
    comment = service.add_comment(
        session=session,
        actor=actor,
        ticket_id=ticket_id,
        body=body.body,
        internal=body.internal,
    )
    session.commit()
    return CommentRead.model_validate(comment)


@router.post(
    "/tickets/{ticket_id:int}/work-logs",
    response_model=WorkLogRead,
    status_code=status.HTTP_201_CREATED,
)
def log_work(
    ticket_id: Id, body: WorkLogCreate, session: SessionDep, actor: CurrentActor
) -> WorkLogRead:
    """Record minutes spent on the ticket (1 to 1,440 per entry)."""
    entry = service.log_work(
        session=session,
        actor=actor,
        ticket_id=ticket_id,
        minutes=body.minutes,
        logged_at=body.logged_at,
        note=body.note,
    )
    session.commit()
    return WorkLogRead.model_validate(entry)


@router.get("/ticket-types", response_model=Page[RequestTypeRead])
def list_types(
    session: SessionDep, actor: CurrentActor, page: PageDep, include_inactive: bool = False
) -> Page[RequestTypeRead]:
    """The managed list of request types, by name."""
    rows = service.list_types(session=session, include_inactive=include_inactive)
    start = page.position or 0
    chunk = rows[start : start + page.limit]
    more = len(rows) > start + page.limit
    return Page[RequestTypeRead](
        items=[RequestTypeRead.model_validate(t) for t in chunk],
        next_cursor=encode_cursor(start + page.limit) if more else None,
    )


@router.put("/ticket-types/{slug}", response_model=RequestTypeRead)
def save_type(
    slug: str, body: RequestTypeWrite, session: SessionDep, actor: CurrentActor
) -> RequestType:
    """Create or change a request type (SREs and admins)."""
    request_type = service.save_type(session=session, actor=actor, slug=slug, **body.model_dump())
    session.commit()
    return request_type


@router.get("/inbox", response_model=Page[InboxItemRead], tags=["inbox"])
def list_inbox(
    session: SessionDep, actor: CurrentActor, page: PageDep, unread: bool = False
) -> Page[InboxItemRead]:
    """Your in-app notices, newest first."""
    assert actor.user_id is not None
    rows = inbox.list_for(
        session=session,
        user_id=actor.user_id,
        unread_only=unread,
        before_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda i: i.id)
    return Page[InboxItemRead](
        items=[InboxItemRead.model_validate(i) for i in items], next_cursor=cursor
    )


@router.post("/inbox/{item_id:int}/read", response_model=InboxItemRead, tags=["inbox"])
def read_inbox_item(item_id: Id, session: SessionDep, actor: CurrentActor) -> InboxItemRead:
    item = inbox.mark_read(session=session, actor=actor, item_id=item_id)
    session.commit()
    return InboxItemRead.model_validate(item)
