"""Handing an entity to another team is the receiving team's (or an SRE's) to do."""

from __future__ import annotations

from tests.catalog.conftest import make_entity
from tests.conftest import auth, make_team, make_token, make_user

URL = "/api/v1/catalog/entities/service/default/ledger"


def test_a_member_of_the_owning_team_cannot_hand_an_entity_to_a_team_they_are_not_in(
    client, db
) -> None:
    member = make_user(db)
    make_team(db, slug="payments", members=[member])
    make_team(db, slug="search")
    make_entity(db, "ledger", "payments")

    refused = client.patch(URL, json={"owner": "search"}, headers=auth(make_token(db, member)))

    assert refused.status_code == 403, refused.text
    assert "search" in refused.json()["detail"]
    assert client.get(URL, headers=auth(make_token(db, member))).json()["owner"]["slug"] == (
        "payments"
    )


def test_a_member_of_both_teams_or_an_sre_may_move_it(client, db) -> None:
    both = make_user(db)
    sre = make_user(db, role="sre")
    make_team(db, slug="payments", members=[both])
    make_team(db, slug="search", members=[both])
    make_team(db, slug="billing")
    make_entity(db, "ledger", "payments")

    moved = client.patch(URL, json={"owner": "search"}, headers=auth(make_token(db, both)))
    assert moved.status_code == 200, moved.text
    assert moved.json()["owner"]["slug"] == "search"

    by_sre = client.patch(URL, json={"owner": "billing"}, headers=auth(make_token(db, sre)))
    assert by_sre.status_code == 200, by_sre.text
    assert by_sre.json()["owner"]["slug"] == "billing"
