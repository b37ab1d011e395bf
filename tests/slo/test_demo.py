"""`lamplighter demo load` gives the demo organisation SLOs in every state, once."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa

from lamplighter import demo
from lamplighter.core import identity, inbox
from lamplighter.core.db import Database
from lamplighter.slo import service
from lamplighter.slo.models import ProbeResult, Slo, SloCount


def _slos(db: Database) -> dict[str, Slo]:
    with db.sessionmaker() as session:
        found = {slo.name: slo for slo in session.scalars(sa.select(Slo))}
        session.expunge_all()
    return found


def _inbox_titles(db: Database, email: str) -> list[str]:
    with db.sessionmaker() as session:
        user = identity.get_user_by_email(session=session, email=email)
        assert user is not None
        return [item.title for item in inbox.list_for(session=session, user_id=user.id)]


def test_the_demo_shows_every_slo_state_and_loads_only_once(db: Database) -> None:
    assert demo.load(db)["slo"] is True
    slos = _slos(db)
    assert Counter(slo.status for slo in slos.values()) == {
        "healthy": 5,
        "warning": 1,
        "burning": 1,
        "exhausted": 1,
        "no data": 1,
    }
    burning = slos["card-authorisations"]
    assert burning.status == "burning" and "page-1h" in burning.firing
    assert 0 < (burning.budget_remaining or 0) < 1  # burning fast, not spent yet
    assert 0.25 < (slos["order-delivery"].budget_remaining or 0) < 0.5
    assert "LAMPLIGHTER_PROMETHEUS_URL" in slos["edge-availability"].status_reason
    assert {slo.window_kind for slo in slos.values()} >= {"rolling", "calendar_month"}
    assert slos["month-end-availability"].time_zone == "Asia/Kolkata"
    assert slos["good-minutes"].budgeting == "timeslices"
    assert slos["fast-responses"].sli["kind"] == "latency"
    assert slos["health-probe"].source == "probe"
    with db.sessionmaker() as session:
        # The exhausted service's releases are frozen; the others' are not.
        frozen = service.release_policy(session=session, entity_ref="checkout-web")
        assert frozen.frozen and not frozen.may_release
        assert "checkout-availability" in frozen.reasons[0]
        assert service.release_policy(session=session, entity_ref="ledger").may_release
        # The probe SLO has its results history, a month of one probe a minute.
        probes = session.scalar(
            sa.select(sa.func.count()).where(ProbeResult.slo_id == slos["health-probe"].id)
        )
        assert probes is not None and probes > 30 * 1440
        counts = session.scalar(sa.select(sa.func.count()).select_from(SloCount))
    # Payments (Priya leads, Tom is a member) is paged about its burning gateway; Checkout's
    # lead is not.
    page = "payments-gateway: SLO card-authorisations is burning its error budget (page)"
    for email in ("priya@example.com", "tom@example.com"):
        assert page in _inbox_titles(db, email)
    assert page not in _inbox_titles(db, "diego@example.com")
    assert any("spent its whole error budget" in t for t in _inbox_titles(db, "diego@example.com"))
    inbox_before = len(_inbox_titles(db, "priya@example.com"))

    assert demo.load(db)["slo"] is False
    assert set(_slos(db)) == set(slos)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SloCount)) == counts
    assert len(_inbox_titles(db, "priya@example.com")) == inbox_before


def test_while_a_worker_runs_the_demo_keeps_every_state(db: Database) -> None:
    """An hour after loading, with the demo's live traffic pushed minute by minute, the burning
    SLO still pages and the healthy ones stay healthy; SLOs the demo did not make get nothing."""
    from lamplighter.slo import demo as slo_demo
    from lamplighter.slo import evaluate
    from lamplighter.slo.schemas import SloIn
    from tests.conftest import SYSTEM

    demo.load(db)
    with db.transaction() as session:
        mine, _ = service.create(
            session=session,
            actor=SYSTEM,
            data=SloIn(entity="ledger", name="hand-made", objective=99.0, source="events"),
        )
        mine_id = mine.id
    loaded = _slos(db)["card-authorisations"].evaluated_at
    assert loaded is not None
    pushed = 0
    for minutes in range(5, 65, 5):  # the worker's minute job, every five minutes here
        at = loaded + dt.timedelta(minutes=minutes)
        with db.transaction() as session:
            pushed += slo_demo.push_live_traffic(session=session, now=at)
    with db.transaction() as session:
        evaluate.evaluate(session=session, slos=list(session.scalars(sa.select(Slo))), now=at)
    # Seven SLOs on built-in events, 60 minutes each (the newest partial minute excepted).
    assert 7 * 59 <= pushed <= 7 * 60
    slos = _slos(db)
    burning = slos["card-authorisations"]
    assert burning.status == "burning" and "page-1h" in burning.firing
    assert burning.burn_rates["5m"] == pytest.approx(16, rel=0.3)
    assert slos["postings"].status == "healthy"
    assert slos["checkout-availability"].status == "exhausted"
    with db.sessionmaker() as session:
        untouched = session.scalar(
            sa.select(sa.func.count()).select_from(SloCount).where(SloCount.slo_id == mine_id)
        )
    assert untouched == 0
