"""Catalog REST API: create, read with relations, who owns, blast radius, search, hygiene, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.catalog import api as catalog_api
from lamplighter.catalog import service
from lamplighter.catalog.models import Entity
from tests.catalog.conftest import make_entity
from tests.conftest import auth, make_team, make_token, make_user

BASE = "/api/v1/catalog"


@pytest.fixture
def org(db: Any) -> dict[str, Any]:
    lead = make_user(db, email="lead@example.com")
    dev = make_user(db, email="dev@example.com")
    other = make_user(db, email="other@example.com")
    make_team(db, slug="payments", lead=lead, members=[dev])
    make_team(db, slug="search", lead=other)
    return {"dev": auth(make_token(db, dev)), "other": auth(make_token(db, other))}


def _count(db: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Entity)) or 0)


def test_create_and_read_with_owner_and_relations(
    client: Any, db: Any, org: dict[str, Any]
) -> None:
    make_entity(db, "payments-db", "payments", kind="resource", type="database")
    body = {
        "kind": "service",
        "name": "ledger",
        "owner": "payments",
        "title": "Ledger",
        "tier": 1,
        "tags": ["pci"],
        "links": [
            {"url": "https://runbooks.example.com/ledger", "type": "runbook", "title": "Runbook"}
        ],
        "depends_on": ["resource:payments-db"],
    }
    created = client.post(f"{BASE}/entities", json=body, headers=org["dev"])
    assert created.status_code == 201, created.text
    entity = created.json()
    assert entity["ref"] == "service:default/ledger"
    assert entity["owner"]["slug"] == "payments"
    assert entity["accountable"]["email"] == "lead@example.com"
    assert [e["ref"] for e in entity["relations"]["depends_on"]] == ["resource:default/payments-db"]
    db_page = client.get(
        f"{BASE}/entities/resource/default/payments-db", headers=org["other"]
    ).json()
    assert [e["ref"] for e in db_page["relations"]["dependency_of"]] == ["service:default/ledger"]
    # The first read with a token looks it up in the database; later ones are served from the
    # token cache, and on PostgreSQL take the one-statement path outside a transaction. Both
    # answer exactly what the create did, times in UTC included.
    path = f"{BASE}/entities/service/default/ledger"
    reader = auth(make_token(db, make_user(db, email="reader@example.com")))
    first = client.get(path, headers=reader).json()
    cached = client.get(path, headers=reader).json()
    assert first == cached == entity
    owner = client.get(f"{BASE}/entities/service/default/ledger/owner", headers=org["other"]).json()
    assert owner["accountable"]["email"] == "lead@example.com" and owner["problems"] == []
    history = client.get(
        f"{BASE}/entities/service/default/ledger/history", headers=org["dev"]
    ).json()
    assert [h["action"] for h in history] == ["catalog.create"]


def test_bad_input_names_the_field_and_writes_nothing(
    client: Any, db: Any, org: dict[str, Any]
) -> None:
    cases = [
        ({"kind": "service", "name": "x"}, "body.owner", 422),
        ({"kind": "service", "name": "x", "owner": "nobody"}, "body.owner", 422),
        (
            {
                "kind": "service",
                "name": "x",
                "owner": "payments",
                "accountable": "other@example.com",
            },
            "body.accountable",
            422,
        ),
        (
            {"kind": "service", "name": "x", "owner": "payments", "depends_on": ["service:ghost"]},
            "body.depends_on.0",
            422,
        ),
        ({"kind": "service", "name": "bad name", "owner": "payments"}, "body.name", 422),
        ({"kind": "gadget", "name": "x", "owner": "payments"}, "body.kind", 422),
        ({"kind": "service", "name": "x", "owner": "payments", "tier": 9}, "body.tier", 422),
        (
            {"kind": "service", "name": "x", "owner": "payments", "colour": "red"},
            "body.colour",
            422,
        ),
        (
            {"kind": "service", "name": "x", "owner": "payments", "tags": ["Not Valid"]},
            "body.tags.0",
            422,
        ),
    ]
    for body, field, status in cases:
        response = client.post(f"{BASE}/entities", json=body, headers=org["dev"])
        assert response.status_code == status, (body, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, (body, response.json())
    assert _count(db) == 0


def test_duplicate_names_ignore_case(client: Any, db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "Ledger", "payments")
    response = client.post(
        f"{BASE}/entities",
        json={"kind": "service", "name": "LEDGER", "owner": "payments"},
        headers=org["dev"],
    )
    assert response.status_code == 409
    assert _count(db) == 1


def test_outsider_cannot_register_for_another_team(
    client: Any, db: Any, org: dict[str, Any]
) -> None:
    response = client.post(
        f"{BASE}/entities",
        json={"kind": "service", "name": "x", "owner": "payments"},
        headers=org["other"],
    )
    assert response.status_code == 403
    assert _count(db) == 0


def test_patch_changes_owner_and_defaults_accountable_to_new_lead(
    client: Any, db: Any, org: dict[str, Any]
) -> None:
    make_entity(db, "ledger", "payments")
    handed_over = client.patch(
        f"{BASE}/entities/service/default/ledger", json={"owner": "search"}, headers=org["dev"]
    )
    assert handed_over.status_code == 403, (
        "search must accept it (tests/catalog/test_owner_move.py)"
    )
    sre = auth(make_token(db, make_user(db, role="sre")))
    moved = client.patch(
        f"{BASE}/entities/service/default/ledger", json={"owner": "search"}, headers=sre
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["owner"]["slug"] == "search"
    assert moved.json()["accountable"]["email"] == "other@example.com"
    again = client.patch(
        f"{BASE}/entities/service/default/ledger", json={"title": "mine"}, headers=org["dev"]
    )
    assert again.status_code == 403, "the old team no longer owns it"


def test_blast_radius_with_depth_and_cycle(client: Any, db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "db", "payments", kind="resource")
    make_entity(db, "a", "payments", depends_on=["resource:db"])
    make_entity(db, "b", "payments", depends_on=["service:a"])
    client.patch(
        f"{BASE}/entities/service/default/a",
        json={"depends_on": ["resource:db", "service:b"]},
        headers=org["dev"],
    )
    deps = client.get(
        f"{BASE}/entities/resource/default/db/deps",
        params={"reverse": True, "depth": 5},
        headers=org["dev"],
    ).json()
    assert [(n["ref"], n["depth"]) for n in deps["nodes"]] == [
        ("service:default/a", 1),
        ("service:default/b", 2),
    ]
    assert deps["cycles"] == [["service:default/a", "service:default/b", "service:default/a"]]
    forward = client.get(
        f"{BASE}/entities/service/default/b/deps", params={"depth": 1}, headers=org["dev"]
    ).json()
    assert [n["ref"] for n in forward["nodes"]] == ["service:default/a"]
    too_deep = client.get(
        f"{BASE}/entities/service/default/b/deps", params={"depth": 99}, headers=org["dev"]
    )
    assert too_deep.status_code == 422 and too_deep.json()["errors"][0]["field"] == "query.depth"


def test_search_list_filters_and_pagination(client: Any, db: Any, org: dict[str, Any]) -> None:
    for index in range(5):
        make_entity(
            db,
            f"pay-{index}",
            "payments",
            tags=["pci"] if index % 2 else [],
            lifecycle="experimental" if index == 4 else "production",
        )
    make_entity(db, "finder", "search", description="finds payments quickly")
    found = client.get(f"{BASE}/search", params={"q": "pay", "limit": 2}, headers=org["dev"]).json()
    assert len(found["items"]) == 2 and found["next_cursor"]
    rest = client.get(
        f"{BASE}/search",
        params={"q": "pay", "limit": 10, "cursor": found["next_cursor"]},
        headers=org["dev"],
    ).json()
    assert len(found["items"]) + len(rest["items"]) == 6
    filtered = client.get(
        f"{BASE}/entities", params={"owner": "payments", "tag": "pci"}, headers=org["dev"]
    ).json()
    assert sorted(e["name"] for e in filtered["items"]) == ["pay-1", "pay-3"]
    experimental = client.get(
        f"{BASE}/entities", params={"lifecycle": "experimental"}, headers=org["dev"]
    ).json()
    assert [e["name"] for e in experimental["items"]] == ["pay-4"]
    unknown_owner = client.get(f"{BASE}/entities", params={"owner": "ghosts"}, headers=org["dev"])
    assert unknown_owner.status_code == 404


def test_hygiene_endpoint(client: Any, db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "ledger", "payments", accountable="dev@example.com")
    lead_token = auth(make_token(db, make_user(db, role="sre")))
    with db.sessionmaker() as session:
        dev_id = session.scalar(sa.text("SELECT id FROM users WHERE email = 'dev@example.com'"))
    assert (
        client.delete(f"/api/v1/teams/payments/members/{dev_id}", headers=lead_token).status_code
        == 204
    )
    rows = client.get(f"{BASE}/hygiene", headers=org["other"]).json()["items"]
    assert [(r["name"], r["problem"]) for r in rows] == [
        ("ledger", "the accountable person is no longer in the owning team (nor a team above it)")
    ]


def test_delete(client: Any, db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "ledger", "payments")
    assert (
        client.delete(f"{BASE}/entities/service/default/ledger", headers=org["dev"]).status_code
        == 204
    )
    assert (
        client.get(f"{BASE}/entities/service/default/ledger", headers=org["dev"]).status_code == 404
    )


def test_links_must_be_web_addresses(client: Any, db: Any, org: dict[str, Any]) -> None:
    body = {
        "kind": "service",
        "name": "x",
        "owner": "payments",
        "links": [{"url": "javascript:alert(1)"}],
    }
    response = client.post(f"{BASE}/entities", json=body, headers=org["dev"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.links.0.url"
    assert _count(db) == 0


def test_entity_get_is_byte_for_byte_the_documented_schema(
    client: Any, db: Any, org: dict[str, Any]
) -> None:
    # The GET builds its JSON from the rows with orjson, skipping EntityRead; a PATCH answers
    # through EntityRead. Both must send the same bytes, relations, links, labels and all.
    make_entity(db, "payments-db", "payments", kind="resource", type="database")
    make_entity(db, "old-queue", "payments", kind="resource")
    body = {
        "kind": "service",
        "name": "Ledger",
        "owner": "payments",
        "tags": ["pci", "core"],
        "labels": {"note": 'ünïcode "quoted" </script>\u2028\t', "empty": ""},
        "annotations": {"backstage.io/source": "https://git.example.com/ledger"},
        "links": [{"url": "https://runbooks.example.com/ledger", "type": "runbook"}],
        "depends_on": ["resource:payments-db", "resource:old-queue"],
        "cost_centre": "CC-7",
    }
    assert client.post(f"{BASE}/entities", json=body, headers=org["dev"]).status_code == 201
    gateway = {
        "kind": "service",
        "name": "gateway",
        "owner": "payments",
        "depends_on": ["service:ledger"],
    }
    made = client.post(f"{BASE}/entities", json=gateway, headers=org["dev"])
    assert made.status_code == 201, made.text
    deleted = client.delete(f"{BASE}/entities/resource/default/old-queue", headers=org["dev"])
    assert deleted.status_code == 204  # the ledger's edge to it is kept, unresolved
    path = f"{BASE}/entities/service/default/ledger"
    patched = client.patch(path, json={"description": "Double-entry."}, headers=org["dev"])
    assert patched.status_code == 200, patched.text

    read = client.get(path, headers=org["other"])
    assert read.status_code == 200
    assert read.headers["content-type"] == "application/json"
    assert read.content == patched.content
    document = read.json()
    assert [e["ref"] for e in document["relations"]["dependency_of"]] == ["service:default/gateway"]
    assert document["unresolved"] == [
        {"relation": "depends_on", "ref": "resource:default/old-queue"}
    ]
    assert document["labels"]["note"].startswith('ünïcode "quoted" </script>')
    schema = client.get("/api/v1/openapi.json").json()
    answer = schema["paths"]["/api/v1/catalog/entities/{kind}/{namespace}/{name}"]["get"]
    assert answer["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EntityRead"
    }


def test_entity_json_falls_back_to_the_schema_for_what_orjson_cannot_write() -> None:
    row = service.EntityRow(
        *(1, "service", "default", "ledger", "Ledger", "", None, "production", 1),
        *(["pci"], {"huge": 2**70}, {}, [], None, None, "manual", None),
        *(
            dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 12, 6, 9, 0, 0, 5, dt.UTC),
        ),
        *(None, None, None, None, None, None),
    )
    relations: dict[str, list[service.RelationRow]] = {
        name: [] for pair in service.RELATION_NAMES.values() for name in pair
    }
    relations[service.UNRESOLVED] = []
    written = catalog_api.entity_json(row, relations)
    assert written == catalog_api.entity_read(row, relations).model_dump_json().encode()
    assert b'"huge":1180591620717411303424' in written
