"""The schedule engine against hand-computed rotas, both clock changes in two zones, and properties.

Clock changes used below: Europe/Berlin springs forward on Sunday 28 March 2027 at 01:00 UTC
(02:00 CET becomes 03:00 CEST) and falls back on Sunday 31 October 2027 at 01:00 UTC (03:00 CEST
becomes 02:00 CET); America/New_York on Sunday 14 March 2027 at 07:00 UTC and Sunday 7 November
2027 at 06:00 UTC. 1 June 2027 is a Tuesday.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamplighter.oncall import schedule as engine
from lamplighter.oncall.schedule import (
    OVERRIDE_LAYER,
    WEEKDAYS,
    Layer,
    LayerVersion,
    Override,
    Restriction,
    Rotation,
    RotationKind,
    Schedule,
    current_shift,
    daily_restrictions,
    final_schedule,
    layer_on_call_at,
    layer_shifts,
    on_call_at,
)
from lamplighter.oncall.shifts import Shift

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
LONG_AGO = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, fold=fold, tzinfo=ZoneInfo(zone))


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0):
    return local(BERLIN, year, month, day, hour, minute, fold)


def make_rotation(
    participants: tuple[str, ...],
    anchor: dt.datetime,
    kind: RotationKind = RotationKind.DAILY,
    every: int = 1,
    restrictions: tuple[Restriction, ...] = (),
) -> Rotation:
    assert isinstance(anchor.tzinfo, ZoneInfo)
    return Rotation(participants, kind, every, anchor, anchor.tzinfo.key, restrictions)


def make_layer(name: str, rotation: Rotation, until: dt.datetime | None = None) -> Layer:
    return Layer.of(name, rotation, start=LONG_AGO, until=until)


def shift(start: dt.datetime, end: dt.datetime, user: str, layer: str = "primary") -> Shift:
    return Shift(start, end, user, layer)


def only(layer: Layer, start: dt.datetime, end: dt.datetime) -> list[Shift]:
    return final_schedule(Schedule((layer,)), start=start, end=end)


# The primary layer of most examples: alice and bob take turns daily at 09:00 Berlin from Tuesday
# 1 June 2027, so alice has the even days of June (1, 3, 5, ...) counted from 1 June.
PRIMARY = make_layer("primary", make_rotation(("alice", "bob"), berlin(2027, 6, 1, 9)))


# --- daily and weekly handoffs keep the local time across clock changes -------------------------


def test_a_daily_shift_across_the_spring_change_lasts_23_hours() -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2027, 3, 1, 9))
    shifts = only(make_layer("primary", rotation), utc(2027, 3, 27, 8), utc(2027, 3, 29, 7))
    # 27 March is day 26 from the anchor: carol; 28 March is day 27: alice.
    assert shifts == [
        shift(utc(2027, 3, 27, 8), utc(2027, 3, 28, 7), "carol"),
        shift(utc(2027, 3, 28, 7), utc(2027, 3, 29, 7), "alice"),
    ]
    assert [s.length for s in shifts] == [23 * HOUR, 24 * HOUR]
    assert [s.start.astimezone(ZoneInfo(BERLIN)).hour for s in shifts] == [9, 9]


def test_a_daily_shift_across_the_autumn_change_lasts_25_hours() -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2027, 3, 1, 9))
    shifts = only(make_layer("primary", rotation), utc(2027, 10, 30, 7), utc(2027, 11, 1, 8))
    # 30 October is day 243 from 1 March: 243 = 3 * 81, alice.
    assert shifts == [
        shift(utc(2027, 10, 30, 7), utc(2027, 10, 31, 8), "alice"),
        shift(utc(2027, 10, 31, 8), utc(2027, 11, 1, 8), "bob"),
    ]
    assert shifts[0].length == 25 * HOUR


def test_a_weekly_shift_is_an_hour_short_in_spring_and_an_hour_long_in_autumn() -> None:
    layer = make_layer(
        "primary", make_rotation(("alice", "bob"), berlin(2027, 3, 22, 9), RotationKind.WEEKLY)
    )
    spring = only(layer, utc(2027, 3, 22, 8), utc(2027, 4, 5, 7))
    assert spring == [
        shift(utc(2027, 3, 22, 8), utc(2027, 3, 29, 7), "alice"),
        shift(utc(2027, 3, 29, 7), utc(2027, 4, 5, 7), "bob"),
    ]
    assert [s.length for s in spring] == [167 * HOUR, 168 * HOUR]
    # Monday 25 October is 217 days = 31 weeks after the anchor: an odd turn, bob.
    autumn = only(layer, utc(2027, 10, 25, 7), utc(2027, 11, 1, 8))
    assert autumn == [shift(utc(2027, 10, 25, 7), utc(2027, 11, 1, 8), "bob")]
    assert autumn[0].length == 169 * HOUR


def test_every_two_days_hands_off_every_other_local_morning() -> None:
    layer = make_layer("primary", make_rotation(("alice", "bob"), berlin(2027, 3, 25, 9), every=2))
    assert only(layer, utc(2027, 3, 25, 8), utc(2027, 3, 31, 7)) == [
        shift(utc(2027, 3, 25, 8), utc(2027, 3, 27, 8), "alice"),
        shift(utc(2027, 3, 27, 8), utc(2027, 3, 29, 7), "bob"),  # 47 hours
        shift(utc(2027, 3, 29, 7), utc(2027, 3, 31, 7), "alice"),
    ]


def test_new_york_changes_on_its_own_dates() -> None:
    rotation = make_rotation(("alice", "bob"), local(NEW_YORK, 2027, 3, 1, 9))
    layer = make_layer("primary", rotation)
    # 13 March is day 12 (alice): 09:00 EST = 14:00 UTC to 09:00 EDT = 13:00 UTC.
    assert only(layer, utc(2027, 3, 13, 14), utc(2027, 3, 14, 13)) == [
        shift(utc(2027, 3, 13, 14), utc(2027, 3, 14, 13), "alice")
    ]
    # Berlin's change day is an ordinary 24-hour day in New York (day 26, alice).
    assert only(layer, utc(2027, 3, 27, 13), utc(2027, 3, 28, 13))[0].length == 24 * HOUR
    assert only(layer, utc(2027, 10, 30, 13), utc(2027, 10, 31, 13)) == [
        shift(utc(2027, 10, 30, 13), utc(2027, 10, 31, 13), "bob")
    ]
    # 6 November is day 250 (alice): 09:00 EDT = 13:00 UTC to 09:00 EST = 14:00 UTC.
    autumn = only(layer, utc(2027, 11, 6, 13), utc(2027, 11, 7, 14))
    assert autumn == [shift(utc(2027, 11, 6, 13), utc(2027, 11, 7, 14), "alice")]
    assert autumn[0].length == 25 * HOUR


def test_a_handoff_inside_the_spring_gap_happens_when_the_gap_ends() -> None:
    layer = make_layer("primary", make_rotation(("alice", "bob"), berlin(2027, 3, 26, 2, 30)))
    # 02:30 does not exist on 28 March: the handoff is at 03:00 CEST = 01:00 UTC.
    assert only(layer, utc(2027, 3, 27, 1, 30), utc(2027, 3, 29, 0, 30)) == [
        shift(utc(2027, 3, 27, 1, 30), utc(2027, 3, 28, 1), "bob"),
        shift(utc(2027, 3, 28, 1), utc(2027, 3, 29, 0, 30), "alice"),
    ]
    assert on_call_at(Schedule((layer,)), berlin(2027, 3, 28, 3)) == "alice"
    assert on_call_at(Schedule((layer,)), utc(2027, 3, 28, 0, 59)) == "bob"


def test_a_handoff_at_a_repeated_local_time_happens_at_its_first_occurrence() -> None:
    layer = make_layer("primary", make_rotation(("alice", "bob"), berlin(2027, 10, 29, 2, 30)))
    # 02:30 happens twice on 31 October: the handoff is at 02:30 CEST = 00:30 UTC.
    shifts = only(layer, utc(2027, 10, 30, 0, 30), utc(2027, 11, 1, 1, 30))
    assert shifts == [
        shift(utc(2027, 10, 30, 0, 30), utc(2027, 10, 31, 0, 30), "bob"),
        shift(utc(2027, 10, 31, 0, 30), utc(2027, 11, 1, 1, 30), "alice"),
    ]
    assert [s.length for s in shifts] == [24 * HOUR, 25 * HOUR]


# --- hourly and custom lengths are absolute -----------------------------------------------------


def test_an_hourly_rotation_counts_real_hours_across_the_spring_change() -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2027, 3, 28), RotationKind.HOURLY)
    shifts = only(make_layer("primary", rotation), utc(2027, 3, 27, 23), utc(2027, 3, 28, 3))
    assert [(s.user, s.length) for s in shifts] == [
        ("alice", HOUR),
        ("bob", HOUR),
        ("carol", HOUR),
        ("alice", HOUR),
    ]
    # Local 02:00 does not exist, so carol starts at 03:00.
    assert [s.start.astimezone(ZoneInfo(BERLIN)).hour for s in shifts] == [0, 1, 3, 4]


def test_an_hourly_rotation_tells_the_two_repeated_local_hours_apart() -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2027, 10, 31), RotationKind.HOURLY)
    schedule = Schedule((make_layer("primary", rotation),))
    shifts = final_schedule(schedule, start=utc(2027, 10, 30, 22), end=utc(2027, 10, 31, 3))
    assert [s.user for s in shifts] == ["alice", "bob", "carol", "alice", "bob"]
    assert all(s.length == HOUR for s in shifts)
    # 02:30 local happens twice: first in carol's hour (CEST), then in alice's (CET).
    assert on_call_at(schedule, berlin(2027, 10, 31, 2, 30, fold=0)) == "carol"
    assert on_call_at(schedule, berlin(2027, 10, 31, 2, 30, fold=1)) == "alice"


def test_a_custom_rotation_of_12_hours_drifts_an_hour_in_local_time_at_the_change() -> None:
    rotation = make_rotation(
        ("alice", "bob"), berlin(2027, 3, 27, 21), RotationKind.CUSTOM, every=12
    )
    shifts = only(make_layer("primary", rotation), utc(2027, 3, 27, 20), utc(2027, 3, 28, 20))
    assert shifts == [
        shift(utc(2027, 3, 27, 20), utc(2027, 3, 28, 8), "alice"),
        shift(utc(2027, 3, 28, 8), utc(2027, 3, 28, 20), "bob"),
    ]
    assert shifts[1].start.astimezone(ZoneInfo(BERLIN)).hour == 10


# --- restrictions ----------------------------------------------------------------------------


def test_a_business_hours_layer_lets_the_24_7_layer_show_through_at_night_and_weekends() -> None:
    business_hours = daily_restrictions(dt.time(9), dt.time(17), weekdays=WEEKDAYS)
    dave = make_rotation(
        ("dave",), berlin(2027, 5, 31, 9), RotationKind.WEEKLY, restrictions=business_hours
    )
    schedule = Schedule((PRIMARY, make_layer("business", dave)))
    # From Friday 4 June 00:00 to Monday 7 June 12:00, Berlin (UTC+2).
    shifts = final_schedule(schedule, start=utc(2027, 6, 3, 22), end=utc(2027, 6, 7, 10))
    assert shifts == [
        shift(utc(2027, 6, 3, 22), utc(2027, 6, 4, 7), "alice"),
        shift(utc(2027, 6, 4, 7), utc(2027, 6, 4, 15), "dave", "business"),
        shift(utc(2027, 6, 4, 15), utc(2027, 6, 5, 7), "bob"),
        shift(utc(2027, 6, 5, 7), utc(2027, 6, 6, 7), "alice"),
        shift(utc(2027, 6, 6, 7), utc(2027, 6, 7, 7), "bob"),
        shift(utc(2027, 6, 7, 7), utc(2027, 6, 7, 10), "dave", "business"),
    ]
    assert on_call_at(schedule, berlin(2027, 6, 4, 16, 59)) == "dave"
    assert on_call_at(schedule, berlin(2027, 6, 4, 17)) == "bob"
    assert on_call_at(schedule, berlin(2027, 6, 5, 12)) == "alice"


def test_an_overnight_restriction_runs_from_22_to_06_and_is_7_hours_on_the_spring_night() -> None:
    nights = daily_restrictions(dt.time(22), dt.time(6))
    night = make_layer("night", make_rotation(("nora",), berlin(2027, 1, 4), restrictions=nights))
    # Tuesday 8 June, local midnight to midnight: Monday's night ends at 06:00, Tuesday's
    # begins at 22:00; alice's Monday turn and bob's Tuesday turn show through in between.
    day = final_schedule(
        Schedule((PRIMARY, night)), start=utc(2027, 6, 7, 22), end=utc(2027, 6, 8, 22)
    )
    assert day == [
        shift(utc(2027, 6, 7, 22), utc(2027, 6, 8, 4), "nora", "night"),
        shift(utc(2027, 6, 8, 4), utc(2027, 6, 8, 7), "alice"),
        shift(utc(2027, 6, 8, 7), utc(2027, 6, 8, 20), "bob"),
        shift(utc(2027, 6, 8, 20), utc(2027, 6, 8, 22), "nora", "night"),
    ]
    # Saturday 27 March 22:00 CET = 21:00 UTC to Sunday 06:00 CEST = 04:00 UTC.
    spring = only(night, utc(2027, 3, 27, 12), utc(2027, 3, 28, 12))
    assert spring == [shift(utc(2027, 3, 27, 21), utc(2027, 3, 28, 4), "nora", "night")]
    assert spring[0].length == 7 * HOUR


def test_a_time_of_week_restriction_covers_the_weekend_from_friday_evening_to_monday() -> None:
    weekend = Restriction(4, dt.time(18), 0, dt.time(8))
    wendy = make_layer(
        "weekend", make_rotation(("wendy",), berlin(2027, 1, 4), restrictions=(weekend,))
    )
    schedule = Schedule((PRIMARY, wendy))
    # Friday 4 June 12:00 to Monday 7 June 12:00 Berlin. Sunday's turn is bob's until 09:00.
    assert final_schedule(schedule, start=utc(2027, 6, 4, 10), end=utc(2027, 6, 7, 10)) == [
        shift(utc(2027, 6, 4, 10), utc(2027, 6, 4, 16), "bob"),
        shift(utc(2027, 6, 4, 16), utc(2027, 6, 7, 6), "wendy", "weekend"),
        shift(utc(2027, 6, 7, 6), utc(2027, 6, 7, 7), "bob"),
        shift(utc(2027, 6, 7, 7), utc(2027, 6, 7, 10), "alice"),
    ]
    # The spring weekend is an hour shorter: 18:00 CET Friday to 08:00 CEST Monday, 61 hours.
    spring = only(wendy, utc(2027, 3, 26), utc(2027, 3, 30))
    assert spring == [shift(utc(2027, 3, 26, 17), utc(2027, 3, 29, 6), "wendy", "weekend")]
    assert spring[0].length == 61 * HOUR


# --- overrides, merging and gaps -------------------------------------------------------------


def test_an_override_cuts_a_shift_in_three() -> None:
    cover = Override(berlin(2027, 6, 1, 12), berlin(2027, 6, 1, 14), "carol")
    schedule = Schedule((PRIMARY,), (cover,))
    assert final_schedule(schedule, start=utc(2027, 6, 1, 7), end=utc(2027, 6, 2, 7)) == [
        shift(utc(2027, 6, 1, 7), utc(2027, 6, 1, 10), "alice"),
        shift(utc(2027, 6, 1, 10), utc(2027, 6, 1, 12), "carol", "override"),
        shift(utc(2027, 6, 1, 12), utc(2027, 6, 2, 7), "alice"),
    ]
    assert on_call_at(schedule, berlin(2027, 6, 1, 13)) == "carol"
    assert on_call_at(schedule, berlin(2027, 6, 1, 14)) == "alice"


def test_of_two_overlapping_overrides_the_later_one_wins() -> None:
    first = Override(berlin(2027, 6, 1, 12), berlin(2027, 6, 1, 14), "carol")
    second = Override(berlin(2027, 6, 1, 13), berlin(2027, 6, 1, 15), "dan")
    schedule = Schedule((PRIMARY,), (first, second))
    assert final_schedule(schedule, start=utc(2027, 6, 1, 7), end=utc(2027, 6, 2, 7)) == [
        shift(utc(2027, 6, 1, 7), utc(2027, 6, 1, 10), "alice"),
        shift(utc(2027, 6, 1, 10), utc(2027, 6, 1, 11), "carol", "override"),
        shift(utc(2027, 6, 1, 11), utc(2027, 6, 1, 13), "dan", "override"),
        shift(utc(2027, 6, 1, 13), utc(2027, 6, 2, 7), "alice"),
    ]


def test_back_to_back_turns_of_one_person_merge_into_one_shift() -> None:
    layer = make_layer("primary", make_rotation(("alice", "alice", "bob"), berlin(2027, 6, 1, 9)))
    start, end = utc(2027, 6, 1, 7), utc(2027, 6, 4, 7)
    assert (
        len(layer_shifts(layer, start=start, end=end)) == 3
    )  # the turns, as the rotation has them
    assert only(layer, start, end) == [
        shift(utc(2027, 6, 1, 7), utc(2027, 6, 3, 7), "alice"),
        shift(utc(2027, 6, 3, 7), utc(2027, 6, 4, 7), "bob"),
    ]


def test_the_same_person_through_an_override_stays_a_shift_of_its_own() -> None:
    # alice takes bob's Wednesday: the timeline still shows which part is the override.
    cover = Override(berlin(2027, 6, 2, 9), berlin(2027, 6, 3, 9), "alice")
    schedule = Schedule((PRIMARY,), (cover,))
    assert final_schedule(schedule, start=utc(2027, 6, 1, 7), end=utc(2027, 6, 3, 7)) == [
        shift(utc(2027, 6, 1, 7), utc(2027, 6, 2, 7), "alice"),
        shift(utc(2027, 6, 2, 7), utc(2027, 6, 3, 7), "alice", "override"),
    ]


def test_nobody_on_call_is_a_gap_in_the_list_and_none_at_that_time() -> None:
    business_hours = daily_restrictions(dt.time(9), dt.time(17), weekdays=WEEKDAYS)
    dave = make_rotation(
        ("dave",), berlin(2027, 5, 31, 9), RotationKind.WEEKLY, restrictions=business_hours
    )
    schedule = Schedule((make_layer("business", dave),))
    # Friday 4 June and the weekend after it, Berlin.
    assert final_schedule(schedule, start=utc(2027, 6, 3, 22), end=utc(2027, 6, 6, 22)) == [
        shift(utc(2027, 6, 4, 7), utc(2027, 6, 4, 15), "dave", "business")
    ]
    assert on_call_at(schedule, berlin(2027, 6, 4, 20)) is None
    assert on_call_at(Schedule(), berlin(2027, 6, 4, 12)) is None


def test_a_layer_that_ends_lets_the_one_below_show_through() -> None:
    tom = make_layer(
        "temporary", make_rotation(("tom",), berlin(2027, 6, 1, 9)), until=berlin(2027, 6, 2, 18)
    )
    schedule = Schedule((PRIMARY, tom))
    assert final_schedule(schedule, start=utc(2027, 6, 2, 7), end=utc(2027, 6, 3, 7)) == [
        shift(utc(2027, 6, 2, 7), utc(2027, 6, 2, 16), "tom", "temporary"),
        shift(utc(2027, 6, 2, 16), utc(2027, 6, 3, 7), "bob"),
    ]
    assert layer_on_call_at(tom, berlin(2027, 6, 2, 18)) is None
    assert layer_on_call_at(tom, berlin(2027, 6, 2, 17, 59)) == "tom"


def test_a_layer_is_empty_before_it_starts() -> None:
    later = Layer.of("primary", PRIMARY.versions[0].rotation, start=berlin(2027, 6, 2, 12))
    assert only(later, utc(2027, 6, 1, 7), utc(2027, 6, 3, 7)) == [
        shift(utc(2027, 6, 2, 10), utc(2027, 6, 3, 7), "bob")
    ]
    assert layer_on_call_at(later, berlin(2027, 6, 2, 11)) is None


# --- a rotation that changes -----------------------------------------------------------------


def test_a_daily_rotation_that_becomes_weekly_mid_month_ends_the_shift_in_progress() -> None:
    daily = make_rotation(("alice", "bob", "carol"), berlin(2027, 6, 1, 9))
    weekly = make_rotation(("dave", "erin"), berlin(2027, 6, 16, 12), RotationKind.WEEKLY)
    layer = Layer(
        "primary",
        (
            LayerVersion(berlin(2027, 6, 1, 9), daily),
            LayerVersion(berlin(2027, 6, 16, 12), weekly),
        ),
    )
    # 15 June is day 14 (carol); alice's turn from 16 June 09:00 is cut at the change at 12:00.
    assert only(layer, utc(2027, 6, 15, 7), utc(2027, 6, 23, 22)) == [
        shift(utc(2027, 6, 15, 7), utc(2027, 6, 16, 7), "carol"),
        shift(utc(2027, 6, 16, 7), utc(2027, 6, 16, 10), "alice"),
        shift(utc(2027, 6, 16, 10), utc(2027, 6, 23, 10), "dave"),
        shift(utc(2027, 6, 23, 10), utc(2027, 6, 23, 22), "erin"),
    ]
    schedule = Schedule((layer,))
    assert on_call_at(schedule, berlin(2027, 6, 16, 11, 59)) == "alice"
    assert on_call_at(schedule, berlin(2027, 6, 16, 12)) == "dave"


def test_a_version_in_effect_before_its_anchor_counts_its_turns_backwards() -> None:
    daily = make_rotation(("alice", "bob", "carol"), berlin(2027, 6, 1, 9))
    weekly = make_rotation(("dave", "erin"), berlin(2027, 6, 21, 9), RotationKind.WEEKLY)
    layer = Layer(
        "primary",
        (
            LayerVersion(berlin(2027, 6, 1, 9), daily),
            LayerVersion(berlin(2027, 6, 16, 12), weekly),
        ),
    )
    # dave's first turn is Monday 21 June; the turn before it is erin's, as in PagerDuty.
    assert only(layer, utc(2027, 6, 16, 10), utc(2027, 6, 28, 7)) == [
        shift(utc(2027, 6, 16, 10), utc(2027, 6, 21, 7), "erin"),
        shift(utc(2027, 6, 21, 7), utc(2027, 6, 28, 7), "dave"),
    ]


# --- who is on call, fast -----------------------------------------------------------------------


def count_handoffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = engine.handoff_at

    def counted(rotation: Rotation, index: int) -> dt.datetime:
        calls[0] += 1
        return real(rotation, index)

    monkeypatch.setattr(engine, "handoff_at", counted)
    return calls


def test_who_is_on_call_ten_years_after_the_anchor_is_computed_not_counted(monkeypatch) -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2017, 1, 2, 9))
    schedule = Schedule((make_layer("primary", rotation),))
    # 2017-01-02 to 2027-01-04 is 3,652 + 2 = 3,654 days (2020 and 2024 leap): 3 * 1,218.
    assert on_call_at(schedule, berlin(2027, 1, 4, 12)) == "alice"
    assert on_call_at(schedule, berlin(2027, 1, 4, 8, 59)) == "carol"
    calls = count_handoffs(monkeypatch)
    moments = random.Random(14)
    for _ in range(10_000):
        on_call_at(schedule, utc(2027, 1, 1) + moments.randrange(365 * 24 * 60) * MINUTE)
    # Enumerating from the anchor would look at some 3,700 handoffs per question.
    assert calls[0] <= 3 * 10_000


def test_a_week_of_schedule_ten_years_on_looks_at_about_a_week_of_handoffs(monkeypatch) -> None:
    rotation = make_rotation(("alice", "bob", "carol"), berlin(2017, 1, 2, 9))
    calls = count_handoffs(monkeypatch)
    shifts = only(make_layer("primary", rotation), utc(2027, 1, 4), utc(2027, 1, 11))
    assert len(shifts) == 8
    # At most 3 to find the first turn, then the 9 handoffs bounding the 8 shifts.
    assert calls[0] <= 3 + 9


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Rotation((), RotationKind.DAILY, 1, berlin(2027, 1, 1), BERLIN), "participants"),
        (
            lambda: Rotation(("a", ""), RotationKind.DAILY, 1, berlin(2027, 1, 1), BERLIN),
            "participants",
        ),
        (lambda: Rotation(("a",), RotationKind.DAILY, 0, berlin(2027, 1, 1), BERLIN), "every"),
        (lambda: Rotation(("a",), RotationKind.CUSTOM, -12, berlin(2027, 1, 1), BERLIN), "every"),
        (
            lambda: Rotation(("a",), cast(RotationKind, "monthly"), 1, berlin(2027, 1, 1), BERLIN),
            "kind",
        ),
        (
            lambda: Rotation(("a",), RotationKind.DAILY, 1, dt.datetime(2027, 1, 1, 9), BERLIN),
            "anchor",
        ),
        (
            lambda: Rotation(("a",), RotationKind.DAILY, 1, berlin(2027, 1, 1), "Europe/Atlantis"),
            "time_zone",
        ),
        (lambda: Restriction(0, dt.time(9), 0, dt.time(9)), "end_time"),
        (lambda: Restriction(7, dt.time(9), 0, dt.time(17)), "start_weekday"),
        (lambda: daily_restrictions(dt.time(9), dt.time(9)), "end"),
        (lambda: Override(utc(2027, 1, 2), utc(2027, 1, 1), "a"), "end"),
        (lambda: Override(dt.datetime(2027, 1, 1), utc(2027, 1, 2), "a"), "start"),
        (lambda: Override(utc(2027, 1, 1), utc(2027, 1, 2), ""), "user"),
        (lambda: Layer("primary", ()), "versions"),
        (lambda: Layer.of("", PRIMARY.versions[0].rotation, start=LONG_AGO), "name"),
        (lambda: Layer.of("override", PRIMARY.versions[0].rotation, start=LONG_AGO), "name"),
        (
            lambda: Layer.of("p", PRIMARY.versions[0].rotation, start=dt.datetime(2027, 1, 1)),
            "effective_from",
        ),
        (
            lambda: Layer.of("p", PRIMARY.versions[0].rotation, start=LONG_AGO, until=LONG_AGO),
            "until",
        ),
        (lambda: Schedule((PRIMARY, PRIMARY)), "layers"),
        (lambda: final_schedule(Schedule(), start=utc(2027, 1, 2), end=utc(2027, 1, 1)), "end"),
        (lambda: on_call_at(Schedule((PRIMARY,)), dt.datetime(2027, 1, 1)), "at"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(build, field) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        build()


def test_versions_must_take_effect_in_order() -> None:
    rotation = PRIMARY.versions[0].rotation
    with pytest.raises(ValueError, match=r"^versions: "):
        Layer(
            "p", (LayerVersion(utc(2027, 2, 1), rotation), LayerVersion(utc(2027, 1, 1), rotation))
        )


# --- properties ----------------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"]
BASE = dt.datetime(2026, 10, 1)  # naive: local wall times are drawn from here
MINUTES_IN_A_YEAR = 366 * 24 * 60


def minutes_after_base(maximum: int = MINUTES_IN_A_YEAR) -> st.SearchStrategy[dt.timedelta]:
    return st.integers(min_value=0, max_value=maximum).map(lambda minutes: minutes * MINUTE)


@st.composite
def restrictions(draw: st.DrawFn) -> Restriction:
    start = draw(st.integers(0, 7 * 24 * 4 - 1)) * dt.timedelta(minutes=15)
    length = draw(st.integers(1, 7 * 24 * 4 - 1)) * dt.timedelta(minutes=15)
    end = (start + length) % dt.timedelta(days=7)
    return Restriction(
        start.days,
        (dt.datetime.min + (start % dt.timedelta(days=1))).time(),
        end.days,
        (dt.datetime.min + (end % dt.timedelta(days=1))).time(),
    )


@st.composite
def rotations(draw: st.DrawFn, restricted: bool = True) -> Rotation:
    kind = draw(st.sampled_from(list(RotationKind)))
    every = draw(
        st.integers(1, 3)
        if kind in (RotationKind.DAILY, RotationKind.WEEKLY)
        else st.integers(1, 30)
    )
    zone = draw(st.sampled_from(ZONES))
    # Wall fields kept as drawn, so anchors in a gap or a fold are drawn too.
    anchor = (BASE + draw(minutes_after_base())).replace(tzinfo=ZoneInfo(zone))
    participants = tuple(draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4)))
    limits = tuple(draw(st.lists(restrictions(), max_size=2))) if restricted else ()
    return Rotation(participants, kind, every, anchor, zone, limits)


def instant(offset: dt.timedelta) -> dt.datetime:
    return BASE.replace(tzinfo=dt.UTC) + offset


@st.composite
def layers(draw: st.DrawFn, name: str) -> Layer:
    starts = sorted(set(draw(st.lists(minutes_after_base(), min_size=1, max_size=3))))
    versions = tuple(LayerVersion(instant(start), draw(rotations())) for start in starts)
    until = draw(st.none() | st.integers(1, 60 * 24 * 60).map(lambda m: m * MINUTE))
    return Layer(name, versions, None if until is None else instant(starts[-1] + until))


@st.composite
def overrides(draw: st.DrawFn) -> Override:
    start = draw(minutes_after_base())
    length = draw(st.integers(1, 3 * 24 * 60)) * MINUTE
    return Override(instant(start), instant(start + length), draw(st.sampled_from("abcdx")))


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    count = draw(st.integers(1, 3))
    return Schedule(
        tuple(draw(layers(f"layer {n}")) for n in range(count)),
        tuple(draw(st.lists(overrides(), max_size=3))),
    )


@st.composite
def ranges(draw: st.DrawFn) -> tuple[dt.datetime, dt.datetime]:
    start = draw(minutes_after_base())
    return instant(start), instant(start + draw(st.integers(1, 20 * 24 * 60)) * MINUTE)


def union(
    intervals: list[tuple[dt.datetime, dt.datetime]],
) -> list[tuple[dt.datetime, dt.datetime]]:
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def user_at(shifts: list[Shift], at: dt.datetime) -> str | None:
    return next((s.user for s in shifts if s.start <= at < s.end), None)


@settings(deadline=None, max_examples=150)
@given(schedules(), ranges())
def test_the_final_schedule_is_ordered_disjoint_and_covers_what_any_source_covers(
    schedule, window
) -> None:
    start, end = window
    shifts = final_schedule(schedule, start=start, end=end)
    assert all(start <= s.start and s.end <= end for s in shifts)
    for before, after in itertools.pairwise(shifts):
        assert before.end <= after.start
        # Merged: one person from one source is never cut in two.
        assert before.end < after.start or (before.user, before.layer) != (after.user, after.layer)
    covered = [
        (s.start, s.end)
        for layer in schedule.layers
        for s in layer_shifts(layer, start=start, end=end)
    ]
    covered += [
        (max(o.start, start), min(o.end, end))
        for o in schedule.overrides
        if o.start < end and o.end > start
    ]
    assert union([(s.start, s.end) for s in shifts]) == union(covered)


@settings(deadline=None, max_examples=150)
@given(schedules(), ranges(), st.data())
def test_who_is_on_call_at_any_time_agrees_with_the_final_schedule(schedule, window, data) -> None:
    start, end = window
    shifts = final_schedule(schedule, start=start, end=end)
    # The edges are where an off-by-one would hide: each start and the instant before each end.
    edges = [s.start for s in shifts] + [s.end - dt.timedelta(microseconds=1) for s in shifts]
    span_minutes = int((end - start) / MINUTE)
    drawn = [
        start + m * MINUTE
        for m in data.draw(st.lists(st.integers(0, span_minutes - 1), max_size=20))
    ]
    for at in [*edges, *drawn]:
        assert on_call_at(schedule, at) == user_at(shifts, at)


@settings(deadline=None, max_examples=150)
@given(rotations(restricted=False), ranges())
def test_a_single_unrestricted_layer_covers_the_whole_range(rotation, window) -> None:
    start, end = window
    shifts = final_schedule(Schedule((make_layer("only", rotation),)), start=start, end=end)
    assert union([(s.start, s.end) for s in shifts]) == [(start, end)]
    assert {s.user for s in shifts} <= set(rotation.participants)


def test_the_current_shift_says_who_since_when_until_when_and_from_which_layer() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rotation = Rotation(
        ("alice", "bob"),
        RotationKind.DAILY,
        1,
        dt.datetime(2027, 3, 1, 9, tzinfo=berlin),
        "Europe/Berlin",
    )
    primary = Layer.of("primary", rotation, start=dt.datetime(2027, 3, 1, tzinfo=dt.UTC))
    schedule = Schedule((primary,))
    # 08:00 on the day of the spring change: alice's turn began at 09:00 CET the day before and
    # ends at 09:00 CEST, 23 hours later.
    shift = current_shift(schedule, dt.datetime(2027, 3, 28, 8, 0, tzinfo=berlin))
    assert shift == Shift(
        dt.datetime(2027, 3, 27, 8, 0, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 28, 7, 0, tzinfo=dt.UTC),
        "alice",
        "primary",
    )
    # An override in force is the current shift, with its own bounds.
    covered = Schedule(
        (primary,),
        (
            Override(
                dt.datetime(2027, 3, 28, 5, 0, tzinfo=dt.UTC),
                dt.datetime(2027, 3, 28, 6, 30, tzinfo=dt.UTC),
                "carol",
            ),
        ),
    )
    assert current_shift(covered, dt.datetime(2027, 3, 28, 6, 0, tzinfo=dt.UTC)) == Shift(
        dt.datetime(2027, 3, 28, 5, 0, tzinfo=dt.UTC),
        dt.datetime(2027, 3, 28, 6, 30, tzinfo=dt.UTC),
        "carol",
        OVERRIDE_LAYER,
    )
    # Before the layer starts nobody is on call.
    assert current_shift(schedule, dt.datetime(2027, 2, 1, tzinfo=dt.UTC)) is None
    # A turn longer than the reach is cut at it.
    cut = current_shift(
        schedule, dt.datetime(2027, 3, 28, 8, 0, tzinfo=berlin), reach=dt.timedelta(hours=2)
    )
    assert cut is not None and cut.user == "alice"
    assert cut.start == dt.datetime(2027, 3, 28, 4, 0, tzinfo=dt.UTC)
    assert cut.end == dt.datetime(2027, 3, 28, 7, 0, tzinfo=dt.UTC)
