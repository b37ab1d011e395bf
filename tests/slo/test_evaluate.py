"""Evaluation over stored buckets: window edges (calendar months across DST), timeslices,
alerts that resolve, budgets that recover, and the policy's options."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from lamplighter.core import events, inbox, jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.settings import Settings, get_settings
from lamplighter.slo import evaluate, service
from lamplighter.slo import jobs as slo_jobs
from lamplighter.slo.models import Slo
from tests.helpers import drain
from tests.slo.conftest import Org, steady

BERLIN = ZoneInfo("Europe/Berlin")


def run(db: Database, now: dt.datetime) -> dict[int, list[str]]:
    with db.transaction() as session:
        slos = list(session.scalars(sa.select(Slo).order_by(Slo.id)))
        return evaluate.evaluate(session=session, slos=slos, now=now)


def push(
    db: Database, slo_id: int, points: list[tuple[dt.datetime, int, int]], now: dt.datetime
) -> None:
    with db.transaction() as session:
        service.record_counts(session=session, slo_id=slo_id, points=points, now=now)


def stored(db: Database, slo_id: int) -> Slo:
    with db.sessionmaker() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        session.expunge(slo)
        return slo


def titles(db: Database, user_id: int) -> list[str]:
    with db.sessionmaker() as session:
        return [item.title for item in inbox.list_for(session=session, user_id=user_id)]


@given(
    start=st.integers(min_value=0, max_value=3 * 86400),
    length=st.integers(min_value=0, max_value=4 * 86400),
)
@settings(max_examples=200, deadline=None)
def test_the_pieces_of_a_range_cover_each_minute_in_it_exactly_once(
    start: int, length: int
) -> None:
    base = dt.datetime(2027, 3, 27, tzinfo=dt.UTC)
    begin = base + dt.timedelta(seconds=start)
    end = begin + dt.timedelta(seconds=length)
    covered = []
    for resolution, a, b in evaluate.pieces(begin, end):
        assert a < b
        if resolution != 60:  # hour and day pieces start and end on their boundaries
            assert a.timestamp() % resolution == 0 and b.timestamp() % resolution == 0
        minute = a
        while minute < b:
            covered.append(minute)
            minute += dt.timedelta(minutes=1)
    expected = []
    minute = evaluate.ceil_to(begin, 60)
    while minute < end:
        expected.append(minute)
        minute += dt.timedelta(minutes=1)
    assert sorted(covered) == expected


@pytest.mark.parametrize(
    ("month_start_local", "now_local", "hours"),
    [
        (dt.datetime(2027, 3, 1), dt.datetime(2027, 3, 31, 23, 0), 743),  # spring forward
        (dt.datetime(2027, 10, 1), dt.datetime(2027, 10, 31, 23, 0), 745),  # fall back
    ],
)
def test_a_calendar_month_counts_from_local_midnight_across_the_dst_change(
    db: Database, org: Org, month_start_local: dt.datetime, now_local: dt.datetime, hours: int
) -> None:
    """Berlin's month starts at 23:00 UTC the day before; events just before it belong to the
    previous month, events just after to this one, and one an hour after the change too."""
    now = now_local.replace(tzinfo=BERLIN).astimezone(dt.UTC)
    slo, _ = org.slo(window="calendar-month", time_zone="Europe/Berlin", objective=99.0)
    starts = month_start_local.replace(tzinfo=BERLIN).astimezone(dt.UTC)
    push(
        db,
        slo.id,
        [
            (starts - dt.timedelta(minutes=1), 0, 1000),  # last minute of the previous month
            (starts, 90, 100),  # first minute of this month
            (starts + dt.timedelta(days=26, hours=1, minutes=30), 95, 100),  # after the change
        ],
        now,
    )
    run(db, now)
    after = stored(db, slo.id)
    assert after.total_events == 200
    assert after.good_events == 185
    assert after.window_start == starts
    assert after.window_end is not None
    assert (after.window_end - after.window_start) == dt.timedelta(hours=hours)


def test_timeslices_spend_time_for_each_bad_slice(db: Database, org: Org) -> None:
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    slo, _ = org.slo(
        objective=99.0, window="7d", budgeting="timeslices", slice_minutes=5, slice_threshold=95
    )
    start = now - dt.timedelta(days=7)
    minutes = {at: (good, total) for at, good, total in steady(start, 7 * 24 * 60, 100)}
    # Three slices of five minutes at 90 % good: bad slices. One minute at 90 % inside an
    # otherwise good slice leaves the slice at 98 %: still good.
    for hour in (10, 30, 50):
        for minute in range(5):
            minutes[start + dt.timedelta(hours=hour, minutes=minute)] = (90, 100)
    minutes[start + dt.timedelta(hours=70, minutes=2)] = (90, 100)
    push(db, slo.id, [(at, good, total) for at, (good, total) in minutes.items()], now)
    run(db, now)
    after = stored(db, slo.id)
    assert after.budget_total == pytest.approx(7 * 86400 * 0.01)  # 100.8 minutes
    assert after.budget_spent == 3 * 5 * 60
    assert after.budget_remaining == pytest.approx(1 - 900 / 6048)
    with db.sessionmaker() as session:
        status = service.status_of(session=session, slo=session.get(Slo, slo.id))  # type: ignore[arg-type]
    assert status["budget_unit"] == "seconds"


def test_a_page_alert_resolves_and_an_exhausted_budget_recovers_and_unfreezes(
    db: Database, org: Org
) -> None:
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    slo, _ = org.slo(objective=99.0, window="7d")
    start = now - dt.timedelta(days=7)
    push(db, slo.id, steady(start, 7 * 24 * 60, 100), now)
    # A burst: 100 % errors for the last 20 minutes: pages, and spends the budget (20,000 bad
    # events against 1 % of 1,028,000).
    push(db, slo.id, [(now - dt.timedelta(minutes=m), 0, 1000) for m in range(1, 21)], now)
    assert "slo.burn_rate_high" in run(db, now)[slo.id]
    after = stored(db, slo.id)
    assert after.status == "exhausted" and after.frozen
    assert "page-1h" in after.firing
    # A day later the burst has left the 1h and 6h lookbacks: the page alerts resolve; the
    # budget stays spent (still inside the 7-day window).
    later = now + dt.timedelta(days=1)
    push(db, slo.id, steady(now, 24 * 60, 100), later)
    emitted = run(db, later)[slo.id]
    assert emitted.count("slo.burn_rate_ok") >= 1
    after = stored(db, slo.id)
    assert not any(name.startswith("page") for name in after.firing)
    assert after.status == "exhausted" and after.frozen
    # When the burst leaves the window the budget is back: recovered, releases thawed.
    much_later = now + dt.timedelta(days=7, hours=1)
    push(db, slo.id, steady(later, 6 * 24 * 60 + 60, 100), much_later)
    emitted = run(db, much_later)[slo.id]
    assert "slo.budget_recovered" in emitted and "slo.release_freeze_changed" in emitted
    after = stored(db, slo.id)
    assert after.status == "healthy" and not after.frozen
    with db.sessionmaker() as session:
        assert not service.release_policy(session=session, entity_ref=org.entity.ref).frozen
        freeze_events = [
            e.payload["frozen"]
            for e in events.list_after(session=session, limit=1000)
            if e.type == "slo.release_freeze_changed"
        ]
    assert freeze_events == [True, False]
    assert "checkout: SLO availability is back within its SLO" in titles(db, org.member.id)


def test_a_low_traffic_slo_with_a_minimum_does_not_page_on_one_failure(
    db: Database, org: Org
) -> None:
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    quiet, _ = org.slo(name="quiet", alerting={"min_events": 100})
    loud, _ = org.slo(name="loud")
    for slo in (quiet, loud):
        push(db, slo.id, [(now - dt.timedelta(minutes=3), 9, 10)], now)
    run(db, now)
    assert stored(db, quiet.id).firing == []
    assert "page-1h" in stored(db, loud.id).firing


def test_factor_overrides_and_disabled_ticket_alerts_are_honoured(db: Database, org: Org) -> None:
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    slo, _ = org.slo(objective=99.0, alerting={"ticket": False, "factors": {"page-1h": 50}})
    start = now - dt.timedelta(days=3)
    push(db, slo.id, steady(start, 3 * 24 * 60, 100, bad_per_minute=20), now)  # 20x burn
    run(db, now)
    after = stored(db, slo.id)
    # 20x is over the Workbook's 14.4 but under the override 50; 6x over 6h fires page-6h;
    # tickets are off.
    assert after.firing == ["page-6h"]
    with db.sessionmaker() as session:
        alerts = service.status_of(session=session, slo=session.get(Slo, slo.id))["alerts"]  # type: ignore[arg-type]
    page_1h = next(alert for alert in alerts if alert["name"] == "page-1h")
    assert page_1h["factor"] == 50 and not page_1h["firing"]


def test_a_lead_only_policy_tells_the_lead_and_a_tier_policy_without_freeze_does_not_freeze(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMPLIGHTER_SLO_TIER_POLICIES", '{"3": {"on_exhausted": "notify"}}')
    get_settings.cache_clear()
    try:
        org = Org(db, name="reports", tier=3)
        now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
        slo, _ = org.slo(objective=99.0, window="7d", policy={"notify": "lead"})
        push(db, slo.id, [(now - dt.timedelta(minutes=m), 0, 100) for m in range(1, 4)], now)
        run(db, now)
        after = stored(db, slo.id)
        assert after.status == "exhausted" and not after.frozen
        with db.sessionmaker() as session:
            assert not service.release_policy(session=session, entity_ref="reports").frozen
            policy = service.status_of(session=session, slo=session.get(Slo, slo.id))["policy"]  # type: ignore[arg-type]
        assert policy == {"notify_at": [50, 75], "notify": "lead", "on_exhausted": "notify"}
        assert "reports: SLO availability has spent its whole error budget" in titles(
            db, org.lead.id
        )
        assert titles(db, org.member.id) == []
    finally:
        get_settings.cache_clear()


def test_the_worker_evaluates_every_slo_on_its_recurring_job(
    db: Database, org: Org, settings: Settings
) -> None:
    slo, _ = org.slo()
    now = utcnow()
    push(db, slo.id, [(now - dt.timedelta(minutes=2), 990, 1000)], now)
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=slo_jobs.EVALUATE_JOB)
    drain(db, settings)
    after = stored(db, slo.id)
    assert after.evaluated_at is not None
    assert after.total_events == 1000 and after.attainment == pytest.approx(0.99)
    assert after.status == "exhausted"  # 1 % bad against a 0.1 % budget
    assert slo_jobs.EVALUATE_JOB in jobs.RECURRING


def test_two_evaluations_at_once_announce_a_transition_once(
    db: Database, org: Org, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    slo, _ = org.slo()
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    push(db, slo.id, [(now - dt.timedelta(minutes=m), 0, 100) for m in range(1, 6)], now)
    barrier = threading.Barrier(2)

    def evaluate_once() -> None:
        with db.transaction() as session:
            slos = list(session.scalars(sa.select(Slo)))
            barrier.wait()
            evaluate.evaluate(session=session, slos=slos, now=now)

    threads = [threading.Thread(target=evaluate_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with db.sessionmaker() as session:
        announced = events.list_after(session=session, limit=1000)
    assert [e.type for e in announced].count("slo.budget_exhausted") == 1
    fired = sorted(e.payload["alert"] for e in announced if e.type == "slo.burn_rate_high")
    assert fired == ["page-1h", "page-6h", "ticket-1d", "ticket-3d"]  # each once


def test_the_projected_exhaustion_is_only_said_when_the_budget_would_run_out(
    db: Database, org: Org
) -> None:
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    steady_slo, _ = org.slo(name="steady", objective=99.0)
    fast, _ = org.slo(name="fast", objective=99.0)
    month, _ = org.slo(name="month", objective=99.0, window="calendar-month")
    start = now - dt.timedelta(days=30)
    # Half the budget's rate for 30 days: a rolling window never spends it all at that rate.
    push(db, steady_slo.id, steady(start, 30 * 24 * 60, 100, bad_per_minute=0.5), now)
    # 10x over the last 6 hours, after a quiet month: at 10x the rest goes in a few days.
    quiet = steady(start, 30 * 24 * 60 - 360, 100)
    push(db, fast.id, quiet + steady(now - dt.timedelta(hours=6), 360, 100, 10), now)
    # The same burn in a calendar month five days from its end: it would take longer than that.
    month_start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    minutes = int((now - month_start).total_seconds() // 60)
    push(db, month.id, steady(month_start, minutes, 100, bad_per_minute=0.2), now)
    later = dt.datetime(2026, 12, 26, 12, 0, tzinfo=dt.UTC)
    push(db, month.id, steady(later - dt.timedelta(hours=6), 360, 100, 2), later)
    run(db, now)
    assert stored(db, steady_slo.id).exhaustion_at is None
    fast_state = stored(db, fast.id)
    assert fast_state.exhaustion_at is not None
    left = fast_state.budget_remaining or 0
    expected = now + dt.timedelta(days=30) * left / 10
    assert abs((fast_state.exhaustion_at - expected).total_seconds()) < 60
    run(db, later)
    assert stored(db, month.id).burn_rates["6h"] == pytest.approx(2.0)
    assert stored(db, month.id).exhaustion_at is None
