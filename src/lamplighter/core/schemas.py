"""Pydantic input and output shapes for the core API (XCreate / XUpdate / XRead / Page)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


class WriteModel(BaseModel):
    """Every write schema rejects unknown fields, and text with a NUL character in it (no field
    means one, and PostgreSQL refuses it in text: a 500 otherwise)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise PydanticCustomError("nul_character", "must not contain NUL characters")
        return value


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to get the next page; null at the end."
    )


class UserCreate(WriteModel):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    time_zone: str = Field(
        default="UTC", max_length=64, description="IANA time zone, e.g. Europe/Berlin"
    )
    role: str = Field(default="member", pattern="^(admin|sre|member|viewer)$")
    password: str | None = Field(default=None, min_length=10, max_length=200)


class UserUpdate(WriteModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    time_zone: str | None = Field(default=None, max_length=64)
    role: str | None = Field(default=None, pattern="^(admin|sre|member|viewer)$")
    is_active: bool | None = None
    password: str | None = Field(
        default=None,
        min_length=10,
        max_length=200,
        description="A new password; ends the user's other web sessions.",
    )
    current_password: str | None = Field(
        default=None,
        max_length=200,
        description="Your current password: needed to change your own password (an admin "
        "resetting someone else's does not give it).",
    )
    email: EmailStr | None = Field(
        default=None, description="Admins only: the login, e.g. for a person imported without one."
    )


class UserBrief(ReadModel):
    id: int
    email: str
    display_name: str


class UserRead(UserBrief):
    time_zone: str
    role: str
    is_active: bool
    created_at: dt.datetime


class MeRead(UserRead):
    teams: list[str]


TEAM_TYPE = "What kind of group it is: team, department, organization, …"


class TeamCreate(WriteModel):
    slug: str = Field(
        min_length=1,
        max_length=63,
        pattern="^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
        description="Letters, digits and inner hyphens; stored in lowercase.",
    )
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    lead_email: EmailStr
    type: str = Field(default="team", min_length=1, max_length=63, description=TEAM_TYPE)
    parent: str | None = Field(
        default=None, max_length=63, description="Slug of the team this one is within."
    )


class TeamUpdate(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    lead_email: EmailStr | None = None
    type: str | None = Field(default=None, min_length=1, max_length=63, description=TEAM_TYPE)
    parent: str | None = Field(
        default=None,
        max_length=63,
        description="Slug of the team this one is within; null or empty makes it top-level.",
    )


class TeamRead(ReadModel):
    id: int
    slug: str
    name: str
    description: str
    type: str
    lead: UserBrief | None = Field(
        description="The accountable person; null for a team without a lead (e.g. an imported "
        "Group without members), whose decisions go to the nearest lead above it."
    )
    created_at: dt.datetime


class TeamDetail(TeamRead):
    parent: str | None = Field(description="Slug of the team this one is within.")
    children: list[str] = Field(description="Slugs of the teams directly within this one.")
    members: list[UserBrief]


class MemberAdd(WriteModel):
    email: EmailStr


class TokenCreate(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None
    user_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,  # the column's range: beyond it PostgreSQL overflowed (a 500)
        description="Admins may create tokens for other users.",
    )


class TokenRead(ReadModel):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The secret. Shown once; store it now.")


class AuditRead(ReadModel):
    id: int
    at: dt.datetime
    actor_type: str
    actor_id: str | None
    actor_label: str
    action: str
    object_type: str
    object_id: str
    diff: dict[str, Any]
    request_id: str | None
    client_addr: str | None
    hash: str


class AuditVerifyRead(BaseModel):
    ok: bool
    checked: int
    head_hash: str = Field(
        description="Hash of the last verified entry; keep it elsewhere to detect truncation."
    )
    broken_id: int | None
    reason: str | None
    bad: int = Field(
        default=0, description="How many entries do not hold; the walk goes on past the first."
    )


class EventRead(ReadModel):
    id: int
    type: str
    subject: str
    payload: dict[str, Any]
    at: dt.datetime


class EventPage(BaseModel):
    items: list[EventRead]
    last_id: int = Field(description="Pass as ?after= to continue from here.")


class EventTypeRead(BaseModel):
    type: str
    description: str
    subject: str = Field(description="What the event's subject names.")
    payload_schema: dict[str, Any] = Field(description="JSON Schema of the payload.")
    subscribers: list[str] = Field(description="Job kinds that react to it inside Lamplighter.")


class JobRead(ReadModel):
    id: int
    kind: str
    payload: dict[str, Any]
    status: str
    due_at: dt.datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class WebhookCreate(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(
        min_length=1,
        max_length=2000,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+([/?#]\S*)?$",
        description="An absolute http or https URL.",
    )
    event_types: list[str] = Field(min_length=1, max_length=100)
    owner_team: str = Field(min_length=1, max_length=63)
    secret: str | None = Field(default=None, min_length=16, max_length=200)


class WebhookUpdate(WriteModel):
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+([/?#]\S*)?$",
        description="An absolute http or https URL.",
    )
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=100)
    is_active: bool | None = None


class WebhookRead(ReadModel):
    id: int
    name: str
    url: str
    event_types: list[str]
    owner_team_id: int
    is_active: bool
    created_at: dt.datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="The signing secret. Shown once.")


class DeliveryRead(ReadModel):
    id: int
    event_id: int
    attempt: int
    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    at: dt.datetime
