"""Catalog use cases: create, change and delete entities; answer who owns what.

Every entity has an owning team and exactly one accountable person, who must be a member of
that team (the team lead by default). References between entities are Backstage-style
``[kind:][namespace/]name`` strings, resolved case-insensitively.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog import resolve_ref, unresolved
from lamplighter.catalog.event_types import EntityCreated, EntityDeleted, EntityUpdated
from lamplighter.catalog.models import (
    LINK_TYPES,
    Entity,
    EntityTag,
    Kind,
    Lifecycle,
    Provenance,
    Relation,
    RelationType,
    SearchDocument,
    UnresolvedRelation,
)
from lamplighter.catalog.refs import (
    OTHER_KIND_RE,
    Ref,
    check_name,
    check_policy,
    check_tag,
    parse_ref,
)
from lamplighter.core import audit, events, identity, people
from lamplighter.core.authz import require_owned_write
from lamplighter.core.context import Actor
from lamplighter.core.db import autocommit_reads, driver_rows
from lamplighter.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from lamplighter.core.models import Team, TeamMember, TeamOrigin, User
from lamplighter.core.pagination import keyset

OBJECT_TYPE = "catalog_entity"
UNRESOLVED = "unresolved"  # the key of relations to entities not in the catalog (yet)
# The relation fields of the API, with the kind a bare name defaults to.
RELATION_FIELDS: dict[str, tuple[str, str | None]] = {
    "depends_on": (RelationType.DEPENDS_ON.value, None),
    "provides_apis": (RelationType.PROVIDES_API.value, "api"),
    "consumes_apis": (RelationType.CONSUMES_API.value, "api"),
}
# How each stored relation reads from the source and from the target side.
RELATION_NAMES = {
    RelationType.DEPENDS_ON.value: ("depends_on", "dependency_of"),
    RelationType.PROVIDES_API.value: ("provides_apis", "api_provided_by"),
    RelationType.CONSUMES_API.value: ("consumes_apis", "api_consumed_by"),
    RelationType.PART_OF.value: ("part_of", "has_part"),
}


@dataclass
class EntityInput:
    """Everything an entity is made of, references still as text."""

    kind: str
    name: str
    owner: str
    namespace: str = "default"
    title: str = ""
    description: str = ""
    type: str | None = None
    accountable: str | None = None
    lifecycle: str = "production"
    tier: int = 3
    tags: Sequence[str] = ()
    labels: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] | None = None
    links: Sequence[Mapping[str, Any]] = ()
    system: str | None = None
    domain: str | None = None
    depends_on: Sequence[str] = ()
    provides_apis: Sequence[str] = ()
    consumes_apis: Sequence[str] = ()
    cost_centre: str | None = None
    version: str | None = None
    spec_extra: Mapping[str, Any] | None = None


# -- reading ---------------------------------------------------------------------------------
def find(session: Session, ref: Ref) -> Entity | None:
    return session.scalar(
        sa.select(Entity).where(
            Entity.kind == ref.kind,
            Entity.namespace == ref.namespace,
            Entity.name_key == ref.name.lower(),
        )
    )


def get_by_ref(
    *,
    session: Session,
    ref: str,
    default_kind: str | None = "service",
    field: str = "ref",
    kinds: Sequence[str] | None = None,
) -> Entity:
    """Look an entity up by reference: ``kind:[namespace/]name``, or a bare ``[namespace/]name``
    that names one entity whatever its kind (see :mod:`lamplighter.catalog.resolve_ref`).

    An unknown or ambiguous bare name is a ``ValidationFailed`` on ``field`` naming the closest
    entities; an explicit reference not in the catalog a ``NotFound`` (404 on the API's path
    routes), with the same suggestions. ``kinds`` limits what the field accepts.
    ``default_kind`` is accepted from callers written when a bare name meant a service; a bare
    name now resolves across kinds (a newcomer's ``checkout-db`` is the resource).
    """
    del default_kind  # see the docstring: kept so that older call sites keep working
    return resolve_ref.resolve(session=session, text=ref, field=field, kinds=kinds)


def id_by_ref(*, session: Session, ref: str, field: str = "ref") -> int:
    """The id of the entity a reference names, as :func:`get_by_ref` finds it. A full reference
    (``kind:namespace/name`` or ``kind:name``) found in the catalog costs one small statement on
    the driver; anything else (a bare name, a miss, a bad reference) goes the whole way, with its
    suggestions and errors."""
    if ":" in ref:
        try:
            parsed = parse_ref(ref, default_kind=None, default_namespace="default", field=field)
        except ValidationFailed:
            parsed = None
        if parsed is not None:
            rows = driver_rows(
                session,
                "SELECT id FROM catalog_entities WHERE kind = ? AND namespace = ? AND name_key = ?",
                (parsed.kind, parsed.namespace, parsed.name.lower()),
            )
            if rows:
                return int(rows[0][0])
    return get_by_ref(session=session, ref=ref, field=field).id


@dataclass(frozen=True)
class Suggestion:
    """An entity offered by a picker, with its owning team's slug."""

    ref: str
    title: str
    kind: str
    owner: str | None


def parse_kinds(text: str | None, *, field: str = "kinds") -> list[str] | None:
    """``service,api`` as a list of kind names; None for no restriction."""
    kinds = [k.strip().lower() for k in (text or "").split(",") if k.strip()]
    for kind in kinds:
        if not OTHER_KIND_RE.match(kind):
            raise ValidationFailed.one(field, f"{kind!r} is not a kind name")
    return kinds[:20] or None


def suggest(
    *, session: Session, text: str, kinds: Sequence[str] | None = None, limit: int = 10
) -> list[Suggestion]:
    """What a picker offers for the text typed so far (names and titles), at most ``limit``."""
    found = resolve_ref.suggest(session=session, text=text, kinds=kinds, limit=min(limit, 50))
    teams = people.teams_by_id(session=session, ids=[m.owner_team_id for m in found])
    return [
        Suggestion(
            ref=m.ref,
            title=m.title or m.name,
            kind=m.kind,
            owner=teams[m.owner_team_id].slug if m.owner_team_id in teams else None,
        )
        for m in found
    ]


def relations_of(*, session: Session, entity_id: int) -> dict[str, list[Entity]]:
    """Direct relations both ways, keyed by how they read from this entity."""
    result: dict[str, list[Entity]] = {
        name: [] for pair in RELATION_NAMES.values() for name in pair
    }
    outgoing = session.execute(
        sa.select(Relation.type, Entity)
        .join(Entity, Entity.id == Relation.target_id)
        .where(Relation.source_id == entity_id)
        .order_by(Entity.kind, Entity.name_key)
    ).all()
    incoming = session.execute(
        sa.select(Relation.type, Entity)
        .join(Entity, Entity.id == Relation.source_id)
        .where(Relation.target_id == entity_id)
        .order_by(Entity.kind, Entity.name_key)
    ).all()
    for relation_type, other in outgoing:
        result[RELATION_NAMES[relation_type][0]].append(other)
    for relation_type, other in incoming:
        result[RELATION_NAMES[relation_type][1]].append(other)
    return result


BRIEF_COLUMNS = (
    Entity.kind,
    Entity.namespace,
    Entity.name,
    Entity.title,
    Entity.type,
    Entity.lifecycle,
    Entity.tier,
)


def relation_briefs(*, session: Session, entity_id: int) -> dict[str, list[sa.Row[Any]]]:
    """Like :func:`relations_of`, in one query returning only the columns a summary needs."""
    outgoing = (
        sa.select(sa.literal(0).label("incoming"), Relation.type.label("relation"), *BRIEF_COLUMNS)
        .join(Entity, Entity.id == Relation.target_id)
        .where(Relation.source_id == entity_id)
    )
    incoming = (
        sa.select(sa.literal(1).label("incoming"), Relation.type.label("relation"), *BRIEF_COLUMNS)
        .join(Entity, Entity.id == Relation.source_id)
        .where(Relation.target_id == entity_id)
    )
    both = sa.union_all(outgoing, incoming).subquery()
    rows = session.execute(sa.select(both).order_by(both.c.kind, both.c.name)).all()
    result: dict[str, list[sa.Row[Any]]] = {
        name: [] for pair in RELATION_NAMES.values() for name in pair
    }
    for row in rows:
        result[RELATION_NAMES[row.relation][row.incoming]].append(row)
    return result


# Relations kept unresolved read like outgoing ones (``incoming`` 2), with no summary.
_UNRESOLVED_ROWS = (
    "SELECT 2 AS incoming, u.type AS relation, u.target_kind AS kind, "
    "u.target_namespace AS namespace, u.target_name AS name, '' AS title, NULL AS type, "
    "NULL AS lifecycle, NULL AS tier FROM catalog_unresolved u WHERE {source}"
)
# The hot read path (GET one entity) as plain SQL on the driver's own cursor: building and
# cache-keying an ORM statement cost more than running it, and on SQLite SQLAlchemy's execution
# of a text() (execution context, result metadata, row processors) was 36 % of the GET and the
# sqlite3 calls 3 %. The parameters use the named style sqlite3 takes (PostgreSQL's below).
_ENTITY_SELECT = (
    "SELECT e.id, e.kind, e.namespace, e.name, e.title, e.description, e.type, e.lifecycle, "
    "e.tier, e.tags, e.labels, e.annotations, e.links, e.cost_centre, e.version, e.provenance, "
    "e.location, e.created_at, e.updated_at, t.id AS team_id, t.slug AS team_slug, "
    "t.name AS team_name, u.id AS user_id, u.email AS user_email, "
    "u.display_name AS user_display_name "
    "FROM catalog_entities e "
    "LEFT JOIN teams t ON t.id = e.owner_team_id "
    "LEFT JOIN users u ON u.id = e.accountable_user_id "
    "WHERE e.kind = :kind AND e.namespace = :namespace AND e.name_key = :name_key"
)
_RELATION_SELECT = (  # constant texts joined, no input in them
    "SELECT 0 AS incoming, r.type AS relation, "  # noqa: S608
    "e.kind, e.namespace, e.name, e.title, e.type, e.lifecycle, e.tier FROM catalog_relations r "
    "JOIN catalog_entities e ON e.id = r.target_id WHERE r.source_id = :entity_id "
    "UNION ALL SELECT 1 AS incoming, r.type AS relation, "
    "e.kind, e.namespace, e.name, e.title, e.type, e.lifecycle, e.tier FROM catalog_relations r "
    "JOIN catalog_entities e ON e.id = r.source_id WHERE r.target_id = :entity_id "
    f"UNION ALL {_UNRESOLVED_ROWS.format(source='u.source_id = :entity_id')} "
    "ORDER BY kind, name"
)


# PostgreSQL: the same view in one round trip, the relations folded into a JSON array, sent as
# driver SQL outside a transaction. On SQLite the two queries above cost nothing to send; on
# PostgreSQL every command is a round trip the serving process waits for, and a read in a
# transaction costs two more (BEGIN and ROLLBACK). psycopg parses jsonb and json itself.
_ENTITY_VIEW_PG = (
    (  # two constant texts joined, no input in them
        "SELECT v.*, (SELECT coalesce(json_agg(json_build_array(x.incoming, x.relation, x.kind, "  # noqa: S608
        "x.namespace, x.name, x.title, x.type, x.lifecycle, x.tier) ORDER BY x.kind, x.name), "
        "'[]'::json) FROM ("
        "SELECT 0 AS incoming, r.type AS relation, e.kind, e.namespace, e.name, e.title, e.type, "
        "e.lifecycle, e.tier FROM catalog_relations r JOIN catalog_entities e ON e.id = r.target_id "
        "WHERE r.source_id = v.id UNION ALL "
        "SELECT 1, r.type, e.kind, e.namespace, e.name, e.title, e.type, e.lifecycle, e.tier "
        "FROM catalog_relations r JOIN catalog_entities e ON e.id = r.source_id "
        "WHERE r.target_id = v.id UNION ALL "
        + _UNRESOLVED_ROWS.format(source="u.source_id = v.id")
        + ") x) AS relations "
        f"FROM ({_ENTITY_SELECT}) v"
    )
    .replace(":kind", "%(kind)s")
    .replace(":namespace", "%(namespace)s")
    .replace(":name_key", "%(name_key)s")
)


class EntityRow(NamedTuple):
    """The entity of :func:`read_view`, its owning team and accountable person flattened in."""

    id: int
    kind: str
    namespace: str
    name: str
    title: str
    description: str
    type: str | None
    lifecycle: str
    tier: int
    tags: list[str] | None
    labels: dict[str, Any] | None
    annotations: dict[str, Any] | None
    links: list[dict[str, Any]] | None
    cost_centre: str | None
    version: str | None
    provenance: str
    location: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    team_id: int | None
    team_slug: str | None
    team_name: str | None
    user_id: int | None
    user_email: str | None
    user_display_name: str | None


class RelationRow(NamedTuple):
    """One relation of :func:`read_view`: the other entity's summary."""

    incoming: int
    relation: str
    kind: str
    namespace: str
    name: str
    title: str
    type: str | None
    lifecycle: str | None
    tier: int | None


def read_view(*, session: Session, ref: str) -> tuple[EntityRow, dict[str, list[RelationRow]]]:
    """One entity with owner, accountable person and both-way relation summaries, in one query
    on PostgreSQL and two on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        driver = session.connection().connection.driver_connection
        if not isinstance(driver, sqlite3.Connection):
            raise TypeError(f"read_view supports PostgreSQL and SQLite, not {driver!r}")
        return read_view_sqlite(connection=driver, ref=ref)
    parsed, key = _view_key(ref)
    # One statement reads a consistent snapshot on its own: no transaction needed, unless
    # the request has already begun one (an authentication that had to read the database).
    autocommit_reads(session)
    connection = session.connection()
    found = connection.exec_driver_sql(_ENTITY_VIEW_PG, key).first()
    if found is None:
        raise NotFound(f"no catalog entity {parsed}")
    *columns, folded = found
    row = EntityRow._make(columns)._replace(
        created_at=found.created_at.astimezone(dt.UTC),
        updated_at=found.updated_at.astimezone(dt.UTC),
    )
    folded_rows = orjson.loads(folded) if isinstance(folded, str) else folded
    return row, _by_relation(RelationRow._make(r) for r in folded_rows)


def read_view_sqlite(
    *, connection: sqlite3.Connection, ref: str
) -> tuple[EntityRow, dict[str, list[RelationRow]]]:
    """:func:`read_view` on a SQLite driver connection, for a caller that holds no session."""
    parsed, key = _view_key(ref)
    found = connection.execute(_ENTITY_SELECT, key).fetchone()
    if found is None:
        raise NotFound(f"no catalog entity {parsed}")
    row = EntityRow._make(found)
    # What SQLAlchemy's JSON and UTCDateTime types would make of the stored text.
    row = row._replace(
        tags=_json_or_none(row.tags),
        labels=_json_or_none(row.labels),
        annotations=_json_or_none(row.annotations),
        links=_json_or_none(row.links),
        created_at=_sqlite_utc(row.created_at),
        updated_at=_sqlite_utc(row.updated_at),
    )
    relations = connection.execute(_RELATION_SELECT, {"entity_id": row.id}).fetchall()
    return row, _by_relation(RelationRow._make(r) for r in relations)


def _view_key(ref: str) -> tuple[Ref, dict[str, str]]:
    parsed = parse_ref(ref, default_kind="service", default_namespace="default", field="ref")
    return parsed, {
        "kind": parsed.kind,
        "namespace": parsed.namespace,
        "name_key": parsed.name.lower(),
    }


def _json_or_none(text: Any) -> Any:
    # The standard library's parser, as SQLAlchemy's JSON type uses: orjson would read an
    # integer beyond 64 bits as a float.
    return None if text is None else json.loads(text)


def _sqlite_utc(text: Any) -> dt.datetime:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no zone), read back aware."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _by_relation(rows: Iterable[RelationRow]) -> dict[str, list[RelationRow]]:
    """Relation rows under their API names (``depends_on`` …, and ``unresolved``), in order."""
    relations: dict[str, list[RelationRow]] = {
        name: [] for pair in RELATION_NAMES.values() for name in pair
    }
    relations[UNRESOLVED] = []
    for rel in rows:
        if rel.incoming == 2:
            relations[UNRESOLVED].append(rel)
        else:
            relations[RELATION_NAMES[rel.relation][rel.incoming]].append(rel)
    return relations


@dataclass(frozen=True)
class ListFilters:
    kind: str | None = None
    type: str | None = None
    owner_team_id: int | None = None
    lifecycle: str | None = None
    tier: int | None = None
    tag: str | None = None


def apply_filters(query: sa.Select[Any], filters: ListFilters) -> sa.Select[Any]:
    if filters.kind:
        query = query.where(Entity.kind == filters.kind)
    if filters.type:
        query = query.where(Entity.type == filters.type)
    if filters.owner_team_id is not None:
        query = query.where(Entity.owner_team_id == filters.owner_team_id)
    if filters.lifecycle:
        query = query.where(Entity.lifecycle == filters.lifecycle)
    if filters.tier is not None:
        query = query.where(Entity.tier == filters.tier)
    if filters.tag:
        query = query.where(
            Entity.id.in_(sa.select(EntityTag.entity_id).where(EntityTag.tag == filters.tag))
        )
    return query


def other_kinds(*, session: Session) -> list[str]:
    """The kinds in the catalog that Lamplighter keeps as imported (airesource, template, …)."""
    ours = [k.value for k in Kind]
    return list(
        session.scalars(
            sa.select(Entity.kind).where(Entity.kind.not_in(ours)).distinct().order_by(Entity.kind)
        )
    )


def list_(
    *, session: Session, filters: ListFilters, after_id: int | None, limit: int
) -> list[Entity]:
    query = apply_filters(sa.select(Entity), filters)
    return list(session.scalars(keyset(query, Entity.id, position=after_id, limit=limit)))


def _lineage() -> Any:
    """(team_id, ancestor_id) for every team and each of its ancestors, the team included."""
    lineage = sa.select(Team.id.label("team_id"), Team.id.label("ancestor_id")).cte(
        "lineage", recursive=True
    )
    parent = sa.orm.aliased(Team)
    return lineage.union(  # UNION, not UNION ALL: a cycle in the parents still ends
        sa.select(lineage.c.team_id, parent.parent_id)
        .join(parent, parent.id == lineage.c.ancestor_id)
        .where(parent.parent_id.is_not(None))
    )


FIX_OWNER = "set spec.owner in its file (or on the entity's page)"
FIX_ACCOUNTABLE = (
    "set the lamplighter.io/accountable annotation, or give the owning team or a team above it "
    "a lead (lamplighter.io/lead)"
)


@functools.cache
def _hygiene_query() -> sa.Select[Any]:
    """The hygiene query, built once: building it (a recursive lineage, an aliased owner and a
    seven-way CASE) costs milliseconds, and an identical statement hits the compiled cache."""
    lineage = _lineage()
    owner = sa.orm.aliased(Team)
    in_lineage = (
        sa.select(TeamMember.user_id)
        .join(lineage, lineage.c.ancestor_id == TeamMember.team_id)
        .where(
            lineage.c.team_id == Entity.owner_team_id,
            TeamMember.user_id == Entity.accountable_user_id,
        )
    )
    any_member = sa.select(TeamMember.user_id).where(TeamMember.team_id == Entity.owner_team_id)
    dangling = sa.select(UnresolvedRelation.source_id).where(
        UnresolvedRelation.source_id == Entity.id
    )
    reason = sa.case(
        (
            Entity.owner_team_id.is_(None),
            sa.case(
                (Entity.document.is_not(None), f"no owner in its file: {FIX_OWNER}"),
                else_=f"no owning team (it was deleted): {FIX_OWNER}",
            ),
        ),
        (
            owner.origin == TeamOrigin.PLACEHOLDER.value,
            "the owner Group is not in the catalog: a placeholder team stands in; import the "
            "Group (or create the team)",
        ),
        (
            owner.origin == TeamOrigin.PERSONAL.value,
            "owned by a person who belongs to no team: add them to a team (User.spec.memberOf) "
            "or name a Group as owner",
        ),
        (Entity.accountable_user_id.is_(None), f"no accountable person: {FIX_ACCOUNTABLE}"),
        (
            sa.and_(~sa.exists(any_member), ~sa.exists(in_lineage)),
            "the owning team has no members",
        ),
        (
            ~sa.exists(in_lineage),
            "the accountable person is no longer in the owning team (nor a team above it)",
        ),
        (
            sa.exists(dangling),
            "relations to entities not in the catalog yet: import them, or fix the reference",
        ),
        else_="",
    )
    return (
        sa.select(Entity, reason.label("reason"))
        .outerjoin(owner, owner.id == Entity.owner_team_id)
        .where(reason != "")
    )


def hygiene(
    *,
    session: Session,
    after_id: int | None,
    limit: int,
    owner_team_ids: Collection[int] | None = None,
) -> list[tuple[Entity, str]]:
    """Entities without a valid owner, each with what is wrong and how to fix it: no owning team,
    a placeholder or personal team standing in, no accountable person, an accountable person no
    longer in the owning team (or a team above it), or relations that are still unresolved.
    ``owner_team_ids`` keeps those owned by these teams (the home page's "what your teams own")."""
    query = _hygiene_query()
    if owner_team_ids is not None:
        query = query.where(Entity.owner_team_id.in_(list(owner_team_ids)))
    rows = session.execute(keyset(query, Entity.id, position=after_id, limit=limit)).all()
    return [(entity, str(why)) for entity, why in rows]


def people_hygiene(
    *, session: Session, after_id: int | None = None, limit: int = 500
) -> list[tuple[User, str]]:
    """People who cannot sign in or be notified: imported without an e-mail address."""
    users = people.users_without_email(session=session, after_id=after_id, limit=limit)
    return [
        (
            user,
            "no e-mail address: cannot sign in or be notified until one is set (a later file, "
            "an admin, or SSO)",
        )
        for user in users
    ]


def unresolved_of(*, session: Session, entity_id: int) -> list[UnresolvedRelation]:
    return unresolved.of(session, entity_id)


@dataclass(frozen=True)
class Ownership:
    entity: Entity
    team: Team | None
    accountable: User | None
    lead: User | None
    problems: list[str]


def lineage_ids(session: Session, team_id: int) -> list[int]:
    """The team and its ancestors, nearest first."""
    return [team_id] + [t.id for t in identity.ancestors_of(session=session, team_id=team_id)]


def who_owns(*, session: Session, ref: str) -> Ownership:
    entity = get_by_ref(session=session, ref=ref)
    team = people.find_team(session=session, team_id=entity.owner_team_id)
    accountable = people.find_user(session=session, user_id=entity.accountable_user_id)
    lead = identity.nearest_lead(session=session, team_id=team.id) if team is not None else None
    problems = []
    if team is None:
        problems.append("no owning team")
    elif team.origin == TeamOrigin.PLACEHOLDER.value:
        problems.append(f"the owning team {team.slug} is a placeholder for a Group not imported")
    elif team.origin == TeamOrigin.PERSONAL.value:
        problems.append(f"the owning team {team.slug} stands for a person in no team")
    if accountable is None:
        problems.append(f"no accountable person: {FIX_ACCOUNTABLE}")
    elif team is not None:
        teams = lineage_ids(session, team.id)
        if not people.is_member(session=session, user_id=accountable.id, team_ids=teams):
            problems.append(f"{accountable.email} is no longer a member of {team.slug}")
    if accountable is not None and not accountable.is_active:
        problems.append(f"{accountable.email} is deactivated")
    if accountable is not None and not identity.has_email(accountable.email):
        problems.append("the accountable person has no e-mail address")
    return Ownership(
        entity=entity,
        team=team,
        accountable=accountable,
        lead=lead,
        problems=problems,
    )


# -- writing ---------------------------------------------------------------------------------
# What the audit log records of an entity (before and after a change), by every path.
SNAPSHOT_FIELDS = (
    "title",
    "description",
    "type",
    "owner_team_id",
    "accountable_user_id",
    "lifecycle",
    "tier",
    "tags",
    "labels",
    "annotations",
    "links",
    "cost_centre",
    "version",
    "spec_extra",
    "owner_ref",
)


def snapshot(
    entity: Entity, relations: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    return snapshot_of(stored_values(entity), relations)


def snapshot_of(
    values: Mapping[str, Any], relations: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """The audit shape of an entity's row values, with its relations by API field name."""
    data = {name: values.get(name) for name in SNAPSHOT_FIELDS}
    if relations is not None:
        data |= {key: sorted(value) for key, value in relations.items()}
    return data


def content_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


Key = tuple[str, str, str]  # (kind, namespace, lower-case name)
# Not hashed: where an entity is, not what it says (its key) and where it came from.
UNHASHED = frozenset({"kind", "namespace", "name_key"})


def stored_values(entity: Entity) -> dict[str, Any]:
    """An entity's content as the row stores it: the shape the content hash and the search
    text are computed from, by the API and by bulk imports alike."""
    return {
        "kind": entity.kind,
        "namespace": entity.namespace,
        "name": entity.name,
        "name_key": entity.name_key,
        "title": entity.title,
        "description": entity.description,
        "type": entity.type,
        "owner_team_id": entity.owner_team_id,
        "accountable_user_id": entity.accountable_user_id,
        "lifecycle": entity.lifecycle,
        "tier": entity.tier,
        "tags": list(entity.tags),
        "labels": dict(entity.labels),
        "annotations": dict(entity.annotations),
        "links": [dict(link) for link in entity.links],
        "cost_centre": entity.cost_centre,
        "version": entity.version,
        "spec_extra": dict(entity.spec_extra or {}),
        "owner_ref": entity.owner_ref,
        "document": entity.document,
    }


def entity_hash(values: Mapping[str, Any], relations: Iterable[tuple[str, Key]]) -> str:
    """A digest of everything stored for an entity but where it came from. Relations count by
    the reference they name, resolved or not: a target that is deleted leaves an unresolved
    relation behind, which resolves again when the target comes back. The API and the
    Backstage import both hash with this, so an entity registered by hand and found unchanged
    in an imported file is not rewritten."""
    hashed = {k: v for k, v in values.items() if k not in UNHASHED}
    hashed["relations"] = sorted(
        f"{relation} {k}:{ns}/{name}" for relation, (k, ns, name) in relations
    )
    return content_hash(hashed)


def normal_links(links: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Links as stored: url, title, type (one of LINK_TYPES, else "other") and icon, each
    present, whether they came from the API, a page, the CLI or an imported file."""
    return [
        {
            "url": link["url"],
            "title": link.get("title") or "",
            "type": link.get("type") if link.get("type") in LINK_TYPES else "other",
            "icon": link.get("icon"),
        }
        for link in links
    ]


def normal_tags(tags: Iterable[str]) -> list[str]:
    """Tags as stored: each once, sorted."""
    return sorted(set(tags))


def search_text(values: Mapping[str, Any]) -> str:
    """What catalog search indexes for an entity (from :func:`stored_values`' shape)."""
    parts = [
        values["kind"],
        values["namespace"],
        values["name"],
        values["title"],
        values["description"],
        values["type"] or "",
        *values["tags"],
    ]
    return " ".join(p for p in parts if p)


@dataclass
class Resolved:
    team: Team
    accountable: User | None  # None while neither the team nor a team above it has a lead
    relations: dict[str, list[int]]  # relation type → target ids
    relation_refs: dict[str, list[str]]  # API field → canonical refs (for audit and export)
    relation_keys: list[tuple[str, Key]]  # (relation type, target key): what the hash reads


def resolve(
    session: Session,
    data: EntityInput,
    *,
    lookup: Mapping[tuple[str, str, str], int] | None = None,
    prefix: str = "body",
) -> Resolved:
    """Check an input's owner, accountable person and references; collect every error."""
    errors: list[FieldError] = []
    team = people.find_team_by_slug(session=session, slug=data.owner)
    accountable: User | None = None
    if team is None:
        errors.append(FieldError(f"{prefix}.owner", f"no team with slug {data.owner!r}"))
    else:
        if data.accountable:
            accountable = identity.get_user_by_email(session=session, email=data.accountable)
            if accountable is None:
                errors.append(
                    FieldError(f"{prefix}.accountable", f"no user with email {data.accountable}")
                )
            elif not people.is_member(
                session=session, user_id=accountable.id, team_ids=lineage_ids(session, team.id)
            ):
                errors.append(
                    FieldError(
                        f"{prefix}.accountable",
                        f"{accountable.email} is not a member of the owning team {team.slug}",
                    )
                )
        else:
            accountable = identity.nearest_lead(session=session, team_id=team.id)
    relations: dict[str, list[int]] = {}
    relation_refs: dict[str, list[str]] = {}
    relation_keys: list[tuple[str, Key]] = []
    wanted: list[
        tuple[str, str, str | None, str]
    ] = []  # (api field, relation type, default kind, text)
    for api_field, (relation_type, default_kind) in RELATION_FIELDS.items():
        for text in getattr(data, api_field):
            wanted.append((api_field, relation_type, default_kind, text))
    if data.system:
        wanted.append(("system", RelationType.PART_OF.value, "system", data.system))
    if data.domain:
        wanted.append(("domain", RelationType.PART_OF.value, "domain", data.domain))
    counters: dict[str, int] = {}
    for api_field, relation_type, default_kind, text in wanted:
        index = counters.get(api_field, 0)
        counters[api_field] = index + 1
        where = f"{prefix}.{api_field}" + (f".{index}" if api_field in RELATION_FIELDS else "")
        if default_kind is None and ":" not in text and lookup is None:
            # Typed by a person (API, form): a bare name means the one entity of that name,
            # whatever its kind, and a miss names the closest ones.
            try:
                target = resolve_ref.resolve(
                    session=session, text=text, field=where, default_namespace=data.namespace
                )
            except (ValidationFailed, NotFound) as exc:
                errors.extend(exc.errors or [FieldError(where, exc.detail)])
                continue
            ref = Ref(kind=target.kind, namespace=target.namespace, name=target.name)
            target_id: int | None = target.id
        else:
            try:
                ref = parse_ref(
                    text,
                    default_kind=default_kind,
                    default_namespace=data.namespace.lower(),
                    field=where,
                )
            except ValidationFailed as exc:
                errors.extend(exc.errors)
                continue
            target_id = lookup.get(ref.key) if lookup is not None else None
            if target_id is None:
                found = find(session, ref)
                target_id = found.id if found is not None else None
        if target_id is None:
            hint = resolve_ref.did_you_mean(session=session, name=ref.name)
            errors.append(FieldError(where, f"no catalog entity {ref}{hint}"))
            continue
        relations.setdefault(relation_type, []).append(target_id)
        relation_refs.setdefault(api_field, []).append(str(ref))
        relation_keys.append((relation_type, ref.key))
    if errors:
        raise ValidationFailed(
            "; ".join(f"{e.field}: {e.reason}" for e in errors[:5]), errors=errors
        )
    assert team is not None
    return Resolved(
        team=team,
        accountable=accountable,
        relations=relations,
        relation_refs=relation_refs,
        relation_keys=relation_keys,
    )


def validate_shape(
    data: EntityInput, *, name_rules: Mapping[str, str] | None, prefix: str = "body"
) -> None:
    """Field checks that need no database."""
    errors: list[FieldError] = []
    for value, where, what in (
        (data.name, f"{prefix}.name", "name"),
        (data.namespace, f"{prefix}.namespace", "namespace"),
    ):
        try:
            check_name(value, where, what)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if data.kind not in {k.value for k in Kind}:
        errors.append(
            FieldError(f"{prefix}.kind", f"must be one of {', '.join(k.value for k in Kind)}")
        )
    if data.lifecycle not in {item.value for item in Lifecycle}:
        errors.append(
            FieldError(f"{prefix}.lifecycle", "must be experimental, production or deprecated")
        )
    if isinstance(data.tier, bool) or not isinstance(data.tier, int) or not 1 <= data.tier <= 4:
        errors.append(FieldError(f"{prefix}.tier", "must be 1 (most critical) to 4"))
    for index, link in enumerate(data.links):
        if not str(link.get("url", "")).lower().startswith(("https://", "http://")):
            errors.append(
                FieldError(f"{prefix}.links.{index}.url", "links must be http or https addresses")
            )
    for index, tag in enumerate(data.tags):
        try:
            check_tag(tag, f"{prefix}.tags.{index}")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if not errors:
        try:
            check_policy(
                data.kind, data.name, data.owner.strip().lower(), name_rules, f"{prefix}.name"
            )
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(
            "; ".join(f"{e.field}: {e.reason}" for e in errors[:5]), errors=errors
        )


def _apply(entity: Entity, data: EntityInput, resolved: Resolved) -> None:
    entity.title = data.title
    entity.description = data.description
    entity.type = data.type
    entity.owner_team_id = resolved.team.id
    entity.accountable_user_id = resolved.accountable.id if resolved.accountable else None
    entity.lifecycle = data.lifecycle
    entity.tier = data.tier
    entity.tags = normal_tags(data.tags)
    entity.labels = dict(data.labels or {})
    entity.annotations = dict(data.annotations or {})
    entity.links = normal_links(data.links)
    entity.cost_centre = data.cost_centre
    entity.version = data.version
    entity.spec_extra = dict(data.spec_extra or {})


def _write_dependents(session: Session, entity: Entity, resolved: Resolved, *, fresh: bool) -> None:
    if not fresh:
        session.execute(sa.delete(Relation).where(Relation.source_id == entity.id))
        session.execute(sa.delete(EntityTag).where(EntityTag.entity_id == entity.id))
    rows = {
        (entity.id, relation_type, target)
        for relation_type, targets in resolved.relations.items()
        for target in targets
    }
    if rows:
        session.execute(
            sa.insert(Relation),
            [{"source_id": s, "type": t, "target_id": d} for s, t, d in sorted(rows)],
        )
    if entity.tags:
        session.execute(
            sa.insert(EntityTag), [{"entity_id": entity.id, "tag": tag} for tag in entity.tags]
        )
    document = session.get(SearchDocument, entity.id)
    if document is None:
        session.add(SearchDocument(entity_id=entity.id, body=search_text(stored_values(entity))))
    else:
        document.body = search_text(stored_values(entity))


def create(
    *,
    session: Session,
    actor: Actor,
    data: EntityInput,
    name_rules: Mapping[str, str] | None = None,
    provenance: str = Provenance.MANUAL.value,
    location: str | None = None,
) -> Entity:
    """Register an entity, owned by a team the actor may write for."""
    validate_shape(data, name_rules=name_rules)
    resolved = resolve(session, data)
    require_owned_write(actor, resolved.team.id, f"what team {resolved.team.slug} owns")
    ref = Ref(kind=data.kind, namespace=data.namespace.lower(), name=data.name)
    if find(session, ref) is not None:
        raise Conflict(
            f"{ref} exists already (names are unique per kind and namespace, ignoring case)"
        )
    entity = Entity(
        kind=data.kind,
        namespace=ref.namespace,
        name=data.name,
        name_key=data.name.lower(),
        provenance=provenance,
        location=location,
    )
    _apply(entity, data, resolved)
    entity.content_hash = entity_hash(stored_values(entity), resolved.relation_keys)
    session.add(entity)
    session.flush()
    _write_dependents(session, entity, resolved, fresh=True)
    # Relations that imports kept unresolved while this entity was missing resolve now.
    unresolved.resolve_arrivals(
        session, {(entity.kind, entity.namespace, entity.name_key): entity.id}
    )
    audit.record(
        session=session,
        actor=actor,
        action="catalog.create",
        object_type=OBJECT_TYPE,
        object_id=entity.ref,
        after=snapshot(entity, resolved.relation_refs),
    )
    events.emit(
        session=session,
        type="catalog.entity_created",
        subject=entity.ref,
        payload=EntityCreated(ref=entity.ref, kind=entity.kind, owner=resolved.team.slug),
    )
    return entity


def input_of(session: Session, entity: Entity) -> EntityInput:
    """The entity as input again (references as canonical text), for partial updates."""
    relations = relations_of(session=session, entity_id=entity.id)
    team = people.find_team(session=session, team_id=entity.owner_team_id)
    accountable = people.find_user(session=session, user_id=entity.accountable_user_id)
    part_of = relations["part_of"]
    return EntityInput(
        kind=entity.kind,
        name=entity.name,
        namespace=entity.namespace,
        owner=team.slug if team else "",
        accountable=accountable.email if accountable else None,
        title=entity.title,
        description=entity.description,
        type=entity.type,
        lifecycle=entity.lifecycle,
        tier=entity.tier,
        tags=list(entity.tags),
        labels=dict(entity.labels),
        annotations=dict(entity.annotations),
        links=list(entity.links),
        system=next((e.ref for e in part_of if e.kind == "system"), None),
        domain=next((e.ref for e in part_of if e.kind == "domain"), None),
        depends_on=[e.ref for e in relations["depends_on"]],
        provides_apis=[e.ref for e in relations["provides_apis"]],
        consumes_apis=[e.ref for e in relations["consumes_apis"]],
        cost_centre=entity.cost_centre,
        version=entity.version,
        spec_extra=dict(entity.spec_extra),
    )


def update(
    *,
    session: Session,
    actor: Actor,
    ref: str,
    changes: Mapping[str, Any],
    name_rules: Mapping[str, str] | None = None,
) -> Entity:
    """Change an entity; only fields present in ``changes`` change."""
    entity = get_by_ref(session=session, ref=ref)
    require_owned_write(actor, entity.owner_team_id, entity.ref)
    if entity.document is not None:
        raise Conflict(
            f"{entity.ref} is of a kind Lamplighter keeps as imported; change it in its file "
            f"({entity.location or 'unknown'}) and import that again"
        )
    current = input_of(session, entity)
    before = snapshot(entity, _relation_refs(current))
    for key, value in changes.items():
        if key == "owner" and value is not None:
            current.owner = value
            if "accountable" not in changes:
                current.accountable = None  # a new team: its lead, unless someone is named
        elif key == "links" and value is not None:
            current.links = [dict(v) for v in value]
        elif value is not None or key in {
            "type",
            "system",
            "domain",
            "cost_centre",
            "version",
            "accountable",
        }:
            setattr(current, key, value)
    validate_shape(current, name_rules=name_rules)
    resolved = resolve(session, current)
    if resolved.team.id != entity.owner_team_id:
        # A new owner takes on the entity's pages and approvals: only the receiving team (or an
        # SRE or admin) may accept it, not any member of the team that hands it over.
        require_owned_write(actor, resolved.team.id, f"what team {resolved.team.slug} owns")
    _apply(entity, current, resolved)
    if changes.get("owner") is not None:
        entity.owner_ref = None  # owned by a team now, as the change said
    entity.content_hash = entity_hash(stored_values(entity), resolved.relation_keys)
    session.flush()
    _write_dependents(session, entity, resolved, fresh=False)
    replaced = {
        RELATION_FIELDS[name][0] if name in RELATION_FIELDS else RelationType.PART_OF.value
        for name in changes
        if name in RELATION_FIELDS or name in {"system", "domain"}
    }
    if replaced:  # the change names these relations afresh: the unresolved ones go
        session.execute(
            sa.delete(UnresolvedRelation).where(
                UnresolvedRelation.source_id == entity.id, UnresolvedRelation.type.in_(replaced)
            )
        )
    after = snapshot(entity, resolved.relation_refs)
    audit.record(
        session=session,
        actor=actor,
        action="catalog.update",
        object_type=OBJECT_TYPE,
        object_id=entity.ref,
        before=before,
        after=after,
    )
    events.emit(
        session=session,
        type="catalog.entity_updated",
        subject=entity.ref,
        payload=EntityUpdated(ref=entity.ref, kind=entity.kind, owner=resolved.team.slug),
    )
    return entity


def _relation_refs(data: EntityInput) -> dict[str, list[str]]:
    refs = {field: list(getattr(data, field)) for field in RELATION_FIELDS if getattr(data, field)}
    if data.system:
        refs["system"] = [data.system]
    if data.domain:
        refs["domain"] = [data.domain]
    return refs


def delete(*, session: Session, actor: Actor, ref: str) -> None:
    entity = get_by_ref(session=session, ref=ref)
    require_owned_write(actor, entity.owner_team_id, entity.ref)
    before = snapshot(entity)
    entity_ref, kind = entity.ref, entity.kind
    unresolved.dangle_incoming(session, [entity.id])  # registered again, they come back
    session.delete(entity)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="catalog.delete",
        object_type=OBJECT_TYPE,
        object_id=entity_ref,
        before=before,
    )
    events.emit(
        session=session,
        type="catalog.entity_deleted",
        subject=entity_ref,
        payload=EntityDeleted(ref=entity_ref, kind=kind),
    )


def history(*, session: Session, ref: str, limit: int = 50) -> list[Any]:
    entity = get_by_ref(session=session, ref=ref)
    return list(
        audit.iter_filtered(
            session=session, object_type=OBJECT_TYPE, object_id=entity.ref, limit=limit
        )
    )


def owned_by(*, session: Session, team_id: int, after_id: int | None, limit: int) -> list[Entity]:
    return list_(
        session=session, filters=ListFilters(owner_team_id=team_id), after_id=after_id, limit=limit
    )


def owned_by_subtree(
    *, session: Session, team_id: int, after_id: int | None, limit: int
) -> list[Entity]:
    """What a team and every team within it own, keyset-paginated by id like :func:`owned_by`."""
    team_ids = identity.subtree_ids(session=session, team_id=team_id)
    if not team_ids:
        return []
    query = sa.select(Entity).where(Entity.owner_team_id.in_(team_ids))
    return list(session.scalars(keyset(query, Entity.id, position=after_id, limit=limit)))
