"""One reference resolver for the API, the pages and the CLI: bare names, ambiguity, did-you-mean."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.catalog import resolve_ref, service
from lamplighter.catalog.models import Entity
from lamplighter.core.errors import NotFound, ValidationFailed
from tests.catalog.conftest import make_entity
from tests.conftest import auth, make_team, make_token, make_user


@pytest.fixture
def shop(db: Any) -> dict[str, Any]:
    lead = make_user(db, email="lead@example.com")
    make_team(db, slug="payments", lead=lead)
    make_entity(db, "checkout-db", "payments", kind="resource", type="database")
    make_entity(db, "payments-api", "payments", kind="api", type="openapi")
    make_entity(db, "payments", "payments")
    make_entity(db, "payments", "payments", kind="resource", type="database")
    make_entity(db, "ledger", "payments", namespace="money")
    return {"lead": lead}


def failure(db: Any, ref: str, **kwargs: Any) -> ValidationFailed:
    with db.sessionmaker() as session, pytest.raises(ValidationFailed) as caught:
        service.get_by_ref(session=session, ref=ref, **kwargs)
    return caught.value


def test_a_bare_name_unique_across_kinds_resolves_to_its_entity(db: Any, shop: Any) -> None:
    with db.sessionmaker() as session:
        assert service.get_by_ref(session=session, ref="checkout-db").ref == (
            "resource:default/checkout-db"
        )
        assert service.get_by_ref(session=session, ref="Payments-API").ref == (
            "api:default/payments-api"
        )
        # Only in another namespace: still one entity of that name.
        assert service.get_by_ref(session=session, ref="ledger").ref == "service:money/ledger"
        assert service.get_by_ref(session=session, ref="money/ledger").ref == (
            "service:money/ledger"
        )
        # Explicit references work as they always did.
        assert service.get_by_ref(session=session, ref="service:payments").kind == "service"
        assert service.get_by_ref(session=session, ref="resource:default/payments").kind == (
            "resource"
        )


def test_an_ambiguous_bare_name_lists_each_entity_it_could_be(db: Any, shop: Any) -> None:
    error = failure(db, "payments", field="body.entity")
    assert error.errors[0].field == "body.entity"
    assert error.errors[0].reason == (
        "'payments' is ambiguous: resource:default/payments or service:default/payments"
    )


def test_an_unknown_name_suggests_the_closest_entities(db: Any, shop: Any) -> None:
    error = failure(db, "checkout-d", field="body.entity")
    assert error.errors[0].field == "body.entity"
    assert error.errors[0].reason == (
        "no catalog entity 'checkout-d'; did you mean resource:default/checkout-db?"
    )
    assert "did you mean" not in failure(db, "zzz-unrelated").errors[0].reason
    # An explicit kind that is not there: a 404 for the API's path routes, with the same help.
    with db.sessionmaker() as session, pytest.raises(NotFound) as caught:
        service.get_by_ref(session=session, ref="service:checkout-db")
    assert caught.value.detail == (
        "no catalog entity service:default/checkout-db; did you mean resource:default/checkout-db?"
    )


def test_a_field_that_takes_only_some_kinds_resolves_and_refuses_accordingly(
    db: Any, shop: Any
) -> None:
    only = ("service", "api")
    with db.sessionmaker() as session:
        # Ambiguous across all kinds, but only one of them is a service or API.
        assert service.get_by_ref(session=session, ref="payments", kinds=only).ref == (
            "service:default/payments"
        )
    refused = failure(db, "checkout-db", kinds=only, field="body.entity")
    assert refused.errors[0].field == "body.entity"
    assert refused.errors[0].reason == (
        "no catalog entity 'checkout-db' of kind service or API: resource:default/checkout-db is "
        "not a service or API"
    )
    explicit = failure(db, "resource:checkout-db", kinds=only)
    assert "choose a service or API: resource:default/checkout-db is a resource" in (
        explicit.errors[0].reason
    )


def test_the_entity_form_and_api_accept_bare_dependencies(db: Any, shop: Any) -> None:
    entity = make_entity(db, "storefront", "payments", depends_on=["checkout-db"])
    with db.sessionmaker() as session:
        relations = service.relations_of(session=session, entity_id=entity.id)
    assert [e.ref for e in relations["depends_on"]] == ["resource:default/checkout-db"]
    with pytest.raises(ValidationFailed) as caught:
        make_entity(db, "web", "payments", depends_on=["checkout-d"])
    assert caught.value.errors[0].field == "body.depends_on.0"
    assert "did you mean resource:default/checkout-db?" in caught.value.errors[0].reason


def test_api_answers_a_422_naming_the_field_and_the_suggestions(
    client: TestClient, db: Any, shop: Any
) -> None:
    token = make_token(db, shop["lead"])
    refused = client.post(
        "/api/v1/catalog/entities",
        json={"kind": "service", "name": "web", "owner": "payments", "depends_on": ["checkout-d"]},
        headers=auth(token),
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    [error] = refused.json()["errors"]
    assert error["field"] == "body.depends_on.0"
    assert "did you mean resource:default/checkout-db?" in error["reason"]
    ambiguous = client.get("/api/v1/catalog/resolve?ref=payments", headers=auth(token))
    assert ambiguous.status_code == 422
    assert ambiguous.json()["errors"][0]["field"] == "query.ref"
    assert "ambiguous" in ambiguous.json()["errors"][0]["reason"]
    resolved = client.get("/api/v1/catalog/resolve?ref=checkout-db", headers=auth(token))
    assert resolved.status_code == 200 and resolved.json()["ref"] == "resource:default/checkout-db"
    # The API's path routes still answer 404 for an entity that is not there.
    missing = client.get("/api/v1/catalog/entities/service/default/nope", headers=auth(token))
    assert missing.status_code == 404


def test_suggestions_for_a_picker_are_few_and_best_first(
    client: TestClient, db: Any, shop: Any
) -> None:
    token = make_token(db, shop["lead"])
    found = client.get("/api/v1/catalog/suggest?q=pay", headers=auth(token)).json()
    assert [s["ref"] for s in found][:2] == [
        "resource:default/payments",
        "service:default/payments",
    ]
    assert found[0] == {
        "ref": "resource:default/payments",
        "title": "payments",
        "kind": "resource",
        "owner": "payments",
    }
    only = client.get("/api/v1/catalog/suggest?q=pay&kinds=service,api", headers=auth(token))
    assert [s["ref"] for s in only.json()] == [
        "service:default/payments",
        "api:default/payments-api",
    ]
    bad = client.get("/api/v1/catalog/suggest?q=pay&kinds=no%20such", headers=auth(token))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.kinds"
    assert client.get("/api/v1/catalog/suggest?q=pay").status_code == 401


def test_cli_resolves_a_bare_name_like_the_pages(run_cli: Any, db: Any, shop: Any) -> None:
    owner = run_cli("catalog", "who-owns", "checkout-db", "--output", "json")
    assert owner.exit_code == 0, owner.output
    assert json.loads(owner.stdout)["ref"] == "resource:default/checkout-db"
    deps = run_cli("catalog", "deps", "payments-api", "--reverse", "--output", "json")
    assert deps.exit_code == 0 and json.loads(deps.stdout)["root"] == "api:default/payments-api"
    typo = run_cli("catalog", "who-owns", "checkout-d")
    assert typo.exit_code == 1
    assert "did you mean resource:default/checkout-db?" in " ".join(typo.output.split())
    ambiguous = run_cli("catalog", "get", "payments")
    assert ambiguous.exit_code == 1
    assert "'payments' is ambiguous" in " ".join(ambiguous.output.split())


def test_suggestions_stay_fast_in_a_big_catalog(db: Any, shop: Any) -> None:
    with db.transaction() as session:
        team_id = session.scalar(sa.select(Entity.owner_team_id).limit(1))
        session.execute(
            sa.insert(Entity),
            [
                {
                    "kind": "service",
                    "namespace": "default",
                    "name": f"svc-{i:05}",
                    "name_key": f"svc-{i:05}",
                    "owner_team_id": team_id,
                    "content_hash": "",
                }
                for i in range(12_000)
            ],
        )
    with db.sessionmaker() as session:
        started = time.perf_counter()
        with pytest.raises(ValidationFailed) as caught:
            service.get_by_ref(session=session, ref="svc-0123x")
        suggestions = resolve_ref.suggest(session=session, text="svc-01")
        elapsed = time.perf_counter() - started
    assert "did you mean service:default/svc-0123" in caught.value.errors[0].reason
    assert len(suggestions) == 10
    assert elapsed < 1.0, f"{elapsed:.2f} s"
