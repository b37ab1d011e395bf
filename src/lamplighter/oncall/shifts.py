"""A shift: who is on call from when to when. Shared by the schedule engine and iCalendar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Shift:
    """``user`` is on call from ``start`` (inclusive) to ``end`` (exclusive), both aware UTC.

    ``layer`` names the layer the shift came from (``"override"`` for an override, ``None`` for
    a shift read from elsewhere, such as an imported calendar)."""

    start: dt.datetime
    end: dt.datetime
    user: str
    layer: str | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a shift's start and end need a time zone")
        if self.end <= self.start:
            raise ValueError(f"a shift ends after it starts ({self.start} to {self.end})")

    @property
    def length(self) -> dt.timedelta:
        return self.end - self.start
