"""The catalog's web pages, driven like a browser without JavaScript (plus the HTMX search)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lamplighter.catalog import graph, graph_svg, service
from lamplighter.catalog.models import Entity
from lamplighter.core import identity
from lamplighter.core.db import Database
from lamplighter.core.models import User
from tests.catalog.conftest import make_entity
from tests.conftest import SYSTEM, make_team
from tests.helpers import HTMX, found, person, sign_in, text


def names_listed(response: Any) -> set[str]:
    """Entity names linked from the results table."""
    return set(re.findall(r'<a href="/catalog/[a-z]+/[a-z0-9-]+/([^"]+)">', response.text))


def history_rows(section: str) -> list[list[tuple[str, str, str]]]:
    """Each history entry's (field, before, after) rows, as text."""
    entries = re.findall(
        r'<li class="history-entry">(.*?)</li>\s*(?=<li class="history-entry">|</ol>)',
        section,
        re.S,
    )
    return [
        [
            (text(field), text(before), text(after))
            for field, before, after in re.findall(
                r'<th scope="row"[^>]*>(.*?)</th>\s*<td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td>',
                entry,
                re.S,
            )
        ]
        for entry in entries
    ]


def node_x(svg: str, name: str) -> int:
    """Where a node of the graph picture sits, left to right."""
    match = re.search(rf'<rect x="(\d+)"[^>]*/><text[^>]*>{re.escape(name)}</text>', svg)
    assert match, f"{name} is not drawn"
    return int(match.group(1))


@pytest.fixture
def org(db: Database) -> dict[str, User]:
    lead = person(db, email="lin@example.com")
    dev = person(db, email="dev@example.com")
    other = person(db, email="out@example.com")
    make_team(db, slug="payments", lead=lead, members=[dev])
    make_team(db, slug="search", lead=other)
    return {"lead": lead, "dev": dev, "outsider": other}


def form_data(csrf: str, **fields: str) -> dict[str, str]:
    base = {"kind": "service", "namespace": "default", "lifecycle": "production", "tier": "3"}
    return {**base, **fields, "csrf_token": csrf}


# -- signing in ------------------------------------------------------------------------------
def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient, db: Database) -> None:
    for path in ["/catalog", "/catalog/new", "/catalog/hygiene", "/catalog/service/default/x"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    refused = client.post("/catalog", data={"kind": "service", "name": "x", "owner": "y"})
    assert refused.status_code == 401 and "Sign in" in text(refused)


# -- the list ----------------------------------------------------------------------------------
def test_list_shows_entities_and_filters_narrow_them(client: TestClient, db: Database, org) -> None:
    make_entity(db, "ledger", "payments", tier=1, tags=["pci"], title="The ledger")
    make_entity(db, "orders-db", "payments", kind="resource", type="database")
    make_entity(db, "old-search", "search", lifecycle="deprecated")
    sign_in(client, org["dev"])
    page = client.get("/catalog")
    assert page.status_code == 200
    assert names_listed(page) == {"ledger", "orders-db", "old-search"}
    assert "The ledger" in text(page) and 'href="/teams/payments"' in page.text
    for query, expected in [
        ("kind=resource", {"orders-db"}),
        ("type=database", {"orders-db"}),
        ("owner=search", {"old-search"}),
        ("lifecycle=deprecated", {"old-search"}),
        ("tier=1", {"ledger"}),
        ("tag=pci", {"ledger"}),
        ("owner=payments&kind=service", {"ledger"}),
    ]:
        assert names_listed(client.get(f"/catalog?{query}")) == expected, query
    unknown = client.get("/catalog?owner=ghosts")
    assert unknown.status_code == 422
    assert 'id="f-owner-error"' in unknown.text and "no team with slug 'ghosts'" in text(unknown)
    assert "Nothing matches" in text(client.get("/catalog?tag=nope"))


def test_search_finds_by_word_prefixes_and_htmx_swaps_only_the_results(
    client: TestClient, db: Database, org
) -> None:
    make_entity(db, "payments-api", "payments", kind="api", description="Card payments")
    make_entity(db, "ledger", "payments", description="Double-entry book keeping")
    make_entity(db, "indexer", "search", tags=["ingest"])
    sign_in(client, org["dev"])
    assert names_listed(client.get("/catalog?q=pay+api")) == {"payments-api"}
    assert names_listed(client.get("/catalog?q=book")) == {"ledger"}
    assert names_listed(client.get("/catalog?q=ingest")) == {"indexer"}
    assert names_listed(client.get("/catalog?q=pay&kind=service")) == set()
    fragment = client.get("/catalog?q=ledg", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="results"') and "<html" not in fragment.text
    assert names_listed(fragment) == {"ledger"}
    page = client.get("/catalog")
    assert 'hx-get="/catalog"' in page.text and 'hx-push-url="true"' in page.text
    restored = client.get("/catalog?q=ledg", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in restored.text, "going back in history needs the whole page"


def test_list_and_search_page_through(client: TestClient, db: Database, org) -> None:
    for name in ("alpha", "bravo", "charlie"):
        make_entity(db, name, "payments", tags=["web"])
    sign_in(client, org["dev"])
    for first_url in ("/catalog?limit=2", "/catalog?q=web&limit=2"):
        first = client.get(first_url)
        assert len(names_listed(first)) == 2, first_url
        next_url = html.unescape(found(r'href="([^"]+)">Next page', first.text).group(1))
        second = client.get(next_url)
        assert len(names_listed(second)) == 1 and "First page" in text(second)
        assert names_listed(first) | names_listed(second) == {"alpha", "bravo", "charlie"}


# -- one entity ----------------------------------------------------------------------------------
@pytest.fixture
def ledger(db: Database, org) -> None:
    make_entity(db, "orders-db", "payments", kind="resource", type="database")
    make_entity(db, "payments-api", "payments", kind="api", type="openapi")
    make_entity(db, "checkout", "payments", kind="system")
    make_entity(
        db,
        "ledger",
        "payments",
        title="Ledger",
        description="Double-entry bookkeeping.",
        accountable="dev@example.com",
        tags=["pci", "money"],
        links=[
            {
                "type": "runbook",
                "url": "https://runbooks.example/ledger",
                "title": "Ledger runbook",
            },
            {"type": "dashboard", "url": "https://grafana.example/d/ledger"},
        ],
        depends_on=["resource:orders-db"],
        provides_apis=["payments-api"],
        system="checkout",
        cost_centre="CC-42",
    )
    make_entity(db, "storefront", "search", depends_on=["service:ledger"])
    with db.transaction() as session:
        service.update(session=session, actor=SYSTEM, ref="ledger", changes={"tier": 1})


def test_entity_page_shows_who_is_responsible_and_everything_about_it(
    client: TestClient, db: Database, org, ledger
) -> None:
    sign_in(client, org["outsider"])
    page = client.get("/catalog/service/default/ledger")
    assert page.status_code == 200
    owner_card = found(r'<section class="owner-card".*?</section>', page.text, re.S).group(0)
    assert 'href="/teams/payments"' in owner_card and "Accountable person" in owner_card
    assert "dev@example.com" in owner_card and "Team lead: Lin" in owner_card
    body = text(page)
    assert "Double-entry bookkeeping." in body and "CC-42" in body and "Tier 1" in body
    assert 'href="/catalog?tag=pci"' in page.text and "#money" in body
    assert (
        '<a href="https://runbooks.example/ledger" rel="noopener noreferrer">Ledger runbook</a>'
        in (page.text)
    )
    assert "Runbook" in body and "Dashboard" in body
    assert "Registered by hand" in body
    assert 'href="/catalog/system/default/checkout"' in page.text  # part of a system
    # Relations both ways, as lists.
    depends = found(r'id="rel-depends_on".*?</ul>', page.text, re.S).group(0)
    assert "orders-db" in depends
    dependents = found(r'id="rel-dependency_of".*?</ul>', page.text, re.S).group(0)
    assert "storefront" in dependents
    assert "payments-api" in found(r'id="rel-provides_apis".*?</ul>', page.text, re.S).group(0)
    # ... and as a picture: dependents on the left, dependencies on the right, nodes are links.
    svg = found(r"<svg class=\"dep-graph\".*?</svg>", page.text, re.S).group(0)
    for label in (">ledger<", ">orders-db<", ">storefront<", "USED BY", "DEPENDS ON"):
        assert label in svg, label
    assert 'href="/catalog/resource/default/orders-db"' in svg
    assert node_x(svg, "storefront") < node_x(svg, "ledger") < node_x(svg, "orders-db")
    # History, newest first, with the team and people named.
    history = found(r'id="history-title".*?</section>', page.text, re.S).group(0)
    assert history.index("Changed") < history.index("Registered")
    changed, created = history_rows(history)
    assert changed == [("Tier", "3", "1")]
    assert ("Owner team", "—", "payments") in created
    assert ("Accountable person", "—", "dev@example.com") in created
    # Lists and links read as such, not as JSON.
    assert ("Tags", "—", "#money #pci") in created or ("Tags", "—", "#pci #money") in created
    assert (
        "Links",
        "—",
        "Runbook: Ledger runbook Dashboard: https://grafana.example/d/ledger",
    ) in (created)
    assert ("Depends on", "—", "resource:default/orders-db") in created
    assert '["' not in history and "{&#34;" not in history
    assert 'href="/catalog/resource/default/orders-db">resource:default/orders-db</a>' in history
    # An outsider reads, but is offered no changes.
    assert "/edit" not in page.text and "/delete" not in page.text


def test_graph_marks_cycles_and_keeps_big_neighbourhoods_legible(
    client: TestClient, db: Database, org
) -> None:
    make_entity(db, "hub", "payments")
    for i in range(12):
        make_entity(db, f"user-{i:02}", "payments", depends_on=["service:hub"])
    make_entity(db, "back", "payments", depends_on=["service:hub"])
    with db.transaction() as session:
        service.update(
            session=session, actor=SYSTEM, ref="hub", changes={"depends_on": ["service:back"]}
        )
    sign_in(client, org["dev"])
    page = client.get("/catalog/service/default/hub")
    svg = found(r"<svg class=\"dep-graph\".*?</svg>", page.text, re.S).group(0)
    assert "+5 more" in svg  # 13 dependents, 8 drawn
    assert "Dependency cycle" in text(page)
    assert re.search(r">hub</a> → <a [^>]+>back</a> → <a [^>]+>hub</a>", page.text)
    # Through the entity itself, the cycle shows as the same node on both sides.
    assert svg.count(">back</text>") == 2 and "on a cycle" in svg and "dep-back-edge" not in svg
    # Further away, a dashed arrow closes it (within two hops: an entity depending on itself).
    make_entity(db, "selfish", "payments")
    with db.transaction() as session:
        service.update(
            session=session,
            actor=SYSTEM,
            ref="selfish",
            changes={"depends_on": ["service:selfish"]},
        )
    make_entity(db, "caller", "payments", depends_on=["service:selfish"])
    caller = client.get("/catalog/service/default/caller")
    svg = found(r"<svg class=\"dep-graph\".*?</svg>", caller.text, re.S).group(0)
    assert svg.count("dep-back-edge") == 1 and "on a cycle" in svg
    assert re.search(r">selfish</a> → <a [^>]+>selfish</a>", caller.text)
    shallow = client.get("/catalog/service/default/hub?hops=1")
    assert shallow.status_code == 200 and 'aria-current="page">1 hop' in shallow.text


def test_graph_plan_columns_edges_and_cycles() -> None:
    forward = graph.Traversal(root_id=1, reverse=False, depth=2)
    forward.reached = [graph.Reached(2, 1, 1), graph.Reached(3, 2, 2)]
    forward.cycles = [[2, 3, 2]]
    backward = graph.Traversal(root_id=1, reverse=True, depth=2)
    backward.reached = [graph.Reached(i, 1, 1) for i in range(10, 13)]
    picture = graph_svg.plan(root_id=1, dependencies=forward, dependents=backward, max_per_column=2)
    assert picture.columns == {0: [1], 1: [2], 2: [3], -1: [10, 11]}
    assert picture.hidden == {-1: 1}
    assert ((0, 1), (1, 2)) in picture.edges and ((-1, 10), (0, 1)) in picture.edges
    assert picture.back_edges == [((2, 3), (1, 2))]  # 3 depends on 2, closing the cycle
    assert picture.cycles == [[2, 3, 2]]
    infos = {
        i: graph_svg.NodeInfo(f"n<{i}>", "service", f"/catalog/service/default/n{i}", f"n{i}")
        for i in picture.ids
    }
    svg = str(graph_svg.render(picture, infos, caption='graph of "n1"'))
    assert "n&lt;2&gt;" in svg and "<2>" not in svg  # names are escaped
    assert 'aria-label="graph of &#34;n1&#34;"' in svg and "+1 more" in svg


def test_links_that_are_not_web_addresses_are_not_clickable(
    client: TestClient, db: Database, org
) -> None:
    # The service refuses such links now; rows written before that, or by hand, still render safely.
    entity = make_entity(db, "sneaky", "payments")
    with db.transaction() as session:
        stored = session.get(Entity, entity.id)
        assert stored is not None
        stored.links = [{"type": "docs", "url": "javascript:alert(1)", "title": ""}]
    sign_in(client, org["dev"])
    page = client.get("/catalog/service/default/sneaky")
    assert 'href="javascript:' not in page.text and "<code>javascript:alert(1)</code>" in page.text


def test_ownership_problems_are_a_warning_on_the_page_and_in_hygiene(
    client: TestClient, db: Database, org
) -> None:
    make_entity(db, "orphaned", "payments", accountable="dev@example.com")
    make_entity(db, "fine", "payments")
    with db.transaction() as session:
        identity.remove_member(
            session=session, actor=SYSTEM, slug="payments", user_id=org["dev"].id
        )
    sign_in(client, org["lead"])
    page = client.get("/catalog/service/default/orphaned")
    assert "Ownership needs attention" in text(page)
    assert "dev@example.com is no longer a member of payments" in text(page)
    hygiene = client.get("/catalog/hygiene")
    assert hygiene.status_code == 200
    assert names_listed(hygiene) == {"orphaned"}
    assert "the accountable person is no longer in the owning team" in text(hygiene)


def test_missing_entity_is_a_not_found_page(client: TestClient, db: Database, org) -> None:
    sign_in(client, org["dev"])
    page = client.get("/catalog/service/default/nothing-here")
    assert page.status_code == 404 and "no catalog entity service:default/nothing-here" in text(
        page
    )


# -- create ------------------------------------------------------------------------------------
def test_member_registers_an_entity_through_the_form(client: TestClient, db: Database, org) -> None:
    make_entity(db, "orders-db", "payments", kind="resource")
    csrf = sign_in(client, org["dev"])
    form = client.get("/catalog/new?owner=payments")
    assert form.status_code == 200
    assert '<option value="payments" selected>' in form.text
    assert '<option value="search"' not in form.text  # only the viewer's own teams
    response = client.post(
        "/catalog",
        data=form_data(
            csrf,
            name="billing",
            title="Billing",
            owner="payments",
            tags="money, pci",
            depends_on="resource:orders-db\n",
            link_type_0="repository",
            link_url_0="https://git.example/billing",
            tier="2",
        ),
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/catalog/service/default/billing"
    page = client.get(response.headers["location"])
    assert "Registered service:default/billing; Lin is accountable for it." in text(page)
    assert "lin@example.com" in page.text and ">orders-db<" in page.text
    assert 'href="https://git.example/billing"' in page.text and "Tier 2" in text(page)
    assert "Registered service:default/billing" not in text(
        client.get(response.headers["location"])
    )


def test_form_errors_sit_next_to_their_fields_and_the_input_is_kept(
    client: TestClient, db: Database, org
) -> None:
    make_entity(db, "orders-db", "payments", kind="resource")
    csrf = sign_in(client, person(db, role="sre"))
    assert '<option value="search"' in client.get("/catalog/new").text  # SREs pick any team
    unknown_owner = client.post(
        "/catalog", data=form_data(csrf, name="billing", owner="ghosts", title="Kept title")
    )
    assert unknown_owner.status_code == 422
    assert 'id="f-owner-error"' in unknown_owner.text
    assert "no team with slug 'ghosts'" in text(unknown_owner)
    assert 'value="Kept title"' in unknown_owner.text and 'value="billing"' in unknown_owner.text
    assert '<option value="ghosts" selected>' in unknown_owner.text
    bad = client.post(
        "/catalog",
        data=form_data(
            csrf,
            name="billing",
            owner="payments",
            accountable="out@example.com",
            depends_on="resource:orders-db\nresource:ghost-db",
            link_url_1="ftp://files.example",
        ),
    )
    assert bad.status_code == 422
    assert (
        'id="f-depends_on-error"' in bad.text
        and "no catalog entity resource:default/ghost-db" in (text(bad))
    )
    assert 'id="f-accountable-error"' in bad.text
    assert "out@example.com is not a member of the owning team payments" in text(bad)
    assert 'id="f-link_url_1-error"' in bad.text
    assert "resource:orders-db\nresource:ghost-db</textarea>" in bad.text
    assert 'href="#f-depends_on"' in bad.text  # the summary links to the field
    make_entity(db, "taken", "payments")
    duplicate = client.post("/catalog", data=form_data(csrf, name="TAKEN", owner="payments"))
    assert duplicate.status_code == 409
    assert 'id="f-name-error"' in duplicate.text and "exists already" in text(duplicate)
    bad_name = client.post("/catalog", data=form_data(csrf, name="no spaces", owner="payments"))
    assert bad_name.status_code == 422 and 'id="f-name-error"' in bad_name.text
    too_long = client.post("/catalog", data=form_data(csrf, name="x" * 64, owner="payments"))
    assert too_long.status_code == 422 and "at most 63 characters" in text(too_long)
    with db.sessionmaker() as session:
        assert (
            service.list_(session=session, filters=service.ListFilters(), after_id=None, limit=10)[
                -1
            ].name
            == "taken"
        )


def test_outsiders_viewers_and_forged_forms_cannot_register(
    client: TestClient, db: Database, org
) -> None:
    viewer = person(db, role="viewer")
    csrf = sign_in(client, org["outsider"])
    refused = client.post("/catalog", data=form_data(csrf, name="mine", owner="payments"))
    assert refused.status_code == 403
    assert "only members of the owning team" in text(refused)
    csrf = sign_in(client, viewer)
    assert 'href="/catalog/new"' not in client.get("/catalog").text
    assert client.get("/catalog/new").status_code == 403
    assert (
        client.post("/catalog", data=form_data(csrf, name="mine", owner="payments")).status_code
        == 403
    )
    sign_in(client, org["dev"])
    forged = client.post("/catalog", data={"kind": "service", "name": "mine", "owner": "payments"})
    assert forged.status_code == 403 and "CSRF check failed" in text(forged)
    assert client.get("/catalog/service/default/mine").status_code == 404


# -- edit and delete -----------------------------------------------------------------------------
def test_edit_form_changes_the_entity(client: TestClient, db: Database, org, ledger) -> None:
    csrf = sign_in(client, org["dev"])
    page = client.get("/catalog/service/default/ledger")
    assert 'href="/catalog/service/default/ledger/edit"' in page.text
    form = client.get("/catalog/service/default/ledger/edit")
    assert form.status_code == 200
    assert 'value="Ledger"' in form.text and "resource:default/orders-db</textarea>" in form.text
    assert 'value="https://runbooks.example/ledger"' in form.text and 'name="name"' not in form.text
    values = {
        "title": "Ledger v2",
        "owner": "payments",
        "accountable": "",
        "lifecycle": "deprecated",
        "tier": "2",
        "tags": "money",
        "system": "system:checkout",
        "depends_on": "",
        "provides_apis": "api:payments-api",
        "link_type_0": "docs",
        "link_url_0": "https://docs.example/ledger",
        "csrf_token": csrf,
    }
    response = client.post(
        "/catalog/service/default/ledger/edit", data=values, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    body = text(page)
    assert "Saved the changes to service:default/ledger." in body
    assert "Ledger v2" in body and "deprecated" in body and "Tier 2" in body
    assert "lin@example.com" in page.text  # blank accountable: the team lead
    assert "orders-db" not in found(r'id="rel-depends_on".*?</ul>', page.text, re.S).group(0)
    links = found(r'id="links-title".*?</section>', page.text, re.S).group(0)
    assert 'href="https://docs.example/ledger"' in links and "runbooks.example" not in links
    wrong = client.post(
        "/catalog/service/default/ledger/edit",
        data={**values, "depends_on": "service:nowhere", "title": "Typed title"},
    )
    assert wrong.status_code == 422 and 'id="f-depends_on-error"' in wrong.text
    assert 'value="Typed title"' in wrong.text and "service:nowhere</textarea>" in wrong.text
    assert wrong.text.count("<h1") == 1 and "Edit ledger" in text(wrong)


def test_outsiders_cannot_edit_or_delete(client: TestClient, db: Database, org, ledger) -> None:
    csrf = sign_in(client, org["outsider"])
    assert client.get("/catalog/service/default/ledger/edit").status_code == 403
    assert client.get("/catalog/service/default/ledger/delete").status_code == 403
    data = {"title": "Mine", "owner": "search", "lifecycle": "production", "tier": "3"}
    edit = client.post("/catalog/service/default/ledger/edit", data={**data, "csrf_token": csrf})
    assert edit.status_code == 403 and "only members of the owning team" in text(edit)
    delete = client.post("/catalog/service/default/ledger/delete", data={"csrf_token": csrf})
    assert delete.status_code == 403
    assert "Ledger" in text(client.get("/catalog/service/default/ledger"))


def test_delete_asks_first_then_removes_the_entity(
    client: TestClient, db: Database, org, ledger
) -> None:
    csrf = sign_in(client, org["lead"])
    confirm = client.get("/catalog/service/default/ledger/delete")
    assert confirm.status_code == 200
    assert "Delete ledger?" in text(confirm) and "storefront" in text(confirm)
    assert 'action="/catalog/service/default/ledger/delete"' in confirm.text
    response = client.post(
        "/catalog/service/default/ledger/delete", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/catalog"
    assert "Deleted service:default/ledger." in text(client.get("/catalog"))
    assert client.get("/catalog/service/default/ledger").status_code == 404
    assert (
        client.post("/catalog/service/default/ledger/delete", data={"csrf_token": csrf}).status_code
        == 404
    )


# -- the team page -------------------------------------------------------------------------------
def test_team_page_lists_what_the_team_owns(client: TestClient, db: Database, org) -> None:
    make_entity(db, "ledger", "payments", title="Ledger")
    make_entity(db, "orders-db", "payments", kind="resource", type="database")
    make_entity(db, "indexer", "search")
    sign_in(client, org["dev"])
    page = client.get("/teams/payments")
    panel = found(r'<section class="card" id="owned".*?</section>', page.text, re.S).group(0)
    assert "What the team owns" in panel and "(2)" in panel
    assert names_listed(page) == {"ledger", "orders-db"}
    assert 'href="/catalog?owner=payments"' in panel
    assert 'href="/catalog/new?owner=payments"' in panel  # a member may register more
    empty = client.get("/teams/search")
    assert "Register an entity" not in empty.text and "indexer" in empty.text


# -- every page -----------------------------------------------------------------------------------
def test_catalog_pages_have_one_title_and_labelled_inputs(
    client: TestClient, db: Database, org, ledger
) -> None:
    sign_in(client, org["dev"])
    for path in [
        "/catalog",
        "/catalog?q=ledger",
        "/catalog/new",
        "/catalog/hygiene",
        "/catalog/service/default/ledger",
        "/catalog/service/default/ledger/edit",
        "/catalog/service/default/ledger/delete",
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.text
        assert page.count("<h1") == 1, path
        assert '<a class="skip-link" href="#main">' in page, path
        assert 'aria-current="page">Catalog' in page, path
        fields = re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page)
        assert all(f'<label for="{i}"' in page for i in fields), path
