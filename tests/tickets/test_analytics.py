"""Toil analytics over a small hand-made journal whose right answers are known."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core.errors import ValidationFailed
from lamplighter.tickets import analytics
from lamplighter.tickets.models import RequestType, Ticket, WorkLog
from tests.conftest import auth, make_team, make_token, make_user

UTC = dt.UTC
SINCE, UNTIL = dt.date(2026, 3, 2), dt.date(2026, 3, 15)  # ISO weeks 10 and 11 of 2026
H = 3600


def at(day: int, hour: float = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, tzinfo=UTC) + dt.timedelta(hours=hour)


@pytest.fixture
def journal(db: Any) -> dict[str, Any]:
    """14 tickets in range (and one before it) over four types, two requesting teams."""
    nyc = make_user(db, email="nyc@example.com", role="sre", time_zone="America/New_York")
    oslo = make_user(db, email="oslo@example.com", role="sre", time_zone="Europe/Oslo")
    payments = make_team(db, slug="payments")
    search = make_team(db, slug="search")
    platform = make_team(db, slug="platform", lead=nyc)
    with db.transaction() as session:
        types = dict(session.execute(sa.select(RequestType.slug, RequestType.id)).tuples().all())
        rows = []

        def add(slug: str, created: dt.datetime, team: Any, **values: Any) -> None:
            status = values.pop("status", "done")
            ttd = values.pop("ttd", None)
            rows.append(
                Ticket(
                    type_id=types[slug],
                    title=slug,
                    created_at=created,
                    updated_at=created,
                    requesting_team_id=team.id if team else None,
                    status=status,
                    resolution=values.pop("resolution", "manual" if status == "done" else None),
                    time_to_done_s=ttd,
                    done_at=created + dt.timedelta(seconds=ttd) if ttd is not None else None,
                    **values,
                )
            )

        # database: 4 done by hand, efforts 30/60/90/120, 1 h, 2 h, 3 h and 10 h to done.
        for day, effort, hours in ((2, 30, 1), (3, 60, 2), (8, 90, 3), (9, 120, 10)):
            add(
                "database",
                at(day),
                payments,
                effort_minutes=effort,
                ttd=hours * H,
                assignee_user_id=nyc.id,
                assignee_team_id=platform.id,
            )
        # access-grant: 3 automated, 1 self-service, 1 by hand: 80 % hands-off.
        outcomes = ["automated", "automated", "automated", "self-service", "manual"]
        for day, resolution in zip((3, 4, 10, 11, 12), outcomes, strict=True):
            add("access-grant", at(day), search, effort_minutes=20, ttd=600, resolution=resolution)
        # ci-cd-pipeline: 2 done (120 min each, 1 day to done), 1 still in progress.
        add(
            "ci-cd-pipeline",
            at(5),
            payments,
            effort_minutes=120,
            ttd=86400,
            assignee_user_id=oslo.id,
        )
        add(
            "ci-cd-pipeline",
            at(10),
            payments,
            effort_minutes=120,
            ttd=86400,
            assignee_user_id=oslo.id,
        )
        add(
            "ci-cd-pipeline",
            at(13),
            None,
            effort_minutes=30,
            status="in_progress",
            assignee_user_id=oslo.id,
        )
        add("other", at(14), search, status="rejected")
        add("database", dt.datetime(2026, 2, 20, tzinfo=UTC), payments, effort_minutes=999, ttd=5)
        session.add_all(rows)
        session.flush()
        ticket_id = rows[0].id
        # New York changes to summer time on Sunday 8 March 2026 (07:00 UTC).
        for logged_at, minutes in (
            (dt.datetime(2026, 3, 6, 13, 30, tzinfo=UTC), 10),  # Fri 08:30 EST: before hours
            (dt.datetime(2026, 3, 9, 13, 30, tzinfo=UTC), 20),  # Mon 09:30 EDT: inside
            (dt.datetime(2026, 3, 6, 22, 30, tzinfo=UTC), 40),  # Fri 17:30 EST: inside
            (dt.datetime(2026, 3, 9, 22, 30, tzinfo=UTC), 80),  # Mon 18:30 EDT: after hours
            (dt.datetime(2026, 3, 7, 15, 0, tzinfo=UTC), 160),  # Sat 10:00 EST: weekend
            (dt.datetime(2026, 3, 16, 15, 0, tzinfo=UTC), 999),  # after the range
        ):
            session.add(
                WorkLog(ticket_id=ticket_id, user_id=nyc.id, minutes=minutes, logged_at=logged_at)
            )
        # Oslo is UTC+1 in March: 07:30 UTC is 08:30 local (outside), 08:30 UTC is 09:30.
        session.add(WorkLog(ticket_id=ticket_id, user_id=oslo.id, minutes=15, logged_at=at(4, 7.5)))
        session.add(WorkLog(ticket_id=ticket_id, user_id=oslo.id, minutes=25, logged_at=at(4, 8.5)))
    return {"nyc": nyc, "oslo": oslo}


def report(db: Any, **options: Any) -> analytics.ToilReport:
    with db.sessionmaker() as session:
        return analytics.toil_report(session=session, since=SINCE, until=UNTIL, **options)


def by_type(result: analytics.ToilReport) -> dict[str, analytics.TypeStats]:
    return {s.type: s for s in result.types}


def test_per_type_counts_effort_and_shares(db: Any, journal: dict[str, Any]) -> None:
    result = report(db)

    assert result.weeks == ["2026-W10", "2026-W11"]
    assert result.week_starts == [dt.date(2026, 3, 2), dt.date(2026, 3, 9)]
    stats = by_type(result)
    assert [s.type for s in result.types] == ["access-grant", "database", "ci-cd-pipeline", "other"]
    database = stats["database"]
    assert (database.count, database.done, database.effort_minutes_total) == (4, 4, 300)
    assert database.effort_minutes_median == 75
    assert database.weekly == [3, 1]
    access = stats["access-grant"]
    assert (access.automated_share, access.self_service_share, access.hands_off_share) == (
        0.6,
        0.2,
        0.8,
    )
    assert access.weekly == [2, 3]
    pipeline = stats["ci-cd-pipeline"]
    assert (pipeline.count, pipeline.done, pipeline.open) == (3, 2, 1)
    assert pipeline.effort_minutes_total == 270 and pipeline.effort_minutes_median == 120
    assert stats["other"].rejected == 1 and stats["other"].effort_minutes_median is None
    assert result.totals.count == 13 and result.totals.weekly == [6, 7]
    assert result.totals.hands_off_share == round(4 / 13, 4)


def test_time_to_done_median_and_p90_are_exact(db: Any, journal: dict[str, Any]) -> None:
    """The same numbers on SQLite and PostgreSQL: percentile_cont's linear interpolation."""
    stats = by_type(report(db))

    # 1 h, 2 h, 3 h, 10 h: median between 2 h and 3 h; p90 at rank 2.7, 70 % of the way 3 h → 10 h.
    assert stats["database"].time_to_done_median_s == 2.5 * H
    assert stats["database"].time_to_done_p90_s == 28440  # 3 h + 0.7 x 7 h
    assert stats["access-grant"].time_to_done_median_s == 600
    assert stats["ci-cd-pipeline"].time_to_done_p90_s == 86400
    assert stats["other"].time_to_done_median_s is None


def test_automation_candidates_are_mostly_manual_types_by_count_times_median_effort(
    db: Any, journal: dict[str, Any]
) -> None:
    candidates = report(db).automation_candidates

    # ci-cd: 3 x 120 = 360; database: 4 x 75 = 300; access-grant is 80 % hands-off already;
    # "other" has no done ticket, so no median effort.
    assert [(c.type, c.score_minutes) for c in candidates] == [
        ("ci-cd-pipeline", 360),
        ("database", 300),
    ]
    assert candidates[0].manual_share == 1.0


def test_demand_per_requesting_team(db: Any, journal: dict[str, Any]) -> None:
    demand = [(d.team, d.count, d.effort_minutes) for d in report(db).requesting_teams]

    assert demand == [("payments", 6, 540), ("search", 6, 100), (None, 1, 30)]


def test_load_and_work_outside_hours_in_each_persons_time_zone(
    db: Any, journal: dict[str, Any]
) -> None:
    load = {a.user: a for a in report(db).assignees}

    nyc = load["nyc@example.com"]
    assert (nyc.assigned, nyc.done) == (4, 4)
    assert nyc.effort_minutes_logged == 10 + 20 + 40 + 80 + 160
    # Same UTC clock time, different verdicts on either side of the DST change; Saturday is out.
    assert nyc.effort_minutes_out_of_hours == 10 + 80 + 160
    assert nyc.time_zone == "America/New_York"
    oslo = load["oslo@example.com"]
    assert (oslo.assigned, oslo.done, oslo.effort_minutes_logged) == (3, 2, 40)
    assert oslo.effort_minutes_out_of_hours == 15 and oslo.out_of_hours_share == 0.375


def test_team_filter_keeps_the_assigned_teams_tickets(db: Any, journal: dict[str, Any]) -> None:
    result = report(db, team="platform")

    assert [s.type for s in result.types] == ["database"]
    assert result.totals.count == 4
    with pytest.raises(ValidationFailed, match="no team"):
        report(db, team="nobody")


def test_default_range_is_the_last_90_days(db: Any, journal: dict[str, Any]) -> None:
    with db.sessionmaker() as session:
        result = analytics.toil_report(session=session, today=dt.date(2026, 5, 30))
    assert (result.since, result.until) == (dt.date(2026, 3, 2), dt.date(2026, 5, 30))
    assert result.totals.count == 13
    assert len(result.weeks) == len(result.totals.weekly) == 13  # Mondays 2 March to 25 May
    with pytest.raises(ValidationFailed, match="after until"):
        analytics.day_range(dt.date(2026, 3, 2), dt.date(2026, 3, 1))


def test_percentile_from_counts_matches_percentile_cont() -> None:
    assert analytics.percentile_from_counts([(10, 1), (20, 1), (30, 1), (40, 1)], 0.5) == 25
    assert analytics.percentile_from_counts([(5, 3), (100, 1)], 0.5) == 5
    assert analytics.percentile_from_counts([(1, 1), (2, 1)], 0.9) == pytest.approx(1.9)
    assert analytics.percentile_from_counts([], 0.5) is None


def test_offset_segments_find_daylight_saving_changes() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    segments = analytics.offset_segments(
        "America/New_York", start, dt.datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert segments == [
        (start, -5 * H),
        (dt.datetime(2026, 3, 8, 7, tzinfo=UTC), -4 * H),
        (dt.datetime(2026, 11, 1, 6, tzinfo=UTC), -5 * H),
    ]
    assert analytics.offset_segments("UTC", start, start + dt.timedelta(days=400)) == [(start, 0)]


# -- API ---------------------------------------------------------------------------------------
@pytest.fixture
def api(app: Any) -> Iterator[TestClient]:
    """The app with the analytics/import router, ahead of /tickets/{ticket_id} (as in app.py)."""
    from lamplighter.tickets import analytics_api

    if not any(getattr(r, "path", "") == "/api/v1/tickets/analytics" for r in app.router.routes):
        before = list(app.router.routes)
        app.include_router(analytics_api.router, prefix="/api/v1")
        added = [r for r in app.router.routes if r not in before]
        app.router.routes[:] = added + before
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def test_analytics_json_and_csv_over_http(
    api: TestClient, db: Any, journal: dict[str, Any]
) -> None:
    params = {"since": "2026-03-02", "until": "2026-03-15"}
    assert api.get("/api/v1/tickets/analytics", params=params).status_code == 401
    headers = auth(make_token(db, make_user(db, role="viewer")))

    body = api.get("/api/v1/tickets/analytics", params=params, headers=headers).json()
    assert body["weeks"] == ["2026-W10", "2026-W11"]
    assert body["types"][1]["type"] == "database" and body["types"][1]["weekly"] == [3, 1]
    assert body["automation_candidates"][0]["type"] == "ci-cd-pipeline"
    response = api.get("/api/v1/tickets/analytics.csv", params=params, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    database = next(r for r in rows if r["type"] == "database")
    assert (database["count"], database["effort_minutes_median"]) == ("4", "75.0")
    assert database["time_to_done_median_s"] == "9000.0"
    bad = api.get(
        "/api/v1/tickets/analytics",
        params={"since": "2026-03-09", "until": "2026-03-01"},
        headers=headers,
    )
    assert bad.status_code == 422
    for path in ("/api/v1/tickets/analytics", "/api/v1/tickets/analytics.csv"):
        far = api.get(path, params={"until": "9999-12-31"}, headers=headers)
        assert far.status_code == 422, far.text
        assert far.json()["errors"][0]["field"] == "query.until"
