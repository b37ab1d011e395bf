"""Escalation policies: tiers of schedules, people and teams; one default per team; who may
change them; every refusal naming its field and changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lamplighter.oncall import policies
from lamplighter.oncall.models import EscalationPolicy
from tests.conftest import SYSTEM, auth, make_token
from tests.oncall import people_fixtures
from tests.oncall.people_fixtures import Folks, audit_actions

folks = people_fixtures.folks


def chain(folks: Folks) -> list[dict[str, Any]]:
    return [
        {
            "name": "Frontline",
            "delay_minutes": 10,
            "targets": [{"type": "schedule", "id": folks.schedule_id}],
        },
        {
            "name": "Application SRE",
            "delay_minutes": 15,
            "targets": [
                {"type": "user", "id": folks.sre.id},
                {"type": "user", "id": folks.lead.id},
            ],
        },
        {"delay_minutes": 30, "targets": [{"type": "team", "id": folks.other_team.id}]},
    ]


def create(db: Database, folks: Folks, name: str = "Payments", **fields: Any) -> EscalationPolicy:
    with db.transaction() as session:
        policy = policies.create(
            session=session,
            actor=fields.pop("actor", None) or folks.actor(folks.member),
            team_id=folks.team.id,
            name=name,
            tiers=fields.pop("tiers", None) or chain(folks),
            **fields,
        )
        session.expunge(policy)
    return policy


def policy_count(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(EscalationPolicy)) or 0)


# -- service -------------------------------------------------------------------------------------
def test_a_team_member_defines_a_chain_that_is_the_teams_default(db, folks: Folks) -> None:
    policy = create(db, folks, repeat=2, description="Wake the right people")

    with db.sessionmaker() as session:
        stored = policies.get(session, policy.id)
        assert [tier["name"] for tier in stored.tiers] == [
            "Frontline",
            "Application SRE",
            "Tier 3",
        ]
        assert stored.tiers[0] == {
            "name": "Frontline",
            "delay_minutes": 10,
            "targets": [{"type": "schedule", "id": folks.schedule_id}],
        }
        assert stored.repeat == 2
        assert policies.default_policy_id(session, folks.team.id) == policy.id
        assert policies.default_policy_id(session, folks.other_team.id) is None
    assert audit_actions(db)[-1] == "escalation_policy.create"


def test_one_default_per_team_moves_when_another_takes_it(db, folks: Folks) -> None:
    first = create(db, folks, "Business hours")
    second = create(db, folks, "Nights")
    with db.sessionmaker() as session:
        assert policies.default_policy_id(session, folks.team.id) == first.id
        assert policies.get(session, second.id).is_team_default is False

    third = create(db, folks, "Major incidents", is_team_default=True)
    with db.sessionmaker() as session:
        assert policies.default_policy_id(session, folks.team.id) == third.id
        assert policies.get(session, first.id).is_team_default is False

    with db.transaction() as session:
        policies.update(
            session=session,
            actor=folks.actor(folks.lead),
            policy_id=second.id,
            is_team_default=True,
        )
    with db.sessionmaker() as session:
        defaults = session.scalars(
            sa.select(EscalationPolicy.name).where(EscalationPolicy.is_team_default.is_(True))
        ).all()
        assert defaults == ["Nights"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ({"type": "schedule", "id": 999_999}, "no on-call schedule with id 999999"),
        ({"type": "team", "id": 999_999}, "no team with id 999999"),
        ("gone", "no active user with id"),
        ({"type": "user", "id": 999_999}, "no active user with id 999999"),
    ],
)
def test_a_target_that_does_not_exist_is_named_and_nothing_is_written(
    db, folks: Folks, target: Any, reason: str
) -> None:
    tiers = chain(folks)
    tiers[1]["targets"] = [target if target != "gone" else {"type": "user", "id": folks.gone.id}]
    before = audit_actions(db)

    with pytest.raises(ValidationFailed) as refused, db.transaction() as session:
        policies.create(
            session=session,
            actor=folks.actor(folks.member),
            team_id=folks.team.id,
            name="Payments",
            tiers=tiers,
        )

    assert [e.field for e in refused.value.errors] == ["body.tiers.1.targets.0.id"]
    assert reason in refused.value.errors[0].reason
    assert policy_count(db) == 0
    assert audit_actions(db) == before


def test_a_failed_update_changes_nothing(db, folks: Folks) -> None:
    policy = create(db, folks)
    bad = chain(folks)
    bad[2]["targets"].append({"type": "schedule", "id": 424242})

    with pytest.raises(ValidationFailed), db.transaction() as session:
        policies.update(
            session=session,
            actor=folks.actor(folks.member),
            policy_id=policy.id,
            name="Renamed",
            tiers=bad,
        )

    with db.sessionmaker() as session:
        stored = policies.get(session, policy.id)
        assert stored.name == "Payments"
        assert len(stored.tiers[2]["targets"]) == 1
    assert audit_actions(db).count("escalation_policy.update") == 0


def test_only_the_team_sres_and_admins_change_a_policy(db, folks: Folks) -> None:
    policy = create(db, folks)
    for outsider in (folks.outsider, folks.viewer):
        with pytest.raises(Forbidden), db.transaction() as session:
            policies.update(
                session=session, actor=folks.actor(outsider), policy_id=policy.id, repeat=3
            )
        with pytest.raises(Forbidden), db.transaction() as session:
            policies.delete(session=session, actor=folks.actor(outsider), policy_id=policy.id)
        with pytest.raises(Forbidden), db.transaction() as session:
            policies.create(
                session=session,
                actor=folks.actor(outsider),
                team_id=folks.team.id,
                name="Mine now",
                tiers=chain(folks),
            )
    for allowed, repeat in ((folks.sre, 1), (folks.admin, 2), (folks.lead, 3)):
        with db.transaction() as session:
            policies.update(
                session=session, actor=folks.actor(allowed), policy_id=policy.id, repeat=repeat
            )
    with db.sessionmaker() as session:
        assert policies.get(session, policy.id).repeat == 3
    assert audit_actions(db).count("escalation_policy.update") == 3


def test_names_are_unique_within_a_team(db, folks: Folks) -> None:
    create(db, folks, "Payments")
    with pytest.raises(Conflict) as refused:
        create(db, folks, " Payments ")
    assert refused.value.errors[0].field == "body.name"

    with db.transaction() as session:  # another team may use the name
        policies.create(
            session=session,
            actor=SYSTEM,
            team_id=folks.other_team.id,
            name="Payments",
            tiers=chain(folks),
        )


def test_delete_is_audited_and_the_policy_is_gone(db, folks: Folks) -> None:
    policy = create(db, folks)
    with db.transaction() as session:
        policies.delete(session=session, actor=folks.actor(folks.lead), policy_id=policy.id)

    with db.sessionmaker() as session:
        with pytest.raises(NotFound):
            policies.get(session, policy.id)
        assert policies.default_policy_id(session, folks.team.id) is None
    assert audit_actions(db)[-1] == "escalation_policy.delete"


# -- API -----------------------------------------------------------------------------------------
def body(folks: Folks, **changes: Any) -> dict[str, Any]:
    return {"team": "payments", "name": "Payments", "tiers": chain(folks), **changes}


def test_the_api_defines_reads_changes_and_removes_a_policy(client, db, folks: Folks) -> None:
    member = auth(make_token(db, folks.member))
    created = client.post("/api/v1/oncall/escalation-policies", json=body(folks), headers=member)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["team"] == "payments"
    assert policy["is_team_default"] is True
    assert policy["tiers"][2]["name"] == "Tier 3"

    viewer = auth(make_token(db, folks.viewer))  # everyone signed in reads
    read = client.get(f"/api/v1/oncall/escalation-policies/{policy['id']}", headers=viewer)
    assert read.json()["tiers"] == policy["tiers"]

    changed = client.patch(
        f"/api/v1/oncall/escalation-policies/{policy['id']}",
        json={"repeat": 4, "description": "Nights too"},
        headers=member,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["repeat"], changed.json()["description"]) == (4, "Nights too")

    refused = client.delete(f"/api/v1/oncall/escalation-policies/{policy['id']}", headers=viewer)
    assert refused.status_code == 403
    gone = client.delete(f"/api/v1/oncall/escalation-policies/{policy['id']}", headers=member)
    assert gone.status_code == 204
    missing = client.get(f"/api/v1/oncall/escalation-policies/{policy['id']}", headers=member)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tiers": []}, "body.tiers"),
        ({"tiers": [{"delay_minutes": 5, "targets": []}]}, "body.tiers.0.targets"),
        ({"tiers": [{"delay_minutes": 1441, "targets": [{"type": "team", "id": 1}]}]}, None),
        ({"repeat": 10}, "body.repeat"),
        ({"team": "nobody"}, "body.team"),
        ({"surprise": True}, "body.surprise"),
        ({"name": ""}, "body.name"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(
    client, db, folks: Folks, change: dict[str, Any], field: str | None
) -> None:
    payload = body(folks, **change)
    if field is None:  # the delay, with a real target
        payload["tiers"][0]["targets"] = [{"type": "team", "id": folks.team.id}]
        field = "body.tiers.0.delay_minutes"
    response = client.post(
        "/api/v1/oncall/escalation-policies",
        json=payload,
        headers=auth(make_token(db, folks.member)),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert policy_count(db) == 0


def test_limits_of_tiers_and_targets(client, db, folks: Folks) -> None:
    member = auth(make_token(db, folks.member))
    tier = {"delay_minutes": 5, "targets": [{"type": "team", "id": folks.team.id}]}
    too_many_tiers = client.post(
        "/api/v1/oncall/escalation-policies", json=body(folks, tiers=[tier] * 11), headers=member
    )
    assert too_many_tiers.status_code == 422
    assert too_many_tiers.json()["errors"][0]["field"] == "body.tiers"

    crowd = [{"type": "schedule", "id": folks.schedule_id}] * 21
    too_many_targets = client.post(
        "/api/v1/oncall/escalation-policies",
        json=body(folks, tiers=[{"delay_minutes": 5, "targets": crowd}]),
        headers=member,
    )
    assert too_many_targets.json()["errors"][0]["field"] == "body.tiers.0.targets"

    twice = client.post(
        "/api/v1/oncall/escalation-policies",
        json=body(folks, tiers=[{"delay_minutes": 0, "targets": crowd[:2]}]),
        headers=member,
    )
    assert twice.status_code == 422
    assert twice.json()["errors"][0] == {
        "field": "body.tiers.0.targets.1",
        "pointer": "#/tiers/0/targets/1",
        "reason": f"schedule {folks.schedule_id} is listed twice",
    }

    most = client.post(
        "/api/v1/oncall/escalation-policies",
        json=body(folks, tiers=[dict(tier, delay_minutes=1440)] * 10, repeat=9),
        headers=member,
    )
    assert most.status_code == 201, most.text


def test_lists_page_by_cursor_and_filter_by_team(client, db, folks: Folks) -> None:
    for name in ("One", "Two", "Three"):
        create(db, folks, name)
    with db.transaction() as session:
        policies.create(
            session=session,
            actor=SYSTEM,
            team_id=folks.other_team.id,
            name="Search",
            tiers=chain(folks),
        )
    headers = auth(make_token(db, folks.viewer))

    first = client.get("/api/v1/oncall/escalation-policies?limit=2", headers=headers).json()
    second = client.get(
        f"/api/v1/oncall/escalation-policies?limit=2&cursor={first['next_cursor']}",
        headers=headers,
    ).json()
    assert [p["name"] for p in first["items"] + second["items"]] == [
        "One",
        "Two",
        "Three",
        "Search",
    ]
    assert second["next_cursor"] is None
    search = client.get("/api/v1/oncall/escalation-policies?team=search", headers=headers).json()
    assert [p["team"] for p in search["items"]] == ["search"]
