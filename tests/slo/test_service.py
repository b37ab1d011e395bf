"""SLOs stored on catalog entities: ownership, built-in events, evaluation, alerts and the
error budget policy (events, inbox, release freeze)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamplighter.core import audit, events, inbox
from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, Forbidden, Unauthorized, ValidationFailed
from lamplighter.slo import evaluate, service
from lamplighter.slo.models import Slo, SloCount
from lamplighter.slo.schemas import SloIn
from tests.conftest import make_user
from tests.slo.conftest import Org, actor_of, steady

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def run_evaluation(db: Database, now: dt.datetime = NOW) -> dict[int, list[str]]:
    with db.transaction() as session:
        slos = list(session.scalars(sa.select(Slo).order_by(Slo.id)))
        return evaluate.evaluate(session=session, slos=slos, now=now)


def push(db: Database, slo_id: int, points: list[tuple[dt.datetime, int, int]]) -> None:
    with db.transaction() as session:
        service.record_counts(session=session, slo_id=slo_id, points=points, now=NOW)


def state(db: Database, slo_id: int) -> Slo:
    with db.sessionmaker() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        session.expunge(slo)
        return slo


def slo_events(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return [
            e.type
            for e in events.list_after(session=session, limit=1000)
            if e.type.startswith("slo.")
        ]


def test_the_owning_team_defines_an_slo_and_outsiders_and_viewers_cannot(
    db: Database, org: Org
) -> None:
    data = SloIn(entity="checkout", name="availability", objective=99.9, source="events")
    with db.transaction() as session, pytest.raises(Forbidden):
        service.create(session=session, actor=actor_of(db, org.outsider), data=data)
    viewer = make_user(db, role="viewer")
    with db.transaction() as session, pytest.raises(Forbidden):
        service.create(session=session, actor=actor_of(db, viewer), data=data)
    with db.transaction() as session:
        slo, key = service.create(session=session, actor=actor_of(db, org.member), data=data)
        slo_id = slo.id
    assert key is not None and key.startswith("llslo_")
    with db.transaction() as session, pytest.raises(Conflict):
        service.create(session=session, actor=actor_of(db, org.member), data=data)
    with db.sessionmaker() as session:
        entries = list(
            audit.iter_filtered(session=session, object_type="slo", object_id=str(slo_id))
        )
        assert [entry.action for entry in entries] == ["slo.create"]
        # The key itself is never in the audit log or the row, only its digest and last 4.
        assert key not in str(entries[0].diff)
        stored = session.get(Slo, slo_id)
        assert stored is not None and stored.ingest_key_hash != key
        assert stored.ingest_key_hint == key[-4:]
    assert "slo.created" in slo_events(db)


def test_an_ingest_key_opens_its_own_slo_only(db: Database, org: Org) -> None:
    first, key = org.slo()
    _, other_key = org.slo(name="latency", sli={"kind": "latency", "threshold_s": 0.3})
    assert key and other_key
    with db.sessionmaker() as session:
        assert service.check_ingest_key(session=session, slo_id=first.id, key=key).id == first.id
        with pytest.raises(Unauthorized):
            service.check_ingest_key(session=session, slo_id=first.id, key=other_key)
        with pytest.raises(Unauthorized):
            service.check_ingest_key(session=session, slo_id=999999, key=key)
    with db.transaction() as session:
        new_key = service.rotate_ingest_key(
            session=session, actor=actor_of(db, org.lead), slo_id=first.id
        )
    with db.sessionmaker() as session, pytest.raises(Unauthorized):
        service.check_ingest_key(session=session, slo_id=first.id, key=key)
    with db.sessionmaker() as session:
        assert service.check_ingest_key(session=session, slo_id=first.id, key=new_key)


def test_events_land_in_minute_hour_and_day_buckets(db: Database, org: Org) -> None:
    slo, _ = org.slo()
    at = dt.datetime(2026, 12, 6, 10, 15, 30, tzinfo=dt.UTC)
    push(db, slo.id, [(at, 9, 10), (at + dt.timedelta(seconds=10), 5, 5)])
    push(db, slo.id, [(at, 1, 1)])  # the same minute again adds, as a counter would
    with db.sessionmaker() as session:
        rows = {
            (row.resolution, row.at): (row.good, row.total)
            for row in session.scalars(sa.select(SloCount).where(SloCount.slo_id == slo.id))
        }
    assert rows == {
        (60, dt.datetime(2026, 12, 6, 10, 15, tzinfo=dt.UTC)): (15, 16),
        (3600, dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)): (15, 16),
        (86400, dt.datetime(2026, 12, 6, tzinfo=dt.UTC)): (15, 16),
    }


def test_points_too_old_or_in_the_future_refuse_the_whole_batch(db: Database, org: Org) -> None:
    slo, _ = org.slo()
    for bad_at in (NOW - dt.timedelta(days=401), NOW + dt.timedelta(hours=1)):
        with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
            service.record_counts(
                session=session, slo_id=slo.id, points=[(NOW, 1, 1), (bad_at, 1, 1)], now=NOW
            )
        assert caught.value.errors[0].field == "body.points[1].at"
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SloCount)) == 0


def test_a_one_hour_burn_at_14_4x_spends_two_percent_of_a_30_day_budget(
    db: Database, org: Org
) -> None:
    """The Workbook's first page alert, hand-computed: 99.9 % over 30 days, 1,000 requests a
    minute; one hour at an error ratio of 1.44 % spends 0.02 of the budget and pages."""
    slo, _ = org.slo()
    start = NOW - dt.timedelta(days=30)
    quiet = steady(start, 30 * 24 * 60 - 60, 1000)
    burning = steady(NOW - dt.timedelta(minutes=60), 60, 1000, bad_per_minute=14.4)
    push(db, slo.id, quiet + burning)
    emitted = run_evaluation(db)
    after = state(db, slo.id)
    assert after.total_events == 30 * 24 * 60 * 1000
    assert after.budget_spent == 864  # 14.4 bad a minute for 60 minutes
    assert after.budget_total == pytest.approx(43200)
    assert 1 - (after.budget_remaining or 0) == pytest.approx(0.02)
    assert after.burn_rates["1h"] == pytest.approx(14.4)
    # 14.4x is the threshold itself: the alert fires above it, so nothing pages yet.
    assert after.firing == []
    assert after.status == "healthy"
    assert emitted[slo.id] == []
    # One more bad event in the last five minutes tips both windows over 14.4x.
    push(db, slo.id, [(NOW - dt.timedelta(minutes=1), 0, 1)])
    emitted = run_evaluation(db)
    after = state(db, slo.id)
    assert after.firing == ["page-1h"]
    assert after.status == "burning"
    assert emitted[slo.id] == ["slo.burn_rate_high"]
    titles = [item.title for item in _inbox(db, org.member.id)]
    assert titles == ["checkout: SLO availability is burning its error budget (page)"]
    assert [item.title for item in _inbox(db, org.outsider.id)] == []


def _inbox(db: Database, user_id: int) -> list[inbox.InboxItem]:  # type: ignore[name-defined]
    with db.sessionmaker() as session:
        return list(inbox.list_for(session=session, user_id=user_id))


def test_alerts_resolve_thresholds_notify_once_and_exhaustion_freezes_releases(
    db: Database, org: Org
) -> None:
    slo, _ = org.slo(objective=99.0)
    start = NOW - dt.timedelta(days=30)
    # 30 days at 100 a minute; budget 1 % = 43,200 bad events. Spend 55 % a day ago.
    push(db, slo.id, steady(start, 30 * 24 * 60, 100))
    push(db, slo.id, [(NOW - dt.timedelta(days=1), 0, 23760)])
    run_evaluation(db)
    after = state(db, slo.id)
    assert 0.44 < (after.budget_remaining or 0) < 0.46
    assert after.status == "warning"
    assert slo_events(db).count("slo.budget_threshold") == 1
    run_evaluation(db)  # nothing new: told once
    assert slo_events(db).count("slo.budget_threshold") == 1
    # Spend the rest: exhausted, and releases freeze (the default policy).
    push(db, slo.id, [(NOW - dt.timedelta(hours=20), 0, 30000)])
    run_evaluation(db)
    after = state(db, slo.id)
    assert after.status == "exhausted" and after.frozen
    assert "slo.budget_exhausted" in slo_events(db)
    assert "slo.release_freeze_changed" in slo_events(db)
    with db.sessionmaker() as session:
        policy = service.release_policy(session=session, entity_ref="checkout", now=NOW)
    assert policy.frozen and not policy.may_release
    assert policy.reasons[0].startswith("SLO availability has spent its error budget")
    # An exception needs a reason; the owning team's members may grant it, outsiders not.
    with db.transaction() as session, pytest.raises(Forbidden):
        service.grant_exception(
            session=session,
            actor=actor_of(db, org.outsider),
            entity_ref="checkout",
            reason="a security fix that cannot wait",
        )
    with db.transaction() as session, pytest.raises(ValidationFailed):
        service.grant_exception(
            session=session, actor=actor_of(db, org.member), entity_ref="checkout", reason="x"
        )
    with db.transaction() as session:
        service.grant_exception(
            session=session,
            actor=actor_of(db, org.member),
            entity_ref="checkout",
            reason="a security fix that cannot wait",
        )
    with db.sessionmaker() as session:
        policy = service.release_policy(session=session, entity_ref="checkout")
        assert policy.frozen and policy.may_release
        assert policy.exception and policy.exception["reason"] == "a security fix that cannot wait"
        actions = [
            e.action for e in audit.iter_filtered(session=session, object_type="catalog_entity")
        ]
        assert "slo.freeze_exception" in actions


def test_a_prometheus_slo_without_prometheus_has_no_data_and_says_why(
    db: Database, org: Org
) -> None:
    slo, key = org.slo(
        source="prometheus",
        sli={
            "kind": "ratio",
            "bad_query": 'sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))',
            "total_query": "sum(rate(http_requests_total[{{.window}}]))",
        },
    )
    assert key is None  # only built-in events have an ingest key
    run_evaluation(db)
    after = state(db, slo.id)
    assert after.status == "no data"
    assert "LAMPLIGHTER_PROMETHEUS_URL" in after.status_reason
    assert after.budget_remaining is None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    good=st.integers(min_value=0, max_value=10_000),
    bad=st.integers(min_value=0, max_value=100),
    more_bad=st.integers(min_value=1, max_value=100),
)
def test_adding_bad_events_never_increases_the_remaining_budget(
    good: int, bad: int, more_bad: int
) -> None:
    class Fake:
        objective = 0.99
        budgeting = "occurrences"
        window_kind = "rolling"
        window_days = 30
        time_zone = "UTC"
        alerting: dict[str, object] = {}
        policy: dict[str, object] = {}
        slice_seconds = None
        slice_threshold = None

    def remaining(bad_events: int) -> float | None:
        measured = evaluate.Measured(window=evaluate.Counts(good, good + bad_events))
        return evaluate.compute(Fake(), measured, NOW).remaining  # type: ignore[arg-type]

    before, after = remaining(bad), remaining(bad + more_bad)
    assert after is not None
    assert before is None or after <= before
    attainment = evaluate.compute(
        Fake(),  # type: ignore[arg-type]
        evaluate.Measured(window=evaluate.Counts(good, good + bad + more_bad)),
        NOW,
    ).attainment
    assert attainment is not None and 0 <= attainment <= 1
