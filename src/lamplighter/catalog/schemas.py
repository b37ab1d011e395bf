"""Catalog input and output shapes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lamplighter.core.schemas import ReadModel, UserBrief, WriteModel

KIND_PATTERN = "^(service|api|resource|system|domain|platform)$"
LIFECYCLE_PATTERN = "^(experimental|production|deprecated)$"


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="An http or https address",
        # Stated for clients (and schema-driven tests); the validator below says it in words.
        json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    )
    title: str = Field(default="", max_length=200)
    type: str = Field(
        default="other",
        pattern="^(runbook|dashboard|repository|docs|other)$",
        description="runbook, dashboard, repository, docs or other",
    )
    icon: str | None = Field(default=None, max_length=50)

    @field_validator("url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        if not value.lower().startswith(("https://", "http://")):
            raise ValueError("links must be http or https addresses")
        return value


class EntityCreate(WriteModel):
    kind: str = Field(pattern=KIND_PATTERN)
    name: str = Field(min_length=1, max_length=63)
    namespace: str = Field(default="default", min_length=1, max_length=63)
    title: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=10_000)
    type: str | None = Field(
        default=None, max_length=63, description="e.g. database, topic, openapi"
    )
    owner: str = Field(min_length=1, max_length=63, description="Slug of the owning team.")
    accountable: str | None = Field(
        default=None, description="Email of the accountable person; defaults to the team lead."
    )
    lifecycle: str = Field(default="production", pattern=LIFECYCLE_PATTERN)
    tier: int = Field(default=3, ge=1, le=4, description="1 = most critical … 4")
    tags: list[str] = Field(default_factory=list, max_length=50)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    links: list[Link] = Field(default_factory=list, max_length=50)
    system: str | None = Field(default=None, description="Reference of the system it belongs to.")
    domain: str | None = Field(default=None, description="Reference of the domain (systems).")
    depends_on: list[str] = Field(default_factory=list, max_length=500)
    provides_apis: list[str] = Field(default_factory=list, max_length=500)
    consumes_apis: list[str] = Field(default_factory=list, max_length=500)
    cost_centre: str | None = Field(default=None, max_length=100)
    version: str | None = Field(default=None, max_length=63, description="Platforms: the version.")


class EntityUpdate(WriteModel):
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    type: str | None = Field(default=None, max_length=63)
    owner: str | None = Field(default=None, min_length=1, max_length=63)
    accountable: str | None = None
    lifecycle: str | None = Field(default=None, pattern=LIFECYCLE_PATTERN)
    tier: int | None = Field(default=None, ge=1, le=4)
    tags: list[str] | None = Field(default=None, max_length=50)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    links: list[Link] | None = Field(default=None, max_length=50)
    system: str | None = None
    domain: str | None = None
    depends_on: list[str] | None = Field(default=None, max_length=500)
    provides_apis: list[str] | None = Field(default=None, max_length=500)
    consumes_apis: list[str] | None = Field(default=None, max_length=500)
    cost_centre: str | None = Field(default=None, max_length=100)
    version: str | None = Field(default=None, max_length=63)


class TeamBrief(BaseModel):
    id: int
    slug: str
    name: str


class EntityBrief(ReadModel):
    ref: str
    kind: str
    namespace: str
    name: str
    title: str
    type: str | None
    lifecycle: str
    tier: int


class UnresolvedRead(BaseModel):
    relation: str = Field(description="depends_on, provides_apis, consumes_apis or part_of")
    ref: str


class EntityRead(EntityBrief):
    id: int
    description: str
    owner: TeamBrief | None
    accountable: UserBrief | None
    tags: list[str]
    labels: dict[str, Any]
    annotations: dict[str, Any]
    links: list[dict[str, Any]]
    cost_centre: str | None
    version: str | None
    provenance: str
    location: str | None
    relations: dict[str, list[EntityBrief]] = Field(
        description="depends_on, dependency_of, provides_apis, api_provided_by, consumes_apis, "
        "api_consumed_by, part_of, has_part"
    )
    unresolved: list[UnresolvedRead] = Field(
        default_factory=list,
        description="Relations to entities not in the catalog yet; they resolve when it arrives.",
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class OwnerRead(BaseModel):
    ref: str
    owner: TeamBrief | None
    accountable: UserBrief | None
    team_lead: UserBrief | None
    problems: list[str] = Field(description="Why the ownership is not valid, if it is not.")


class DepNode(BaseModel):
    ref: str
    kind: str
    title: str
    depth: int
    via: str | None = Field(description="The entity through which it was reached.")


class DepsRead(BaseModel):
    root: str
    direction: str
    depth: int
    nodes: list[DepNode]
    cycles: list[list[str]]
    truncated: bool


class ImportError_(BaseModel):
    file: str
    document: int | None
    field: str
    reason: str


class ImportReport(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: int
    removed: list[str] = Field(
        description="Gone from their location: deleted with prune, else kept."
    )
    pruned: bool
    kept: int = Field(
        default=0, description="Entities of kinds Lamplighter keeps whole (created or updated)."
    )
    teams_created: list[str]
    teams_updated: list[str] = Field(default_factory=list)
    users_created: list[str] = Field(description="The User references of new people.")
    errors: list[ImportError_] = Field(
        description="Documents skipped (or whole files, document null), with the field and why."
    )
    warnings: list[ImportError_] = Field(
        default_factory=list,
        description="Imported, but not as written: unresolved references, placeholders, …",
    )


class ImportRequest(WriteModel):
    files: dict[str, str] = Field(
        description="File name → catalog-info.yaml content (multi-document allowed).",
        max_length=1000,
    )
    prune: bool = False
    dry_run: bool = False
    strict: bool = Field(default=False, description="Skip a whole file on any error (for CI).")
    fetch: bool = Field(
        default=False,
        description="Read URL Location targets and $text/$json/$yaml URLs that "
        "LAMPLIGHTER_CATALOG_FETCH_ALLOWLIST allows; otherwise they are kept as references.",
    )


class OwnedEntity(EntityBrief):
    """An entity in the list of what a team (and the teams within it) own."""

    owner: TeamBrief | None = Field(description="The team that owns it directly.")


class EntitySuggestion(BaseModel):
    """An entity a picker offers: the full reference to send back, and what to show."""

    ref: str
    title: str
    kind: str
    owner: str | None = Field(description="The owning team's slug.")


class ResolvedRef(BaseModel):
    """What a typed reference names."""

    ref: str
    kind: str
    namespace: str
    name: str
    title: str
