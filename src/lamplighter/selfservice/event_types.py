"""The events self-service emits: runs, templates and access grants."""

from __future__ import annotations

from lamplighter.core.events import EventPayload, event_type


class RunChanged(EventPayload):
    """A run's state after the change the event names."""

    id: int
    template: str
    status: str
    dry_run: bool
    requester_user_id: int | None
    requesting_team_id: int | None
    failed_step: str | None = None
    error: str | None = None
    ticket_id: int | None = None
    reason: str | None = None


RUN_OUTCOMES = {
    "requested": "A run was asked for: it is queued, or waits for approval.",
    "approved": "A run waiting for approval (or for a step's decision) was approved and queued.",
    "rejected": "A run waiting for approval (or for a step's decision) was rejected, with the "
    "reason.",
    "awaiting_decision": "A step ran and the run waits for a person's decision (an access "
    "request's approver) before it goes on.",
    "retried": "A failed run was queued again from its failed step.",
    "started": "A worker began a run's steps.",
    "succeeded": "Every step of a run succeeded (a dry run rendered every input).",
    "failed": "A step failed (earlier steps undone) or the run stopped for good.",
}

for _outcome, _description in RUN_OUTCOMES.items():
    event_type(
        f"selfservice.run.{_outcome}", description=_description, subject="template_run:<id>"
    )(type(f"Run{_outcome.title()}", (RunChanged,), {"__doc__": _description}))


class TemplateChanged(EventPayload):
    name: str
    version: int
    title: str
    owner_team_id: int | None


@event_type(
    "selfservice.template.created", description="A template was added.", subject="template:<name>"
)
class TemplateCreated(TemplateChanged):
    pass


@event_type(
    "selfservice.template.updated",
    description="A template was changed (a new version).",
    subject="template:<name>",
)
class TemplateUpdated(TemplateChanged):
    pass


@event_type(
    "selfservice.template.deleted", description="A template was removed.", subject="template:<name>"
)
class TemplateDeleted(EventPayload):
    name: str


class TemplateDraftChanged(EventPayload):
    name: str
    published_version: int  # 0: the template was never published
    owner_team_id: int | None
    submitted_by: int | None  # the draft's author (a user id)


@event_type(
    "selfservice.template.draft_submitted",
    description="A definition using privileged actions waits for the platform team's review "
    "(the published version, if any, runs on meanwhile).",
    subject="template:<name>",
)
class TemplateDraftSubmitted(TemplateDraftChanged):
    privileged_actions: list[str]


@event_type(
    "selfservice.template.draft_rejected",
    description="The platform team rejected a template's draft, with the reason.",
    subject="template:<name>",
)
class TemplateDraftRejected(TemplateDraftChanged):
    reason: str


class GrantChanged(EventPayload):
    id: int
    entity: str
    grantee_user_id: int | None
    grantee_team_id: int | None
    access: str
    status: str
    expires_at: str
    run_id: int | None


_GRANT_EVENTS = {
    "access.requested": "Someone asked for access to an entity.",
    "access.granted": "An access request was approved; the access is live until it expires.",
    "access.rejected": "An access request was rejected.",
    "access.revoked": "Live access was revoked before it expired.",
    "access.expired": "Access ran out and was removed.",
}
for _name, _description in _GRANT_EVENTS.items():
    event_type(_name, description=_description, subject="access_grant:<id>")(
        type(f"Grant{_name.split('.')[1].title()}", (GrantChanged,), {"__doc__": _description})
    )
