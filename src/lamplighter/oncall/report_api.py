"""The alert report over HTTP: JSON, and CSV for a spreadsheet. Open to everyone signed in."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BeforeValidator

from lamplighter.core.deps import CurrentActor, SessionDep
from lamplighter.oncall import report

router = APIRouter(prefix="/oncall", tags=["oncall"])


def _not_a_number(value: object) -> object:
    """A date and time, not a Unix time: pydantic would take "1765000000" for one."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("give a date and time such as 2026-12-07T00:00:00Z")
    return value


StartQuery = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    Query(description="Included; with a time zone (…Z or …+01:00). Default: 7 days before end"),
]
EndQuery = Annotated[
    AwareDatetime | None,
    BeforeValidator(_not_a_number),
    Query(description="Excluded; at most 93 days after start. Default: now (or start + 7 days)"),
]


@router.get("/report", response_model=report.AlertReport)
def alert_report(
    session: SessionDep, actor: CurrentActor, start: StartQuery = None, end: EndQuery = None
) -> report.AlertReport:
    """The alert report for the SRE team over [start, end): the noisiest alert kinds, the kinds
    without a runbook, the flapping kinds, the time to acknowledge per team, and the pages per
    person with those outside working hours in the person's own time zone."""
    return report.build(session=session, start=start, end=end)


@router.get(
    "/report.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per line of a section"}},
)
def alert_report_csv(
    session: SessionDep, actor: CurrentActor, start: StartQuery = None, end: EndQuery = None
) -> Response:
    """The alert report as one CSV table; the ``section`` column names each row's section
    (noisy, without_runbook, flapping, mtta, pages)."""
    built = report.build(session=session, start=start, end=end)
    name = f"alert-report-{_day(built.start)}-{_day(built.end)}.csv"
    return Response(
        content=report.report_csv(built),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _day(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y%m%dT%H%MZ")
