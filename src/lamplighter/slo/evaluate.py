"""Evaluate SLOs: count good and total events over the window and the burn-rate lookbacks,
compute attainment, budget, burn rates, alerts and status, and tell who the policy names when
something changes.

Built-in events and probe results are summed from the minute, hour and day buckets (one SQL
statement for the burn windows of every SLO, one per distinct SLO window). Prometheus SLOs are
measured through :mod:`lamplighter.slo.prometheus`; a query error or an unreachable server
makes the SLO ``no data`` with the reason, never good or bad.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core import audit, events, identity, inbox, people
from lamplighter.core.authz import require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.slo import engine
from lamplighter.slo.event_types import (
    BudgetExhausted,
    BudgetRecovered,
    BudgetThreshold,
    BurnRateHigh,
    BurnRateOk,
    ReleaseFreezeChanged,
)
from lamplighter.slo.models import DAY, HOUR, MINUTE, Slo, SloCount, SloDaily
from lamplighter.slo.service import (
    BURN_WINDOWS,
    alert_rules_of,
    effective_policy,
    engine_duration,
    get,
    percent,
    window_of,
)

log = logging.getLogger(__name__)
ID_CHUNK = 500
# The projection uses the burn rate of this lookback: long enough not to swing with each minute.
PROJECTION_WINDOW = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Counts:
    """Good and total events of one range. ``ratio_only`` when only the ratio is known (a raw
    error-ratio query): then ``good``/``total`` are the good ratio over 1."""

    good: float
    total: float
    ratio_only: bool = False


@dataclass(frozen=True)
class NoData:
    reason: str


@dataclass
class Measured:
    """What one SLO's source answered: the window and each burn lookback, or why not."""

    window: Counts | None = None
    lookbacks: dict[dt.timedelta, Counts] = field(default_factory=dict)
    slices: list[float | None] | None = None  # timeslices: each slice's good ratio
    no_data: str | None = None


# A Prometheus SLO's measurement: (slo, window start, now, lookbacks) -> Measured.
PrometheusMeasure = Callable[[Slo, dt.datetime, dt.datetime, Sequence[dt.timedelta]], Measured]


# -- sums over bucket ranges -------------------------------------------------------------------


def ceil_to(at: dt.datetime, seconds: int) -> dt.datetime:
    epoch = at.timestamp()
    whole = int(epoch) - int(epoch) % seconds
    if whole < epoch:
        whole += seconds
    return dt.datetime.fromtimestamp(whole, dt.UTC)


def floor_to(at: dt.datetime, seconds: int) -> dt.datetime:
    epoch = int(at.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)


def pieces(start: dt.datetime, end: dt.datetime) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """Cover the buckets whose start lies in [start, end) with few rows: whole days as day
    buckets, whole hours as hour buckets, the rest as minutes. ``start`` rounds up to a minute
    (a lookback of 5 minutes is the last five minute buckets, the current one included)."""
    first = ceil_to(start, MINUTE)
    if first >= end:
        return []
    h1, h2 = ceil_to(first, HOUR), floor_to(end, HOUR)
    if h1 >= h2:
        return [(MINUTE, first, end)]
    found = [(MINUTE, first, h1), (MINUTE, h2, end)]
    d1, d2 = ceil_to(h1, DAY), floor_to(h2, DAY)
    if d1 >= d2:
        found.append((HOUR, h1, h2))
    else:
        found += [(HOUR, h1, d1), (HOUR, d2, h2), (DAY, d1, d2)]
    return [(res, a, b) for res, a, b in found if a < b]


def bucket_sums(
    session: Session, slo_ids: Sequence[int], ranges: Mapping[str, tuple[dt.datetime, dt.datetime]]
) -> dict[int, dict[str, Counts]]:
    """Good and total of each SLO over each named range.

    The ranges' pieces are summed once each (the lookbacks share their newest minutes), one
    index range per piece and SLO, all in one ``UNION ALL`` statement per chunk of SLOs; each
    range is then the sum of its pieces."""
    by_range = {name: pieces(start, end) for name, (start, end) in ranges.items()}
    distinct = sorted({piece for found in by_range.values() for piece in found})
    index = {piece: number for number, piece in enumerate(distinct)}
    sums: dict[tuple[int, int], tuple[int, int]] = {}
    for offset in range(0, len(slo_ids), ID_CHUNK):
        chunk = list(slo_ids[offset : offset + ID_CHUNK])
        selects = [
            sa.select(
                SloCount.slo_id,
                sa.literal(number).label("piece"),
                sa.func.sum(SloCount.good).label("good"),
                sa.func.sum(SloCount.total).label("total"),
            )
            .where(
                SloCount.slo_id.in_(chunk),
                SloCount.resolution == resolution,
                SloCount.at >= start,
                SloCount.at < end,
            )
            .group_by(SloCount.slo_id)
            for number, (resolution, start, end) in enumerate(distinct)
        ]
        if not selects:
            break
        statement = selects[0] if len(selects) == 1 else sa.union_all(*selects)
        for slo_id, number, good, total in session.execute(statement):
            sums[(slo_id, number)] = (int(good or 0), int(total or 0))
    found: dict[int, dict[str, Counts]] = {}
    for slo_id in slo_ids:
        found[slo_id] = {}
        for name, parts in by_range.items():
            good = total = 0
            for piece in parts:
                g, t = sums.get((slo_id, index[piece]), (0, 0))
                good += g
                total += t
            found[slo_id][name] = Counts(float(good), float(total))
    return found


def slice_ratios(
    session: Session, slo: Slo, start: dt.datetime, now: dt.datetime, end: dt.datetime
) -> list[float | None]:
    """Each time slice's good ratio from the minute buckets; slices after ``now`` are empty."""
    length = slo.slice_seconds or MINUTE
    count = max(1, int((end - start).total_seconds() // length))
    good = [0] * count
    total = [0] * count
    rows = session.execute(
        sa.select(SloCount.at, SloCount.good, SloCount.total).where(
            SloCount.slo_id == slo.id,
            SloCount.resolution == MINUTE,
            SloCount.at >= start,
            SloCount.at < min(now, end),
        )
    ).all()
    for at, g, t in rows:
        index = int((at - start).total_seconds() // length)
        if 0 <= index < count:
            good[index] += g
            total[index] += t
    return [g / t if t else None for g, t in zip(good, total, strict=True)]


def measure_builtin(session: Session, slos: Sequence[Slo], now: dt.datetime) -> dict[int, Measured]:
    """Measure SLOs on built-in events and probes from their buckets."""
    found: dict[int, Measured] = {slo.id: Measured() for slo in slos}
    if not slos:
        return found
    lookbacks = {engine_duration(w): (now - w, now) for w in BURN_WINDOWS}
    sums = bucket_sums(session, [slo.id for slo in slos], lookbacks)
    for slo in slos:
        found[slo.id].lookbacks = {w: sums[slo.id][engine_duration(w)] for w in BURN_WINDOWS}
    by_window: dict[tuple[dt.datetime, dt.datetime], list[Slo]] = defaultdict(list)
    for slo in slos:
        start, end = engine.window_bounds(window_of(slo), now)
        by_window[(start, min(end, now))].append(slo)
    for (start, end), group in by_window.items():
        window_sums = bucket_sums(session, [slo.id for slo in group], {"w": (start, end)})
        for slo in group:
            found[slo.id].window = window_sums[slo.id]["w"]
    for slo in slos:
        if slo.budgeting == "timeslices":
            start, end = engine.window_bounds(window_of(slo), now)
            found[slo.id].slices = slice_ratios(session, slo, start, now, end)
    return found


# -- computing the state -----------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    status: engine.Status
    reason: str
    window_start: dt.datetime
    window_end: dt.datetime
    attainment: float | None = None
    good: float | None = None
    total: float | None = None
    budget_total: float | None = None
    budget_spent: float | None = None
    remaining: float | None = None
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    firing: tuple[str, ...] = ()
    exhaustion_at: dt.datetime | None = None


def _burn(counts: Counts | None, objective: float) -> float | None:
    if counts is None or counts.total <= 0:
        return None
    bad = max(0.0, counts.total - counts.good)
    return bad / counts.total / (1 - objective)


def compute(slo: Slo, measured: Measured, now: dt.datetime) -> State:
    """The SLO's state from what its source measured."""
    window = window_of(slo)
    start, end = engine.window_bounds(window, now)
    if measured.no_data is not None:
        return State(engine.Status.NO_DATA, measured.no_data, start, end)
    objective = slo.objective
    rates = {engine_duration(w): _burn(c, objective) for w, c in measured.lookbacks.items()}
    counts = measured.window
    remaining: float | None
    attainment: float | None
    budget_total: float | None
    budget_spent: float | None
    if slo.budgeting == "timeslices" and measured.slices is not None:
        budget = engine.timeslices_budget(
            slice_good_ratios=measured.slices,
            slice_length=dt.timedelta(seconds=slo.slice_seconds or MINUTE),
            slice_threshold_ratio=slo.slice_threshold or objective,
            objective_ratio=objective,
            window_length=end - start,
        )
        attainment, remaining = budget.attainment_ratio, budget.remaining_ratio
        budget_total = budget.budget.total_seconds()
        budget_spent = budget.spent.total_seconds()
    elif counts is None or counts.total <= 0:
        attainment = remaining = budget_total = budget_spent = None
    elif counts.ratio_only:
        attainment = counts.good / counts.total
        remaining = 1 - (1 - attainment) / (1 - objective)
        budget_total = budget_spent = None
    else:
        good, total = counts.good, counts.total
        attainment = good / total
        budget_total = (1 - objective) * total
        budget_spent = total - good
        remaining = 1 - (1 - attainment) / (1 - objective)
    if attainment is None:
        return State(
            engine.Status.NO_DATA,
            "no events in the window yet" if counts is not None else "nothing measured",
            start,
            end,
            burn_rates=rates,
        )
    attainment = min(1.0, max(0.0, attainment))
    rules = [
        (name, rule)
        for name, rule in alert_rules_of(slo)
        if slo.alerting.get(rule.severity.value, True)
    ]
    min_events = int(slo.alerting.get("min_events", 0) or 0)
    firing = []
    for name, rule in rules:
        long_counts = measured.lookbacks.get(rule.long_window)
        enough = long_counts is not None and (
            long_counts.ratio_only or long_counts.total >= min_events
        )
        long_rate = rates.get(engine_duration(rule.long_window))
        short_rate = rates.get(engine_duration(rule.short_window))
        if (
            enough
            and long_rate is not None
            and short_rate is not None
            and long_rate > rule.burn_rate_factor
            and short_rate > rule.burn_rate_factor
        ):
            firing.append((name, rule))
    policy = effective_policy(slo)
    thresholds = policy.get("notify_at") or [50]
    status = engine.slo_status(
        remaining_ratio=remaining,
        firing=[rule for _, rule in firing],
        warning_spent_ratio=min(thresholds) / 100,
    )
    if status is engine.Status.HEALTHY and firing:
        status = engine.Status.WARNING  # a ticket alert: worth a look, not a page
    exhaustion_at = _exhaustion_at(
        slo, remaining, rates.get(engine_duration(PROJECTION_WINDOW)), start, end, now
    )
    return State(
        status=status,
        reason=_reason(status, remaining, [name for name, _ in firing]),
        window_start=start,
        window_end=end,
        attainment=attainment,
        good=counts.good if counts is not None and not counts.ratio_only else None,
        total=counts.total if counts is not None and not counts.ratio_only else None,
        budget_total=budget_total,
        budget_spent=budget_spent,
        remaining=remaining,
        burn_rates=rates,
        firing=tuple(name for name, _ in firing),
        exhaustion_at=exhaustion_at,
    )


def _exhaustion_at(
    slo: Slo,
    remaining: float | None,
    burn: float | None,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
) -> dt.datetime | None:
    """When the budget runs out if the last 6 hours' burn rate goes on; None if it does not.

    A rolling window forgets old events as it takes new ones, so a burn rate of 1 or less never
    spends the rest of the budget (the spent share tends to the rate); a calendar window starts
    over at its end, so a projection past the end is no exhaustion either."""
    if remaining is not None and remaining <= 0:
        return now
    if burn is None or (slo.window_kind == "rolling" and burn <= 1):
        return None
    projection = engine.time_to_exhaustion(
        remaining_ratio=remaining, burn_rate=burn, window_length=end - start
    )
    if projection is None:
        return None
    at = now + projection
    return None if slo.window_kind != "rolling" and at >= end else at


def _reason(status: engine.Status, remaining: float | None, firing: list[str]) -> str:
    left = f"{percent(remaining):.1f} % of the error budget left" if remaining is not None else ""
    if status is engine.Status.EXHAUSTED:
        return f"the error budget is spent ({left})"
    if firing:
        return f"burning fast ({', '.join(firing)} firing); {left}"
    return left


# -- applying the state: events, inbox, policy -------------------------------------------------


def _recipients(session: Session, entity: Entity, notify: str) -> list[int]:
    """Who the policy tells: the owning team's active members, or its (nearest) lead."""
    if entity.owner_team_id is None:
        return []
    if notify == "lead":
        lead = identity.nearest_lead(session=session, team_id=entity.owner_team_id)
        if lead is not None:
            return [lead.id]
    members = people.member_ids_of(session=session, team_ids=[entity.owner_team_id])
    ids = members.get(entity.owner_team_id, [])
    users = people.users_by_id(session=session, ids=ids)
    return [user_id for user_id in ids if user_id in users and users[user_id].is_active]


def _tell(session: Session, slo: Slo, entity: Entity, notify: str, title: str, body: str) -> None:
    for user_id in _recipients(session, entity, notify):
        inbox.notify(
            session=session, user_id=user_id, title=title, body=body, link=f"/slos/{slo.id}"
        )


def apply_state(
    session: Session, slo: Slo, state: State, now: dt.datetime, entity: Entity | None = None
) -> list[str]:
    """Store the state; emit the transitions as events and tell the policy's people.
    Returns the event types emitted."""
    entity = entity or session.get(Entity, slo.entity_id)
    assert entity is not None
    policy = effective_policy(slo, entity.tier)
    ref = {"id": slo.id, "slo": slo.name, "entity": entity.ref}
    subject = f"slo:{slo.id}"
    label = f"{entity.name}: SLO {slo.name}"
    emitted: list[str] = []

    def emit(type_: str, payload: Any) -> None:
        events.emit(session=session, type=type_, subject=subject, payload=payload)
        emitted.append(type_)

    new_window = slo.window_start is not None and slo.window_start != state.window_start
    if new_window and slo.window_kind != "rolling":
        slo.threshold_notified = 0  # a new calendar window starts with its whole budget
    old_firing = set(slo.firing or [])
    rules = dict(alert_rules_of(slo))
    if state.status is not engine.Status.NO_DATA:
        for name in state.firing:
            if name in old_firing:
                continue
            rule = rules[name]
            emit(
                "slo.burn_rate_high",
                BurnRateHigh(
                    **ref,
                    alert=name,
                    severity=rule.severity.value,
                    long_window=engine_duration(rule.long_window),
                    short_window=engine_duration(rule.short_window),
                    factor=rule.burn_rate_factor,
                    long_burn_rate=state.burn_rates.get(engine_duration(rule.long_window)),
                    short_burn_rate=state.burn_rates.get(engine_duration(rule.short_window)),
                    budget_remaining=percent(state.remaining),
                ),
            )
            _tell(
                session,
                slo,
                entity,
                policy["notify"],
                f"{label} is burning its error budget ({rule.severity.value})",
                f"Burn rate {state.burn_rates.get(engine_duration(rule.long_window)) or 0:.1f}x "
                f"over {engine_duration(rule.long_window)} and "
                f"{state.burn_rates.get(engine_duration(rule.short_window)) or 0:.1f}x over "
                f"{engine_duration(rule.short_window)} (alert at {rule.burn_rate_factor:g}x). "
                f"{state.reason}.",
            )
        for name in sorted(old_firing - set(state.firing)):
            gone = rules.get(name)
            emit(
                "slo.burn_rate_ok",
                BurnRateOk(**ref, alert=name, severity=gone.severity.value if gone else "page"),
            )
        slo.firing = list(state.firing)
    remaining = state.remaining
    if remaining is not None:
        spent = (1 - remaining) * 100
        crossed = [t for t in policy.get("notify_at") or [] if spent >= t]
        highest = max(crossed, default=0)
        if highest > slo.threshold_notified and remaining > 0:
            emit(
                "slo.budget_threshold",
                BudgetThreshold(
                    **ref, spent_percent=highest, budget_remaining=percent(remaining) or 0.0
                ),
            )
            _tell(
                session,
                slo,
                entity,
                policy["notify"],
                f"{label} has spent {highest} % of its error budget",
                f"{percent(remaining):.1f} % of the budget is left in this window. "
                "The error budget policy: at 100 % "
                + (
                    "non-emergency releases freeze."
                    if policy["on_exhausted"] == "freeze"
                    else "the team is told."
                ),
            )
        if remaining > 0:
            slo.threshold_notified = highest
        was_exhausted = slo.status == engine.Status.EXHAUSTED.value or slo.frozen
        if remaining <= 0 and slo.status != engine.Status.EXHAUSTED.value and not slo.frozen:
            freeze = policy["on_exhausted"] == "freeze"
            emit(
                "slo.budget_exhausted",
                BudgetExhausted(**ref, budget_remaining=percent(remaining) or 0.0, freeze=freeze),
            )
            slo.threshold_notified = 100
            _tell(
                session,
                slo,
                entity,
                policy["notify"],
                f"{label} has spent its whole error budget",
                "Non-emergency releases are frozen until it is back within its SLO; an exception "
                "needs a reason."
                if freeze
                else "The policy asks the team to put reliability first.",
            )
            if freeze:
                slo.frozen = True
                _freeze_changed(session, entity, emitted)
        elif remaining > 0 and was_exhausted:
            emit(
                "slo.budget_recovered",
                BudgetRecovered(**ref, budget_remaining=percent(remaining) or 0.0),
            )
            _tell(
                session,
                slo,
                entity,
                policy["notify"],
                f"{label} is back within its SLO",
                f"{percent(remaining):.1f} % of the error budget is left.",
            )
            if slo.frozen:
                slo.frozen = False
                _freeze_changed(session, entity, emitted)
    slo.status = state.status.value
    slo.status_reason = state.reason
    slo.evaluated_at = now
    slo.window_start = state.window_start
    slo.window_end = state.window_end
    slo.attainment = state.attainment
    slo.good_events = state.good
    slo.total_events = state.total
    slo.budget_total = state.budget_total
    slo.budget_spent = state.budget_spent
    slo.budget_remaining = state.remaining
    slo.burn_rates = dict(state.burn_rates)
    slo.exhaustion_at = state.exhaustion_at
    return emitted


def _freeze_changed(session: Session, entity: Entity, emitted: list[str]) -> None:
    session.flush()
    frozen = list(
        session.scalars(sa.select(Slo.name).where(Slo.entity_id == entity.id, Slo.frozen.is_(True)))
    )
    events.emit(
        session=session,
        type="slo.release_freeze_changed",
        subject=f"entity:{entity.ref}",
        payload=ReleaseFreezeChanged(
            entity=entity.ref,
            frozen=bool(frozen),
            reasons=[f"SLO {name} has spent its error budget" for name in frozen],
        ),
    )
    emitted.append("slo.release_freeze_changed")


def _record_day(
    session: Session, slo: Slo, measured_day: Counts | None, state: State, now: dt.datetime
) -> None:
    """Keep today's attainment and the budget left (Prometheus SLOs; built-in ones read their
    day buckets)."""
    if measured_day is None or measured_day.total <= 0:
        return
    values = {
        "good": measured_day.good,
        "total": measured_day.total,
        "attainment": measured_day.good / measured_day.total,
        "budget_remaining": state.remaining,
    }
    row = session.get(SloDaily, (slo.id, now.date()))
    if row is None:
        session.add(SloDaily(slo_id=slo.id, day=now.date(), **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


# -- entry points ------------------------------------------------------------------------------


def _locked(session: Session, slos: list[Slo]) -> list[Slo]:
    """Lock the SLOs' rows and read them afresh, so that two evaluations at once (the minute's
    job and someone's "Evaluate now") take turns and never both announce one transition."""
    ids = [slo.id for slo in slos]
    fresh: dict[int, Slo] = {}
    for offset in range(0, len(ids), ID_CHUNK):
        chunk = ids[offset : offset + ID_CHUNK]
        query = (
            sa.select(Slo)
            .where(Slo.id.in_(chunk))
            .order_by(Slo.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        fresh.update((slo.id, slo) for slo in session.scalars(query))
    return [fresh[slo_id] for slo_id in ids if slo_id in fresh]


def evaluate(
    *,
    session: Session,
    slos: Iterable[Slo],
    now: dt.datetime | None = None,
    prometheus: PrometheusMeasure | None = None,
) -> dict[int, list[str]]:
    """Evaluate the SLOs now and store their state; returns the events emitted per SLO."""
    now = now or utcnow()
    slos = _locked(session, list(slos))
    builtin = [slo for slo in slos if slo.source in ("events", "probe")]
    measured = measure_builtin(session, builtin, now)
    day_counts: dict[int, Counts] = {}
    for slo in slos:
        if slo.source != "prometheus":
            continue
        if prometheus is None:
            measured[slo.id] = Measured(
                no_data="no Prometheus is configured (set LAMPLIGHTER_PROMETHEUS_URL)"
            )
            continue
        start, _ = engine.window_bounds(window_of(slo), now)
        measured[slo.id] = prometheus(slo, start, now, BURN_WINDOWS)
        if (w := measured[slo.id].window) is not None and measured[slo.id].no_data is None:
            # The day's row holds the last 24 hours as of the day's last evaluation, so once a
            # day is over its row is (near enough) that day's; the 1d lookback is that figure.
            day_counts[slo.id] = measured[slo.id].lookbacks.get(dt.timedelta(days=1), w)
    # The entities in one query, held here (the session keeps only weak references); and no
    # flush before each read: a thousand SLOs' states are written in one flush at the end.
    entities = {
        entity.id: entity
        for entity in session.scalars(
            sa.select(Entity).where(Entity.id.in_({slo.entity_id for slo in slos}))
        )
    }
    emitted: dict[int, list[str]] = {}
    with session.no_autoflush:
        for slo in slos:
            state = compute(slo, measured[slo.id], now)
            emitted[slo.id] = apply_state(session, slo, state, now, entities.get(slo.entity_id))
            if slo.source == "prometheus":
                _record_day(session, slo, day_counts.get(slo.id), state, now)
    session.flush()
    return emitted


def history(session: Session, slo: Slo, days: int = 365) -> list[dict[str, Any]]:
    """Daily attainment for a year: built-in SLOs from their day buckets, Prometheus ones from
    the days recorded at evaluation."""
    since = floor_to(utcnow() - dt.timedelta(days=days), DAY)
    if slo.source == "prometheus":
        rows = session.scalars(
            sa.select(SloDaily)
            .where(SloDaily.slo_id == slo.id, SloDaily.day >= since.date())
            .order_by(SloDaily.day)
        )
        return [
            {
                "day": row.day,
                "good": row.good,
                "total": row.total,
                "attainment": percent(row.attainment),
                "budget_remaining": percent(row.budget_remaining),
            }
            for row in rows
        ]
    buckets = session.execute(
        sa.select(SloCount.at, SloCount.good, SloCount.total)
        .where(SloCount.slo_id == slo.id, SloCount.resolution == DAY, SloCount.at >= since)
        .order_by(SloCount.at)
    ).all()
    return [
        {
            "day": at.date(),
            "good": float(good),
            "total": float(total),
            "attainment": percent(good / total) if total else None,
            "budget_remaining": None,
        }
        for at, good, total in buckets
    ]


def burndown(
    session: Session, slo: Slo, now: dt.datetime | None = None
) -> list[tuple[dt.datetime, float]]:
    """The budget left (ratio) through the current window, hour by hour for built-in SLOs and
    day by day for Prometheus ones: the points of the burn-down chart."""
    now = now or utcnow()
    start, end = engine.window_bounds(window_of(slo), now)
    objective = slo.objective
    if slo.source == "prometheus":
        return [
            (dt.datetime.combine(row.day, dt.time(), dt.UTC), row.budget_remaining)
            for row in session.scalars(
                sa.select(SloDaily)
                .where(
                    SloDaily.slo_id == slo.id,
                    SloDaily.day >= start.date(),
                    SloDaily.budget_remaining.is_not(None),
                )
                .order_by(SloDaily.day)
            )
            if row.budget_remaining is not None
        ]
    # Cumulative over the window's hours. For a rolling window the budget at hour h is that of
    # the window ending at h; the chart shows spending within the current window, from full.
    rows = session.execute(
        sa.select(SloCount.at, SloCount.good, SloCount.total)
        .where(
            SloCount.slo_id == slo.id,
            SloCount.resolution == HOUR,
            SloCount.at >= floor_to(start, HOUR),
            SloCount.at < min(end, now),
        )
        .order_by(SloCount.at)
    ).all()
    points: list[tuple[dt.datetime, float]] = []
    good = total = 0.0
    for at, g, t in rows:
        good += g
        total += t
        if total > 0:
            points.append((at + dt.timedelta(hours=1), 1 - (1 - good / total) / (1 - objective)))
    return points


def evaluate_now(
    *, session: Session, actor: Actor, slo_id: int, prometheus: PrometheusMeasure | None
) -> Slo:
    """Evaluate one SLO on request (its page's button, ``POST /slos/{id}/evaluate``): those who
    may change the SLO may ask, and the request is audited; everyone else waits for the
    minute's job."""
    slo = get(session=session, slo_id=slo_id)
    entity = session.get(Entity, slo.entity_id)
    require_owned_write(actor, entity.owner_team_id if entity else None, f"the SLO {slo.name}")
    evaluate(session=session, slos=[slo], prometheus=prometheus)
    audit.record(
        session=session,
        actor=actor,
        action="slo.evaluate",
        object_type="slo",
        object_id=slo.id,
        after={"status": slo.status, "reason": slo.status_reason},
    )
    return slo
