"""Toil analytics: what the SRE team is asked for, what it costs, and what to automate next.

Everything is computed in the database with GROUP BY and returned in shapes a chart can use
directly (``weeks`` plus one aligned list of counts per request type). The queries are written so
that each one can be answered from one covering index without sorting the tickets (SQLite has no
hash aggregation; a GROUP BY whose keys follow an index streams): see the indexes proposed in
docs/benchmarks.md. The weekly trend is one index range count per (type, week). Percentiles are exact on both
engines and agree: PostgreSQL uses ``percentile_cont``; SQLite reads the one or two values around
each rank in index order (``ORDER BY time_to_done_s LIMIT 2 OFFSET k``) and interpolates the same
way ``percentile_cont`` does.

Definitions (the issue is silent on these):

- the range is whole UTC days, ``since`` and ``until`` both included; tickets count by
  ``created_at``; work logs by ``logged_at``; weeks are ISO weeks (Monday 00:00 UTC);
- ``team`` filters by the *assigned* team (the SRE team doing the work); the load section then
  lists the people with tickets of that team, with all the effort they logged (a person's load
  and hours are theirs, whichever team's ticket they were on);
- shares are of all tickets of the type created in the range; the median effort is over done
  tickets (open ones are not finished, rejected ones cost what they cost so far);
- a work log counts as out of hours when its ``logged_at``, in its author's own time zone, falls
  outside Monday to Friday 09:00-18:00; the whole entry counts (an entry is at most a day).
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import people
from lamplighter.core.db import UTCDateTime
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import User
from lamplighter.tickets.models import RequestType, Resolution, Status, Ticket, WorkLog

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366
# One character per hour of the week from Monday 00:00: "1" for Monday-Friday 09:00-18:00.
WORKING_HOURS = ("0" * 9 + "1" * 9 + "0" * 6) * 5 + "0" * 48


@dataclass(frozen=True)
class TypeStats:
    type: str
    name: str
    count: int
    done: int
    rejected: int
    open: int
    self_service: int
    automated: int
    effort_minutes_total: int
    effort_minutes_median: float | None
    time_to_done_median_s: float | None
    time_to_done_p90_s: float | None
    self_service_share: float
    automated_share: float
    hands_off_share: float  # self-service + automated: requests that no longer need a person
    weekly: list[int]  # aligned with ToilReport.weeks


@dataclass(frozen=True)
class AutomationCandidate:
    type: str
    name: str
    count: int
    manual_share: float
    effort_minutes_median: float
    score_minutes: float  # count x median effort


@dataclass(frozen=True)
class TeamDemand:
    team: str | None  # slug; None for tickets without a requesting team
    name: str | None
    count: int
    effort_minutes: int


@dataclass(frozen=True)
class AssigneeLoad:
    user: str | None  # email; None for work logged by deleted users
    name: str | None
    time_zone: str
    assigned: int
    done: int
    effort_minutes_logged: int
    effort_minutes_out_of_hours: int
    out_of_hours_share: float


@dataclass(frozen=True)
class Totals:
    count: int
    done: int
    effort_minutes: int
    self_service_share: float
    automated_share: float
    hands_off_share: float
    weekly: list[int]


@dataclass(frozen=True)
class ToilReport:
    since: dt.date
    until: dt.date
    team: str | None
    weeks: list[str]  # ISO weeks, "2026-W10"
    week_starts: list[dt.date]  # their Mondays
    totals: Totals
    types: list[TypeStats]
    automation_candidates: list[AutomationCandidate]
    requesting_teams: list[TeamDemand]
    assignees: list[AssigneeLoad]


# -- maths -----------------------------------------------------------------------------------
def percentile_from_counts(counts: Sequence[tuple[float, int]], fraction: float) -> float | None:
    """``percentile_cont`` over a histogram of exact values: [(value, how many)], any order."""
    pairs = sorted((v, n) for v, n in counts if n > 0)
    total = sum(n for _, n in pairs)
    if total == 0:
        return None
    rank = fraction * (total - 1)
    low = int(rank)
    return interpolate(_value_at(pairs, low), _value_at(pairs, min(low + 1, total - 1)), rank - low)


def _value_at(pairs: Sequence[tuple[float, int]], index: int) -> float:
    seen = 0
    for value, n in pairs:
        seen += n
        if index < seen:
            return value
    return pairs[-1][0]


def interpolate(low_value: float, high_value: float, weight: float) -> float:
    return low_value + (high_value - low_value) * weight


def share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def iso_week(monday: dt.date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def offset_segments(
    time_zone: str, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, int]]:
    """[(from, UTC offset in seconds)] for a zone over [start, end): one entry per DST period.

    The offset is sampled daily and each change is narrowed down to the second, so every
    transition of the zone's rules (zoneinfo) inside the range is found.
    """
    zone = zoneinfo.ZoneInfo(time_zone)

    def offset(at: dt.datetime) -> int:
        delta = at.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    segments = [(start, offset(start))]
    cursor = start
    while cursor < end:
        step = min(cursor + dt.timedelta(days=1), end)
        if offset(step) != segments[-1][1]:
            low, high = cursor, step  # offset(low) is the old one, offset(high) the new one
            while (high - low) > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset(middle) == segments[-1][1]:
                    low = middle
                else:
                    high = middle
            segments.append((high.replace(microsecond=0), offset(high)))
        cursor = step
    return segments


FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)


def day_range(
    since: dt.date | None, until: dt.date | None, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """Default to the last 90 days; both ends included."""
    for field, value in (("query.since", since), ("query.until", until)):
        if value is not None and not FIRST_DAY <= value <= LAST_DAY:
            raise ValidationFailed.one(
                field, f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"
            )
    today = today or dt.datetime.now(dt.UTC).date()
    until = until or today
    since = since or until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise ValidationFailed.one("query.since", "must not be after until")
    if (until - since).days >= MAX_DAYS:
        raise ValidationFailed.one("query.since", f"the range is at most {MAX_DAYS} days")
    return since, until


# -- queries ---------------------------------------------------------------------------------
def _bounds(since: dt.date, until: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    return start, dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def _unindexed(session: Session, column: Any) -> Any:
    """On SQLite, ``+column`` keeps the planner from choosing an index for that term."""
    if session.get_bind().dialect.name != "sqlite" or getattr(column, "table", None) is None:
        return column
    return sa.literal_column(f"+{column.table.name}.{column.name}", type_=column.type)


def toil_report(
    *,
    session: Session,
    since: dt.date | None = None,
    until: dt.date | None = None,
    team: str | None = None,
    today: dt.date | None = None,
) -> ToilReport:
    """Per request type, automation candidates, demand per requesting team, load per person."""
    since, until = day_range(since, until, today)
    start, end = _bounds(since, until)
    team_id = None
    if team:
        found = people.find_team_by_slug(session=session, slug=team)
        if found is None:
            raise ValidationFailed.one("query.team", f"no team with slug {team!r}")
        team_id = found.id
    where = [Ticket.created_at >= start, Ticket.created_at < end]
    if team_id is not None:
        # Read the team from the covering indexes rather than through the team's own index.
        where.append(_unindexed(session, Ticket.assignee_team_id) == team_id)

    types = {t.id: t for t in session.scalars(sa.select(RequestType))}
    outcomes = session.execute(
        sa.select(
            Ticket.type_id,
            Ticket.status,
            Ticket.resolution,
            Ticket.effort_minutes,
            sa.func.count(),
            sa.func.count(Ticket.time_to_done_s),
        )
        .where(*where)
        .group_by(Ticket.type_id, Ticket.status, Ticket.resolution, Ticket.effort_minutes)
    ).all()
    mondays = _mondays(since, until)
    weekly = _weekly(session, mondays, start, end, team_id)
    timed: dict[int, int] = defaultdict(int)
    for type_id, status, _, _, _, with_time in outcomes:
        if status == Status.DONE.value:
            timed[type_id] += with_time
    percentiles = _time_to_done(session, where, timed)

    stats = _type_stats(outcomes, types, weekly, percentiles, len(mondays))
    return ToilReport(
        since=since,
        until=until,
        team=team.strip().lower() if team else None,
        weeks=[iso_week(m) for m in mondays],
        week_starts=mondays,
        totals=_totals(stats, len(mondays)),
        types=stats,
        automation_candidates=automation_candidates(stats),
        requesting_teams=_demand(session, where),
        assignees=_load(session, where, start, end, team_id),
    )


def _mondays(since: dt.date, until: dt.date) -> list[dt.date]:
    monday = since - dt.timedelta(days=since.weekday())
    weeks = []
    while monday <= until:
        weeks.append(monday)
        monday += dt.timedelta(days=7)
    return weeks


def _weekly(
    session: Session,
    mondays: Sequence[dt.date],
    start: dt.datetime,
    end: dt.datetime,
    team_id: int | None,
) -> dict[int, list[int]]:
    """Tickets per type and week: one index range count per (type, week), no sort of tickets."""
    weeks = (
        sa.values(
            sa.column("i", sa.Integer),
            sa.column("lo", UTCDateTime()),
            sa.column("hi", UTCDateTime()),
            name="weeks",
        )
        .data(
            [
                (
                    i,
                    max(start, dt.datetime.combine(monday, dt.time(), tzinfo=dt.UTC)),
                    min(
                        end, dt.datetime.combine(monday + dt.timedelta(7), dt.time(), tzinfo=dt.UTC)
                    ),
                )
                for i, monday in enumerate(mondays)
            ]
        )
        .cte("weeks")
    )
    inner = Ticket.__table__.alias("t")
    count = (
        sa.select(sa.func.count())
        .select_from(inner)
        .where(
            inner.c.type_id == RequestType.id,
            inner.c.created_at >= weeks.c.lo,
            inner.c.created_at < weeks.c.hi,
        )
    )
    if team_id is not None:
        count = count.where(_unindexed(session, inner.c.assignee_team_id) == team_id)
    rows = session.execute(
        sa.select(RequestType.id, weeks.c.i, count.scalar_subquery()).select_from(
            sa.join(RequestType, weeks, sa.true())
        )
    ).all()
    result: dict[int, list[int]] = defaultdict(lambda: [0] * len(mondays))
    for type_id, index, n in rows:
        if n:
            result[type_id][index] = int(n)
    return result


def _time_to_done(
    session: Session, where: Sequence[Any], timed: dict[int, int]
) -> dict[int, tuple[float | None, float | None]]:
    """Median and 90th percentile of time to done per type, exact on both engines."""
    done = [Ticket.status == Status.DONE.value, Ticket.time_to_done_s.is_not(None)]
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            sa.select(
                Ticket.type_id,
                sa.func.percentile_cont(0.5).within_group(Ticket.time_to_done_s),
                sa.func.percentile_cont(0.9).within_group(Ticket.time_to_done_s),
            )
            .where(*where, *done)
            .group_by(Ticket.type_id)
        ).all()
        return {t: (float(p50), float(p90)) for t, p50, p90 in rows}
    # SQLite: walk the (type, status, time to done) index to the ranks; the range and team
    # filters are checked per entry rather than used to pick another index.
    filters = [_sqlite_filter(session, clause) for clause in where]
    result: dict[int, tuple[float | None, float | None]] = {}
    for type_id, n in timed.items():
        if n == 0:
            continue
        values: list[float | None] = []
        for fraction in (0.5, 0.9):
            rank = fraction * (n - 1)
            low = int(rank)
            pair = [
                value
                for value in session.scalars(
                    sa.select(Ticket.time_to_done_s)
                    .where(Ticket.type_id == type_id, *done, *filters)
                    .order_by(Ticket.time_to_done_s)
                    .limit(2)
                    .offset(low)
                )
                if value is not None
            ]
            if not pair:
                values.append(None)
                continue
            high = pair[1] if len(pair) > 1 else pair[0]
            values.append(interpolate(float(pair[0]), float(high), rank - low))
        result[type_id] = (values[0], values[1])
    return result


def _sqlite_filter(session: Session, clause: Any) -> Any:
    """Rebuild ``column <op> value`` with the column hidden from the planner."""
    return clause.operator(_unindexed(session, clause.left), clause.right)


def _type_stats(
    outcomes: Iterable[Sequence[Any]],
    types: dict[int, RequestType],
    weekly: dict[int, list[int]],
    percentiles: dict[int, tuple[float | None, float | None]],
    week_count: int,
) -> list[TypeStats]:
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    efforts: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for type_id, status, resolution, effort, n, _ in outcomes:
        bucket = counts[type_id]
        bucket["count"] += n
        bucket["effort"] += effort * n
        bucket[status] += n
        if resolution:
            bucket[resolution] += n
        if status == Status.DONE.value:
            efforts[type_id][effort] += n
    stats = []
    for type_id, bucket in counts.items():
        request_type = types.get(type_id)
        total = bucket["count"]
        self_service = bucket[Resolution.SELF_SERVICE.value]
        automated = bucket[Resolution.AUTOMATED.value]
        p50, p90 = percentiles.get(type_id, (None, None))
        stats.append(
            TypeStats(
                type=request_type.slug if request_type else str(type_id),
                name=request_type.name if request_type else str(type_id),
                count=total,
                done=bucket[Status.DONE.value],
                rejected=bucket[Status.REJECTED.value],
                open=total - bucket[Status.DONE.value] - bucket[Status.REJECTED.value],
                self_service=self_service,
                automated=automated,
                effort_minutes_total=bucket["effort"],
                effort_minutes_median=percentile_from_counts(
                    [(float(e), n) for e, n in efforts[type_id].items()], 0.5
                ),
                time_to_done_median_s=_round(p50),
                time_to_done_p90_s=_round(p90),
                self_service_share=share(self_service, total),
                automated_share=share(automated, total),
                hands_off_share=share(self_service + automated, total),
                weekly=weekly.get(type_id, [0] * week_count),
            )
        )
    stats.sort(key=lambda s: (-s.count, s.type))
    return stats


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _totals(stats: Sequence[TypeStats], week_count: int) -> Totals:
    count = sum(s.count for s in stats)
    self_service = sum(s.self_service for s in stats)
    automated = sum(s.automated for s in stats)
    return Totals(
        count=count,
        done=sum(s.done for s in stats),
        effort_minutes=sum(s.effort_minutes_total for s in stats),
        self_service_share=share(self_service, count),
        automated_share=share(automated, count),
        hands_off_share=share(self_service + automated, count),
        weekly=[sum(s.weekly[i] for s in stats) for i in range(week_count)],
    )


def automation_candidates(stats: Sequence[TypeStats]) -> list[AutomationCandidate]:
    """Types still mostly manual (manual share >= 50 %), by count x median effort, highest first."""
    found = []
    for s in stats:
        manual_share = round(1 - s.hands_off_share, 4)
        if manual_share < 0.5 or not s.effort_minutes_median:
            continue
        found.append(
            AutomationCandidate(
                type=s.type,
                name=s.name,
                count=s.count,
                manual_share=manual_share,
                effort_minutes_median=s.effort_minutes_median,
                score_minutes=round(s.count * s.effort_minutes_median, 1),
            )
        )
    found.sort(key=lambda c: (-c.score_minutes, -c.count, c.type))
    return found


def _demand(session: Session, where: Sequence[Any]) -> list[TeamDemand]:
    rows = session.execute(
        sa.select(
            Ticket.requesting_team_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(Ticket.effort_minutes), 0),
        )
        .where(*where)
        .group_by(Ticket.requesting_team_id)
    ).all()
    ids = [r[0] for r in rows if r[0] is not None]
    teams = people.teams_by_id(session=session, ids=ids)
    demand = [
        TeamDemand(
            team=teams[team_id].slug if team_id in teams else None,
            name=teams[team_id].name if team_id in teams else None,
            count=int(n),
            effort_minutes=int(effort),
        )
        for team_id, n, effort in rows
    ]
    demand.sort(key=lambda d: (-d.count, d.team or "~"))
    return demand


def _load(
    session: Session,
    where: Sequence[Any],
    start: dt.datetime,
    end: dt.datetime,
    team_id: int | None,
) -> list[AssigneeLoad]:
    """Tickets assigned and done per person, and the effort they logged (in and out of hours)."""
    assigned: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for user_id, status, n in session.execute(
        sa.select(Ticket.assignee_user_id, Ticket.status, sa.func.count())
        .where(*where, Ticket.assignee_user_id.is_not(None))
        .group_by(Ticket.assignee_user_id, Ticket.status)
    ):
        assigned[user_id][0] += n
        if status == Status.DONE.value:
            assigned[user_id][1] += n
    # A person's load is theirs whatever the team: with a team filter, the people are those
    # with tickets of that team, and their logged effort is all of it.
    logged = _logged(session, start, end, sorted(assigned) if team_id is not None else None)
    ids = sorted(set(assigned) | set(logged))
    users = people.users_by_id(session=session, ids=ids)
    load = []
    for user_id in ids:
        user = users.get(user_id)
        total, outside = logged.get(user_id, (0, 0))
        load.append(
            AssigneeLoad(
                user=user.email if user else None,
                name=user.display_name if user else None,
                time_zone=user.time_zone if user else "UTC",
                assigned=assigned.get(user_id, [0, 0])[0],
                done=assigned.get(user_id, [0, 0])[1],
                effort_minutes_logged=total,
                effort_minutes_out_of_hours=outside,
                out_of_hours_share=share(outside, total),
            )
        )
    load.sort(key=lambda a: (-a.effort_minutes_logged, -a.assigned, a.user or "~"))
    return load


def _logged(
    session: Session, start: dt.datetime, end: dt.datetime, user_ids: Sequence[int] | None
) -> dict[int, tuple[int, int]]:
    """Minutes logged per user, and how many of them outside the user's working hours.

    One query per time zone in use: the zone's UTC offsets over the range (its DST periods,
    from zoneinfo) become a CASE on ``logged_at``, so local time is computed in the database;
    the hour of the local week then picks a character of WORKING_HOURS.
    """
    if user_ids is not None and not user_ids:
        return {}
    logged = sa.select(WorkLog.id).where(
        WorkLog.user_id == User.id, WorkLog.logged_at >= start, WorkLog.logged_at < end
    )
    people = sa.select(User.time_zone).where(logged.exists())
    if user_ids is not None:
        people = people.where(User.id.in_(user_ids))
    zones = session.scalars(people.distinct()).all()
    result: dict[int, tuple[int, int]] = {}
    epoch_s = _epoch_seconds(session, WorkLog.logged_at)
    for zone in zones:
        segments = offset_segments(zone, start, end)
        offset: Any = sa.literal(segments[-1][1])
        if len(segments) > 1:
            offset = sa.case(
                *[
                    (WorkLog.logged_at < nxt[0], seg[1])
                    for seg, nxt in itertools.pairwise(segments)
                ],
                else_=segments[-1][1],
            )
        # Hour of the local week from Monday 00:00 (1970-01-01 was a Thursday: add 3 days).
        hour = sa.cast((epoch_s + offset + 3 * 86400) % (7 * 86400) // 3600, sa.Integer)
        inside = sa.func.substr(WORKING_HOURS, hour + 1, 1) == "1"
        query = (
            sa.select(
                WorkLog.user_id,
                sa.func.sum(WorkLog.minutes),
                sa.func.sum(sa.case((inside, 0), else_=WorkLog.minutes)),
            )
            .where(
                WorkLog.user_id.in_(sa.select(User.id).where(User.time_zone == zone)),
                WorkLog.logged_at >= start,
                WorkLog.logged_at < end,
            )
            .group_by(WorkLog.user_id)
        )
        if user_ids is not None:
            query = query.where(WorkLog.user_id.in_(user_ids))
        for user_id, total, outside in session.execute(query):
            result[user_id] = (int(total or 0), int(outside or 0))
    return result


def _epoch_seconds(session: Session, column: Any) -> Any:
    """Whole seconds since 1970 as an integer expression (exact: no floating point days)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.floor(sa.func.date_part("epoch", column)), sa.BigInteger)
    if sqlite3.sqlite_version_info >= (3, 38):
        return sa.func.unixepoch(column)  # three times faster than strftime('%s')
    return sa.cast(sa.func.strftime("%s", column), sa.BigInteger)


# -- export ----------------------------------------------------------------------------------
CSV_COLUMNS = (
    "type",
    "name",
    "count",
    "done",
    "rejected",
    "open",
    "self_service",
    "automated",
    "effort_minutes_total",
    "effort_minutes_median",
    "time_to_done_median_s",
    "time_to_done_p90_s",
    "self_service_share",
    "automated_share",
    "hands_off_share",
)


def types_csv(report: ToilReport) -> str:
    """The per-type table as CSV (text cells that a spreadsheet would run as formulas are quoted)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in report.types:
        writer.writerow([_cell(getattr(s, column)) for column in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
