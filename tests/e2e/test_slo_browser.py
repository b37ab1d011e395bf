"""One journey through the SLO pages in Chromium, on a wide and a phone-sized screen: a team
member opens the SLO list, finds the burning SLO first, opens it and reads its burn-down chart."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from lamplighter.catalog import service as catalog
from lamplighter.core import migrate
from lamplighter.core.db import Database, utcnow
from lamplighter.slo import evaluate, service
from lamplighter.slo.models import Slo
from lamplighter.slo.schemas import SloIn
from tests.conftest import SYSTEM, make_team, make_user
from tests.e2e.conftest import PASSWORD, lamplighter_server

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Site:
    base_url: str
    member: str


def _seed(db: Database) -> None:
    """Checkout of the payments team: "availability" healthy, "latency" burning fast."""
    member = make_user(db, email="mia@example.com", password=PASSWORD)
    make_team(db, slug="payments", members=[member])
    now = utcnow().replace(second=0, microsecond=0)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="checkout", owner="payments"),
        )
        ids = []
        for name in ("availability", "latency"):
            data = SloIn(entity="checkout", name=name, objective=99.9, source="events")
            ids.append(service.create(session=session, actor=SYSTEM, data=data)[0].id)
        healthy, burning = ids
        day = [(now - dt.timedelta(minutes=10 * i), 10_000, 10_000) for i in range(13, 24 * 6 + 1)]
        service.record_counts(session=session, slo_id=healthy, points=day)
        service.record_counts(session=session, slo_id=burning, points=day)
        # Two hours of 3 % errors: thirty times what the budget sustains.
        recent = [(now - dt.timedelta(minutes=m), 97, 100) for m in range(1, 121)]
        service.record_counts(session=session, slo_id=burning, points=recent)
        slos = [s for s in (session.get(Slo, i) for i in ids) if s is not None]
        evaluate.evaluate(session=session, slos=slos, now=now)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("slo")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    _seed(db)
    db.dispose()
    with lamplighter_server(url, data_dir) as base_url:
        yield Site(base_url=base_url, member="mia@example.com")


@pytest.mark.parametrize("width", [1280, 390])
def test_a_member_finds_the_burning_slo_first_and_reads_its_chart(
    site: Site, browser: Browser, artifacts: Path, width: int
) -> None:
    context = browser.new_context(
        viewport={"width": width, "height": 900 if width > 800 else 844},
        is_mobile=width < 800,
        has_touch=width < 800,
    )
    page = context.new_page()
    try:
        page.goto(f"{site.base_url}/slos")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.get_by_label("Email").fill(site.member)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(f"{site.base_url}/slos")

        table = page.get_by_role("region", name="SLOs, the least error budget left first")
        rows = table.locator("tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("latency")
        expect(rows.first).to_contain_text("Burning")
        expect(rows.nth(1)).to_contain_text("Healthy")
        assert _no_sideways_scroll(page), "the list scrolls sideways"
        page.screenshot(path=artifacts / f"slo-list-{width}.png", full_page=True)

        rows.first.get_by_role("link", name="latency").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("latency · checkout")
        chart = page.get_by_role("img", name=re.compile("Error budget left over the window"))
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 60
        expect(page.get_by_text(re.compile(r"\d+ % of the budget left: 360 of"))).to_be_visible()
        alerts = page.get_by_role("region", name="Burn-rate alerts")
        expect(alerts.locator("tbody tr").first).to_contain_text("Firing")
        page.get_by_text("The numbers behind the chart").click()
        data = page.get_by_role("region", name="Error budget left over the window")
        expect(data.locator("tbody tr").first).to_be_visible()
        assert _no_sideways_scroll(page), "the SLO page scrolls sideways"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=artifacts / f"slo-page-{width}.png", full_page=True)
    finally:
        context.close()


def _no_sideways_scroll(page: object) -> bool:
    width: bool = page.evaluate(  # type: ignore[attr-defined]
        "document.documentElement.scrollWidth <= window.innerWidth"
        " && document.body.scrollWidth <= window.innerWidth"
    )
    return width
