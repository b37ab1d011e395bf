"""Ticket REST API: intake, transitions, comments, work logs, queues, request types, inbox."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.tickets.models import Ticket
from tests.conftest import auth, make_team, make_token, make_user


@pytest.fixture
def org(db: Any) -> dict[str, Any]:
    sre = make_user(db, email="sre@example.com", role="sre")
    dev = make_user(db, email="dev@example.com")
    make_team(db, slug="sre", lead=sre)
    make_team(db, slug="payments", lead=dev)
    return {"sre": auth(make_token(db, sre)), "dev": auth(make_token(db, dev))}


def _tickets(db: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Ticket)) or 0)


def test_full_journey(client: Any, db: Any, org: dict[str, Any]) -> None:
    types = client.get("/api/v1/ticket-types", headers=org["dev"]).json()["items"]
    assert {"new-repository", "database", "access-grant", "incident-follow-up", "other"} <= {
        t["slug"] for t in types
    }
    assert len(types) == 10
    client.put(
        "/api/v1/ticket-types/database",
        json={"name": "Database", "default_team": "sre", "expected_effort_minutes": 90},
        headers=org["sre"],
    )
    created = client.post(
        "/api/v1/tickets",
        json={
            "type": "database",
            "title": "Postgres for ledger",
            "priority": "P2",
            "labels": ["pci"],
        },
        headers=org["dev"],
    )
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert (ticket["status"], ticket["team"], ticket["requester"], ticket["requesting_team"]) == (
        "new",
        "sre",
        "dev@example.com",
        "payments",
    )
    tid = ticket["id"]
    # The create response is what a read returns: the same history, not a partial view.
    assert client.get(f"/api/v1/tickets/{tid}", headers=org["dev"]).json() == ticket
    assert [c["to_status"] for c in ticket["status_changes"]] == ["new"]
    triage = client.get("/api/v1/tickets", params={"view": "triage"}, headers=org["sre"]).json()
    assert [t["id"] for t in triage["items"]] == [tid]
    assert (
        client.post(
            f"/api/v1/tickets/{tid}/transitions", json={"status": "in_progress"}, headers=org["sre"]
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/v1/tickets/{tid}/work-logs",
            json={"minutes": 50, "note": "created db"},
            headers=org["sre"],
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/api/v1/tickets/{tid}/comments",
            json={"body": "Done, credentials in vault"},
            headers=org["sre"],
        ).status_code
        == 201
    )
    done = client.post(
        f"/api/v1/tickets/{tid}/transitions", json={"status": "done"}, headers=org["sre"]
    ).json()
    assert (done["status"], done["resolution"], done["effort_minutes"]) == ("done", "manual", 50)
    assert [c["to_status"] for c in done["status_changes"]] == ["new", "in_progress", "done"]
    assert [c["body"] for c in done["comments"]] == ["Done, credentials in vault"]
    back = client.post(
        f"/api/v1/tickets/{tid}/transitions", json={"status": "new"}, headers=org["sre"]
    )
    assert back.status_code == 409 and "not new" in back.json()["detail"]
    notices = client.get("/api/v1/inbox", params={"unread": True}, headers=org["dev"]).json()[
        "items"
    ]
    assert [n["title"] for n in notices][:2] == [
        f"Ticket #{tid} is now done",
        f"New comment on ticket #{tid}",
    ]
    read = client.post(f"/api/v1/inbox/{notices[0]['id']}/read", headers=org["dev"])
    assert read.status_code == 200 and read.json()["read_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "espresso", "title": "x"}, "body.type"),
        ({"type": "database"}, "body.title"),
        ({"type": "database", "title": "x", "priority": "P9"}, "body.priority"),
        ({"type": "database", "title": "x", "entity": "service:ghost"}, "body.entity"),
        ({"type": "database", "title": "x", "requesting_team": "ghosts"}, "body.requesting_team"),
        ({"type": "database", "title": "x", "colour": "red"}, "body.colour"),
        ({"type": "database", "title": ["x"]}, "body.title"),
    ],
)
def test_bad_intake_names_the_field(
    client: Any, db: Any, org: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/tickets", json=body, headers=org["dev"])
    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    assert _tickets(db) == 0


def test_bad_work_logs_and_types(client: Any, db: Any, org: dict[str, Any]) -> None:
    tid = client.post(
        "/api/v1/tickets", json={"type": "other", "title": "Help"}, headers=org["dev"]
    ).json()["id"]
    for minutes in (-10, 0, 100_000):
        response = client.post(
            f"/api/v1/tickets/{tid}/work-logs", json={"minutes": minutes}, headers=org["sre"]
        )
        assert (
            response.status_code == 422 and response.json()["errors"][0]["field"] == "body.minutes"
        )
    bad_targets = client.put(
        "/api/v1/ticket-types/other",
        json={
            "name": "Other",
            "targets": {"P1": {"first_response_minutes": -1, "done_minutes": 5}},
        },
        headers=org["sre"],
    )
    assert bad_targets.status_code == 422
    assert bad_targets.json()["errors"][0]["field"] == "body.targets.P1.first_response_minutes"
    assert (
        client.put(
            "/api/v1/ticket-types/other", json={"name": "Mine now"}, headers=org["dev"]
        ).status_code
        == 403
    )
