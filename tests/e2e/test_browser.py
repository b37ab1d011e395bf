"""One journey through the real UI in Chromium: sign in, team page, create an API token once."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import auth
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.browser


def sign_in(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.base_url}/teams/{server.team_slug}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(server.email)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_sign_in_team_page_and_a_token_shown_once(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    page.goto(f"{live_server.base_url}/login")
    page.screenshot(path=artifacts / "login-1280.png", full_page=True)
    sign_in(page, live_server)

    # Back where we wanted to go: the team page, with its accountable lead.
    expect(page).to_have_url(f"{live_server.base_url}/teams/{live_server.team_slug}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Payments")
    expect(page.locator(".lead-card")).to_contain_text("Accountable person")
    expect(page.locator(".lead-card")).to_contain_text("lin@example.com")
    expect(page.get_by_role("region", name="Members of Payments")).to_contain_text(
        "ada@example.com"
    )
    page.screenshot(path=artifacts / "team-1280.png", full_page=True)

    # Profile: create a token (HTMX swaps the tokens section in place).
    page.get_by_role("link", name=re.compile("Signed in as")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada")
    page.get_by_label("Token name").fill("e2e laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token")
    expect(secret).to_be_visible()
    token = secret.inner_text().strip()
    assert token.startswith("llt_")
    expect(page.locator("#new-token-box")).to_contain_text("You will not see it again")
    page.screenshot(path=artifacts / "profile-token-1280.png", full_page=True)

    # Reloading never shows it again, but the token is listed and works against the API.
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()
    expect(page.get_by_role("region", name="Your API tokens")).to_contain_text("e2e laptop")
    me = httpx.get(f"{live_server.base_url}/api/v1/me", headers=auth(token))
    assert me.status_code == 200 and me.json()["email"] == live_server.email
    context.close()


def test_phone_menu_and_token_without_javascript(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    # A phone with JavaScript: the menu collapses behind a button.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = phone.new_page()
    sign_in(page, live_server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Payments")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    page.screenshot(path=artifacts / "team-390.png", full_page=True)
    page.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    page.screenshot(path=artifacts / "menu-390.png")
    nav.get_by_role("link", name="Profile and API tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada")
    page.screenshot(path=artifacts / "profile-390.png", full_page=True)
    phone.close()

    # No JavaScript: the plain form POST and redirect show the token once, too.
    plain = browser.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False)
    page = plain.new_page()
    sign_in(page, live_server)
    page.goto(f"{live_server.base_url}/profile")
    page.get_by_label("Token name").fill("no-js token")
    page.get_by_role("button", name="Create token").click()
    expect(page).to_have_url(f"{live_server.base_url}/profile")
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("llt_")
    page.screenshot(path=artifacts / "profile-token-390-nojs.png", full_page=True)
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    assert httpx.get(f"{live_server.base_url}/api/v1/me", headers=auth(token)).status_code == 200
    plain.close()


def test_home_says_what_needs_attention_and_the_menu_lists_only_what_exists(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server)
    page.goto(f"{live_server.base_url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^Good (morning|afternoon|evening), Ada$")
    )
    expect(page.get_by_role("region", name="Tickets assigned to you")).to_contain_text(
        "No open tickets are assigned to you."
    )
    expect(page.get_by_role("region", name="Your teams", exact=True)).to_contain_text("Payments")
    menu = page.get_by_role("navigation", name="Main")
    expect(menu.get_by_role("link")).to_have_text(
        ["Home", "Catalog", "Tickets", "Self-service", "SLOs", "Alerts", "Teams", "Audit log"]
    )
    expect(menu).not_to_contain_text("soon")
    page.screenshot(path=artifacts / "home-1280.png", full_page=True)
    context.close()
