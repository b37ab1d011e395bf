"""Times as people read them: ``6 Dec 2026, 11:45 CET`` in the reader's own time zone.

Pages use it through the ``when`` template filter (``ui.time`` keeps the ISO form in
``<time datetime>`` for machines); notices and messages written as text (inbox bodies, flash
messages) call :func:`readable` with the recipient's time zone, never ``isoformat()``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

# English month names regardless of the process locale (strftime's %b follows LC_TIME).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def zone_of(name: str | None) -> dt.tzinfo:
    """The named IANA time zone; UTC for an empty or unknown name (a stale profile never fails)."""
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def readable(value: dt.datetime | None, tz: str | None = "UTC", *, short: bool = False) -> str:
    """``6 Dec 2026, 11:45 CET`` (or ``6 Dec 2026`` when short) in time zone ``tz``; a naive
    value is taken as UTC, as the database stores it; None is a dash."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    local = value.astimezone(zone_of(tz))
    day = f"{local.day} {MONTHS[local.month - 1]} {local.year}"
    if short:
        return day
    return f"{day}, {local:%H:%M} {local.tzname() or ''}".strip()


def span(delta: dt.timedelta) -> str:
    """A length of time in words, rounded down to its largest unit: ``45 minutes``, ``3 hours``,
    ``2 days`` (``less than a minute`` below one; the sign is ignored)."""
    seconds = abs(int(delta.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "less than a minute"
