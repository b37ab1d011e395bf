"""Teams as a hierarchy: the walks up and down the tree (safe on cycles in imported data),
placing teams under others, and teams without a lead in the API, the pages and approvals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import identity, inbox
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.errors import Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry, Team, TeamMember, User
from lamplighter.selfservice import grants, runs, templates
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user
from tests.helpers import person, sign_in, text

# -- helpers ---------------------------------------------------------------------------------


def lose_lead(db: Database, slug: str) -> None:
    """What an import of a Group without members leaves behind: a team with no lead."""
    with db.transaction() as session:
        team = identity.get_team(session=session, slug=slug)
        lead_id = team.lead_user_id
        team.lead_user_id = None
        session.delete(session.get(TeamMember, (team.id, lead_id)))


def set_parent_ids(db: Database, parents: dict[str, str | None]) -> None:
    """Write parent links straight into the rows, as an import may: no checks, cycles possible."""
    with db.transaction() as session:
        ids = {t.slug: t.id for t in session.scalars(sa.select(Team))}
        for slug, parent in parents.items():
            team = session.get(Team, ids[slug])
            assert team is not None
            team.parent_id = ids[parent] if parent else None


def slugs(teams: list[Team]) -> list[str]:
    return [team.slug for team in teams]


def slugs_of_ids(db: Database, ids: list[int]) -> list[str]:
    with db.sessionmaker() as session:
        by_id = {t.id: t.slug for t in session.scalars(sa.select(Team))}
    return [by_id[i] for i in ids]


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


def section(response: Any, element_id: str) -> str:
    match = re.search(
        rf'<(section|div) class="[^"]*" id="{element_id}".*?</\1>', response.text, re.S
    )
    assert match, f"the page has no #{element_id}"
    return match.group(0)


@pytest.fixture
def org(db: Database) -> dict[str, User]:
    """acme (organization) > payments (department) > checkout and ledger (teams) > squad."""
    people = {
        name: person(db, f"{name}@example.com")
        for name in ("olga", "pat", "cher", "leda", "sam", "dev")
    }
    make_team(db, slug="acme", lead=people["olga"], type="organization")
    make_team(db, slug="payments", lead=people["pat"], type="department", parent="acme")
    make_team(db, slug="ledger", lead=people["leda"], parent="payments")
    make_team(db, slug="checkout", lead=people["cher"], parent="payments")
    make_team(db, slug="squad", lead=people["sam"], parent="checkout")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug="checkout", email="dev@example.com")
    return people


# -- walking the tree ----------------------------------------------------------------------------
def test_children_ancestors_and_subtree_follow_the_tree(db: Database, org: dict[str, User]) -> None:
    with db.sessionmaker() as session:
        ids = {t.slug: t.id for t in session.scalars(sa.select(Team))}
        assert slugs(identity.children_of(session=session, team_id=ids["payments"])) == [
            "checkout",
            "ledger",
        ]  # by name
        assert identity.children_of(session=session, team_id=ids["squad"]) == []
        assert slugs(identity.ancestors_of(session=session, team_id=ids["squad"])) == [
            "checkout",
            "payments",
            "acme",
        ]  # nearest first
        assert identity.ancestors_of(session=session, team_id=ids["acme"]) == []
        department = identity.subtree_ids(session=session, team_id=ids["payments"])
        assert identity.subtree_ids(session=session, team_id=ids["squad"]) == [ids["squad"]]
        assert identity.subtree_ids(session=session, team_id=999_999) == []
    assert department[0] == ids["payments"]  # the team itself first
    assert sorted(slugs_of_ids(db, department)) == ["checkout", "ledger", "payments", "squad"]


def test_walks_end_when_imported_data_holds_a_cycle(db: Database) -> None:
    lead = make_user(db)
    for slug in ("red", "green", "blue", "loner"):
        make_team(db, slug=slug, lead=lead)
    # red > green > blue > red, and a team that is its own parent.
    set_parent_ids(db, {"red": "green", "green": "blue", "blue": "red", "loner": "loner"})
    with db.sessionmaker() as session:
        ids = {t.slug: t.id for t in session.scalars(sa.select(Team))}
        assert slugs(identity.ancestors_of(session=session, team_id=ids["red"])) == [
            "green",
            "blue",
        ]
        ring = identity.subtree_ids(session=session, team_id=ids["red"])
        assert identity.ancestors_of(session=session, team_id=ids["loner"]) == []
        assert identity.subtree_ids(session=session, team_id=ids["loner"]) == [ids["loner"]]
        for slug in ("red", "green", "blue"):
            identity.get_team(session=session, slug=slug).lead_user_id = None
        assert identity.nearest_lead(session=session, team_id=ids["red"]) is None
    assert ring[0] == ids["red"] and sorted(slugs_of_ids(db, ring)) == ["blue", "green", "red"]


def test_nearest_lead_is_the_teams_own_else_the_closest_one_above(
    db: Database, org: dict[str, User]
) -> None:
    lose_lead(db, "checkout")
    lose_lead(db, "squad")
    with db.sessionmaker() as session:
        ids = {t.slug: t.id for t in session.scalars(sa.select(Team))}

        def lead_of(slug: str) -> str | None:
            found = identity.nearest_lead(session=session, team_id=ids[slug])
            return found.email if found else None

        assert lead_of("ledger") == "leda@example.com"  # its own
        assert lead_of("checkout") == "pat@example.com"  # the department's
        assert lead_of("squad") == "pat@example.com"  # two levels up
    lose_lead(db, "payments")
    with db.sessionmaker() as session:
        squad = identity.get_team(session=session, slug="squad")
        found = identity.nearest_lead(session=session, team_id=squad.id)
        assert found is not None and found.email == "olga@example.com"


# -- placing teams -------------------------------------------------------------------------------
def test_a_team_is_created_within_another_and_moved_but_never_into_a_cycle(
    db: Database, org: dict[str, User]
) -> None:
    with db.sessionmaker() as session:
        payments = identity.get_team(session=session, slug="payments")
        assert (payments.type, payments.parent_id) == (
            "department",
            identity.get_team(session=session, slug="acme").id,
        )
    refusals = {
        "squad": "squad is within payments; that would make a cycle",
        "payments": "cannot be its own parent",
        "ghosts": "no team with slug 'ghosts'",
    }
    for parent, reason in refusals.items():
        with db.transaction() as session, pytest.raises(ValidationFailed) as refused:
            identity.update_team(session=session, actor=SYSTEM, slug="payments", parent=parent)
        assert [e.field for e in refused.value.errors] == ["body.parent"]
        assert reason in refused.value.errors[0].reason, parent
    with db.transaction() as session:
        identity.update_team(
            session=session, actor=SYSTEM, slug="ledger", parent="acme", type="department"
        )
    with db.transaction() as session:
        ledger = identity.get_team(session=session, slug="ledger")
        payments = identity.get_team(session=session, slug="payments")
        assert slugs(identity.children_of(session=session, team_id=payments.id)) == ["checkout"]
        assert slugs(identity.ancestors_of(session=session, team_id=ledger.id)) == ["acme"]
        assert ledger.type == "department"
        entry = session.scalars(
            sa.select(AuditEntry)
            .where(AuditEntry.action == "team.update", AuditEntry.object_id == "ledger")
            .order_by(AuditEntry.id.desc())
        ).first()
        assert entry is not None
        assert entry.diff["before"]["parent_id"] == payments.id
        assert entry.diff["after"]["parent_id"] == ledger.parent_id
        identity.update_team(session=session, actor=SYSTEM, slug="ledger", parent="")
        assert identity.ancestors_of(session=session, team_id=ledger.id) == []
    with db.transaction() as session, pytest.raises(ValidationFailed) as blank:
        identity.update_team(session=session, actor=SYSTEM, slug="ledger", type="  ")
    assert blank.value.errors[0].field == "body.type"


def test_placing_a_team_within_another_needs_rights_on_both(
    db: Database, org: dict[str, User]
) -> None:
    outsider_lead = make_user(db)
    make_team(db, slug="growth", lead=outsider_lead)
    growth_lead = actor_of(db, outsider_lead)
    with db.transaction() as session, pytest.raises(Forbidden):
        identity.update_team(session=session, actor=growth_lead, slug="growth", parent="payments")
    pat = actor_of(db, org["pat"])  # leads payments, not growth
    with db.transaction() as session, pytest.raises(Forbidden):
        identity.update_team(session=session, actor=pat, slug="growth", parent="payments")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug="growth", email=org["pat"].email)
    with db.transaction() as session:
        identity.update_team(
            session=session, actor=actor_of(db, org["pat"]), slug="growth", parent="payments"
        )
    with db.sessionmaker() as session:
        growth = identity.get_team(session=session, slug="growth")
        assert slugs(identity.ancestors_of(session=session, team_id=growth.id)) == [
            "payments",
            "acme",
        ]


# -- the API -------------------------------------------------------------------------------------
def test_team_api_reads_type_parent_children_and_a_missing_lead(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    lose_lead(db, "payments")
    token = make_token(db, make_user(db, role="viewer"))  # everyone signed in may read
    department = client.get("/api/v1/teams/payments", headers=auth(token))
    assert department.status_code == 200, department.text
    body = department.json()
    assert (body["type"], body["parent"], body["children"], body["lead"]) == (
        "department",
        "acme",
        ["checkout", "ledger"],
        None,
    )
    squad = client.get("/api/v1/teams/squad", headers=auth(token)).json()
    assert (squad["parent"], squad["children"], squad["lead"]["email"]) == (
        "checkout",
        [],
        "sam@example.com",
    )
    listed = client.get("/api/v1/teams", headers=auth(token)).json()["items"]
    assert {t["slug"]: t["lead"] for t in listed}["payments"] is None
    assert client.get("/api/v1/teams/payments").status_code == 401


def test_team_api_creates_and_moves_teams_and_refuses_a_cycle(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    sre = auth(make_token(db, make_user(db, role="sre")))
    created = client.post(
        "/api/v1/teams",
        json={
            "slug": "fraud",
            "name": "Fraud",
            "lead_email": "dev@example.com",
            "type": "squad",
            "parent": "payments",
        },
        headers=sre,
    )
    assert created.status_code == 201, created.text
    assert (created.json()["type"], created.json()["parent"]) == ("squad", "payments")
    assert "fraud" in client.get("/api/v1/teams/payments", headers=sre).json()["children"]
    cycle = client.patch("/api/v1/teams/payments", json={"parent": "fraud"}, headers=sre)
    assert cycle.status_code == 422
    assert cycle.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in cycle.json()["errors"]] == ["body.parent"]
    top = client.patch("/api/v1/teams/fraud", json={"parent": None}, headers=sre)
    assert top.status_code == 200 and top.json()["parent"] is None
    assert "fraud" not in client.get("/api/v1/teams/payments", headers=sre).json()["children"]


# -- the pages -----------------------------------------------------------------------------------
def test_team_page_shows_its_place_and_says_when_it_has_no_lead(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    lose_lead(db, "checkout")
    sign_in(client, org["dev"])
    page = client.get("/teams/checkout")
    assert page.status_code == 200
    lead_card = section(page, "no-lead")
    assert "No lead" in text(page) and "Pat" in lead_card  # approvals go to the department's lead
    structure = section(page, "structure")
    assert 'href="/teams/payments"' in structure and 'href="/teams/acme"' in structure
    assert 'href="/teams/squad"' in structure and "ledger" not in structure
    assert "department" in structure
    assert "dev@example.com" in page.text  # the members are still listed

    top = client.get("/teams/acme")
    assert "a top-level organization" in text(top)
    assert 'href="/teams/payments"' in section(top, "structure")

    lose_lead(db, "acme")
    lose_lead(db, "payments")
    orphan = client.get("/teams/checkout")
    assert orphan.status_code == 200 and "admins decide" in text(orphan)

    teams = client.get("/teams?limit=500")
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*/teams/checkout\".*?</tr>", teams.text, re.S)
    assert row is not None and "No lead" in row.group(0) and ">team<" in row.group(0)
    home = client.get("/")
    assert home.status_code == 200 and "No lead" in text(home)  # dev is in checkout


# -- approvals fall back to the nearest lead ----------------------------------------------------
def test_access_to_what_a_leadless_team_owns_is_decided_by_the_nearest_lead(
    db: Database, org: dict[str, User]
) -> None:
    with db.transaction() as session:
        entity = catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="cards-db", owner="checkout"),
        )
        entity_id = entity.id
    lose_lead(db, "checkout")
    with db.transaction() as session:  # nobody accountable either, as an import may leave it
        found = session.get(Entity, entity_id)
        assert found is not None
        found.accountable_user_id = None
    requester = make_user(db)
    make_team(db, slug="growth", lead=requester)
    with db.transaction() as session:
        grant = grants.request_grant(
            session=session,
            actor=actor_of(db, requester),
            entity_id=entity_id,
            grantee=grants.Grantee(user_id=requester.id),
            access="read",
            reason="reconciliation",
        )
        grant_id = grant.id
    with db.sessionmaker() as session:
        assert [i.title for i in inbox.list_for(session=session, user_id=org["pat"].id)]
        assert not inbox.list_for(session=session, user_id=org["cher"].id)
    with db.transaction() as session:
        approved = grants.approve(
            session=session, actor=actor_of(db, org["pat"]), grant_id=grant_id
        )
        assert approved.status == "active" and approved.approver_user_id == org["pat"].id


def test_a_team_lead_approval_of_a_leadless_teams_template_goes_to_the_nearest_lead(
    db: Database, org: dict[str, User], tmp_path: Path
) -> None:
    lose_lead(db, "checkout")
    definition = {
        "name": "hello",
        "title": "Say hello",
        "owner": "checkout",
        "approval": "team-lead",
        "parameters": {"type": "object", "properties": {}},
        "steps": [
            {"id": "call", "action": "http.request", "input": {"url": "http://127.0.0.1:9/x"}}
        ],
    }
    with db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=definition)
    with db.transaction() as session:
        run = runs.start(
            session=session, actor=actor_of(db, org["dev"]), template_name="hello", parameters={}
        )
        assert run.status == "awaiting_approval"
        assert runs.approver_ids(session=session, run=run) == [org["pat"].id]
        run_id = run.id
    with db.transaction() as session, pytest.raises(Forbidden):
        runs.approve(session=session, actor=actor_of(db, org["leda"]), run_id=run_id)
    with db.transaction() as session:
        runs.approve(session=session, actor=actor_of(db, org["pat"]), run_id=run_id)
    with db.sessionmaker() as session:
        assert runs.get(session=session, run_id=run_id).approver_user_id == org["pat"].id
