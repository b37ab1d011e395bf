"""SLO tables: objectives on catalog entities, their counters, daily history and probe results.

An SLO row holds its definition (objective, window, budgeting, SLI, alerting, policy) and the
state of its last evaluation (status, attainment, budget, burn rates, firing alerts), so that
lists and pages read one row. Built-in events and probe results are counted in buckets of a
minute, an hour and a day (``SloCount.resolution``), written together at ingest: a window's
total is a few daily rows plus the hours and minutes at its edges, not 43,200 minute rows.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, utcnow


class Source(enum.StrEnum):
    PROMETHEUS = "prometheus"  # good/bad/total PromQL through the Prometheus HTTP API
    EVENTS = "events"  # counts pushed to POST /api/v1/slos/{id}/events
    PROBE = "probe"  # HTTP probes run by Lamplighter's workers


class SliKind(enum.StrEnum):
    RATIO = "ratio"  # good (or bad) events over total events
    LATENCY = "latency"  # requests faster than a threshold, from histogram buckets
    RAW = "raw"  # one query giving the error ratio (Sloth's raw SLI)
    THRESHOLD = "threshold"  # a measurement compared with a value (OpenSLO threshold metric)
    PROBE = "probe"  # boolean probe results


class WindowKind(enum.StrEnum):
    ROLLING = "rolling"
    CALENDAR_WEEK = "calendar_week"
    CALENDAR_MONTH = "calendar_month"


class Budgeting(enum.StrEnum):
    OCCURRENCES = "occurrences"
    TIMESLICES = "timeslices"


MINUTE, HOUR, DAY = 60, 3600, 86400
RESOLUTIONS = (MINUTE, HOUR, DAY)


class Slo(Base):
    __tablename__ = "slos"
    __table_args__ = (
        sa.UniqueConstraint("entity_id", "name", name="uq_slos_entity_name"),
        sa.Index("ix_slos_status", "status", "budget_remaining"),
        sa.Index("ix_slos_ingest_key", "ingest_key_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(63))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    objective: Mapped[float] = mapped_column(sa.Float)  # a ratio: 0.999 for 99.9 %
    window_kind: Mapped[str] = mapped_column(sa.String(16), default=WindowKind.ROLLING.value)
    window_days: Mapped[int | None] = mapped_column(default=30)
    time_zone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    budgeting: Mapped[str] = mapped_column(sa.String(16), default=Budgeting.OCCURRENCES.value)
    slice_seconds: Mapped[int | None] = mapped_column()
    slice_threshold: Mapped[float | None] = mapped_column(sa.Float)
    source: Mapped[str] = mapped_column(sa.String(16))
    # {"kind": "ratio", "good_query" | "bad_query": ..., "total_query": ...} and so on by kind.
    sli: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"url", "interval_s", "timeout_s", "expected_status", "latency_threshold_ms"} for probes.
    probe: Mapped[dict[str, Any] | None] = mapped_column()
    # {"page": bool, "ticket": bool, "labels": {...}, "min_events": int,
    #  "factors": {"page-1h": 14.4, ...}} (factors override the Workbook's)
    alerting: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"notify_at": [50, 75], "notify": "team" | "lead", "on_exhausted": "freeze" | "notify"}
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ingest_key_hash: Mapped[str | None] = mapped_column(sa.String(64))
    ingest_key_hint: Mapped[str | None] = mapped_column(sa.String(8))
    # Where the definition came from: None when made by hand, else the applied file's name,
    # so that ``slo apply --prune`` removes only what the same files made.
    origin: Mapped[str | None] = mapped_column(sa.String(500))
    content_hash: Mapped[str] = mapped_column(sa.String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # -- the last evaluation ------------------------------------------------------------------
    status: Mapped[str] = mapped_column(sa.String(16), default="no data")
    status_reason: Mapped[str] = mapped_column(sa.Text, default="not evaluated yet")
    evaluated_at: Mapped[dt.datetime | None] = mapped_column()
    window_start: Mapped[dt.datetime | None] = mapped_column()
    window_end: Mapped[dt.datetime | None] = mapped_column()
    attainment: Mapped[float | None] = mapped_column(sa.Float)
    good_events: Mapped[float | None] = mapped_column(sa.Float)
    total_events: Mapped[float | None] = mapped_column(sa.Float)
    # In events (occurrences) or seconds (timeslices); remaining is a ratio of the budget.
    budget_total: Mapped[float | None] = mapped_column(sa.Float)
    budget_spent: Mapped[float | None] = mapped_column(sa.Float)
    budget_remaining: Mapped[float | None] = mapped_column(sa.Float)
    burn_rates: Mapped[dict[str, Any]] = mapped_column(default=dict)  # "1h" -> rate | None
    firing: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # alert names
    exhaustion_at: Mapped[dt.datetime | None] = mapped_column()
    # The highest policy threshold (per cent spent) already told in this window.
    threshold_notified: Mapped[int] = mapped_column(default=0)
    frozen: Mapped[bool] = mapped_column(default=False)  # releases frozen by the policy


class SloCount(Base):
    """Good and total events of one SLO in one bucket (a minute, an hour or a day, UTC)."""

    __tablename__ = "slo_counts"

    slo_id: Mapped[int] = mapped_column(
        sa.ForeignKey("slos.id", ondelete="CASCADE"), primary_key=True
    )
    resolution: Mapped[int] = mapped_column(primary_key=True)  # seconds: 60, 3600, 86400
    at: Mapped[dt.datetime] = mapped_column(primary_key=True)  # the bucket's start
    good: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class SloDaily(Base):
    """A day's attainment and the budget left at its end, kept a year for charts and reports."""

    __tablename__ = "slo_daily"

    slo_id: Mapped[int] = mapped_column(
        sa.ForeignKey("slos.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    good: Mapped[float] = mapped_column(sa.Float, default=0)
    total: Mapped[float] = mapped_column(sa.Float, default=0)
    attainment: Mapped[float | None] = mapped_column(sa.Float)
    budget_remaining: Mapped[float | None] = mapped_column(sa.Float)


class ProbeResult(Base):
    __tablename__ = "slo_probe_results"
    __table_args__ = (sa.Index("ix_slo_probe_results_slo_at", "slo_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slo_id: Mapped[int] = mapped_column(sa.ForeignKey("slos.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column()
    ok: Mapped[bool] = mapped_column()
    status_code: Mapped[int | None] = mapped_column()
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    error: Mapped[str | None] = mapped_column(sa.String(500))


class FreezeException(Base):
    """A release allowed while the budget policy freezes an entity's releases; audited."""

    __tablename__ = "slo_freeze_exceptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(sa.Text)
    created_by_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
