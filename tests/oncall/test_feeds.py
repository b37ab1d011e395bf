"""The iCalendar feeds at their secret URLs, read back with the ``icalendar`` library: a
schedule's final shifts and a person's own shifts across schedules; no sign-in, a wrong or
replaced secret is a 404."""

from __future__ import annotations

import datetime as dt

import icalendar
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from tests.conftest import auth, make_token
from tests.oncall import schedule_fixtures
from tests.oncall.schedule_fixtures import Org, rotation

org = schedule_fixtures.org


def events_of(body: str) -> list[tuple[dt.datetime, dt.datetime, str]]:
    calendar = icalendar.Calendar.from_ical(body)
    return sorted(
        (event.decoded("DTSTART"), event.decoded("DTEND"), str(event["SUMMARY"]))
        for event in calendar.walk("VEVENT")
    )


def midnight_today() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def test_a_schedule_feed_serves_its_final_shifts_at_its_secret_url(
    org: Org, db: Database, client: TestClient
) -> None:
    today = midnight_today()
    schedule = org.schedule(
        [rotation("day", [org.ada.id, org.bo.id], start=today - dt.timedelta(days=60))],
        name="Payments primary",
    )
    org.override(
        schedule.id,
        org.cy,
        today + dt.timedelta(days=2, hours=6),
        today + dt.timedelta(days=2, hours=9),
    )
    lead = make_token(db, org.ada)
    issued = client.post(f"/api/v1/oncall/schedules/{schedule.id}/feed-token", headers=auth(lead))
    assert issued.status_code == 200, issued.text
    url = issued.json()["url"]
    assert url.startswith("http://127.0.0.1:8080/oncall/feeds/schedule/llcal_") and url.endswith(
        ".ics"
    )
    path = url.removeprefix("http://127.0.0.1:8080")

    feed = client.get(path)  # no credentials: the secret is the credential
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.text)
    assert str(calendar["X-WR-CALNAME"]) == "Payments primary"
    events = events_of(feed.text)
    # Thirty days back to ninety ahead, one event per turn, the override cutting one in three.
    assert events[0][0] <= today - dt.timedelta(days=29)
    assert events[-1][1] >= today + dt.timedelta(days=89)
    overridden = [e for e in events if e[2] == "On call: Cy (Payments primary)"]
    assert [(start - today, end - today) for start, end, _ in overridden] == [
        (dt.timedelta(days=2, hours=6), dt.timedelta(days=2, hours=9))
    ]
    around = [
        e for e in events if today + dt.timedelta(days=2) <= e[0] < today + dt.timedelta(days=3)
    ]
    turn = around[0][2]  # that day's turn, before and after Cy's three hours
    assert turn in {"On call: Ada (Payments primary)", "On call: Bo (Payments primary)"}
    assert [summary for _, _, summary in around] == [turn, "On call: Cy (Payments primary)", turn]
    assert len({str(e["UID"]) for e in calendar.walk("VEVENT")}) == len(events)

    again = client.post(f"/api/v1/oncall/schedules/{schedule.id}/feed-token", headers=auth(lead))
    assert client.get(path).status_code == 404  # the old secret stops working
    assert client.get(again.json()["url"].removeprefix("http://127.0.0.1:8080")).status_code == 200
    for wrong in ("llcal_nope", "not-a-token", path.rsplit("/", 1)[-1][:-4] + "x"):
        missing = client.get(f"/oncall/feeds/schedule/{wrong}.ics")
        assert missing.status_code == 404
    assert client.get(f"/oncall/feeds/user/{path.rsplit('/', 1)[-1]}").status_code == 404


def test_a_persons_feed_holds_their_shifts_on_every_schedule_and_nobody_elses(
    org: Org, db: Database, client: TestClient
) -> None:
    today = midnight_today()
    org.schedule(
        [
            rotation(
                "week", [org.bo.id, org.ada.id], kind="weekly", start=today - dt.timedelta(days=3)
            )
        ],
        name="primary",
    )
    secondary = org.schedule(
        [rotation("always", [org.cy.id], kind="weekly", start=today - dt.timedelta(days=3))],
        name="secondary",
    )
    org.override(secondary.id, org.bo, today + dt.timedelta(days=10), today + dt.timedelta(days=11))
    org.schedule([rotation("always", [org.cy.id], start=today)], name="unrelated")

    token = make_token(db, org.bo)
    issued = client.post("/api/v1/oncall/me/feed-token", headers=auth(token))
    assert issued.status_code == 200, issued.text
    path = issued.json()["url"].removeprefix("http://127.0.0.1:8080")
    assert "/oncall/feeds/user/" in path
    feed = client.get(path)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    events = events_of(feed.text)
    summaries = {summary for _, _, summary in events}
    assert summaries == {"On call: Bo (primary)", "On call: Bo (secondary)"}
    assert (
        today + dt.timedelta(days=10),
        today + dt.timedelta(days=11),
        "On call: Bo (secondary)",
    ) in events
    first_week = [e for e in events if e[2] == "On call: Bo (primary)" and e[0] <= today]
    assert first_week == [
        (today - dt.timedelta(days=3), today + dt.timedelta(days=4), "On call: Bo (primary)")
    ]
    viewer = make_token(db, org.viewer)  # a viewer has a feed of their own too (empty)
    own = client.post("/api/v1/oncall/me/feed-token", headers=auth(viewer))
    assert own.status_code == 200
    assert events_of(client.get(own.json()["url"].removeprefix("http://127.0.0.1:8080")).text) == []
    assert client.post("/api/v1/oncall/me/feed-token").status_code == 401
