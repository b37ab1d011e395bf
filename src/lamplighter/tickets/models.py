"""Tickets tables: request types, tickets, status changes, comments and work logs."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, utcnow


class Status(enum.StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    DONE = "done"
    REJECTED = "rejected"


class Priority(enum.StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Resolution(enum.StrEnum):
    MANUAL = "manual"
    SELF_SERVICE = "self-service"
    AUTOMATED = "automated"


# Which status may follow which. Done and rejected can be reopened, never sent back to "new".
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.NEW: frozenset(
        {Status.TRIAGED, Status.IN_PROGRESS, Status.WAITING, Status.DONE, Status.REJECTED}
    ),
    Status.TRIAGED: frozenset({Status.IN_PROGRESS, Status.WAITING, Status.DONE, Status.REJECTED}),
    Status.IN_PROGRESS: frozenset({Status.TRIAGED, Status.WAITING, Status.DONE, Status.REJECTED}),
    Status.WAITING: frozenset({Status.TRIAGED, Status.IN_PROGRESS, Status.DONE, Status.REJECTED}),
    Status.DONE: frozenset({Status.IN_PROGRESS}),
    Status.REJECTED: frozenset({Status.TRIAGED}),
}
OPEN_STATUSES = (Status.NEW, Status.TRIAGED, Status.IN_PROGRESS, Status.WAITING)


class RequestType(Base):
    __tablename__ = "ticket_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    default_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    expected_effort_minutes: Mapped[int] = mapped_column(default=30)
    # {"P1": {"first_response_minutes": 15, "done_minutes": 240}, "P2": {...}, ...}
    targets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    template_name: Mapped[str | None] = mapped_column(sa.String(100))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        sa.Index("ix_tickets_status_type", "status", "type_id"),
        sa.Index("ix_tickets_type_created", "type_id", "created_at", "assignee_team_id"),
        sa.Index(
            "ix_tickets_assignee_status",
            "assignee_user_id",
            "status",
            "created_at",
            "assignee_team_id",
        ),
        sa.Index("ix_tickets_team_status", "assignee_team_id", "status"),
        sa.Index(
            "ix_tickets_requesting_team",
            "requesting_team_id",
            "created_at",
            "assignee_team_id",
            "effort_minutes",
        ),
        # Covering indexes for toil analytics (GROUP BY type without touching the table).
        sa.Index(
            "ix_tickets_type_outcome",
            "type_id",
            "status",
            "resolution",
            "effort_minutes",
            "created_at",
            "assignee_team_id",
            "time_to_done_s",
        ),
        sa.Index(
            "ix_tickets_type_done_time",
            "type_id",
            "status",
            "time_to_done_s",
            "created_at",
            "assignee_team_id",
        ),
        sa.Index("ix_tickets_done_due", "status", "done_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    type_id: Mapped[int] = mapped_column(sa.ForeignKey("ticket_types.id", ondelete="RESTRICT"))
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    requester_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    requesting_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    entity_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="SET NULL")
    )
    assignee_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    assignee_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    priority: Mapped[str] = mapped_column(sa.String(2), default=Priority.P3.value)
    status: Mapped[str] = mapped_column(sa.String(16), default=Status.NEW.value)
    labels: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    resolution: Mapped[str | None] = mapped_column(sa.String(16))
    resolved_by: Mapped[str | None] = mapped_column(sa.String(200))  # "template_run:42", …
    effort_minutes: Mapped[int] = mapped_column(default=0)  # work logged (or effort saved)
    source_id: Mapped[str | None] = mapped_column(sa.String(200), unique=True)  # imports
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_response_at: Mapped[dt.datetime | None]
    done_at: Mapped[dt.datetime | None]
    first_response_due_at: Mapped[dt.datetime | None]
    done_due_at: Mapped[dt.datetime | None]
    time_to_done_s: Mapped[int | None]


class StatusChange(Base):
    __tablename__ = "ticket_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(sa.String(16))
    to_status: Mapped[str] = mapped_column(sa.String(16))
    by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Comment(Base):
    __tablename__ = "ticket_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    author_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(sa.Text)
    # An internal note: SREs and admins read it; the requester and other members never do.
    internal: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WorkLog(Base):
    __tablename__ = "ticket_work_logs"
    __table_args__ = (sa.Index("ix_ticket_work_logs_user", "user_id", "logged_at", "minutes"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        sa.ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    minutes: Mapped[int]
    logged_at: Mapped[dt.datetime]  # when the work was done
    note: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
