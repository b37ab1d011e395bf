"""The shipped golden paths in Chromium, as a member would take them on an installation without
a PostgreSQL server: from the template list to each path's final state.

- Access: a bare resource name is enough; the run waits for the resource's accountable person,
  who finds the request on their home page and approves it; only then does the run succeed.
- Python web service: its database step is offered off (no server here); a dry run says what a
  real run would make, without links; the real run waits for the team's lead, who decides from
  the home page; the run ends with a repository and a catalog entry that opens.
- PostgreSQL database: shown as unavailable, naming the setting that enables it.

The server runs no worker; the test runs one against the same database file (as in
test_selfservice_browser.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from lamplighter.catalog import service as catalog
from lamplighter.core import migrate
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from lamplighter.selfservice import golden
from tests.conftest import SYSTEM, TEST_SECRET, make_team, make_user
from tests.e2e.conftest import PASSWORD, lamplighter_server, work_off

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Site:
    base_url: str
    url: str
    data_dir: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("golden")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    lin = make_user(db, email="lin@example.com", password=PASSWORD)
    ada = make_user(db, email="ada@example.com", password=PASSWORD)
    olga = make_user(db, email="olga@example.com", password=PASSWORD)
    make_team(db, slug="platform", lead=lin)
    make_team(db, slug="payments", lead=lin, members=[ada])
    make_team(db, slug="data", lead=olga)
    settings = Settings(database_url=url, data_dir=data_dir, secret_key=TEST_SECRET)
    with db.transaction() as session:
        golden.load_golden(session=session, actor=SYSTEM, settings=settings)
        for kind, name, owner in [
            ("resource", "orders-db", "data"),
            ("resource", "ledger-db", "data"),
            ("resource", "checkout", "data"),
            ("service", "checkout", "payments"),
        ]:
            catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(kind=kind, name=name, owner=owner),
            )
    assert ada and olga
    db.dispose()
    with lamplighter_server(url, data_dir) as base_url:
        yield Site(base_url=base_url, url=url, data_dir=data_dir)


def in_background(site: Site) -> threading.Thread:
    thread = threading.Thread(target=work_off, args=(site.url, site.data_dir))
    thread.start()
    return thread


def signed_in(browser: Browser, site: Site, email: str, viewport: dict[str, int]) -> Page:
    context: BrowserContext = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{site.base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{site.base_url}/")
    return page


def wait_for_status(page: Page, site: Site, status: str) -> None:
    worker = in_background(site)
    try:
        expect(page.locator("#run-live")).to_have_attribute("data-status", status, timeout=20_000)
    finally:
        worker.join(timeout=60)
    page.reload()
    expect(page.locator("#run-live")).to_have_attribute("data-status", status)


@pytest.mark.parametrize(
    ("viewport", "resource"),
    [(DESKTOP, "orders-db"), (PHONE, "ledger-db")],
    ids=["desktop", "phone"],
)
def test_access_path_waits_for_the_owner_and_succeeds_only_after_the_decision(
    site: Site, browser: Browser, viewport: dict[str, int], resource: str
) -> None:
    page = signed_in(browser, site, "ada@example.com", viewport)
    page.goto(f"{site.base_url}/selfservice")
    card = page.locator(".ss-card", has_text="Access to a resource")
    expect(card).to_contain_text("accountable person")  # not just "No approval"
    card.get_by_role("link", name="Access to a resource").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Access to a resource")
    page.get_by_label("Resource").fill(resource)  # a bare name, unique across kinds
    page.get_by_label("Reason").fill("month-end reports")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/selfservice/runs/\d+$"))
    run_url = page.url
    wait_for_status(page, site, "awaiting_decision")
    live = page.locator("#run-live")
    expect(live.locator(".ss-run-status")).to_contain_text("Awaiting decision")
    expect(live).not_to_contain_text("Journaled as")  # nothing counted as done yet

    owner = signed_in(browser, site, "olga@example.com", viewport)
    waiting = owner.locator("section, .card", has_text="Waiting for your approval").first
    expect(waiting).to_contain_text(f"Read access to resource:default/{resource}")
    waiting.get_by_role("link", name=re.compile(resource)).click()
    expect(owner).to_have_url(re.compile(r"/selfservice/access#grant-\d+$"))
    row = owner.locator("tr", has_text=f"resource:default/{resource}").first
    row.get_by_role("button", name="Approve").click()
    expect(owner.locator(".flash")).to_contain_text("approved")
    owner.context.close()

    page.goto(run_url)
    wait_for_status(page, site, "succeeded")
    expect(live.locator(".ss-run-status")).to_contain_text("Succeeded")
    expect(live.get_by_role("link", name=re.compile(r"^ticket #\d+$"))).to_be_visible()
    page.context.close()


def test_python_web_service_without_a_database_from_dry_run_to_the_leads_approval(
    site: Site, browser: Browser
) -> None:
    page = signed_in(browser, site, "ada@example.com", DESKTOP)
    page.goto(f"{site.base_url}/selfservice/templates/python-web-service")
    notice = page.locator(".ss-availability")
    expect(notice).to_contain_text("LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL")
    expect(page.get_by_label("Create a PostgreSQL database")).not_to_be_checked()
    page.get_by_label("Service name").fill("Refund_API")
    page.get_by_role("button", name="Dry run").click()
    error = page.locator(".field-error").first
    expect(error).to_contain_text("lowercase letters")  # words, not the regular expression
    expect(error).not_to_contain_text("^[a-z]")
    page.get_by_label("Service name").fill("refund-api")
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Dry run")
    wait_for_status(page, site, "succeeded")
    live = page.locator("#run-live")
    expect(live.locator(".ss-run-status")).to_contain_text("Passed")
    would = live.locator(".ss-would")
    expect(would).to_contain_text("service:default/refund-api")
    expect(would.locator("a")).to_have_count(0)  # nothing exists yet: no links
    page.get_by_role("link", name="Run it for real").click()
    expect(page.get_by_label("Service name")).to_have_value("refund-api")
    page.get_by_role("button", name="Ask for approval").click()
    expect(page).to_have_url(re.compile(r"/selfservice/runs/\d+$"))
    run_url = page.url
    expect(page.locator(".ss-approvers")).to_contain_text("Lin")
    expect(page.locator(".ss-approvers")).to_contain_text("leads Payments")

    lead = signed_in(browser, site, "lin@example.com", DESKTOP)
    waiting = lead.locator("section, .card", has_text="Waiting for your approval").first
    waiting.get_by_role("link", name=re.compile("Python web service")).click()
    expect(lead).to_have_url(re.compile(r"/selfservice/runs/\d+#decision$"))
    lead.get_by_role("button", name="Approve").click()
    expect(lead.locator(".flash")).to_contain_text("approved")
    lead.context.close()

    page.goto(run_url)
    wait_for_status(page, site, "succeeded")
    made = page.locator(".ss-outputs")
    expect(made).to_contain_text("Catalog entry")
    made.get_by_role("link", name="Catalog entry").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("refund-api")
    page.context.close()


def test_the_database_path_is_unavailable_without_a_server(site: Site, browser: Browser) -> None:
    for viewport in (DESKTOP, PHONE):
        page = signed_in(browser, site, "ada@example.com", viewport)
        page.goto(f"{site.base_url}/selfservice")
        card = page.locator(".ss-card", has_text="PostgreSQL database for an existing service")
        expect(card).to_contain_text("Unavailable here")
        expect(card).to_contain_text("LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL")
        card.get_by_role("link", name="PostgreSQL database for an existing service").click()
        expect(page.locator(".ss-availability")).to_contain_text("cannot run this template")
        expect(page.get_by_role("button", name="Ask for approval")).to_have_count(0)
        page.context.close()


def test_a_bare_ambiguous_reference_is_answered_with_suggestions(
    site: Site, browser: Browser
) -> None:
    page = signed_in(browser, site, "ada@example.com", PHONE)
    page.goto(f"{site.base_url}/selfservice/templates/access")
    page.get_by_label("Resource").fill("checkout")
    page.get_by_label("Reason").fill("debugging")
    page.get_by_role("button", name="Run", exact=True).click()
    error = page.locator(".field-error").first
    expect(error).to_contain_text("resource:default/checkout")
    expect(error).to_contain_text("service:default/checkout")
    page.get_by_label("Resource").fill("resource:default/checkout")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/selfservice/runs/\d+$"))
    page.context.close()
