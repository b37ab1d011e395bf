"""The home page says what needs the signed-in person's attention now: tickets assigned to them
(breaching ones first), hygiene problems in what their teams own, and, for the admin of an
empty installation, what to set up first. It greets them by their own clock."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import markupsafe
from fastapi.testclient import TestClient

from lamplighter.core import clock, home, identity
from lamplighter.core.db import Database
from lamplighter.tickets import service as tickets
from tests.catalog.conftest import make_entity
from tests.conftest import SYSTEM, make_team
from tests.helpers import csrf_in, found, person, sign_in, text


def headings(page: str) -> list[str]:
    """The home page's card titles, in page order (without their counts)."""
    return [
        text(re.sub(r'<span class="count-badge">.*?</span>', "", h)).strip()
        for h in re.findall(r"<h2[^>]*>(.*?)</h2>", page, re.S)
    ]


def card(page: str, title: str) -> str:
    """The text of the card titled ``title``."""
    for section in re.findall(r"<section.*?</section>", page, re.S):
        if title in section:
            return text(section)
    raise AssertionError(f"no card titled {title!r}")


def new_ticket(db: Database, *, assignee: str, title: str, priority: str, at: dt.datetime) -> int:
    with db.transaction() as session:
        ticket = tickets.create(
            session=session,
            actor=SYSTEM,
            data=tickets.TicketInput(
                type="database", title=title, priority=priority, assignee=assignee
            ),
            now=at,
        )
        return ticket.id


# -- greeting ------------------------------------------------------------------------------------
def test_the_greeting_follows_the_viewers_clock_not_utc(client: TestClient, db: Database) -> None:
    berlin = person(db, time_zone="Europe/Berlin")
    new_york = person(db, time_zone="America/New_York")
    kolkata = person(db, time_zone="Asia/Kolkata")
    # 03:25 UTC is 04:25 in Berlin: still evening there, though it is 03:25 in UTC too.
    with clock.frozen(dt.datetime(2026, 12, 13, 3, 25, tzinfo=dt.UTC)):
        sign_in(client, berlin)
        assert "Good evening, " in text(client.get("/"))
    # 09:25 UTC (morning in UTC) is 04:25 in New York: evening there.
    with clock.frozen(dt.datetime(2026, 12, 13, 9, 25, tzinfo=dt.UTC)):
        sign_in(client, new_york)
        assert "Good evening, " in text(client.get("/"))
    # 23:30 UTC (evening in UTC) is 05:00 the next day in Kolkata: morning there.
    with clock.frozen(dt.datetime(2026, 12, 13, 23, 30, tzinfo=dt.UTC)):
        sign_in(client, kolkata)
        assert "Good morning, " in text(client.get("/"))


def test_the_greeting_changes_at_five_noon_and_six(frozen_clock: clock.ManualClock) -> None:
    from lamplighter.core.pages import greeting

    start = dt.datetime(2026, 12, 13, 3, 59, tzinfo=dt.UTC)  # 04:59 in Berlin
    frozen_clock.set(start)
    expected = {
        dt.timedelta(0): "Good evening",
        dt.timedelta(minutes=1): "Good morning",  # 05:00
        dt.timedelta(hours=7): "Good morning",  # 11:59
        dt.timedelta(hours=7, minutes=1): "Good afternoon",  # 12:00
        dt.timedelta(hours=13): "Good afternoon",  # 17:59
        dt.timedelta(hours=13, minutes=1): "Good evening",  # 18:00
    }
    for offset, words in expected.items():
        assert greeting(start + offset, "Europe/Berlin") == words, offset


# -- what needs attention --------------------------------------------------------------------------
def test_home_never_shows_audit_lines(client: TestClient, db: Database) -> None:
    user = person(db)
    sign_in(client, user)
    sign_in(client, user)  # two sign-ins: the audit log has session.login entries for them
    page = client.get("/")
    assert "session.login" not in page.text and "on user" not in text(page)
    assert "Your recent changes" not in text(page)


def test_tickets_assigned_to_you_most_urgent_first_with_their_sla_in_words(
    client: TestClient, db: Database, frozen_clock: clock.ManualClock
) -> None:
    me = person(db, email="sre@example.com", time_zone="Europe/Berlin")
    other = person(db)
    now = frozen_clock.now()
    relaxed = new_ticket(db, assignee=me.email, title="Rotate keys", priority="P4", at=now)
    late = new_ticket(
        db, assignee=me.email, title="Restore backup", priority="P1", at=now - dt.timedelta(hours=6)
    )
    soon = new_ticket(db, assignee=me.email, title="Open a port", priority="P2", at=now)
    new_ticket(db, assignee=other.email, title="Not mine", priority="P1", at=now)
    sign_in(client, me)
    page = client.get("/")
    panel = card(page.text, "Tickets assigned to you")
    assert "Not mine" not in panel
    order = [panel.index(t) for t in ("Restore backup", "Open a port", "Rotate keys")]
    assert order == sorted(order), "breaching first, then the closest to its target"
    assert "Breaching: past its target time to done for 2 hours" in panel
    assert re.search(r"Open a port P2 New First response due in \d+ (minutes|hours?) \(", panel)
    for ticket_id in (late, soon, relaxed):
        assert f'href="/tickets/{ticket_id}"' in page.text
    assert found(r'<span class="count-badge">(\d+)</span>', page.text).group(1) == "3"


def test_hygiene_problems_in_what_your_teams_own_link_each_entity(
    client: TestClient, db: Database
) -> None:
    lead = person(db, email="lead@example.com")
    dev = person(db, email="dev@example.com")
    make_team(db, slug="payments", lead=lead, members=[dev])
    make_team(db, slug="search", lead=person(db))
    make_entity(db, "ledger", "payments", accountable="dev@example.com")
    make_entity(db, "fine", "payments")
    make_entity(db, "indexer", "search", accountable=None)
    with db.transaction() as session:
        identity.remove_member(session=session, actor=SYSTEM, slug="payments", user_id=dev.id)
    sign_in(client, lead)
    page = client.get("/")
    panel = card(page.text, "Hygiene problems in what your teams own")
    assert "ledger" in panel and "no longer in the owning team" in panel
    assert "indexer" not in panel and "fine" not in panel, "only problems, only your teams'"
    assert 'href="/catalog/service/default/ledger"' in page.text
    assert 'href="/catalog/hygiene"' in page.text


def test_panels_with_items_come_first(client: TestClient, db: Database) -> None:
    me = person(db)
    make_team(db, slug="payments", lead=me)

    def quiet(request: Any, session: Any, viewer: Any) -> home.HomePanel:
        return home.HomePanel(
            "Quiet panel", markupsafe.Markup(""), 0, order=1, empty_text="All calm."
        )

    def busy(request: Any, session: Any, viewer: Any) -> home.HomePanel:
        return home.HomePanel("Busy panel", markupsafe.Markup("<p>two things</p>"), 2, order=99)

    home.HOME_PANELS.extend([quiet, busy])
    try:
        sign_in(client, me)
        page = client.get("/").text
    finally:
        home.HOME_PANELS.remove(quiet)
        home.HOME_PANELS.remove(busy)
    titles = headings(page)
    assert titles.index("Busy panel") < titles.index("Quiet panel")
    assert titles.index("Quiet panel") < titles.index("Your teams")
    assert "All calm." in card(page, "Quiet panel")
    assert "two things" in card(page, "Busy panel")


def test_nothing_to_do_is_said_in_words(client: TestClient, db: Database) -> None:
    me = person(db)
    make_team(db, slug="payments", lead=me)
    sign_in(client, me)
    page = client.get("/").text
    assert "No open tickets are assigned to you." in card(page, "Tickets assigned to you")
    assert "Everything your teams own has a valid owner" in card(
        page, "Hygiene problems in what your teams own"
    )


# -- first run -------------------------------------------------------------------------------------
def test_an_admin_of_an_empty_installation_gets_a_checklist_until_it_is_done(
    client: TestClient, db: Database
) -> None:
    admin = person(db, email="admin@example.com", role="admin")
    sign_in(client, admin)
    page = client.get("/").text
    steps = card(page, "Set up Lamplighter")
    assert "0 of 3 done" in steps
    order = [steps.index(s) for s in ("Import a catalog", "Create teams", "Invite people")]
    assert order == sorted(order)
    assert 'href="/catalog/new"' in page and 'href="/teams/new"' in page
    assert 'href="/people/new"' in page

    colleague = person(db, email="colleague@example.com")
    make_team(db, slug="payments", lead=colleague)
    steps = card(client.get("/").text, "Set up Lamplighter")
    assert "2 of 3 done" in steps
    assert "Done: Create teams" in steps and "Done: Invite people" in steps
    assert "To do: Import a catalog" in steps

    make_entity(db, "ledger", "payments")
    assert "Set up Lamplighter" not in client.get("/").text, "gone once everything is done"


def test_the_checklist_is_for_admins_only(client: TestClient, db: Database) -> None:
    sign_in(client, person(db, role="sre"))
    assert "Set up Lamplighter" not in client.get("/").text


# -- adding people ---------------------------------------------------------------------------------
def test_an_admin_adds_a_person_who_can_then_sign_in(client: TestClient, db: Database) -> None:
    sign_in(client, person(db, role="admin"))
    form = client.get("/people/new")
    assert form.status_code == 200 and "Add a person" in text(form)
    response = client.post(
        "/people",
        data={
            "csrf_token": csrf_in(form.text),
            "email": "Noor@Example.com",
            "display_name": "Noor",
            "role": "member",
            "time_zone": "Asia/Dubai",
            "password": "a first password",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "Noor (noor@example.com) can now sign in" in text(
        client.get(response.headers["location"])
    )
    with db.sessionmaker() as session:
        added = identity.get_user_by_email(session=session, email="noor@example.com")
        assert added is not None and added.time_zone == "Asia/Dubai"
    client.cookies.clear()
    assert sign_in(client, added, password="a first password")
    assert client.get("/", follow_redirects=False).status_code == 200


def test_adding_a_person_names_the_wrong_field(client: TestClient, db: Database) -> None:
    sign_in(client, person(db, role="admin"))
    csrf = csrf_in(client.get("/people/new").text)
    bad = {"email": "x@example.com", "time_zone": "Mars/Base", "role": "member"}
    response = client.post("/people", data={"csrf_token": csrf, **bad, "password": "long enough 1"})
    assert response.status_code == 422
    assert 'id="f-time_zone-error"' in response.text
    no_password = client.post("/people", data={"csrf_token": csrf, **bad, "time_zone": "UTC"})
    assert no_password.status_code == 422 and 'id="f-password-error"' in no_password.text


def test_only_admins_add_people(client: TestClient, db: Database) -> None:
    csrf = sign_in(client, person(db, role="sre"))
    assert client.get("/people/new").status_code == 403
    refused = client.post(
        "/people", data={"csrf_token": csrf, "email": "y@example.com", "password": "long enough 1"}
    )
    assert refused.status_code == 403
