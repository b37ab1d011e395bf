"""The events of the alerting domain: one per alert *group* change, never one per alert.

On-call subscribes to ``alert.group_triggered`` to start the escalation and to the others to
stop it; incidents (later) will read them too."""

from __future__ import annotations

from lamplighter.core.events import EventPayload, event_type


class GroupRef(EventPayload):
    id: int
    team_id: int
    entity: str | None  # the catalog reference, when the alerts are about an entity
    integration_id: int
    summary: str
    severity: str


@event_type(
    "alert.group_triggered",
    description="A new alert group opened: its first alert fired and nothing silenced it.",
    subject="alert-group:<id>",
)
class GroupTriggered(GroupRef):
    policy_id: int | None  # the routing rules' choice; None = the team's default policy


@event_type(
    "alert.group_acknowledged",
    description="Someone acknowledged an alert group; its escalation stops.",
    subject="alert-group:<id>",
)
class GroupAcknowledged(GroupRef):
    by_user_id: int | None  # None when the sender acknowledged it (PagerDuty events)


@event_type(
    "alert.group_resolved",
    description="An alert group resolved: every alert in it resolved, or someone resolved it.",
    subject="alert-group:<id>",
)
class GroupResolved(GroupRef):
    by_user_id: int | None


@event_type(
    "alert.group_escalated",
    description="Someone escalated an alert group to its next tier by hand.",
    subject="alert-group:<id>",
)
class GroupEscalated(GroupRef):
    by_user_id: int


@event_type(
    "alert.group_reassigned",
    description="Someone reassigned an alert group to another person.",
    subject="alert-group:<id>",
)
class GroupReassigned(GroupRef):
    by_user_id: int
    to_user_id: int


@event_type(
    "alert.integration_deleted",
    description="An integration was deleted, and with it its alerts, alert groups and their"
    " timelines; whatever other domains kept about those groups can go.",
    subject="alert-integration:<id>",
)
class IntegrationDeleted(EventPayload):
    id: int
    team_id: int
    name: str
