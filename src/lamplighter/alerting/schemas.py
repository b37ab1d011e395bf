"""Alerting API shapes: integrations, alert groups, alerts, silences and notes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lamplighter.alerting.intake import Severity


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


IntegrationKindText = Literal["alertmanager", "pagerduty", "generic", "heartbeat"]


class RouteIn(Strict):
    matchers: list[str] = Field(default_factory=list, max_length=20)
    policy_id: int = Field(ge=1, le=2**31 - 1)


class IntegrationIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: IntegrationKindText
    team: str | None = Field(default=None, description="The owning team's slug.")
    entity: str | None = Field(
        default=None, description="The catalog entity the alerts are about (its owner owns it)."
    )
    group_by: list[str] | None = Field(
        default=None,
        max_length=10,
        description="Labels whose values group alerts; '@group_key' is Alertmanager's groupKey, "
        "'@dedup_key' makes one group per alert. Default: Alertmanager's groupKey for "
        "Alertmanager, else one group per integration within the window.",
    )
    group_window_s: int = Field(default=3600, ge=60, le=7 * 86400)
    routes: list[RouteIn] = Field(default_factory=list, max_length=50)
    policy_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    severity_map: dict[str, Severity] = Field(default_factory=dict, max_length=50)
    mapping: dict[str, Any] | None = None
    heartbeat_interval_s: int | None = Field(default=None, ge=30, le=7 * 86400)
    heartbeat_grace_s: int | None = Field(default=None, ge=0, le=86400)


class IntegrationPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    group_by: list[str] | None = Field(default=None, max_length=10)
    group_window_s: int | None = Field(default=None, ge=60, le=7 * 86400)
    routes: list[RouteIn] | None = Field(default=None, max_length=50)
    policy_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    severity_map: dict[str, Severity] | None = Field(default=None, max_length=50)
    mapping: dict[str, Any] | None = None
    heartbeat_interval_s: int | None = Field(default=None, ge=30, le=7 * 86400)
    heartbeat_grace_s: int | None = Field(default=None, ge=0, le=86400)
    is_active: bool | None = None


class IntegrationRead(BaseModel):
    id: int
    name: str
    kind: str
    team: str
    entity: str | None
    key_hint: str  # "…abcd": the key's last four characters
    ingest_url: str  # with the key replaced by "<key>"
    group_by: list[str]
    group_window_s: int
    routes: list[dict[str, Any]]
    policy_id: int | None
    severity_map: dict[str, str]
    mapping: dict[str, Any] | None
    heartbeat_interval_s: int | None
    heartbeat_grace_s: int | None
    last_ping_at: dt.datetime | None
    is_active: bool
    created_at: dt.datetime


class IntegrationCreated(IntegrationRead):
    key: str = Field(description="The integration key, shown this once.")
    ingest_url_with_key: str


class AlertRead(BaseModel):
    id: int
    group_id: int | None
    integration_id: int
    dedup_key: str
    status: str
    severity: str
    summary: str
    source: str
    kind: str
    labels: dict[str, str]
    annotations: dict[str, str]
    details: dict[str, Any]
    runbook_url: str | None
    silence_id: int | None
    occurrences: int
    starts_at: dt.datetime | None
    created_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None


class GroupRead(BaseModel):
    id: int
    integration_id: int
    team: str
    entity: str | None
    status: str
    severity: str
    summary: str
    kind: str
    runbook_url: str | None
    labels: dict[str, str]
    alert_count: int
    policy_id: int | None
    assignee_user_id: int | None
    created_at: dt.datetime
    last_alert_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by_user_id: int | None
    resolved_at: dt.datetime | None
    resolved_by_user_id: int | None


class TimelineEntry(BaseModel):
    at: dt.datetime
    what: str
    actor_user_id: int | None
    detail: dict[str, Any]


class GroupDetail(GroupRead):
    alerts: list[AlertRead]
    timeline: list[TimelineEntry]
    note: str | None  # the team's "how to handle this" note on the alert kind


class ReassignIn(Strict):
    user: str = Field(min_length=3, max_length=320, description="The email of the new assignee.")


class SilenceIn(Strict):
    team: str | None = Field(
        default=None, max_length=63, description="The team whose alerts it silences."
    )
    matchers: list[str] = Field(
        min_length=1,
        max_length=20,
        description='Alertmanager matchers: alertname=DiskFull, instance=~"db-.*", env!=dev',
    )
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    reason: str = Field(min_length=3, max_length=2000)


class MaintenanceIn(Strict):
    entity: str = Field(
        min_length=1, max_length=300, description="The catalog entity under maintenance."
    )
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    reason: str = Field(min_length=3, max_length=2000)


class SilenceRead(BaseModel):
    id: int
    kind: str
    team: str
    entity: str | None
    matchers: list[str]
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str
    created_by_user_id: int | None
    created_at: dt.datetime
    expired_at: dt.datetime | None
    active: bool


class NoteIn(Strict):
    body: str = Field(min_length=1, max_length=20_000)


class NoteRead(BaseModel):
    team: str
    kind: str
    body: str
    updated_by_user_id: int | None
    updated_at: dt.datetime
