"""SLO REST routes: definitions, status, history, built-in events, import and export, and the
error budget policy that release gates read.

Fixed paths (``/slos/export``, ``/slos/rules``, ``/slos/import``, ``/slos/release-policy``)
never meet ``/slos/{slo_id}``: the id is an ``int`` path convertor, so ``export`` is no id.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import Discriminator, Tag
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.deps import (
    CurrentActor,
    Id,
    SessionDep,
    SettingsDep,
    current_actor,
    get_session,
)
from lamplighter.core.pagination import MAX_LIMIT
from lamplighter.core.schemas import Page
from lamplighter.slo import apply, evaluate, jobs, service, status_view
from lamplighter.slo.models import Slo
from lamplighter.slo.schemas import (
    EventBatchIn,
    EventPointIn,
    EventsAccepted,
    FreezeExceptionIn,
    HistoryDay,
    ReleasePolicyRead,
    SloCreated,
    SloIn,
    SloRead,
    SloStatusRead,
)

router = APIRouter(prefix="/slos", tags=["slo"])

INGEST_KEY_HEADER = "X-Lamplighter-Ingest-Key"
IMPORT_BODY_LIMIT = 50 * 1024 * 1024  # as the catalog import: a thousand spec files at once
# A backfill batch: 100,000 points with their timestamps are about 6 MiB.
EVENTS_BODY_LIMIT = 8 * 1024 * 1024
YAML_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/yaml": {}}, "description": "YAML text"}
}
STATUSES = "healthy|warning|burning|exhausted|no data"


def read(session: Session, slo: Slo) -> SloRead:
    return SloRead(**service.read(session=session, slo=slo))


def _filters(
    session: Session,
    team: str | None,
    entity: str | None,
    status_: str | None,
    source: str | None,
) -> service.ListFilters:
    team_id = identity.get_team(session=session, slug=team).id if team else None
    entity_id = (
        catalog.get_by_ref(
            session=session, ref=entity, field="query.entity", kinds=service.ENTITY_KINDS
        ).id
        if entity
        else None
    )
    return service.ListFilters(team_id=team_id, entity_id=entity_id, status=status_, source=source)


TeamQuery = Annotated[str | None, Query(max_length=63, description="Owning team's slug")]
EntityQuery = Annotated[
    str | None, Query(min_length=1, max_length=300, description="Catalog reference")
]
StatusQuery = Annotated[str | None, Query(alias="status", pattern=f"^({STATUSES})$")]
SourceQuery = Annotated[str | None, Query(pattern="^(prometheus|events|probe)$")]


@router.get("", response_model=Page[SloRead])
def list_slos(
    session: SessionDep,
    actor: CurrentActor,
    team: TeamQuery = None,
    entity: EntityQuery = None,
    status_: StatusQuery = None,
    source: SourceQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, at most 500.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="From the previous page's next_cursor.")
    ] = None,
) -> Page[SloRead]:
    """SLOs with the least error budget left first (those without data last)."""
    filters = _filters(session, team, entity, status_, source)
    rows, next_cursor = service.list_(session=session, filters=filters, cursor=cursor, limit=limit)
    return Page[SloRead](items=[read(session, slo) for slo in rows], next_cursor=next_cursor)


@router.post("", response_model=SloCreated, status_code=status.HTTP_201_CREATED)
def create_slo(body: SloIn, session: SessionDep, actor: CurrentActor) -> SloCreated:
    """Define an SLO on a catalog entity. For the built-in events source the answer carries
    the ingest key, shown this once."""
    slo, key = service.create(session=session, actor=actor, data=body)
    session.commit()
    return SloCreated(**read(session, slo).model_dump(), ingest_key=key)


# -- fixed paths ----------------------------------------------------------------------------------


@router.post(
    "/import",
    response_model=apply.ApplyReport,
    openapi_extra={"x-max-body-bytes": IMPORT_BODY_LIMIT},
)
def import_slos(
    body: apply.ApplyRequest, session: SessionDep, actor: CurrentActor
) -> apply.ApplyReport:
    """Apply Sloth ``prometheus/v1`` specs and OpenSLO v1 files. A file with any problem writes
    nothing and its problems name file, document (from 1) and field; the others apply.
    ``prune`` deletes SLOs these files made before and define no more."""
    report = apply.apply(
        session=session,
        actor=actor,
        files=[(item.name, item.content) for item in body.files],
        prune=body.prune,
        dry_run=body.dry_run,
    )
    if body.dry_run:
        session.rollback()
    else:
        session.commit()
    return report


def all_slos(session: Session, filters: service.ListFilters) -> list[Slo]:
    """Every SLO the filters match, page by page."""
    found: list[Slo] = []
    cursor: str | None = None
    while True:
        rows, cursor = service.list_(
            session=session, filters=filters, cursor=cursor, limit=MAX_LIMIT
        )
        found.extend(rows)
        if cursor is None:
            return sorted(found, key=lambda slo: slo.id)


@router.get("/export", response_class=Response, responses=YAML_RESPONSE)
def export_slos(
    session: SessionDep,
    actor: CurrentActor,
    format: Annotated[str, Query(pattern="^openslo$", description="openslo")] = "openslo",
    team: TeamQuery = None,
    entity: EntityQuery = None,
) -> Response:
    """SLOs as OpenSLO v1 documents. SLOs on built-in events or probes have no query to
    write: they are listed in a comment at the top instead."""
    slos = all_slos(session, _filters(session, team, entity, None, None))
    return Response(content=apply.export_openslo(session, slos), media_type="application/yaml")


@router.get("/rules", response_class=Response, responses=YAML_RESPONSE)
def prometheus_rules(session: SessionDep, actor: CurrentActor) -> Response:
    """Prometheus recording and alerting rules for the Prometheus-backed SLOs, with Sloth's
    rule names and labels."""
    from lamplighter.slo import rules

    return Response(content=rules.render(session, slo_ids=None), media_type="application/yaml")


@router.get("/release-policy", response_model=ReleasePolicyRead)
def release_policy(
    session: SessionDep,
    actor: CurrentActor,
    entity: Annotated[str, Query(min_length=1, max_length=300, description="Catalog reference")],
) -> ReleasePolicyRead:
    """Whether the entity's non-emergency releases are frozen by a spent error budget."""
    return _policy(service.release_policy(session=session, entity_ref=entity))


def _policy(policy: service.ReleasePolicy) -> ReleasePolicyRead:
    return ReleasePolicyRead(
        entity=policy.entity,
        frozen=policy.frozen,
        reasons=list(policy.reasons),
        exception=policy.exception,
    )


@router.post(
    "/freeze-exceptions", response_model=ReleasePolicyRead, status_code=status.HTTP_201_CREATED
)
def grant_freeze_exception(
    body: FreezeExceptionIn, session: SessionDep, actor: CurrentActor
) -> ReleasePolicyRead:
    """Allow releases of a frozen entity for some hours, with a reason (audited)."""
    service.grant_exception(
        session=session, actor=actor, entity_ref=body.entity, reason=body.reason, hours=body.hours
    )
    session.commit()
    return _policy(service.release_policy(session=session, entity_ref=body.entity))


# -- one SLO --------------------------------------------------------------------------------------


@router.get("/{slo_id:int}", response_model=SloRead)
def read_slo(slo_id: Id, session: SessionDep, actor: CurrentActor) -> SloRead:
    return read(session, service.get(session=session, slo_id=slo_id))


@router.put("/{slo_id:int}", response_model=SloRead)
def update_slo(slo_id: Id, body: SloIn, session: SessionDep, actor: CurrentActor) -> SloRead:
    """Replace the SLO's definition; its counters and history stay."""
    slo, _ = service.update(session=session, actor=actor, slo_id=slo_id, data=body)
    session.commit()
    return read(session, slo)


@router.delete("/{slo_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_slo(slo_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    service.delete(session=session, actor=actor, slo_id=slo_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{slo_id:int}/status", response_model=SloStatusRead)
async def slo_status(slo_id: Id, request: Request, actor: CurrentActor) -> Response:
    """The last evaluation: attainment, budget, burn rates, alerts and the policy's state."""
    db: Database = request.app.state.db
    if db.is_sqlite:
        # On the event loop with no session, like the catalog's entity GET: a WAL read does not
        # wait for writers and costs less than the hop to a worker thread.
        with db.driver_connection() as connection:
            document = status_view.read_sqlite(connection=connection, slo_id=slo_id)
    else:  # a PostgreSQL round trip must not hold up the event loop
        session = await get_session(request)
        document = await run_in_threadpool(
            functools.partial(status_view.read, session=session, slo_id=slo_id)
        )
    return Response(status_view.to_json(document), media_type="application/json")


@router.post("/{slo_id:int}/evaluate", response_model=SloStatusRead)
def evaluate_slo(
    slo_id: Id, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> SloStatusRead:
    """Evaluate the SLO now (its owners, SREs and admins) and answer its new status."""
    slo = evaluate.evaluate_now(
        session=session,
        actor=actor,
        slo_id=slo_id,
        prometheus=jobs.prometheus_measure(settings),
    )
    session.commit()
    return SloStatusRead(**service.status_of(session=session, slo=slo))


@router.get("/{slo_id:int}/history", response_model=list[HistoryDay])
def slo_history(
    slo_id: Id,
    session: SessionDep,
    actor: CurrentActor,
    days: Annotated[int, Query(ge=1, le=365)] = 365,
) -> list[HistoryDay]:
    """Daily attainment, oldest first, for up to a year."""
    slo = service.get(session=session, slo_id=slo_id)
    return [HistoryDay(**day) for day in evaluate.history(session, slo, days)]


def _event_body_kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "points" in value else "point"


# One point or a batch, told apart by "points": errors then name the form that was meant
# (body.points.3.good), not every member of the union.
EventsBody = Annotated[
    Annotated[EventPointIn, Tag("point")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_event_body_kind),
]


async def ingest_caller(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=INGEST_KEY_HEADER,
            max_length=200,
            description="The SLO's ingest key; without it, a bearer token or a session",
        ),
    ] = None,
) -> Actor | None:
    """None when an ingest key is sent (the route checks it), else the signed-in caller."""
    if key:
        return None
    return await current_actor(request)


@router.post(
    "/{slo_id:int}/events",
    response_model=EventsAccepted,
    openapi_extra={"x-max-body-bytes": EVENTS_BODY_LIMIT},
    responses={
        401: {"description": "No valid ingest key and no credentials"},
        403: {"description": "Signed in, but not one who may change this SLO"},
    },
)
def push_events(
    slo_id: Id,
    body: EventsBody,
    session: SessionDep,
    caller: Annotated[Actor | None, Depends(ingest_caller)],
    key: Annotated[str | None, Header(alias=INGEST_KEY_HEADER, max_length=200)] = None,
) -> EventsAccepted:
    """Add good and total event counts to an SLO on built-in events: one point
    (``{"good": 98, "total": 100, "at": "…Z"}``) or a batch (``{"points": [...]}``). Send the
    SLO's key in ``X-Lamplighter-Ingest-Key``, or a token of someone who may change the SLO."""
    if caller is None:
        slo = service.check_ingest_key(session=session, slo_id=slo_id, key=key or "")
    else:
        slo = service.get(session=session, slo_id=slo_id)
        service.require_ingest_writer(session=session, actor=caller, slo=slo)
    points = body.points if isinstance(body, EventBatchIn) else [body]
    accepted, buckets = service.ingest(
        session=session, slo=slo, points=[(p.at, p.good, p.total) for p in points]
    )
    session.commit()
    return EventsAccepted(accepted=accepted, buckets=buckets)


@router.post("/{slo_id:int}/rotate-key", response_model=SloCreated)
def rotate_key(slo_id: Id, session: SessionDep, actor: CurrentActor) -> SloCreated:
    """A new ingest key (shown this once); the old one stops working at once."""
    key = service.rotate_ingest_key(session=session, actor=actor, slo_id=slo_id)
    session.commit()
    slo = service.get(session=session, slo_id=slo_id)
    return SloCreated(**read(session, slo).model_dump(), ingest_key=key)
