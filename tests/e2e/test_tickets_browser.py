"""One journey through the ticket pages in Chromium: a member asks for a database through the
form, an SRE moves the ticket to done, and the member finds the news in the inbox."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from lamplighter.core import migrate
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.tickets import service as tickets
from tests.conftest import make_team, make_user
from tests.e2e.conftest import PASSWORD, lamplighter_server

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Desk:
    base_url: str
    requester: str  # a member of the payments team
    sre: str


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A real server with a requester and an SRE (the shared live server has no SRE)."""
    data_dir = tmp_path_factory.mktemp("tickets")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    ada = make_user(db, email="ada@example.com", password=PASSWORD, time_zone="Europe/London")
    sam = make_user(db, email="sam@example.com", password=PASSWORD, role="sre")
    make_team(db, slug="payments", lead=ada)
    make_team(db, slug="platform", lead=sam)
    with db.transaction() as session:  # one request that has waited too long
        tickets.create(
            session=session,
            actor=Actor(kind="user", label=ada.email, user_id=ada.id, role="member"),
            data=tickets.TicketInput(
                type="dns-certificate", title="Renew the api certificate", priority="P1"
            ),
            now=utcnow() - dt.timedelta(days=2),
        )
    db.dispose()
    with lamplighter_server(url, data_dir) as base_url:
        yield Desk(base_url=base_url, requester=ada.email, sre=sam.email)


def signed_in(browser: Browser, desk: Desk, email: str, path: str, width: int) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 800 else 844},
        is_mobile=width < 800,
        has_touch=width < 800,
    )
    page = context.new_page()
    page.goto(f"{desk.base_url}{path}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{desk.base_url}{path}")
    return context


def shot(page: Page, path: Path) -> None:
    """A full-page screenshot from the top (a sticky header would otherwise float mid-page)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path, full_page=True)


def test_request_moved_to_done_reaches_the_requesters_inbox(
    desk: Desk, browser: Browser, artifacts: Path
) -> None:
    # The requester asks for a database through the intake form.
    ada = signed_in(browser, desk, desk.requester, "/tickets/new", 1280)
    page = ada.pages[0]
    expect(page.get_by_role("heading", level=1)).to_have_text("Ask the SRE team")
    expect(page.get_by_label("Requesting team")).to_have_value("payments")
    page.get_by_label("What do you need?").select_option("database")
    page.get_by_label("Title").fill("Postgres for the payments ledger")
    page.get_by_label("Description").fill("We need **Postgres 16** with daily backups.\n\n- 50 GB")
    page.get_by_label("Priority").select_option("P2")
    page.get_by_label("Labels").fill("ledger, q3")
    shot(page, artifacts / "ticket-new-1280.png")
    page.get_by_role("button", name="Send request").click()
    expect(page).to_have_url(re.compile(r"/tickets/\d+$"))
    ticket_path = page.url.removeprefix(desk.base_url)
    expect(page.get_by_role("status")).to_contain_text("opened")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Postgres for the payments ledger")
    expect(page.locator(".tk-markdown strong")).to_have_text("Postgres 16")
    expect(page.get_by_role("heading", name="Move the ticket")).to_have_count(0)
    shot(page, artifacts / "ticket-requester-1280.png")

    # The SRE finds it in triage and moves it along to done, logging the work on the way.
    sam = signed_in(browser, desk, desk.sre, "/tickets", 1280)
    queue = sam.pages[0]
    row = (
        queue.get_by_role("region", name="Tickets")
        .get_by_role("row")
        .filter(has_text="Postgres for the payments ledger")
    )
    expect(row).to_contain_text("Ada")
    shot(queue, artifacts / "tickets-queue-1280.png")
    queue.get_by_role("link", name="Breaching").click()
    expect(queue.get_by_role("region", name="Tickets")).to_contain_text(
        "Breaching: past its target time to done"
    )
    shot(queue, artifacts / "tickets-breaching-1280.png")
    queue.get_by_role("link", name="Triage").click()
    row.get_by_role("link").click()
    expect(queue).to_have_url(f"{desk.base_url}{ticket_path}")
    moves = queue.get_by_role("group", name="Move to")
    moves.get_by_role("button", name="Triaged").click()
    expect(queue.get_by_role("status")).to_contain_text("is now triaged")
    queue.get_by_role("group", name="Move to").get_by_role("button", name="In progress").click()
    expect(queue.get_by_role("status")).to_contain_text("is now in progress")
    queue.get_by_label("Minutes").fill("50")
    queue.get_by_role("button", name="Log work").click()
    expect(queue.get_by_role("status")).to_contain_text("50m of work logged")
    queue.get_by_label("Note (optional)").fill("Created `payments-ledger` with daily backups.")
    queue.get_by_label("Resolution when done").select_option("manual")
    queue.get_by_role("group", name="Move to").get_by_role("button", name="Done").click()
    expect(queue.get_by_role("status")).to_contain_text("is now done")
    expect(queue.locator(".tk-badges .tk-status")).to_have_text("Done")
    expect(queue.locator(".tk-timeline")).to_contain_text("logged 50m of work")
    shot(queue, artifacts / "ticket-done-1280.png")
    queue.goto(f"{desk.base_url}/tickets/types?edit=database")
    expect(queue.get_by_role("heading", name="Edit Database")).to_be_visible()
    shot(queue, artifacts / "ticket-types-1280.png")

    # The requester sees the unread count in the header, and the news in the inbox.
    page.reload()
    expect(page.locator("#inbox-count")).to_have_text(re.compile(r"^3\s*unread$"))
    page.get_by_role("link", name=re.compile(r"^Inbox")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
    newest = page.locator(".tk-notice").first
    expect(newest).to_contain_text("is now done")
    expect(newest).to_have_class(re.compile("is-unread"))
    shot(page, artifacts / "inbox-1280.png")
    newest.get_by_role(
        "button", name=re.compile(r"^Mark .+ read$")
    ).click()  # HTMX swaps the notice in place
    expect(page.locator(".tk-notice").first).not_to_have_class(re.compile("is-unread"))
    expect(page.locator("#inbox-count")).to_have_text(re.compile(r"^2\s*unread$"))
    newest = page.locator(".tk-notice").first
    newest.get_by_role("link").click()
    expect(page).to_have_url(f"{desk.base_url}{ticket_path}")

    # The same pages on a phone.
    for who, path, name in [
        (desk.requester, ticket_path, "ticket-requester-390"),
        (desk.requester, "/inbox", "inbox-390"),
        (desk.sre, "/tickets?view=breaching", "tickets-queue-390"),
        (desk.sre, ticket_path, "ticket-done-390"),
    ]:
        phone = signed_in(browser, desk, who, path, 390)
        phone.pages[0].screenshot(path=artifacts / f"{name}.png", full_page=True)
        phone.close()
    ada.close()
    sam.close()


def test_toil_analytics_draws_charts_and_filters_by_team(
    desk: Desk, browser: Browser, artifacts: Path
) -> None:
    sam = signed_in(browser, desk, desk.sre, "/tickets/analytics", 1280)
    page = sam.pages[0]
    expect(page.get_by_role("heading", level=1)).to_have_text("Toil analytics")
    expect(page.get_by_role("img", name=re.compile(r"^Tickets opened per week"))).to_be_visible()
    effort = page.get_by_role("img", name=re.compile(r"^Effort per request type"))
    expect(effort).to_be_visible()
    expect(effort).to_contain_text("DNS or certificate chan")  # the label is cut to fit
    section = page.get_by_role("region", name="Effort per request type")
    section.get_by_text("The numbers behind the chart").click()
    expect(section.get_by_role("region", name="Per request type", exact=True)).to_contain_text(
        "DNS or certificate change"
    )
    csv = page.get_by_role("link", name="Download CSV")
    expect(csv).to_have_attribute("href", re.compile(r"\.csv\?since=[\d-]{10}&until=[\d-]{10}$"))
    shot(page, artifacts / "tickets-analytics-1280.png")

    # The desk's requests are assigned to no team: the platform team's period is empty.
    page.get_by_label("Assigned team").select_option("platform")
    page.get_by_role("button", name="Show analytics").click()
    expect(page).to_have_url(re.compile(r"/tickets/analytics\?.*team=platform"))
    expect(
        page.get_by_text(re.compile(r"No tickets were opened .* for the team platform"))
    ).to_be_visible()
    expect(page.locator("svg.tk-chart")).to_have_count(0)
    expect(page.get_by_label("Assigned team")).to_have_value("platform")
    expect(csv).to_have_attribute("href", re.compile(r"&team=platform$"))
    download = sam.request.get(desk.base_url + (csv.get_attribute("href") or ""))
    assert download.ok and download.headers["content-type"].startswith("text/csv")
    assert download.text().splitlines()[1:] == []  # the header, and no request type
    sam.close()
