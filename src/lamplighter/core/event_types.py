"""The events core emits: people and teams. Payload models are what ``/api/v1/events/types``
publishes; a subscriber reads them with ``events.delivered(ctx).model()``."""

from __future__ import annotations

from lamplighter.core.events import EventPayload, event_type


@event_type(
    "user.created",
    description="A user was added (by an admin, SSO or an import).",
    subject="user:<id>",
)
class UserCreated(EventPayload):
    id: int | None = None
    email: str


@event_type(
    "user.updated",
    description="A user's name, address, time zone, role or active flag changed.",
    subject="user:<id>",
)
class UserUpdated(EventPayload):
    id: int
    email: str
    changed: list[str]


class TeamState(EventPayload):
    slug: str
    name: str
    description: str
    lead_user_id: int | None
    type: str
    parent_id: int | None


@event_type("team.created", description="A team was created.", subject="team:<slug>")
class TeamCreated(EventPayload):
    slug: str
    lead: str | None


@event_type(
    "team.updated",
    description="A team's name, description, lead, type or parent changed; the payload is the team now.",
    subject="team:<slug>",
)
class TeamUpdated(TeamState):
    pass


@event_type("team.member_added", description="A person joined a team.", subject="team:<slug>")
class TeamMemberAdded(EventPayload):
    email: str


@event_type("team.member_removed", description="A person left a team.", subject="team:<slug>")
class TeamMemberRemoved(EventPayload):
    email: str
