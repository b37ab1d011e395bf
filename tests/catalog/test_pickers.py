"""Type-ahead pickers: what the suggest endpoints offer, and the picker on the entity form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from tests.catalog.conftest import make_entity
from tests.conftest import make_team
from tests.helpers import HTMX, found, person, sign_in


def offered(response: Any) -> list[tuple[str, str]]:
    """(value, label) of each <option> in a partial."""
    return re.findall(r'<option value="([^"]*)" label="([^"]*)">', response.text)


@pytest.fixture
def shop(db: Database) -> Any:
    ada = person(db, email="ada@example.com")
    lin = person(db, email="lin@example.com")
    make_team(db, slug="payments", lead=ada, members=[lin])
    make_team(db, slug="checkout-crew", lead=lin)
    make_entity(db, "checkout-db", "payments", kind="resource", title="Checkout database")
    make_entity(db, "checkout", "payments", kind="system", title="Checkout system")
    make_entity(db, "payments-api", "payments", kind="api")
    make_entity(db, "checkout-web", "payments")
    return {"ada": ada, "lin": lin}


def test_entity_suggestions_offer_full_references_labelled_with_title_kind_owner(
    client: TestClient, db: Database, shop: Any
) -> None:
    sign_in(client, shop["ada"])
    response = client.get("/catalog/suggest?q=checkout-d&field=entity", headers=HTMX)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert offered(response) == [
        ("resource:default/checkout-db", "Checkout database · resource · payments")
    ]
    # As the picker sends it: its own value under its own name.
    as_typed = client.get("/catalog/suggest?field=entity&entity=check", headers=HTMX)
    assert [v for v, _ in offered(as_typed)] == [
        "system:default/checkout",
        "resource:default/checkout-db",
        "service:default/checkout-web",
    ]
    only = client.get("/catalog/suggest?field=entity&entity=check&kinds=service,api")
    assert [v for v, _ in offered(only)] == ["service:default/checkout-web"]
    # Markup in a name or title cannot get out of its attribute.
    assert offered(client.get("/catalog/suggest?q=%22%3E%3Cscript%3E")) == []


def test_people_and_team_suggestions_match_names_emails_and_slugs(
    client: TestClient, db: Database, shop: Any
) -> None:
    sign_in(client, shop["ada"])
    people = client.get("/people/suggest?field=accountable&accountable=LIN", headers=HTMX)
    assert people.status_code == 200
    assert offered(people) == [("lin@example.com", "Lin · lin@example.com")]
    teams = client.get("/suggest/teams?q=check", headers=HTMX)
    assert teams.status_code == 200
    assert offered(teams) == [("checkout-crew", "Checkout-Crew · checkout-crew")]
    everyone = client.get("/suggest/teams?q=")
    assert {v for v, _ in offered(everyone)} == {"payments", "checkout-crew"}
    # /teams/{slug} still shows a team.
    assert client.get("/teams/payments").status_code == 200


def test_suggestions_need_a_signed_in_viewer_and_a_sane_field(
    client: TestClient, db: Database, shop: Any
) -> None:
    for path in ("/catalog/suggest?q=x", "/people/suggest?q=x", "/suggest/teams?q=x"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    sign_in(client, shop["ada"])
    bad = client.get('/people/suggest?field="><b>')
    assert bad.status_code == 422 and "field" in bad.text
    bad_kind = client.get("/catalog/suggest?q=x&kinds=not%20a%20kind")
    assert bad_kind.status_code == 422 and "kinds" in bad_kind.text


def test_entity_form_uses_pickers_for_system_domain_and_accountable(
    client: TestClient, db: Database, shop: Any
) -> None:
    sign_in(client, shop["ada"])
    form = client.get("/catalog/new").text
    system = found(r'<input id="f-system"[^>]*>', form).group(0)
    assert 'list="f-system-options"' in system
    assert 'hx-get="/catalog/suggest?field=system&amp;kinds=system"' in system
    assert 'hx-trigger="input changed delay:200ms, focus"' in system
    assert 'hx-target="#f-system-options"' in system
    assert '<datalist id="f-system-options"></datalist>' in form
    accountable = found(r'<input id="f-accountable"[^>]*>', form).group(0)
    assert 'hx-get="/people/suggest?field=accountable"' in accountable
    assert 'aria-describedby="f-accountable-hint"' in accountable
    assert '<label for="f-system">System <span class="optional">(optional)</span></label>' in form


def test_open_an_entity_by_a_bare_name_or_hear_what_comes_closest(
    client: TestClient, db: Database, shop: Any
) -> None:
    sign_in(client, shop["ada"])
    assert 'action="/catalog/go"' in client.get("/catalog").text
    opened = client.get("/catalog/go?ref=checkout-db", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/catalog/resource/default/checkout-db"
    typo = client.get("/catalog/go?ref=checkout-d")
    assert typo.status_code == 422
    error = found(r'<p class="field-error" id="f-ref-error">(.*?)</p>', typo.text).group(1)
    assert "did you mean resource:default/checkout-db," in error
    assert 'value="checkout-d"' in typo.text and 'aria-invalid="true"' in typo.text
    explicit = client.get("/catalog/go?ref=service:checkout-db")
    assert explicit.status_code == 404
    assert "did you mean resource:default/checkout-db" in explicit.text
