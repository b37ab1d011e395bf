"""On-call tables: schedules, overrides, feeds, escalation policies, contact methods,
notification rules, running escalations and the delivery log.

A schedule's layers are one JSON document on its row (``layers``): layers of rotation versions,
read together and turned into ``schedule.Schedule`` by ``oncall/service.py``. Shifts imported
from an ``.ics`` file are rows of their own (``oncall_imported_shifts``), one layer each.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, utcnow


class OnCallSchedule(Base):
    __tablename__ = "oncall_schedules"
    __table_args__ = (sa.UniqueConstraint("team_id", "name", name="uq_oncall_schedules_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # [{"name", "until", "versions": [{"effective_from", "participants": [user ids], "kind",
    #   "every", "anchor", "time_zone", "restrictions": [{"start_weekday", "start_time",
    #   "end_weekday", "end_time"}]}]}], lowest layer first
    layers: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    # The feed's secret (hashed); the URL is /oncall/feeds/schedule/<token>.ics
    feed_token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OnCallOverride(Base):
    __tablename__ = "oncall_overrides"
    __table_args__ = (sa.Index("ix_oncall_overrides_range", "schedule_id", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OnCallImportedShift(Base):
    """A shift of a layer imported from an .ics file or URL (``layer`` names the layer)."""

    __tablename__ = "oncall_imported_shifts"
    __table_args__ = (sa.Index("ix_oncall_imported_shifts", "schedule_id", "layer", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE")
    )
    layer: Mapped[str] = mapped_column(sa.String(100))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()


class UserFeed(Base):
    """A person's own iCalendar feed of every shift they have: /oncall/feeds/user/<token>.ics"""

    __tablename__ = "oncall_user_feeds"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EscalationPolicy(Base):
    __tablename__ = "escalation_policies"
    __table_args__ = (sa.UniqueConstraint("team_id", "name", name="uq_escalation_policies_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # [{"name": "Frontline", "delay_minutes": 10,
    #   "targets": [{"type": "schedule" | "user" | "team", "id": 3}]}]
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    repeat: Mapped[int] = mapped_column(default=0)  # times the whole chain runs again
    is_team_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactKind(enum.StrEnum):
    EMAIL = "email"
    SLACK = "slack"  # a Slack incoming webhook URL (a secret)
    WEBHOOK = "webhook"  # a URL, signed with HMAC-SHA256 like the outgoing event webhooks
    INBOX = "inbox"  # the in-app inbox


class ContactMethod(Base):
    __tablename__ = "contact_methods"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(100), default="")
    # Email address in clear; Slack and webhook URLs encrypted (core.crypto.SecretBox).
    address: Mapped[str] = mapped_column(sa.Text)
    address_hint: Mapped[str] = mapped_column(sa.String(200), default="")  # masked for display
    secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)  # webhook HMAC secret
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NotificationRule(Base):
    """ "After ``delay_minutes``, by this contact method": a person's rules, in delay order."""

    __tablename__ = "notification_rules"
    __table_args__ = (sa.Index("ix_notification_rules_user", "user_id", "delay_minutes"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    contact_method_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact_methods.id", ondelete="CASCADE")
    )
    delay_minutes: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Escalation(Base):
    """The running escalation of one alert group: which tier, which round, due when."""

    __tablename__ = "oncall_escalations"
    __table_args__ = (sa.Index("ix_oncall_escalations_due", "state", "next_at"),)

    # No foreign key (migration 0014): on-call removes the rows of deleted groups itself.
    group_id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("escalation_policies.id", ondelete="SET NULL")
    )
    tier: Mapped[int] = mapped_column(default=0)
    round: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(sa.String(16), default="active")  # active|stopped|done
    next_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeliveryStatus(enum.StrEnum):
    SENT = "sent"  # handed to the channel
    FAILED = "failed"  # the channel refused; retried with backoff, next method tried
    FOLDED = "folded"  # the person was told about this group moments ago
    THROTTLED = "throttled"  # over the contact's rate; summarised later
    SKIPPED = "skipped"  # acknowledged or resolved before it was due


class Delivery(Base):
    """Every attempt to tell someone about an alert group: the delivery log."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.Index("ix_notification_deliveries_group", "group_id", "id"),
        sa.Index("ix_notification_deliveries_user", "user_id", "at"),
        sa.Index("ix_notification_deliveries_method", "contact_method_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column()  # no foreign key (migration 0014)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    contact_method_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contact_methods.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(sa.String(16))
    tier: Mapped[int] = mapped_column(default=0)
    round: Mapped[int] = mapped_column(default=0)
    attempt: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str] = mapped_column(sa.Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
