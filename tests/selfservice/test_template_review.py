"""Approval cannot be bypassed by writing one's own template: a member's template using a
privileged action is a draft until the platform team approves it, and a run waits for the
strictest of the template's approval and its actions' minimum."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import SecretStr

from lamplighter.core.db import Database
from lamplighter.core.models import Event
from lamplighter.selfservice import golden
from lamplighter.selfservice.models import Run
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user

SELF_MADE = """
name: quick-db
title: A database, no questions asked
owner: payments
approval: none
parameters:
  type: object
  properties: {database: {type: string}}
steps:
  - id: db
    action: postgres.database
    input: {database: "${{ parameters.database }}"}
"""


def org(db: Database) -> dict[str, dict[str, str]]:
    lead = make_user(db, email="lead@example.com")
    dev = make_user(db, email="dev@example.com")
    sre = make_user(db, email="sre@example.com", role="sre")
    make_team(db, slug="payments", lead=lead, members=[dev])
    return {name: auth(make_token(db, user)) for name, user in [("dev", dev), ("sre", sre)]}


def runs_of(db: Database) -> list[Run]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Run)))


def event_types(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Event.type).order_by(Event.id)))


def test_a_members_privileged_template_waits_for_review_before_it_can_run(
    client: Any, db: Database
) -> None:
    tokens = org(db)
    created = client.post("/api/v1/templates", json={"yaml": SELF_MADE}, headers=tokens["dev"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["version"], body["draft_pending"], body["steps"]) == (0, True, [])
    assert body["draft"]["privileged_actions"] == ["postgres.database"]
    assert body["draft"]["submitted_by"] == "dev@example.com"
    assert "selfservice.template.draft_submitted" in event_types(db)

    start = client.post(
        "/api/v1/templates/quick-db/runs",
        json={"parameters": {"database": "mine"}},
        headers=tokens["dev"],
    )
    assert start.status_code == 409, start.text
    assert "review" in start.json()["detail"]
    assert runs_of(db) == []

    # Only the platform team reviews; the author cannot approve their own draft.
    refused = client.post("/api/v1/templates/quick-db/draft/approve", headers=tokens["dev"])
    assert refused.status_code == 403
    approved = client.post("/api/v1/templates/quick-db/draft/approve", headers=tokens["sre"])
    assert approved.status_code == 200, approved.text
    published = approved.json()
    assert (published["version"], published["draft"], published["published_by"]) == (
        1,
        None,
        "sre@example.com",
    )
    assert published["effective_approval"] == "team-lead"
    assert "selfservice.template.created" in event_types(db)

    # Published, it still cannot run where no PostgreSQL server is configured: it says which
    # setting enables it, and nothing is queued.
    start = client.post(
        "/api/v1/templates/quick-db/runs",
        json={"parameters": {"database": "mine"}},
        headers=tokens["dev"],
    )
    assert start.status_code == 422, start.text
    assert "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL" in start.json()["detail"]
    assert runs_of(db) == []
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"selfservice_postgres_admin_url": SecretStr("postgresql://admin@db.invalid/x")}
    )

    # Even published, approval: none does not skip the database's minimum approval.
    start = client.post(
        "/api/v1/templates/quick-db/runs",
        json={"parameters": {"database": "mine"}},
        headers=tokens["dev"],
    )
    assert start.status_code == 201, start.text
    assert start.json()["status"] == "awaiting_approval"


def test_a_change_to_a_privileged_template_is_a_draft_beside_the_published_version(
    client: Any, db: Database
) -> None:
    tokens = org(db)
    client.post("/api/v1/templates", json={"yaml": SELF_MADE}, headers=tokens["sre"])
    changed = yaml.safe_load(SELF_MADE)
    changed["steps"][0]["input"]["owner_role"] = "postgres_admin"
    put = client.put(
        "/api/v1/templates/quick-db", json={"yaml": yaml.safe_dump(changed)}, headers=tokens["dev"]
    )
    assert put.status_code == 200, put.text
    shown = client.get("/api/v1/templates/quick-db", headers=tokens["dev"]).json()
    assert shown["version"] == 1
    assert "owner_role" not in shown["steps"][0]["input"]
    assert shown["draft"]["definition"]["steps"][0]["input"]["owner_role"] == "postgres_admin"

    no_reason = client.post("/api/v1/templates/quick-db/draft/reject", headers=tokens["sre"])
    assert no_reason.status_code == 422
    rejected = client.post(
        "/api/v1/templates/quick-db/draft/reject",
        json={"reason": "no admin roles"},
        headers=tokens["sre"],
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["version"], rejected.json()["draft"]) == (1, None)
    assert event_types(db)[-1] == "selfservice.template.draft_rejected"
    again = client.post("/api/v1/templates/quick-db/draft/approve", headers=tokens["sre"])
    assert again.status_code == 409


def test_template_responses_name_no_server_path(client: Any, db: Database, settings: Any) -> None:
    tokens = org(db)
    with db.transaction() as session:
        golden.load_golden(session=session, actor=SYSTEM, owner="payments", settings=settings)
    listed = client.get("/api/v1/templates", headers=tokens["dev"]).json()["items"]
    paths = {t["name"]: t["source_path"] for t in listed}
    assert paths["access"] == "access.yaml"
    detail = client.get("/api/v1/templates/access", headers=tokens["dev"]).text
    assert str(golden.GOLDEN_DIR) not in detail
