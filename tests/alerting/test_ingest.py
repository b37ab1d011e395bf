"""The ingest endpoints end to end through the app: Alertmanager webhooks, PagerDuty Events v2,
generic webhooks and heartbeats; dedup, groups, routing, silences, maintenance, limits."""

from __future__ import annotations

import datetime as dt

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.alerting import committer, heartbeats, store
from lamplighter.alerting.models import AlertGroup, Integration
from lamplighter.core import jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import AuditEntry, Job
from lamplighter.core.settings import Settings
from lamplighter.oncall.models import EscalationPolicy
from tests.alerting.fixtures_org import Org, alerts, am_body, event_types, groups, pd_event
from tests.helpers import drain

AM = "/api/v1/alerting/ingest/alertmanager/"


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)


def test_an_alertmanager_group_pages_once_dedups_repeats_and_resolves(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration()
    body = am_body(fingerprints=("a1", "a2", "a3"))
    answer = client.post(AM + key, json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 3
    [group] = groups(db)
    assert (group.status, group.alert_count, group.severity) == ("triggered", 3, "critical")
    assert group.runbook_url == "https://runbooks.example.com/checkout/high-error-rate"
    assert event_types(db) == ["alert.group_triggered"]
    # Alertmanager repeats the group every repeat_interval: nothing new, nobody paged again.
    assert client.post(AM + key, json=body).status_code == 202
    assert len(alerts(db)) == 3
    assert [a.occurrences for a in alerts(db)] == [2, 2, 2]
    assert event_types(db) == ["alert.group_triggered"]
    # Two alerts resolve: the group stays open; the last one resolves it.
    resolved = am_body(status="resolved", fingerprints=("a1", "a2"))
    assert client.post(AM + key, json=resolved).status_code == 202
    assert groups(db)[0].status == "triggered"
    client.post(AM + key, json=am_body(status="resolved", fingerprints=("a3",)))
    [group] = groups(db)
    assert group.status == "resolved" and group.resolved_at is not None
    assert event_types(db) == ["alert.group_triggered", "alert.group_resolved"]
    # Firing again after the resolution is a new alert and a new group: it pages again.
    client.post(AM + key, json=am_body(fingerprints=("a1",)))
    assert [g.status for g in groups(db)] == ["resolved", "triggered"]
    assert len(alerts(db)) == 4


def test_the_key_may_come_as_a_bearer_credential_and_a_wrong_key_is_401(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration()
    ok = client.post(
        "/api/v1/alerting/ingest/alertmanager",
        json=am_body(),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert ok.status_code == 202
    wrong = client.post(AM + "0" * 32, json=am_body())
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"
    # A PagerDuty integration's key does not open the Alertmanager endpoint.
    _, pd_key = org.integration("pagerduty")
    assert client.post(AM + pd_key, json=am_body()).status_code == 401
    assert len(alerts(db)) == 1


def test_bad_alertmanager_bodies_are_400_naming_the_field_and_store_nothing(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration()
    malformed = client.post(
        AM + key, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    body = am_body()
    body["alerts"][0]["labels"] = "nope"
    wrong = client.post(AM + key, json=body)
    assert wrong.status_code == 400
    assert any(e["field"].startswith("alerts[0].labels") for e in wrong.json()["errors"])
    huge = client.post(AM + key, content=b"[" + b" " * (600 * 1024) + b"]")
    assert huge.status_code == 413
    assert alerts(db) == [] and groups(db) == []


def test_pagerduty_events_trigger_acknowledge_and_resolve_by_dedup_key(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration("pagerduty")
    answer = client.post("/v2/enqueue", json=pd_event(key))
    assert answer.status_code == 202
    assert answer.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "disk-full",
    }
    client.post("/v2/enqueue", json=pd_event(key))  # the same dedup key: one alert
    [alert] = alerts(db)
    assert alert.occurrences == 2 and alert.severity == "critical"
    client.post("/v2/enqueue", json=pd_event(key, "acknowledge"))
    assert groups(db)[0].status == "acknowledged"
    client.post("/v2/enqueue", json=pd_event(key, "resolve"))
    assert groups(db)[0].status == "resolved"
    assert event_types(db) == [
        "alert.group_triggered",
        "alert.group_acknowledged",
        "alert.group_resolved",
    ]
    # Without a dedup key PagerDuty makes one and answers it.
    made = client.post("/v2/enqueue", json=pd_event(key, dedup_key=None)).json()["dedup_key"]
    assert made and any(a.dedup_key == made for a in alerts(db))


def test_pagerduty_refusals_use_pagerdutys_bodies(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration("pagerduty")
    missing = client.post("/v2/enqueue", json={"routing_key": key, "event_action": "trigger"})
    assert missing.status_code == 400
    assert missing.json()["status"] == "invalid event" and missing.json()["errors"]
    unknown = client.post("/v2/enqueue", json=pd_event("f" * 32))
    assert unknown.status_code == 400
    assert "routing_key" in unknown.json()["errors"][0]
    big = pd_event(key, custom_details={"blob": "x" * (520 * 1024)})
    assert client.post("/v2/enqueue", json=big).status_code == 413
    assert alerts(db) == []


def test_a_generic_webhook_is_read_by_its_mapping(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration(
        "generic",
        mapping={
            "summary": "${{ body.title }}",
            "severity": "${{ body.level }}",
            "dedup_key": "${{ body.id }}",
            "labels": {"region": "${{ body.where }}"},
        },
    )
    answer = client.post(
        "/api/v1/alerting/ingest/generic/" + key,
        json={"title": "Queue backlog over 10k", "level": "warn", "id": "q-1", "where": "eu-1"},
    )
    assert answer.status_code == 202, answer.text
    [alert] = alerts(db)
    assert (alert.summary, alert.severity, alert.dedup_key) == (
        "Queue backlog over 10k",
        "warning",
        "q-1",
    )
    assert alert.labels["region"] == "eu-1"


def test_routing_rules_pick_the_policy_first_match_wins_and_group_by_it(
    client: TestClient, db: Database, org: Org
) -> None:
    with db.transaction() as session:
        frontline = EscalationPolicy(team_id=org.team.id, name="frontline", tiers=[])
        infra = EscalationPolicy(team_id=org.team.id, name="infra", tiers=[])
        session.add_all([frontline, infra])
        session.flush()
        frontline_id, infra_id = frontline.id, infra.id
    _, key = org.integration(
        routes=[
            {"matchers": ['namespace=~"kube-.*"'], "policy_id": infra_id},
            {"matchers": ["severity=page"], "policy_id": frontline_id},
            {"matchers": [], "policy_id": infra_id},
        ],
        group_by=["alertname"],
    )
    client.post(AM + key, json=am_body(fingerprints=("a1",)))
    client.post(AM + key, json=am_body(fingerprints=("b1",), labels={"namespace": "kube-system"}))
    by_policy = sorted((g.policy_id, g.alert_count) for g in groups(db))
    assert by_policy == sorted([(frontline_id, 1), (infra_id, 1)])


def test_a_route_to_a_policy_that_does_not_exist_is_refused(
    client: TestClient, db: Database, org: Org
) -> None:
    answer = client.post(
        "/api/v1/alerting/integrations",
        json={
            "name": "am",
            "kind": "alertmanager",
            "entity": org.entity_ref,
            "routes": [{"matchers": ["severity=page"], "policy_id": 999}],
        },
        headers=org.token(),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.routes[0].policy_id"
    bad_regex = client.post(
        "/api/v1/alerting/integrations",
        json={
            "name": "am",
            "kind": "alertmanager",
            "entity": org.entity_ref,
            "routes": [{"matchers": ["job=~(a"], "policy_id": 1}],
        },
        headers=org.token(),
    )
    assert bad_regex.status_code == 422
    assert "body.routes[0].matchers[0]" in {e["field"] for e in bad_regex.json()["errors"]}


def test_silenced_and_maintenance_alerts_are_kept_and_page_nobody(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration()
    headers = org.token()
    ends = (utcnow() + dt.timedelta(hours=1)).isoformat()
    silence = client.post(
        "/api/v1/alerting/silences",
        json={
            "team": org.team.slug,
            "matchers": ['instance=~"s1.*"'],
            "ends_at": ends,
            "reason": "draining s1 for the kernel upgrade",
        },
        headers=headers,
    )
    assert silence.status_code == 201, silence.text
    client.post(AM + key, json=am_body(fingerprints=("s1",)))
    [alert] = alerts(db)
    assert alert.silence_id == silence.json()["id"] and alert.group_id is None
    assert groups(db) == [] and event_types(db) == []
    # Maintenance on the entity silences everything about it.
    window = client.post(
        "/api/v1/alerting/maintenance",
        json={"entity": org.entity_ref, "ends_at": ends, "reason": "database failover drill"},
        headers=headers,
    )
    assert window.status_code == 201
    client.post(AM + key, json=am_body(fingerprints=("m1",)))
    assert groups(db) == []
    # Ended early: the next alert pages.
    client.post(f"/api/v1/alerting/silences/{window.json()['id']}/expire", headers=headers)
    client.post(AM + key, json=am_body(fingerprints=("m2",)))
    assert len(groups(db)) == 1 and event_types(db) == ["alert.group_triggered"]


def test_a_group_past_its_window_takes_no_more_alerts(
    client: TestClient, db: Database, org: Org
) -> None:
    _, key = org.integration("pagerduty", group_by=[], group_window_s=600)
    client.post("/v2/enqueue", json=pd_event(key, dedup_key="one"))
    client.post("/v2/enqueue", json=pd_event(key, dedup_key="two"))
    [group] = groups(db)
    assert group.alert_count == 2  # a storm pages once
    with db.transaction() as session:
        session.execute(
            sa.update(AlertGroup).values(created_at=utcnow() - dt.timedelta(minutes=11))
        )
    client.post("/v2/enqueue", json=pd_event(key, dedup_key="three"))
    assert [g.alert_count for g in groups(db)] == [2, 1]
    assert event_types(db) == ["alert.group_triggered", "alert.group_triggered"]


def test_a_group_closed_between_the_read_and_the_count_opens_a_new_group_that_pages(
    client: TestClient, db: Database, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups open to new alerts are read without a lock and counted into at the end of the
    transaction; if one stopped accepting in between (resolved by someone, from another
    process), the new alerts must not vanish into it: a new group opens and pages."""
    _, key = org.integration("pagerduty", group_by=[], group_window_s=600)
    client.post("/v2/enqueue", json=pd_event(key, dedup_key="one"))
    [first] = groups(db)
    read = store._accepting_groups

    def read_then_resolved(session: sa.orm.Session, *args: object) -> dict[tuple[int, str], int]:
        found = read(session, *args)  # type: ignore[arg-type]
        with db.transaction() as other:  # another process resolves the group meanwhile
            other.execute(
                sa.update(AlertGroup)
                .where(AlertGroup.id == first.id)
                .values(status="resolved", accepting=False)
            )
        return found

    monkeypatch.setattr(store, "_accepting_groups", read_then_resolved)
    answer = client.post("/v2/enqueue", json=pd_event(key, dedup_key="two"))
    assert answer.status_code == 202, answer.text
    old, new = groups(db)
    assert (old.id, old.alert_count, old.status) == (first.id, 1, "resolved")
    assert (new.alert_count, new.status, new.accepting) == (1, "triggered", True)
    assert {a.dedup_key: a.group_id for a in alerts(db)} == {"one": old.id, "two": new.id}
    assert event_types(db) == ["alert.group_triggered", "alert.group_triggered"]


def test_a_batch_chosen_as_a_deadlock_victim_is_written_again_and_answers_202(
    client: TestClient, db: Database, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL aborts one transaction of a deadlock (40P01): the committer writes the batch
    once more instead of answering 503; another database error still answers 503."""
    _, key = org.integration("pagerduty", group_by=[])
    real = store.write
    failures: list[psycopg.Error] = [psycopg.errors.DeadlockDetected("deadlock detected")]

    def deadlocked_once(database: Database, submissions: object) -> object:
        if failures:
            raise sa.exc.OperationalError("INSERT …", {}, failures.pop())
        return real(database, submissions)  # type: ignore[arg-type]

    monkeypatch.setattr(committer, "write", deadlocked_once)
    answer = client.post("/v2/enqueue", json=pd_event(key, dedup_key="one"))
    assert answer.status_code == 202, answer.text
    assert [a.dedup_key for a in alerts(db)] == ["one"]
    failures.append(psycopg.errors.UndefinedTable("relation does not exist"))
    answer = client.post("/v2/enqueue", json=pd_event(key, dedup_key="two"))
    assert answer.status_code == 503
    assert [a.dedup_key for a in alerts(db)] == ["one"]


@pytest.mark.parametrize("per_statement", [2, 500])
def test_many_groups_opened_by_one_batch_each_page_once(
    client: TestClient,
    db: Database,
    org: Org,
    monkeypatch: pytest.MonkeyPatch,
    per_statement: int,
) -> None:
    """A webhook whose alerts fall in five groups opens the five in one transaction (in
    statements of ``GROUPS_PER_STATEMENT``); a repeat joins them without opening more."""
    monkeypatch.setattr(store, "GROUPS_PER_STATEMENT", per_statement)
    _, key = org.integration(group_by=["instance"])
    fingerprints = ("g1", "g2", "g3", "g4", "g5")
    assert client.post(AM + key, json=am_body(fingerprints=fingerprints)).status_code == 202
    found = groups(db)
    assert sorted(g.group_key.rsplit("=", 1)[1] for g in found) == [
        f"{f}:8080" for f in fingerprints
    ]
    assert [g.alert_count for g in found] == [1] * 5
    assert event_types(db) == ["alert.group_triggered"] * 5
    by_instance: dict[int | None, str] = {g.id: g.group_key.rsplit("=", 1)[1] for g in found}
    assert {by_instance[a.group_id] for a in alerts(db)} == {f"{f}:8080" for f in fingerprints}
    more = am_body(fingerprints=("h1", "h2"), labels={"instance": "g1:8080"})
    assert client.post(AM + key, json=more).status_code == 202
    assert len(groups(db)) == 5
    assert sorted(g.alert_count for g in groups(db)) == [1, 1, 1, 1, 3]
    assert event_types(db) == ["alert.group_triggered"] * 5


def test_a_key_over_its_rate_gets_429_with_retry_after(
    settings: Settings, db: Database, org: Org
) -> None:
    from lamplighter.app import create_app

    limited = settings.model_copy(update={"alert_ingest_rate_per_s": 1.0, "alert_ingest_burst": 3})
    _, key = org.integration("pagerduty")
    with TestClient(create_app(limited, db=db)) as client:
        answers = [
            client.post("/v2/enqueue", json=pd_event(key, dedup_key=f"k{i}")) for i in range(5)
        ]
    assert [a.status_code for a in answers][:3] == [202, 202, 202]
    assert answers[4].status_code == 429
    assert int(answers[4].headers["Retry-After"]) >= 1
    assert len(alerts(db)) == 3


def test_a_late_heartbeat_alerts_and_the_next_ping_resolves(
    client: TestClient, db: Database, org: Org, settings: Settings
) -> None:
    integration_id, key = org.integration(
        "heartbeat", heartbeat_interval_s=60, heartbeat_grace_s=30
    )
    assert client.post("/api/v1/alerting/heartbeat/" + key).status_code == 202
    with db.transaction() as session:
        session.execute(
            sa.update(Integration)
            .where(Integration.id == integration_id)
            .values(last_ping_at=utcnow() - dt.timedelta(seconds=100))
        )
    _run_heartbeat_check(db, settings)
    [group] = groups(db)
    assert group.status == "triggered" and "missed" in group.summary
    _run_heartbeat_check(db, settings)  # still late: the same alert, not a second page
    assert len(groups(db)) == 1
    assert client.get("/api/v1/alerting/heartbeat/" + key).status_code == 202
    assert groups(db)[0].status == "resolved"


def _run_heartbeat_check(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=heartbeats.CHECK_JOB)
    drain(db, settings)


def test_integration_keys_are_shown_once_hashed_and_rotatable(
    client: TestClient, db: Database, org: Org
) -> None:
    created = client.post(
        "/api/v1/alerting/integrations",
        json={"name": "prod alertmanager", "kind": "alertmanager", "entity": org.entity_ref},
        headers=org.token(),
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert created.json()["ingest_url_with_key"].endswith(key)
    integration_id = created.json()["id"]
    shown = client.get(f"/api/v1/alerting/integrations/{integration_id}", headers=org.token())
    assert key not in shown.text and shown.json()["key_hint"] == "…" + key[-4:]
    with db.sessionmaker() as session:
        assert (
            key
            not in orjson.dumps([e.diff for e in session.scalars(sa.select(AuditEntry))]).decode()
        )
    rotated = client.post(
        f"/api/v1/alerting/integrations/{integration_id}/rotate-key", headers=org.token()
    ).json()["key"]
    assert client.post(AM + key, json=am_body()).status_code == 401
    assert client.post(AM + rotated, json=am_body()).status_code == 202


def test_deleting_an_integration_deletes_its_alerts_and_groups_and_no_others(
    client: TestClient, db: Database, org: Org
) -> None:
    """Alerts carry no foreign key to their integration or group (migration 0013): the
    deletion removes them itself, silenced ones (no group) included."""
    doomed_id, doomed = org.integration(suffix="doomed")
    _, kept = org.integration(suffix="kept")
    headers = org.token()
    ends = (utcnow() + dt.timedelta(hours=1)).isoformat()
    silence = {"team": org.team.slug, "matchers": ['instance=~"s1.*"'], "ends_at": ends}
    assert (
        client.post(
            "/api/v1/alerting/silences", json={**silence, "reason": "drain"}, headers=headers
        ).status_code
        == 201
    )
    client.post(AM + doomed, json=am_body(fingerprints=("a1", "s1")))
    client.post(AM + kept, json=am_body(fingerprints=("a1", "a2")))
    assert len(alerts(db)) == 4 and len(groups(db)) == 2
    gone = client.delete(f"/api/v1/alerting/integrations/{doomed_id}", headers=headers)
    assert gone.status_code == 204, gone.text
    left = alerts(db)
    assert sorted(a.dedup_key for a in left) == ["a1", "a2"]
    assert {a.integration_id for a in left} != {doomed_id}
    [group] = groups(db)
    assert {a.group_id for a in left} == {group.id} and group.integration_id != doomed_id


def test_outsiders_and_viewers_cannot_create_integrations_or_act_on_groups(
    client: TestClient, db: Database, org: Org
) -> None:
    body = {"name": "x", "kind": "alertmanager", "entity": org.entity_ref}
    assert client.post("/api/v1/alerting/integrations", json=body).status_code == 401
    for user in (org.outsider, org.viewer):
        answer = client.post("/api/v1/alerting/integrations", json=body, headers=org.token(user))
        assert answer.status_code == 403
    _, key = org.integration()
    client.post(AM + key, json=am_body())
    group_id = groups(db)[0].id
    for user in (org.outsider, org.viewer):
        acked = client.post(
            f"/api/v1/alerting/groups/{group_id}/acknowledge", headers=org.token(user)
        )
        assert acked.status_code == 403
    assert groups(db)[0].status == "triggered"
    ok = client.post(f"/api/v1/alerting/groups/{group_id}/acknowledge", headers=org.token())
    assert ok.status_code == 200 and ok.json()["status"] == "acknowledged"


def test_no_job_beyond_the_escalation_start_is_queued_per_alert(
    client: TestClient, db: Database, org: Org
) -> None:
    """A storm of 200 alerts in one group queues jobs per group, not per alert."""
    _, key = org.integration()
    client.post(AM + key, json=am_body(fingerprints=tuple(f"f{i}" for i in range(200))))
    with db.sessionmaker() as session:
        queued = session.scalar(sa.select(sa.func.count()).select_from(Job))
    assert len(alerts(db)) == 200 and len(groups(db)) == 1
    assert (queued or 0) <= 5


@pytest.mark.parametrize("lookup", ["open_alerts", "accepting_groups"])
def test_the_intakes_lookups_probe_the_index_once_a_key_whatever_the_planner_prefers(
    db: Database, lookup: str
) -> None:
    """On a table not yet analysed PostgreSQL pulled the LATERAL lookup up into a plain join and
    hashed every open alert of the integration (32 ms for 400 keys, batches at 18,000 alerts/s
    until autovacuum's first pass). Even with nested loops priced out, the lookups stay one
    index probe per key."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL-only: SQLite plans the lookup as an index probe per key")
    sql = store._build_sql("postgresql")
    statement = getattr(sql, lookup)
    keys = orjson.dumps([f"k{index}" for index in range(400)]).decode()
    params = (keys, 1) if lookup == "open_alerts" else (keys, 1, utcnow())
    with db.sessionmaker() as session:
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        plan = orjson.dumps(cursor.fetchone()[0]).decode()
        session.rollback()
    index = "uq_alerts_open" if lookup == "open_alerts" else "uq_alert_groups_accepting"
    assert '"Hash Join"' not in plan and '"Merge Join"' not in plan, plan
    assert '"Node Type":"Nested Loop"' in plan and f'"Index Name":"{index}"' in plan, plan
