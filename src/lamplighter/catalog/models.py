"""Catalog tables: entities, their relations, tags and the search index."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lamplighter.core.db import Base, utcnow

# The kinds of link an entity shows with an icon of their own; any other is "other".
LINK_TYPES = frozenset({"runbook", "dashboard", "repository", "docs"})


class Kind(enum.StrEnum):
    SERVICE = "service"
    API = "api"
    RESOURCE = "resource"
    SYSTEM = "system"
    DOMAIN = "domain"
    PLATFORM = "platform"


class Lifecycle(enum.StrEnum):
    EXPERIMENTAL = "experimental"
    PRODUCTION = "production"
    DEPRECATED = "deprecated"


class RelationType(enum.StrEnum):
    DEPENDS_ON = "depends_on"
    PROVIDES_API = "provides_api"
    CONSUMES_API = "consumes_api"
    PART_OF = "part_of"  # system membership, domain membership, subcomponent of


class Provenance(enum.StrEnum):
    MANUAL = "manual"
    IMPORT = "import"
    TEMPLATE = "template"


class Entity(Base):
    __tablename__ = "catalog_entities"
    __table_args__ = (
        sa.UniqueConstraint("kind", "namespace", "name_key", name="uq_catalog_entities_ref"),
        sa.Index("ix_catalog_entities_owner", "owner_team_id"),
        sa.Index("ix_catalog_entities_kind_type", "kind", "type"),
        sa.Index("ix_catalog_entities_location", "location"),
        sa.Index("ix_catalog_entities_accountable", "accountable_user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(
        sa.String(63)
    )  # Lamplighter's kinds, or any other, kept as is
    namespace: Mapped[str] = mapped_column(sa.String(63), default="default")
    name: Mapped[str] = mapped_column(sa.String(63))
    name_key: Mapped[str] = mapped_column(
        sa.String(63)
    )  # lowercase: names are unique ignoring case
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    type: Mapped[str | None] = mapped_column(sa.String(63))
    owner_team_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("teams.id", ondelete="SET NULL")
    )
    accountable_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    lifecycle: Mapped[str] = mapped_column(sa.String(16), default=Lifecycle.PRODUCTION.value)
    tier: Mapped[int] = mapped_column(default=3)
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    links: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    cost_centre: Mapped[str | None] = mapped_column(sa.String(100))
    version: Mapped[str | None] = mapped_column(sa.String(63))
    provenance: Mapped[str] = mapped_column(sa.String(16), default=Provenance.MANUAL.value)
    location: Mapped[str | None] = mapped_column(sa.String(1000))
    spec_extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The owner as the imported file wrote it, when it is not the owning team's Group (a User
    # owner: ``user:default/guest``), so that export writes it back.
    owner_ref: Mapped[str | None] = mapped_column(sa.String(200))
    # The whole document of a kind Lamplighter does not model (AiResource, Template, a custom
    # kind), exported unchanged.
    document: Mapped[dict[str, Any] | None] = mapped_column()
    content_hash: Mapped[str] = mapped_column(sa.String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


class Relation(Base):
    """A directed edge; both directions are answered by indexes on source and target."""

    __tablename__ = "catalog_relations"
    __table_args__ = (sa.Index("ix_catalog_relations_target", "target_id", "type"),)

    source_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    target_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )


class UnresolvedRelation(Base):
    """An edge to an entity that is not in the catalog (yet), as Backstage keeps one: it becomes
    a ``Relation`` when the target arrives, and an edge whose target is deleted becomes one."""

    __tablename__ = "catalog_unresolved"
    __table_args__ = (
        sa.Index("ix_catalog_unresolved_target", "target_kind", "target_namespace", "target_key"),
    )

    source_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    target_kind: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    target_namespace: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    target_key: Mapped[str] = mapped_column(sa.String(63), primary_key=True)  # lowercase name
    target_name: Mapped[str] = mapped_column(sa.String(63))

    @property
    def ref(self) -> str:
        return f"{self.target_kind}:{self.target_namespace}/{self.target_name}"


class EntityTag(Base):
    __tablename__ = "catalog_entity_tags"

    tag: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    entity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SearchDocument(Base):
    """The text search covers. PostgreSQL indexes it with a GIN tsvector index; SQLite mirrors
    it into an FTS5 table (``catalog_search_fts``) created by the migration."""

    __tablename__ = "catalog_search"

    entity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("catalog_entities.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[str] = mapped_column(sa.Text, default="")
