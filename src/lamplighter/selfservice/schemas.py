"""Pydantic shapes of the self-service API: templates, runs, steps, actions and access grants."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from lamplighter.core.schemas import WriteModel
from lamplighter.selfservice.templates import MAX_TEMPLATE_BYTES

TEMPLATE_FIELDS = (
    "name",
    "title",
    "description",
    "owner",
    "parameters",
    "steps",
    "output",
    "approval",
    "allowed_teams",
    "request_type",
)


# -- actions ------------------------------------------------------------------------------------
class ActionRead(BaseModel):
    name: str
    title: str
    description: str
    input: dict[str, Any] = Field(description="JSON Schema of the action's input.")
    output: dict[str, Any] = Field(description="JSON Schema of the action's output.")
    risk: Literal["low", "high"] = Field(
        description="high: a template using it is reviewed by the platform team."
    )
    min_approval: Literal["none", "team-lead", "sre"] = Field(
        description="The least approval a run of a template using it waits for."
    )


# -- templates ----------------------------------------------------------------------------------
# Either the YAML text alone, or the fields with at least a name, title, owner and steps: the
# document says so, so that a client (and the schema-driven tests) knows what is accepted.
_ONE_FORM: dict[str, Any] = {
    "oneOf": [
        {"required": ["yaml"], "not": {"anyOf": [{"required": [f]} for f in TEMPLATE_FIELDS]}},
        {
            "required": ["name", "title", "owner", "steps"],
            "not": {"required": ["yaml"]},
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "owner": {"type": "string", "minLength": 1},
                "steps": {"type": "array", "minItems": 1},
            },
        },
    ]
}


class TemplateWrite(WriteModel):
    """A template definition as JSON, or the same definition as YAML text in ``yaml``."""

    model_config = ConfigDict(json_schema_extra=_ONE_FORM)

    yaml: str | None = Field(
        default=None,
        max_length=MAX_TEMPLATE_BYTES,
        description="The whole template as YAML; then send no other field.",
    )
    name: str | None = Field(default=None, max_length=63)
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    owner: str | None = Field(default=None, max_length=63, description="Owning team slug.")
    parameters: dict[str, Any] | None = Field(
        default=None, description="JSON Schema (Draft 2020-12) of the run parameters."
    )
    steps: list[dict[str, Any]] | None = Field(default=None, max_length=50)
    output: dict[str, Any] | None = None
    approval: Literal["none", "team-lead", "sre"] | None = None
    allowed_teams: list[str] | None = Field(default=None, max_length=500)
    request_type: str | None = Field(default=None, max_length=63)


class TemplateRead(BaseModel):
    name: str
    title: str
    description: str
    owner: str
    approval: str
    allowed_teams: list[str]
    request_type: str | None
    effective_approval: str = Field(
        description="What a run waits for: the strictest of approval and its actions' minimum."
    )
    source: str
    source_path: str | None = Field(description="The file a synced template came from (name).")
    version: int = Field(description="The published version; 0: never published yet.")
    draft_pending: bool = Field(description="A definition waits for the platform team's review.")
    created_at: dt.datetime
    updated_at: dt.datetime


class TemplateDraftRead(BaseModel):
    definition: dict[str, Any] = Field(description="The definition waiting for review.")
    privileged_actions: list[str] = Field(description="The high-risk actions it uses.")
    submitted_by: str | None = Field(description="The author's email.")
    submitted_at: dt.datetime | None


class TemplateDetail(TemplateRead):
    parameters: dict[str, Any] = Field(description="JSON Schema of the run parameters.")
    steps: list[dict[str, Any]]
    output: dict[str, Any]
    published_by: str | None = Field(default=None, description="Who published this version.")
    published_at: dt.datetime | None = None
    draft: TemplateDraftRead | None = Field(
        default=None, description="The definition waiting for review, beside the published one."
    )


class TemplateReview(WriteModel):
    reason: str = Field(default="", max_length=5_000, description="Told to the author.")


class TemplateRejection(WriteModel):
    reason: str = Field(min_length=1, max_length=5_000, description="Told to the author.")


# -- runs ---------------------------------------------------------------------------------------
class RunStart(WriteModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = Field(default=False, description="Render every step's input; act on nothing.")
    requesting_team: str | None = Field(
        default=None, max_length=63, description="Your team the run is for (slug)."
    )


class RunDecision(WriteModel):
    reason: str = Field(default="", max_length=5_000)


class RunRejection(WriteModel):
    reason: str = Field(min_length=1, max_length=5_000, description="Told to the requester.")


class StepRead(BaseModel):
    index: int
    id: str
    action: str
    title: str | None
    status: str
    input: dict[str, Any] | None = Field(description="The rendered input (secrets by reference).")
    output: dict[str, Any] | None
    log: str
    error: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class SecretBrief(BaseModel):
    name: str
    revealed: bool


class RunRead(BaseModel):
    id: int
    template: str
    template_title: str
    template_version: int
    status: str
    dry_run: bool = Field(
        description="A dry run checks every step and creates nothing; its outputs are what a "
        "real run would make."
    )
    parameters: dict[str, Any]
    requester: str | None
    requesting_team: str | None
    approver: str | None
    decision_reason: str | None
    decided_at: dt.datetime | None
    error: str | None
    failed_step: str | None
    ticket_id: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunDetail(RunRead):
    approval: str
    awaiting: list[str] = Field(description="Who may approve, while the run awaits approval.")
    awaiting_why: str | None = Field(
        default=None, description="Why those people are asked (while it awaits approval)."
    )
    waiting_for: str | None = Field(
        default=None,
        description="What a run in status awaiting_decision waits for, e.g. the decision on "
        "an access grant.",
    )
    steps: list[StepRead]
    outputs: dict[str, Any] = Field(description="The template's links and entities, rendered.")
    secrets: list[SecretBrief] = Field(description="Names only; reveal them once, as requester.")


class SecretsRevealed(BaseModel):
    run_id: int
    secrets: dict[str, str] = Field(description="Plain text. Shown once; store them now.")


# -- access grants ------------------------------------------------------------------------------
class GranteeIn(WriteModel):
    user: EmailStr | None = Field(default=None, description="A user's email.")
    team: str | None = Field(default=None, max_length=63, description="A team's slug.")


class GrantCreate(WriteModel):
    entity: str = Field(
        min_length=1, max_length=300, description="Catalog reference, e.g. resource:default/db."
    )
    grantee: GranteeIn | None = Field(default=None, description="Who gets access; default: you.")
    access: Literal["read", "write", "admin"]
    reason: str = Field(min_length=1, max_length=5_000)
    duration_days: int | None = Field(default=None, ge=1, le=365, description="Default 30.")
    expires_at: AwareDatetime | None = None


class GrantDecision(WriteModel):
    reason: str | None = Field(default=None, max_length=5_000)


class GrantRejection(WriteModel):
    reason: str = Field(min_length=1, max_length=5_000)


class GrantRead(BaseModel):
    id: int
    entity: str
    grantee_user: str | None
    grantee_team: str | None
    access: str
    reason: str
    status: str
    requested_by: str | None
    approver: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_by: str | None
    run_id: int | None
    created_at: dt.datetime
