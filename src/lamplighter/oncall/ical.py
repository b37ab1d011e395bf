"""iCalendar (RFC 5545) for on-call: a feed of shifts out, shifts in from an ``.ics`` file.

The export is written by hand, by the RFC, so that the bytes a calendar app fetches are ours to
reason about (line folding, escaping, stable UIDs); the tests read it back with the
``icalendar`` library. The import leans on that library to parse whatever Google Calendar,
Outlook and the rest produce, and on dateutil to expand recurrences, within a window and a budget.

Decisions the import takes, so that a user reading a problem list can predict them:

- **Time zones.** ``TZID`` names a ``VTIMEZONE`` in the file, an IANA zone or a Windows zone name
  (the library resolves all three). Floating times and all-day ``DATE`` values are read in the
  calendar's ``X-WR-TIMEZONE`` when it names a known zone, else in UTC, and then each such event
  gets a problem saying so (the shifts are still imported). An unknown ``TZID`` is treated the
  same way.
- **Recurrences** repeat at the same wall-clock time in the event's zone, so a weekly 09:00
  Europe/Berlin handoff moves by an hour in UTC across a DST change. The length of each
  occurrence is the wall-clock length of the first when ``DTEND`` is in the same zone as
  ``DTSTART`` (a shift from Monday 09:00 to Monday 09:00 stays that), and ``DURATION`` is
  nominal for days and exact for hours, as RFC 5545 says.
- **Budgets.** An event with more than ``max_events`` occurrences inside the window is skipped
  whole, with a problem: a series cut short would claim the rest of the window has nobody on call.
  Expanding a series also stops after ``10 * max_events`` occurrences before the window (a
  minutely rule from years ago), and the whole import after ``40 * max_events``. The import
  returns at most ``max_events`` shifts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

# dateutil (a dependency of icalendar) ships no type information; types-python-dateutil would.
from dateutil.rrule import rrule, rruleset, rrulestr  # type: ignore[import-untyped,unused-ignore]

from lamplighter.oncall.shifts import Shift

__all__ = ["MAX_IMPORT_BYTES", "ImportResult", "Problem", "from_ics", "to_ics"]

UTC = dt.UTC
PRODID = "-//Lamplighter//On-call schedules//EN"
# Calendar apps poll a subscribed feed; an hour keeps a handoff change visible the same morning
# without every client fetching every few minutes.
REFRESH_INTERVAL = "PT1H"
MAX_IMPORT_BYTES = 2 * 1024 * 1024
# The property our own feeds carry the user's id in, so that a feed imported back gives the same
# users even when they are not email addresses. Calendar apps ignore X- properties.
USER_PROPERTY = "X-LAMPLIGHTER-USER"

_FOLD_OCTETS = 75
_STEPS_BEFORE_WINDOW_FACTOR = 10
_STEPS_PER_IMPORT_FACTOR = 40
_ON_CALL_PREFIX = re.compile(r"^\s*on[\s-]?call\s*:\s*", re.IGNORECASE)
# TEXT may hold any character but the controls (RFC 5545 3.3.11); HTAB is allowed.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TEXT_ESCAPE = re.compile(r"\\([\\;,nN])")
_TEXT_UNESCAPED = {"\\": "\\", ";": ";", ",": ",", "n": "\n", "N": "\n"}


# --- export ---------------------------------------------------------------------------------


def to_ics(
    shifts: Sequence[Shift],
    *,
    calendar_name: str,
    uid_domain: str = "lamplighter",
    names: Mapping[str, str] | None = None,
    generated_at: dt.datetime | None = None,
    source_of: Callable[[Shift], str] | None = None,
) -> str:
    """Write ``shifts`` as an iCalendar feed, one event per shift, in UTC.

    ``names`` maps a shift's user to the name shown in the event's summary (the user itself when
    missing). ``generated_at`` (default: now) becomes every event's DTSTAMP; pass a fixed time to
    get byte-identical feeds for identical schedules (ETags, tests). ``source_of`` names where a
    shift comes from in its summary and UID (default: ``calendar_name``): a person's own feed
    gathers the shifts of several schedules, each shown with its schedule's name.

    >>> start = dt.datetime(2024, 3, 4, 8, tzinfo=dt.UTC)
    >>> shift = Shift(start, start + dt.timedelta(days=7), "alice")
    >>> feed = to_ics([shift], calendar_name="Payments")
    >>> "SUMMARY:On call: alice (Payments)" in feed
    True
    """
    stamp = _utc_text(generated_at if generated_at is not None else dt.datetime.now(UTC))
    display_names = names or {}
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape_text(calendar_name)}",
        f"NAME:{escape_text(calendar_name)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{REFRESH_INTERVAL}",
        f"X-PUBLISHED-TTL:{REFRESH_INTERVAL}",
    ]
    used_uids: set[str] = set()
    for shift in sorted(set(shifts)):
        source = source_of(shift) if source_of is not None else calendar_name
        uid = _shift_uid(shift, calendar_name=source, uid_domain=uid_domain)
        if uid in used_uids:
            # The same user starting two shifts at once (two layers in a per-user feed): UIDs
            # must be unique within a calendar, so the second takes its end and layer too.
            uid = _shift_uid(shift, calendar_name=source, uid_domain=uid_domain, full=True)
        used_uids.add(uid)
        display_name = display_names.get(shift.user, shift.user)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{escape_text(uid)}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_utc_text(shift.start)}",
            f"DTEND:{_utc_text(shift.end)}",
            f"SUMMARY:{escape_text(f'On call: {display_name} ({source})')}",
            "TRANSP:TRANSPARENT",
            f"{USER_PROPERTY}:{escape_text(shift.user)}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold_line(line) + "\r\n" for line in lines)


def escape_text(value: str) -> str:
    """Escape ``value`` as an RFC 5545 TEXT value (backslash, semicolon, comma, newlines)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    value = value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")
    return _CONTROL_CHARACTERS.sub("", value)


def fold_line(line: str) -> str:
    """Fold a content line at 75 octets, never inside a UTF-8 character (RFC 5545 3.1)."""
    if len(line.encode("utf-8")) <= _FOLD_OCTETS:
        return line
    parts: list[str] = []
    current: list[str] = []
    current_octets = 0
    limit = _FOLD_OCTETS
    for character in line:
        octets = len(character.encode("utf-8"))
        if current_octets + octets > limit:
            parts.append("".join(current))
            current, current_octets = [], 0
            limit = _FOLD_OCTETS - 1  # a continuation line starts with one space
        current.append(character)
        current_octets += octets
    parts.append("".join(current))
    return "\r\n ".join(parts)


def _utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _shift_uid(shift: Shift, *, calendar_name: str, uid_domain: str, full: bool = False) -> str:
    parts = [calendar_name, shift.user, shift.start.astimezone(UTC).isoformat()]
    if full:
        parts += [shift.end.astimezone(UTC).isoformat(), shift.layer or ""]
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"{digest}@{uid_domain}"


# --- import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why an event (or the whole file, when ``event`` is None) was not imported as it stood.

    ``event`` is the event's UID, or its position in the file ("#3") when it has none."""

    event: str | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.event is None else f"event {self.event}: {self.reason}"


@dataclass(frozen=True)
class ImportResult:
    shifts: list[Shift] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Skip(Exception):
    """The event cannot be imported; the message is the reason shown to the user."""


@dataclass
class _Budget:
    max_events: int
    steps_left: int
    shifts_left: int


@dataclass(frozen=True)
class _Moment:
    """A DTSTART-like value as wall-clock time in a zone, the way recurrences count."""

    local: dt.datetime  # naive wall-clock time in ``zone``
    zone: dt.tzinfo
    is_date: bool
    assumed_zone: bool  # floating, all-day or an unknown TZID: read in the fallback zone

    def utc(self) -> dt.datetime:
        return _local_to_utc(self.local, self.zone)


def from_ics(
    text: str, *, start: dt.datetime, end: dt.datetime, max_events: int = 5000
) -> ImportResult:
    """Read the shifts of an iCalendar file that fall within [start, end), clipped to it.

    Never raises for a bad file: every event that cannot be read is left out with a problem.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the import window needs a time zone")
    if end <= start:
        raise ValueError("the import window ends after it starts")
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    window = (start.astimezone(UTC), end.astimezone(UTC))

    # len() counts characters, never more than the UTF-8 octets: skip encoding a huge text.
    if len(text) > MAX_IMPORT_BYTES or len(text.encode("utf-8")) > MAX_IMPORT_BYTES:
        return ImportResult(problems=[Problem(None, "the file is larger than 2 MiB")])
    try:
        components = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception as error:  # the parser's errors are not all ValueErrors; none may escape
        return ImportResult(problems=[Problem(None, f"the file is not iCalendar: {error}")])
    calendars = [c for c in components if c.name == "VCALENDAR"]
    if not calendars:
        return ImportResult(problems=[Problem(None, "the file holds no VCALENDAR")])

    if not any(calendar.walk("VEVENT") for calendar in calendars):
        return ImportResult(problems=[Problem(None, "the file holds no events")])
    result = ImportResult()
    budget = _Budget(
        max_events=max_events,
        steps_left=_STEPS_PER_IMPORT_FACTOR * max_events,
        shifts_left=max_events,
    )
    position = 0
    for calendar in calendars:
        fallback_zone, fallback_name = _fallback_zone(calendar)
        events: list[tuple[str, icalendar.Component]] = []
        for event in calendar.walk("VEVENT"):
            position += 1
            uid = str(event.get("UID", "")).strip()
            events.append((uid or f"#{position}", event))
        if not _import_events(events, window, fallback_zone, fallback_name, budget, result):
            break
    result.shifts.sort()
    return result


def _import_events(
    events: list[tuple[str, icalendar.Component]],
    window: tuple[dt.datetime, dt.datetime],
    fallback_zone: dt.tzinfo,
    fallback_name: str | None,
    budget: _Budget,
    result: ImportResult,
) -> bool:
    """Import one calendar's events; False when the import's budget ran out."""
    overrides: dict[str, dict[dt.datetime, tuple[str, icalendar.Component]]] = {}
    masters: list[tuple[str, icalendar.Component]] = []
    for label, event in events:
        try:
            recurrence_id = event.get("RECURRENCE-ID")
            if recurrence_id is None:
                masters.append((label, event))
                continue
            original = _moment(recurrence_id, fallback_zone, "RECURRENCE-ID").utc()
        except _Skip as skip:
            result.problems.append(Problem(label, str(skip)))
            continue
        except Exception as error:  # one odd event must not stop the import
            result.problems.append(Problem(label, _reason(error)))
            continue
        # Several versions of one occurrence: the highest SEQUENCE is the latest edit.
        known = overrides.setdefault(label, {})
        previous = known.get(original)
        if previous is None or _sequence(event) >= _sequence(previous[1]):
            known[original] = (label, event)

    # A moved occurrence replaces its original, so the series skips the RECURRENCE-IDs; an
    # occurrence whose series is not in the file stands on its own.
    single_events = [pair for by_time in overrides.values() for pair in by_time.values()]
    for label, event in [*masters, *single_events]:
        is_override = event.get("RECURRENCE-ID") is not None
        replaced = set() if is_override else set(overrides.get(label, {}))
        try:
            shifts = _event_shifts(
                event,
                label=label,
                window=window,
                fallback_zone=fallback_zone,
                fallback_name=fallback_name,
                replaced=replaced,
                expand=not is_override,
                budget=budget,
                problems=result.problems,
            )
        except _Skip as skip:
            result.problems.append(Problem(label, str(skip)))
            if budget.steps_left <= 0:
                result.problems.append(
                    Problem(None, "the import stopped: its recurrences took too many steps")
                )
                return False
            continue
        except Exception as error:  # one odd event must not stop the import
            result.problems.append(Problem(label, _reason(error)))
            continue
        if len(shifts) > budget.shifts_left:
            result.problems.append(
                Problem(
                    None,
                    f"the file has more than {budget.max_events} shifts in the window; "
                    f"the import stopped at event {label}",
                )
            )
            return False
        budget.shifts_left -= len(shifts)
        result.shifts.extend(shifts)
    return True


def _event_shifts(
    event: icalendar.Component,
    *,
    label: str,
    window: tuple[dt.datetime, dt.datetime],
    fallback_zone: dt.tzinfo,
    fallback_name: str | None,
    replaced: set[dt.datetime],
    expand: bool,
    budget: _Budget,
    problems: list[Problem],
) -> list[Shift]:
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return []
    if event.get("DTSTART") is None:
        raise _Skip("it has no DTSTART")
    first = _moment(event["DTSTART"], fallback_zone, "DTSTART")
    nominal, exact = _length(event, first, fallback_zone)
    user = _person(event)

    has_recurrence = expand and any(event.get(name) is not None for name in ("RRULE", "RDATE"))
    if has_recurrence:
        occurrences, may_end_early = _recurrence(event, first, fallback_zone, window)
    else:
        occurrences, may_end_early = iter([first.local]), False

    window_start, window_end = window
    shifts: list[Shift] = []
    produced_any = False
    steps_before_window = 0
    for local in occurrences:
        produced_any = True
        budget.steps_left -= 1
        if budget.steps_left < 0:
            raise _Skip("its recurrence was not expanded: the import's budget is spent")
        occurrence_start = _local_to_utc(local, first.zone)
        if occurrence_start >= window_end:
            break
        if occurrence_start in replaced:
            continue
        occurrence_end = _local_to_utc(local + nominal, first.zone) + exact
        if occurrence_end <= window_start:
            steps_before_window += 1
            if steps_before_window > _STEPS_BEFORE_WINDOW_FACTOR * budget.max_events:
                raise _Skip(
                    "it repeats more than "
                    f"{_STEPS_BEFORE_WINDOW_FACTOR * budget.max_events} times before "
                    f"{_utc_text(window_start)}; skipped"
                )
            continue
        if len(shifts) == budget.max_events:
            raise _Skip(
                f"it repeats more than {budget.max_events} times between "
                f"{_utc_text(window_start)} and {_utc_text(window_end)}; skipped"
            )
        shifts.append(
            Shift(max(occurrence_start, window_start), min(occurrence_end, window_end), user)
        )
    if has_recurrence and not produced_any and not may_end_early:
        raise _Skip("its RRULE produces no occurrence")
    if shifts and first.assumed_zone:
        reason = _assumed_zone_reason(event, first, fallback_name)
        if reason:
            problems.append(Problem(label, reason))
    return shifts


def _recurrence(
    event: icalendar.Component,
    first: _Moment,
    fallback_zone: dt.tzinfo,
    window: tuple[dt.datetime, dt.datetime],
) -> tuple[Iterator[dt.datetime], bool]:
    """The occurrences' wall-clock starts, in order; True when cut at the window's end."""
    # Expanding in naive wall-clock time keeps 09:00 at 09:00 across DST changes, and lets a
    # DATE UNTIL, a UTC one and a floating one meet the start on the same footing.
    horizon = window[1].astimezone(first.zone).replace(tzinfo=None) + dt.timedelta(days=2)
    series = rruleset()
    cut_at_horizon = False
    for recur in _as_list(event.get("RRULE")):
        without_until = icalendar.vRecur({k: v for k, v in recur.items() if k != "UNTIL"})
        rule_text: bytes = without_until.to_ical()  # type: ignore[no-untyped-call]
        try:
            rule: rrule = rrulestr(rule_text.decode("ascii"), dtstart=first.local)
        except (ValueError, TypeError) as error:
            raise _Skip(f"its RRULE cannot be read: {error}") from error
        until = _until(recur, first, fallback_zone)
        if "COUNT" not in recur:
            # Stop at the window: an endless rule would otherwise be walked to the year 9999.
            if until is None or until > horizon:
                until, cut_at_horizon = horizon, True
            rule = rule.replace(until=until)
        elif until is not None:
            raise _Skip("its RRULE has both COUNT and UNTIL")
        series.rrule(rule)
    for value in _date_values(event, "RDATE"):
        series.rdate(_moment(value, fallback_zone, "RDATE", zone=first.zone).local)
    for value in _date_values(event, "EXDATE"):
        excluded = _moment(value, fallback_zone, "EXDATE", zone=first.zone)
        if excluded.is_date and not first.is_date:
            # An all-day EXDATE on a timed series removes that day's occurrence.
            excluded_local = dt.datetime.combine(excluded.local.date(), first.local.time())
        else:
            excluded_local = excluded.local
        series.exdate(excluded_local)
    return iter(series), cut_at_horizon


def _until(recur: Any, first: _Moment, fallback_zone: dt.tzinfo) -> dt.datetime | None:
    values = recur.get("UNTIL")
    if not values:
        return None
    value = values[0]
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value
        return value.astimezone(first.zone).replace(tzinfo=None)
    # A DATE UNTIL includes that whole day.
    return dt.datetime.combine(value, dt.time.max)


def _moment(
    prop: Any, fallback_zone: dt.tzinfo, name: str, zone: dt.tzinfo | None = None
) -> _Moment:
    """Read a date or date-time property; ``zone`` is the series' zone for EXDATE/RDATE."""
    value = getattr(prop, "dt", None)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            target = zone or value.tzinfo
            return _Moment(value.astimezone(target).replace(tzinfo=None), target, False, False)
        return _Moment(value, zone or fallback_zone, False, zone is None)
    if isinstance(value, dt.date):
        return _Moment(dt.datetime.combine(value, dt.time()), zone or fallback_zone, True, True)
    raise _Skip(f"its {name} is not a date or date-time")


def _length(
    event: icalendar.Component, first: _Moment, fallback_zone: dt.tzinfo
) -> tuple[dt.timedelta, dt.timedelta]:
    """How long each occurrence lasts: a wall-clock part and an exact part."""
    if event.get("DTEND") is not None:
        last = _moment(event["DTEND"], fallback_zone, "DTEND")
        if last.zone is first.zone or last.zone == first.zone:
            nominal, exact = last.local - first.local, dt.timedelta()
        else:
            nominal, exact = dt.timedelta(), last.utc() - first.utc()
        if nominal + exact < dt.timedelta():
            raise _Skip("its DTEND is before its DTSTART")
    elif event.get("DURATION") is not None:
        duration = getattr(event["DURATION"], "dt", None)
        if not isinstance(duration, dt.timedelta):
            raise _Skip("its DURATION is not a duration")
        if duration < dt.timedelta():
            raise _Skip("its DURATION is negative")
        nominal = dt.timedelta(days=duration.days)
        exact = duration - nominal
    elif first.is_date:
        nominal, exact = dt.timedelta(days=1), dt.timedelta()  # RFC 5545 3.6.1
    else:
        raise _Skip("it has neither DTEND nor DURATION, so it lasts no time")
    if nominal + exact == dt.timedelta():
        raise _Skip("it ends when it starts, so it lasts no time")
    return nominal, exact


def _person(event: icalendar.Component) -> str:
    """Who is on call: our own user property, the first attendee, the organizer, the summary."""
    own_property = event.get(USER_PROPERTY)
    if own_property is not None:
        own = _unescape_text(own_property.to_ical().decode("utf-8"))
        if own.strip():
            return own  # exactly as exported: it is an id
    for attendee in _as_list(event.get("ATTENDEE")):
        params = getattr(attendee, "params", {})
        if str(params.get("PARTSTAT", "")).upper() == "DECLINED":
            continue
        email = _mailto(str(attendee))
        if email:
            return email
    organizer = event.get("ORGANIZER")
    if organizer is not None:
        email = _mailto(str(organizer))
        if email:
            return email
    summary = _ON_CALL_PREFIX.sub("", str(event.get("SUMMARY", ""))).strip()
    if summary:
        return summary
    raise _Skip("it names nobody (no ATTENDEE, ORGANIZER or SUMMARY)")


def _unescape_text(value: str) -> str:
    """Undo :func:`escape_text`; the library leaves X- properties as they were written."""
    return _TEXT_ESCAPE.sub(lambda match: _TEXT_UNESCAPED[match.group(1)], value)


def _mailto(address: str) -> str:
    address = address.strip()
    if address.lower().startswith("mailto:"):
        return address[len("mailto:") :].strip()
    return ""


def _fallback_zone(calendar: icalendar.Component) -> tuple[dt.tzinfo, str | None]:
    """The zone of the calendar's floating times: its X-WR-TIMEZONE, else UTC (named None)."""
    name = str(calendar.get("X-WR-TIMEZONE", "")).strip()
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC, None


def _assumed_zone_reason(
    event: icalendar.Component, first: _Moment, fallback_name: str | None
) -> str | None:
    """Why the user should check this event's times, or None when the calendar named its zone."""
    zone_name = fallback_name or "UTC"
    tzid = event["DTSTART"].params.get("TZID")
    if tzid:
        return f"its time zone {tzid!r} is unknown; its times were read in {zone_name}"
    if fallback_name is not None:
        return None  # floating and all-day times in the calendar's own X-WR-TIMEZONE
    if first.is_date:
        return "it is an all-day event and the file names no time zone; its days were read in UTC"
    return "its times name no time zone, nor does the file; they were read in UTC"


def _date_values(event: icalendar.Component, name: str) -> Iterator[Any]:
    for prop in _as_list(event.get(name)):
        for value in getattr(prop, "dts", []):
            if isinstance(getattr(value, "dt", None), tuple):
                continue  # an RDATE PERIOD: its own length, which a shift cannot carry
            yield value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sequence(event: icalendar.Component) -> int:
    try:
        return int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def _local_to_utc(local: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)


def _reason(error: Exception) -> str:
    return f"it cannot be read: {error}"
