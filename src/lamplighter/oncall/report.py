"""The alert report for the SRE team, over a range [start, end) of at most 93 days:

- the noisiest alert kinds: alert groups and alerts per kind and team (the top 20);
- the kinds without a runbook: groups with no runbook of their own whose entity has no runbook
  link either (what ``notify.runbook_of`` would find for them: nothing);
- the flapping kinds: a kind whose groups resolved and opened again at least 3 times in the
  range, or resolved within 5 minutes of opening at least 3 times;
- the time to acknowledge (MTTA) per team: the mean and median minutes from a group's opening
  to its acknowledgement, and how many of the team's groups were acknowledged at all;
- the pages per person (the delivery log's ``sent`` rows) and how many of them came outside
  working hours (Monday to Friday, 09:00 to 17:00) in the person's own time zone.

The first two are GROUP BY queries; the rest is counted in Python over one query each of a few
columns, cut at ``MAX_ROWS`` rows (the report then says it is partial). A week of a busy
organisation is a few thousand groups and pages; 93 days of one stays well under the cut.

This module also reads a group's delivery log for the alert group page (:func:`deliveries_of`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from lamplighter.alerting.models import AlertGroup
from lamplighter.catalog.models import Entity
from lamplighter.core import people, timefmt
from lamplighter.core.db import utcnow
from lamplighter.core.errors import ValidationFailed
from lamplighter.oncall.models import Delivery, DeliveryStatus

DEFAULT_RANGE = dt.timedelta(days=7)
MAX_RANGE = dt.timedelta(days=93)
# Far enough either way for any report, and a week away from the ends of datetime's range.
EARLIEST, LATEST = dt.date(1970, 1, 1), dt.date(2999, 12, 31)
TOP_NOISY = 20
MAX_LISTED = 100
FLAP_COUNT = 3
QUICK_RESOLVE = dt.timedelta(minutes=5)
WORKDAY_START_HOUR, WORKDAY_END_HOUR = 9, 17  # local time, Monday to Friday
MAX_ROWS = 100_000
DELIVERIES_SHOWN = 500


# -- what the report says -------------------------------------------------------------------------
class NoisyKind(BaseModel):
    team: str
    team_name: str
    kind: str
    groups: int
    alerts: int


class KindWithoutRunbook(BaseModel):
    team: str
    team_name: str
    kind: str
    groups_without_runbook: int
    groups: int


class FlappingKind(BaseModel):
    team: str
    team_name: str
    kind: str
    groups: int
    reopened: int  # times a group of the kind opened after the previous one had resolved
    quick_resolves: int  # groups resolved within 5 minutes of opening


class TeamMtta(BaseModel):
    team: str
    team_name: str
    groups: int
    acknowledged: int
    mean_minutes: float | None
    median_minutes: float | None


class PersonPages(BaseModel):
    user_id: int
    name: str
    email: str
    time_zone: str
    pages: int
    outside_hours: int  # outside Monday to Friday 09:00-17:00 in the person's time zone


class AlertReport(BaseModel):
    start: dt.datetime
    end: dt.datetime
    groups: int
    noisy: list[NoisyKind]
    without_runbook: list[KindWithoutRunbook]
    flapping: list[FlappingKind]
    mtta: list[TeamMtta]
    pages: list[PersonPages]
    partial: bool  # a section counted only the first MAX_ROWS rows


# -- the range ------------------------------------------------------------------------------------
def range_of(
    start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """The report's [start, end) in UTC: the last 7 days by default, at most 93 days long."""
    for name, value in (("start", start), ("end", end)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise ValidationFailed.one(f"query.{name}", "give a time zone (…Z or …+01:00)")
        if not EARLIEST.year <= value.year <= LATEST.year:
            raise ValidationFailed.one(f"query.{name}", f"must be between {EARLIEST} and {LATEST}")
    if end is None:
        end = start + DEFAULT_RANGE if start is not None else (now or utcnow())
    if start is None:
        start = end - DEFAULT_RANGE
    if end <= start:
        raise ValidationFailed.one("query.end", "the range ends after it starts")
    if end - start > MAX_RANGE:
        raise ValidationFailed.one("query.end", f"a range spans at most {MAX_RANGE.days} days")
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def working_hours(at: dt.datetime, time_zone: str) -> bool:
    """Whether ``at`` falls in Monday to Friday, 09:00 to 17:00, in ``time_zone``."""
    local = at.astimezone(timefmt.zone_of(time_zone))
    return local.weekday() < 5 and WORKDAY_START_HOUR <= local.hour < WORKDAY_END_HOUR


# -- the sections ---------------------------------------------------------------------------------
def _in_range(start: dt.datetime, end: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(AlertGroup.created_at >= start, AlertGroup.created_at < end)


def _noisy(session: Session, where: sa.ColumnElement[bool]) -> list[tuple[int, str, int, int]]:
    groups = sa.func.count()
    alerts = sa.func.coalesce(sa.func.sum(AlertGroup.alert_count), 0)
    rows = session.execute(
        sa.select(AlertGroup.team_id, AlertGroup.kind, groups, alerts)
        .where(where)
        .group_by(AlertGroup.team_id, AlertGroup.kind)
        .order_by(groups.desc(), alerts.desc(), AlertGroup.kind)
        .limit(TOP_NOISY)
    )
    return [(team_id, kind, int(n), int(a)) for team_id, kind, n, a in rows]


def _has_runbook_link(links: Any) -> bool:
    return any(
        isinstance(link, dict) and link.get("type") == "runbook" and link.get("url")
        for link in links or ()
    )


def _without_runbook(
    session: Session, where: sa.ColumnElement[bool]
) -> tuple[dict[tuple[int, str], tuple[int, int]], bool]:
    """(groups without a runbook, groups) per (team, kind)."""
    rows = session.execute(
        sa.select(
            AlertGroup.team_id,
            AlertGroup.kind,
            AlertGroup.entity_id,
            sa.func.count(),
            sa.func.count(AlertGroup.runbook_url),
        )
        .where(where)
        .group_by(AlertGroup.team_id, AlertGroup.kind, AlertGroup.entity_id)
        .limit(MAX_ROWS + 1)
    ).all()
    entity_ids = {row[2] for row in rows if row[2] is not None}
    documented: set[int] = set()
    if entity_ids:
        documented = {
            entity_id
            for entity_id, links in session.execute(
                sa.select(Entity.id, Entity.links).where(Entity.id.in_(entity_ids))
            )
            if _has_runbook_link(links)
        }
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for team_id, kind, entity_id, count, with_runbook in rows[:MAX_ROWS]:
        missing = 0 if entity_id in documented else int(count) - int(with_runbook)
        before_missing, before_total = found.get((team_id, kind), (0, 0))
        found[(team_id, kind)] = (before_missing + missing, before_total + int(count))
    return found, len(rows) > MAX_ROWS


def _flapping(rows: Sequence[Any]) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(groups, re-opened, quick resolves) per (team, kind); rows in the order they opened."""
    counts: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    last_resolved: dict[tuple[int, str], dt.datetime | None] = {}
    for row in rows:
        key = (row.team_id, row.kind)
        entry = counts[key]
        entry[0] += 1
        previous = last_resolved.get(key)
        if previous is not None and previous <= row.created_at:
            entry[1] += 1
        if row.resolved_at is not None and row.resolved_at - row.created_at <= QUICK_RESOLVE:
            entry[2] += 1
        last_resolved[key] = row.resolved_at
    return {key: (n, reopened, quick) for key, (n, reopened, quick) in counts.items()}


def _minutes(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.fmean(values), 1), round(statistics.median(values), 1)


def _mtta(rows: Sequence[Any]) -> dict[int, tuple[int, list[float]]]:
    """(groups, minutes to acknowledge of each acknowledged group) per team."""
    found: dict[int, tuple[int, list[float]]] = {}
    for row in rows:
        total, minutes = found.get(row.team_id, (0, []))
        if row.acknowledged_at is not None:
            minutes.append((row.acknowledged_at - row.created_at).total_seconds() / 60)
        found[row.team_id] = (total + 1, minutes)
    return found


def _pages(
    session: Session, start: dt.datetime, end: dt.datetime
) -> tuple[list[PersonPages], bool]:
    rows = session.execute(
        sa.select(Delivery.user_id, Delivery.at)
        .where(
            Delivery.status == DeliveryStatus.SENT.value,
            Delivery.at >= start,
            Delivery.at < end,
        )
        .order_by(Delivery.id)
        .limit(MAX_ROWS + 1)
    ).all()
    users = people.users_by_id(session=session, ids={row.user_id for row in rows})
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows[:MAX_ROWS]:
        user = users.get(row.user_id)
        entry = counts[row.user_id]
        entry[0] += 1
        if not working_hours(row.at, user.time_zone if user else "UTC"):
            entry[1] += 1
    found = [
        PersonPages(
            user_id=user_id,
            name=users[user_id].display_name,
            email=users[user_id].email,
            time_zone=users[user_id].time_zone,
            pages=pages,
            outside_hours=outside,
        )
        for user_id, (pages, outside) in counts.items()
        if user_id in users
    ]
    found.sort(key=lambda p: (-p.pages, -p.outside_hours, p.name.lower()))
    return found[:MAX_LISTED], len(rows) > MAX_ROWS


def build(
    *, session: Session, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> AlertReport:
    """The alert report over [start, end) (the last 7 days by default)."""
    start, end = range_of(start, end)
    where = _in_range(start, end)
    noisy = _noisy(session, where)
    runbooks, runbooks_partial = _without_runbook(session, where)
    rows = session.execute(
        sa.select(
            AlertGroup.team_id,
            AlertGroup.kind,
            AlertGroup.created_at,
            AlertGroup.acknowledged_at,
            AlertGroup.resolved_at,
        )
        .where(where)
        .order_by(AlertGroup.created_at, AlertGroup.id)
        .limit(MAX_ROWS + 1)
    ).all()
    groups_partial = len(rows) > MAX_ROWS
    rows = rows[:MAX_ROWS]
    flaps = _flapping(rows)
    acks = _mtta(rows)
    pages, pages_partial = _pages(session, start, end)
    teams = people.teams_by_id(
        session=session, ids={t for t, _ in runbooks} | set(acks) | {t for t, *_ in noisy}
    )

    def team_of(team_id: int) -> dict[str, str]:
        team = teams.get(team_id)
        return {"team": team.slug if team else "", "team_name": team.name if team else ""}

    without = sorted(
        (
            KindWithoutRunbook(**team_of(t), kind=k, groups_without_runbook=m, groups=n)
            for (t, k), (m, n) in runbooks.items()
            if m
        ),
        key=lambda r: (-r.groups_without_runbook, r.team, r.kind),
    )
    flapping = sorted(
        (
            FlappingKind(**team_of(t), kind=k, groups=n, reopened=r, quick_resolves=q)
            for (t, k), (n, r, q) in flaps.items()
            if r >= FLAP_COUNT or q >= FLAP_COUNT
        ),
        key=lambda f: (-(f.reopened + f.quick_resolves), f.team, f.kind),
    )
    mtta = []
    for team_id, (total, minutes) in acks.items():
        mean, median = _minutes(minutes)
        mtta.append(
            TeamMtta(
                **team_of(team_id),
                groups=total,
                acknowledged=len(minutes),
                mean_minutes=mean,
                median_minutes=median,
            )
        )
    mtta.sort(key=lambda m: (m.mean_minutes is None, -(m.mean_minutes or 0), m.team))
    return AlertReport(
        start=start,
        end=end,
        groups=len(rows),
        noisy=[NoisyKind(**team_of(t), kind=k, groups=n, alerts=a) for t, k, n, a in noisy],
        without_runbook=without[:MAX_LISTED],
        flapping=flapping[:MAX_LISTED],
        mtta=mtta,
        pages=pages,
        partial=groups_partial or runbooks_partial or pages_partial,
    )


# -- CSV ------------------------------------------------------------------------------------------
CSV_COLUMNS = (
    "section",
    "team",
    "kind",
    "person",
    "email",
    "time_zone",
    "groups",
    "alerts",
    "groups_without_runbook",
    "reopened",
    "quick_resolves",
    "acknowledged",
    "mtta_mean_minutes",
    "mtta_median_minutes",
    "pages",
    "outside_hours",
)


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula is quoted (alert kinds come from senders)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _csv_rows(report: AlertReport) -> Iterable[dict[str, Any]]:
    for noisy in report.noisy:
        yield {"section": "noisy", **noisy.model_dump(exclude={"team_name"})}
    for item in report.without_runbook:
        yield {"section": "without_runbook", **item.model_dump(exclude={"team_name"})}
    for flap in report.flapping:
        yield {"section": "flapping", **flap.model_dump(exclude={"team_name"})}
    for team in report.mtta:
        yield {
            "section": "mtta",
            "team": team.team,
            "groups": team.groups,
            "acknowledged": team.acknowledged,
            "mtta_mean_minutes": team.mean_minutes,
            "mtta_median_minutes": team.median_minutes,
        }
    for person in report.pages:
        yield {
            "section": "pages",
            "person": person.name,
            "email": person.email,
            "time_zone": person.time_zone,
            "pages": person.pages,
            "outside_hours": person.outside_hours,
        }


def report_csv(report: AlertReport) -> str:
    """Every section as rows of one table, the ``section`` column saying which."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in _csv_rows(report):
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()


# -- the delivery log of one group ----------------------------------------------------------------
def deliveries_of(
    session: Session, group_id: int, *, limit: int = DELIVERIES_SHOWN
) -> list[Delivery]:
    """Every attempt to tell someone about the group, oldest first (the first ``limit``)."""
    return list(
        session.scalars(
            sa.select(Delivery)
            .where(Delivery.group_id == group_id)
            .order_by(Delivery.id)
            .limit(limit)
        )
    )
