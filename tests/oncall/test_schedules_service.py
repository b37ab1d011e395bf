"""Schedules through the service, on both databases: who is on call across both clock changes in
two zones, a weekday-hours restriction over a round-the-clock layer, a rotation that changes its
length, overrides, imported calendars, who may change what, and refusals that name the field
and change nothing. Also the engine's fixed layers, which imported calendars become."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from lamplighter.core import outbound
from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry
from lamplighter.oncall import calendars, on_duty, schedules
from lamplighter.oncall import schedule as engine
from lamplighter.oncall.models import OnCallImportedShift, OnCallSchedule
from lamplighter.oncall.schedule_schemas import OverrideCreate, ScheduleCreate, ScheduleUpdate
from lamplighter.oncall.shifts import Shift
from tests.oncall import schedule_fixtures
from tests.oncall.schedule_fixtures import BERLIN, NEW_YORK, Org, actor_of, local, rotation, utc

org = schedule_fixtures.org


def audit_actions(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(AuditEntry.action)
                .where(AuditEntry.action.like("schedule.%"))
                .order_by(AuditEntry.id)
            )
        )


def turn_length(found: on_duty.OnCallNow) -> dt.timedelta:
    assert found.since is not None and found.until is not None
    return found.until - found.since


def stored(db: Database, schedule_id: int) -> dict[str, Any]:
    with db.sessionmaker() as session:
        row = session.get(OnCallSchedule, schedule_id)
        assert row is not None
        return schedules.snapshot(row)


# -- the engine's fixed layers (imported calendars) ----------------------------------------------


def test_a_fixed_layer_gives_the_later_of_two_overlapping_shifts_then_the_earlier_again() -> None:
    week = Shift(utc(2027, 3, 1, 9), utc(2027, 3, 8, 9), "ada")
    swap = Shift(utc(2027, 3, 3, 9), utc(2027, 3, 4, 9), "bo")
    later = Shift(utc(2027, 3, 10), utc(2027, 3, 11), "cy")
    layer = engine.FixedLayer("vendor", (later, swap, week))  # any order
    assert [(s.user, s.start, s.end) for s in layer.pieces] == [
        ("ada", utc(2027, 3, 1, 9), utc(2027, 3, 3, 9)),
        ("bo", utc(2027, 3, 3, 9), utc(2027, 3, 4, 9)),
        ("ada", utc(2027, 3, 4, 9), utc(2027, 3, 8, 9)),
        ("cy", utc(2027, 3, 10), utc(2027, 3, 11)),
    ]
    assert engine.layer_on_call_at(layer, utc(2027, 3, 3, 12)) == "bo"
    assert engine.layer_on_call_at(layer, utc(2027, 3, 9)) is None  # a gap
    clipped = engine.layer_shifts(layer, start=utc(2027, 3, 7), end=utc(2027, 3, 10, 12))
    assert [(s.user, s.start, s.end) for s in clipped] == [
        ("ada", utc(2027, 3, 7), utc(2027, 3, 8, 9)),
        ("cy", utc(2027, 3, 10), utc(2027, 3, 10, 12)),
    ]


def test_a_rotation_above_a_fixed_layer_shows_it_through_its_restricted_hours() -> None:
    nights = engine.FixedLayer("vendor", (Shift(utc(2027, 6, 1), utc(2027, 6, 8), "vendor"),))
    days = engine.Layer.of(
        "staff",
        engine.Rotation(
            ("ada",),
            engine.RotationKind.DAILY,
            1,
            utc(2027, 6, 1, 9),
            "UTC",
            engine.daily_restrictions(dt.time(9), dt.time(17)),
        ),
        start=utc(2027, 6, 1),
    )
    whole = engine.Schedule((nights, days))
    assert engine.on_call_at(whole, utc(2027, 6, 2, 10)) == "ada"
    assert engine.on_call_at(whole, utc(2027, 6, 2, 20)) == "vendor"
    assert engine.on_call_at(whole, utc(2027, 6, 9, 10)) == "ada"  # the calendar has ended
    assert engine.on_call_at(whole, utc(2027, 6, 9, 20)) is None


# -- who is on call across clock changes ---------------------------------------------------------


def test_a_daily_berlin_rotation_hands_over_at_nine_local_across_both_clock_changes(
    org: Org,
) -> None:
    """Handoffs at 09:00 Berlin time: 08:00 UTC in winter, 07:00 UTC in summer. The Saturday
    shift before spring-forward lasts 23 hours, the one before fall-back 25."""
    people = org.people
    schedule = org.schedule(
        [rotation("primary", people, start=local(BERLIN, 2027, 3, 1, 9))], time_zone=BERLIN
    )

    def on_day(day: dt.date) -> str:  # the turn of a day: days since 1 March, in turn
        return org.name_of(people[(day - dt.date(2027, 3, 1)).days % 3])

    saturday, sunday = dt.date(2027, 3, 27), dt.date(2027, 3, 28)
    assert org.on_call(schedule.id, utc(2027, 3, 27, 7, 59)) == [on_day(dt.date(2027, 3, 26))]
    assert org.on_call(schedule.id, utc(2027, 3, 27, 8, 0)) == [on_day(saturday)]
    # Spring forward: Sunday's 09:00 is 07:00 UTC, an hour earlier than Saturday's.
    assert org.on_call(schedule.id, utc(2027, 3, 28, 6, 59)) == [on_day(saturday)]
    assert org.on_call(schedule.id, utc(2027, 3, 28, 7, 0)) == [on_day(sunday)]
    # Fall back: Sunday's 09:00 is 08:00 UTC again, an hour later than Saturday's.
    autumn_saturday, autumn_sunday = dt.date(2027, 10, 30), dt.date(2027, 10, 31)
    assert org.on_call(schedule.id, utc(2027, 10, 30, 7, 0)) == [on_day(autumn_saturday)]
    assert org.on_call(schedule.id, utc(2027, 10, 31, 7, 30)) == [on_day(autumn_saturday)]
    assert org.on_call(schedule.id, utc(2027, 10, 31, 8, 0)) == [on_day(autumn_sunday)]
    with org.db.sessionmaker() as session:
        (spring,) = on_duty.who_is_on_call(
            session, schedule_id=schedule.id, at=utc(2027, 3, 27, 12)
        )
        (autumn,) = on_duty.who_is_on_call(
            session, schedule_id=schedule.id, at=utc(2027, 10, 30, 12)
        )
    assert (spring.since, spring.until) == (utc(2027, 3, 27, 8), utc(2027, 3, 28, 7))
    assert turn_length(spring) == dt.timedelta(hours=23)
    assert turn_length(autumn) == dt.timedelta(hours=25)


def test_a_weekly_new_york_rotation_hands_over_monday_nine_local_across_both_clock_changes(
    org: Org,
) -> None:
    """Mondays 09:00 New York: 14:00 UTC in winter, 13:00 UTC in summer; the week holding a
    change is 167 or 169 hours long, and who is on call is right in the hour between."""
    schedule = org.schedule(
        [rotation("primary", org.people, kind="weekly", start=local(NEW_YORK, 2027, 1, 4, 9))],
        time_zone=NEW_YORK,
    )
    # 4 Jan is week 0 (Ada); 8 March week 9 (Ada); 15 March week 10 (Bo).
    assert org.on_call(schedule.id, utc(2027, 3, 15, 12, 59)) == ["ada"]
    assert org.on_call(schedule.id, utc(2027, 3, 15, 13, 0)) == ["bo"]  # 09:00 EDT
    # 1 November is week 43 (Bo), 8 November week 44 (Cy): 09:00 EST is 14:00 UTC.
    assert org.on_call(schedule.id, utc(2027, 11, 8, 13, 30)) == ["bo"]
    assert org.on_call(schedule.id, utc(2027, 11, 8, 14, 0)) == ["cy"]
    with org.db.sessionmaker() as session:
        (march,) = on_duty.who_is_on_call(session, schedule_id=schedule.id, at=utc(2027, 3, 12))
        (november,) = on_duty.who_is_on_call(session, schedule_id=schedule.id, at=utc(2027, 11, 5))
    assert (march.display_name, march.since, march.until) == (
        "Ada",
        utc(2027, 3, 8, 14),
        utc(2027, 3, 15, 13),
    )
    assert turn_length(march) == dt.timedelta(hours=167)
    assert turn_length(november) == dt.timedelta(hours=169)


def test_weekday_office_hours_over_a_round_the_clock_layer(org: Org) -> None:
    """Cy covers weekdays 09:00-17:00 Berlin time; Ada and Bo rotate weekly underneath and show
    through in the evenings, at night and at weekends."""
    office = {"weekdays": [0, 1, 2, 3, 4], "start_time": "09:00", "end_time": "17:00"}
    schedule = org.schedule(
        [
            rotation(
                "round-the-clock",
                [org.ada.id, org.bo.id],
                kind="weekly",
                start=local(BERLIN, 2027, 5, 31, 9),
            ),
            rotation(
                "office",
                [org.cy.id],
                start=local(BERLIN, 2027, 5, 31, 9),
                restrictions=[office],
            ),
        ],
        time_zone=BERLIN,
    )
    tuesday = (2027, 6, 1)  # CEST: 09:00 local is 07:00 UTC
    assert org.on_call(schedule.id, local(BERLIN, *tuesday, 9, 0)) == ["cy"]
    assert org.on_call(schedule.id, local(BERLIN, *tuesday, 16, 59)) == ["cy"]
    assert org.on_call(schedule.id, local(BERLIN, *tuesday, 17, 0)) == ["ada"]
    assert org.on_call(schedule.id, local(BERLIN, *tuesday, 8, 59)) == ["ada"]
    assert org.on_call(schedule.id, local(BERLIN, 2027, 6, 5, 12)) == ["ada"]  # Saturday
    assert org.on_call(schedule.id, local(BERLIN, 2027, 6, 8, 12)) == ["cy"]  # next Tuesday
    assert org.on_call(schedule.id, local(BERLIN, 2027, 6, 8, 20)) == ["bo"]  # Bo's week
    # In winter the same hours are an hour later in UTC.
    assert org.on_call(schedule.id, utc(2027, 12, 7, 7, 30)) != ["cy"]
    assert org.on_call(schedule.id, utc(2027, 12, 7, 8, 30)) == ["cy"]
    stored_office = stored(org.db, schedule.id)["layers"][1]["versions"][0]["restrictions"]
    assert len(stored_office) == 5 and stored_office[0] == {
        "start_weekday": 0,
        "start_time": "09:00",
        "end_weekday": 0,
        "end_time": "17:00",
    }


def test_a_rotation_that_changes_length_hands_over_by_its_new_length_from_then(org: Org) -> None:
    """Daily turns until Monday 7 June, weekly turns from then, counted from the new anchor."""
    layer = {
        "name": "primary",
        "versions": [
            {
                "effective_from": utc(2027, 6, 1, 9).isoformat(),
                "participants": org.people,
                "kind": "daily",
            },
            {
                "effective_from": utc(2027, 6, 7, 9).isoformat(),
                "participants": [org.cy.id, org.ada.id],
                "kind": "weekly",
            },
        ],
    }
    schedule = org.schedule([layer])
    assert org.on_call(schedule.id, utc(2027, 6, 1, 10)) == ["ada"]
    assert org.on_call(schedule.id, utc(2027, 6, 2, 10)) == ["bo"]
    assert org.on_call(schedule.id, utc(2027, 6, 7, 8)) == ["cy"]  # 6 June: the last daily turn
    assert org.on_call(schedule.id, utc(2027, 6, 7, 9)) == ["cy"]  # the first weekly turn
    assert org.on_call(schedule.id, utc(2027, 6, 13, 20)) == ["cy"]
    assert org.on_call(schedule.id, utc(2027, 6, 14, 9)) == ["ada"]
    with org.db.sessionmaker() as session:
        (found,) = on_duty.who_is_on_call(session, schedule_id=schedule.id, at=utc(2027, 6, 10))
    # The daily turn of 6 June and the first weekly one are Cy's: one stretch of 8 days.
    assert (found.since, found.until) == (utc(2027, 6, 6, 9), utc(2027, 6, 14, 9))


# -- overrides -----------------------------------------------------------------------------------


def test_an_override_wins_over_every_layer_and_deleting_it_gives_the_turn_back(org: Org) -> None:
    schedule = org.schedule([rotation("primary", [org.ada.id], start=utc(2027, 6, 1))])
    override_id = org.override(schedule.id, org.bo, utc(2027, 6, 3, 18), utc(2027, 6, 4, 6))
    assert org.on_call(schedule.id, utc(2027, 6, 3, 17, 59)) == ["ada"]
    assert org.on_call(schedule.id, utc(2027, 6, 3, 18)) == ["bo"]
    with org.db.sessionmaker() as session:
        (now,) = on_duty.who_is_on_call(session, schedule_id=schedule.id, at=utc(2027, 6, 4))
    assert (now.display_name, now.layer, now.since, now.until) == (
        "Bo",
        "override",
        utc(2027, 6, 3, 18),
        utc(2027, 6, 4, 6),
    )
    lead = actor_of(org.db, org.ada)
    with org.db.transaction() as session:
        schedules.delete_override(
            session=session, actor=lead, schedule_id=schedule.id, override_id=override_id
        )
    assert org.on_call(schedule.id, utc(2027, 6, 3, 18)) == ["ada"]
    assert audit_actions(org.db) == [
        "schedule.create",
        "schedule.override_create",
        "schedule.override_delete",
    ]


# -- who may change a schedule ---------------------------------------------------------------


def test_the_team_writes_while_a_viewer_and_an_outsider_are_refused_and_change_nothing(
    org: Org,
) -> None:
    schedule = org.schedule([rotation("primary", [org.ada.id], start=utc(2027, 6, 1))])
    before = stored(org.db, schedule.id)
    rename = ScheduleUpdate(name="renamed")
    cover = OverrideCreate(
        user_id=org.outsider.id, starts_at=utc(2027, 6, 2), ends_at=utc(2027, 6, 3)
    )
    for user in (org.viewer, org.outsider):
        actor = actor_of(org.db, user)
        with org.db.sessionmaker() as session:
            for attempt in (
                lambda: schedules.update(
                    session=session, actor=actor, schedule_id=schedule.id, data=rename
                ),
                lambda: schedules.create_override(
                    session=session, actor=actor, schedule_id=schedule.id, data=cover
                ),
                lambda: schedules.delete(session=session, actor=actor, schedule_id=schedule.id),
                lambda: calendars.rotate_feed_token(
                    session=session, actor=actor, schedule_id=schedule.id
                ),
            ):
                with pytest.raises(Forbidden, match="only members of the owning team"):
                    attempt()
            create = ScheduleCreate(team=org.team.slug, name="mine")
            with pytest.raises(Forbidden):
                schedules.create(session=session, actor=actor, data=create)
    assert stored(org.db, schedule.id) == before
    assert audit_actions(org.db) == ["schedule.create"]

    for user in (org.bo, org.sre):  # a member of the team, an SRE of none
        with org.db.transaction() as session:
            schedules.update(
                session=session,
                actor=actor_of(org.db, user),
                schedule_id=schedule.id,
                data=ScheduleUpdate(description=f"kept by {user.email}"),
            )
    assert stored(org.db, schedule.id)["description"] == "kept by sre@example.com"
    with org.db.transaction() as session:
        schedules.delete(session=session, actor=actor_of(org.db, org.cy), schedule_id=schedule.id)
    assert audit_actions(org.db) == [
        "schedule.create",
        "schedule.update",
        "schedule.update",
        "schedule.delete",
    ]


# -- refusals name the field and change nothing ----------------------------------------------


def test_naive_times_and_unknown_zones_are_refused_naming_the_field() -> None:
    naive = {
        "team": "t",
        "name": "n",
        "layers": [
            {
                "name": "primary",
                "versions": [
                    {"effective_from": "2027-06-01T09:00:00", "participants": [1], "kind": "daily"}
                ],
            }
        ],
    }
    with pytest.raises(ValidationError) as refused:
        ScheduleCreate.model_validate(naive)
    (error,) = refused.value.errors()
    assert error["loc"] == ("layers", 0, "versions", 0, "effective_from")
    assert "timezone" in error["msg"]
    with pytest.raises(ValidationError) as zone:
        ScheduleCreate.model_validate({"team": "t", "name": "n", "time_zone": "Europe/Atlantis"})
    assert zone.value.errors()[0]["loc"] == ("time_zone",)
    assert "'Europe/Atlantis' is not an IANA time zone" in zone.value.errors()[0]["msg"]
    with pytest.raises(ValidationError) as backwards:
        OverrideCreate(user_id=1, starts_at=utc(2027, 6, 2), ends_at=utc(2027, 6, 1))
    assert backwards.value.errors()[0]["loc"] == ("ends_at",)
    assert "an override ends after it starts" in backwards.value.errors()[0]["msg"]


def test_unknown_people_and_engine_rules_are_refused_naming_each_field(org: Org) -> None:
    empty_weekend = {
        "start_weekday": 4,
        "start_time": "18:00",
        "end_weekday": 4,
        "end_time": "18:00",
    }
    layers = [
        rotation("primary", [org.ada.id, 999_999], start=utc(2027, 6, 1)),
        rotation("primary", [org.bo.id], start=utc(2027, 6, 1), restrictions=[empty_weekend]),
        {
            "name": "ends-too-soon",
            "until": utc(2027, 5, 1).isoformat(),
            "versions": [
                {
                    "effective_from": utc(2027, 6, 1).isoformat(),
                    "participants": [org.cy.id],
                    "kind": "hourly",
                }
            ],
        },
    ]
    with org.db.sessionmaker() as session, pytest.raises(ValidationFailed) as refused:
        schedules.create(
            session=session,
            actor=actor_of(org.db, org.ada),
            data=ScheduleCreate.model_validate(
                {"team": org.team.slug, "name": "x", "layers": layers}
            ),
        )
    errors = {(e.field, e.reason) for e in refused.value.errors}
    assert ("body.layers.0.versions.0.participants", "no user with id 999999") in errors
    assert ("body.layers.1.name", "another layer is named 'primary'") in errors
    assert (
        "body.layers.1.versions.0.restrictions.0.end_time",
        "the restriction Friday 18:00 to Friday 18:00 is empty",
    ) in errors
    assert (
        "body.layers.2.until",
        "a layer ends after its last version takes effect",
    ) in errors
    with pytest.raises(ValidationError, match="a weekly rotation hands off at most every 53"):
        ScheduleCreate.model_validate(
            {
                "team": "t",
                "name": "n",
                "layers": [rotation("p", [1], kind="weekly", every=60, start=utc(2027, 1, 1))],
            }
        )
    with org.db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(OnCallSchedule)) == 0
        with pytest.raises(ValidationFailed, match="no team with slug 'nobody'"):
            schedules.create(
                session=session,
                actor=actor_of(org.db, org.ada),
                data=ScheduleCreate(team="nobody", name="x"),
            )


def test_a_second_schedule_of_the_same_name_in_the_team_is_a_conflict(org: Org) -> None:
    org.schedule([], name="primary")
    with org.db.sessionmaker() as session, pytest.raises(Conflict, match="named 'primary'"):
        schedules.create(
            session=session,
            actor=actor_of(org.db, org.ada),
            data=ScheduleCreate(team=org.team.slug, name="primary"),
        )
    org.schedule([], name="primary", team=org.other_team.slug)  # another team may


# -- importing calendars ---------------------------------------------------------------------

CALENDAR = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Vendor//Rota//EN\r
BEGIN:VEVENT\r
UID:week-1@vendor\r
DTSTART:20270601T090000Z\r
DTEND:20270608T090000Z\r
SUMMARY:On call\r
ATTENDEE;CN=Bo:mailto:BO@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:broken@vendor\r
DTSTART:20270610T090000Z\r
DTEND:20270609T090000Z\r
ATTENDEE:mailto:cy@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:stranger@vendor\r
DTSTART:20270612T090000Z\r
DTEND:20270613T090000Z\r
ATTENDEE:mailto:stranger@elsewhere.example\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:week-2@vendor\r
DTSTART:20270608T090000Z\r
DTEND:20270615T090000Z\r
SUMMARY:On call: Cy\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_an_imported_calendar_becomes_a_layer_naming_what_it_left_out(org: Org) -> None:
    schedule = org.schedule([rotation("primary", [org.ada.id], start=utc(2027, 1, 1))])
    lead = actor_of(org.db, org.ada)
    with org.db.transaction() as session:
        outcome = calendars.import_ics(
            session=session,
            actor=lead,
            schedule_id=schedule.id,
            layer="vendor",
            text=CALENDAR,
            source="upload",
            now=utc(2027, 5, 20),
        )
    assert outcome.imported_shifts == 2
    reasons = [str(problem) for problem in outcome.problems]
    assert "event broken@vendor: its DTEND is before its DTSTART" in reasons
    assert "nobody here is 'stranger@elsewhere.example': 1 shift(s) left out" in reasons
    # The imported layer is on top of the rotation: Bo (by e-mail, any case), then Cy (by name).
    assert org.on_call(schedule.id, utc(2027, 6, 2)) == ["bo"]
    assert org.on_call(schedule.id, utc(2027, 6, 9)) == ["cy"]
    assert org.on_call(schedule.id, utc(2027, 6, 20)) == ["ada"]  # the rotation shows through
    assert [layer["name"] for layer in stored(org.db, schedule.id)["layers"]] == [
        "primary",
        "vendor",
    ]

    again = CALENDAR.replace("BO@example.com", "ada@example.com")
    with org.db.transaction() as session:
        calendars.import_ics(
            session=session,
            actor=lead,
            schedule_id=schedule.id,
            layer="vendor",
            text=again,
            source="upload",
            now=utc(2027, 5, 20),
        )
        count = session.scalar(sa.select(sa.func.count()).select_from(OnCallImportedShift))
    assert count == 2  # replaced, not added to
    assert org.on_call(schedule.id, utc(2027, 6, 2)) == ["ada"]

    with org.db.sessionmaker() as session:
        with pytest.raises(ValidationFailed) as nothing:
            calendars.import_ics(
                session=session,
                actor=lead,
                schedule_id=schedule.id,
                layer="vendor",
                text="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                source="upload",
            )
        assert nothing.value.errors[0].field == "body.content"
        assert "the file holds no events" in nothing.value.errors[0].reason
        with pytest.raises(ValidationFailed, match="'primary' is a rotation layer"):
            calendars.import_ics(
                session=session,
                actor=lead,
                schedule_id=schedule.id,
                layer="primary",
                text=CALENDAR,
                source="upload",
            )
    assert org.on_call(schedule.id, utc(2027, 6, 2)) == ["ada"]
    assert audit_actions(org.db).count("schedule.import_ics") == 2

    # A schedule's layers given again without the imported one drop its shifts.
    layers = stored(org.db, schedule.id)["layers"][:1]
    with org.db.transaction() as session:
        schedules.update(
            session=session,
            actor=lead,
            schedule_id=schedule.id,
            data=ScheduleUpdate.model_validate({"layers": layers}),
        )
        count = session.scalar(sa.select(sa.func.count()).select_from(OnCallImportedShift))
    assert count == 0 and org.on_call(schedule.id, utc(2027, 6, 9)) == ["ada"]


def test_a_calendar_url_is_fetched_through_the_outbound_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        served.append(str(request.url))
        if request.url.path == "/big.ics":
            return httpx.Response(200, content=b"x" * 5000)
        return httpx.Response(200, text=CALENDAR)

    monkeypatch.setattr(outbound, "RESOLVER", lambda host, port: ["93.184.216.34"])
    transport = httpx.MockTransport(answer)
    policy = outbound.Policy()
    text = calendars.fetch_calendar(
        "webcal://calendars.example.com/rota.ics", policy=policy, transport=transport
    )
    assert "UID:week-1@vendor" in text
    assert served == ["https://calendars.example.com/rota.ics"]
    with pytest.raises(ValidationFailed) as internal:
        calendars.fetch_calendar("http://127.0.0.1/rota.ics", policy=policy, transport=transport)
    assert internal.value.errors[0].field == "body.url"
    assert "refused by the outbound policy" in internal.value.errors[0].reason
    with pytest.raises(ValidationFailed, match="larger than 1,000 bytes"):
        calendars.fetch_calendar(
            "https://calendars.example.com/big.ics",
            policy=policy,
            transport=transport,
            max_bytes=1000,
        )
    with pytest.raises(ValidationFailed, match="absolute http, https or webcal URL"):
        calendars.fetch_calendar("file:///etc/passwd", policy=policy, transport=transport)
    assert len(served) == 2  # the refused ones were never sent
