"""Lamplighter's own SLO definition: the one model the OpenSLO and Sloth importers produce.

Pure data, no I/O. A definition names its catalog service, its SLI, objective, window and
budgeting method; the engine computes budgets from it and the exporters write it back out:

    [definition] = from_sloth(sloth.parse(text, source="getting-started.yml").specs[0])
    definition.objective_ratio  # 0.999
    definition.window           # engine.Window.rolling(30)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from lamplighter.slo import engine, sloth

SLOTH_WINDOW_DAYS = 30  # what `sloth generate` assumes without --default-slo-period
ThresholdOp = Literal["lt", "lte", "gt", "gte"]
THRESHOLD_OPS: tuple[ThresholdOp, ...] = ("lt", "lte", "gt", "gte")
Occurrences = Literal["occurrences"]
OCCURRENCES: Occurrences = "occurrences"


@dataclass(frozen=True)
class RatioSli:
    """Good (or bad) events over total events; queries may hold Sloth's ``{{.window}}``."""

    total_query: str
    good_query: str | None = None
    bad_query: str | None = None

    def __post_init__(self) -> None:
        if (self.good_query is None) == (self.bad_query is None):
            raise ValueError("a ratio SLI has exactly one of a good query and a bad query")
        if not self.total_query.strip() or not (self.good_query or self.bad_query or "").strip():
            raise ValueError("a ratio SLI's queries must not be empty")


@dataclass(frozen=True)
class RawErrorRatioSli:
    """One query that gives the error ratio directly (Sloth's ``raw`` SLI)."""

    error_ratio_query: str

    def __post_init__(self) -> None:
        if not self.error_ratio_query.strip():
            raise ValueError("the error ratio query must not be empty")


@dataclass(frozen=True)
class ThresholdSli:
    """A measurement is good when ``query op value`` holds (e.g. latency ``lt`` 500)."""

    query: str
    op: ThresholdOp
    value: float

    def __post_init__(self) -> None:
        if self.op not in THRESHOLD_OPS:
            raise ValueError(f"op is one of {', '.join(THRESHOLD_OPS)}, not {self.op!r}")
        if not self.query.strip():
            raise ValueError("the threshold query must not be empty")


Sli = RatioSli | RawErrorRatioSli | ThresholdSli


@dataclass(frozen=True)
class Timeslices:
    """Budget counted in time: a slice is good when its good ratio reaches the threshold."""

    slice_length: dt.timedelta
    slice_threshold_ratio: float

    def __post_init__(self) -> None:
        if self.slice_length <= dt.timedelta(0):
            raise ValueError("a time slice must be longer than zero")
        if not 0 < self.slice_threshold_ratio <= 1:
            raise ValueError(
                f"a time slice threshold is a ratio in (0, 1], not {self.slice_threshold_ratio}"
            )


Budgeting = Occurrences | Timeslices


@dataclass(frozen=True)
class AlertingSettings:
    """Which of the Workbook's burn-rate alerts fire, and the labels they carry."""

    page_enabled: bool = True
    ticket_enabled: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None  # the Prometheus alert's name (Sloth's alerting.name)

    def __hash__(self) -> int:
        return hash(
            (self.page_enabled, self.ticket_enabled, tuple(sorted(self.labels.items())), self.name)
        )


@dataclass(frozen=True)
class SloDefinition:
    """One SLO on a catalog entity, whichever format it came from."""

    name: str
    service: str
    objective_ratio: float
    window: engine.Window
    sli: Sli
    budgeting: Budgeting = OCCURRENCES
    description: str = ""
    alerting: AlertingSettings = field(default_factory=AlertingSettings)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("an SLO needs a name")
        if not self.service.strip():
            raise ValueError("an SLO needs a service")
        if not 0 < self.objective_ratio < 1:
            raise ValueError(
                f"an objective is a ratio between 0 and 1 (exclusive), not {self.objective_ratio}"
            )

    def __hash__(self) -> int:
        return hash((self.name, self.service, self.objective_ratio, self.window, self.sli))


def percent_to_ratio(percent: float) -> float:
    """Turn a percentage into a ratio without binary noise: 99.9 gives 0.999, not 0.99900…01."""
    return float(Decimal(repr(float(percent))) / 100)


def from_sloth(spec: sloth.SlothSpec) -> list[SloDefinition]:
    """Return one definition per SLO of a Sloth spec (30-day rolling window, occurrences)."""
    definitions = []
    for slo in spec.slos:
        sli: Sli
        if slo.sli.events is not None:
            sli = RatioSli(
                bad_query=slo.sli.events.error_query, total_query=slo.sli.events.total_query
            )
        else:
            assert slo.sli.raw is not None  # the spec's validator allows events or raw only
            sli = RawErrorRatioSli(slo.sli.raw.error_ratio_query)
        alerting = slo.alerting
        definitions.append(
            SloDefinition(
                name=slo.name,
                service=spec.service,
                description=slo.description,
                objective_ratio=percent_to_ratio(slo.objective),
                window=engine.Window.rolling(SLOTH_WINDOW_DAYS),
                budgeting=OCCURRENCES,
                sli=sli,
                alerting=AlertingSettings(
                    page_enabled=not alerting.page_alert.disable,
                    ticket_enabled=not alerting.ticket_alert.disable,
                    labels=dict(alerting.labels),
                    name=alerting.name or None,
                ),
                labels={**spec.labels, **slo.labels},
            )
        )
    return definitions
