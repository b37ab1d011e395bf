"""The API docs work offline: Chromium, allowed to reach nothing but the Lamplighter server,
shows Swagger UI's list of operations."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.browser


def test_api_docs_show_the_operations_with_no_network_but_the_server(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.base_url}/api/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=15_000)
    # Swagger UI renders a long list of operations as it scrolls into view: scroll through the
    # page and gather every operation's path.
    seen: set[str] = set()
    for _ in range(200):
        seen.update(page.locator(".opblock-summary-path").all_inner_texts())
        at_end = page.evaluate("window.innerHeight + window.scrollY >= document.body.scrollHeight")
        if at_end:
            break
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(50)
    for path in ("/api/v1/me", "/api/v1/slos", "/api/v1/alerting/groups", "/api/v1/oncall/now"):
        assert path in seen, f"{path} is not listed"
    assert len(seen) > 80, "every REST operation is listed"
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/me").first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("Lamplighter")
    page.screenshot(path=artifacts / "api-docs-1280.png")

    assert blocked == [], f"the docs page asked for outside resources: {blocked}"
    assert errors == []
    context.close()
