"""The SLO maths: windows, error budgets, burn rates, burn-rate alerts, exhaustion and status.

Pure functions over counts and times, no I/O. Burn rates and the multiwindow, multi-burn-rate
alerts follow the Google SRE Workbook, chapter "Alerting on SLOs" (see FORMATS.md): burn rate 1
spends exactly the whole budget over the SLO window.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROLLING_WINDOW_DAYS = frozenset({7, 28, 30})
DEFAULT_WARNING_SPENT_RATIO = 0.5


class WindowKind(StrEnum):
    ROLLING = "rolling"
    CALENDAR_WEEK = "calendar_week"
    CALENDAR_MONTH = "calendar_month"


@dataclass(frozen=True)
class Window:
    """The period an SLO is measured over.

    A rolling window is the last ``days`` * 24 hours before now, whatever the zone; a calendar
    window is the current week (from Monday) or month, from local midnight to local midnight in
    ``time_zone``, so it is an hour shorter or longer across a daylight saving change:

    >>> berlin_month = Window.calendar_month("Europe/Berlin")
    >>> window_length(berlin_month, dt.datetime(2027, 3, 15, tzinfo=dt.UTC)) / dt.timedelta(hours=1)
    743.0
    """

    kind: WindowKind
    days: int | None = None
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if self.kind is WindowKind.ROLLING:
            if self.days not in ROLLING_WINDOW_DAYS:
                raise ValueError(f"a rolling window is 7, 28 or 30 days, not {self.days}")
        elif self.days is not None:
            raise ValueError("a calendar window has no day count")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from error

    @classmethod
    def rolling(cls, days: int, time_zone: str = "UTC") -> Window:
        return cls(WindowKind.ROLLING, days, time_zone)

    @classmethod
    def calendar_week(cls, time_zone: str) -> Window:
        return cls(WindowKind.CALENDAR_WEEK, None, time_zone)

    @classmethod
    def calendar_month(cls, time_zone: str) -> Window:
        return cls(WindowKind.CALENDAR_MONTH, None, time_zone)


def _require_aware(at: dt.datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a naive datetime is ambiguous: give it a time zone")


def _local_midnight_utc(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    # Where midnight does not exist (a zone that springs forward at 00:00), fold=0 takes the
    # offset before the change, which lands on the first instant of the local day.
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def window_bounds(window: Window, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the window containing ``at`` as a half-open UTC interval ``[start, end)``."""
    _require_aware(at)
    at_utc = at.astimezone(dt.UTC)
    if window.kind is WindowKind.ROLLING:
        assert window.days is not None
        return at_utc - dt.timedelta(days=window.days), at_utc
    zone = ZoneInfo(window.time_zone)
    today = at_utc.astimezone(zone).date()
    if window.kind is WindowKind.CALENDAR_WEEK:
        first = today - dt.timedelta(days=today.weekday())
        following = first + dt.timedelta(days=7)
    else:
        first = today.replace(day=1)
        following = (first + dt.timedelta(days=31)).replace(day=1)
    return _local_midnight_utc(first, zone), _local_midnight_utc(following, zone)


def window_length(window: Window, at: dt.datetime) -> dt.timedelta:
    """Return the elapsed time of the window containing ``at``."""
    start, end = window_bounds(window, at)
    return end - start


def _require_objective(objective_ratio: float) -> None:
    if not 0 < objective_ratio < 1:
        raise ValueError(f"an objective is a ratio between 0 and 1, not {objective_ratio}")


def _require_counts(good_events: int, total_events: int) -> None:
    if not 0 <= good_events <= total_events:
        raise ValueError(f"need 0 <= good <= total events, got {good_events} of {total_events}")


@dataclass(frozen=True)
class OccurrencesBudget:
    """An error budget counted in events; ``None`` ratios mean the window has no events."""

    attainment_ratio: float | None
    budget_events: float
    spent_events: int
    remaining_events: float
    remaining_ratio: float | None


def occurrences_budget(
    *, good_events: int, total_events: int, objective_ratio: float
) -> OccurrencesBudget:
    """Compute attainment and the event budget of a window from its good and total counts."""
    _require_objective(objective_ratio)
    _require_counts(good_events, total_events)
    bad_events = total_events - good_events
    budget_events = (1 - objective_ratio) * total_events
    if total_events == 0:
        return OccurrencesBudget(None, 0.0, 0, 0.0, None)
    # 1 - burn rate rather than 1 - spent / budget: each step is a rounded monotone operation,
    # so more bad events can never round to more budget left.
    error_ratio = bad_events / total_events
    return OccurrencesBudget(
        attainment_ratio=good_events / total_events,
        budget_events=budget_events,
        spent_events=bad_events,
        remaining_events=budget_events - bad_events,
        remaining_ratio=1 - error_ratio / (1 - objective_ratio),
    )


@dataclass(frozen=True)
class TimeslicesBudget:
    """An error budget counted in time; ``None`` ratios mean no slice has data."""

    good_slices: int
    bad_slices: int
    empty_slices: int
    attainment_ratio: float | None
    budget: dt.timedelta
    spent: dt.timedelta
    remaining: dt.timedelta
    remaining_ratio: float | None


def slice_ratio(*, good_events: int, total_events: int) -> float | None:
    """Return a slice's good ratio, or ``None`` when the slice has no events."""
    _require_counts(good_events, total_events)
    return good_events / total_events if total_events else None


def timeslices_budget(
    *,
    slice_good_ratios: Sequence[float | None],
    slice_length: dt.timedelta,
    slice_threshold_ratio: float,
    objective_ratio: float,
    window_length: dt.timedelta,
) -> TimeslicesBudget:
    """Compute the time budget: slices below the threshold are bad, slices without data are not."""
    _require_objective(objective_ratio)
    if slice_length <= dt.timedelta(0) or window_length <= dt.timedelta(0):
        raise ValueError("slice and window lengths must be positive")
    measured = [ratio for ratio in slice_good_ratios if ratio is not None]
    good_slices = sum(1 for ratio in measured if ratio >= slice_threshold_ratio)
    bad_slices = len(measured) - good_slices
    budget = window_length * (1 - objective_ratio)
    spent = slice_length * bad_slices
    return TimeslicesBudget(
        good_slices=good_slices,
        bad_slices=bad_slices,
        empty_slices=len(slice_good_ratios) - len(measured),
        attainment_ratio=good_slices / len(measured) if measured else None,
        budget=budget,
        spent=spent,
        remaining=budget - spent,
        remaining_ratio=1 - spent / budget if measured else None,
    )


def burn_rate(*, good_events: int, total_events: int, objective_ratio: float) -> float | None:
    """Return how fast a lookback window spends budget (1 = all of it over the SLO window)."""
    _require_objective(objective_ratio)
    _require_counts(good_events, total_events)
    if total_events == 0:
        return None
    return (total_events - good_events) / total_events / (1 - objective_ratio)


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


@dataclass(frozen=True)
class AlertRule:
    """Fire when both windows burn faster than ``burn_rate_factor``.

    The factor spends ``budget_fraction`` of the SLO window's budget within ``long_window``;
    on a 30-day window the first Workbook rule pages at 0.02 * 720 h / 1 h = 14.4.
    """

    severity: Severity
    long_window: dt.timedelta
    short_window: dt.timedelta
    budget_fraction: float
    burn_rate_factor: float


# The Workbook's table for 30 days as (severity, long window, share of the budget it spends).
# The shares stay for other SLO windows; the factors follow from them.
WORKBOOK_ALERTS: tuple[tuple[Severity, dt.timedelta, Fraction], ...] = (
    (Severity.PAGE, dt.timedelta(hours=1), Fraction(2, 100)),
    (Severity.PAGE, dt.timedelta(hours=6), Fraction(5, 100)),
    (Severity.TICKET, dt.timedelta(days=1), Fraction(10, 100)),
    (Severity.TICKET, dt.timedelta(days=3), Fraction(10, 100)),
)
SHORT_WINDOW_DIVISOR = 12
_HOUR = dt.timedelta(hours=1)


@functools.lru_cache(maxsize=64)
def alert_rules(window_days: int) -> tuple[AlertRule, ...]:
    """Return the Workbook's page and ticket rules with factors for a ``window_days`` SLO."""
    if window_days <= 0:
        raise ValueError(f"an SLO window has a positive number of days, not {window_days}")
    window_hours = window_days * 24
    rules = []
    for severity, long_window, fraction in WORKBOOK_ALERTS:
        # Exact arithmetic, so 30 days gives exactly the Workbook's 14.4, 6, 3 and 1.
        factor = fraction * window_hours / Fraction(long_window / _HOUR)
        rules.append(
            AlertRule(
                severity=severity,
                long_window=long_window,
                short_window=long_window / SHORT_WINDOW_DIVISOR,
                budget_fraction=float(fraction),
                burn_rate_factor=float(factor),
            )
        )
    return tuple(rules)


def evaluate_alerts(
    rules: Iterable[AlertRule],
    burn_rates: Mapping[dt.timedelta, float | None],
    counts: Mapping[dt.timedelta, int],
    min_events: int,
) -> tuple[AlertRule, ...]:
    """Return the rules that fire; a window missing from ``burn_rates`` has no data: no fire."""
    firing = []
    for rule in rules:
        long_rate = burn_rates.get(rule.long_window)
        short_rate = burn_rates.get(rule.short_window)
        if long_rate is None or short_rate is None:
            continue
        # One failure among ten requests is a 1,000x burn on 99.9 %: too few events prove nothing.
        if counts.get(rule.long_window, 0) < min_events:
            continue
        if long_rate > rule.burn_rate_factor and short_rate > rule.burn_rate_factor:
            firing.append(rule)
    return tuple(firing)


def time_to_exhaustion(
    *, remaining_ratio: float | None, burn_rate: float | None, window_length: dt.timedelta
) -> dt.timedelta | None:
    """Return when the budget runs out at ``burn_rate``; ``None`` if it never does or no data."""
    if remaining_ratio is None:
        return None
    if remaining_ratio <= 0:
        return dt.timedelta(0)
    if burn_rate is None or burn_rate <= 0:
        return None
    return window_length * (remaining_ratio / burn_rate)


class Status(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    BURNING = "burning"
    EXHAUSTED = "exhausted"
    NO_DATA = "no data"


def slo_status(
    *,
    remaining_ratio: float | None,
    firing: Iterable[AlertRule],
    warning_spent_ratio: float = DEFAULT_WARNING_SPENT_RATIO,
) -> Status:
    """Return the status, first match wins: no data, exhausted, burning, warning, healthy."""
    if remaining_ratio is None:
        return Status.NO_DATA
    if remaining_ratio <= 0:
        return Status.EXHAUSTED
    if any(rule.severity is Severity.PAGE for rule in firing):
        return Status.BURNING
    if 1 - remaining_ratio >= warning_spent_ratio:
        return Status.WARNING
    return Status.HEALTHY
