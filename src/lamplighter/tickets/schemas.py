"""Ticket input and output shapes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, Field

from lamplighter.core.schemas import ReadModel, WriteModel

PRIORITY = "^P[1-4]$"
STATUS = "^(new|triaged|in_progress|waiting|done|rejected)$"
LABEL = "^[a-z0-9:._-]{1,50}$"


class TicketCreate(WriteModel):
    type: str = Field(min_length=1, max_length=63, description="Request type slug, e.g. database")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=50_000, description="Markdown")
    priority: str = Field(default="P3", pattern=PRIORITY)
    requesting_team: str | None = Field(
        default=None, max_length=63, description="Defaults to your first team"
    )
    entity: str | None = Field(
        default=None, max_length=200, description="Related catalog entity reference"
    )
    labels: list[str] = Field(default_factory=list, max_length=20)
    assignee: str | None = Field(default=None, max_length=320, description="Email")
    requester: str | None = Field(
        default=None,
        max_length=320,
        description="Email of the person asking; filing for someone else is for SREs and admins",
    )


class TicketUpdate(WriteModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=50_000)
    priority: str | None = Field(default=None, pattern=PRIORITY)
    labels: list[str] | None = Field(default=None, max_length=20)
    entity: str | None = Field(default=None, max_length=200)
    assignee: str | None = Field(default=None, max_length=320)
    team: str | None = Field(default=None, max_length=63, description="Assigned team slug")


class Transition(WriteModel):
    status: str = Field(pattern=STATUS)
    resolution: str | None = Field(default=None, pattern="^(manual|self-service|automated)$")
    note: str | None = Field(default=None, max_length=50_000)


class CommentCreate(WriteModel):
    body: str = Field(min_length=1, max_length=50_000)
    internal: bool = Field(
        default=False, description="An internal note: only SREs and admins write and read it"
    )


class WorkLogCreate(WriteModel):
    minutes: int = Field(ge=1, le=24 * 60, description="Minutes spent, at most a day per entry")
    logged_at: AwareDatetime | None = Field(default=None, description="When the work was done")
    note: str = Field(default="", max_length=2_000)


class RequestTypeWrite(WriteModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5_000)
    default_team: str | None = Field(default=None, max_length=63)
    expected_effort_minutes: int = Field(default=30, ge=1, le=30 * 24 * 60)
    targets: dict[str, dict[str, int]] | None = None
    template_name: str | None = Field(default=None, max_length=100)
    is_active: bool = True


class RequestTypeRead(ReadModel):
    id: int
    slug: str
    name: str
    description: str
    default_team_id: int | None
    expected_effort_minutes: int
    targets: dict[str, Any]
    template_name: str | None
    is_active: bool


class TicketRead(ReadModel):
    id: int
    type: str
    title: str
    description: str
    priority: str
    status: str
    labels: list[str]
    requester: str | None
    requesting_team: str | None
    entity: str | None
    assignee: str | None
    team: str | None
    resolution: str | None
    resolved_by: str | None
    effort_minutes: int
    created_at: dt.datetime
    updated_at: dt.datetime
    first_response_at: dt.datetime | None
    done_at: dt.datetime | None
    first_response_due_at: dt.datetime | None
    done_due_at: dt.datetime | None
    breach: str | None


class StatusChangeRead(ReadModel):
    from_status: str | None
    to_status: str
    by_user_id: int | None
    at: dt.datetime


class CommentRead(ReadModel):
    id: int
    author_user_id: int | None
    body: str
    internal: bool
    created_at: dt.datetime


class WorkLogRead(ReadModel):
    id: int
    user_id: int | None
    minutes: int
    logged_at: dt.datetime
    note: str


class TicketDetail(TicketRead):
    status_changes: list[StatusChangeRead]
    comments: list[CommentRead]
    work_logs: list[WorkLogRead]


class InboxItemRead(ReadModel):
    id: int
    title: str
    body: str
    link: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None
