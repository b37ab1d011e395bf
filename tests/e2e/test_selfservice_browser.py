"""One journey through the self-service pages in Chromium: a member finds a template, fills in
its form, starts a run and watches the run page follow the worker until every step succeeded.

The server runs no worker (as in production, where workers are processes of their own); the test
runs one against the same database file, so the page can only learn of progress by reading it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from lamplighter.core import migrate
from lamplighter.core.db import Database
from lamplighter.selfservice import templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from tests.conftest import SYSTEM, make_team, make_user
from tests.e2e.conftest import PASSWORD, lamplighter_server, work_off

pytestmark = pytest.mark.browser


class GreetInput(ActionInput):
    text: str
    copies: int = 1


class GreetOutput(ActionOutput):
    text: str


class Greet(Action):
    """Takes a moment, so the page shows the step running before it succeeds."""

    name = "e2etest.greet"
    title = "Greet"
    Input = GreetInput
    Output = GreetOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: GreetInput) -> GreetOutput:
        time.sleep(0.3)
        ctx.log(" ".join([data.text] * data.copies))
        return GreetOutput(text=data.text)

    def compensate(self, ctx: StepContext, data: GreetInput, output: Any) -> None:
        return None


@pytest.fixture(scope="module", autouse=True)
def _test_actions() -> Iterator[None]:
    """This module's own action, known to the registry only while its tests run (module scope:
    the portal fixture registers a template that uses it)."""
    with registered(Greet):
        yield


TEMPLATE = {
    "name": "greeting-service",
    "title": "Greeting service",
    "description": "A service that greets; made for this browser test.",
    "owner": "payments",
    "request_type": "other",
    "parameters": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {
                "type": "string",
                "title": "Service name",
                "description": "Lowercase letters and dashes.",
                "pattern": "^[a-z][a-z-]+$",
            },
            "copies": {"type": "integer", "title": "Copies", "minimum": 1, "maximum": 5},
        },
    },
    "steps": [
        {
            "id": "greet",
            "title": "Greet the world",
            "action": "e2etest.greet",
            "input": {"text": "hello ${{ parameters.name }}", "copies": "${{ parameters.copies }}"},
        },
        {
            "id": "again",
            "title": "Greet once more",
            "action": "e2etest.greet",
            "input": {"text": "${{ steps.greet.output.text }} again"},
        },
    ],
}


@dataclass(frozen=True)
class Portal:
    base_url: str
    url: str  # the database
    data_dir: Path
    requester: str


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    data_dir = tmp_path_factory.mktemp("selfservice")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    ada = make_user(db, email="ada@example.com", password=PASSWORD, time_zone="Europe/London")
    make_team(db, slug="payments", lead=ada)
    with db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=TEMPLATE)
    db.dispose()
    with lamplighter_server(url, data_dir) as base_url:
        yield Portal(base_url=base_url, url=url, data_dir=data_dir, requester=ada.email)


def shot(page: Page, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path, full_page=True)


def test_member_fills_the_form_and_watches_the_run_succeed(
    portal: Portal, browser: Browser, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{portal.base_url}/selfservice")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(portal.requester)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{portal.base_url}/selfservice")
    expect(page.get_by_role("heading", level=1)).to_have_text("Self-service")
    shot(page, artifacts / "selfservice-templates-1280.png")

    page.get_by_role("link", name="Greeting service").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Greeting service")
    expect(page.get_by_label("Requesting team")).to_have_value("payments")
    page.get_by_label("Service name").fill("Not Valid")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator(".field-error").first).to_contain_text("is not in the expected form")
    page.get_by_label("Service name").fill("greeter")
    page.get_by_label("Copies").fill("2")
    shot(page, artifacts / "selfservice-form-1280.png")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/selfservice/runs/\d+$"))
    expect(page.locator(".flash")).to_contain_text("started")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "queued")

    worker = threading.Thread(target=work_off, args=(portal.url, portal.data_dir))
    worker.start()
    try:
        # No reload: HTMX polls the live part until the run is over.
        expect(page.locator("#run-live")).to_have_attribute(
            "data-status", "succeeded", timeout=15_000
        )
    finally:
        worker.join(timeout=30)
    live = page.locator("#run-live")
    expect(live.locator(".ss-run-status")).to_contain_text("Succeeded")
    expect(live.locator(".ss-step-succeeded")).to_have_count(2)
    expect(live).to_contain_text("hello greeter hello greeter")
    expect(live).to_contain_text("hello greeter again")
    expect(live.get_by_role("link", name=re.compile(r"^ticket #\d+$"))).to_be_visible()
    expect(live).not_to_have_attribute("hx-trigger", re.compile("."))
    shot(page, artifacts / "selfservice-run-1280.png")
    context.close()
