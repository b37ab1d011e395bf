"""Catalog REST routes."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from lamplighter.catalog import graph, search, service
from lamplighter.catalog.models import Entity
from lamplighter.catalog.refs import NAME_RE, OTHER_KIND_RE
from lamplighter.catalog.schemas import (
    DepNode,
    DepsRead,
    EntityBrief,
    EntityCreate,
    EntityRead,
    EntitySuggestion,
    EntityUpdate,
    OwnedEntity,
    OwnerRead,
    ResolvedRef,
    TeamBrief,
    UnresolvedRead,
)
from lamplighter.core import identity, people
from lamplighter.core.db import Database
from lamplighter.core.deps import CurrentActor, PageDep, SessionDep, SettingsDep, get_session
from lamplighter.core.models import Team
from lamplighter.core.pagination import encode_cursor, page_of
from lamplighter.core.schemas import AuditRead, Page, UserBrief

router = APIRouter(prefix="/catalog", tags=["catalog"])

KindQuery = Annotated[
    str | None,
    Query(
        pattern="^[A-Za-z][A-Za-z0-9]{0,62}$",
        description="service, api, resource, system, domain, platform, or a kind kept as "
        "imported (airesource, template, …)",
    ),
]
Text = Annotated[str | None, Query(max_length=63)]
KindsQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,62}(,[A-Za-z][A-Za-z0-9]{0,62}){0,19}$",
        description="Only these kinds, comma separated: service,api",
    ),
]
# An entity's reference in a path: the rules of catalog.refs, stated in the OpenAPI document.
KindPath = Annotated[str, Path(pattern=OTHER_KIND_RE.pattern, description="The entity's kind.")]
NamePath = Annotated[
    str, Path(min_length=1, max_length=63, pattern=NAME_RE.pattern, description="A catalog name.")
]


def brief(entity: Entity) -> EntityBrief:
    return EntityBrief(
        ref=entity.ref,
        kind=entity.kind,
        namespace=entity.namespace,
        name=entity.name,
        title=entity.title,
        type=entity.type,
        lifecycle=entity.lifecycle,
        tier=entity.tier,
    )


def _brief_of_row(row: Any) -> EntityBrief:
    return EntityBrief(
        ref=f"{row.kind}:{row.namespace}/{row.name}",
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        title=row.title,
        type=row.type,
        lifecycle=row.lifecycle,
        tier=row.tier,
    )


def owned(entity: Entity, team: Team | None) -> OwnedEntity:
    """An entity with the team that owns it (passed in, fetched for a whole page at once)."""
    return OwnedEntity(
        **brief(entity).model_dump(),
        owner=TeamBrief(id=team.id, slug=team.slug, name=team.name) if team else None,
    )


def read(
    session: Session, entity: Entity, team: Any = None, person: Any = None, *, loaded: bool = False
) -> EntityRead:
    """The full entity; pass ``loaded=True`` with the team and person already fetched."""
    if not loaded:
        team = people.find_team(session=session, team_id=entity.owner_team_id)
        person = people.find_user(session=session, user_id=entity.accountable_user_id)
    relations = service.relation_briefs(session=session, entity_id=entity.id)
    return EntityRead(
        **brief(entity).model_dump(),
        id=entity.id,
        description=entity.description,
        owner=TeamBrief(id=team.id, slug=team.slug, name=team.name) if team else None,
        accountable=UserBrief.model_validate(person) if person else None,
        tags=list(entity.tags),
        labels=dict(entity.labels),
        annotations=dict(entity.annotations),
        links=list(entity.links),
        cost_centre=entity.cost_centre,
        version=entity.version,
        provenance=entity.provenance,
        location=entity.location,
        relations={name: [_brief_of_row(row) for row in rows] for name, rows in relations.items()},
        unresolved=[
            UnresolvedRead(relation=service.RELATION_NAMES[u.type][0], ref=u.ref)
            for u in service.unresolved_of(session=session, entity_id=entity.id)
        ],
        created_at=entity.created_at,
        updated_at=entity.updated_at,
    )


def _filters(
    session: Session,
    kind: str | None,
    type_: str | None,
    owner: str | None,
    lifecycle: str | None,
    tier: int | None,
    tag: str | None,
) -> service.ListFilters:
    owner_id = identity.get_team(session=session, slug=owner).id if owner else None
    return service.ListFilters(
        kind=kind, type=type_, owner_team_id=owner_id, lifecycle=lifecycle, tier=tier, tag=tag
    )


@router.get("/entities", response_model=Page[EntityBrief])
def list_entities(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    kind: KindQuery = None,
    type: Text = None,
    owner: Annotated[str | None, Query(max_length=63, description="Team slug")] = None,
    lifecycle: Annotated[
        str | None, Query(pattern="^(experimental|production|deprecated)$")
    ] = None,
    tier: Annotated[int | None, Query(ge=1, le=4)] = None,
    tag: Text = None,
) -> Page[EntityBrief]:
    """Entities, filtered by kind, type, owning team, lifecycle, tier and tag."""
    filters = _filters(session, kind, type, owner, lifecycle, tier, tag)
    rows = service.list_(
        session=session, filters=filters, after_id=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda e: e.id)
    return Page[EntityBrief](items=[brief(e) for e in items], next_cursor=cursor)


@router.get("/search", response_model=Page[EntityBrief])
def search_entities(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Words to find (prefixes)")],
    kind: KindQuery = None,
    type: Text = None,
    owner: Annotated[str | None, Query(max_length=63)] = None,
    lifecycle: Annotated[
        str | None, Query(pattern="^(experimental|production|deprecated)$")
    ] = None,
    tier: Annotated[int | None, Query(ge=1, le=4)] = None,
    tag: Text = None,
) -> Page[EntityBrief]:
    """Full-text search over names, titles, descriptions and tags, best match first."""
    filters = _filters(session, kind, type, owner, lifecycle, tier, tag)
    offset = page.position or 0
    rows = search.search(
        session=session, text=q, filters=filters, offset=offset, limit=page.limit + 1
    )
    more = len(rows) > page.limit
    return Page[EntityBrief](
        items=[brief(e) for e in rows[: page.limit]],
        next_cursor=encode_cursor(offset + page.limit) if more else None,
    )


@router.get("/suggest", response_model=list[EntitySuggestion])
def suggest_entities(
    session: SessionDep,
    actor: CurrentActor,
    q: Annotated[str, Query(max_length=200, description="What was typed so far")] = "",
    kinds: KindsQuery = None,
) -> list[EntitySuggestion]:
    """At most ten entities whose name or title contains ``q``, exact and prefix matches first:
    what a reference picker offers. ``ref`` is the full reference to send back."""
    wanted = service.parse_kinds(kinds, field="query.kinds")
    return [
        EntitySuggestion(ref=s.ref, title=s.title, kind=s.kind, owner=s.owner)
        for s in service.suggest(session=session, text=q, kinds=wanted)
    ]


@router.get("/resolve", response_model=ResolvedRef)
def resolve_reference(
    session: SessionDep,
    actor: CurrentActor,
    ref: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9:/._-]+$",
            description="kind:namespace/name, kind:name, or a name that only one entity has",
        ),
    ],
    kinds: KindsQuery = None,
) -> ResolvedRef:
    """The entity a typed reference names. A bare name resolves when one entity has it; an
    unknown or ambiguous one is a 422 naming ``query.ref`` and the closest entities."""
    wanted = service.parse_kinds(kinds, field="query.kinds")
    entity = service.get_by_ref(session=session, ref=ref, field="query.ref", kinds=wanted)
    return ResolvedRef(
        ref=entity.ref,
        kind=entity.kind,
        namespace=entity.namespace,
        name=entity.name,
        title=entity.title,
    )


# /teams/… shares no prefix with /entities/{kind}/{namespace}/{name}, so the order is free.
@router.get("/teams/{slug}/entities", response_model=Page[OwnedEntity])
def team_entities(
    slug: str,
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    subtree: Annotated[
        bool, Query(description="Also what the teams within it own, at any depth.")
    ] = True,
) -> Page[OwnedEntity]:
    """What a team owns, each entity with its owning team: by default the team's and that of
    every team within it ("what does the payments department own"); ``subtree=false`` for the
    team's own."""
    team = identity.get_team(session=session, slug=slug)
    fetch = service.owned_by_subtree if subtree else service.owned_by
    rows = fetch(session=session, team_id=team.id, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda e: e.id)
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e in items])
    return Page[OwnedEntity](
        items=[owned(e, teams.get(e.owner_team_id or 0)) for e in items], next_cursor=cursor
    )


@router.post("/entities", response_model=EntityRead, status_code=status.HTTP_201_CREATED)
def create_entity(
    body: EntityCreate, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> EntityRead:
    """Register an entity. The owner is a team slug; the accountable person defaults to its lead."""
    data = service.EntityInput(
        **body.model_dump(exclude={"links"}), links=[link.model_dump() for link in body.links]
    )
    entity = service.create(
        session=session, actor=actor, data=data, name_rules=settings.catalog_name_rules
    )
    session.commit()
    return read(session, entity)


@router.get("/entities/{kind}/{namespace}/{name}", response_model=EntityRead)
async def read_entity(
    kind: KindPath, namespace: NamePath, name: NamePath, request: Request, actor: CurrentActor
) -> Response:
    """One entity with its owner, accountable person and direct relations both ways."""
    ref = f"{kind}:{namespace}/{name}"
    db: Database = request.app.state.db
    if db.is_sqlite:
        # On the event loop, with no session: a read in SQLite's WAL mode does not wait for
        # writers and takes less time than the hop to a worker thread (50-100 µs) would.
        with db.driver_connection() as connection:
            row, relations = service.read_view_sqlite(connection=connection, ref=ref)
    else:  # a PostgreSQL round trip must not hold up the event loop
        session = await get_session(request)
        row, relations = await run_in_threadpool(
            functools.partial(service.read_view, session=session, ref=ref)
        )
    return Response(entity_json(row, relations), media_type="application/json")


def entity_json(
    row: service.EntityRow, relations: Mapping[str, list[service.RelationRow]]
) -> bytes:
    """The entity GET's body: :class:`EntityRead`'s JSON, built from the view's rows by orjson.

    Building and validating an ``EntityRead`` from rows just read from its own tables, then
    serialising it, was a tenth of the request. The fields go in the schema's order, and
    ``tests/catalog/test_api.py`` holds these bytes equal to the schema's own serialisation
    (:func:`entity_read`), which also answers when orjson cannot (an integer beyond 64 bits).
    """
    document = {
        "ref": f"{row.kind}:{row.namespace}/{row.name}",
        "kind": row.kind,
        "namespace": row.namespace,
        "name": row.name,
        "title": row.title,
        "type": row.type,
        "lifecycle": row.lifecycle,
        "tier": row.tier,
        "id": row.id,
        "description": row.description,
        "owner": {"id": row.team_id, "slug": row.team_slug, "name": row.team_name}
        if row.team_id
        else None,
        "accountable": {
            "id": row.user_id,
            "email": row.user_email,
            "display_name": row.user_display_name,
        }
        if row.user_id
        else None,
        "tags": row.tags or [],
        "labels": row.labels or {},
        "annotations": row.annotations or {},
        "links": row.links or [],
        "cost_centre": row.cost_centre,
        "version": row.version,
        "provenance": row.provenance,
        "location": row.location,
        "relations": {
            key: [
                {
                    "ref": f"{r.kind}:{r.namespace}/{r.name}",
                    "kind": r.kind,
                    "namespace": r.namespace,
                    "name": r.name,
                    "title": r.title,
                    "type": r.type,
                    "lifecycle": r.lifecycle,
                    "tier": r.tier,
                }
                for r in rows
            ]
            for key, rows in relations.items()
            if key != service.UNRESOLVED
        },
        "unresolved": [
            {
                "relation": service.RELATION_NAMES[r.relation][0],
                "ref": f"{r.kind}:{r.namespace}/{r.name}",
            }
            for r in relations[service.UNRESOLVED]
        ],
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    try:
        return orjson.dumps(document, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return entity_read(row, relations).model_dump_json().encode()


def entity_read(
    row: service.EntityRow, relations: Mapping[str, list[service.RelationRow]]
) -> EntityRead:
    """The entity GET's document through the schema (see :func:`entity_json`)."""
    return EntityRead(
        ref=f"{row.kind}:{row.namespace}/{row.name}",
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        title=row.title,
        type=row.type,
        lifecycle=row.lifecycle,
        tier=row.tier,
        id=row.id,
        description=row.description,
        owner=TeamBrief(id=row.team_id, slug=row.team_slug, name=row.team_name)
        if row.team_id
        else None,
        accountable=UserBrief(
            id=row.user_id, email=row.user_email, display_name=row.user_display_name
        )
        if row.user_id
        else None,
        tags=list(row.tags or []),
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
        links=list(row.links or []),
        cost_centre=row.cost_centre,
        version=row.version,
        provenance=row.provenance,
        location=row.location,
        relations={
            key: [_brief_of_row(r) for r in rows]
            for key, rows in relations.items()
            if key != service.UNRESOLVED
        },
        unresolved=[
            UnresolvedRead(
                relation=service.RELATION_NAMES[r.relation][0],
                ref=f"{r.kind}:{r.namespace}/{r.name}",
            )
            for r in relations[service.UNRESOLVED]
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.patch("/entities/{kind}/{namespace}/{name}", response_model=EntityRead)
def update_entity(
    kind: KindPath,
    namespace: NamePath,
    name: NamePath,
    body: EntityUpdate,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
) -> EntityRead:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if body.links is not None:
        changes["links"] = [link.model_dump() for link in body.links]
    entity = service.update(
        session=session,
        actor=actor,
        ref=f"{kind}:{namespace}/{name}",
        changes=changes,
        name_rules=settings.catalog_name_rules,
    )
    session.commit()
    return read(session, entity)


@router.delete("/entities/{kind}/{namespace}/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_entity(
    kind: KindPath, namespace: NamePath, name: NamePath, session: SessionDep, actor: CurrentActor
) -> Response:
    service.delete(session=session, actor=actor, ref=f"{kind}:{namespace}/{name}")
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/entities/{kind}/{namespace}/{name}/owner", response_model=OwnerRead)
def who_owns(
    kind: KindPath, namespace: NamePath, name: NamePath, session: SessionDep, actor: CurrentActor
) -> OwnerRead:
    """Who is responsible: the owning team, the accountable person and the team lead."""
    found = service.who_owns(session=session, ref=f"{kind}:{namespace}/{name}")
    return OwnerRead(
        ref=found.entity.ref,
        owner=TeamBrief(id=found.team.id, slug=found.team.slug, name=found.team.name)
        if found.team
        else None,
        accountable=UserBrief.model_validate(found.accountable) if found.accountable else None,
        team_lead=UserBrief.model_validate(found.lead) if found.lead else None,
        problems=found.problems,
    )


@router.get("/entities/{kind}/{namespace}/{name}/deps", response_model=DepsRead)
def dependencies(
    kind: KindPath,
    namespace: NamePath,
    name: NamePath,
    session: SessionDep,
    actor: CurrentActor,
    reverse: Annotated[bool, Query(description="What depends on it (the blast radius).")] = False,
    depth: Annotated[int, Query(ge=1, le=graph.MAX_DEPTH)] = 3,
) -> DepsRead:
    """Transitive dependencies (or dependents with ``reverse=true``) up to ``depth`` levels."""
    root = service.get_by_ref(session=session, ref=f"{kind}:{namespace}/{name}")
    walk = graph.traverse(session=session, root_id=root.id, reverse=reverse, depth=depth)
    ids = {r.entity_id for r in walk.reached} | {root.id} | {i for c in walk.cycles for i in c}
    found = graph.entities(session, ids)
    return DepsRead(
        root=root.ref,
        direction="dependents" if reverse else "dependencies",
        depth=depth,
        nodes=[
            DepNode(
                ref=found[r.entity_id].ref,
                kind=found[r.entity_id].kind,
                title=found[r.entity_id].title,
                depth=r.depth,
                via=found[r.via_id].ref if r.via_id else None,
            )
            for r in walk.reached
        ],
        cycles=[[found[i].ref for i in cycle] for cycle in walk.cycles],
        truncated=walk.truncated,
    )


@router.get("/entities/{kind}/{namespace}/{name}/history", response_model=list[AuditRead])
def entity_history(
    kind: KindPath,
    namespace: NamePath,
    name: NamePath,
    session: SessionDep,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AuditRead]:
    """The entity's changes from the audit log, newest first."""
    return [
        AuditRead.model_validate(e)
        for e in service.history(session=session, ref=f"{kind}:{namespace}/{name}", limit=limit)
    ]


@router.get("/hygiene", response_model=Page[dict[str, Any]])
def ownership_hygiene(
    session: SessionDep, actor: CurrentActor, page: PageDep
) -> Page[dict[str, Any]]:
    """Entities with no valid owner, and why."""
    rows = service.hygiene(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda pair: pair[0].id)
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e, _ in items])
    return Page[dict[str, Any]](
        items=[
            {
                **brief(e).model_dump(),
                "owner": teams[e.owner_team_id].slug if e.owner_team_id in teams else None,
                "problem": why,
            }
            for e, why in items
        ],
        next_cursor=cursor,
    )


@router.get("/hygiene/people", response_model=Page[dict[str, Any]])
def people_hygiene(session: SessionDep, actor: CurrentActor, page: PageDep) -> Page[dict[str, Any]]:
    """People who cannot sign in or be notified (imported without an e-mail), and why."""
    rows = service.people_hygiene(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda pair: pair[0].id)
    return Page[dict[str, Any]](
        items=[
            {
                "id": user.id,
                "ref": f"user:{user.catalog_namespace}/{user.catalog_name}"
                if user.catalog_name
                else None,
                "display_name": user.display_name,
                "problem": why,
            }
            for user, why in items
        ],
        next_cursor=cursor,
    )
