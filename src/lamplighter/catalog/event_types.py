"""The events the catalog emits. An import emits the same per-entity events as the API (with
``via: "import"``) and one ``catalog.imported`` summary, so a subscriber never misses an entity
that came in whole files at a time."""

from __future__ import annotations

from typing import Literal

from lamplighter.core.events import EventPayload, event_type

Via = Literal["api", "import"]


@event_type(
    "catalog.entity_created",
    description="An entity was added to the catalog, through the API, a page, the CLI or an import.",
    subject="entity reference (kind:namespace/name)",
)
class EntityCreated(EventPayload):
    ref: str
    kind: str
    owner: str  # the owning team's slug
    via: Via = "api"


@event_type(
    "catalog.entity_updated",
    description="An entity changed (its content hash differs from before).",
    subject="entity reference (kind:namespace/name)",
)
class EntityUpdated(EventPayload):
    ref: str
    kind: str
    owner: str
    via: Via = "api"


@event_type(
    "catalog.entity_deleted",
    description="An entity was removed (by hand, or pruned by an import of its location).",
    subject="entity reference (kind:namespace/name)",
)
class EntityDeleted(EventPayload):
    ref: str
    kind: str
    via: Via = "api"


@event_type(
    "catalog.imported",
    description="A Backstage import finished; its entities also have their own events.",
    subject="the import's root (file or URL)",
)
class CatalogImported(EventPayload):
    files: int
    created: int
    updated: int
    unchanged: int
    removed: int
    pruned: bool
    teams_created: int
    users_created: int
    errors: int
    warnings: int
