"""Alerting tables: integrations, alerts, alert groups, silences and notes on alert kinds.

Alerts are data, not journal entries: the ingest path writes ``alerts`` and ``alert_groups``
with set-based statements (``alerting/store.py``) and emits events per alert *group* only.
Two partial unique indexes make dedup the database's job, across processes:

- one *open* alert per (integration, dedup key): ``status <> 'resolved'``;
- one *accepting* group per (integration, group key): a group stops accepting alerts when it
  resolves or when its grouping window has passed, and the next alert opens a new group.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, utcnow


class IntegrationKind(enum.StrEnum):
    ALERTMANAGER = "alertmanager"  # POST /api/v1/alerting/ingest/alertmanager/{key}
    PAGERDUTY = "pagerduty"  # POST /v2/enqueue with routing_key = the key
    GENERIC = "generic"  # POST /api/v1/alerting/ingest/generic/{key}, mapped by expressions
    HEARTBEAT = "heartbeat"  # POST|GET /api/v1/alerting/heartbeat/{key}
    SLO = "slo"  # the SLO domain's burn-rate and budget events (one per entity, no key)


class AlertStatus(enum.StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


SEVERITY_RANK = {"critical": 4, "error": 3, "warning": 2, "info": 1}


class Integration(Base):
    __tablename__ = "alert_integrations"
    __table_args__ = (sa.Index("ix_alert_integrations_key", "key_hash", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(16))
    # Owned by a team; attached to a catalog entity when it is about one (then the team is the
    # entity's owner at creation).
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    entity_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="SET NULL"), index=True
    )
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    key_last4: Mapped[str] = mapped_column(sa.String(4))
    # Generic webhooks: {"summary": "${{ body.title }}", "severity": ..., "dedup_key": ...,
    # "labels": {...}}
    mapping: Mapped[dict[str, Any] | None] = mapped_column()
    # Labels whose values form the group key ("@group_key" = Alertmanager's groupKey,
    # "@dedup_key" = one group per alert); [] = one group per integration within the window.
    group_by: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    group_window_s: Mapped[int] = mapped_column(default=3600)
    # Ordered rules: [{"matchers": ["severity=critical", "team=~pay.*"], "policy_id": 3}]
    routes: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    policy_id: Mapped[int | None] = mapped_column()  # the default route; None = the team's
    # Severity words of this sender -> ours, over the built-in folding: {"P1": "critical"}
    severity_map: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    heartbeat_interval_s: Mapped[int | None] = mapped_column()
    heartbeat_grace_s: Mapped[int | None] = mapped_column()
    last_ping_at: Mapped[dt.datetime | None] = mapped_column()
    is_active: Mapped[bool] = mapped_column(default=True)
    created_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AlertGroup(Base):
    """What pages: alerts folded by integration and group key within the grouping window."""

    __tablename__ = "alert_groups"
    __table_args__ = (
        sa.Index(
            "uq_alert_groups_accepting",
            "integration_id",
            "group_key",
            unique=True,
            sqlite_where=sa.text("accepting"),
            postgresql_where=sa.text("accepting"),
        ),
        sa.Index("ix_alert_groups_team_status", "team_id", "status", "id"),
        sa.Index("ix_alert_groups_status", "status", "id"),
        sa.Index("ix_alert_groups_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("alert_integrations.id", ondelete="CASCADE")
    )
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"))
    entity_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="SET NULL"), index=True
    )
    group_key: Mapped[str] = mapped_column(sa.String(255))
    accepting: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=AlertStatus.TRIGGERED.value)
    severity: Mapped[str] = mapped_column(sa.String(16))
    summary: Mapped[str] = mapped_column(sa.String(1024))
    # The alert kind ("alertname" label, else the summary): what notes attach to.
    kind: Mapped[str] = mapped_column(sa.String(255))
    runbook_url: Mapped[str | None] = mapped_column(sa.String(2048))
    labels: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    alert_count: Mapped[int] = mapped_column(default=0)
    # The escalation policy the routing rules chose; None = the team's default.
    policy_id: Mapped[int | None] = mapped_column()
    # Set on insert only: tells the batch that opened the group from the ones that joined it.
    opened_by: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_alert_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    acknowledged_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[dt.datetime | None] = mapped_column()
    resolved_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    # Reassigned by hand: the person now responsible (escalation continues with them).
    assignee_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        sa.Index(
            "uq_alerts_open",
            "integration_id",
            "dedup_key",
            unique=True,
            sqlite_where=sa.text("status <> 'resolved'"),
            postgresql_where=sa.text("status <> 'resolved'"),
        ),
        sa.Index("ix_alerts_group", "group_id", "status"),
        sa.Index("ix_alerts_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys on the two ids (migration 0013): they cost a check on every alert the
    # intake writes, which writes them from rows of its own transaction; deleting an
    # integration deletes its alerts first (integrations.delete).
    integration_id: Mapped[int] = mapped_column()
    # None while silenced or in a maintenance window: such alerts are kept and page nobody.
    group_id: Mapped[int | None] = mapped_column()
    silence_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("alert_silences.id", ondelete="SET NULL")
    )
    dedup_key: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(16))
    summary: Mapped[str] = mapped_column(sa.String(1024))
    source: Mapped[str] = mapped_column(sa.String(1024), default="")
    kind: Mapped[str] = mapped_column(sa.String(255))
    labels: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    # links, images, source_url, group_key, custom details: what the sender said beyond the rest
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runbook_url: Mapped[str | None] = mapped_column(sa.String(2048))
    starts_at: Mapped[dt.datetime | None] = mapped_column()
    ends_at: Mapped[dt.datetime | None] = mapped_column()
    occurrences: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()


class SilenceKind(enum.StrEnum):
    SILENCE = "silence"  # label matchers over a time range
    MAINTENANCE = "maintenance"  # everything about one catalog entity over a time range


class Silence(Base):
    __tablename__ = "alert_silences"
    __table_args__ = (sa.Index("ix_alert_silences_active", "team_id", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default=SilenceKind.SILENCE.value)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"))
    entity_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), index=True
    )
    # Alertmanager's matcher syntax: ["alertname=HighLatency", "instance=~web-.*", "env!=dev"]
    matchers: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(sa.Text)
    created_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expired_at: Mapped[dt.datetime | None] = mapped_column()  # ended early by hand


class AlertGroupLog(Base):
    """The group's timeline: opened, acknowledged, escalated, reassigned, resolved, notes."""

    __tablename__ = "alert_group_log"
    __table_args__ = (sa.Index("ix_alert_group_log_group", "group_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key (migration 0014): ``integrations.delete`` removes a group's timeline.
    group_id: Mapped[int] = mapped_column()
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    what: Mapped[str] = mapped_column(sa.String(32))
    actor_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AlertKindNote(Base):
    """ "How to handle this": a team's note on an alert kind, shown whenever it fires again."""

    __tablename__ = "alert_kind_notes"
    __table_args__ = (sa.UniqueConstraint("team_id", "kind", name="uq_alert_kind_notes"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)
    updated_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
