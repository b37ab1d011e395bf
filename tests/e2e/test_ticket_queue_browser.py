"""The ticket queue in Chromium: sorting by a column header, the assignee filter applied without
a page load, the first ticket in the first screen of a phone, and an internal note that an SRE
writes and the requester never sees."""

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
from lamplighter.core.models import User
from lamplighter.tickets import service as tickets
from tests.conftest import make_team, make_user
from tests.e2e.conftest import PASSWORD, lamplighter_server

pytestmark = pytest.mark.browser
NOTE = "Credentials are in the vault under ledger/prod; do not paste them here."


@dataclass(frozen=True)
class Desk:
    base_url: str
    requester: str  # a member: asked for everything
    sre: str
    ticket_path: str  # the ticket the SRE notes on


def _ticket(db: Database, who: User, title: str, hours_old: float, assignee: User | None) -> int:
    actor = Actor(kind="user", label=who.email, user_id=who.id, role=who.role)
    with db.transaction() as session:
        ticket = tickets.create(
            session=session,
            actor=actor,
            data=tickets.TicketInput(type="database", title=title),
            now=utcnow() - dt.timedelta(hours=hours_old),
        )
        ticket.assignee_user_id = assignee.id if assignee else None
        return ticket.id


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    data_dir = tmp_path_factory.mktemp("queue")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    ada = make_user(db, email="ada@example.com", password=PASSWORD, time_zone="Europe/London")
    sam = make_user(db, email="sam@example.com", password=PASSWORD, role="sre")
    lin = make_user(db, email="lin@example.com", password=PASSWORD)
    make_team(db, slug="payments", lead=ada, members=[lin])
    make_team(db, slug="platform", lead=sam)
    first = _ticket(db, ada, "Kafka topic for payouts", 50, sam)
    _ticket(db, ada, "Certificate for api.example.com", 30, lin)
    _ticket(db, ada, "Access to the ledger database", 5, sam)
    _ticket(db, ada, "Bigger disks for search", 2, None)
    db.dispose()
    with lamplighter_server(url, data_dir) as base_url:
        yield Desk(base_url, ada.email, sam.email, f"/tickets/{first}")


def signed_in(browser: Browser, desk: Desk, email: str, path: str, phone: bool) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": 390, "height": 844} if phone else {"width": 1280, "height": 800},
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    page.goto(f"{desk.base_url}{path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{desk.base_url}{path}")
    return context


def titles(page: Page) -> list[str]:
    return page.locator("#tk-results tbody td.tk-title > a").all_inner_texts()


def test_sort_by_a_header_and_filter_by_assignee_without_a_reload(
    desk: Desk, browser: Browser, artifacts: Path
) -> None:
    context = signed_in(browser, desk, desk.sre, "/tickets?view=all", phone=False)
    page = context.pages[0]
    assert titles(page) == [
        "Kafka topic for payouts",
        "Certificate for api.example.com",
        "Access to the ledger database",
        "Bigger disks for search",
    ]
    ages = page.locator("#tk-results tbody td.tk-age").all_inner_texts()
    assert ages == ["2 d", "1 d", "< 1 d", "< 1 d"]  # one unit for the column: no "30 h" by "2 d"
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    page.get_by_role("columnheader", name=re.compile("^Title")).get_by_role("link").click()
    expect(page.locator("#tk-results tbody tr").first).to_contain_text("Access to the ledger")
    assert titles(page) == [
        "Access to the ledger database",
        "Bigger disks for search",
        "Certificate for api.example.com",
        "Kafka topic for payouts",
    ]
    expect(page.get_by_role("columnheader", name=re.compile("^Title"))).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(page).to_have_url(re.compile(r"sort=title"))
    page.get_by_role("columnheader", name=re.compile("^Title")).get_by_role("link").click()
    expect(page.locator("#tk-results tbody tr").first).to_contain_text("Kafka topic")
    expect(page.get_by_role("columnheader", name=re.compile("^Title"))).to_have_attribute(
        "aria-sort", "descending"
    )

    page.get_by_label("Assignee").select_option("me")  # applied as it changes
    expect(page.locator("#tk-results tbody tr")).to_have_count(2)
    assert titles(page) == ["Kafka topic for payouts", "Access to the ledger database"]  # still Z→A
    expect(page).to_have_url(re.compile(r"assignee=me"))
    assert page.evaluate("window.loadedOnce === true")  # swapped in place, no page load
    page.get_by_label("Assignee").select_option("none")
    expect(page.locator("#tk-results tbody tr")).to_have_count(1)
    expect(page.locator("#tk-results")).to_contain_text("Bigger disks for search")
    expect(page.locator("#tk-results")).to_contain_text("Ada")  # people by name
    assert page.evaluate("window.loadedOnce === true")
    page.screenshot(path=artifacts / "ticket-queue-sorted-1280.png", full_page=True)
    context.close()


def test_on_a_phone_the_first_ticket_is_in_the_first_screen(
    desk: Desk, browser: Browser, artifacts: Path
) -> None:
    context = signed_in(browser, desk, desk.sre, "/tickets?view=all", phone=True)
    page = context.pages[0]
    first = page.locator("#tk-results tbody tr").first
    expect(first).to_contain_text("Kafka topic for payouts")
    box = first.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + 40 < 844, box
    more = page.locator("details.tk-more-filters")
    expect(more).not_to_have_attribute("open", "")  # the rarer filters stay folded
    expect(page.get_by_label("Assignee")).to_be_visible()
    page.screenshot(path=artifacts / "ticket-queue-390.png")
    context.close()


@pytest.mark.parametrize("phone", [False, True], ids=["1280", "390"])
def test_an_internal_note_is_for_sres_only(
    desk: Desk, browser: Browser, artifacts: Path, phone: bool
) -> None:
    note = f"{NOTE} ({'phone' if phone else 'desk'})"
    sre = signed_in(browser, desk, desk.sre, desk.ticket_path, phone=phone)
    page = sre.pages[0]
    page.get_by_label("Internal note").check()
    page.get_by_role("textbox", name="Comment").fill(note)
    page.get_by_role("button", name="Add comment").click()
    expect(page.get_by_role("status")).to_contain_text("internal note was added")
    internal = page.locator(".tk-moment-internal").filter(has_text=note)
    expect(internal).to_contain_text("added an internal note")
    expect(internal.locator(".tk-internal-badge")).to_have_text("Internal")
    page.screenshot(path=artifacts / f"ticket-internal-note-{'390' if phone else '1280'}.png")
    sre.close()

    requester = signed_in(browser, desk, desk.requester, desk.ticket_path, phone=phone)
    seen = requester.pages[0]
    expect(seen.locator(".tk-timeline")).to_contain_text("opened it")
    expect(seen.locator("body")).not_to_contain_text("vault")
    expect(seen.get_by_label("Internal note")).to_have_count(0)
    requester.close()
