"""Self-service tables: templates, their runs, each run's steps and the secrets runs generate."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, JSONType, utcnow


class Approval(enum.StrEnum):
    NONE = "none"
    TEAM_LEAD = "team-lead"
    SRE = "sre"


class TemplateSource(enum.StrEnum):
    FILE = "file"
    API = "api"


class RunStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    # A step ran and waits for a person's decision (an access request's approver); the run
    # goes on when it is approved and ends rejected when it is not.
    AWAITING_DECISION = "awaiting_decision"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # done its part; waits for a decision (see RunStatus.AWAITING_DECISION)
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class Template(Base):
    __tablename__ = "selfservice_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    owner_team_id: Mapped[int] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="RESTRICT"), index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the whole validated definition
    source: Mapped[str] = mapped_column(sa.String(8), default=TemplateSource.API.value)
    source_path: Mapped[str | None] = mapped_column(sa.String(1000))
    request_type: Mapped[str | None] = mapped_column(sa.String(63))  # a ticket type slug
    approval: Mapped[str] = mapped_column(sa.String(16), default=Approval.NONE.value)
    allowed_teams: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # empty: everyone
    version: Mapped[int] = mapped_column(default=1)
    # A definition waiting for the platform team's review (it uses privileged actions); the
    # published one above is what runs until the draft is approved.
    draft: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    draft_submitted_by: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    draft_submitted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    published_by: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    published_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Run(Base):
    __tablename__ = "selfservice_runs"
    __table_args__ = (
        sa.Index("ix_selfservice_runs_template", "template_id", "created_at"),
        sa.Index("ix_selfservice_runs_requester", "requester_user_id", "created_at"),
        sa.Index("ix_selfservice_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(
        sa.ForeignKey("selfservice_templates.id", ondelete="RESTRICT")
    )
    template_version: Mapped[int]
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the template as it was started
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(24), default=RunStatus.QUEUED.value)
    dry_run: Mapped[bool] = mapped_column(default=False)
    requester_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    requesting_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    approver_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    decision_reason: Mapped[str | None] = mapped_column(sa.Text)
    decided_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id", ondelete="SET NULL"))
    failed_step: Mapped[str | None] = mapped_column(sa.String(63))
    # The template's outputs rendered once, when the run ended (links and entities to show).
    outputs: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class RunStep(Base):
    __tablename__ = "selfservice_run_steps"
    __table_args__ = (sa.UniqueConstraint("run_id", "index", name="uq_selfservice_run_steps_run"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("selfservice_runs.id", ondelete="CASCADE"))
    index: Mapped[int]
    step_id: Mapped[str] = mapped_column(sa.String(63))
    action: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(24), default=StepStatus.PENDING.value)
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # rendered, validated
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    log: Mapped[str] = mapped_column(sa.Text, default="")
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class RunSecret(Base):
    __tablename__ = "selfservice_run_secrets"
    __table_args__ = (sa.UniqueConstraint("run_id", "name", name="uq_selfservice_run_secrets_run"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("selfservice_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    ciphertext: Mapped[str] = mapped_column(sa.Text)  # SecretBox
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revealed_at: Mapped[dt.datetime | None]
