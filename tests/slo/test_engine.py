"""The SLO maths against hand-computed cases and the Google SRE Workbook's tables."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamplighter.slo.engine import (
    AlertRule,
    Severity,
    Status,
    Window,
    alert_rules,
    burn_rate,
    evaluate_alerts,
    occurrences_budget,
    slice_ratio,
    slo_status,
    time_to_exhaustion,
    timeslices_budget,
    window_bounds,
    window_length,
)

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
BERLIN = "Europe/Berlin"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def rule_table(rules: tuple[AlertRule, ...]) -> list[tuple[str, dt.timedelta, dt.timedelta, float]]:
    return [(r.severity.value, r.long_window, r.short_window, r.burn_rate_factor) for r in rules]


# --- windows ---------------------------------------------------------------------------------


def test_a_calendar_month_with_the_spring_change_is_an_hour_short() -> None:
    march = Window.calendar_month(BERLIN)
    start, end = window_bounds(march, utc(2027, 3, 15, 12))
    assert (start, end) == (utc(2027, 2, 28, 23), utc(2027, 3, 31, 22))
    assert window_length(march, utc(2027, 3, 15, 12)) == 743 * HOUR


def test_a_calendar_month_with_the_autumn_change_is_an_hour_long() -> None:
    october = Window.calendar_month(BERLIN)
    start, end = window_bounds(october, utc(2027, 10, 15))
    assert (start, end) == (utc(2027, 9, 30, 22), utc(2027, 10, 31, 23))
    assert window_length(october, utc(2027, 10, 15)) == 745 * HOUR


def test_a_month_without_a_change_is_whole_days() -> None:
    assert window_length(Window.calendar_month(BERLIN), utc(2027, 2, 10)) == 28 * DAY
    assert window_length(Window.calendar_month(BERLIN), utc(2027, 12, 31, 22, 59)) == 31 * DAY


def test_a_calendar_month_follows_local_midnight_not_utc() -> None:
    # 22:30 UTC on 31 March is already 00:30 on 1 April in Berlin.
    start, end = window_bounds(Window.calendar_month(BERLIN), utc(2027, 3, 31, 22, 30))
    assert (start, end) == (utc(2027, 3, 31, 22), utc(2027, 4, 30, 22))
    # The same instant expressed in another zone is the same window.
    tokyo = utc(2027, 3, 31, 22, 30).astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert window_bounds(Window.calendar_month(BERLIN), tokyo) == (start, end)


def test_a_calendar_week_runs_from_monday_midnight_and_shrinks_across_the_change() -> None:
    week = Window.calendar_week(BERLIN)
    # Wednesday 24 March 2027; clocks go forward on Sunday 28 March.
    start, end = window_bounds(week, utc(2027, 3, 24, 9))
    assert (start, end) == (utc(2027, 3, 21, 23), utc(2027, 3, 28, 22))
    assert start.tzinfo is dt.UTC and end.tzinfo is dt.UTC
    assert end - start == 167 * HOUR
    assert window_length(week, utc(2027, 3, 10)) == 168 * HOUR
    # Monday 00:00 local belongs to the new week; the instant before belongs to the old one.
    assert window_bounds(week, utc(2027, 3, 28, 22))[0] == utc(2027, 3, 28, 22)
    assert window_bounds(week, utc(2027, 3, 28, 21, 59, 59))[1] == utc(2027, 3, 28, 22)


def test_a_calendar_day_starts_at_its_first_instant_where_midnight_does_not_exist() -> None:
    # Santiago springs forward at midnight on 6 September 2026: the day begins at 01:00 (-03).
    start, _ = window_bounds(Window.calendar_month("America/Santiago"), utc(2026, 9, 15))
    assert start == utc(2026, 9, 1, 4)
    week_start, _ = window_bounds(Window.calendar_week("America/Santiago"), utc(2026, 9, 9))
    assert week_start == utc(2026, 9, 7, 3)


def test_a_rolling_window_is_a_fixed_number_of_days_before_now() -> None:
    at = utc(2027, 4, 2, 10)
    assert window_bounds(Window.rolling(30, BERLIN), at) == (utc(2027, 3, 3, 10), at)
    assert window_length(Window.rolling(28), at) == 672 * HOUR
    assert window_length(Window.rolling(7), at) == 168 * HOUR


def test_naive_datetimes_and_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        window_bounds(Window.calendar_month(BERLIN), dt.datetime(2027, 3, 1))
    with pytest.raises(ValueError, match="7, 28 or 30"):
        Window.rolling(14)
    with pytest.raises(ValueError, match="time zone"):
        Window.calendar_week("Europe/Atlantis")


# --- budgets ---------------------------------------------------------------------------------


def test_one_hour_at_14_4_times_spends_two_percent_of_a_30_day_budget() -> None:
    # Steady 1,000,000 events an hour for 30 days; for one hour the error ratio is 14.4 * 0.1 %.
    events_per_hour = 1_000_000
    total = 720 * events_per_hour
    bad_in_the_hour = 14_400
    budget = occurrences_budget(
        good_events=total - bad_in_the_hour, total_events=total, objective_ratio=0.999
    )
    assert budget.budget_events == pytest.approx(720_000)
    assert budget.spent_events == 14_400
    assert budget.remaining_events == pytest.approx(705_600)
    assert budget.remaining_ratio == pytest.approx(0.98)
    assert budget.attainment_ratio == pytest.approx(0.99998)

    rate = burn_rate(
        good_events=events_per_hour - bad_in_the_hour,
        total_events=events_per_hour,
        objective_ratio=0.999,
    )
    assert rate == pytest.approx(14.4)
    # The other 98 % lasts 0.98 * 720 h / 14.4 = 49 hours at that pace.
    left = time_to_exhaustion(
        remaining_ratio=budget.remaining_ratio, burn_rate=rate, window_length=720 * HOUR
    )
    assert left is not None
    assert left / HOUR == pytest.approx(49)


def test_an_overspent_budget_goes_negative() -> None:
    budget = occurrences_budget(good_events=990, total_events=1000, objective_ratio=0.999)
    assert budget.spent_events == 10
    assert budget.remaining_events == pytest.approx(-9)
    assert budget.remaining_ratio == pytest.approx(-9)


def test_an_empty_window_has_no_attainment_and_no_burn_rate() -> None:
    budget = occurrences_budget(good_events=0, total_events=0, objective_ratio=0.99)
    assert budget.attainment_ratio is None
    assert budget.remaining_ratio is None
    assert burn_rate(good_events=0, total_events=0, objective_ratio=0.99) is None


def test_impossible_counts_and_objectives_are_refused() -> None:
    with pytest.raises(ValueError, match="good <= total"):
        occurrences_budget(good_events=11, total_events=10, objective_ratio=0.99)
    with pytest.raises(ValueError, match="between 0 and 1"):
        occurrences_budget(good_events=1, total_events=1, objective_ratio=99.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        burn_rate(good_events=1, total_events=1, objective_ratio=1.0)


def test_timeslices_count_bad_minutes_against_a_budget_in_time() -> None:
    # 99 % over a 7-day window of one-minute slices: 1 % of 10,080 minutes = 100.8 minutes.
    ratios = [
        1.0,
        0.96,  # bad: below 0.97
        0.97,  # good: exactly the threshold
        None,  # no traffic: neither good nor bad
        slice_ratio(good_events=90, total_events=100),  # bad
        slice_ratio(good_events=0, total_events=0),  # no data
        0.999,
    ]
    budget = timeslices_budget(
        slice_good_ratios=ratios,
        slice_length=MINUTE,
        slice_threshold_ratio=0.97,
        objective_ratio=0.99,
        window_length=7 * DAY,
    )
    assert (budget.good_slices, budget.bad_slices, budget.empty_slices) == (3, 2, 2)
    assert budget.attainment_ratio == pytest.approx(0.6)
    assert budget.budget / MINUTE == pytest.approx(100.8)
    assert budget.spent == 2 * MINUTE
    assert budget.remaining / MINUTE == pytest.approx(98.8)
    assert budget.remaining_ratio == pytest.approx(1 - 2 / 100.8)


def test_timeslices_without_any_data_are_no_data() -> None:
    budget = timeslices_budget(
        slice_good_ratios=[None, None],
        slice_length=5 * MINUTE,
        slice_threshold_ratio=0.9,
        objective_ratio=0.99,
        window_length=28 * DAY,
    )
    assert budget.bad_slices == 0
    assert budget.attainment_ratio is None
    assert budget.remaining_ratio is None
    assert slo_status(remaining_ratio=budget.remaining_ratio, firing=()) is Status.NO_DATA


# --- alerts ----------------------------------------------------------------------------------


def test_alert_rules_for_30_days_are_the_workbook_table() -> None:
    assert rule_table(alert_rules(30)) == [
        ("page", HOUR, 5 * MINUTE, 14.4),
        ("page", 6 * HOUR, 30 * MINUTE, 6.0),
        ("ticket", DAY, 2 * HOUR, 3.0),
        ("ticket", 3 * DAY, 6 * HOUR, 1.0),
    ]
    assert [r.budget_fraction for r in alert_rules(30)] == [0.02, 0.05, 0.10, 0.10]


def test_alert_factors_are_rescaled_for_28_and_7_days() -> None:
    # 28 days = 672 h: 0.02 * 672 / 1, 0.05 * 672 / 6, 0.1 * 672 / 24, 0.1 * 672 / 72.
    assert [r.burn_rate_factor for r in alert_rules(28)] == pytest.approx(
        [13.44, 5.6, 2.8, 0.9333333333]
    )
    # 7 days = 168 h.
    assert [r.burn_rate_factor for r in alert_rules(7)] == pytest.approx(
        [3.36, 1.4, 0.7, 0.2333333333]
    )
    assert [r.short_window for r in alert_rules(7)] == [
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        6 * HOUR,
    ]


def page_1h() -> AlertRule:
    return alert_rules(30)[0]


def test_an_alert_fires_only_when_both_windows_burn_too_fast() -> None:
    rule = page_1h()
    counts = {HOUR: 10_000, 5 * MINUTE: 900}
    assert evaluate_alerts([rule], {HOUR: 15.0, 5 * MINUTE: 20.0}, counts, min_events=100) == (
        rule,
    )
    # A spike that is over: the long window still burns, the short one no longer does.
    assert evaluate_alerts([rule], {HOUR: 15.0, 5 * MINUTE: 2.0}, counts, min_events=100) == ()
    # A fresh spike: the short window burns, the hour as a whole does not yet.
    assert evaluate_alerts([rule], {HOUR: 10.0, 5 * MINUTE: 50.0}, counts, min_events=100) == ()
    # Exactly the factor is not above it.
    assert evaluate_alerts([rule], {HOUR: 14.4, 5 * MINUTE: 14.4}, counts, min_events=100) == ()
    # No data in one window never fires.
    assert evaluate_alerts([rule], {HOUR: 15.0, 5 * MINUTE: None}, counts, min_events=100) == ()
    assert evaluate_alerts([rule], {HOUR: 15.0}, counts, min_events=100) == ()


def test_a_low_traffic_service_does_not_page_below_the_minimum_event_count() -> None:
    rule = page_1h()
    # 10 requests in the hour, one failed: a 100x burn on 99.9 %, but proof of nothing.
    rates = {HOUR: 100.0, 5 * MINUTE: 1000.0}
    assert evaluate_alerts([rule], rates, {HOUR: 10}, min_events=50) == ()
    assert evaluate_alerts([rule], rates, {HOUR: 50}, min_events=50) == (rule,)


def test_evaluating_the_full_table_reports_every_rule_that_fires() -> None:
    rules = alert_rules(30)
    rates = {
        HOUR: 2.0,
        5 * MINUTE: 2.5,
        6 * HOUR: 7.0,
        30 * MINUTE: 6.5,
        DAY: 3.5,
        2 * HOUR: 4.0,
        3 * DAY: 1.2,
    }
    counts = dict.fromkeys(rates, 1_000_000)
    fired = evaluate_alerts(rules, rates, counts, min_events=1)
    assert [(r.severity, r.long_window) for r in fired] == [
        (Severity.PAGE, 6 * HOUR),
        (Severity.TICKET, DAY),
        (Severity.TICKET, 3 * DAY),
    ]


# --- exhaustion and status -------------------------------------------------------------------


def test_time_to_exhaustion_edges() -> None:
    month = 720 * HOUR
    assert time_to_exhaustion(remaining_ratio=0.5, burn_rate=2.0, window_length=month) == 180 * HOUR
    assert time_to_exhaustion(
        remaining_ratio=-0.2, burn_rate=0.0, window_length=month
    ) == dt.timedelta(0)
    assert time_to_exhaustion(remaining_ratio=0.5, burn_rate=0.0, window_length=month) is None
    assert time_to_exhaustion(remaining_ratio=0.5, burn_rate=None, window_length=month) is None
    assert time_to_exhaustion(remaining_ratio=None, burn_rate=3.0, window_length=month) is None


def test_status_precedence() -> None:
    page, _, ticket, _ = alert_rules(30)
    assert slo_status(remaining_ratio=None, firing=[page]) is Status.NO_DATA
    assert slo_status(remaining_ratio=0.0, firing=[page]) is Status.EXHAUSTED
    assert slo_status(remaining_ratio=-1.5, firing=()) is Status.EXHAUSTED
    assert slo_status(remaining_ratio=0.9, firing=[page]) is Status.BURNING
    assert slo_status(remaining_ratio=0.3, firing=[ticket]) is Status.WARNING
    assert slo_status(remaining_ratio=0.5, firing=()) is Status.WARNING
    assert slo_status(remaining_ratio=0.51, firing=[ticket]) is Status.HEALTHY
    assert slo_status(remaining_ratio=0.3, firing=(), warning_spent_ratio=0.75) is Status.HEALTHY
    assert slo_status(remaining_ratio=0.25, firing=(), warning_spent_ratio=0.75) is Status.WARNING


# --- properties ------------------------------------------------------------------------------

objectives = st.sampled_from([0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999])
counts_up_to = st.integers(min_value=0, max_value=10**12)


@given(st.data(), objectives, st.integers(min_value=1, max_value=10**12), counts_up_to)
def test_more_bad_events_never_leave_more_budget(data, objective, total, extra_bad) -> None:
    good = data.draw(st.integers(min_value=0, max_value=total))
    before = occurrences_budget(good_events=good, total_events=total, objective_ratio=objective)
    after = occurrences_budget(
        good_events=good, total_events=total + extra_bad, objective_ratio=objective
    )
    assert before.remaining_ratio is not None and after.remaining_ratio is not None
    assert after.remaining_ratio <= before.remaining_ratio


@given(st.data(), objectives, counts_up_to)
def test_attainment_is_a_ratio(data, objective, total) -> None:
    good = data.draw(st.integers(min_value=0, max_value=total))
    attainment = occurrences_budget(
        good_events=good, total_events=total, objective_ratio=objective
    ).attainment_ratio
    if total == 0:
        assert attainment is None
    else:
        assert attainment is not None and 0 <= attainment <= 1


@given(
    st.integers(min_value=2, max_value=100_000),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=720),
)
def test_burning_at_exactly_one_over_the_whole_window_spends_exactly_the_budget(
    one_bad_in, bad_per_hour
) -> None:
    # An objective of 1 - 1/n with one bad event in every n: each hour burns at exactly 1.
    objective = 1 - 1 / one_bad_in
    hours = [(bad * one_bad_in - bad, bad * one_bad_in) for bad in bad_per_hour]
    for good, total in hours:
        rate = burn_rate(good_events=good, total_events=total, objective_ratio=objective)
        assert rate is None or rate == pytest.approx(1, rel=1e-9)
    good_in_window = sum(good for good, _ in hours)
    total_in_window = sum(total for _, total in hours)
    budget = occurrences_budget(
        good_events=good_in_window, total_events=total_in_window, objective_ratio=objective
    )
    if total_in_window == 0:
        assert budget.remaining_ratio is None
        return
    assert budget.remaining_events == pytest.approx(0, abs=1e-9 * budget.budget_events)
    assert budget.remaining_ratio == pytest.approx(0, abs=1e-9)
