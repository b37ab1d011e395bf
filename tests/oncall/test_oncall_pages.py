"""The on-call pages: a schedule's 14-day timeline with its layers, final schedule and who is on
call now; an override added through the form; the escalation policies with their tiers; and
"My contact methods" with its methods and rules, never showing a secret."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lamplighter.app import create_app
from lamplighter.core.db import Database, utcnow
from lamplighter.core.settings import Settings
from lamplighter.oncall import contacts, oncall_pages, policies
from lamplighter.oncall.models import ContactMethod, OnCallOverride
from tests.conftest import SYSTEM
from tests.helpers import found, sign_in, text
from tests.oncall.schedule_fixtures import Org, actor_of, rotation
from tests.oncall.test_frontline_pages import can_sign_in


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    """The app, with these pages mounted even before the on-call manifest names them."""
    built = create_app(settings, db=db)
    if not any(getattr(r, "path", "").startswith("/oncall/schedules") for r in built.routes):
        built.include_router(oncall_pages.router)
    return built


@pytest.fixture
def org(db: Database) -> Org:
    org = Org(db)
    can_sign_in(db, org.ada, org.bo, org.cy, org.outsider)
    return org


def weekly(org: Org) -> int:
    """Layer "week" (Ada, then Bo, handing off every 7 days from two days ago) under layer
    "weekend-help" (Cy, Saturdays 10:00 to 12:00 UTC): the schedule's id."""
    anchor = utcnow().replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=2)
    week = rotation("week", [org.ada.id, org.bo.id], kind="weekly", start=anchor)
    help_ = rotation(
        "weekend-help",
        [org.cy.id],
        start=anchor,
        restrictions=[{"weekdays": [5], "start_time": "10:00", "end_time": "12:00"}],
    )
    return org.schedule([week, help_], name="Checkout primary").id


def row_of(page: str, kind: str) -> str:
    return found(rf'data-row="{kind}">(.*?)</div>', page, re.S).group(1)


def bars_in(row: str) -> list[tuple[float, float, str]]:
    return [
        (float(left), float(width), name)
        for left, width, name in re.findall(
            r'data-left="([\d.]+)" data-width="([\d.]+)">.*?<text[^>]*>([^<]+)</text>', row, re.S
        )
    ]


def table_rows(page: str, label: str) -> list[str]:
    table = found(rf'aria-label="{label}".*?</table>', page, re.S).group(0)
    return [text(row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]]


# -- schedules ------------------------------------------------------------------------------------
def test_a_weekly_rotation_shows_its_layers_final_bars_table_and_who_is_on_call_now(
    client: TestClient, org: Org
) -> None:
    schedule_id = weekly(org)
    sign_in(client, org.bo)

    listing = client.get("/oncall/schedules")
    assert f'href="/oncall/schedules/{schedule_id}"' in listing.text
    assert "Checkout primary" in text(listing)

    page = client.get(f"/oncall/schedules/{schedule_id}")
    assert page.status_code == 200
    assert page.text.count("<h1") == 1
    now = text(found(r'aria-labelledby="now-title">(.*?)</section>', page.text, re.S).group(1))
    assert org.ada.display_name in now and org.bo.display_name not in now

    layers = re.findall(r'data-row="rotation">.*?<strong>(.*?)</strong>', page.text, re.S)
    assert layers == ["Layer weekend-help", "Layer week"]
    layer_rows = re.findall(r'data-row="rotation">(.*?)</div>', page.text, re.S)
    week = bars_in(layer_rows[1])
    assert [name for _, _, name in week][:2] == [org.ada.display_name, org.bo.display_name]
    assert {name for _, _, name in bars_in(layer_rows[0])} == {org.cy.display_name}

    final = bars_in(row_of(page.text, "final"))
    names = {name for _, _, name in final}
    assert names == {org.ada.display_name, org.bo.display_name, org.cy.display_name}
    assert final[0][0] == 0.0 and all(0 <= left <= 100 for left, _, _ in final)
    assert round(sum(width for _, width, _ in final)) == 100  # someone on call all 14 days
    # Bo takes over 7 days after the anchor, 5 days into the range plus the hours of today
    # (none in the hour after midnight: the bound is then met, to the page's three decimals).
    first_bo = next(left for left, _, name in final if name == org.bo.display_name)
    assert 5 / 14 * 100 - 0.001 <= first_bo < 6 / 14 * 100

    shifts = table_rows(page.text, "Final schedule shifts")
    assert shifts[0].startswith(org.ada.display_name)
    assert any(row.startswith(org.bo.display_name) for row in shifts)
    assert any(row.startswith(org.cy.display_name) for row in shifts)


def test_the_start_chooses_the_fortnight_and_a_bad_one_is_explained(
    client: TestClient, org: Org
) -> None:
    schedule_id = weekly(org)
    sign_in(client, org.ada)
    later = client.get(f"/oncall/schedules/{schedule_id}?start=2099-01-05")
    assert "5 Jan 2099" in text(
        found(r"<h2 id=\"timeline-title\">.*?</h2>", later.text, re.S).group(0)
    )
    assert "Nobody is on call on this schedule now" not in later.text  # Ada still is, today

    bad = client.get(f"/oncall/schedules/{schedule_id}?start=next-week")
    assert bad.status_code == 422
    assert "choose a day such as" in found(r'id="f-start-error".*?</p>', bad.text, re.S).group(0)


def test_an_override_from_the_form_joins_the_final_schedule_and_an_outsider_is_refused(
    client: TestClient, db: Database, org: Org
) -> None:
    schedule_id = weekly(org)
    start = (utcnow() + dt.timedelta(days=3)).date()
    form = {
        "user": org.cy.email,
        "starts": f"{start} 09:00",
        "ends": f"{start} 21:00",
        "reason": "Bo's dentist",
    }

    csrf = sign_in(client, org.outsider)
    assert "/overrides" not in client.get(f"/oncall/schedules/{schedule_id}").text
    refused = client.post(
        f"/oncall/schedules/{schedule_id}/overrides", data={**form, "csrf_token": csrf}
    )
    assert refused.status_code == 403
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(OnCallOverride)) == 0

    csrf = sign_in(client, org.bo)
    page = client.get(f"/oncall/schedules/{schedule_id}")
    assert f'action="/oncall/schedules/{schedule_id}/overrides"' in page.text
    added = client.post(
        f"/oncall/schedules/{schedule_id}/overrides",
        data={**form, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    after = client.get(added.headers["location"])
    assert f"{org.cy.email} is on call from" in text(after)
    overrides = bars_in(row_of(after.text, "overrides"))
    assert [name for _, _, name in overrides] == [org.cy.display_name]
    shifts = table_rows(after.text, "Final schedule shifts")
    cover = [row for row in shifts if "Override" in row]
    assert len(cover) == 1 and cover[0].startswith(org.cy.display_name)
    assert f"{start.day} " in cover[0] and "09:00 UTC" in cover[0] and "21:00 UTC" in cover[0]


def test_a_wrong_override_is_explained_next_to_its_fields(client: TestClient, org: Org) -> None:
    schedule_id = weekly(org)
    csrf = sign_in(client, org.bo)
    answer = client.post(
        f"/oncall/schedules/{schedule_id}/overrides",
        data={
            "user": "nobody@example.com",
            "starts": "2099-01-02 10:00",
            "ends": "2099-01-01 10:00",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 422
    assert "nobody signs in as" in found(r'id="f-user-error".*?</p>', answer.text, re.S).group(0)

    answer = client.post(
        f"/oncall/schedules/{schedule_id}/overrides",
        data={
            "user": org.cy.email,
            "starts": "2099-01-02 10:00",
            "ends": "2099-01-01 10:00",
            "csrf_token": csrf,
        },
    )
    assert answer.status_code == 422
    error = found(r'id="f-ends-error".*?</p>', answer.text, re.S).group(0)
    assert "ends after it starts" in error


# -- escalation policies --------------------------------------------------------------------------
def test_the_policies_page_lists_tiers_in_order_with_their_targets_named(
    client: TestClient, db: Database, org: Org
) -> None:
    schedule_id = weekly(org)
    with db.transaction() as session:
        policies.create(
            session=session,
            actor=SYSTEM,
            team_id=org.team.id,
            name="Checkout paging",
            tiers=[
                {
                    "name": "Frontline",
                    "delay_minutes": 10,
                    "targets": [{"type": "schedule", "id": schedule_id}],
                },
                {
                    "name": "Lead",
                    "delay_minutes": 15,
                    "targets": [{"type": "user", "id": org.ada.id}],
                },
                {"delay_minutes": 30, "targets": [{"type": "team", "id": org.other_team.id}]},
            ],
            repeat=2,
        )
    sign_in(client, org.cy)

    page = client.get("/oncall/policies")

    assert page.status_code == 200
    assert page.text.count("<h1") == 1
    card = found(r'<section class="card policy".*?</section>', page.text, re.S).group(0)
    assert "Checkout paging" in text(card) and "Team default" in text(card)
    assert "2 more times" in text(card)
    tiers = [text(t) for t in re.findall(r'<li class="policy-tier">(.*?)</li>', card, re.S)]
    assert len(tiers) == 3
    assert tiers[0].startswith("Frontline") and "Checkout primary" in tiers[0]
    assert "10 minutes" in tiers[0]
    assert tiers[1].startswith("Lead") and org.ada.display_name in tiers[1]
    assert tiers[2].startswith("Tier 3") and org.other_team.name in tiers[2]
    assert f'href="/oncall/schedules/{schedule_id}"' in card


# -- my contact methods ---------------------------------------------------------------------------
def _my_rules(page: str) -> list[str]:
    return table_rows(page, "Notification rules, the soonest first")


def test_contacts_adds_an_email_and_a_five_minute_rule_and_never_shows_a_secret(
    app: Any, client: TestClient, db: Database, org: Org
) -> None:
    slack = "https://hooks.slack.com/services/T0SECRET/B0SECRET/verysecrettoken1234"
    with db.transaction() as session:
        contacts.create_method(
            session=session,
            actor=actor_of(db, org.bo),
            user_id=org.bo.id,
            kind="slack",
            box=app.state.box,
            address=slack,
            label="Team chat",
        )
    csrf = sign_in(client, org.bo)

    added = client.post(
        "/oncall/me/contacts/methods",
        data={"address": "bo.pager@example.com", "label": "Pager", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    page = client.get(added.headers["location"])
    assert "Added bo.pager@example.com" in text(page)
    methods = table_rows(page.text, "Contact methods")
    assert any("Pager" in row and "bo.pager@example.com" in row for row in methods)
    email_id = found(r'<option value="(\d+)">Pager', page.text).group(1)

    rule = client.post(
        "/oncall/me/contacts/rules",
        data={"contact_method_id": email_id, "delay_minutes": "5", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert rule.status_code == 303, rule.text
    page = client.get("/oncall/me/contacts")
    assert "is told after 5 minutes" in text(page)
    slack_id = found(r'<option value="(\d+)">Team chat', page.text).group(1)
    client.post(
        "/oncall/me/contacts/rules",
        data={"contact_method_id": slack_id, "delay_minutes": "0", "csrf_token": csrf},
    )
    page = client.get("/oncall/me/contacts")
    rules = _my_rules(page.text)
    assert rules[0].startswith("At once") and "Team chat" in rules[0]
    assert rules[1].startswith("5 minutes") and "bo.pager@example.com" in rules[1]

    with db.sessionmaker() as session:
        stored = session.scalars(sa.select(ContactMethod).where(ContactMethod.kind == "slack"))
        encrypted = stored.one().address
    assert encrypted != slack
    for secret in (slack, "verysecrettoken1234", "T0SECRET", encrypted):
        assert secret not in page.text
    assert "https://hooks.slack.com/…/1234" in text(page)

    # Removing the email method removes its rule too.
    removed = client.post(
        f"/oncall/me/contacts/methods/{email_id}/delete",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    page = client.get("/oncall/me/contacts")
    assert "Removed the contact method" in text(page)
    assert "bo.pager@example.com" not in page.text
    assert len(_my_rules(page.text)) == 1


def test_a_bad_email_is_explained_next_to_the_field(client: TestClient, org: Org) -> None:
    csrf = sign_in(client, org.bo)
    answer = client.post(
        "/oncall/me/contacts/methods",
        data={"address": "not-an-address", "csrf_token": csrf},
    )
    assert answer.status_code == 422
    error = found(r'id="f-address-error".*?</p>', answer.text, re.S).group(0)
    assert "not a valid email address" in error
    assert 'value="not-an-address"' in answer.text
    assert "No contact methods yet" in text(answer)


def test_someone_elses_method_and_rule_cannot_be_removed(
    app: Any, client: TestClient, db: Database, org: Org
) -> None:
    with db.transaction() as session:
        method = contacts.create_method(
            session=session,
            actor=SYSTEM,
            user_id=org.ada.id,
            kind="email",
            box=app.state.box,
            address="ada.pager@example.com",
        )
        rule = contacts.create_rule(
            session=session, actor=SYSTEM, user_id=org.ada.id, contact_method_id=method.id
        )
        method_id, rule_id = method.id, rule.id
    csrf = sign_in(client, org.bo)

    for path in (
        f"/oncall/me/contacts/methods/{method_id}/delete",
        f"/oncall/me/contacts/rules/{rule_id}/delete",
    ):
        refused = client.post(path, data={"csrf_token": csrf})
        assert refused.status_code == 403, path
        assert "someone else" in text(refused)
    with db.sessionmaker() as session:
        assert session.get(ContactMethod, method_id) is not None
