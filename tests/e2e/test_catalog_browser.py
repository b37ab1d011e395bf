"""The catalog in Chromium: register entities through the form, read the owner and the graph,
find them again with the live search; the same pages on a phone and without JavaScript."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.browser


def sign_in(page: Page, server: LiveServer, path: str) -> None:
    page.goto(f"{server.base_url}{path}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(server.email)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{server.base_url}{path}")


def post_form(page: Page, server: LiveServer, path: str, **fields: str) -> None:
    """Send a page form with the session's CSRF token, as the browser would."""
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    base = {"kind": "service", "lifecycle": "production", "tier": "3", "owner": server.team_slug}
    response = page.request.post(
        f"{server.base_url}{path}",
        form={**base, **fields, "csrf_token": token},
        max_redirects=0,
    )
    assert response.status == 303, response.text()


def test_register_an_entity_see_its_owner_and_graph_then_find_it(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server, "/catalog")
    expect(page.get_by_role("heading", level=1)).to_have_text("Catalog")

    # A resource through the form, then what the new service will depend on.
    page.get_by_role("link", name="Register an entity").click()
    page.get_by_label("Kind").select_option("resource")
    page.get_by_label("Name", exact=True).fill("orders-db")
    page.get_by_label("Type (optional)", exact=True).fill("database")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("orders-db")
    post_form(page, live_server, "/catalog", kind="resource", name="payments-events", type="topic")
    post_form(page, live_server, "/catalog", name="fraud-check", title="Fraud check")

    # The service itself, with a mistake first: the error sits next to the field.
    page.goto(f"{live_server.base_url}/catalog/new")
    page.get_by_label("Name", exact=True).fill("billing")
    page.get_by_label("Title (optional)", exact=True).fill("Billing")
    page.get_by_label("Description (optional)", exact=True).fill(
        "Turns orders into invoices and card charges."
    )
    page.get_by_label("Tags (optional)", exact=True).fill("money, pci")
    page.get_by_label("Link 1 type").select_option("runbook")
    page.get_by_label("Link 1 address").fill("https://runbooks.example/billing")
    page.get_by_label("Link 1 title").fill("Billing runbook")
    page.get_by_label("Link 2 type").select_option("dashboard")
    page.get_by_label("Link 2 address").fill("https://grafana.example/d/billing")
    page.get_by_label("Depends on (optional)", exact=True).fill(
        "resource:orders-db\nresource:payments-events\nservice:fraud-check\nresource:ghost-db"
    )
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#f-depends_on-error")).to_contain_text("resource:default/ghost-db")
    expect(page.get_by_label("Title (optional)", exact=True)).to_have_value("Billing")
    page.screenshot(path=artifacts / "catalog-form-error-1280.png", full_page=True)
    page.get_by_label("Depends on (optional)", exact=True).fill(
        "resource:orders-db\nresource:payments-events\nservice:fraud-check"
    )
    page.get_by_role("button", name="Register").click()
    expect(page).to_have_url(f"{live_server.base_url}/catalog/service/default/billing")

    # Things that depend on it, and a cycle back through fraud-check.
    for name in ("storefront", "checkout-web", "mobile-bff"):
        post_form(page, live_server, "/catalog", name=name, depends_on="service:billing")
    post_form(
        page,
        live_server,
        "/catalog/service/default/fraud-check/edit",
        title="Fraud check",
        depends_on="service:billing",
    )
    page.goto(f"{live_server.base_url}/catalog")  # shows the last flash message
    page.goto(f"{live_server.base_url}/catalog/service/default/billing")
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing")
    owner = page.locator(".owner-card")
    expect(owner).to_contain_text("Payments")
    expect(owner).to_contain_text("Accountable person")
    expect(owner).to_contain_text("lin@example.com")
    graph = page.locator("svg.dep-graph")
    expect(graph).to_be_visible()
    for name in ("orders-db", "payments-events", "storefront", "mobile-bff"):
        expect(graph.get_by_role("link", name=re.compile(name))).to_have_count(1)
    expect(page.get_by_text("Dependency cycle")).to_be_visible()
    expect(page.get_by_role("link", name="Billing runbook")).to_be_visible()
    page.screenshot(path=artifacts / "catalog-entity-1280.png", full_page=True)

    # Nodes are links.
    graph.get_by_role("link", name=re.compile("storefront")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("storefront")

    # Live search: typing swaps the results and keeps the address in step.
    page.goto(f"{live_server.base_url}/catalog")
    expect(page.get_by_role("region", name="Catalog entities")).to_contain_text("orders-db")
    page.get_by_role("searchbox", name="Search").fill("bill")
    expect(page).to_have_url(re.compile(r"/catalog\?q=bill"))
    results = page.get_by_role("region", name="Catalog entities")
    expect(results).to_contain_text("billing")
    expect(results).not_to_contain_text("orders-db")
    page.screenshot(path=artifacts / "catalog-search-1280.png", full_page=True)
    page.go_back()
    expect(page.get_by_role("region", name="Catalog entities")).to_contain_text("orders-db")
    context.close()


def test_catalog_on_a_phone_and_without_javascript(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = phone.new_page()
    sign_in(page, live_server, "/catalog/service/default/billing")
    expect(page.locator(".owner-card")).to_contain_text("lin@example.com")
    expect(page.locator("svg.dep-graph")).to_be_visible()
    page.screenshot(path=artifacts / "catalog-entity-390.png", full_page=True)
    page.goto(f"{live_server.base_url}/catalog")
    page.screenshot(path=artifacts / "catalog-list-390.png", full_page=True)
    page.goto(f"{live_server.base_url}/catalog/new")
    page.screenshot(path=artifacts / "catalog-form-390.png", full_page=True)
    page.goto(f"{live_server.base_url}/teams/{live_server.team_slug}")
    expect(page.locator("#owned")).to_contain_text("billing")
    page.screenshot(path=artifacts / "catalog-team-panel-390.png", full_page=True)
    phone.close()

    plain = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = plain.new_page()
    sign_in(page, live_server, "/catalog")
    page.get_by_role("searchbox", name="Search").fill("fraud")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/catalog\?q=fraud"))
    results = page.get_by_role("region", name="Catalog entities")
    expect(results).to_contain_text("fraud-check")
    expect(results).not_to_contain_text("orders-db")
    page.goto(f"{live_server.base_url}/catalog/service/default/mobile-bff/delete")
    page.get_by_role("button", name="Delete mobile-bff").click()
    expect(page).to_have_url(f"{live_server.base_url}/catalog")
    expect(page.get_by_role("status").first).to_contain_text("Deleted service:default/mobile-bff.")

    # Ada is accountable for something, then leaves the team: it shows up in hygiene.
    post_form(page, live_server, "/catalog", name="legacy-cron", accountable=live_server.email)
    page.goto(f"{live_server.base_url}/teams/{live_server.team_slug}")
    page.get_by_role("button", name=re.compile("Remove Ada")).click()
    page.goto(f"{live_server.base_url}/catalog/hygiene")
    hygiene = page.get_by_role("region", name="Entities without a valid owner")
    expect(hygiene).to_contain_text("legacy-cron")
    expect(hygiene).to_contain_text("the accountable person is no longer in the owning team")
    page.screenshot(path=artifacts / "catalog-hygiene-1280-nojs.png", full_page=True)
    page.goto(f"{live_server.base_url}/catalog/service/default/legacy-cron")
    expect(page.get_by_role("alert")).to_contain_text("Ownership needs attention")
    page.screenshot(path=artifacts / "catalog-entity-problem-1280-nojs.png", full_page=True)
    plain.close()
