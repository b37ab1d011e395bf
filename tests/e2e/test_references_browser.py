"""Reference pickers in Chromium: type part of a name, the picker offers the entity by its full
reference; a bare name opens it, a typo says what comes closest. On a desktop and on a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import LiveServer
from tests.e2e.test_catalog_browser import post_form, sign_in

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("width", "height", "label"), [(1280, 900, "desktop"), (390, 844, "phone")]
)
def test_picker_suggests_the_resource_and_a_bare_name_opens_it(
    live_server: LiveServer, browser: Browser, artifacts, width: int, height: int, label: str
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    sign_in(page, live_server, "/catalog")
    if label == "desktop":  # the module's server keeps them for the phone run
        post_form(
            page,
            live_server,
            "/catalog",
            kind="resource",
            name="checkout-db",
            type="database",
            title="Checkout database",
        )
        post_form(page, live_server, "/catalog", kind="system", name="checkout", title="Checkout")
    page.goto(f"{live_server.base_url}/catalog")

    picker = page.get_by_label("Open an entity")
    expect(picker).to_be_visible()
    box = picker.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    picker.press_sequentially("checkout-d", delay=30)
    option = page.locator('#f-ref-options option[value="resource:default/checkout-db"]')
    expect(option).to_have_count(1)
    expect(option).to_have_attribute("label", "Checkout database · resource · payments")
    page.screenshot(path=str(artifacts / f"picker-{label}.png"), full_page=True)

    # A typo: the page says what was meant, next to the field.
    picker.press("Enter")
    expect(page.locator("#f-ref-error")).to_contain_text(
        "did you mean resource:default/checkout-db"
    )
    # The bare name, unique across kinds, opens the resource.
    page.get_by_label("Entity").fill("checkout-db")
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout database")
    expect(page).to_have_url(f"{live_server.base_url}/catalog/resource/default/checkout-db")

    # On the entity form, the system picker offers systems only.
    page.goto(f"{live_server.base_url}/catalog/new")
    system = page.get_by_label("System (optional)")
    system.press_sequentially("check", delay=30)
    expect(page.locator('#f-system-options option[value="system:default/checkout"]')).to_have_count(
        1
    )
    expect(
        page.locator('#f-system-options option[value="resource:default/checkout-db"]')
    ).to_have_count(0)
    context.close()
