"""The toil analytics page over a small journal whose right answers are known, and its charts."""

from __future__ import annotations

import datetime as dt
import html
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from lamplighter.core.models import User
from lamplighter.tickets import charts
from lamplighter.tickets.analytics_pages import week_labels
from lamplighter.tickets.models import RequestType, Ticket, WorkLog
from tests.conftest import make_team, make_user
from tests.helpers import PASSWORD, sign_in, text

UTC = dt.UTC
PERIOD = "since=2026-03-02&until=2026-03-15"  # ISO weeks 10 and 11 of 2026
SVG = "{http://www.w3.org/2000/svg}"


def at(day: int, hour: float = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, tzinfo=UTC) + dt.timedelta(hours=hour)


@pytest.fixture
def journal(db: Database) -> dict[str, User]:
    """13 tickets in the period over four types; only the database tickets are the platform's.

    database: 4 done by hand, 30/60/90/120 min (median 75; 4 x 75 = 300 min = 5.0 h);
    ci-cd-pipeline: 2 done at 120 min and 1 open (median 120; 3 x 120 = 360 min = 6.0 h);
    access-grant: 5 at 20 min, 4 of them hands-off (not a candidate); other: 1 rejected.
    """
    sam = make_user(db, email="sam@example.com", role="sre", password=PASSWORD)
    payments = make_team(db, slug="payments")
    search = make_team(db, slug="search")
    platform = make_team(db, slug="platform", lead=sam)
    with db.transaction() as session:
        types = dict(session.execute(sa.select(RequestType.slug, RequestType.id)).tuples().all())
        rows = []

        def add(slug: str, created: dt.datetime, team: Any, **values: Any) -> None:
            status = values.pop("status", "done")
            rows.append(
                Ticket(
                    type_id=types[slug],
                    title=slug,
                    created_at=created,
                    updated_at=created,
                    requesting_team_id=team.id if team else None,
                    status=status,
                    resolution=values.pop("resolution", "manual" if status == "done" else None),
                    time_to_done_s=3600 if status == "done" else None,
                    **values,
                )
            )

        for day, effort in ((2, 30), (3, 60), (8, 90), (9, 120)):
            add(
                "database",
                at(day),
                payments,
                effort_minutes=effort,
                assignee_user_id=sam.id,
                assignee_team_id=platform.id,
            )
        outcomes = ["automated", "automated", "automated", "self-service", "manual"]
        for day, resolution in zip((3, 4, 10, 11, 12), outcomes, strict=True):
            add("access-grant", at(day), search, effort_minutes=20, resolution=resolution)
        add("ci-cd-pipeline", at(5), payments, effort_minutes=120)
        add("ci-cd-pipeline", at(10), payments, effort_minutes=120)
        add("ci-cd-pipeline", at(13), None, effort_minutes=30, status="in_progress")
        add("other", at(14), search, status="rejected")
        session.add_all(rows)
        session.flush()
        # Sam (UTC) logs an hour on a Monday morning and an hour on a Saturday: half out of hours.
        for logged_at in (at(9, 10), at(7, 10)):
            session.add(
                WorkLog(ticket_id=rows[0].id, user_id=sam.id, minutes=60, logged_at=logged_at)
            )
    return {"sam": sam}


# -- helpers, as in tests/tickets/test_pages.py ----------------------------------------------------


def region(page: str, label: str) -> str:
    """The HTML of the table region with this accessible name."""
    match = re.search(rf'aria-label="{re.escape(label)}".*?</table>', page, re.S)
    assert match, f"no table {label!r} on the page"
    return match.group(0)


def rows_of(table: str) -> list[str]:
    return [text(row) for row in re.findall(r"<tr[ >].*?</tr>", table, re.S)[1:]]


def svgs(page: str) -> dict[str, ET.Element]:
    """Every chart on the page, parsed as XML, by its title."""
    found = {}
    for source in re.findall(r'<svg class="tk-chart.*?</svg>', page, re.S):
        tree = ET.fromstring(source)  # raises on markup that is not well-formed
        title = tree.find(f"{SVG}title")
        assert title is not None and title.text, "a chart without a title"
        found[title.text] = tree
    return found


def csv_link(page: str) -> str:
    match = re.search(r'href="(/api/v1/tickets/analytics\.csv\?[^"]+)"', page)
    assert match, "no CSV link on the page"
    return html.unescape(match.group(1))


# -- the page --------------------------------------------------------------------------------------
def test_page_shows_totals_types_and_what_to_automate_first(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    page = client.get(f"/tickets/analytics?{PERIOD}")

    assert page.status_code == 200
    shown = text(page.text)
    assert "Tickets opened 13 Done 11" in shown
    assert "CI/CD pipeline first: 3 tickets at a median 2h of work each, about 6.0 h" in shown
    candidates = rows_of(region(page.text, "Automation candidates"))
    assert [row.split(" ci-cd")[0].split(" database")[0] for row in candidates] == [
        "1 CI/CD pipeline",
        "2 Database",
    ]
    assert candidates[1] == "2 Database database 4 100 % 1h 15m 5.0 h"
    per_type = rows_of(region(page.text, "Per request type"))
    assert per_type[0] == "Database database 4 4 0 0 5.0 h 1h 15m 0 % 0 % 0 %"  # most effort first
    assert per_type[1] == "CI/CD pipeline ci-cd-pipeline 3 2 1 0 4.5 h 2h 0 % 0 % 0 %"
    assert "Access grant access-grant 5 5 0 0 1.7 h 20m 20 % 60 % 80 %" in per_type
    weeks = rows_of(region(page.text, "Tickets per week"))
    assert weeks[0].startswith("2026-W10 from 2026-03-02 6") and weeks[1].startswith("2026-W11")
    load = rows_of(region(page.text, "Load per person"))
    assert load == ["Sam sam@example.com · UTC 4 4 2.0 h 1.0 h (50 %)"]
    assert 'value="2026-03-02"' in page.text and 'value="2026-03-15"' in page.text


def test_charts_are_well_formed_svg_with_accessible_titles_and_numbers(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    page = client.get(f"/tickets/analytics?{PERIOD}").text

    found = svgs(page)
    period = "2026-03-02 to 2026-03-15"
    assert set(found) == {
        f"Tickets opened per week, {period}",
        f"Effort per request type, {period}",
        f"Tickets per requesting team, top 10, {period}",
        f"Work logged per person, {period}",
    }
    for title, svg in found.items():
        assert svg.get("role") == "img" and svg.get("aria-label") == title
    effort = found[f"Effort per request type, {period}"]
    labels = [t.text for t in effort.iter(f"{SVG}text")]
    assert labels[labels.index("Database") + 1] == "5.0 h · 0 % hands-off"
    assert "1.7 h · 80 % hands-off" in labels
    trend = found[f"Tickets opened per week, {period}"]
    points = [c.findtext(f"{SVG}title") for c in trend.iter(f"{SVG}circle")]
    assert "All tickets, 2 Mar 2026: 6" in points and "Database, 9 Mar: 1" in points
    demand = [t.text for t in found[f"Tickets per requesting team, top 10, {period}"].iter()]
    assert "Payments" in demand and "6 tickets · 9.0 h" in demand


def test_the_team_filter_changes_the_numbers_and_the_csv_link_keeps_it(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    everyone = client.get(f"/tickets/analytics?{PERIOD}")
    assert parse_qs(urlsplit(csv_link(everyone.text)).query) == {
        "since": ["2026-03-02"],
        "until": ["2026-03-15"],
    }

    platform = client.get(f"/tickets/analytics?{PERIOD}&team=Platform")
    assert platform.status_code == 200
    assert "Tickets opened 4 Done 4" in text(platform.text)
    assert [
        r.split(" database")[0] for r in rows_of(region(platform.text, "Automation candidates"))
    ] == ["1 Database"]
    assert "CI/CD pipeline" not in text(platform.text)
    assert '<option value="platform" selected>' in platform.text
    link = csv_link(platform.text)
    assert parse_qs(urlsplit(link).query) == {
        "since": ["2026-03-02"],
        "until": ["2026-03-15"],
        "team": ["platform"],
    }
    download = client.get(link)  # the signed-in session is enough for the API's CSV
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert [line.split(",")[0] for line in download.text.splitlines()] == ["type", "database"]


def test_the_default_period_is_the_last_90_days(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    page = client.get("/tickets/analytics")

    today = dt.datetime.now(UTC).date()
    assert page.status_code == 200
    assert f'value="{(today - dt.timedelta(days=89)).isoformat()}"' in page.text
    assert f'value="{today.isoformat()}"' in page.text
    assert f"until={today.isoformat()}" in csv_link(page.text)
    assert "Last 90 days, all teams" not in text(page.text)  # nothing to reset
    assert "Last 90 days, all teams" in text(client.get("/tickets/analytics?team=platform").text)


def test_an_empty_period_says_so_instead_of_drawing_charts(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    page = client.get("/tickets/analytics?since=2025-01-01&until=2025-01-31&team=platform")

    assert page.status_code == 200
    assert "No tickets were opened from 2025-01-01 to 2025-01-31 for the team platform." in text(
        page.text
    )
    assert "tk-chart" not in page.text and "What to automate next" not in page.text


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=2026-03-15&until=2026-03-02", "since", "Since: must not be after until"),
        ("since=2026-02-30", "since", "Since: enter a date as YYYY-MM-DD"),
        ("until=15/03/2026", "until", "Until: enter a date as YYYY-MM-DD"),
        ("until=9999-12-31", "until", "Until: enter a date from 1970-01-01 to 2999-12-31"),
        ("team=nobody", "team", "Assigned team: no team with slug 'nobody'"),
        ("since=2020-01-01&until=2026-01-01", "since", "Since: the range is at most 1098 days"),
    ],
)
def test_a_wrong_filter_is_shown_next_to_its_field(
    client: TestClient,
    db: Database,
    journal: dict[str, User],
    query: str,
    field: str,
    message: str,
) -> None:
    sign_in(client, journal["sam"])
    page = client.get(f"/tickets/analytics?{query}")

    assert page.status_code == 422  # as the catalog list answers a wrong filter
    assert f'id="f-{field}-error"' in page.text and 'aria-invalid="true"' in page.text
    assert message in text(page.text)
    assert "tk-chart" not in page.text and "analytics.csv" not in page.text
    assert 'method="get" action="/tickets/analytics"' in page.text  # the form stays, to fix it


def test_every_wrong_filter_is_named_at_once(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    page = client.get("/tickets/analytics?since=yesterday&team=Ghosts")

    assert page.status_code == 422
    shown = text(page.text)
    assert "Please correct these fields:" in shown
    assert "Since: enter a date as YYYY-MM-DD" in shown
    assert "Assigned team: no team with slug 'ghosts'" in shown
    assert '<option value="ghosts" selected>' in page.text  # what was asked for stays visible


def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient, db: Database) -> None:
    response = client.get(f"/tickets/analytics?{PERIOD}", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == (
        "/login?next=%2Ftickets%2Fanalytics%3Fsince%3D2026-03-02%26until%3D2026-03-15"
    )


def test_the_queue_links_to_the_analytics_page(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    sign_in(client, journal["sam"])
    queue = client.get("/tickets")

    assert re.search(r'<a [^>]*href="/tickets/analytics">Toil analytics</a>', queue.text)


def test_a_type_name_with_markup_is_escaped_in_charts_and_tables(
    client: TestClient, db: Database, journal: dict[str, User]
) -> None:
    with db.transaction() as session:
        evil = RequestType(slug="evil", name="<script>alert(1)</script> & co", is_active=True)
        session.add(evil)
        session.flush()
        session.add(
            Ticket(
                type_id=evil.id,
                title="evil",
                created_at=at(4),
                updated_at=at(4),
                status="done",
                resolution="manual",
                effort_minutes=600,
            )
        )
    sign_in(client, journal["sam"])
    page = client.get(f"/tickets/analytics?{PERIOD}").text

    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    effort = svgs(page)["Effort per request type, 2026-03-02 to 2026-03-15"]
    assert effort.find(f".//{SVG}script") is None
    assert "<script>alert(1)</script> & co: 10.0 h · 0 % hands-off" in [
        g.findtext(f"{SVG}title") for g in effort.iter(f"{SVG}g")
    ]


# -- the charts, without a database -------------------------------------------------------------
def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bar_widths(svg: ET.Element) -> list[float]:
    return [
        float(r.get("width", "0"))
        for r in svg.iter(f"{SVG}rect")
        if r.get("class") == "tk-chart-bar"
    ]


def test_bars_are_scaled_to_the_largest_value() -> None:
    svg = parse(
        charts.bar_chart(
            [charts.Bar("a", 100, "100"), charts.Bar("b", 50, "50"), charts.Bar("c", 0, "0")],
            title="Bars",
        )
    )
    area = charts.BAR_W - charts.BAR_LABEL_W - charts.BAR_VALUE_W
    assert bar_widths(svg) == [area, area / 2, 0]
    assert svg.get("role") == "img" and svg.findtext(f"{SVG}title") == "Bars"


def test_highlighted_part_and_share_meter() -> None:
    svg = parse(
        charts.bar_chart(
            [charts.Bar("Sam", 200, "3.3 h", part=50, share=0.25)],
            title="Load",
            part_name="out of hours",
            rest_name="in working hours",
            share_name="hands-off",
        )
    )
    rects = {r.get("class"): r for r in svg.iter(f"{SVG}rect")}
    area = charts.BAR_W - charts.BAR_LABEL_W - charts.BAR_VALUE_W
    assert float(rects["tk-chart-bar-part"].get("width", "")) == area / 4
    assert float(rects["tk-chart-share"].get("width", "")) == area / 4
    legend = [t.text for t in svg.iter(f"{SVG}text")]
    assert "out of hours" in legend and "in working hours" in legend and "hands-off" in legend


def test_zero_and_missing_data_do_not_divide_by_zero() -> None:
    zeros = parse(charts.bar_chart([charts.Bar("a", 0, "0 h", part=0, share=0)], title="Zero"))
    assert bar_widths(zeros) == [0]
    nothing = parse(charts.bar_chart([], title="Nothing"))
    assert "No data" in [t.text for t in nothing.iter(f"{SVG}text")]
    flat = parse(charts.line_chart(["W1", "W2"], [charts.Series("All", [0, 0])], title="Flat"))
    assert [t.text for t in flat.iter(f"{SVG}text") if t.get("class") == "tk-chart-tick"][:2] == [
        "0",
        "1",
    ]
    empty = parse(charts.line_chart([], [], title="Empty"))
    assert "No data" in [t.text for t in empty.iter(f"{SVG}text")]
    one_week = parse(charts.line_chart(["W1"], [charts.Series("All", [3], total=True)], title="1"))
    assert one_week.find(f".//{SVG}polyline") is None
    assert len(list(one_week.iter(f"{SVG}circle"))) == 1


def test_long_labels_are_cut_and_markup_is_escaped() -> None:
    long_name = "Provision a very large database cluster for the data warehouse team"
    source = charts.bar_chart(
        [charts.Bar(long_name, 5, "5"), charts.Bar("<script>x</script>", 3, "3")],
        title="Types <b>",
    )
    assert "<script>" not in source and "&lt;script&gt;" in source
    svg = parse(source)
    labels = [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "tk-chart-label"]
    assert labels[0] == long_name[: charts.LABEL_CHARS - 1] + "…"
    assert labels[1] == "<script>x</script>"
    assert svg.find(f".//{SVG}script") is None
    assert f"{long_name}: 5" in [g.findtext(f"{SVG}title") for g in svg.iter(f"{SVG}g")]
    assert svg.get("aria-label") == "Types <b>"


def test_line_chart_axis_has_readable_ticks_and_one_point_per_week() -> None:
    weeks = [f"W{i}" for i in range(1, 21)]
    series = [
        charts.Series("All tickets", [1200 + i for i in range(20)], total=True),
        charts.Series("Database", [i for i in range(20)]),
    ]
    svg = parse(charts.line_chart(weeks, series, title="Trend", y_name="tickets"))
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "tk-chart-tick"]
    assert ticks[:4] == ["0", "500", "1,000", "1,500"]
    x_labels = ticks[4:]
    assert len(x_labels) <= charts.MAX_X_LABELS + 1 and x_labels[-1] == "W20"
    groups = [g for g in svg.iter(f"{SVG}g") if "tk-chart-series" in (g.get("class") or "")]
    assert len(groups) == 2 and "tk-chart-total" in (groups[-1].get("class") or "")
    assert all(len(list(g.iter(f"{SVG}circle"))) == 20 for g in groups)
    assert "All tickets, W20: 1,219" in [
        c.findtext(f"{SVG}title") for c in svg.iter(f"{SVG}circle")
    ]


def test_nice_ticks_and_counts() -> None:
    assert charts.nice_ticks(0) == [0, 1]
    assert charts.nice_ticks(3) == [0, 1, 2, 3]
    assert charts.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert charts.nice_ticks(1234) == [0, 500, 1000, 1500]
    assert charts.format_count(1234567) == "1,234,567"


def test_week_labels_carry_the_year_where_it_changes() -> None:
    mondays = [dt.date(2025, 12, 22), dt.date(2025, 12, 29), dt.date(2026, 1, 5)]
    assert week_labels(mondays) == ["22 Dec 2025", "29 Dec", "5 Jan 2026"]
