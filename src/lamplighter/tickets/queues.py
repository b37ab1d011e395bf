"""The ticket queues: which tickets a view shows, in which order, a page at a time.

The SRE queues (triage, mine, a team's, breaching, all) filter by type, status, priority,
label, requesting team, assignee and requester, and sort by any column of the queue page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import identity, people
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import User
from lamplighter.core.pagination import encode_cursor, keyset, page_of
from lamplighter.tickets.models import OPEN_STATUSES, Status, Ticket


@dataclass(frozen=True)
class QueueFilters:
    view: str = "all"  # all | triage | mine | team | breaching
    user_id: int | None = None  # for "mine"
    team_id: int | None = None  # for "team" (assigned team)
    type_id: int | None = None
    status: str | None = None
    priority: str | None = None
    label: str | None = None
    requesting_team_id: int | None = None
    assignee_user_id: int | None = None
    unassigned: bool = False  # no assignee (then assignee_user_id is None)
    requester_user_id: int | None = None


# The queue's sortable columns. "number" is the ticket id (the default, oldest first); "age"
# ascending is the youngest first, so the Age column reads upwards the way its header says.
SORTS = ("number", "title", "status", "priority", "requester", "assignee", "age", "due")
DEFAULT_SORT = "number"
# Sorting by anything but the number pages by offset (a keyset over a person's name or a
# nullable due time would need a cursor per sort); past this many rows, narrow the filters.
MAX_SORTED_OFFSET = 10_000
# The order of the life cycle, so "status" sorts new → triaged → … → rejected, not by spelling.
STATUS_ORDER = {s.value: index for index, s in enumerate(Status)}


@dataclass(frozen=True)
class QueueOrder:
    sort: str = DEFAULT_SORT
    descending: bool = False


def check_order(sort: str, direction: str, *, prefix: str = "query") -> QueueOrder:
    """The queue order from ``?sort=…&dir=asc|desc``; blanks mean the default."""
    sort = sort.strip().lower() or DEFAULT_SORT
    direction = direction.strip().lower() or "asc"
    if sort not in SORTS:
        raise ValidationFailed.one(f"{prefix}.sort", f"choose one of {', '.join(SORTS)}")
    if direction not in {"asc", "desc"}:
        raise ValidationFailed.one(f"{prefix}.dir", "choose asc or desc")
    return QueueOrder(sort=sort, descending=direction == "desc")


def person_filter(
    *, session: Session, actor: Actor, value: str, field: str, allow_unassigned: bool = False
) -> tuple[int | None, bool]:
    """Read a person filter: "me", "none" (nobody; assignee only) or an email.

    Returns (user id, nobody): ``(None, False)`` when the filter is blank.
    """
    value = value.strip().lower()
    if not value:
        return None, False
    if value == "me":
        if actor.user_id is None:
            raise ValidationFailed.one(field, '"me" needs a signed-in person; give an email')
        return actor.user_id, False
    if value == "none":
        if not allow_unassigned:
            raise ValidationFailed.one(field, "give an email or me")
        return None, True
    return identity.require_user_by_email(session=session, email=value, field=field).id, False


def _filtered(query: sa.Select[Any], filters: QueueFilters, now: dt.datetime) -> sa.Select[Any]:
    open_ = [s.value for s in OPEN_STATUSES]
    if filters.view == "triage":
        query = query.where(Ticket.status == Status.NEW.value)
    elif filters.view == "mine":
        query = query.where(Ticket.assignee_user_id == filters.user_id, Ticket.status.in_(open_))
    elif filters.view == "team":
        query = query.where(Ticket.assignee_team_id == filters.team_id, Ticket.status.in_(open_))
    elif filters.view == "breaching":
        query = query.where(
            Ticket.status.in_(open_),
            sa.or_(
                Ticket.done_due_at < now,
                sa.and_(Ticket.first_response_at.is_(None), Ticket.first_response_due_at < now),
            ),
        )
    if filters.type_id is not None:
        query = query.where(Ticket.type_id == filters.type_id)
    if filters.status:
        query = query.where(Ticket.status == filters.status)
    if filters.priority:
        query = query.where(Ticket.priority == filters.priority)
    if filters.requesting_team_id is not None:
        query = query.where(Ticket.requesting_team_id == filters.requesting_team_id)
    if filters.unassigned:
        query = query.where(Ticket.assignee_user_id.is_(None))
    elif filters.assignee_user_id is not None:
        query = query.where(Ticket.assignee_user_id == filters.assignee_user_id)
    if filters.requester_user_id is not None:
        query = query.where(Ticket.requester_user_id == filters.requester_user_id)
    if filters.label:
        # Labels are a small JSON list; match the quoted label in its text form.
        query = query.where(sa.cast(Ticket.labels, sa.String).like(f'%"{filters.label}"%'))
    return query


def queue(
    *,
    session: Session,
    filters: QueueFilters,
    after_id: int | None,
    limit: int,
    now: dt.datetime | None = None,
) -> list[Ticket]:
    """Tickets of a queue view, oldest first."""
    query = _filtered(sa.select(Ticket), filters, now or utcnow())
    return list(session.scalars(keyset(query, Ticket.id, position=after_id, limit=limit)))


def _person_rank(
    session: Session, filters: QueueFilters, now: dt.datetime, column: Any
) -> sa.ColumnElement[Any]:
    """Each person's place in name order, for sorting by requester or assignee.

    The names live with the people (core), so the queue asks ``people`` for the few people its
    tickets name, one query, and sorts by their rank; unnamed people sort by email.
    """
    ids = session.scalars(_filtered(sa.select(column).distinct(), filters, now))
    users = people.users_by_id(session=session, ids=ids)
    ordered = sorted(users.values(), key=lambda u: (person_name(u).casefold(), u.id))
    ranks = {user.id: rank for rank, user in enumerate(ordered)}
    # No one named (every ticket unassigned, say): all rank alike, the column itself will do.
    return sa.case(ranks, value=column, else_=len(ranks)) if ranks else column


def person_name(user: User) -> str:
    """How a person is shown: their name, or their email when they have none."""
    return (user.display_name or "").strip() or user.email


def _order_by(
    session: Session, filters: QueueFilters, order: QueueOrder, now: dt.datetime
) -> list[sa.ColumnElement[Any]]:
    def directed(key: Any, descending: bool) -> sa.ColumnElement[Any]:
        ordered: sa.ColumnElement[Any] = key.desc() if descending else key.asc()
        return ordered

    desc = order.descending
    nulls_last: sa.ColumnElement[Any] | None = None
    if order.sort == "title":
        key: Any = sa.func.lower(Ticket.title)
    elif order.sort == "status":
        key = sa.case(STATUS_ORDER, value=Ticket.status, else_=len(STATUS_ORDER))
    elif order.sort == "priority":
        key = Ticket.priority
    elif order.sort in {"requester", "assignee"}:
        column = Ticket.requester_user_id if order.sort == "requester" else Ticket.assignee_user_id
        nulls_last = column.is_(None)
        key = _person_rank(session, filters, now, column)
    elif order.sort == "age":  # youngest first when ascending
        key, desc = Ticket.created_at, not desc
    elif order.sort == "due":
        nulls_last = Ticket.done_due_at.is_(None)
        key = Ticket.done_due_at
    else:
        key = Ticket.id
    keys = [] if nulls_last is None else [sa.case((nulls_last, 1), else_=0)]
    return [*keys, directed(key, desc), directed(Ticket.id, desc)]


def queue_page(
    *,
    session: Session,
    filters: QueueFilters,
    order: QueueOrder,
    position: int | None,
    limit: int,
    now: dt.datetime | None = None,
) -> tuple[list[Ticket], str | None]:
    """One page of a queue in the asked order, and the cursor of the next page (or None).

    By number the page continues after the cursor's id (a keyset); in any other order the
    cursor is an offset, at most ``MAX_SORTED_OFFSET``.
    """
    now = now or utcnow()
    query = _filtered(sa.select(Ticket), filters, now)
    if order.sort == DEFAULT_SORT:
        rows = list(
            session.scalars(
                keyset(
                    query,
                    Ticket.id,
                    position=position,
                    limit=limit + 1,
                    newest_first=order.descending,
                )
            )
        )
        return page_of(rows, limit, lambda t: t.id)
    offset = position or 0
    if offset > MAX_SORTED_OFFSET:
        raise ValidationFailed.one(
            "query.cursor",
            f"sorted queues show the first {MAX_SORTED_OFFSET:,} tickets; narrow the filters",
        )
    query = query.order_by(*_order_by(session, filters, order, now))
    rows = list(session.scalars(query.offset(offset).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(offset + limit)
    return rows, None


def queue_people(*, session: Session, limit: int = 500) -> tuple[list[User], list[User]]:
    """The people the queue filters offer: those tickets are assigned to, and those who asked,
    each list in name order (at most ``limit`` of each, the most recent first)."""

    def named(column: Any) -> list[User]:
        latest = sa.func.max(Ticket.id)
        ids = session.scalars(
            sa.select(column)
            .where(column.is_not(None))
            .group_by(column)
            .order_by(latest.desc())
            .limit(limit)
        )
        users = people.users_by_id(session=session, ids=ids)
        return sorted(users.values(), key=lambda u: (person_name(u).casefold(), u.id))

    return named(Ticket.assignee_user_id), named(Ticket.requester_user_id)
