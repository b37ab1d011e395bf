"""SLO burn-rate and budget events become alerts on the SLO's entity; an integration's own
severity words override the built-in folding."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lamplighter.core import events
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from lamplighter.slo.event_types import BudgetExhausted, BudgetRecovered, BurnRateHigh, BurnRateOk
from tests.alerting.fixtures_org import Org, alerts, am_body, groups
from tests.helpers import drain

AM = "/api/v1/alerting/ingest/alertmanager/"


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)


def emit(db: Database, type_: str, payload: events.EventPayload) -> None:
    with db.transaction() as session:
        events.emit(session=session, type=type_, subject="slo:1", payload=payload)


def test_a_page_burn_becomes_a_critical_alert_on_the_entity_and_resolves(
    db: Database, settings: Settings, org: Org
) -> None:
    ref = {"id": 7, "slo": "availability", "entity": org.entity_ref}
    high = BurnRateHigh(
        **ref,
        alert="page-1h",
        severity="page",
        long_window="1h",
        short_window="5m",
        factor=14.4,
        long_burn_rate=16.2,
        short_burn_rate=18.0,
        budget_remaining=71.5,
    )
    emit(db, "slo.burn_rate_high", high)
    drain(db, settings)
    [group] = groups(db)
    assert (group.entity_id, group.team_id, group.severity) == (
        org.entity.id,
        org.team.id,
        "critical",
    )
    assert "availability" in group.summary and "16.2x over 1h" in group.summary
    # The budget runs out too: a second alert, grouped under the same SLO.
    emit(db, "slo.budget_exhausted", BudgetExhausted(**ref, budget_remaining=0.0, freeze=True))
    drain(db, settings)
    assert len(groups(db)) == 1 and len(alerts(db)) == 2
    emit(db, "slo.burn_rate_ok", BurnRateOk(**ref, alert="page-1h", severity="page"))
    emit(db, "slo.budget_recovered", BudgetRecovered(**ref, budget_remaining=12.0))
    drain(db, settings)
    assert [a.status for a in alerts(db)] == ["resolved", "resolved"]
    assert groups(db)[0].status == "resolved"


def test_a_ticket_burn_is_a_warning(db: Database, settings: Settings, org: Org) -> None:
    ticket = BurnRateHigh(
        id=8,
        slo="latency",
        entity=org.entity_ref,
        alert="ticket-1d",
        severity="ticket",
        long_window="1d",
        short_window="2h",
        factor=3.0,
        long_burn_rate=3.4,
        short_burn_rate=3.1,
        budget_remaining=80.0,
    )
    emit(db, "slo.burn_rate_high", ticket)
    drain(db, settings)
    assert [g.severity for g in groups(db)] == ["warning"]


def test_an_integrations_own_severity_words_win(client: TestClient, db: Database, org: Org) -> None:
    _, key = org.integration(severity_map={"P1": "critical", "P3": "info"})
    client.post(AM + key, json=am_body(fingerprints=("a",), labels={"severity": "P3"}))
    client.post(
        AM + key,
        json=am_body(fingerprints=("b",), labels={"severity": "P1"}, group_key="other"),
    )
    assert sorted(a.severity for a in alerts(db)) == ["critical", "info"]
    # Without the map, "P3" would fold onto warning, as PagerDuty-style priorities do.
    _, plain = org.integration(suffix="plain")
    client.post(AM + plain, json=am_body(fingerprints=("c",), labels={"severity": "P3"}))
    assert {a.dedup_key: a.severity for a in alerts(db)}["c"] == "warning"
