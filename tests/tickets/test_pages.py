"""The ticket and inbox pages, driven like a browser without JavaScript (plus a few HTMX requests)."""

from __future__ import annotations

import datetime as dt
import html
import re
import zoneinfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import AuditEntry, InboxItem, User
from lamplighter.tickets import service
from lamplighter.tickets.models import Comment, RequestType, Ticket, WorkLog
from tests.catalog.conftest import make_entity
from tests.conftest import make_team
from tests.helpers import HTMX, csrf_in, found, person, sign_in, text


@pytest.fixture
def app(settings, db):
    return create_app(settings, db=db)


# -- helpers, as in tests/core/test_pages.py ---------------------------------------------------


def make_ticket(
    db: Database,
    requester: User,
    *,
    title: str = "A database please",
    type: str = "database",
    team: str | None = None,
    assignee: User | None = None,
    priority: str = "P3",
    now: dt.datetime | None = None,
) -> int:
    actor = Actor(kind="user", label=requester.email, user_id=requester.id, role=requester.role)
    with db.transaction() as session:
        data = service.TicketInput(type=type, title=title, priority=priority)
        ticket = service.create(session=session, actor=actor, data=data, now=now)
        if team:
            ticket.assignee_team_id = identity.get_team(session=session, slug=team).id
        if assignee:
            ticket.assignee_user_id = assignee.id
        return ticket.id


def ticket_row(db: Database, ticket_id: int) -> Ticket:
    with db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        session.expunge(ticket)
        return ticket


def count(db: Database, model: type) -> int:
    with db.transaction() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def post(client: TestClient, path: str, csrf: str, **data: str):
    return client.post(path, data={**data, "csrf_token": csrf}, follow_redirects=False)


# -- intake ------------------------------------------------------------------------------------
def test_intake_form_opens_a_ticket_and_the_ticket_page_shows_it(client, db):
    ada = person(db, email="ada@example.com")
    make_team(db, slug="payments", lead=ada)
    make_entity(db, "payments-api", owner="payments")
    csrf = sign_in(client, ada)
    form = client.get("/tickets/new")
    assert form.status_code == 200
    assert "Database: Provision a database and its credentials. (about 1h 30m)" in text(form)
    assert re.search(r'<option value="payments" selected>', form.text)  # the user's first team
    response = post(
        client,
        "/tickets",
        csrf,
        type="database",
        title="Postgres for payments",
        description="Needs **16 GB** <script>alert(1)</script>\n\n- daily backups",
        priority="P2",
        requesting_team="payments",
        entity="payments-api",
        labels="Compliance, q3",
    )
    assert response.status_code == 303
    ticket_id = int(response.headers["location"].rsplit("/", 1)[1])
    page = client.get(response.headers["location"])
    assert f"Ticket #{ticket_id} opened" in text(page)
    assert f"#{ticket_id} Postgres for payments" in text(page)
    assert "<strong>16 GB</strong>" in page.text and "<li>daily backups</li>" in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="/catalog/service/default/payments-api"' in page.text
    assert 'href="/teams/payments"' in page.text
    details = text(page)
    assert "P2" in details and "New" in details and "compliance" in details and "q3" in details
    assert "Ada opened it as New" in details  # the timeline starts with the intake
    ticket = ticket_row(db, ticket_id)
    assert ticket.requester_user_id == ada.id and ticket.labels == ["compliance", "q3"]


def test_intake_mistakes_are_shown_next_to_the_fields_and_keep_the_input(client, db):
    ada = person(db)
    csrf = sign_in(client, ada)
    empty = post(client, "/tickets", csrf, type="", title="  ", description="keep me")
    assert empty.status_code == 422
    assert 'id="f-type-error"' in empty.text and 'id="f-title-error"' in empty.text
    assert "keep me</textarea>" in empty.text
    for field, data, message in [
        ("entity", {"entity": "no-such-service"}, "no-such-service"),
        ("type", {"type": "teleporter"}, "unknown request type 'teleporter'"),
        ("labels", {"labels": "ok, not ok"}, "'not ok'"),
    ]:
        response = post(client, "/tickets", csrf, **{"type": "database", "title": "Kept"} | data)
        assert response.status_code == 422, field
        assert f'id="f-{field}-error"' in response.text and message in text(response)
        assert 'value="Kept"' in response.text
    assert count(db, Ticket) == 0


def test_viewers_cannot_open_tickets(client, db):
    viewer = person(db, role="viewer")
    csrf = sign_in(client, viewer)
    assert 'href="/tickets/new"' not in client.get("/tickets").text
    assert client.get("/tickets/new").status_code == 403
    response = post(client, "/tickets", csrf, type="database", title="Sneaky")
    assert response.status_code == 403 and "viewers cannot open tickets" in text(response)
    assert count(db, Ticket) == 0


# -- queues ------------------------------------------------------------------------------------
def table_ids(response) -> list[int]:
    body = re.search(r"<tbody>(.*?)</tbody>", response.text, re.S)
    return [int(i) for i in re.findall(r'href="/tickets/(\d+)"', body.group(1))] if body else []


def test_queue_views_triage_mine_team_and_breaching(client, db):
    sre, ada = person(db, role="sre"), person(db, email="ada@example.com")
    make_team(db, slug="platform", lead=sre)
    fresh = make_ticket(db, ada, title="Fresh request")
    mine = make_ticket(db, ada, title="Assigned to the SRE", assignee=sre)
    team = make_ticket(db, ada, title="For the platform team", team="platform")
    overdue = make_ticket(db, ada, title="Old request", now=utcnow() - dt.timedelta(days=30))
    csrf = sign_in(client, sre)
    post(client, f"/tickets/{mine}/transitions", csrf, status="in_progress")
    post(client, f"/tickets/{team}/transitions", csrf, status="triaged")

    triage = client.get("/tickets")  # the first tab
    assert 'aria-current="page">Triage' in triage.text
    assert set(table_ids(triage)) == {fresh, overdue}
    assert table_ids(client.get("/tickets?view=mine")) == [mine]
    team_view = client.get("/tickets?view=team")  # the SRE's first team is chosen
    assert table_ids(team_view) == [team] and '<option value="platform" selected>' in team_view.text
    breaching = client.get("/tickets?view=breaching")
    assert table_ids(breaching) == [overdue]
    assert "Breaching : past its target time to done" in text(breaching)
    assert "past its target" not in text(client.get("/tickets?view=mine"))

    everything = client.get("/tickets?view=all&limit=2")
    assert table_ids(everything) == [fresh, mine]
    next_url = html.unescape(found(r'href="([^"]+)">Next page', everything.text).group(1))
    assert table_ids(client.get(next_url)) == [team, overdue]
    assert table_ids(client.get("/tickets?view=all&status=triaged")) == [team]
    assert table_ids(client.get("/tickets?view=all&priority=P1")) == []
    unused = client.get("/tickets?view=all&label=Not+A+Label")
    assert unused.status_code == 200 and "No tickets match these filters." in text(unused)
    assert client.get("/tickets?view=all&priority=P9").status_code == 422


def test_queue_filters_by_type_label_and_requesting_team(client, db):
    ada = person(db)
    make_team(db, slug="checkout", lead=ada)
    dns = make_ticket(db, ada, type="dns-certificate", title="Certificate")
    other = make_ticket(db, ada, title="Database")
    sign_in(client, ada)
    post(
        client,
        "/tickets",
        csrf_in(client.get("/tickets/new").text),
        type="capacity",
        title="More disk",
        labels="storage",
    )
    assert table_ids(client.get("/tickets?view=all&type=dns-certificate")) == [dns]
    labelled = client.get("/tickets?view=all&label=storage")
    assert len(table_ids(labelled)) == 1 and "More disk" in text(labelled)
    by_team = table_ids(client.get("/tickets?view=all&requesting_team=checkout"))
    assert dns in by_team and other in by_team


# -- the life cycle ------------------------------------------------------------------------------
def test_sre_moves_a_ticket_to_done_and_back_to_new_is_refused(client, db):
    sre, ada = person(db, role="sre", email="sam@example.com"), person(db, email="ada@example.com")
    ticket_id = make_ticket(db, ada)
    csrf = sign_in(client, sre)
    page = client.get(f"/tickets/{ticket_id}")
    assert "Move the ticket" in text(page)
    moves = re.findall(r'name="status" value="([a-z_]+)"', page.text)
    assert moves == ["triaged", "in_progress", "waiting", "done", "rejected"]
    for status, shown in [("triaged", "triaged"), ("in_progress", "in progress")]:
        response = post(client, f"/tickets/{ticket_id}/transitions", csrf, status=status)
        assert response.status_code == 303
        assert f"Ticket #{ticket_id} is now {shown}." in text(
            client.get(response.headers["location"])
        )
    done = post(
        client,
        f"/tickets/{ticket_id}/transitions",
        csrf,
        status="done",
        resolution="automated",
        note="Done by the *provisioner*.",
    )
    assert done.status_code == 303
    page = client.get(f"/tickets/{ticket_id}")
    assert "Sam moved it from In progress to Done" in text(page)
    assert "Done by the <em>provisioner</em>." in page.text  # the note, on the timeline
    assert "Resolution automated" in text(page)
    assert re.findall(r'name="status" value="([a-z_]+)"', page.text) == ["in_progress"]

    refused = post(client, f"/tickets/{ticket_id}/transitions", csrf, status="new")
    assert refused.status_code == 409
    assert f"ticket #{ticket_id} is done; it can move to in_progress, not new" in text(refused)
    assert 'id="f-status-error"' in refused.text
    assert ticket_row(db, ticket_id).status == "done"


def test_assignment_priority_and_labels_and_assign_to_me(client, db):
    sre, colleague = person(db, role="sre"), person(db, email="lin@example.com")
    make_team(db, slug="platform", lead=colleague)
    ticket_id = make_ticket(db, colleague)
    csrf = sign_in(client, sre)
    mine = post(client, f"/tickets/{ticket_id}/update", csrf, assignee=sre.email)
    assert mine.status_code == 303 and ticket_row(db, ticket_id).assignee_user_id == sre.id
    response = post(
        client,
        f"/tickets/{ticket_id}/update",
        csrf,
        assignee="lin@example.com",
        team="platform",
        priority="P1",
        labels="urgent, db",
    )
    assert response.status_code == 303
    ticket = ticket_row(db, ticket_id)
    assert (ticket.assignee_user_id, ticket.priority, ticket.labels) == (
        colleague.id,
        "P1",
        ["db", "urgent"],
    )
    assert ticket.first_response_due_at is not None
    assert ticket.first_response_due_at - ticket.created_at == dt.timedelta(minutes=15)
    unknown = post(client, f"/tickets/{ticket_id}/update", csrf, assignee="ghost@example.com")
    assert unknown.status_code == 422 and 'id="f-assignee-error"' in unknown.text
    assert 'value="ghost@example.com"' in unknown.text


def test_requester_comments_but_cannot_move_the_ticket(client, db):
    ada = person(db, email="ada@example.com")
    ticket_id = make_ticket(db, ada)
    csrf = sign_in(client, ada)
    page = client.get(f"/tickets/{ticket_id}")
    assert "Add a comment" in text(page) and "Move the ticket" not in text(page)
    assert "Log work" not in text(page)
    response = post(client, f"/tickets/{ticket_id}/comments", csrf, body="Any news? `psql` works.")
    assert response.status_code == 303
    page = client.get(f"/tickets/{ticket_id}")
    assert "Your comment was added." in text(page) and "Ada commented" in text(page)
    assert "<code>psql</code>" in page.text
    empty = post(client, f"/tickets/{ticket_id}/comments", csrf, body="   ")
    assert empty.status_code == 422 and 'id="f-body-error"' in empty.text
    moved = post(client, f"/tickets/{ticket_id}/transitions", csrf, status="done")
    assert moved.status_code == 403 and ticket_row(db, ticket_id).status == "new"


def test_work_log_is_typed_in_the_viewers_time_zone_and_stored_in_utc(client, db):
    zone = zoneinfo.ZoneInfo("America/New_York")
    sre, ada = person(db, role="sre", time_zone="America/New_York"), person(db)
    ticket_id = make_ticket(db, ada)
    csrf = sign_in(client, sre)
    page = client.get(f"/tickets/{ticket_id}")
    assert "Your time (America/New_York); saved in UTC." in text(page)
    local_now = found(
        r'id="f-logged_at" name="logged_at" type="datetime-local" value="([^"]+)"', page.text
    )
    assert abs(
        dt.datetime.fromisoformat(local_now.group(1))
        - utcnow().astimezone(zone).replace(tzinfo=None)
    ) < dt.timedelta(minutes=2)
    when = (utcnow() - dt.timedelta(days=2)).astimezone(zone).replace(second=0, microsecond=0)
    response = post(
        client,
        f"/tickets/{ticket_id}/work-logs",
        csrf,
        minutes="45",
        logged_at=when.strftime("%Y-%m-%dT%H:%M"),
        work_note="Created the database",
    )
    assert response.status_code == 303
    with db.transaction() as session:
        entry = session.scalars(sa.select(WorkLog)).one()
        assert entry.logged_at == when.astimezone(dt.UTC) and entry.minutes == 45
    page = client.get(f"/tickets/{ticket_id}")
    assert "45m of work logged" in text(page) and "logged 45m of work" in text(page)
    assert "Created the database" in text(page)
    future = (utcnow() + dt.timedelta(days=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    for data, field, message in [
        ({"minutes": "ten"}, "minutes", "enter whole minutes"),
        ({"minutes": "2000"}, "minutes", "between 1 and 1440 minutes"),
        ({"minutes": "5", "logged_at": future}, "logged_at", "cannot be logged in the future"),
        ({"minutes": "5", "logged_at": "yesterday"}, "logged_at", "enter a date and time like"),
    ]:
        refused = post(client, f"/tickets/{ticket_id}/work-logs", csrf, **data)
        assert refused.status_code == 422 and f'id="f-{field}-error"' in refused.text
        assert message in text(refused)
    assert count(db, WorkLog) == 1 and ticket_row(db, ticket_id).effort_minutes == 45


def test_outsiders_and_viewers_get_403_and_nothing_changes(client, db):
    lead, ada = person(db), person(db)
    outsider, viewer = person(db), person(db, role="viewer")
    make_team(db, slug="platform", lead=lead)
    make_team(db, slug="elsewhere", lead=outsider)
    ticket_id = make_ticket(db, ada, team="platform")
    with db.transaction() as session:
        audited = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    for who in (outsider, viewer):
        csrf = sign_in(client, who)
        page = client.get(f"/tickets/{ticket_id}")
        assert page.status_code == 200
        assert "Move the ticket" not in text(page) and "Add a comment" not in text(page)
        for path, data in [
            ("transitions", {"status": "triaged"}),
            ("update", {"priority": "P1"}),
            ("comments", {"body": "hello"}),
            ("work-logs", {"minutes": "5"}),
        ]:
            response = post(client, f"/tickets/{ticket_id}/{path}", csrf, **data)
            assert response.status_code == 403, (who.email, path)
    ticket = ticket_row(db, ticket_id)
    assert (ticket.status, ticket.priority, ticket.effort_minutes) == ("new", "P3", 0)
    assert count(db, Comment) == 0 and count(db, WorkLog) == 0
    with db.transaction() as session:  # only the sign-ins were audited
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == audited + 2
    csrf = sign_in(client, lead)  # the assigned team's lead may
    assert (
        post(client, f"/tickets/{ticket_id}/transitions", csrf, status="triaged").status_code == 303
    )


def test_missing_ticket_is_a_404_page(client, db):
    csrf = sign_in(client, person(db, role="sre"))
    assert client.get("/tickets/999").status_code == 404
    assert post(client, "/tickets/999/transitions", csrf, status="triaged").status_code == 404


# -- request types -------------------------------------------------------------------------------
def test_sre_edits_a_request_type_and_creates_one(client, db):
    sre = person(db, role="sre")
    make_team(db, slug="dba", lead=sre)
    csrf = sign_in(client, sre)
    page = client.get("/tickets/types")
    assert "Provision a database and its credentials." in text(page)
    assert 'href="/tickets/types?edit=database#type-form"' in page.text
    form = client.get("/tickets/types?edit=database")
    assert (
        "Edit Database" in text(form)
        and 'value="1h 30m"' in form.text
        and 'value="15m"' in form.text
    )
    values = {
        "name": "Database",
        "description": "Postgres or MySQL, with backups.",
        "default_team": "dba",
        "expected_effort": "2h",
        "is_active": "on",
        **{f"p{n}_first": "1h" for n in range(1, 5)},
        **{f"p{n}_done": "3d" for n in range(1, 5)},
    }
    bad = post(
        client,
        "/tickets/types/database",
        csrf,
        **values | {"p1_first": "soon", "expected_effort": "0"},
    )
    assert bad.status_code == 422
    assert 'id="f-p1_first-error"' in bad.text and 'value="soon"' in bad.text
    assert 'id="f-expected_effort-error"' in bad.text and "between 1 minute and 30 days" in text(
        bad
    )
    saved = post(client, "/tickets/types/database", csrf, **values)
    assert saved.status_code == 303
    assert "Request type Database saved." in text(client.get("/tickets/types"))
    with db.transaction() as session:
        database = session.scalars(
            sa.select(RequestType).where(RequestType.slug == "database")
        ).one()
        assert database.expected_effort_minutes == 120 and database.default_team_id is not None
        assert database.targets["P1"] == {"first_response_minutes": 60, "done_minutes": 3 * 24 * 60}
    ticket_id = int(
        post(client, "/tickets", csrf, type="database", title="x")
        .headers["location"]
        .rsplit("/", 1)[1]
    )
    assert ticket_row(db, ticket_id).assignee_team_id == database.default_team_id

    created = post(
        client, "/tickets/types", csrf, **values | {"slug": "kafka-acl", "name": "Kafka ACL"}
    )
    assert created.status_code == 303
    assert "Kafka ACL" in text(client.get("/tickets/new"))
    again = post(client, "/tickets/types", csrf, **values | {"slug": "kafka-acl", "name": "Again"})
    assert again.status_code == 409 and 'id="f-slug-error"' in again.text


def test_members_read_request_types_but_cannot_change_them(client, db):
    member = person(db)
    csrf = sign_in(client, member)
    page = client.get("/tickets/types")
    assert page.status_code == 200 and "Database" in text(page)
    assert "?edit=" not in page.text and "New request type" not in text(page)
    assert client.get("/tickets/types?edit=database").status_code == 403
    values = {
        "name": "Hijacked",
        "expected_effort": "1m",
        **{f"p{n}_{k}": "1m" for n in range(1, 5) for k in ("first", "done")},
    }
    assert post(client, "/tickets/types/database", csrf, **values).status_code == 403
    assert post(client, "/tickets/types", csrf, slug="rogue", **values).status_code == 403
    with db.transaction() as session:
        names = set(session.scalars(sa.select(RequestType.name)))
    assert "Hijacked" not in names and "rogue" not in {n.lower() for n in names}


# -- inbox ---------------------------------------------------------------------------------------
def test_requester_sees_the_status_change_in_the_inbox_and_marks_it_read(client, db):
    sre, ada = person(db, role="sre"), person(db, email="ada@example.com")
    ticket_id = make_ticket(db, ada, title="Certificate renewal")
    csrf = sign_in(client, sre)
    post(client, f"/tickets/{ticket_id}/transitions", csrf, status="triaged")
    post(client, f"/tickets/{ticket_id}/transitions", csrf, status="done")

    csrf = sign_in(client, ada)
    assert '<span id="inbox-count" class="inbox-count">2<' in client.get("/inbox/count").text
    page = client.get("/inbox")
    assert "You have 2 unread notices." in text(page)
    notices = re.findall(r'<li class="tk-notice is-unread" id="notice-(\d+)"', page.text)
    assert len(notices) == 2
    assert f"Ticket #{ticket_id} is now done Certificate renewal" in text(page)  # newest first
    assert text(page).index("is now done") < text(page).index("is now triaged")
    assert f'href="/tickets/{ticket_id}"' in page.text

    newest, older = notices
    response = post(client, f"/inbox/{newest}/read", csrf, next="/inbox")
    assert response.status_code == 303 and response.headers["location"] == "/inbox"
    page = client.get("/inbox")
    assert "marked read" in text(page) and "You have 1 unread notice." in text(page)
    assert re.findall(r'<li class="tk-notice is-unread" id="notice-(\d+)"', page.text) == [older]
    assert re.findall(r'id="notice-(\d+)"', client.get("/inbox?show=unread").text) == [older]

    swapped = client.post(f"/inbox/{older}/read", headers={**HTMX, "X-CSRF-Token": csrf})
    assert swapped.status_code == 200
    assert swapped.text.lstrip().startswith(f'<li class="tk-notice" id="notice-{older}"')
    assert 'id="inbox-count" hx-swap-oob="true"' in swapped.text
    assert "You are all caught up." in text(client.get("/inbox"))
    with db.transaction() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(InboxItem).where(InboxItem.read_at.is_(None))
            )
            == 0
        )


def test_nobody_reads_someone_elses_inbox(client, db):
    ada, eve = person(db), person(db)
    with db.transaction() as session:
        from lamplighter.core import inbox

        item_id = inbox.notify(session=session, user_id=ada.id, title="Private").id
    csrf = sign_in(client, eve)
    assert "Private" not in text(client.get("/inbox"))
    assert post(client, f"/inbox/{item_id}/read", csrf).status_code == 403
    client.cookies.clear()
    anonymous = client.get("/inbox/count")
    assert (
        anonymous.status_code == 200
        and "inbox-count" in anonymous.text
        and "<span id" in anonymous.text
    )
    assert client.get("/inbox", follow_redirects=False).status_code == 303


def test_inbox_pages_through_with_a_cursor(client, db):
    ada = person(db)
    with db.transaction() as session:
        from lamplighter.core import inbox

        for n in range(3):
            inbox.notify(
                session=session, user_id=ada.id, title=f"Notice {n}", link="https://evil.example/"
            )
    sign_in(client, ada)
    first = client.get("/inbox?limit=2")
    assert "Notice 2" in text(first) and "Notice 0" not in text(first)
    assert "https://evil.example" not in first.text  # only local links are followed
    older = html.unescape(found(r'href="([^"]+)">Older notices', first.text).group(1))
    assert "Notice 0" in text(client.get(older))
