"""What the API and the CLI accept for on-call schedules, overrides and imports, and what they
answer.

Every time is an aware datetime (``2027-03-01T09:00:00+01:00`` or ``…Z``): a naive one is refused
naming its field, since a schedule's meaning changes with the zone it is read in. A layer is a
rotation (its versions over time) or an imported layer (shifts from an ``.ics`` file, filled by
``POST …/import-ics``); layers are listed from the bottom up.

A restriction is written either for several days at the same hours
(``{"weekdays": [0, 1, 2, 3, 4], "start_time": "09:00", "end_time": "17:00"}``, every day when
``weekdays`` is left out) or as one range across days
(``{"start_weekday": 4, "start_time": "18:00", "end_weekday": 0, "end_time": "08:00"}``).
Schedules store and answer the second form, one entry per range.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lamplighter.core.schemas import ReadModel, UserBrief, WriteModel

MAX_ID = 2**31 - 1
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
KINDS = ("hourly", "daily", "weekly", "custom")
# The longest turn each kind allows: a year, in its own unit.
MAX_EVERY = {"hourly": 8784, "custom": 8784, "daily": 366, "weekly": 53}
MAX_LAYERS = 20
MAX_VERSIONS = 50
MAX_PARTICIPANTS = 100
MAX_RESTRICTIONS = 50
MAX_OVERRIDE = dt.timedelta(days=366)
MAX_ICS_CHARS = 2 * 1024 * 1024
LayerName = Annotated[
    str, Field(min_length=1, max_length=100, description="unique within the schedule")
]
UserId = Annotated[int, Field(ge=1, le=MAX_ID)]


def check_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone") from exc
    return value


def _layer_name(value: str) -> str:
    if value == "override":
        raise ValueError("'override' names the overrides; call the layer something else")
    return value


class RestrictionIn(WriteModel):
    """When a rotation is active, in its local time (see the module's docstring)."""

    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(
        default=None,
        max_length=7,
        description="days (0 = Monday) active from start_time to end_time; default every day",
    )
    start_weekday: int | None = Field(default=None, ge=0, le=6)
    start_time: str = Field(pattern=TIME_PATTERN, description="HH:MM, local")
    end_weekday: int | None = Field(default=None, ge=0, le=6)
    end_time: str = Field(pattern=TIME_PATTERN, description="HH:MM, local")

    @model_validator(mode="after")
    def _one_form(self) -> RestrictionIn:
        ranged = self.start_weekday is not None or self.end_weekday is not None
        if ranged and (self.start_weekday is None or self.end_weekday is None):
            raise ValueError("a range across days gives both start_weekday and end_weekday")
        if ranged and self.weekdays is not None:
            raise ValueError("give weekdays, or start_weekday and end_weekday, not both")
        if self.weekdays is not None and not self.weekdays:
            raise ValueError("name at least one weekday, or leave weekdays out for every day")
        if not ranged and _time(self.start_time) == _time(self.end_time):
            raise ValueError("a restriction from a time to the same time each day is empty")
        return self


def _time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


# What ``_length`` says, for the OpenAPI document: each kind's longest turn.
_EVERY_BY_KIND: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"properties": {"every": {"maximum": longest}}},
        }
        for kind, longest in MAX_EVERY.items()
        if longest < MAX_EVERY["hourly"]
    ]
}


class VersionIn(WriteModel):
    """A layer's rotation from ``effective_from`` until its next version."""

    model_config = ConfigDict(json_schema_extra=_EVERY_BY_KIND)

    effective_from: AwareDatetime
    participants: list[UserId] = Field(
        min_length=1, max_length=MAX_PARTICIPANTS, description="user ids, in turn order"
    )
    kind: Literal["hourly", "daily", "weekly", "custom"]
    every: int = Field(
        default=1,
        ge=1,
        le=MAX_EVERY["hourly"],
        description="turn length in hours (hourly, custom), days or weeks",
    )
    anchor: AwareDatetime | None = Field(
        default=None, description="the first handoff; default effective_from"
    )
    time_zone: str | None = Field(
        default=None, max_length=64, description="IANA zone of the handoffs; default the schedule's"
    )
    restrictions: list[RestrictionIn] = Field(default_factory=list, max_length=MAX_RESTRICTIONS)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("every")
    @classmethod
    def _length(cls, value: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")
        if kind in MAX_EVERY and value > MAX_EVERY[kind]:
            raise ValueError(f"a {kind} rotation hands off at most every {MAX_EVERY[kind]}")
        return value


# What the validators below say, for the OpenAPI document: a rotation layer (the default kind)
# has versions, an imported one none.
_LAYER_KINDS: dict[str, Any] = {
    "if": {"properties": {"kind": {"const": "imported"}}, "required": ["kind"]},
    "then": {"properties": {"versions": {"maxItems": 0}}},
    "else": {"properties": {"versions": {"minItems": 1}}, "required": ["versions"]},
}


class LayerIn(WriteModel):
    """A rotation layer (its versions over time), or an imported one (``"kind": "imported"``:
    shifts from an ``.ics`` file, which ``POST …/import-ics`` fills)."""

    model_config = ConfigDict(json_schema_extra=_LAYER_KINDS)

    kind: Literal["rotation", "imported"] = "rotation"
    name: LayerName
    until: AwareDatetime | None = Field(default=None, description="a rotation layer ends then")
    versions: list[VersionIn] = Field(
        default_factory=list, max_length=MAX_VERSIONS, validate_default=True
    )
    source: str | None = Field(
        default=None, max_length=2000, description="imported: as answered; the last import's"
    )
    imported_at: str | None = Field(
        default=None, max_length=64, description="imported: as answered; the last import's"
    )

    _name = field_validator("name")(classmethod(lambda cls, v: _layer_name(v)))

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: list[VersionIn], info: ValidationInfo) -> list[VersionIn]:
        kind = info.data.get("kind")
        if kind == "rotation" and not value:
            raise ValueError("a rotation layer needs at least one version")
        if kind == "imported" and value:
            raise ValueError("an imported layer's shifts come from its calendar, not versions")
        return value


class ScheduleCreate(WriteModel):
    team: str = Field(min_length=1, max_length=63, description="owning team's slug")
    name: str = Field(min_length=1, max_length=100, description="unique within the team")
    description: str = Field(default="", max_length=2000)
    time_zone: str = Field(default="UTC", max_length=64, description="IANA zone")
    layers: list[LayerIn] = Field(
        default_factory=list, max_length=MAX_LAYERS, description="bottom first"
    )

    _zone = field_validator("time_zone")(classmethod(lambda cls, v: check_zone(v)))


class ScheduleUpdate(WriteModel):
    """What changes; ``layers`` replaces every layer (an imported layer left out is deleted)."""

    team: str | None = Field(default=None, min_length=1, max_length=63)
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    time_zone: str | None = Field(default=None, max_length=64)
    layers: list[LayerIn] | None = Field(default=None, max_length=MAX_LAYERS)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)


class ScheduleRead(ReadModel):
    id: int
    team: str
    name: str
    description: str
    time_zone: str
    layers: list[dict[str, Any]] = Field(description="bottom first, as stored")
    feed: bool = Field(description="whether a feed URL was issued")
    created_at: dt.datetime
    updated_at: dt.datetime


class OverrideCreate(WriteModel):
    user_id: UserId
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(default="", max_length=2000)

    @field_validator("ends_at")
    @classmethod
    def _range(cls, value: dt.datetime, info: ValidationInfo) -> dt.datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is None:
            return value  # refused on its own field already
        if value <= starts_at:
            raise ValueError("an override ends after it starts")
        if value - starts_at > MAX_OVERRIDE:
            raise ValueError(f"an override lasts at most {MAX_OVERRIDE.days} days")
        return value


class OverrideRead(ReadModel):
    id: int
    schedule_id: int
    user: UserBrief
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str
    created_by_user_id: int | None
    created_at: dt.datetime


class ImportIcsIn(WriteModel):
    """The calendar's text, or a URL to fetch it from (through the outbound policy)."""

    layer: LayerName = "imported"
    content: str | None = Field(default=None, min_length=1, max_length=MAX_ICS_CHARS)
    url: str | None = Field(default=None, min_length=1, max_length=2000)

    _name = field_validator("layer")(classmethod(lambda cls, v: _layer_name(v)))

    @model_validator(mode="after")
    def _one_source(self) -> ImportIcsIn:
        if (self.content is None) == (self.url is None):
            raise ValueError("give the calendar's content or its url, one of them")
        return self


class ImportProblem(ReadModel):
    event: str | None = Field(description="the event's UID (or #position); null: the file")
    reason: str


class ImportIcsRead(ReadModel):
    schedule_id: int
    layer: str
    source: str
    imported_shifts: int
    problems: list[ImportProblem]


class FeedTokenRead(ReadModel):
    url: str = Field(description="the feed's secret URL: shown this once")
    token: str


class ShiftRead(ReadModel):
    start: dt.datetime
    end: dt.datetime
    user_id: int
    display_name: str
    layer: str | None


class LayerShiftsRead(ReadModel):
    name: str
    kind: str
    shifts: list[ShiftRead]


class FinalRead(ReadModel):
    schedule_id: int
    start: dt.datetime
    end: dt.datetime
    final: list[ShiftRead] = Field(description="who is on call, overrides over the top layer")
    layers: list[LayerShiftsRead] = Field(description="each layer's own shifts, bottom first")
    overrides: list[ShiftRead]


class OnCallNowRead(ReadModel):
    user_id: int
    display_name: str
    email: str
    schedule_id: int | None
    schedule_name: str | None
    layer: str | None
    since: dt.datetime | None
    until: dt.datetime | None
