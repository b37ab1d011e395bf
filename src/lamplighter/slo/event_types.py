"""The events the SLO domain emits. The alerting domain turns the burn and budget events into
alerts on the SLO's entity; release gates read ``slo.release_freeze_changed`` (or call
``slo.service.release_policy``)."""

from __future__ import annotations

from lamplighter.core.events import EventPayload, event_type


class SloRef(EventPayload):
    id: int
    slo: str  # the SLO's name
    entity: str  # the catalog reference it belongs to


@event_type("slo.created", description="An SLO was defined.", subject="slo:<id>")
class SloCreated(SloRef):
    pass


@event_type("slo.updated", description="An SLO's definition changed.", subject="slo:<id>")
class SloUpdated(SloRef):
    pass


@event_type("slo.deleted", description="An SLO was removed.", subject="slo:<id>")
class SloDeleted(SloRef):
    pass


@event_type(
    "slo.burn_rate_high",
    description="A multiwindow burn-rate alert started firing (severity page or ticket).",
    subject="slo:<id>",
)
class BurnRateHigh(SloRef):
    alert: str  # page-1h, page-6h, ticket-1d, ticket-3d
    severity: str
    long_window: str
    short_window: str
    factor: float
    long_burn_rate: float | None
    short_burn_rate: float | None
    budget_remaining: float | None  # per cent


@event_type(
    "slo.burn_rate_ok",
    description="A burn-rate alert stopped firing.",
    subject="slo:<id>",
)
class BurnRateOk(SloRef):
    alert: str
    severity: str


@event_type(
    "slo.budget_threshold",
    description="The error budget spent crossed a threshold of the SLO's policy (50 %, 75 %).",
    subject="slo:<id>",
)
class BudgetThreshold(SloRef):
    spent_percent: int  # the threshold crossed
    budget_remaining: float  # per cent


@event_type(
    "slo.budget_exhausted",
    description="The error budget is spent; the policy says what follows (a release freeze).",
    subject="slo:<id>",
)
class BudgetExhausted(SloRef):
    budget_remaining: float
    freeze: bool


@event_type(
    "slo.budget_recovered",
    description="An exhausted SLO is back within its objective.",
    subject="slo:<id>",
)
class BudgetRecovered(SloRef):
    budget_remaining: float


@event_type(
    "slo.release_freeze_changed",
    description="The error budget policy froze or released an entity's non-emergency releases.",
    subject="entity:<ref>",
)
class ReleaseFreezeChanged(EventPayload):
    entity: str
    frozen: bool
    reasons: list[str]


@event_type(
    "slo.freeze_exception_granted",
    description="A release during a freeze was allowed, with its reason.",
    subject="entity:<ref>",
)
class FreezeExceptionGranted(EventPayload):
    entity: str
    reason: str
    expires_at: str
    by: str
