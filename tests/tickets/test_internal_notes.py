"""Internal notes: SREs and admins write and read them; the requester and other members never
see one, on the ticket page, in the API, in their inbox or in an event's payload."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core import identity, webhooks
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Event, InboxItem, User
from lamplighter.tickets import service
from lamplighter.tickets.models import Comment, Ticket
from tests.conftest import auth, make_team, make_token
from tests.helpers import csrf_in, person, sign_in, text

SECRET = "The root password is hunter2; rotate it after the migration."


@pytest.fixture
def people_(db: Database) -> dict[str, User]:
    sre = person(db, role="sre", email="sam@example.com")
    ada = person(db, email="ada@example.com")  # the requester
    lin = person(db, email="lin@example.com")  # a member of the team the ticket is assigned to
    make_team(db, slug="platform", lead=lin)
    return {"sre": sre, "ada": ada, "lin": lin}


@pytest.fixture
def ticket_id(db: Database, people_: dict[str, User]) -> int:
    ada = people_["ada"]
    actor = Actor(kind="user", label=ada.email, user_id=ada.id, role=ada.role)
    with db.transaction() as session:
        ticket = service.create(
            session=session,
            actor=actor,
            data=service.TicketInput(type="database", title="Postgres for the ledger"),
        )
        ticket.assignee_team_id = identity.get_team(session=session, slug="platform").id
        return ticket.id


def inbox_of(db: Database, user: User) -> list[str]:
    with db.transaction() as session:
        items = session.scalars(sa.select(InboxItem).where(InboxItem.user_id == user.id))
        return [f"{i.title} {i.body}" for i in items]


def test_an_sre_notes_internally_and_the_requester_and_members_never_see_it(
    client: TestClient, db: Database, people_: dict[str, User], ticket_id: int
) -> None:
    csrf = sign_in(client, people_["sre"])
    page = client.get(f"/tickets/{ticket_id}")
    assert "Public reply" in text(page) and "Internal note" in text(page)
    noted = client.post(
        f"/tickets/{ticket_id}/comments",
        data={"body": SECRET, "visibility": "internal", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert noted.status_code == 303
    page = client.get(noted.headers["location"])
    assert "Your internal note was added." in text(page)
    assert "Sam added an internal note Internal" in text(page) and SECRET in text(page)
    assert "tk-comment tk-comment-internal" in page.text  # styled apart from replies
    client.post(
        f"/tickets/{ticket_id}/comments",
        data={"body": "We are on it.", "visibility": "public", "csrf_token": csrf},
    )

    for who in ("ada", "lin"):
        sign_in(client, people_[who])
        seen = client.get(f"/tickets/{ticket_id}")
        assert "We are on it." in text(seen), who
        assert "hunter2" not in seen.text and "internal note" not in text(seen).lower(), who
        assert "Public reply" not in text(seen), who  # no choice offered to them

    # The requester was told of the reply, never of the note.
    assert inbox_of(db, people_["ada"]) == [f"New comment on ticket #{ticket_id} We are on it."]
    # An internal note is no answer to the requester: the first response is the public reply.
    with db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.first_response_at is not None
        note_at = session.scalar(sa.select(Comment.created_at).where(Comment.internal.is_(True)))
        assert note_at is not None and ticket.first_response_at > note_at


def test_members_cannot_write_internal_notes(
    client: TestClient, db: Database, people_: dict[str, User], ticket_id: int
) -> None:
    for who in ("ada", "lin"):
        csrf = sign_in(client, people_[who])
        refused = client.post(
            f"/tickets/{ticket_id}/comments",
            data={"body": "psst", "visibility": "internal", "csrf_token": csrf},
        )
        assert refused.status_code == 403, who
        assert "only SREs and admins may write internal notes" in text(refused)
    csrf = sign_in(client, people_["sre"])
    odd = client.post(
        f"/tickets/{ticket_id}/comments",
        data={"body": "hi", "visibility": "whisper", "csrf_token": csrf_in(client.get("/").text)},
    )
    assert odd.status_code == 422 and 'id="f-visibility"' in odd.text
    assert "choose a public reply or an internal note" in text(odd)
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Comment)) == 0


def test_the_api_hides_internal_notes_from_the_requester(
    client: TestClient, db: Database, people_: dict[str, User], ticket_id: int
) -> None:
    sre = auth(make_token(db, people_["sre"]))
    ada = auth(make_token(db, people_["ada"]))
    lin = auth(make_token(db, people_["lin"]))
    path = f"/api/v1/tickets/{ticket_id}/comments"

    refused = client.post(path, json={"body": "psst", "internal": True}, headers=lin)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "internal notes" in refused.json()["detail"]
    bad = client.post(path, json={"body": "x", "internal": "perhaps"}, headers=sre)
    assert bad.status_code == 422 and "internal" in bad.text

    note = client.post(path, json={"body": SECRET, "internal": True}, headers=sre)
    assert note.status_code == 201 and note.json()["internal"] is True
    reply = client.post(path, json={"body": "Soon."}, headers=sre)
    assert reply.json()["internal"] is False

    assert [c["body"] for c in client.get(path, headers=sre).json()["items"]] == [SECRET, "Soon."]
    for headers in (ada, lin):
        assert [c["body"] for c in client.get(path, headers=headers).json()["items"]] == ["Soon."]
        detail = client.get(f"/api/v1/tickets/{ticket_id}", headers=headers).json()
        assert [c["body"] for c in detail["comments"]] == ["Soon."]
        assert "hunter2" not in client.get(f"/api/v1/tickets/{ticket_id}", headers=headers).text
    full = client.get(f"/api/v1/tickets/{ticket_id}", headers=sre).json()
    assert [c["internal"] for c in full["comments"]] == [True, False]


def test_the_event_says_internal_and_carries_no_body(
    db: Database, people_: dict[str, User], ticket_id: int
) -> None:
    sre = people_["sre"]
    actor = Actor(kind="user", label=sre.email, user_id=sre.id, role="sre")
    with db.transaction() as session:
        note = service.add_comment(
            session=session, actor=actor, ticket_id=ticket_id, body=SECRET, internal=True
        )
    with db.transaction() as session:
        event = session.scalars(sa.select(Event).where(Event.type == "ticket.commented")).one()
        assert event.payload == {"id": ticket_id, "comment_id": note.id, "internal": True}
        # What a webhook subscriber would receive: the ids, never the note.
        assert b"hunter2" not in webhooks.event_body(event)
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "ticket.comment")
        ).one()
        assert "internal" in str(entry.diff) and "hunter2" not in str(entry.diff)
    assert inbox_of(db, people_["ada"]) == []


def test_an_admin_reads_internal_notes(
    client: TestClient, db: Database, people_: dict[str, User], ticket_id: int
) -> None:
    admin = auth(make_token(db, person(db, role="admin")))
    sre = auth(make_token(db, people_["sre"]))
    path = f"/api/v1/tickets/{ticket_id}/comments"
    client.post(path, json={"body": SECRET, "internal": True}, headers=sre)
    listed: list[dict[str, Any]] = client.get(path, headers=admin).json()["items"]
    assert [c["body"] for c in listed] == [SECRET]
