"""Times read as words in the viewer's own time zone (``6 Dec 2026, 12:45 CET``), while the
page keeps the exact instant for machines in ``<time datetime>``."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from lamplighter.core import clock, inbox, timefmt
from lamplighter.core.db import Database
from tests.helpers import person, sign_in, text

INSTANT = dt.datetime(2026, 12, 6, 11, 45, 30, 491523, tzinfo=dt.UTC)


def test_times_are_words_in_the_readers_zone() -> None:
    assert timefmt.readable(INSTANT, "Europe/Berlin") == "6 Dec 2026, 12:45 CET"
    assert timefmt.readable(INSTANT, "UTC") == "6 Dec 2026, 11:45 UTC"
    assert timefmt.readable(INSTANT, "America/New_York", short=True) == "6 Dec 2026"
    assert timefmt.readable(INSTANT, "Pacific/Auckland", short=True) == "7 Dec 2026"
    summer = dt.datetime(2026, 7, 1, 8, 5, tzinfo=dt.UTC)
    assert timefmt.readable(summer, "Europe/Berlin") == "1 Jul 2026, 10:05 CEST"
    assert timefmt.readable(INSTANT, "No/Such_Zone") == "6 Dec 2026, 11:45 UTC"
    assert timefmt.readable(None, "UTC") == "—"


def test_lengths_of_time_are_words() -> None:
    assert timefmt.span(dt.timedelta(seconds=20)) == "less than a minute"
    assert timefmt.span(dt.timedelta(minutes=1)) == "1 minute"
    assert timefmt.span(dt.timedelta(minutes=150)) == "2 hours"
    assert timefmt.span(dt.timedelta(days=-3, hours=-2)) == "3 days"


def test_a_notice_shows_its_time_in_words_and_keeps_the_instant_for_machines(
    client: TestClient, db: Database
) -> None:
    reader = person(db, time_zone="Europe/Berlin")
    with clock.frozen(INSTANT), db.transaction() as session:
        inbox.notify(session=session, user_id=reader.id, title="Your run finished")
    sign_in(client, reader)
    page = client.get("/inbox")
    assert "6 Dec 2026, 12:45 CET" in text(page)
    assert '<time datetime="2026-12-06T11:45:30.491523+00:00">' in page.text
    assert "+00:00" not in text(page), "no ISO timestamps in what people read"
