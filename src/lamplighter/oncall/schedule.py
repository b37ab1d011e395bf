"""The on-call schedule maths: rotations, layers, restrictions, overrides and the final schedule.

Pure functions over times, no I/O. The model is PagerDuty's (Opsgenie and GoAlert agree on it):

- a **rotation** hands the pager from one participant to the next every ``every`` hours, days or
  weeks, counted from a handoff ``anchor`` in its IANA zone. Daily and weekly handoffs happen at
  the same local wall-clock time each time, so across a daylight saving change a daily shift is
  23 or 25 hours long; hourly and custom lengths are absolute durations. A local time in the
  spring-forward gap is taken as the first instant after the gap, an ambiguous one (fall back) as
  its first occurrence. Handoffs extend both ways from the anchor (PagerDuty's "virtual start"),
  so a layer may take effect before its rotation's anchor;
- **restrictions** clip a rotation to local time-of-week ranges (weekdays 09:00-17:00, every night
  22:00-06:00, Friday 18:00 to Monday 08:00); the turns go on being counted while it is inactive;
- a **layer** is a named rotation in effect from a start, optionally until an end. Its rotation
  may change over time: each version takes effect at its ``effective_from`` and ends where the next
  one begins, and counts its handoffs from its own anchor;
- a **fixed layer** is a named list of shifts that repeat nothing (those imported from a
  calendar): where two of them overlap, the one that started later holds the layer until it ends;
- **overrides** put someone on call for a range, on top of every layer.

The final schedule stacks the layers, later on top, the overrides above them all: at each instant
the highest source with someone on call wins, so a lower layer shows through where a higher one
is restricted or inactive. Gaps (nobody on call) are left out of the list: a ``Shift`` always has a
person. Consecutive pieces of one person from one source are merged; the same person reached
through two sources stays two shifts, so a timeline can show where each came from.

>>> berlin = ZoneInfo("Europe/Berlin")
>>> rotation = Rotation(("alice", "bob"), RotationKind.DAILY, 1,
...                     dt.datetime(2027, 3, 1, 9, tzinfo=berlin), "Europe/Berlin")
>>> primary = Layer.of("primary", rotation, start=dt.datetime(2027, 3, 1, tzinfo=dt.UTC))
>>> [(s.user, s.length / dt.timedelta(hours=1)) for s in final_schedule(
...     Schedule((primary,)), start=dt.datetime(2027, 3, 27, 8, tzinfo=dt.UTC),
...     end=dt.datetime(2027, 3, 29, 7, tzinfo=dt.UTC))]
[('alice', 23.0), ('bob', 24.0)]
>>> on_call_at(Schedule((primary,)), dt.datetime(2027, 3, 28, 8, 59, tzinfo=berlin))
'alice'
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lamplighter.oncall.shifts import Shift

OVERRIDE_LAYER = "override"
WEEKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
_WEEK = dt.timedelta(days=7)
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# (start, end, user): a half-open UTC interval and who is on call in it.
_Piece = tuple[dt.datetime, dt.datetime, str]
_Interval = tuple[dt.datetime, dt.datetime]


class RotationKind(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    CUSTOM = "custom"  # ``every`` hours, an absolute duration like hourly


def _require_aware(value: dt.datetime, field_name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field_name}: a naive datetime is ambiguous, give it a time zone")


def _require_range(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        raise ValueError(f"end: a range ends after it starts ({start} to {end})")
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _zone(key: str, field_name: str = "time_zone") -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{field_name}: unknown time zone {key!r}") from error


def resolve_local(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Return the UTC instant of a local wall-clock reading (gap: its end; fold: the first)."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        # fold=0 is the offset before a change: in a fall-back fold that is the first occurrence.
        return instant
    # In a gap fold=1 lands before the change and fold=0 after it; the change itself, the first
    # instant after the gap, lies between. Zones change offset on whole seconds: bisect on them.
    before = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    after = math.ceil(instant.timestamp())
    offset_after = instant.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return dt.datetime.fromtimestamp(after, dt.UTC)


@dataclass(frozen=True)
class Restriction:
    """A local time-of-week range in which a rotation is active.

    From ``start_weekday`` (0 = Monday) at ``start_time`` to the next ``end_weekday`` at
    ``end_time``, so Friday 18:00 to Monday 08:00 is one restriction across the weekend. Use
    ``daily_restrictions`` for the same hours on several days (weekdays 09:00-17:00).
    """

    start_weekday: int
    start_time: dt.time
    end_weekday: int
    end_time: dt.time

    def __post_init__(self) -> None:
        for name in ("start_weekday", "end_weekday"):
            day = getattr(self, name)
            if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                raise ValueError(f"{name}: a weekday is 0 (Monday) to 6 (Sunday), not {day!r}")
        for name in ("start_time", "end_time"):
            if getattr(self, name).tzinfo is not None:
                raise ValueError(f"{name}: a restriction is in the rotation's local time")
        if self.length == dt.timedelta(0):
            raise ValueError(f"end_time: the restriction {self} is empty")

    @functools.cached_property
    def start_offset(self) -> dt.timedelta:
        """Return the wall-clock time from Monday 00:00 to the start."""
        return _week_offset(self.start_weekday, self.start_time)

    @functools.cached_property
    def length(self) -> dt.timedelta:
        """Return the wall-clock length, less than a week (the clock change not counted)."""
        return (_week_offset(self.end_weekday, self.end_time) - self.start_offset) % _WEEK

    def __str__(self) -> str:
        start = f"{_DAY_NAMES[self.start_weekday]} {self.start_time:%H:%M}"
        return f"{start} to {_DAY_NAMES[self.end_weekday]} {self.end_time:%H:%M}"


def _week_offset(weekday: int, time: dt.time) -> dt.timedelta:
    return dt.timedelta(
        days=weekday,
        hours=time.hour,
        minutes=time.minute,
        seconds=time.second,
        microseconds=time.microsecond,
    )


def daily_restrictions(
    start: dt.time, end: dt.time, *, weekdays: Iterable[int] = EVERY_DAY
) -> tuple[Restriction, ...]:
    """Return one restriction per weekday from ``start`` to ``end`` (the next day if earlier)."""
    if start == end:
        raise ValueError(f"end: a daily restriction from {start} to {end} is empty")
    crosses_midnight = end < start
    return tuple(
        Restriction(day, start, (day + 1) % 7 if crosses_midnight else day, end)
        for day in sorted(set(weekdays))
    )


@dataclass(frozen=True)
class Rotation:
    """Participants taking turns, the first from the local ``anchor`` in ``time_zone``.

    ``every`` counts hours, days or weeks (``kind``); a custom rotation is ``every`` hours. The
    anchor is read as a wall-clock time in ``time_zone`` (an anchor given in another zone is
    converted first). A participant may appear more than once.
    """

    participants: tuple[str, ...]
    kind: RotationKind
    every: int
    anchor: dt.datetime
    time_zone: str
    restrictions: tuple[Restriction, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "participants", tuple(self.participants))
        object.__setattr__(self, "restrictions", tuple(self.restrictions))
        if not self.participants:
            raise ValueError("participants: a rotation needs at least one participant")
        if any(not isinstance(user, str) or not user for user in self.participants):
            raise ValueError("participants: a participant is a non-empty user identifier")
        try:
            object.__setattr__(self, "kind", RotationKind(self.kind))
        except ValueError as error:
            kinds = ", ".join(kind.value for kind in RotationKind)
            raise ValueError(f"kind: a rotation is {kinds}, not {self.kind!r}") from error
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every <= 0:
            raise ValueError(
                f"every: a rotation length is a positive whole number, not {self.every!r}"
            )
        _require_aware(self.anchor, "anchor")
        _zone(self.time_zone)
        if any(not isinstance(item, Restriction) for item in self.restrictions):
            raise ValueError("restrictions: each restriction is a Restriction")

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @functools.cached_property
    def anchor_wall(self) -> dt.datetime:
        """Return the anchor as a naive local wall-clock reading in the rotation's zone."""
        # astimezone to the very same ZoneInfo object keeps the fields as given, so an anchor at
        # 02:30 on a spring-forward day stays 02:30 and later days hand off at 02:30.
        return self.anchor.astimezone(self.zone).replace(tzinfo=None)

    @functools.cached_property
    def anchor_utc(self) -> dt.datetime:
        return resolve_local(self.anchor_wall, self.zone)

    @functools.cached_property
    def period(self) -> dt.timedelta:
        """Return the nominal turn length: absolute for hours, wall-clock for days and weeks."""
        unit = {RotationKind.DAILY: _DAY, RotationKind.WEEKLY: _WEEK}.get(self.kind, _HOUR)
        return unit * self.every

    def user(self, index: int) -> str:
        """Return who has turn ``index`` (0 starts at the anchor; negative turns precede it)."""
        return self.participants[index % len(self.participants)]


def handoff_at(rotation: Rotation, index: int) -> dt.datetime:
    """Return the UTC instant turn ``index`` of ``rotation`` starts."""
    if rotation.kind in (RotationKind.HOURLY, RotationKind.CUSTOM):
        return rotation.anchor_utc + rotation.period * index
    return resolve_local(rotation.anchor_wall + rotation.period * index, rotation.zone)


def shift_index_at(rotation: Rotation, at: dt.datetime) -> int:
    """Return the turn in progress at ``at``, computed, not counted from the anchor."""
    _require_aware(at, "at")
    at_utc = at.astimezone(dt.UTC)
    if rotation.kind in (RotationKind.HOURLY, RotationKind.CUSTOM):
        return (at_utc - rotation.anchor_utc) // rotation.period
    # Whole local days between the anchor and ``at`` give the turn to within one; the clock
    # change or the time of day decides the last step.
    local_days = (at_utc.astimezone(rotation.zone).date() - rotation.anchor_wall.date()).days
    index = local_days // rotation.period.days
    while handoff_at(rotation, index) > at_utc:
        index -= 1
    while handoff_at(rotation, index + 1) <= at_utc:
        index += 1
    return index


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _restriction_windows(
    rotation: Rotation, weeks: Iterable[dt.date], near: dt.datetime | None = None
) -> Iterable[_Interval]:
    """Yield each restriction of each local week (given by its Monday) as a UTC interval.

    With ``near`` (a naive local reading), only those whose wall-clock range lies within a day of
    it: no clock change moves an instant by a day, and the others need not be resolved.
    """
    for monday in weeks:
        week_start = dt.datetime.combine(monday, dt.time())
        for restriction in rotation.restrictions:
            wall_start = week_start + restriction.start_offset
            wall_end = wall_start + restriction.length
            if near is not None and not wall_start - _DAY <= near <= wall_end + _DAY:
                continue
            start = resolve_local(wall_start, rotation.zone)
            end = resolve_local(wall_end, rotation.zone)
            if start < end:
                yield start, end


def _active_windows(rotation: Rotation, start: dt.datetime, end: dt.datetime) -> list[_Interval]:
    """Return when a restricted rotation is active within [start, end), sorted and disjoint."""
    # A restriction lasts less than a week, so one starting the week before ``start`` may reach
    # into the range; the week after covers an instant of a repeated hour at a week's end.
    first = _monday(start.astimezone(rotation.zone).date()) - _WEEK
    last = _monday(end.astimezone(rotation.zone).date()) + _WEEK
    weeks = (first + _WEEK * n for n in range((last - first).days // 7 + 1))
    clipped = [
        (max(window_start, start), min(window_end, end))
        for window_start, window_end in _restriction_windows(rotation, weeks)
        if window_start < end and window_end > start
    ]
    return _union(clipped)


def _is_active(rotation: Rotation, at_utc: dt.datetime) -> bool:
    if not rotation.restrictions:
        return True
    wall = at_utc.astimezone(rotation.zone).replace(tzinfo=None)
    monday = _monday(wall.date())
    weeks = (monday - _WEEK, monday, monday + _WEEK)
    windows = _restriction_windows(rotation, weeks, near=wall)
    return any(start <= at_utc < end for start, end in windows)


def _union(intervals: Iterable[_Interval]) -> list[_Interval]:
    merged: list[_Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _turns(rotation: Rotation, start: dt.datetime, end: dt.datetime) -> list[_Piece]:
    """Return the rotation's turns within [start, end), clipped, empty turns left out."""
    pieces: list[_Piece] = []
    index = shift_index_at(rotation, start)
    turn_start = handoff_at(rotation, index)
    while turn_start < end:
        turn_end = handoff_at(rotation, index + 1)
        piece_start, piece_end = max(turn_start, start), min(turn_end, end)
        if piece_start < piece_end:
            pieces.append((piece_start, piece_end, rotation.user(index)))
        index += 1
        turn_start = turn_end
    return pieces


def _intersect(pieces: Sequence[_Piece], windows: Sequence[_Interval]) -> list[_Piece]:
    """Return the parts of the sorted, disjoint ``pieces`` inside the sorted, disjoint ``windows``."""
    result: list[_Piece] = []
    window_index = 0
    for piece_start, piece_end, user in pieces:
        while window_index < len(windows) and windows[window_index][1] <= piece_start:
            window_index += 1
        scan = window_index
        while scan < len(windows) and windows[scan][0] < piece_end:
            start = max(piece_start, windows[scan][0])
            end = min(piece_end, windows[scan][1])
            if start < end:
                result.append((start, end, user))
            scan += 1
    return result


@dataclass(frozen=True)
class LayerVersion:
    """The rotation a layer follows from ``effective_from`` until its next version."""

    effective_from: dt.datetime
    rotation: Rotation

    def __post_init__(self) -> None:
        _require_aware(self.effective_from, "effective_from")


@dataclass(frozen=True)
class Layer:
    """A named rotation, changed over time by versions, active until ``until`` if given.

    ``Layer.of(name, rotation, start=...)`` builds the common case of a single version.
    """

    name: str
    versions: tuple[LayerVersion, ...]
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(self.versions))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name: a layer needs a name")
        if self.name == OVERRIDE_LAYER:
            raise ValueError(f"name: {OVERRIDE_LAYER!r} names overrides, not a layer")
        if not self.versions:
            raise ValueError("versions: a layer needs at least one rotation")
        for earlier, later in itertools.pairwise(self.versions):
            if later.effective_from <= earlier.effective_from:
                raise ValueError("versions: each version takes effect after the one before")
        if self.until is not None:
            _require_aware(self.until, "until")
            if self.until <= self.versions[-1].effective_from:
                raise ValueError("until: a layer ends after its last version takes effect")

    @classmethod
    def of(
        cls, name: str, rotation: Rotation, *, start: dt.datetime, until: dt.datetime | None = None
    ) -> Layer:
        """Return a layer following one rotation from ``start``."""
        return cls(name, (LayerVersion(start, rotation),), until)

    @property
    def start(self) -> dt.datetime:
        return self.versions[0].effective_from

    @functools.cached_property
    def spans(self) -> tuple[tuple[dt.datetime, dt.datetime | None, Rotation], ...]:
        """Return each version as (UTC start, UTC end or None for open, rotation)."""
        starts = [version.effective_from.astimezone(dt.UTC) for version in self.versions]
        until = self.until.astimezone(dt.UTC) if self.until is not None else None
        ends = [*starts[1:], until]
        return tuple(
            (start, end, version.rotation)
            for start, end, version in zip(starts, ends, self.versions, strict=True)
        )


@dataclass(frozen=True)
class FixedLayer:
    """A named layer of fixed shifts (imported from an ``.ics`` file): nothing repeats.

    The shifts may come in any order and overlap. Where they overlap, the one that started later
    holds the layer until it ends, then the earlier one shows again (a calendar that writes a
    handover as overlapping events, or a swap as an event inside another, reads as meant).

    >>> at = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)
    >>> week = Shift(at, at + dt.timedelta(days=7), "alice")
    >>> swap = Shift(at + dt.timedelta(days=2), at + dt.timedelta(days=3), "bob")
    >>> [(s.user, s.start.day, s.end.day) for s in FixedLayer("vendor", (week, swap)).pieces]
    [('alice', 1, 3), ('bob', 3, 4), ('alice', 4, 8)]
    """

    name: str
    shifts: tuple[Shift, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "shifts", tuple(self.shifts))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("name: a layer needs a name")
        if self.name == OVERRIDE_LAYER:
            raise ValueError(f"name: {OVERRIDE_LAYER!r} names overrides, not a layer")
        if any(not isinstance(shift, Shift) for shift in self.shifts):
            raise ValueError("shifts: each shift is a Shift")

    @functools.cached_property
    def pieces(self) -> tuple[Shift, ...]:
        """Return who the layer puts on call when: sorted, disjoint, in UTC, named after it."""
        ordered = sorted(
            (shift.start.astimezone(dt.UTC), shift.end.astimezone(dt.UTC), shift.user)
            for shift in self.shifts
        )
        boundaries = sorted({moment for start, end, _ in ordered for moment in (start, end)})
        # Shifts covering the current piece, the latest start on top: (-start, -position).
        active: list[tuple[float, int, dt.datetime, str]] = []
        pieces: list[Shift] = []
        position = 0
        for piece_start, piece_end in itertools.pairwise(boundaries):
            while position < len(ordered) and ordered[position][0] <= piece_start:
                start, end, user = ordered[position]
                heapq.heappush(active, (-start.timestamp(), -position, end, user))
                position += 1
            while active and active[0][2] <= piece_start:
                heapq.heappop(active)
            if not active:
                continue
            user = active[0][3]
            previous = pieces[-1] if pieces else None
            if previous is not None and previous.end == piece_start and previous.user == user:
                pieces[-1] = Shift(previous.start, piece_end, user, self.name)
            else:
                pieces.append(Shift(piece_start, piece_end, user, self.name))
        return tuple(pieces)

    @functools.cached_property
    def _starts(self) -> list[dt.datetime]:
        return [piece.start for piece in self.pieces]

    @functools.cached_property
    def _ends(self) -> list[dt.datetime]:
        return [piece.end for piece in self.pieces]

    def between(self, start: dt.datetime, end: dt.datetime) -> list[Shift]:
        """Return the pieces within [start, end) (UTC), clipped to it."""
        first = bisect.bisect_right(self._ends, start)
        found: list[Shift] = []
        for piece in self.pieces[first:]:
            if piece.start >= end:
                break
            found.append(Shift(max(piece.start, start), min(piece.end, end), piece.user, self.name))
        return found

    def user_at(self, at_utc: dt.datetime) -> str | None:
        """Return who the layer puts on call at ``at_utc``, or None."""
        position = bisect.bisect_right(self._starts, at_utc) - 1
        if position >= 0 and self.pieces[position].end > at_utc:
            return self.pieces[position].user
        return None


AnyLayer = Layer | FixedLayer


@dataclass(frozen=True)
class Override:
    """``user`` is on call from ``start`` to ``end`` (exclusive), above every layer."""

    start: dt.datetime
    end: dt.datetime
    user: str

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if self.end <= self.start:
            raise ValueError(f"end: an override ends after it starts ({self.start} to {self.end})")
        if not isinstance(self.user, str) or not self.user:
            raise ValueError("user: an override needs someone to cover it")


@dataclass(frozen=True)
class Schedule:
    """Layers from the bottom up (later on top) and overrides (later on top), above all layers."""

    layers: tuple[AnyLayer, ...] = ()
    overrides: tuple[Override, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        names = [layer.name for layer in self.layers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"layers: layer names are unique, {', '.join(duplicates)} repeats")


def layer_shifts(layer: AnyLayer, *, start: dt.datetime, end: dt.datetime) -> list[Shift]:
    """Return the layer's turns within [start, end) after restrictions, one shift per turn."""
    start, end = _require_range(start, end)
    if isinstance(layer, FixedLayer):
        return layer.between(start, end)
    shifts: list[Shift] = []
    for version_start, version_end, rotation in layer.spans:
        span_start = max(start, version_start)
        span_end = end if version_end is None else min(end, version_end)
        if span_start >= span_end:
            continue
        pieces = _turns(rotation, span_start, span_end)
        if rotation.restrictions:
            pieces = _intersect(pieces, _active_windows(rotation, span_start, span_end))
        shifts.extend(Shift(s, e, user, layer.name) for s, e, user in pieces)
    return shifts


def layer_on_call_at(layer: AnyLayer, at: dt.datetime) -> str | None:
    """Return who the layer puts on call at ``at``, or None outside its time or restrictions."""
    _require_aware(at, "at")
    at_utc = at.astimezone(dt.UTC)
    if isinstance(layer, FixedLayer):
        return layer.user_at(at_utc)
    for version_start, version_end, rotation in reversed(layer.spans):
        if version_start <= at_utc:
            if version_end is not None and at_utc >= version_end:
                return None
            if not _is_active(rotation, at_utc):
                return None
            return rotation.user(shift_index_at(rotation, at_utc))
    return None


def on_call_at(schedule: Schedule, at: dt.datetime) -> str | None:
    """Return who is on call at ``at`` (the top override, else the top layer), None if nobody."""
    _require_aware(at, "at")
    for override in reversed(schedule.overrides):
        if override.start <= at < override.end:
            return override.user
    for layer in reversed(schedule.layers):
        user = layer_on_call_at(layer, at)
        if user is not None:
            return user
    return None


def final_schedule(schedule: Schedule, *, start: dt.datetime, end: dt.datetime) -> list[Shift]:
    """Return who is on call over [start, end): sorted, non-overlapping, gaps left out."""
    start, end = _require_range(start, end)
    # Sources from the bottom up; within one source the shifts are sorted and disjoint.
    sources = [layer_shifts(layer, start=start, end=end) for layer in schedule.layers]
    for override in schedule.overrides:
        override_start = max(start, override.start.astimezone(dt.UTC))
        override_end = min(end, override.end.astimezone(dt.UTC))
        if override_start < override_end:
            sources.append([Shift(override_start, override_end, override.user, OVERRIDE_LAYER)])
        else:
            sources.append([])
    source_starts = [[shift.start for shift in source] for source in sources]
    boundaries = sorted(
        {moment for source in sources for s in source for moment in (s.start, s.end)}
    )
    result: list[Shift] = []
    for piece_start, piece_end in itertools.pairwise(boundaries):
        # No boundary lies inside the piece, so the source covering its start covers all of it.
        winner = _top_shift_at(sources, source_starts, piece_start)
        if winner is None:
            continue
        previous = result[-1] if result else None
        if (
            previous is not None
            and previous.end == piece_start
            and (previous.user, previous.layer) == (winner.user, winner.layer)
        ):
            result[-1] = Shift(previous.start, piece_end, winner.user, winner.layer)
        else:
            result.append(Shift(piece_start, piece_end, winner.user, winner.layer))
    return result


def _top_shift_at(
    sources: Sequence[Sequence[Shift]],
    source_starts: Sequence[Sequence[dt.datetime]],
    at: dt.datetime,
) -> Shift | None:
    for source, starts in zip(reversed(sources), reversed(source_starts), strict=True):
        position = bisect.bisect_right(starts, at) - 1
        if position >= 0 and source[position].end > at:
            return source[position]
    return None


def current_shift(
    schedule: Schedule, at: dt.datetime, *, reach: dt.timedelta = dt.timedelta(days=8)
) -> Shift | None:
    """The shift of the final schedule that holds ``at``: who, since when, until when and from
    which layer (what a "who is on call now" panel shows), or None when nobody is on call.

    Its start and end are looked for at most ``reach`` before and after ``at`` (a weekly
    rotation's turn fits); a longer shift is cut at that distance."""
    _require_aware(at, "at")
    if reach <= dt.timedelta(0):
        raise ValueError("reach: a positive duration")
    at_utc = at.astimezone(dt.UTC)
    for shift in final_schedule(schedule, start=at_utc - reach, end=at_utc + reach):
        if shift.start <= at_utc < shift.end:
            return shift
    return None
