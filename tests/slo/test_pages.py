"""The SLO pages over SLOs whose figures are known: the list's order and filters, one SLO's
figures, chart and tables, the form, the owners' buttons, and the panels on other pages."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.catalog import service as catalog
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Team, User
from lamplighter.slo import charts, evaluate, service
from lamplighter.slo.models import FreezeException, Slo
from lamplighter.slo.pages import budget_words, percent_text
from lamplighter.slo.schemas import SloIn
from tests.conftest import SYSTEM, make_team
from tests.helpers import person, sign_in, text

SVG = "{http://www.w3.org/2000/svg}"
TIMES = "\u00d7"  # how burn rates and factors are written


@dataclass
class Shop:
    """Payments owns checkout with three SLOs (healthy, burning, never measured); search owns
    ledger, whose SLO has spent its budget and froze its releases."""

    member: User
    outsider: User
    payments: Team
    healthy: int
    burning: int
    quiet: int
    exhausted: int
    burning_key: str


def _slo(db: Database, entity: str, name: str, **fields: object) -> tuple[int, str | None]:
    data = SloIn.model_validate({"entity": entity, "name": name, "objective": 99.9, **fields})
    with db.transaction() as session:
        slo, key = service.create(session=session, actor=SYSTEM, data=data)
        return slo.id, key


def _push(db: Database, slo_id: int, points: list[tuple[dt.datetime, int, int]]) -> None:
    with db.transaction() as session:
        service.record_counts(session=session, slo_id=slo_id, points=points)


def _traffic(
    start: dt.datetime, end: dt.datetime, step: dt.timedelta, total: int, bad: int
) -> list[tuple[dt.datetime, int, int]]:
    points = []
    at = start
    while at < end:
        points.append((at, total - bad, total))
        at += step
    return points


@pytest.fixture
def shop(db: Database) -> Shop:
    member = person(db, email="mia@example.com")
    outsider = person(db, email="otto@example.com")
    payments = make_team(db, slug="payments", members=[member])
    make_team(db, slug="search")
    with db.transaction() as session:
        for name, owner in (("checkout", "payments"), ("ledger", "search")):
            catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(kind="service", name=name, owner=owner),
            )
    healthy, _ = _slo(db, "checkout", "availability", source="events")
    burning, key = _slo(db, "checkout", "latency", source="events")
    quiet, _ = _slo(db, "checkout", "homepage", source="events")
    exhausted, _ = _slo(db, "ledger", "errors", source="events")
    assert key is not None
    now = utcnow().replace(second=0, microsecond=0)
    day_ago = now - dt.timedelta(days=1)
    ten = dt.timedelta(minutes=10)
    minute = dt.timedelta(minutes=1)
    # A day of 1,000 events every ten minutes: 144,000 events, a budget of 144 bad ones.
    _push(db, healthy, _traffic(day_ago, now, ten, 1000, 0))
    # Ten times that, then two hours of 100 a minute with 3 bad: 30x the sustainable rate.
    _push(db, burning, _traffic(day_ago, now - dt.timedelta(hours=2), ten, 10000, 0))
    _push(db, burning, _traffic(now - dt.timedelta(hours=2), now, minute, 100, 3))
    _push(db, exhausted, _traffic(day_ago, now, ten, 1000, 50))
    with db.transaction() as session:
        slos = [session.get(Slo, i) for i in (healthy, burning, exhausted)]
        evaluate.evaluate(session=session, slos=[s for s in slos if s], now=now)
    return Shop(member, outsider, payments, healthy, burning, quiet, exhausted, key)


def _state(db: Database, slo_id: int) -> Slo:
    with db.sessionmaker() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        session.expunge(slo)
        return slo


def _names_in_order(page: str) -> list[str]:
    return re.findall(r'<a href="/slos/\d+">([a-z0-9-]+)</a>', page)


# -- the list ---------------------------------------------------------------------------------------
def test_the_list_puts_the_least_budget_left_first(client: TestClient, shop: Shop) -> None:
    sign_in(client, shop.member)
    page = client.get("/slos")
    assert page.status_code == 200
    assert _names_in_order(page.text) == ["errors", "latency", "availability", "homepage"]
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)[1:]
    assert "Exhausted" in text(rows[0]) and "Releases frozen" in text(rows[0])
    assert "Burning" in text(rows[1]) and f"30.0{TIMES}" in text(rows[1])  # 3 of 100 over 0.1 %
    assert "Healthy" in text(rows[2]) and "100 %" in text(rows[2])
    assert "No data" in text(rows[3]) and "Releases frozen" not in text(rows[2])
    assert 'data-label="Budget left"' in rows[0]


def test_the_list_filters_by_team_entity_and_status(client: TestClient, shop: Shop) -> None:
    sign_in(client, shop.member)
    by_team = client.get("/slos", params={"team": "payments"})
    assert _names_in_order(by_team.text) == ["latency", "availability", "homepage"]
    by_entity = client.get("/slos", params={"entity": "service:default/ledger"})
    assert _names_in_order(by_entity.text) == ["errors"]
    by_status = client.get("/slos", params={"status": "burning"})
    assert _names_in_order(by_status.text) == ["latency"]
    none = client.get("/slos", params={"status": "healthy", "team": "search"})
    assert "No SLO matches these filters." in text(none)


def test_a_wrong_filter_is_named_next_to_its_field(client: TestClient, shop: Shop) -> None:
    sign_in(client, shop.member)
    page = client.get("/slos", params={"team": "nobody", "status": "on fire", "entity": "nope"})
    assert page.status_code == 422
    for field in ("team", "status", "entity"):
        assert re.search(rf'id="f-{field}-error"', page.text), field
    assert "choose one of exhausted, burning" in text(page)
    assert _names_in_order(page.text) == []


def test_the_empty_list_says_how_to_define_an_slo(client: TestClient, db: Database) -> None:
    sign_in(client, person(db))
    page = client.get("/slos")
    assert "No SLOs yet. Define one on a service or an API" in text(page)
    assert "lamplighter slo apply" in text(page)
    assert 'href="/slos/new"' in page.text


def test_the_list_pages_with_a_cursor(client: TestClient, db: Database, shop: Shop) -> None:
    with db.transaction() as session:
        for index in range(50):
            data = SloIn(entity="checkout", name=f"extra-{index}", objective=99, source="events")
            service.create(session=session, actor=SYSTEM, data=data)
    sign_in(client, shop.member)
    first = client.get("/slos")
    assert _names_in_order(first.text)[:2] == ["errors", "latency"]
    assert len(_names_in_order(first.text)) == 50
    link = re.search(r'<a class="next" href="([^"]+)">Next page', first.text)
    assert link is not None
    second = client.get(link.group(1).replace("&amp;", "&"))
    names = _names_in_order(second.text)
    assert len(names) == 4 and not set(names) & set(_names_in_order(first.text))
    assert "First page" in second.text
    bad = client.get("/slos", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert "not a cursor this server issued" in text(bad)


# -- one SLO --------------------------------------------------------------------------------------
def test_the_slo_page_shows_the_evaluated_figures(
    client: TestClient, db: Database, shop: Shop
) -> None:
    sign_in(client, shop.member)
    page = client.get(f"/slos/{shop.burning}")
    assert page.status_code == 200
    slo = _state(db, shop.burning)
    shown = text(page)
    assert slo.attainment is not None and slo.status == "burning"
    # 22 hours of 60,000 and 2 of 6,000 events, 360 of them bad: a budget of 1,332 bad events.
    assert budget_words(slo) == "73 % of the budget left: 360 of 1,332 bad events spent"
    assert budget_words(slo) in shown
    assert percent_text(slo.attainment) in shown
    assert "Budget runs out" in shown and "In " in shown  # at 30x, within the window
    assert "checkout" in shown and 'href="/catalog/service/default/checkout"' in page.text
    assert 'href="/teams/payments"' in page.text
    assert "rolling 30 days" in shown


def test_the_burning_slo_page_has_its_alert_table_and_ingest_instructions(
    client: TestClient, db: Database, shop: Shop
) -> None:
    sign_in(client, shop.member)
    page = client.get(f"/slos/{shop.healthy}")
    shown = text(page)
    assert "100 % of the budget left: 0 of 144 bad events spent" in shown
    alerts = re.search(r'aria-label="Burn-rate alerts".*?</table>', page.text, re.S)
    assert alerts is not None
    rows = [text(row) for row in re.findall(r"<tr>(.*?)</tr>", alerts.group(0), re.S)[1:]]
    assert [row.split()[0] for row in rows] == ["page-1h", "page-6h", "ticket-1d", "ticket-3d"]
    assert "1h / 5m" in rows[0] and f"14.4{TIMES}" in rows[0] and "Quiet" in rows[0]
    assert f"POST http://127.0.0.1:8080/api/v1/slos/{shop.healthy}/events" in shown
    assert "X-Lamplighter-Ingest-Key" in shown
    hint = _state(db, shop.healthy).ingest_key_hint
    assert f"…{hint}" in shown and "llslo_" not in page.text  # the key itself never


def test_a_firing_alert_is_marked(client: TestClient, shop: Shop) -> None:
    sign_in(client, shop.member)
    page = client.get(f"/slos/{shop.burning}")
    alerts = re.search(r'aria-label="Burn-rate alerts".*?</table>', page.text, re.S)
    assert alerts is not None
    rows = [text(row) for row in re.findall(r"<tr>(.*?)</tr>", alerts.group(0), re.S)[1:]]
    assert "Firing" in rows[0] and f"30.0{TIMES}" in rows[0]  # 3 % bad over a 0.1 % budget
    assert "Firing" not in rows[2]  # ticket-1d: 360 bad of 1,332,000 is 0.27x, under 3x
    assert "Burning" in text(page)


def test_the_burndown_chart_and_its_table_show_the_same_points(
    client: TestClient, db: Database, shop: Shop
) -> None:
    sign_in(client, shop.member)
    page = client.get(f"/slos/{shop.exhausted}")
    with db.sessionmaker() as session:
        slo = session.get(Slo, shop.exhausted)
        assert slo is not None
        points = evaluate.burndown(session, slo)
    assert len(points) >= 24
    svg_text = re.search(r'<svg class="tk-chart slo-burndown".*?</svg>', page.text, re.S)
    assert svg_text is not None
    svg = ET.fromstring(svg_text.group(0))
    assert svg.get("role") == "img" and "errors of ledger" in (svg.get("aria-label") or "")
    line = svg.find(f".//{SVG}polyline")
    assert line is not None
    assert len((line.get("points") or "").split()) == len(points) + 1  # from 100 % at the start
    zero = svg.find(f".//{SVG}line[@class='slo-zero-line']")
    assert zero is not None
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "100 %" in labels and "0 %" in labels and "budget spent" in labels
    table = re.search(r"<details.*?</details>", page.text, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)[1:]
    assert len(rows) == len(points)
    assert text(rows[-1]).endswith(percent_text(points[-1][1], 2))
    assert percent_text(points[-1][1], 2) == "-4900 %"  # 5 % bad over a 0.1 % budget


def test_the_policy_and_the_release_freeze(client: TestClient, db: Database, shop: Shop) -> None:
    lead_of_search = person(db)
    with db.transaction() as session:
        from lamplighter.core import identity

        identity.add_member(
            session=session, actor=SYSTEM, slug="search", email=lead_of_search.email
        )
    csrf = sign_in(client, lead_of_search)
    page = client.get(f"/slos/{shop.exhausted}")
    shown = text(page)
    assert "the owning team when 50 % and 75 % of the budget is spent" in shown
    assert "Frozen SLO errors has spent its error budget" in shown
    assert "Grant a release exception" in shown
    refused = client.post(
        f"/slos/{shop.exhausted}/exception", data={"csrf_token": csrf, "reason": "", "hours": "4"}
    )
    assert refused.status_code == 422
    assert 'id="f-reason-error"' in refused.text and "at least 10 characters" in refused.text
    granted = client.post(
        f"/slos/{shop.exhausted}/exception",
        data={"csrf_token": csrf, "reason": "Hotfix for the broken refunds", "hours": "4"},
        follow_redirects=True,
    )
    assert "may go out for 4 hours despite the freeze" in text(granted)
    assert "“Hotfix for the broken refunds”" in text(granted)
    assert "Grant the exception" not in granted.text
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(FreezeException)) == 1


# -- writing --------------------------------------------------------------------------------------
def test_an_outsider_sees_no_write_buttons_and_is_refused(
    client: TestClient, db: Database, shop: Shop
) -> None:
    csrf = sign_in(client, shop.outsider)
    page = client.get(f"/slos/{shop.burning}")
    assert page.status_code == 200
    for button in ("Evaluate now", "Rotate ingest key", "Delete", "Edit"):
        assert button not in text(page)
    for action in ("evaluate", "rotate-key", "delete"):
        refused = client.post(f"/slos/{shop.burning}/{action}", data={"csrf_token": csrf})
        assert refused.status_code == 403, action
    assert client.get(f"/slos/{shop.burning}/edit").status_code == 403
    assert client.get(f"/slos/{shop.burning}/delete").status_code == 403
    assert _state(db, shop.burning).name == "latency"  # still there
    without_token = client.post(f"/slos/{shop.burning}/delete", data={})
    assert without_token.status_code == 403
    assert client.get("/slos/999999").status_code == 404


def test_the_owner_evaluates_rotates_and_deletes(
    client: TestClient, db: Database, shop: Shop
) -> None:
    csrf = sign_in(client, shop.member)
    page = client.get(f"/slos/{shop.quiet}")
    assert "Evaluate now" in text(page) and "No data" in text(page)
    evaluated = client.post(
        f"/slos/{shop.quiet}/evaluate", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Evaluated homepage: no data (no events in the window yet)." in text(evaluated)
    assert _state(db, shop.quiet).evaluated_at is not None
    rotated = client.post(
        f"/slos/{shop.burning}/rotate-key", data={"csrf_token": csrf}, follow_redirects=True
    )
    key = re.search(r'<code class="secret" id="ingest-key">(llslo_[^<]+)</code>', rotated.text)
    assert key is not None and key.group(1) != shop.burning_key
    assert f"X-Lamplighter-Ingest-Key: {key.group(1)}" in text(rotated)  # the curl command
    assert key.group(1) not in client.get(f"/slos/{shop.burning}").text  # shown once
    confirm = client.get(f"/slos/{shop.quiet}/delete")
    assert "Delete the SLO homepage?" in text(confirm)
    deleted = client.post(
        f"/slos/{shop.quiet}/delete", data={"csrf_token": csrf}, follow_redirects=True
    )
    assert "Deleted the SLO homepage of checkout" in text(deleted)
    assert "homepage" not in _names_in_order(deleted.text)


def _form(csrf: str, **values: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf,
        "entity": "service:default/checkout",
        "name": "payments-ok",
        "objective": "99.5",
        "window": "28d",
        "time_zone": "Europe/Berlin",
        "source": "events",
        "sli_kind": "ratio",
        "query_kind": "good",
        "budgeting": "occurrences",
        "page": "on",
        "ticket": "on",
        "min_events": "10",
    }
    data.update(values)
    return data


def test_the_form_puts_each_error_next_to_its_field(client: TestClient, shop: Shop) -> None:
    csrf = sign_in(client, shop.member)
    page = client.post(
        "/slos",
        data=_form(
            csrf,
            name="Bad Name",
            objective="lots",
            time_zone="Mars/Olympus",
            source="prometheus",
            total_query="sum(rate(http_requests_total[{{.window}}]))",
        ),
    )
    assert page.status_code == 422
    errors = dict(re.findall(r'id="f-([a-z_]+)-error"><span[^>]*>Error: </span>([^<]+)', page.text))
    assert errors["objective"] == "enter a number"
    assert errors["name"] == (
        "use lowercase letters, digits and inner hyphens, e.g. checkout-availability"
    )
    assert "not an IANA time zone" in errors["time_zone"]
    assert 'value="Bad Name"' in page.text  # what was typed stays
    missing_query = client.post("/slos", data=_form(csrf, source="prometheus"))
    errors = dict(
        re.findall(r'id="f-([a-z_]+)-error"><span[^>]*>Error: </span>([^<]+)', missing_query.text)
    )
    assert "needs total_query and good_query or bad_query" in errors["good_query"]
    unknown = client.post("/slos", data=_form(csrf, entity="service:default/nowhere"))
    assert unknown.status_code == 422 and 'id="f-entity-error"' in unknown.text
    clash = client.post("/slos", data=_form(csrf, name="availability"))
    assert clash.status_code == 409
    assert "already has an SLO named 'availability'" in text(clash)
    assert 'id="f-name-error"' in clash.text


def test_defining_an_events_slo_shows_its_key_once_with_the_curl_command(
    client: TestClient, db: Database, shop: Shop
) -> None:
    csrf = sign_in(client, shop.member)
    form = client.get("/slos/new", params={"entity": "service:default/checkout"})
    assert 'value="service:default/checkout"' in form.text
    created = client.post("/slos", data=_form(csrf), follow_redirects=True)
    assert created.status_code == 200
    assert "Defined the SLO payments-ok" in text(created)
    key = re.search(r'id="ingest-key">(llslo_[^<]+)<', created.text)
    assert key is not None
    assert "curl -X POST http://127.0.0.1:8080/api/v1/slos/" in text(created)
    with db.sessionmaker() as session:
        slo = session.scalar(sa.select(Slo).where(Slo.name == "payments-ok"))
        assert slo is not None
        assert (slo.objective, slo.window_days, slo.time_zone) == (0.995, 28, "Europe/Berlin")
        assert slo.alerting["min_events"] == 10 and slo.ingest_key_hint == key.group(1)[-4:]
        slo_id = slo.id
    assert key.group(1) not in client.get(f"/slos/{slo_id}").text


def test_a_probe_and_a_prometheus_slo_through_the_form_and_an_edit(
    client: TestClient, db: Database, shop: Shop
) -> None:
    csrf = sign_in(client, shop.member)
    no_link = client.post("/slos", data=_form(csrf, name="up", source="probe"))
    assert no_link.status_code == 422
    assert "has no health link" in no_link.text and 'id="f-probe_url-error"' in no_link.text
    probe = client.post(
        "/slos",
        data=_form(csrf, name="up", source="probe", probe_url="https://checkout.example/healthz"),
        follow_redirects=True,
    )
    assert "https://checkout.example/healthz" in text(probe)
    assert "No probe has run yet." in text(probe)
    assert "ingest-key" not in probe.text
    prom = client.post(
        "/slos",
        data=_form(
            csrf,
            name="fast",
            source="prometheus",
            sli_kind="latency",
            metric="http_request_duration_seconds",
            threshold_s="0.3",
            selector='job="checkout"',
        ),
        follow_redirects=True,
    )
    assert "http_request_duration_seconds" in text(prom) and "0.3 s" in text(prom)
    slo_id = int(re.search(r"/slos/(\d+)/edit", prom.text).group(1))  # type: ignore[union-attr]
    edit = client.get(f"/slos/{slo_id}/edit")
    assert 'value="http_request_duration_seconds"' in edit.text and 'value="99.5"' in edit.text
    saved = client.post(
        f"/slos/{slo_id}/edit",
        data=_form(
            csrf,
            name="fast",
            objective="99.95",
            source="prometheus",
            sli_kind="latency",
            metric="http_request_duration_seconds",
            threshold_s="0.5",
            ticket="",
        ),
        follow_redirects=True,
    )
    assert "Saved the SLO fast." in text(saved)
    slo = _state(db, slo_id)
    assert slo.objective == 0.9995 and slo.sli["threshold_s"] == 0.5
    assert slo.alerting["ticket"] is False and slo.alerting["page"] is True


# -- panels ---------------------------------------------------------------------------------------
def test_the_entity_team_and_home_pages_show_the_slos(
    client: TestClient, db: Database, shop: Shop
) -> None:
    sign_in(client, shop.member)
    entity = client.get("/catalog/service/default/checkout")
    panel = re.search(r'<section class="card" id="slos".*?</section>', entity.text, re.S)
    assert panel is not None
    assert _names_in_order(panel.group(0)) == ["latency", "availability", "homepage"]
    assert 'href="/slos/new?entity=service%3Adefault/checkout"' in panel.group(0)
    team = client.get("/teams/payments")
    panel = re.search(r'<section class="card" id="slos".*?</section>', team.text, re.S)
    assert panel is not None and "Burning" in text(panel.group(0))
    assert _names_in_order(panel.group(0)) == ["latency", "availability", "homepage"]
    home = text(client.get("/"))
    assert "SLOs burning their error budget" in home and "latency · checkout" in home
    assert "errors · ledger" not in home  # another team's

    sign_in(client, shop.outsider)
    ledger = client.get("/catalog/service/default/ledger")
    assert "Define an SLO" not in ledger.text and "errors" in text(ledger)
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="service", name="bare", owner="search"),
        )
    assert 'id="slos"' not in client.get("/catalog/service/default/bare").text


# -- the chart alone --------------------------------------------------------------------------------
def test_the_burndown_chart_runs_from_full_to_its_last_point() -> None:
    start = dt.datetime(2026, 11, 6, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=30)
    points = [(start + dt.timedelta(days=10), 0.5), (start + dt.timedelta(days=20), -0.25)]
    svg = ET.fromstring(
        str(
            charts.burndown_chart(
                points, window_start=start, window_end=end, now=end, title="Budget <left>"
            )
        )
    )
    assert svg.findtext(f"{SVG}title") == "Budget <left>"
    coordinates = [
        tuple(map(float, pair.split(",")))
        for pair in (svg.find(f".//{SVG}polyline").get("points") or "").split()  # type: ignore[union-attr]
    ]
    ys = [y for _, y in coordinates]
    assert ys[0] < ys[1] < ys[2]  # falling: 100 %, 50 %, -25 % (y grows downwards)
    assert coordinates[0][0] == charts.PAD_LEFT
    ticks = [t.text for t in svg.iter(f"{SVG}text")]
    assert "-25 %" in ticks and "100 %" in ticks
    empty = str(
        charts.burndown_chart([], window_start=start, window_end=end, now=end, title="Nothing")
    )
    assert "No events in this window yet" in empty and "polyline" not in empty
