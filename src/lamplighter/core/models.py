"""Core tables: identity, audit, events, jobs and webhooks."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lamplighter.core.db import Base, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    SRE = "sre"
    MEMBER = "member"
    VIEWER = "viewer"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("catalog_namespace", "catalog_name", name="uq_users_catalog_ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # A user imported without an address gets ``<name>@<namespace>.no-email.invalid`` (RFC 2606's
    # never-deliverable domain): unique like any address, matched by no sign-in, and listed by
    # ownership hygiene until a real one is set.
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    role: Mapped[str] = mapped_column(sa.String(16), default=Role.MEMBER.value)
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    # The Backstage User this person is (``user:<namespace>/<name>``), when imported as one.
    catalog_namespace: Mapped[str | None] = mapped_column(sa.String(63))
    catalog_name: Mapped[str | None] = mapped_column(sa.String(63))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TeamOrigin(enum.StrEnum):
    MANUAL = "manual"  # created in Lamplighter
    IMPORT = "import"  # a Backstage Group
    PLACEHOLDER = "placeholder"  # named as an owner before its Group arrived
    PERSONAL = "personal"  # stands for a User owner who belongs to no team


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(63), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # None for a Group imported without members: its entities take the nearest ancestor's lead.
    lead_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    type: Mapped[str] = mapped_column(sa.String(63), default="team")  # team, department, …
    namespace: Mapped[str] = mapped_column(sa.String(63), default="default")
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    # The parent's reference while that Group is not in Lamplighter yet; set when it arrives.
    parent_ref: Mapped[str | None] = mapped_column(sa.String(200))
    origin: Mapped[str] = mapped_column(sa.String(16), default=TeamOrigin.MANUAL.value)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lead: Mapped[User | None] = relationship(lazy="joined")


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    method: Mapped[str] = mapped_column(sa.String(16), default="password")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(sa.String(16))
    actor_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    actor_label: Mapped[str] = mapped_column(sa.String(320))
    action: Mapped[str] = mapped_column(sa.String(100))
    object_type: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[str] = mapped_column(sa.String(200))
    diff: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    client_addr: Mapped[str | None] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
    # The canonical form the hash was taken over: 1 the original, 2 RFC 8785 (core/audit.py).
    hash_version: Mapped[int] = mapped_column(sa.SmallInteger, default=1, server_default="1")


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    type: Mapped[str] = mapped_column(sa.String(100), index=True)
    subject: Mapped[str] = mapped_column(sa.String(200), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_due", "status", "due_at"),
        sa.Index("ix_jobs_running_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(100), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED.value)
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=8)
    lease_expires_at: Mapped[dt.datetime | None]
    locked_by: Mapped[str | None] = mapped_column(sa.String(100))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class JobSchedule(Base):
    """A recurring job; `next_run_at` is advanced by compare-and-set so one process wins."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    interval_s: Mapped[int]
    next_run_at: Mapped[dt.datetime]
    last_run_at: Mapped[dt.datetime | None]


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str] = mapped_column(sa.String(2000))
    event_types: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    owner_team_id: Mapped[int] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner_team: Mapped[Team] = relationship(lazy="joined")


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    subscription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(sa.BigInteger)
    attempt: Mapped[int]
    succeeded: Mapped[bool]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[float]
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InboxItem(Base):
    """An in-app notification: where notices go until (and besides) email, chat and paging."""

    __tablename__ = "inbox_items"
    __table_args__ = (sa.Index("ix_inbox_items_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    link: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None]
