"""On-call REST routes: schedules, their final schedule, overrides, iCalendar import, feed URLs,
and who is on call now.

Reading is open to everyone signed in; changing a schedule, its overrides, its import and its
feed URL to its team's members, SREs and admins (``schedules.py`` decides). The feeds themselves
are served by ``feeds.py``, outside /api/v1, at the secret URLs these routes hand out.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, ValidationError
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.core import outbound, people
from lamplighter.core.context import Actor
from lamplighter.core.db import autocommit_reads, utcnow
from lamplighter.core.deps import CurrentActor, Id, PageDep, SessionDep, SettingsDep
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.pagination import encode_cursor, page_of
from lamplighter.core.schemas import Page, UserBrief
from lamplighter.core.settings import Settings
from lamplighter.core.web import BODY_LIMIT_KEY
from lamplighter.oncall import calendars, on_duty, schedules
from lamplighter.oncall.models import OnCallOverride, OnCallSchedule
from lamplighter.oncall.schedule_schemas import (
    FeedTokenRead,
    FinalRead,
    ImportIcsIn,
    ImportIcsRead,
    ImportProblem,
    LayerShiftsRead,
    OnCallNowRead,
    OverrideCreate,
    OverrideRead,
    ScheduleCreate,
    ScheduleRead,
    ScheduleUpdate,
    ShiftRead,
)
from lamplighter.oncall.shifts import Shift

router = APIRouter(prefix="/oncall", tags=["oncall"])

# A calendar of 2 MiB sent as JSON text grows with its escapes (every line end is "\r\n").
IMPORT_BODY_LIMIT = 4 * 1024 * 1024
DEFAULT_FINAL_DAYS = 7
CALENDAR_TYPES = ("text/calendar", "text/plain", "application/octet-stream")


def read(session: Session, schedule: OnCallSchedule) -> ScheduleRead:
    return ScheduleRead(**schedules.read(session=session, schedule=schedule))


TeamQuery = Annotated[
    str | None, Query(min_length=1, max_length=63, description="Owning team's slug")
]


@router.get("/schedules", response_model=Page[ScheduleRead])
def list_schedules(
    session: SessionDep, actor: CurrentActor, page: PageDep, team: TeamQuery = None
) -> Page[ScheduleRead]:
    """On-call schedules in the order they were made (of one team with ``team``)."""
    team_id = (
        schedules.team_by_slug(session=session, slug=team, field="query.team").id if team else None
    )
    rows = schedules.list_(
        session=session, team_id=team_id, after_id=page.position, limit=page.limit + 1
    )
    items, cursor = page_of(rows, page.limit, lambda s: s.id)
    return Page[ScheduleRead](items=[read(session, s) for s in items], next_cursor=cursor)


@router.post("/schedules", response_model=ScheduleRead, status_code=status.HTTP_201_CREATED)
def create_schedule(body: ScheduleCreate, session: SessionDep, actor: CurrentActor) -> ScheduleRead:
    """Define a team's schedule: layers of rotations, the lowest first."""
    schedule = schedules.create(session=session, actor=actor, data=body)
    session.commit()
    return read(session, schedule)


@router.get("/schedules/{schedule_id:int}", response_model=ScheduleRead)
def read_schedule(schedule_id: Id, session: SessionDep, actor: CurrentActor) -> ScheduleRead:
    return read(session, schedules.get(session=session, schedule_id=schedule_id))


@router.patch("/schedules/{schedule_id:int}", response_model=ScheduleRead)
def update_schedule(
    schedule_id: Id, body: ScheduleUpdate, session: SessionDep, actor: CurrentActor
) -> ScheduleRead:
    """Change a schedule; ``layers`` replaces every layer."""
    schedule = schedules.update(session=session, actor=actor, schedule_id=schedule_id, data=body)
    session.commit()
    return read(session, schedule)


@router.delete("/schedules/{schedule_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(schedule_id: Id, session: SessionDep, actor: CurrentActor) -> Response:
    schedules.delete(session=session, actor=actor, schedule_id=schedule_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _shift(shift: Shift, names: dict[int, str]) -> ShiftRead:
    user_id = int(shift.user)
    return ShiftRead(
        start=shift.start,
        end=shift.end,
        user_id=user_id,
        display_name=names.get(user_id, ""),
        layer=shift.layer,
    )


@router.get("/schedules/{schedule_id:int}/final", response_model=FinalRead)
def final_schedule(
    schedule_id: Id,
    session: SessionDep,
    actor: CurrentActor,
    start: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
    end: Annotated[
        AwareDatetime | None, Query(description="default: a week after start; at most 93 days")
    ] = None,
) -> FinalRead:
    """Who is on call over a range (overrides over the top layer with someone), with each
    layer's own shifts and the overrides, for a timeline."""
    start = start or utcnow()
    end = end or start + dt.timedelta(days=DEFAULT_FINAL_DAYS)
    return final_read(
        schedules.final(session=session, schedule_id=schedule_id, start=start, end=end)
    )


def final_read(view: schedules.FinalView) -> FinalRead:
    return FinalRead(
        schedule_id=view.schedule.id,
        start=view.start,
        end=view.end,
        final=[_shift(s, view.names) for s in view.final],
        layers=[
            LayerShiftsRead(name=name, kind=kind, shifts=[_shift(s, view.names) for s in shifts])
            for name, kind, shifts in view.layers
        ],
        overrides=[_shift(s, view.names) for s in view.overrides],
    )


# -- overrides -----------------------------------------------------------------------------------


def _overrides(session: Session, rows: list[OnCallOverride]) -> list[OverrideRead]:
    users = people.users_by_id(session=session, ids=[row.user_id for row in rows])
    return [
        OverrideRead(
            id=row.id,
            schedule_id=row.schedule_id,
            user=UserBrief.model_validate(users[row.user_id]),
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            reason=row.reason,
            created_by_user_id=row.created_by_user_id,
            created_at=row.created_at,
        )
        for row in rows
        if row.user_id in users
    ]


@router.post(
    "/schedules/{schedule_id:int}/overrides",
    response_model=OverrideRead,
    status_code=status.HTTP_201_CREATED,
)
def create_override(
    schedule_id: Id, body: OverrideCreate, session: SessionDep, actor: CurrentActor
) -> OverrideRead:
    """Put someone on call for a range, above every layer of the schedule."""
    row = schedules.create_override(
        session=session, actor=actor, schedule_id=schedule_id, data=body
    )
    session.commit()
    return _overrides(session, [row])[0]


@router.get("/schedules/{schedule_id:int}/overrides", response_model=Page[OverrideRead])
def list_overrides(
    schedule_id: Id,
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    ends_after: Annotated[
        AwareDatetime | None, Query(description="only those still running or to come then")
    ] = None,
) -> Page[OverrideRead]:
    """The schedule's overrides in the order they were made."""
    rows = schedules.list_overrides(
        session=session,
        schedule_id=schedule_id,
        ends_after=ends_after,
        after_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda o: o.id)
    return Page[OverrideRead](items=_overrides(session, items), next_cursor=cursor)


@router.delete(
    "/schedules/{schedule_id:int}/overrides/{override_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_override(
    schedule_id: Id, override_id: Id, session: SessionDep, actor: CurrentActor
) -> Response:
    schedules.delete_override(
        session=session, actor=actor, schedule_id=schedule_id, override_id=override_id
    )
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- iCalendar import and feed URLs --------------------------------------------------------------


async def _import_body(request: Request, layer: str | None) -> ImportIcsIn:
    """The JSON body, or a calendar uploaded as it is (``text/calendar``, ``?layer=``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type not in CALENDAR_TYPES:
        try:
            return ImportIcsIn.model_validate_json(raw)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed.one("body", "the calendar is not UTF-8 text") from exc
    try:
        return ImportIcsIn(content=text or None, **({"layer": layer} if layer else {}))
    except ValidationError as exc:
        # The upload is the body; its layer is a query parameter.
        errors = [
            {**e, "loc": ("query", "layer") if tuple(e["loc"]) == ("layer",) else ("body",)}
            for e in exc.errors()
        ]
        raise RequestValidationError(errors) from exc


@router.post(
    "/schedules/{schedule_id:int}/import-ics",
    response_model=ImportIcsRead,
    openapi_extra={
        BODY_LIMIT_KEY: IMPORT_BODY_LIMIT,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ImportIcsIn.model_json_schema()},
                "text/calendar": {"schema": {"type": "string", "minLength": 1}},
            },
        },
    },
)
async def import_ics(
    schedule_id: Id,
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    layer: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="the layer of a text/calendar upload"),
    ] = None,
) -> ImportIcsRead:
    """Import shifts from an ``.ics`` file as a layer (a new one on top, or an imported layer
    again): JSON ``{"layer", "content"}`` or ``{"layer", "url"}``, or the file itself as
    ``text/calendar`` with ``?layer=``. Events that cannot be read, or that name nobody known
    here, are left out and listed in ``problems``; the rest are imported. A file with nothing
    to import is refused and changes nothing."""
    await run_in_threadpool(_require_write, session, actor, schedule_id)
    body = await _import_body(request, layer)
    return await run_in_threadpool(_import, session, actor, settings, schedule_id, body)


def _require_write(session: Session, actor: Actor, schedule_id: int) -> None:
    schedules.require_write(session=session, actor=actor, schedule_id=schedule_id)


def _import(
    session: Session, actor: Actor, settings: Settings, schedule_id: int, body: ImportIcsIn
) -> ImportIcsRead:
    if body.url is not None:
        text = calendars.fetch_calendar(body.url, policy=outbound.Policy.from_settings(settings))
        source, field = body.url, "body.url"
    else:
        text, source, field = body.content or "", "upload", "body.content"
    outcome = calendars.import_ics(
        session=session,
        actor=actor,
        schedule_id=schedule_id,
        layer=body.layer,
        text=text,
        source=source,
        field=field,
    )
    session.commit()
    return ImportIcsRead(
        schedule_id=outcome.schedule_id,
        layer=outcome.layer,
        source=outcome.source,
        imported_shifts=outcome.imported_shifts,
        problems=[ImportProblem(event=p.event, reason=p.reason) for p in outcome.problems],
    )


@router.post("/schedules/{schedule_id:int}/feed-token", response_model=FeedTokenRead)
def schedule_feed_token(
    schedule_id: Id, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> FeedTokenRead:
    """A new secret URL for the schedule's iCalendar feed, shown this once; the previous URL
    stops working."""
    token = calendars.rotate_feed_token(session=session, actor=actor, schedule_id=schedule_id)
    session.commit()
    return FeedTokenRead(url=calendars.feed_url(settings.base_url, "schedule", token), token=token)


@router.post("/me/feed-token", response_model=FeedTokenRead)
def my_feed_token(session: SessionDep, actor: CurrentActor, settings: SettingsDep) -> FeedTokenRead:
    """A new secret URL for your own iCalendar feed of every shift you have, shown this once;
    the previous URL stops working."""
    token = calendars.rotate_user_feed_token(session=session, actor=actor)
    session.commit()
    return FeedTokenRead(url=calendars.feed_url(settings.base_url, "user", token), token=token)


# -- who is on call ------------------------------------------------------------------------------


def entity_id_of(session: Session, entity: str, field: str) -> int:
    """A catalog entity named by id or by reference (``service:default/checkout``, a bare name)."""
    if entity.isdigit() and len(entity) < 10:
        return int(entity)
    return catalog.id_by_ref(session=session, ref=entity, field=field)


def now_of(
    session: Session,
    *,
    schedule: int | None,
    team: str | None,
    entity: str | None,
    at: dt.datetime | None,
) -> list[on_duty.OnCallNow]:
    """``GET /oncall/now``'s question, as the CLI asks it too."""
    if sum(value is not None for value in (schedule, team, entity)) != 1:
        raise ValidationFailed.one("query.schedule", "ask about one schedule, team or entity")
    team_id = (
        schedules.team_by_slug(session=session, slug=team, field="query.team").id if team else None
    )
    entity_id = entity_id_of(session, entity, "query.entity") if entity is not None else None
    return on_duty.who_is_on_call(
        session, schedule_id=schedule, team_id=team_id, entity_id=entity_id, at=at
    )


@router.get("/now", response_model=Page[OnCallNowRead])
def on_call_now(
    session: SessionDep,
    actor: CurrentActor,
    page: PageDep,
    schedule: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="a schedule's id")
    ] = None,
    team: TeamQuery = None,
    entity: Annotated[
        str | None,
        Query(min_length=1, max_length=300, description="catalog reference or entity id"),
    ] = None,
    at: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
) -> Page[OnCallNowRead]:
    """Who is on call now (or ``at``) on a schedule, on a team's schedules, or for a catalog
    entity (its team's default escalation policy's first tier, else its team's schedules).
    Give one of ``schedule``, ``team`` and ``entity``."""
    autocommit_reads(session)  # asked by every status widget: no BEGIN and ROLLBACK
    found = now_of(session, schedule=schedule, team=team, entity=entity, at=at)
    first = page.position or 0
    items = found[first : first + page.limit]
    more = len(found) > first + page.limit
    return Page[OnCallNowRead](
        items=[OnCallNowRead(**vars(item)) for item in items],
        next_cursor=encode_cursor(first + page.limit) if more else None,
    )
