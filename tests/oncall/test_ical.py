"""iCalendar feeds of on-call shifts, and shifts imported from calendar exports."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import icalendar
import pytest

from lamplighter.oncall.ical import MAX_IMPORT_BYTES, from_ics, to_ics
from lamplighter.oncall.shifts import Shift

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ical"
UTC = dt.UTC
STAMP = dt.datetime(2024, 3, 1, 12, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=UTC)


def make_shift(user: str, start: dt.datetime, days: int = 7, layer: str | None = None) -> Shift:
    return Shift(start, start + dt.timedelta(days=days), user, layer)


def make_ics(*events: str, header: str = "") -> str:
    """A calendar around hand-written VEVENT bodies (one property a line, LF or CRLF)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Test//Test//EN"]
    lines += [line for line in header.strip().splitlines() if line.strip()]
    for event in events:
        lines += ["BEGIN:VEVENT", *[line.strip() for line in event.strip().splitlines()]]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def read_fixture(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def as_tuples(shifts: list[Shift]) -> list[tuple[str, dt.datetime, dt.datetime]]:
    return [(s.user, s.start, s.end) for s in shifts]


# --- export ---------------------------------------------------------------------------------

AWKWARD_NAMES = {
    "comma": "Doe, Jane",
    "semicolon": "ops;admin",
    "backslash": "DOMAIN\\jdoe",
    "accents": "Zoë Ångström-Øster",
    "emoji": "Ravi 🚒🧯👩🏽‍🚒",
    "newline": "two\nlines",
    "cjk": "山田太郎",
    "very-long": "Maximiliane Théodora " * 12,
}


def test_feed_is_read_back_by_icalendar_with_the_same_events():
    shifts = [
        make_shift("alice@example.com", utc(2024, 3, 4, 8)),
        make_shift("bob", utc(2024, 3, 11, 8)),
    ]
    text = to_ics(
        shifts, calendar_name="Payments", names={"bob": "Bob Builder"}, generated_at=STAMP
    )

    calendar = icalendar.Calendar.from_ical(text)
    calendar.validate()
    assert calendar["VERSION"] == "2.0"
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["CALSCALE"] == "GREGORIAN"
    assert calendar["X-WR-CALNAME"] == "Payments"
    assert calendar["X-PUBLISHED-TTL"] == "PT1H"
    assert calendar.refresh_interval == dt.timedelta(hours=1)
    events = calendar.walk("VEVENT")
    assert [(e.decoded("DTSTART"), e.decoded("DTEND"), str(e["SUMMARY"])) for e in events] == [
        (utc(2024, 3, 4, 8), utc(2024, 3, 11, 8), "On call: alice@example.com (Payments)"),
        (utc(2024, 3, 11, 8), utc(2024, 3, 18, 8), "On call: Bob Builder (Payments)"),
    ]
    assert all(e["TRANSP"] == "TRANSPARENT" for e in events)
    assert all(e.DTSTAMP == STAMP for e in events)
    assert "DTSTART:20240304T080000Z\r\n" in text  # UTC, not a TZID


@pytest.mark.parametrize("name", AWKWARD_NAMES.values(), ids=AWKWARD_NAMES.keys())
def test_awkward_names_survive_the_feed(name):
    shift = make_shift("user-1", utc(2024, 3, 4, 8))
    calendar_name = f"Team {name}"
    text = to_ics([shift], calendar_name=calendar_name, names={"user-1": name})

    calendar = icalendar.Calendar.from_ical(text)
    calendar.validate()
    for component in calendar.walk():
        assert component.errors == []
    (event,) = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == f"On call: {name} ({calendar_name})"
    # RFC 5545 3.1: CRLF lines of at most 75 octets, each valid UTF-8 on its own.
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    for line in text.encode("utf-8").split(b"\r\n")[:-1]:
        assert len(line) <= 75
        line.decode("utf-8")


def test_a_long_line_is_folded_at_75_octets_without_splitting_a_character():
    name = "é" * 100  # two octets each: a fold at an odd octet would cut one in half
    text = to_ics([make_shift("u", utc(2024, 3, 4))], calendar_name="C", names={"u": name})

    summary_lines = text.split("SUMMARY:")[1].split("\r\nTRANSP")[0].split("\r\n")
    assert len(summary_lines) > 2
    assert all(line.startswith(" ") for line in summary_lines[1:])
    assert all(len(line.encode()) <= 75 for line in summary_lines)
    assert "".join(line.removeprefix(" ") for line in summary_lines) == f"On call: {name} (C)"


def test_uids_are_stable_across_exports_and_distinct_between_shifts():
    first = make_shift("alice", utc(2024, 3, 4, 8))
    second = make_shift("alice", utc(2024, 3, 11, 8))

    def uids(shifts, **kwargs):
        text = to_ics(shifts, calendar_name="Payments", **kwargs)
        return [str(e["UID"]) for e in icalendar.Calendar.from_ical(text).walk("VEVENT")]

    monday = uids([first, second], generated_at=STAMP)
    # A later fetch, a changed display name and a longer shift keep the event a calendar knows.
    later = uids(
        [Shift(first.start, first.end + dt.timedelta(hours=2), "alice"), second],
        generated_at=STAMP + dt.timedelta(days=1),
        names={"alice": "Alice A."},
    )
    assert monday == later
    assert len(set(monday)) == 2
    assert all(uid.endswith("@lamplighter") for uid in monday)
    assert uids([first], uid_domain="oncall.example.com")[0].endswith("@oncall.example.com")
    assert uids([first])[0] != uids([Shift(first.start, first.end, "bob")])[0]


def test_two_shifts_of_one_user_starting_together_get_distinct_uids():
    start = utc(2024, 3, 4, 8)
    shifts = [make_shift("alice", start, layer="primary"), make_shift("alice", start, 1, "backup")]

    calendar = icalendar.Calendar.from_ical(to_ics(shifts, calendar_name="Alice's on-call"))

    assert len({str(e["UID"]) for e in calendar.walk("VEVENT")}) == 2


def test_an_empty_schedule_gives_a_readable_feed_without_events():
    calendar = icalendar.Calendar.from_ical(to_ics([], calendar_name="Quiet"))

    assert calendar["X-WR-CALNAME"] == "Quiet"
    assert calendar.walk("VEVENT") == []


def test_shifts_in_another_zone_are_written_in_utc():
    berlin = dt.datetime(2024, 7, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    text = to_ics([make_shift("alice", berlin)], calendar_name="C")

    assert "DTSTART:20240701T070000Z\r\n" in text


# --- round trip -----------------------------------------------------------------------------


def test_a_feed_imported_back_gives_the_same_shifts():
    users = ["alice@example.com", *AWKWARD_NAMES.values()]
    shifts = [
        make_shift(user, utc(2024, 3, 4, 8) + dt.timedelta(days=7 * i))
        for i, user in enumerate(users)
    ]
    text = to_ics(shifts, calendar_name="Payments, EU; primary", names={"alice@example.com": "A"})

    result = from_ics(text, start=utc(2024, 1, 1), end=utc(2025, 1, 1))

    assert "X-WR-CALNAME:Payments\\, EU\\; primary\r\n" in text  # TEXT, escaped
    assert result.problems == []
    assert result.shifts == sorted(shifts)


# --- import: real-world exports -------------------------------------------------------------


def test_google_calendar_export_with_rotation_exception_override_and_all_day_event():
    text = read_fixture("google-payments-oncall.ics")

    result = from_ics(text, start=utc(2024, 1, 1), end=utc(2024, 6, 1))

    assert result.problems == []
    alice, bob = "alice@example.com", "bob@example.com"
    assert as_tuples(result.shifts) == [
        # Handoffs Mondays 09:00 Berlin (08:00 UTC in winter), Alice and Bob in turn.
        (alice, utc(2024, 1, 8, 8), utc(2024, 1, 15, 8)),
        (bob, utc(2024, 1, 15, 8), utc(2024, 1, 22, 8)),
        (alice, utc(2024, 1, 22, 8), utc(2024, 1, 29, 8)),
        (bob, utc(2024, 1, 29, 8), utc(2024, 2, 5, 8)),
        # 5 February: Alice's week removed by EXDATE.
        (bob, utc(2024, 2, 12, 8), utc(2024, 2, 19, 8)),
        # 19 February: the occurrence moved to Carol (RECURRENCE-ID; Alice declined).
        ("carol@example.com", utc(2024, 2, 19, 8), utc(2024, 2, 26, 8)),
        (bob, utc(2024, 2, 26, 8), utc(2024, 3, 4, 8)),
        (alice, utc(2024, 3, 4, 8), utc(2024, 3, 11, 8)),
        (bob, utc(2024, 3, 11, 8), utc(2024, 3, 18, 8)),
        (alice, utc(2024, 3, 18, 8), utc(2024, 3, 25, 8)),
        # The cancelled day of Erin is absent; Dave's all-day event is a Berlin day
        # (X-WR-TIMEZONE), named by its summary.
        ("Dave", utc(2024, 4, 30, 22), utc(2024, 5, 1, 22)),
    ]
    assert all(s.layer is None for s in result.shifts)


def test_outlook_export_with_windows_zone_names_organizer_and_all_day_event():
    text = read_fixture("outlook-platform-oncall.ics")

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert as_tuples(result.shifts) == [
        # New York changes to summer time on 10 March: the Monday 09:00 handoff stays 09:00,
        # so the first week is an hour shorter in UTC. 11 March is excluded (EXDATE); COUNT=3.
        ("grace@contoso.com", utc(2024, 3, 4, 14), utc(2024, 3, 11, 13)),
        ("grace@contoso.com", utc(2024, 3, 18, 13), utc(2024, 3, 25, 13)),
        # No attendee and no zone for the all-day event: its summary, a UTC day.
        ("Ivan", utc(2024, 3, 29), utc(2024, 3, 30)),
        # No attendee: the organizer.
        ("heidi@contoso.com", utc(2024, 3, 30, 13), utc(2024, 3, 30, 21)),
    ]
    assert [(p.event, p.reason) for p in result.problems] == [
        (
            "040000008200E00074C5B7101A82E00800000000E5F60718293A4B5C6D7E8F90A1B2C3D"
            "4E5F60718293A4B5C",
            "it is an all-day event and the file names no time zone; its days were read in UTC",
        )
    ]


@pytest.mark.parametrize(
    ("first_monday", "utc_hours"),
    [
        # Europe/Berlin springs forward on 31 March 2024 and falls back on 27 October.
        (dt.date(2024, 3, 25), [8, 7, 7]),
        (dt.date(2024, 10, 21), [7, 8, 8]),
    ],
    ids=["spring", "autumn"],
)
def test_weekly_handoff_at_nine_berlin_moves_in_utc_across_dst(first_monday, utc_hours):
    start = first_monday.strftime("%Y%m%dT090000")
    end = (first_monday + dt.timedelta(days=7)).strftime("%Y%m%dT090000")
    text = make_ics(
        f"""
        UID:weekly@example.com
        DTSTART;TZID=Europe/Berlin:{start}
        DTEND;TZID=Europe/Berlin:{end}
        RRULE:FREQ=WEEKLY;BYDAY=MO
        SUMMARY:On call: Alice
        """
    )

    result = from_ics(
        text,
        start=utc(2024, 1, 1),
        end=dt.datetime.combine(first_monday, dt.time(), UTC) + dt.timedelta(days=21),
    )

    assert result.problems == []
    assert [s.start.hour for s in result.shifts] == utc_hours
    assert [s.start.date() for s in result.shifts] == [
        first_monday + dt.timedelta(days=7 * i) for i in range(3)
    ]
    # Each shift ends when the next begins: nobody is left uncovered for the hour.
    assert all(a.end == b.start for a, b in zip(result.shifts, result.shifts[1:], strict=False))


# --- import: the forms of a time ------------------------------------------------------------


def test_duration_utc_floating_and_date_values():
    text = make_ics(
        """
        UID:duration
        DTSTART:20240304T080000Z
        DURATION:P1DT12H
        SUMMARY:On call: Duration Dora
        """,
        """
        UID:floating
        DTSTART:20240305T090000
        DTEND:20240305T170000
        SUMMARY:On-call: Floating Fred
        """,
        """
        UID:all-day
        DTSTART;VALUE=DATE:20240306
        SUMMARY:Daisy
        """,
        header="X-WR-TIMEZONE:America/New_York",
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert as_tuples(result.shifts) == [
        ("Duration Dora", utc(2024, 3, 4, 8), utc(2024, 3, 5, 20)),
        # Floating times and dates are read in the calendar's X-WR-TIMEZONE (EST, UTC-5).
        ("Floating Fred", utc(2024, 3, 5, 14), utc(2024, 3, 5, 22)),
        ("Daisy", utc(2024, 3, 6, 5), utc(2024, 3, 7, 5)),  # a DATE without DTEND: one day
    ]
    assert result.problems == []


def test_floating_times_without_a_zone_are_read_as_utc_and_said_so():
    text = make_ics(
        """
        UID:floating
        DTSTART:20240305T090000
        DTEND:20240305T170000
        SUMMARY:Fred
        """,
        """
        UID:nowhere
        DTSTART;TZID=Mars/Olympus_Mons:20240306T090000
        DTEND;TZID=Mars/Olympus_Mons:20240306T170000
        SUMMARY:Marvin
        """,
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert as_tuples(result.shifts) == [
        ("Fred", utc(2024, 3, 5, 9), utc(2024, 3, 5, 17)),
        ("Marvin", utc(2024, 3, 6, 9), utc(2024, 3, 6, 17)),
    ]
    assert [str(p) for p in result.problems] == [
        "event floating: its times name no time zone, nor does the file; they were read in UTC",
        "event nowhere: its time zone 'Mars/Olympus_Mons' is unknown; its times were read in UTC",
    ]


def test_shifts_are_clipped_to_the_window():
    text = make_ics(
        """
        UID:long
        DTSTART:20240225T000000Z
        DTEND:20240310T000000Z
        ATTENDEE;CN=Alice:mailto:alice@example.com
        """,
        """
        UID:outside
        DTSTART:20240401T000000Z
        DTEND:20240402T000000Z
        SUMMARY:Bob
        """,
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 3, 8))

    assert as_tuples(result.shifts) == [("alice@example.com", utc(2024, 3, 1), utc(2024, 3, 8))]


def test_a_moved_occurrence_replaces_its_original_and_until_ends_the_series():
    text = make_ics(
        """
        UID:daily
        DTSTART:20240304T080000Z
        DTEND:20240304T200000Z
        RRULE:FREQ=DAILY;UNTIL=20240306T080000Z
        SUMMARY:On call: Alice
        """,
        """
        UID:daily
        RECURRENCE-ID:20240305T080000Z
        DTSTART:20240305T100000Z
        DTEND:20240305T220000Z
        SUMMARY:On call: Bob
        """,
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert as_tuples(result.shifts) == [
        ("Alice", utc(2024, 3, 4, 8), utc(2024, 3, 4, 20)),
        ("Bob", utc(2024, 3, 5, 10), utc(2024, 3, 5, 22)),
        ("Alice", utc(2024, 3, 6, 8), utc(2024, 3, 6, 20)),
    ]


# --- import: bad events and bad files -------------------------------------------------------


def test_odd_events_are_reported_by_uid_and_the_rest_imported():
    text = make_ics(
        """
        UID:no-start
        DTEND:20240305T170000Z
        SUMMARY:Nora
        """,
        """
        UID:backwards
        DTSTART:20240305T170000Z
        DTEND:20240305T090000Z
        SUMMARY:Bert
        """,
        """
        UID:broken-start
        DTSTART:2024-03-05 nine o'clock
        DTEND:20240305T170000Z
        SUMMARY:Bea
        """,
        """
        UID:never
        DTSTART:20240305T090000Z
        DTEND:20240305T170000Z
        RRULE:FREQ=DAILY;UNTIL=20240101T000000Z
        SUMMARY:Nev
        """,
        """
        UID:nobody
        DTSTART:20240305T090000Z
        DTEND:20240305T170000Z
        """,
        """
        UID:instant
        DTSTART:20240305T090000Z
        SUMMARY:Ian
        """,
        """
        DTSTART:20240306T090000Z
        DTEND:20240306T170000Z
        SUMMARY:On call: Good Gwen
        """,
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert as_tuples(result.shifts) == [("Good Gwen", utc(2024, 3, 6, 9), utc(2024, 3, 6, 17))]
    reasons = {p.event: p.reason for p in result.problems}
    assert set(reasons) == {"no-start", "backwards", "broken-start", "never", "nobody", "instant"}
    assert reasons["no-start"] == "it has no DTSTART"
    assert reasons["backwards"] == "its DTEND is before its DTSTART"
    assert "DTSTART" in reasons["broken-start"]
    assert reasons["never"] == "its RRULE produces no occurrence"
    assert reasons["nobody"] == "it names nobody (no ATTENDEE, ORGANIZER or SUMMARY)"
    assert reasons["instant"] == "it has neither DTEND nor DURATION, so it lasts no time"


def test_an_event_without_uid_is_named_by_its_position():
    text = make_ics(
        "DTSTART:20240306T090000Z\nDTEND:20240306T170000Z\nSUMMARY:Ok",
        "DTSTART:20240306T090000Z\nDTEND:20240305T170000Z\nSUMMARY:Backwards",
    )

    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1))

    assert [str(p) for p in result.problems] == ["event #2: its DTEND is before its DTSTART"]


def test_endless_minutely_rule_is_skipped_at_max_events_and_the_rest_imported():
    text = make_ics(
        """
        UID:bomb@example.com
        DTSTART:20240304T000000Z
        DURATION:PT1M
        RRULE:FREQ=MINUTELY
        SUMMARY:Mallory
        """,
        """
        UID:real@example.com
        DTSTART:20240305T090000Z
        DTEND:20240306T090000Z
        SUMMARY:Alice
        """,
    )

    started = time.perf_counter()
    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 4, 1), max_events=1000)

    assert time.perf_counter() - started < 10
    assert as_tuples(result.shifts) == [("Alice", utc(2024, 3, 5, 9), utc(2024, 3, 6, 9))]
    assert [str(p) for p in result.problems] == [
        "event bomb@example.com: it repeats more than 1000 times between 20240301T000000Z "
        "and 20240401T000000Z; skipped"
    ]


def test_a_rule_repeating_for_decades_before_the_window_is_stopped_quickly():
    # Walked to the window, this series would be 12 million occurrences (about a minute).
    text = make_ics(
        """
        UID:old-bomb@example.com
        DTSTART:20000101T000000Z
        DURATION:PT1M
        RRULE:FREQ=MINUTELY
        SUMMARY:Mallory
        """
    )

    started = time.perf_counter()
    result = from_ics(text, start=utc(2024, 3, 1), end=utc(2024, 3, 8))

    assert time.perf_counter() - started < 10
    assert result.shifts == []
    assert [p.event for p in result.problems] == ["old-bomb@example.com"]
    assert "more than 50000 times before 20240301T000000Z" in result.problems[0].reason


def test_the_import_returns_at_most_max_events_shifts():
    events = [
        f"UID:day-{day}\nDTSTART:202403{day:02d}T090000Z\nDTEND:202403{day:02d}T170000Z\nSUMMARY:P"
        for day in range(1, 6)
    ]

    result = from_ics(make_ics(*events), start=utc(2024, 3, 1), end=utc(2024, 4, 1), max_events=3)

    assert len(result.shifts) == 3
    assert [str(p) for p in result.problems] == [
        "the file has more than 3 shifts in the window; the import stopped at event day-4"
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the file holds no VCALENDAR"),
        ("this is not a calendar\r\n", "the file is not iCalendar"),
        ("<html><body>404 Not Found</body></html>", "the file is not iCalendar"),
        (
            "BEGIN:VEVENT\r\nDTSTART:20240101T000000Z\r\nEND:VEVENT\r\n",
            "the file holds no VCALENDAR",
        ),
        ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\n", "the file holds no VCALENDAR"),
        ("BEGIN:VCALENDAR\r\nEND:VEVENT\r\n", "the file holds no events"),
        ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "the file holds no events"),
    ],
    ids=["empty", "prose", "html", "bare-event", "truncated", "mismatched", "no-events"],
)
def test_unreadable_files_give_one_problem_and_no_exception(text, reason):
    result = from_ics(text, start=utc(2024, 1, 1), end=utc(2025, 1, 1))

    assert result.shifts == []
    assert len(result.problems) == 1
    assert result.problems[0].event is None
    assert result.problems[0].reason.startswith(reason)


def test_files_over_two_mebibytes_are_refused():
    event = "DTSTART:20240306T090000Z\nDTEND:20240306T170000Z\nSUMMARY:" + "x" * 60
    text = make_ics(*[event] * (MAX_IMPORT_BYTES // 100))
    assert len(text.encode()) > MAX_IMPORT_BYTES

    result = from_ics(text, start=utc(2024, 1, 1), end=utc(2025, 1, 1))

    assert result.shifts == []
    assert [str(p) for p in result.problems] == ["the file is larger than 2 MiB"]


def test_a_window_without_time_zone_is_a_programming_error():
    with pytest.raises(ValueError, match="time zone"):
        from_ics("", start=dt.datetime(2024, 1, 1), end=utc(2024, 2, 1))
