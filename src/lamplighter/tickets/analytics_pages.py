"""The toil analytics page: what the SRE team is asked for, what it costs, what to automate next.

A thin adapter over ``analytics.toil_report``: the GET form's since, until and team are read,
the report is drawn as inline SVG charts (``charts``) with the numbers in tables beside them, and
a link downloads the same period as CSV from the API. A wrong filter is shown next to its field
(422), as on the catalog list. Include this router before ``tickets.pages.router``:
``/tickets/analytics`` would otherwise be taken for ``/tickets/{ticket_id}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.deps import SessionDep
from lamplighter.core.errors import NotFound, ValidationFailed
from lamplighter.core.pagination import MAX_LIMIT
from lamplighter.core.webui import (
    FormState,
    PageRoute,
    QueryText,
    ViewerDep,
    form_failed,
    render,
)
from lamplighter.tickets import analytics, charts
from lamplighter.tickets.pages import format_minutes

router = APIRouter(include_in_schema=False, route_class=PageRoute)

FIELD_LABELS = {"since": "Since", "until": "Until", "team": "Assigned team"}
TREND_TYPES = 4  # lines for the busiest types; the rest are summed as "Other types"
TOP_TEAMS = 10
TOP_PEOPLE = 15
CSV_PATH = "/api/v1/tickets/analytics.csv"
FIRST_DAY, LAST_DAY = analytics.FIRST_DAY, analytics.LAST_DAY


# -- small presenters ----------------------------------------------------------------------------
def hours(minutes: float) -> str:
    """Minutes as hours with one decimal and thousands separators: 4530 → "75.5 h"."""
    return f"{minutes / 60:,.1f} h"


def percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def week_labels(mondays: Sequence[dt.date]) -> list[str]:
    """Short week labels ("2 Mar"); the first label and each new year carry the year."""
    labels = []
    for index, monday in enumerate(mondays):
        new_year = index == 0 or monday.year != mondays[index - 1].year
        labels.append(f"{monday.day} {monday:%b}" + (f" {monday.year}" if new_year else ""))
    return labels


def trend_series(report: analytics.ToilReport) -> list[charts.Series]:
    """The total, the busiest types, and the rest of the types summed."""
    ranked = sorted(report.types, key=lambda s: (-s.count, s.name))
    series = [charts.Series(s.name, s.weekly) for s in ranked[:TREND_TYPES]]
    rest = ranked[TREND_TYPES:]
    if rest:
        weeks = len(report.weeks)
        summed = [sum(s.weekly[i] for s in rest) for i in range(weeks)]
        series.append(charts.Series(f"Other types ({len(rest)})", summed))
    return [charts.Series("All tickets", report.totals.weekly, total=True), *series]


def _period(report: analytics.ToilReport) -> str:
    team = f", team {report.team}" if report.team else ""
    return f"{report.since.isoformat()} to {report.until.isoformat()}{team}"


def _charts(report: analytics.ToilReport) -> dict[str, Any]:
    period = _period(report)
    by_effort = sorted(report.types, key=lambda s: (-s.effort_minutes_total, -s.count, s.name))
    series = trend_series(report)
    people = report.assignees[:TOP_PEOPLE]
    return {
        "series": series,
        "trend_svg": charts.line_chart(
            week_labels(report.week_starts),
            series,
            title=f"Tickets opened per week, {period}",
            description="Weeks start on Monday (UTC); the heavy line is all tickets.",
            y_name="tickets",
        ),
        "types_by_effort": by_effort,
        "effort_svg": charts.bar_chart(
            [
                charts.Bar(
                    s.name,
                    s.effort_minutes_total,
                    f"{hours(s.effort_minutes_total)} · {percent(s.hands_off_share)} hands-off",
                    share=s.hands_off_share,
                )
                for s in by_effort
            ],
            title=f"Effort per request type, {period}",
            description="Bars: hours of work; the thin green bar under each: the share of its"
            " tickets that were self-service or automated.",
            value_name="hours of work",
            share_name="hands-off share of tickets (self-service + automated)",
        ),
        "demand_svg": charts.bar_chart(
            [
                charts.Bar(
                    d.name or "No requesting team",
                    d.count,
                    f"{charts.format_count(d.count)} {'ticket' if d.count == 1 else 'tickets'}"
                    f" · {hours(d.effort_minutes)}",
                )
                for d in report.requesting_teams[:TOP_TEAMS]
            ],
            title=f"Tickets per requesting team, top {TOP_TEAMS}, {period}",
            value_name="tickets opened, and the hours of work on them",
        ),
        "people": people,
        "load_svg": charts.bar_chart(
            [
                charts.Bar(
                    a.name or a.user or "Deleted user",
                    a.effort_minutes_logged,
                    f"{hours(a.effort_minutes_logged)} · "
                    f"{percent(a.out_of_hours_share)} out of hours"
                    if a.effort_minutes_logged
                    else "no work logged",
                    part=a.effort_minutes_out_of_hours,
                )
                for a in people
            ],
            title=f"Work logged per person, {period}",
            description="Bars: hours logged; the orange part was logged outside the person's"
            " working hours (Monday to Friday 09:00-18:00 in their time zone).",
            rest_name="in working hours",
            part_name="out of hours",
        ),
    }


# -- the page ------------------------------------------------------------------------------------
def _date(values: dict[str, str], name: str, errors: dict[str, str]) -> dt.date | None:
    if not values[name]:
        return None
    try:
        day = dt.date.fromisoformat(values[name])
    except ValueError:
        errors[name] = "enter a date as YYYY-MM-DD, e.g. 2026-03-02"
        return None
    if not FIRST_DAY <= day <= LAST_DAY:  # a typo; and the year 9999 overflows the report's maths
        errors[name] = f"enter a date from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
        return None
    return day


def _team_choices(session: Session, keep: str, errors: dict[str, str]) -> list[tuple[str, str]]:
    """Every team by name; a wrong ``keep`` stays a choice, so that it can be shown wrong."""
    teams = identity.list_teams(session=session, after_id=None, limit=MAX_LIMIT)
    choices = sorted(((t.slug, t.name) for t in teams), key=lambda c: c[1].lower())
    if not keep or keep in dict(choices):
        return choices
    try:  # beyond the first MAX_LIMIT teams, or not a team at all
        found = identity.get_team(session=session, slug=keep)
    except NotFound as exc:
        errors["team"] = exc.detail  # now, so that it is shown with any mistake in the dates
        return [(keep, keep), *choices]
    return [(found.slug, found.name), *choices]


def csv_url(report: analytics.ToilReport) -> str:
    """The API's CSV of the page's period and team."""
    params = {"since": report.since.isoformat(), "until": report.until.isoformat()}
    if report.team:
        params["team"] = report.team
    return f"{CSV_PATH}?{urlencode(params)}"


@router.get("/tickets/analytics")
def analytics_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    since: QueryText = "",
    until: QueryText = "",
    team: QueryText = "",
) -> Response:
    values = {"since": since.strip(), "until": until.strip(), "team": team.strip().lower()}
    filtered = any(values.values())
    form = FormState(dict(values))
    since_date = _date(values, "since", form.errors)
    until_date = _date(values, "until", form.errors)
    teams = _team_choices(session, values["team"], form.errors)
    report = None
    if not form.errors:
        try:
            report = analytics.toil_report(
                session=session, since=since_date, until=until_date, team=values["team"] or None
            )
        except ValidationFailed as exc:
            form = form_failed(values, exc)
    if report is not None:  # show the period the report covers, defaults included
        form.values.update(since=report.since.isoformat(), until=report.until.isoformat())
    context: dict[str, Any] = {
        "form": form,
        "field_labels": FIELD_LABELS,
        "teams": teams,
        "filtered": filtered,
        "report": report,
        "csv_url": csv_url(report) if report else None,
        "ranked_candidates": list(enumerate(report.automation_candidates, 1)) if report else [],
        "count": charts.format_count,
        "hours": hours,
        "percent": percent,
        "duration": format_minutes,
        "top_teams": TOP_TEAMS,
        "top_people": TOP_PEOPLE,
        **(_charts(report) if report else {}),
    }
    status = 422 if form.errors or form.error else 200
    return render(request, "tickets/analytics.html", context, viewer=viewer, status=status)
