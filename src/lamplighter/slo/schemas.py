"""What the API, the CLI and ``slo apply`` accept for an SLO, and what they answer.

Objectives are written as percentages (``99.9``), as in Sloth and on the pages; windows as
``7d``, ``28d``, ``30d``, ``calendar-week`` or ``calendar-month`` with an IANA time zone.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from lamplighter.core.schemas import ReadModel, WriteModel

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
WINDOWS = ("7d", "28d", "30d", "calendar-week", "calendar-month")
ALERT_NAMES = ("page-1h", "page-6h", "ticket-1d", "ticket-3d")
Query = Annotated[str, Field(min_length=1, max_length=4000)]


def _labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50:
        raise ValueError("at most 50 labels")
    for key, text in value.items():
        if not LABEL_KEY.match(key):
            raise ValueError(f"label name {key!r} is not a Prometheus label name")
        if len(text) > 200:
            raise ValueError(f"label {key!r} is longer than 200 characters")
    return value


class RatioSliIn(WriteModel):
    """Good (or bad) events over total events. For the ``prometheus`` source each query is
    PromQL and may hold Sloth's ``{{.window}}``; for ``events`` no query is needed."""

    kind: Literal["ratio"] = "ratio"
    good_query: Query | None = None
    bad_query: Query | None = None
    total_query: Query | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RatioSliIn:
        if self.good_query is not None and self.bad_query is not None:
            raise ValueError("give good_query or bad_query, not both")
        return self


class LatencySliIn(WriteModel):
    """Requests faster than ``threshold_s``, from a Prometheus histogram: the bucket
    ``le="<threshold_s>"`` over the count. For ``events``, push the fast ones as good."""

    kind: Literal["latency"]
    metric: str | None = Field(
        default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$", description="histogram name"
    )
    threshold_s: float = Field(gt=0, le=3600)
    selector: str = Field(default="", max_length=1000, description='e.g. job="api"')

    @field_validator("selector")
    @classmethod
    def _no_braces(cls, value: str) -> str:
        if any(ch in value for ch in "{}[]"):
            raise ValueError('write the matchers without braces: job="api",code!~"5.."')
        return value


class RawSliIn(WriteModel):
    kind: Literal["raw"]
    error_ratio_query: Query


class ThresholdSliIn(WriteModel):
    """Good when the measurement ``query op value`` holds, minute by minute."""

    kind: Literal["threshold"]
    query: Query
    op: Literal["lt", "lte", "gt", "gte"]
    value: float


def _sli_kind(value: Any) -> str | None:
    """The SLI's ``kind``; a ratio when it does not say (the common case, as in Sloth)."""
    if isinstance(value, dict):
        kind = value.get("kind", "ratio")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


SliIn = Annotated[
    Annotated[RatioSliIn, Tag("ratio")]
    | Annotated[LatencySliIn, Tag("latency")]
    | Annotated[RawSliIn, Tag("raw")]
    | Annotated[ThresholdSliIn, Tag("threshold")],
    Discriminator(_sli_kind),
]


class ProbeIn(WriteModel):
    url: str | None = Field(
        default=None,
        max_length=2000,
        description="http(s) URL; by default the entity's health link from the catalog",
    )
    interval_s: int = Field(default=60, ge=10, le=3600)
    timeout_s: float = Field(default=10, gt=0, le=60)
    expected_status: int = Field(default=200, ge=100, le=599)
    latency_threshold_ms: float | None = Field(
        default=None, gt=0, le=60000, description="a slower answer counts as a failure"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("an http:// or https:// URL")
        return value


class AlertingIn(WriteModel):
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_:][A-Za-z0-9_:]{0,199}$",
        description="the Prometheus alert's name in exported rules (Sloth's alerting.name)",
    )
    page: bool = True
    ticket: bool = True
    labels: dict[str, str] = Field(default_factory=dict)
    min_events: int = Field(
        default=0,
        ge=0,
        le=10**9,
        description="fewer events than this in an alert's long window never fire it",
    )
    factors: dict[str, float] = Field(
        default_factory=dict,
        description="burn-rate factors overriding the Workbook's: page-1h, page-6h, "
        "ticket-1d, ticket-3d",
        json_schema_extra={
            "propertyNames": {"enum": list(ALERT_NAMES)},
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
        },
    )

    _check_labels = field_validator("labels")(classmethod(lambda cls, v: _labels(v)))

    @field_validator("factors")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        for key, factor in value.items():
            if key not in ALERT_NAMES:
                raise ValueError(
                    f"{key!r} is not an alert; the alerts are {', '.join(ALERT_NAMES)}"
                )
            if not 0 < factor <= 10000:
                raise ValueError(f"the factor of {key} is a number in (0, 10000]")
        return value


class PolicyIn(WriteModel):
    """The error budget policy: who is told at which share spent, what 100 % does."""

    notify_at: list[int] | None = Field(
        default=None, description="per cent of the budget spent, e.g. [50, 75]"
    )
    notify: Literal["team", "lead"] | None = None
    on_exhausted: Literal["freeze", "notify"] | None = None

    @field_validator("notify_at")
    @classmethod
    def _percents(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if len(value) > 5 or any(not 1 <= p <= 99 for p in value):
            raise ValueError("at most 5 thresholds, each a per cent between 1 and 99")
        return sorted(set(value))


class SloIn(WriteModel):
    """An SLO as written by a person (API, CLI) or by ``slo apply``."""

    entity: str = Field(min_length=1, max_length=300, description="catalog reference")
    name: str = Field(
        max_length=63,
        description="unique per entity: lowercase letters, digits and inner hyphens",
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    description: str = Field(default="", max_length=2000)
    objective: float = Field(gt=0, lt=100, description="per cent, e.g. 99.9")
    window: Literal["7d", "28d", "30d", "calendar-week", "calendar-month"] = "30d"
    time_zone: str = Field(default="UTC", max_length=64, description="IANA zone of the window")
    budgeting: Literal["occurrences", "timeslices"] = "occurrences"
    slice_minutes: int | None = Field(default=None, ge=1, le=1440)
    slice_threshold: float | None = Field(
        default=None, gt=0, le=100, description="per cent of good events a good slice reaches"
    )
    source: Literal["prometheus", "events", "probe"]
    sli: SliIn | None = None
    probe: ProbeIn | None = None
    alerting: AlertingIn = Field(default_factory=AlertingIn)
    labels: dict[str, str] = Field(default_factory=dict)
    policy: PolicyIn = Field(default_factory=PolicyIn)

    _check_labels = field_validator("labels")(classmethod(lambda cls, v: _labels(v)))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("give the SLO a name, e.g. availability")
        if not re.match(NAME_PATTERN, value):
            raise ValueError(
                "use lowercase letters, digits and inner hyphens, e.g. checkout-availability"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SloIn:
        if self.budgeting == "timeslices":
            if self.slice_minutes is None or self.slice_threshold is None:
                raise ValueError("timeslices budgeting needs slice_minutes and slice_threshold")
        elif self.slice_minutes is not None or self.slice_threshold is not None:
            raise ValueError("slice_minutes and slice_threshold go with timeslices budgeting")
        if self.source == "prometheus":
            if self.sli is None:
                raise ValueError("a prometheus SLO needs an sli with its queries")
            _check_prometheus_sli(self.sli)
        if self.source == "probe":
            if self.sli is not None:
                raise ValueError("a probe SLO measures probe results: give probe, not sli")
        elif self.probe is not None:
            raise ValueError("probe settings go with source probe")
        if self.source == "events" and isinstance(self.sli, RawSliIn | ThresholdSliIn):
            raise ValueError("built-in events count good and total: sli kind ratio or latency")
        return self


def _check_prometheus_sli(sli: Any) -> None:
    if isinstance(sli, RatioSliIn) and (
        sli.total_query is None or (sli.good_query is None and sli.bad_query is None)
    ):
        raise ValueError("a prometheus ratio SLI needs total_query and good_query or bad_query")
    if isinstance(sli, LatencySliIn) and sli.metric is None:
        raise ValueError("a prometheus latency SLI needs the histogram's metric name")


class SloRead(ReadModel):
    id: int
    entity: str
    owner_team: str | None
    name: str
    description: str
    objective: float
    window: str
    time_zone: str
    budgeting: str
    slice_minutes: int | None
    slice_threshold: float | None
    source: str
    sli: dict[str, Any] | None
    probe: dict[str, Any] | None
    alerting: dict[str, Any]
    labels: dict[str, str]
    policy: dict[str, Any]
    origin: str | None
    ingest_key_hint: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SloStatusRead(ReadModel):
    id: int
    entity: str
    name: str
    status: str
    reason: str
    evaluated_at: dt.datetime | None
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    objective: float
    attainment: float | None = Field(description="per cent over the window")
    good_events: float | None
    total_events: float | None
    budget_unit: Literal["events", "seconds"]
    budget_total: float | None
    budget_spent: float | None
    budget_remaining: float | None = Field(description="per cent of the budget left")
    burn_rates: dict[str, float | None]
    alerts: list[dict[str, Any]]
    exhaustion_at: dt.datetime | None
    policy: dict[str, Any]
    frozen: bool


class SloCreated(SloRead):
    ingest_key: str | None = Field(
        default=None, description="shown once: POST events with X-Lamplighter-Ingest-Key"
    )


class EventPointIn(WriteModel):
    at: dt.datetime | None = Field(default=None, description="default: now; must have a zone")
    good: int = Field(ge=0, le=10**12)
    total: int = Field(ge=0, le=10**12)

    @model_validator(mode="after")
    def _good_within_total(self) -> EventPointIn:
        if self.good > self.total:
            raise ValueError("good events cannot outnumber total events")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("a timestamp needs its time zone (2026-12-06T10:00:00Z)")
        return self


class EventBatchIn(WriteModel):
    points: list[EventPointIn] = Field(min_length=1, max_length=100_000)


class EventsAccepted(ReadModel):
    accepted: int
    buckets: int


class HistoryDay(ReadModel):
    day: dt.date
    good: float
    total: float
    attainment: float | None
    budget_remaining: float | None


class FreezeExceptionIn(WriteModel):
    entity: str = Field(min_length=1, max_length=300)
    reason: str = Field(min_length=10, max_length=2000)
    hours: int = Field(default=24, ge=1, le=24 * 14)


class ReleasePolicyRead(ReadModel):
    entity: str
    frozen: bool
    reasons: list[str]
    exception: dict[str, Any] | None
