"""The alert report: noise, missing runbooks, flapping, the time to acknowledge per team and the
pages per person with those outside working hours in the person's own time zone; as JSON, CSV
and a page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.alerting import groups as group_service
from lamplighter.alerting.models import AlertGroup
from lamplighter.core import clock, identity, jobs, people
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Job, User
from lamplighter.core.settings import Settings
from lamplighter.oncall import report
from tests.alerting.fixtures_org import Org, am_body, pd_event
from tests.conftest import SYSTEM, make_user
from tests.helpers import PASSWORD, found, sign_in, text

AM = "/api/v1/alerting/ingest/alertmanager/"
TUESDAY_0800 = dt.datetime(2026, 12, 8, 8, 0, tzinfo=dt.UTC)  # 03:00 in New York
WEEK = {"start": "2026-12-07T00:00:00Z", "end": "2026-12-14T00:00:00Z"}  # 2026-W50
FLAPPER = "CheckoutHighErrorRate"
DISK = "Disk on db-1 is 95 % full"


def run_due(db: Database, settings: Settings) -> None:
    """Run every job due at the held clock's time (later ones wait for it)."""
    worker = jobs.Worker(db, settings)
    for _ in range(200):
        if worker.run_once():
            continue
        with db.sessionmaker() as session:
            due = session.scalar(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(Job.status == "queued", Job.due_at <= utcnow())
            )
        if not due:
            return
    raise AssertionError("jobs still due")


def acknowledge(db: Database, user: User, group_id: int) -> None:
    with db.transaction() as session:
        actor = people.actor_for_user(session=session, user_id=user.id)
        assert actor is not None
        group_service.acknowledge(session=session, actor=actor, group_id=group_id)


def newest_group(db: Database) -> int:
    with db.sessionmaker() as session:
        found_id = session.scalar(sa.select(sa.func.max(AlertGroup.id)))
        assert found_id is not None
        return int(found_id)


@dataclass
class Week:
    """Week 2026-W50 of the checkout team (lead and member in UTC, one engineer in New York),
    every group paged to the whole team (no escalation policy):

    - Tuesday 08:00 UTC (03:00 in New York): a disk alert from a PagerDuty integration of the
      team, about no entity and with no runbook; acknowledged 10 minutes later;
    - Tuesday 10:00 UTC (05:00 in New York): Alertmanager's CheckoutHighErrorRate, with its
      runbook; acknowledged 20 minutes later, resolved by Alertmanager at 10:21;
    - then it flaps: fires at 10:22, 10:24 and 10:26, each time resolved a minute later.
    """

    org: Org
    new_york: User


@pytest.fixture
def week(client: TestClient, db: Database, settings: Settings) -> Iterator[Week]:
    org = Org(db)
    new_york = make_user(db, time_zone="America/New_York")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=org.team.slug, email=new_york.email)
    _, disk_key = org.integration("pagerduty", entity=None, team=org.team.slug)
    _, am_key = org.integration()
    with clock.frozen(TUESDAY_0800) as held:
        assert client.post("/v2/enqueue", json=pd_event(disk_key)).status_code == 202
        run_due(db, settings)
        held.advance(minutes=10)
        acknowledge(db, org.member, newest_group(db))
        held.set(TUESDAY_0800 + dt.timedelta(hours=2))
        assert client.post(AM + am_key, json=am_body()).status_code == 202
        run_due(db, settings)
        held.advance(minutes=20)
        acknowledge(db, org.lead, newest_group(db))
        held.advance(minutes=1)
        assert client.post(AM + am_key, json=am_body(status="resolved")).status_code == 202
        for _ in range(3):
            held.advance(minutes=1)
            assert client.post(AM + am_key, json=am_body()).status_code == 202
            run_due(db, settings)
            held.advance(minutes=1)
            assert client.post(AM + am_key, json=am_body(status="resolved")).status_code == 202
        run_due(db, settings)
    yield Week(org, new_york)


def _get_report(client: TestClient, org: Org) -> dict[str, Any]:
    answer = client.get("/api/v1/oncall/report", params=WEEK, headers=org.token())
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_working_hours_are_monday_to_friday_nine_to_five_in_the_persons_zone() -> None:
    assert not report.working_hours(TUESDAY_0800, "America/New_York")  # 03:00 there
    assert not report.working_hours(TUESDAY_0800, "Asia/Tokyo")  # 17:00 there: the day is over
    assert report.working_hours(TUESDAY_0800, "Europe/Berlin")  # 09:00 there
    assert report.working_hours(TUESDAY_0800 + dt.timedelta(hours=6), "America/New_York")
    saturday_noon = dt.datetime(2026, 12, 12, 12, 0, tzinfo=dt.UTC)
    assert not report.working_hours(saturday_noon, "UTC")


def test_the_time_to_acknowledge_per_team(client: TestClient, week: Week) -> None:
    data = _get_report(client, week.org)

    assert data["groups"] == 5
    [mtta] = data["mtta"]
    assert mtta["team"] == week.org.team.slug
    assert (mtta["mean_minutes"], mtta["median_minutes"]) == (15.0, 15.0)  # 10 and 20 minutes
    assert (mtta["acknowledged"], mtta["groups"]) == (2, 5)


def test_pages_per_person_count_those_outside_working_hours_in_their_zone(
    client: TestClient, week: Week
) -> None:
    data = _get_report(client, week.org)
    pages = {row["email"]: row for row in data["pages"]}

    new_york = pages[week.new_york.email]
    assert new_york["time_zone"] == "America/New_York"
    assert (new_york["pages"], new_york["outside_hours"]) == (5, 5)  # 03:00 and 05:xx there
    member = pages[week.org.member.email]
    assert (member["pages"], member["outside_hours"]) == (5, 1)  # only 08:00 UTC is early


def test_noisy_runbookless_and_flapping_kinds(client: TestClient, week: Week) -> None:
    data = _get_report(client, week.org)

    noisy = [(row["kind"], row["groups"], row["alerts"]) for row in data["noisy"]]
    assert noisy == [(FLAPPER, 4, 4), (DISK, 1, 1)]
    assert [(r["kind"], r["groups_without_runbook"]) for r in data["without_runbook"]] == [
        (DISK, 1)
    ]
    [flapping] = data["flapping"]
    assert (flapping["kind"], flapping["reopened"], flapping["quick_resolves"]) == (FLAPPER, 3, 3)


def test_the_csv_has_a_header_and_a_row_per_line_of_each_section(
    client: TestClient, week: Week
) -> None:
    answer = client.get("/api/v1/oncall/report.csv", params=WEEK, headers=week.org.token())

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "alert-report-20261207T0000Z-20261214T0000Z.csv" in answer.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(answer.text))
    assert reader.fieldnames == list(report.CSV_COLUMNS)
    rows = list(reader)
    assert {row["section"] for row in rows} == {
        "noisy",
        "without_runbook",
        "flapping",
        "mtta",
        "pages",
    }
    new_york = next(row for row in rows if row["email"] == week.new_york.email)
    assert (new_york["section"], new_york["pages"], new_york["outside_hours"]) == (
        "pages",
        "5",
        "5",
    )
    mtta = next(row for row in rows if row["section"] == "mtta")
    assert mtta["mtta_mean_minutes"] == "15.0" and mtta["acknowledged"] == "2"


def test_the_report_page_shows_the_chosen_week_and_links_its_csv(
    client: TestClient, db: Database, week: Week
) -> None:
    with db.transaction() as session:
        identity.update_user(
            session=session, actor=SYSTEM, user_id=week.org.viewer.id, password=PASSWORD
        )
    sign_in(client, week.org.viewer)

    page = client.get("/alerts/report", params={"week": "2026-W50"})

    assert page.status_code == 200
    assert "Week 2026-W50" in text(page)
    csv_link = found(
        r'<a href="(/api/v1/oncall/report\.csv\?[^"]+)">Download as CSV</a>', page.text
    )
    assert client.get(csv_link.group(1).replace("&amp;", "&")).status_code == 200
    pages = found(r'aria-label="Pages per person".*?</table>', page.text, re.S).group(0)
    new_york = next(r for r in re.findall(r"<tr>(.*?)</tr>", pages, re.S) if "New_York" in r)
    assert text(new_york).endswith("America/New_York 5 5")
    assert "15 min" in text(
        found(r'aria-label="Time to acknowledge per team".*?</table>', page.text, re.S).group(0)
    )
    assert 'href="/alerts/report?week=2026-W49"' in page.text
    wrong = client.get("/alerts/report", params={"week": "last tuesday"})
    assert wrong.status_code == 422
    assert "choose a week such as 2026-W49" in text(wrong)


def test_a_range_over_93_days_or_without_a_time_zone_is_refused(
    client: TestClient, db: Database
) -> None:
    headers = Org(db).token()

    too_long = client.get(
        "/api/v1/oncall/report",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-04-05T00:00:00Z"},
        headers=headers,
    )
    naive = client.get(
        "/api/v1/oncall/report.csv", params={"start": "2026-12-07T00:00:00"}, headers=headers
    )
    fine = client.get("/api/v1/oncall/report", headers=headers)

    assert too_long.status_code == 422
    assert [e["field"] for e in too_long.json()["errors"]] == ["query.end"]
    assert "at most 93 days" in too_long.json()["errors"][0]["reason"]
    assert naive.status_code == 422
    assert [e["field"] for e in naive.json()["errors"]] == ["query.start"]
    assert fine.status_code == 200
    start = dt.datetime.fromisoformat(fine.json()["start"])
    end = dt.datetime.fromisoformat(fine.json()["end"])
    assert end - start == dt.timedelta(days=7)
    assert client.get("/api/v1/oncall/report").status_code == 401
