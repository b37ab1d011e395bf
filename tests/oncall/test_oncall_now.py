"""Who is on call now: for a schedule, a team and a catalog entity (through the team's default
escalation policy's first tier, or else its schedules); changes seen at once despite the
per-process cache; the entity and team pages' "On call now" panels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lamplighter.core import identity
from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, NotFound, ValidationFailed
from lamplighter.core.webui import ENTITY_PANELS, TEAM_PANELS
from lamplighter.oncall import on_duty, panels, schedules
from lamplighter.oncall.schedule_schemas import ScheduleUpdate
from tests.conftest import SYSTEM
from tests.helpers import PASSWORD, sign_in, text
from tests.oncall import schedule_fixtures
from tests.oncall.schedule_fixtures import Org, rotation, utc

org = schedule_fixtures.org
NOON = utc(2027, 6, 2, 12)  # a Wednesday


def now_of(
    org: Org, at: dt.datetime = NOON, **where: int
) -> list[tuple[str, str | None, str | None]]:
    """(person, schedule, layer) of everyone on call ``at``."""
    with org.db.sessionmaker() as session:
        found = on_duty.who_is_on_call(session, at=at, **where)
    return [(org.name_of(n.user_id), n.schedule_name, n.layer) for n in found]


def two_schedules(org: Org) -> tuple[int, int]:
    """``primary`` (Ada, Bo, Cy daily from 1 June 09:00 UTC) and ``secondary`` (Cy weekly)."""
    primary = org.schedule([rotation("day", org.people, start=utc(2027, 6, 1, 9))])
    secondary = org.schedule(
        [rotation("week", [org.cy.id], kind="weekly", start=utc(2027, 5, 31))], name="secondary"
    )
    return primary.id, secondary.id


def test_a_team_is_on_call_on_each_of_its_schedules(org: Org) -> None:
    primary, _ = two_schedules(org)
    assert now_of(org, team_id=org.team.id) == [
        ("bo", "primary", "day"),
        ("cy", "secondary", "week"),
    ]
    assert now_of(org, schedule_id=primary) == [("bo", "primary", "day")]
    with org.db.sessionmaker() as session:
        (bo,) = on_duty.who_is_on_call(session, schedule_id=primary, at=NOON)
    assert (bo.email, bo.since, bo.until) == (
        "bo@example.com",
        utc(2027, 6, 2, 9),
        utc(2027, 6, 3, 9),
    )
    assert now_of(org, team_id=org.other_team.id) == []


def test_an_entity_without_a_default_policy_is_covered_by_its_teams_schedules(org: Org) -> None:
    two_schedules(org)
    assert now_of(org, entity_id=org.entity.id) == [
        ("bo", "primary", "day"),
        ("cy", "secondary", "week"),
    ]


def test_an_entity_is_covered_by_the_first_tier_of_its_teams_default_policy(org: Org) -> None:
    """Schedule targets give who is on call there, user targets the person, team targets their
    members (no schedule); later tiers are not asked."""
    primary, _ = two_schedules(org)
    org.default_policy(
        [
            {"type": "schedule", "id": primary},
            {"type": "user", "id": org.sre.id},
            {"type": "team", "id": org.other_team.id},
        ]
    )
    with org.db.sessionmaker() as session:
        found = on_duty.who_is_on_call(session, entity_id=org.entity.id, at=NOON)
    assert [(n.email, n.schedule_name, n.layer) for n in found] == [
        ("bo@example.com", "primary", "day"),
        ("sre@example.com", None, None),
        ("out@example.com", None, None),  # the other team's lead, its one member
    ]
    assert found[1].since is None and found[1].until is None
    # Ada is in the second tier only: not paged first.
    assert "ada@example.com" not in {n.email for n in found}


def test_a_schedule_a_policy_pages_cannot_be_deleted(org: Org) -> None:
    primary, secondary = two_schedules(org)
    org.default_policy([{"type": "schedule", "id": primary}])
    with org.db.sessionmaker() as session, pytest.raises(Conflict, match="policies default"):
        schedules.delete(session=session, actor=SYSTEM, schedule_id=primary)
    with org.db.transaction() as session:
        schedules.delete(session=session, actor=SYSTEM, schedule_id=secondary)
    assert now_of(org, entity_id=org.entity.id) == [("bo", "primary", "day")]


def test_an_override_or_a_changed_rotation_is_seen_at_once(org: Org) -> None:
    primary, _ = two_schedules(org)
    assert now_of(org, schedule_id=primary) == [("bo", "primary", "day")]  # compiled and cached
    org.override(primary, org.ada, utc(2027, 6, 2, 11), utc(2027, 6, 2, 13))
    assert now_of(org, schedule_id=primary) == [("ada", "primary", "override")]
    with org.db.transaction() as session:
        schedules.update(
            session=session,
            actor=SYSTEM,
            schedule_id=primary,
            data=ScheduleUpdate.model_validate(
                {"layers": [rotation("day", [org.cy.id], start=utc(2027, 6, 1, 9))]}
            ),
        )
    assert now_of(org, at=utc(2027, 6, 2, 14), schedule_id=primary) == [("cy", "primary", "day")]
    with org.db.sessionmaker() as session:
        assert on_duty.on_call_user_ids(session, primary, utc(2027, 6, 2, 12)) == [org.ada.id]
        assert on_duty.on_call_user_ids(session, primary, utc(2027, 5, 1)) == []  # before it


def test_the_question_is_checked(org: Org) -> None:
    primary, _ = two_schedules(org)
    with org.db.sessionmaker() as session:
        with pytest.raises(ValidationFailed, match="one schedule, one team or one entity"):
            on_duty.who_is_on_call(session, schedule_id=primary, team_id=org.team.id)
        with pytest.raises(ValidationFailed) as naive:
            on_duty.who_is_on_call(session, schedule_id=primary, at=dt.datetime(2027, 6, 2, 12))
        assert naive.value.errors[0].field == "at"
        with pytest.raises(NotFound, match="no on-call schedule 999"):
            on_duty.on_call_user_ids(session, 999, NOON)
        with pytest.raises(NotFound, match="no catalog entity with id 999"):
            on_duty.who_is_on_call(session, entity_id=999)


# -- the panels ----------------------------------------------------------------------------------


@pytest.fixture
def registered_panels() -> Iterator[None]:
    """The panels as the manifest's entity_panels and team_panels register them (added here
    until it does)."""
    added = [
        (registry, panel)
        for registry, panel in (
            (ENTITY_PANELS, panels.entity_panel),
            (TEAM_PANELS, panels.team_panel),
        )
        if panel not in registry
    ]
    for registry, panel in added:
        registry.append(panel)
    yield
    for registry, panel in added:
        registry.remove(panel)


def test_the_entity_and_team_pages_say_who_is_on_call_now(
    org: Org, db: Database, client: TestClient, registered_panels: Any
) -> None:
    with db.transaction() as session:  # a password to sign in through the form
        identity.update_user(
            session=session, actor=SYSTEM, user_id=org.viewer.id, password=PASSWORD
        )
    sign_in(client, org.viewer)
    empty = text(client.get("/catalog/service/default/checkout"))
    assert "On call now" not in empty  # no schedule: nothing to say
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    org.schedule([rotation("always", [org.bo.id], kind="weekly", start=start)])
    page = text(client.get("/catalog/service/default/checkout"))
    assert "On call now" in page and "Bo bo@example.com" in page and "primary" in page
    team_page = text(client.get(f"/teams/{org.team.slug}"))
    assert "On call now" in team_page and "Bo" in team_page


def test_the_api_finds_the_entity_by_any_form_of_its_reference(
    org: Org, db: Database, client: TestClient
) -> None:
    """``GET /oncall/now?entity=`` reads a full reference on a short path (catalog.id_by_ref);
    every form of the reference answers the same, and a miss still names what is close."""
    with db.transaction() as session:
        identity.update_user(
            session=session, actor=SYSTEM, user_id=org.viewer.id, password=PASSWORD
        )
    sign_in(client, org.viewer)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    org.schedule([rotation("always", [org.bo.id], kind="weekly", start=start)])
    answers = [
        client.get("/api/v1/oncall/now", params={"entity": form})
        for form in (
            "service:default/checkout",
            "service:default/CheckOut",
            "service:checkout",
            "checkout",
            str(org.entity.id),
        )
    ]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    # (an endless rotation's "until" is where the lookahead stops: it moves with the clock)
    seen = {
        tuple((i["user_id"], i["schedule_id"], i["layer"], i["since"]) for i in a.json()["items"])
        for a in answers
    }
    assert len(seen) == 1
    assert [item["display_name"] for item in answers[0].json()["items"]] == ["Bo"]
    missing = client.get("/api/v1/oncall/now", params={"entity": "service:default/checkou"})
    assert missing.status_code == 404
    assert "service:default/checkout" in missing.json()["detail"]  # did you mean …
    wrong = client.get("/api/v1/oncall/now", params={"entity": "service:"})
    assert wrong.status_code in (404, 422) and wrong.headers["content-type"].startswith(
        "application/problem+json"
    )
