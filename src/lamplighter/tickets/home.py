"""The home page's "Tickets assigned to you": open tickets assigned to the viewer, those past
their targets (or closest to them) first, each with its SLA state in words."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import markupsafe
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.core import timefmt
from lamplighter.core.db import utcnow
from lamplighter.core.home import HomePanel
from lamplighter.core.webui import Viewer, render_panel
from lamplighter.tickets import service
from lamplighter.tickets.models import OPEN_STATUSES, Ticket

SHOWN = 8


@dataclass(frozen=True)
class AssignedTicket:
    ticket: Ticket
    sla: str  # the SLA state in words
    breaching: bool


def _next_due() -> sa.ColumnElement[dt.datetime]:
    """The ticket's next target: its first response while none was made (if that is earlier
    than done), else done."""
    first_response_next = sa.and_(
        Ticket.first_response_at.is_(None),
        Ticket.first_response_due_at.is_not(None),
        sa.or_(Ticket.done_due_at.is_(None), Ticket.first_response_due_at < Ticket.done_due_at),
    )
    return sa.case((first_response_next, Ticket.first_response_due_at), else_=Ticket.done_due_at)


def assigned_to(*, session: Session, user_id: int, limit: int) -> tuple[list[Ticket], int]:
    """Open tickets assigned to ``user_id``, the earliest next target first (past ones are
    earliest), those without targets last; and how many there are in all."""
    open_ = [s.value for s in OPEN_STATUSES]
    mine = sa.and_(Ticket.assignee_user_id == user_id, Ticket.status.in_(open_))
    due = _next_due()
    rows = session.scalars(
        sa.select(Ticket).where(mine).order_by(due.is_(None), due, Ticket.id).limit(limit)
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(mine)) or 0
    return list(rows), int(total)


def sla_words(ticket: Ticket, now: dt.datetime, time_zone: str) -> tuple[str, bool]:
    """Where a ticket stands against its targets, in words, and whether it is breaching."""
    reason = service.breach(ticket, now)
    if reason is not None:
        past = (
            ticket.done_due_at
            if ticket.done_due_at is not None and ticket.done_due_at < now
            else ticket.first_response_due_at
        )
        since = f" for {timefmt.span(now - past)}" if past is not None else ""
        return f"Breaching: {reason}{since}", True
    first_due = ticket.first_response_due_at
    if (
        ticket.first_response_at is None
        and first_due is not None
        and (ticket.done_due_at is None or first_due < ticket.done_due_at)
    ):
        return (
            f"First response due in {timefmt.span(first_due - now)} "
            f"({timefmt.readable(first_due, time_zone)})",
            False,
        )
    if ticket.done_due_at is not None:
        due = ticket.done_due_at
        return (
            f"Due in {timefmt.span(due - now)} ({timefmt.readable(due, time_zone)})",
            False,
        )
    return "No target time", False


def assigned_panel(request: Request, session: Session, viewer: Viewer) -> HomePanel:
    """Tickets assigned to the viewer, most urgent first."""
    now = utcnow()
    tickets, total = assigned_to(session=session, user_id=viewer.user.id, limit=SHOWN)
    rows = [
        AssignedTicket(ticket, *sla_words(ticket, now, viewer.user.time_zone)) for ticket in tickets
    ]
    html = (
        render_panel(
            request,
            viewer,
            "tickets/_home.html",
            {"rows": rows, "total": total, "breaching": sum(row.breaching for row in rows)},
        )
        if rows
        else markupsafe.Markup("")
    )
    return HomePanel(
        title="Tickets assigned to you",
        html=html,
        count=total,
        order=20,
        empty_text="No open tickets are assigned to you.",
    )
