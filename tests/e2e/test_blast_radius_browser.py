"""The blast radius in Chromium: four hops deep, a count per hop, and a crowded hop that
folds into "+N more" and opens again; the depth chosen from the page, bookmarkable."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import LiveServer
from tests.e2e.test_catalog_browser import post_form, sign_in

pytestmark = pytest.mark.browser


def test_blast_radius_four_hops_deep_with_counts_and_an_expanding_hop(
    live_server: LiveServer, browser: Browser, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server, "/catalog")
    # core-db ← ledger ← orders ← api-gw ← edge, and ten more services on core-db itself.
    post_form(page, live_server, "/catalog", kind="resource", name="core-db", type="database")
    previous = "resource:core-db"
    for name in ("ledger", "orders", "api-gw", "edge"):
        post_form(page, live_server, "/catalog", name=name, depends_on=previous)
        previous = f"service:{name}"
    for i in range(10):
        post_form(page, live_server, "/catalog", name=f"fan-{i:02}", depends_on="resource:core-db")

    url = f"{live_server.base_url}/catalog/resource/default/core-db"
    page.goto(f"{url}?depth=4")
    radius = page.locator("#blast-radius")
    expect(radius.get_by_role("heading", name="Blast radius")).to_be_visible()
    expect(radius).to_contain_text("What breaks if core-db breaks")
    expect(radius).to_contain_text("14 entities")
    expect(radius).to_contain_text("1 hop: 11 · 2 hops: 1 · 3 hops: 1 · 4 hops: 1")
    expect(radius.get_by_label("Depth")).to_have_value("4")
    edge = radius.locator('svg a[href="/catalog/service/default/edge"]')
    expect(edge).to_be_visible()  # four hops away
    expect(radius.locator("svg a.dep-node:not(.dep-more)")).to_have_count(8 + 3)
    page.screenshot(path=str(artifacts / "blast-radius-depth-4.png"), full_page=True)

    # "+3 more" opens the rest of the first hop, on a page of its own address.
    more = radius.locator("svg a.dep-more")
    expect(more).to_contain_text("+3 more")
    more.click()
    expect(page).to_have_url(re.compile(r"depth=4&expand=1#blast-radius$"))
    radius = page.locator("#blast-radius")
    expect(radius.locator("svg a.dep-more")).to_have_count(0)
    expect(radius.locator("svg a.dep-node")).to_have_count(11 + 3)
    expect(radius.locator('svg a[href="/catalog/service/default/fan-09"]')).to_be_visible()

    # Choosing a depth swaps the section in place and keeps the address bookmarkable.
    radius.get_by_label("Depth").select_option("2")
    expect(page.locator("#blast-radius")).to_contain_text("1 hop: 11 · 2 hops: 1")
    expect(page.locator("#blast-radius")).not_to_contain_text("3 hops:")
    expect(page).to_have_url(re.compile(r"depth=2"))
    page.reload()
    expect(page.locator("#blast-radius")).to_contain_text("12 entities")
    context.close()
