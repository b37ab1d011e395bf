"""The queue page: titles as links, people by name, ages in one unit, sortable columns,
assignee and requester filters applied as they change (HTMX), and the same through the API."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import User
from lamplighter.tickets import service
from lamplighter.tickets.models import Ticket
from tests.conftest import auth, make_team, make_token
from tests.helpers import HTMX, found, person, sign_in, text


def rename(db: Database, user: User, name: str) -> None:
    with db.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.display_name = name


def make_ticket(
    db: Database,
    requester: User,
    title: str,
    *,
    assignee: User | None = None,
    priority: str = "P3",
    hours_old: float = 0,
    type: str = "database",
) -> int:
    actor = Actor(kind="user", label=requester.email, user_id=requester.id, role=requester.role)
    now = utcnow() - dt.timedelta(hours=hours_old)
    with db.transaction() as session:
        data = service.TicketInput(type=type, title=title, priority=priority)
        ticket = service.create(session=session, actor=actor, data=data, now=now)
        ticket.assignee_user_id = assignee.id if assignee else None
        return ticket.id


def rows(response: Any) -> list[str]:
    """The titles of the queue's rows, in order."""
    body = found(r"<tbody>(.*?)</tbody>", response.text, re.S).group(1)
    return [html.unescape(t) for t in re.findall(r'<a href="/tickets/\d+">([^<]+)</a>', body)]


def cells(response: Any, label: str) -> list[str]:
    """The visible text of one column's cells, in row order."""
    found_cells = re.findall(
        rf'<td data-label="{re.escape(label)}"[^>]*>(.*?)</td>', response.text, re.S
    )
    return [text(c) for c in found_cells]


@pytest.fixture
def desk(db: Database) -> dict[str, User]:
    """An SRE with a name, a colleague known only by email, and two requesters."""
    sam = person(db, role="sre", email="sam@example.com")
    rename(db, sam, "Sam Okafor")
    nameless = person(db, role="sre", email="zed@example.com")
    rename(db, nameless, "")
    ada = person(db, email="ada@example.com")
    rename(db, ada, "Ada Lovelace")
    bob = person(db, email="bob@example.com")
    rename(db, bob, "Bob Brown")
    make_team(db, slug="platform", lead=sam)
    return {"sam": sam, "zed": nameless, "ada": ada, "bob": bob}


def test_titles_are_links_and_people_show_by_name_or_email(client: TestClient, db, desk) -> None:
    tid = make_ticket(db, desk["ada"], "Postgres for the ledger", assignee=desk["zed"])
    make_ticket(db, desk["bob"], "Kafka topic", assignee=desk["sam"])
    sign_in(client, desk["sam"])
    page = client.get("/tickets?view=all")
    assert page.status_code == 200
    # The whole title is the link, and the number is not a second link to the same place.
    assert f'<a href="/tickets/{tid}">Postgres for the ledger</a>' in page.text
    assert rows(page) == ["Postgres for the ledger", "Kafka topic"]
    assert cells(page, "Ticket") == [f"#{tid}", f"#{tid + 1}"]
    assert cells(page, "Requester / team") == ["Ada Lovelace", "Bob Brown"]
    assert cells(page, "Assignee / team") == ["zed@example.com", "Sam Okafor"]
    assert "ada@example.com" not in text(page)  # the address is only a tooltip


def test_people_are_read_in_one_batch_whatever_the_page_size(client: TestClient, db, desk) -> None:
    requesters = [person(db) for _ in range(6)]
    for index, requester in enumerate(requesters):
        make_ticket(db, requester, f"Request {index}", assignee=desk["sam"])
    sign_in(client, desk["sam"])

    def statements(limit: int) -> int:
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert client.get(f"/tickets?view=all&limit={limit}").status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
        return len(seen)

    assert statements(2) == statements(6)  # no query per ticket or per person


def test_ages_share_one_unit_per_column(client: TestClient, db, desk) -> None:
    make_ticket(db, desk["ada"], "Yesterday-ish", hours_old=45.5)
    make_ticket(db, desk["ada"], "This morning", hours_old=3.2)
    sign_in(client, desk["sam"])
    page = client.get("/tickets?view=all")
    assert cells(page, "Age") == ["45 h", "3 h"]  # all under 48 hours: hours
    rule = found(r'<th scope="col" title="([^"]+)"', page.text).group(1)
    assert "one unit for the whole column" in rule and "days otherwise" in rule

    make_ticket(db, desk["ada"], "Last week", hours_old=24 * 6 + 1)
    page = client.get("/tickets?view=all")
    # One ticket is older than 48 hours: the whole column is in days, never "45 h" beside "6 d".
    assert cells(page, "Age") == ["1 d", "< 1 d", "6 d"]
    opened = found(
        r'<td data-label="Age"[^>]*><time datetime="[^"]+" title="Opened ([^"]+)"', page.text
    )
    assert re.match(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC$", opened.group(1))


def test_every_column_sorts_both_ways_from_its_header(client: TestClient, db, desk) -> None:
    ada, bob, sam, zed = desk["ada"], desk["bob"], desk["sam"], desk["zed"]
    make_ticket(db, bob, "beta", priority="P2", hours_old=10, assignee=sam)
    make_ticket(db, ada, "Alpha", priority="P4", hours_old=30, assignee=zed)
    make_ticket(db, ada, "gamma", priority="P1", hours_old=1, type="other")
    sign_in(client, sam)
    by_number = client.get("/tickets?view=all")
    assert rows(by_number) == ["beta", "Alpha", "gamma"]  # by number, as before

    expected = {
        "title": ["Alpha", "beta", "gamma"],  # case does not matter
        "priority": ["gamma", "beta", "Alpha"],  # P1 first
        "requester": ["Alpha", "gamma", "beta"],  # Ada Lovelace, then Bob Brown
        "assignee": ["beta", "Alpha", "gamma"],  # Sam Okafor, zed@…; unassigned last
        "age": ["gamma", "beta", "Alpha"],  # youngest first
    }
    for sort, order in expected.items():
        page = client.get(f"/tickets?view=all&sort={sort}")
        assert rows(page) == order, sort
        header = found(
            r'<th scope="col" aria-sort="ascending"[^>]*><a[^>]+href="([^"]+)"', page.text
        )
        assert f"sort={sort}&amp;dir=desc" in header.group(1)  # a second click reverses
        descending = client.get(html.unescape(header.group(1)))
        assert 'aria-sort="descending"' in descending.text
        # Unassigned tickets stay last both ways; everything else simply reverses.
        reverse = ["Alpha", "beta", "gamma"] if sort == "assignee" else order[::-1]
        assert rows(descending) == reverse, sort

    with db.transaction() as session:  # a closed ticket has a due time too; sort by it
        ticket = session.scalars(sa.select(Ticket).where(Ticket.title == "beta")).one()
        ticket.done_due_at = utcnow() + dt.timedelta(days=30)
    assert rows(client.get("/tickets?view=all&sort=due"))[-1] == "beta"
    status = client.get("/tickets?view=all&sort=status&dir=desc")
    assert status.status_code == 200 and len(rows(status)) == 3

    bad = client.get("/tickets?view=all&sort=colour")
    assert bad.status_code == 422 and "query.sort" in bad.text
    assert client.get("/tickets?view=all&sort=title&dir=sideways").status_code == 422


def test_sorted_pages_continue_in_order_and_filters_keep_the_sort(
    client: TestClient, db, desk
) -> None:
    for title in ["d", "b", "e", "a", "c"]:
        make_ticket(db, desk["ada"], title)
    sign_in(client, desk["sam"])
    first = client.get("/tickets?view=all&sort=title&limit=2")
    assert rows(first) == ["a", "b"]
    second = client.get(html.unescape(found(r'href="([^"]+)">Next page', first.text).group(1)))
    assert rows(second) == ["c", "d"]
    third = client.get(html.unescape(found(r'href="([^"]+)">Next page', second.text).group(1)))
    assert rows(third) == ["e"] and "Next page" not in third.text
    # The sort rides along with the filter form (hidden fields tied to it) and the tabs.
    assert '<input type="hidden" name="sort" value="title" form="tk-filters">' in first.text
    assert 'href="/tickets?view=triage&amp;sort=title&amp;dir=asc"' in first.text


def test_assignee_and_requester_filters(client: TestClient, db, desk) -> None:
    ada, bob, sam, zed = desk["ada"], desk["bob"], desk["sam"], desk["zed"]
    make_ticket(db, ada, "Mine", assignee=sam)
    make_ticket(db, bob, "Zed's", assignee=zed)
    make_ticket(db, ada, "Nobody's")
    sign_in(client, sam)
    page = client.get("/tickets?view=all")
    # The pickers offer Me, Unassigned and the people tickets are assigned to, by name.
    assert '<option value="me">Me</option><option value="none">Unassigned</option>' in page.text
    assert '<option value="sam@example.com">Sam Okafor</option>' in page.text
    assert '<option value="ada@example.com">Ada Lovelace</option>' in page.text
    assert rows(client.get("/tickets?view=all&assignee=me")) == ["Mine"]
    assert rows(client.get("/tickets?view=all&assignee=none")) == ["Nobody's"]
    assert rows(client.get("/tickets?view=all&assignee=zed@example.com")) == ["Zed's"]
    assert rows(client.get("/tickets?view=all&requester=ada@example.com")) == ["Mine", "Nobody's"]
    both = client.get("/tickets?view=all&requester=ada@example.com&assignee=none&priority=P3")
    assert rows(both) == ["Nobody's"]  # with the older filters too
    assert '<option value="none" selected>Unassigned</option>' in both.text
    unknown = client.get("/tickets?view=all&assignee=ghost@example.com")
    assert unknown.status_code == 422 and "query.assignee" in unknown.text
    assert client.get("/tickets?view=all&requester=none").status_code == 422

    sign_in(client, ada)
    assert rows(client.get("/tickets?view=all&requester=me")) == ["Mine", "Nobody's"]


def test_htmx_gets_only_the_results_to_swap(client: TestClient, db, desk) -> None:
    make_ticket(db, desk["ada"], "Mine", assignee=desk["sam"])
    make_ticket(db, desk["bob"], "Not mine")
    sign_in(client, desk["sam"])
    page = client.get("/tickets?view=all")
    form = found(r'<form id="tk-filters"[^>]*>', page.text).group(0)
    assert 'hx-get="/tickets"' in form and 'hx-target="#tk-results"' in form
    assert 'hx-push-url="true"' in form and 'hx-trigger="change, submit"' in form
    assert '<noscript><button type="submit"' in page.text  # without JavaScript: a button
    fragment = client.get("/tickets?view=all&assignee=me", headers=HTMX)
    assert fragment.status_code == 200
    assert (
        fragment.text.lstrip().startswith('<div id="tk-results"') and "<html" not in fragment.text
    )
    assert rows(fragment) == ["Mine"]


def test_api_lists_sorted_and_filtered_by_person(client: TestClient, db, desk) -> None:
    make_ticket(db, desk["bob"], "b", assignee=desk["sam"])
    make_ticket(db, desk["ada"], "a")
    headers = auth(make_token(db, desk["sam"]))
    listed = client.get("/api/v1/tickets?sort=title&dir=desc", headers=headers).json()
    assert [t["title"] for t in listed["items"]] == ["b", "a"]
    mine = client.get("/api/v1/tickets?assignee=me", headers=headers).json()["items"]
    assert [t["title"] for t in mine] == ["b"]
    asked = client.get("/api/v1/tickets?requester=ada@example.com", headers=headers).json()
    assert [t["title"] for t in asked["items"]] == ["a"]
    bad = client.get("/api/v1/tickets?sort=colour", headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )
    ghost = client.get("/api/v1/tickets?assignee=ghost@example.com", headers=headers)
    assert ghost.status_code == 422 and any(
        e["field"] == "query.assignee" for e in ghost.json()["errors"]
    )


def test_api_team_view_defaults_to_your_first_team_like_the_page(
    client: TestClient, db, desk
) -> None:
    tid = make_ticket(db, desk["ada"], "For the platform team")
    with db.transaction() as session:
        ticket = session.get(Ticket, tid)
        assert ticket is not None
        ticket.assignee_team_id = identity.get_team(session=session, slug="platform").id
    sam = auth(make_token(db, desk["sam"]))  # leads platform
    listed = client.get("/api/v1/tickets?view=team", headers=sam).json()["items"]
    assert [t["title"] for t in listed] == ["For the platform team"]
    loner = auth(make_token(db, desk["bob"]))  # in no team: no team's queue, not an error
    assert client.get("/api/v1/tickets?view=team", headers=loner).json()["items"] == []


def test_sorting_by_a_person_when_nobody_is_named_keeps_the_number_order(
    client: TestClient, db, desk
) -> None:
    first = make_ticket(db, desk["ada"], "one")
    make_ticket(db, desk["ada"], "two")
    sign_in(client, desk["sam"])
    page = client.get("/tickets?view=all&sort=assignee&dir=desc")  # nobody is assigned
    assert page.status_code == 200 and rows(page) == ["two", "one"]
    assert cells(page, "Ticket")[-1] == f"#{first}"
