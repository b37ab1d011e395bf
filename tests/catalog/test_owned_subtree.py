"""What a department owns: the team page, the API and the CLI list the entities of a team and
of every team within it, each with the team that owns it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from lamplighter.core.models import User
from tests.catalog.conftest import make_entity
from tests.catalog.test_cli import as_json
from tests.conftest import auth, make_team, make_token, make_user
from tests.helpers import PASSWORD, sign_in

# Who owns what: payments (a department) > checkout > squad, and payments > ledger.
OWNED = {
    "service:default/portal": "payments",
    "service:default/cart": "checkout",
    "resource:default/cart-db": "checkout",
    "service:default/fraud": "squad",
    "service:default/books": "ledger",
}


@pytest.fixture
def org(db: Database) -> dict[str, User]:
    people = {n: make_user(db, email=f"{n}@example.com", password=PASSWORD) for n in "pcslx"}
    make_team(db, slug="payments", lead=people["p"], type="department")
    make_team(db, slug="checkout", lead=people["c"], parent="payments")
    make_team(db, slug="squad", lead=people["s"], parent="checkout")
    make_team(db, slug="ledger", lead=people["l"], parent="payments")
    make_team(db, slug="search", lead=people["x"])  # not within payments
    for ref, owner in OWNED.items():
        kind, name = ref.split(":default/")
        make_entity(db, name, owner, kind=kind)
    make_entity(db, "indexer", "search")
    return people


def panel_rows(page: Any) -> dict[str, str]:
    """The team page's "what the team owns" panel as {entity name: owning team's name}."""
    match = re.search(r'<section class="card" id="owned".*?</section>', page.text, re.S)
    assert match, "the team page has no panel of what the team owns"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", match.group(0), re.S)[1:]  # after the header
    found = {}
    for row in rows:
        cells = [
            re.sub(r"<[^>]+>", " ", c).split()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        found[cells[0][0]] = " ".join(cells[1])
    return found


def owners(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["ref"]: item["owner"]["slug"] for item in items}


# -- the team page -------------------------------------------------------------------------------
def test_department_page_lists_what_it_and_its_teams_own_with_each_owner(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    sign_in(client, org["x"])  # anyone signed in may look
    page = client.get("/teams/payments")
    assert page.status_code == 200
    assert panel_rows(page) == {
        "portal": "Payments",
        "cart": "Checkout",
        "cart-db": "Checkout",
        "fraud": "Squad",
        "books": "Ledger",
    }
    assert "What the team and the teams within it own" in page.text
    assert 'href="/teams/checkout"' in page.text and 'href="/teams/squad"' in page.text
    checkout = client.get("/teams/checkout")
    assert panel_rows(checkout) == {"cart": "Checkout", "cart-db": "Checkout", "fraud": "Squad"}
    alone = client.get("/teams/search")
    assert panel_rows(alone) == {"indexer": "Search"}
    assert "What the team owns" in alone.text


# -- the API ---------------------------------------------------------------------------------------
def test_api_lists_the_subtree_by_default_or_only_the_team_and_pages_through(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    headers = auth(make_token(db, make_user(db, role="viewer")))
    base = "/api/v1/catalog/teams/payments/entities"
    everything = client.get(base, headers=headers)
    assert everything.status_code == 200, everything.text
    assert owners(everything.json()["items"]) == OWNED
    assert everything.json()["next_cursor"] is None
    first = everything.json()["items"][0]
    assert {"kind", "name", "title", "lifecycle", "tier"} <= first.keys()
    assert first["owner"] == {"id": first["owner"]["id"], "slug": "payments", "name": "Payments"}

    direct = client.get(base, params={"subtree": "false"}, headers=headers).json()
    assert owners(direct["items"]) == {"service:default/portal": "payments"}
    squad = client.get("/api/v1/catalog/teams/checkout/entities", headers=headers).json()
    assert set(owners(squad["items"])) == {
        "service:default/cart",
        "resource:default/cart-db",
        "service:default/fraud",
    }

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(base, params=params, headers=headers).json()
        assert len(page["items"]) <= 2
        seen += [item["ref"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and set(seen) == set(OWNED)

    missing = client.get("/api/v1/catalog/teams/ghosts/entities", headers=headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.get(base).status_code == 401


def test_team_entities_route_and_the_entity_routes_each_answer_their_own(
    client: TestClient, db: Database, org: dict[str, User]
) -> None:
    headers = auth(make_token(db, org["x"]))
    listed = client.get("/api/v1/catalog/teams/search/entities", headers=headers)
    assert listed.status_code == 200 and set(listed.json()) == {"items", "next_cursor"}
    one = client.get("/api/v1/catalog/entities/service/default/cart", headers=headers)
    assert one.status_code == 200 and one.json()["owner"]["slug"] == "checkout"
    owner = client.get("/api/v1/catalog/entities/service/default/cart/owner", headers=headers)
    assert owner.status_code == 200 and owner.json()["owner"]["slug"] == "checkout"
    sign_in(client, org["x"])
    assert "cart" in client.get("/catalog/service/default/cart").text  # the entity page
    openapi = client.get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/catalog/teams/{slug}/entities" in openapi


# -- the CLI ---------------------------------------------------------------------------------------
def table_rows(result: Any) -> dict[str, str]:
    """The table's rows as {ref: owner}, read from the lines with cells."""
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] and cells[0] != "ref":
            rows[cells[0]] = cells[2]
    return rows


def test_cli_owned_by_lists_the_subtree_or_direct_in_table_and_json(
    run_cli: Any, org: dict[str, User]
) -> None:
    assert owners(as_json(run_cli("catalog", "owned-by", "payments", "-o", "json"))) == OWNED
    assert table_rows(run_cli("catalog", "owned-by", "payments")) == OWNED
    direct = run_cli("catalog", "owned-by", "payments", "--direct", "--output", "json")
    assert owners(as_json(direct)) == {"service:default/portal": "payments"}
    assert table_rows(run_cli("catalog", "owned-by", "ledger")) == {
        "service:default/books": "ledger"
    }
    some = run_cli("catalog", "owned-by", "payments", "--limit", "2", "-o", "json")
    assert len(as_json(some)) == 2 and "only the first 2" in some.stderr
    unknown = run_cli("catalog", "owned-by", "ghosts")
    assert unknown.exit_code == 1 and "no team with slug 'ghosts'" in unknown.output


def test_cli_owned_by_goes_through_the_api_in_remote_mode(
    run_cli: Any, db: Database, live_server: str, org: dict[str, User]
) -> None:
    env = {"LAMPLIGHTER_TOKEN": make_token(db, org["x"])}
    remote = ["--url", live_server, "catalog", "owned-by"]
    assert owners(as_json(run_cli(*remote, "payments", "-o", "json", env=env))) == OWNED
    direct = as_json(run_cli(*remote, "checkout", "--direct", "-o", "json", env=env))
    assert owners(direct) == {
        "service:default/cart": "checkout",
        "resource:default/cart-db": "checkout",
    }
    assert table_rows(run_cli(*remote, "squad", env=env)) == {"service:default/fraud": "squad"}
    missing = run_cli(*remote, "ghosts", env=env)
    assert missing.exit_code == 1 and "HTTP 404" in missing.output
