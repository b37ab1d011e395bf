"""The alert set-up pages: integrations (create one and see its key once, rotate the key,
delete) and silences and maintenance windows (create, expire). Thin adapters like the
frontline pages (``oncall.frontline_pages``), whose form helpers they share: parse the form,
call one alerting service function, commit once, redirect (303) with a message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.alerting import groups, integrations, silences
from lamplighter.alerting.models import Silence
from lamplighter.alerting.schemas import IntegrationIn, MaintenanceIn
from lamplighter.core import people, timefmt
from lamplighter.core.authz import can_write_owned
from lamplighter.core.db import utcnow
from lamplighter.core.deps import SessionDep, SettingsDep
from lamplighter.core.errors import (
    FieldError,
    Forbidden,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import Team, User
from lamplighter.core.pagination import decode_cursor, encode_cursor
from lamplighter.core.settings import Settings
from lamplighter.core.webui import (
    FormField,
    FormState,
    PageRoute,
    QueryText,
    Viewer,
    ViewerDep,
    WriterDep,
    check_lengths,
    page_links,
    redirect_after_post,
    render,
    take_flash,
)
from lamplighter.oncall import frontline_pages as frontline

router = APIRouter(include_in_schema=False, route_class=PageRoute)


# -- integrations -----------------------------------------------------------------------------
INTEGRATION_FIELDS = ("name", "kind", "entity", "owner_team", "heartbeat_interval_s", "mapping")


def _integrations_page(
    request: Request,
    session: Session,
    settings: Settings,
    viewer: Viewer,
    *,
    form: FormState | None = None,
    team: str = "",
    cursor: str = "",
    status: int = 200,
) -> Response:
    filters = FormState({"team": team.strip()})
    team_id, _ = frontline.filters(session, filters, entity=False)
    rows = []
    next_cursor = None
    if not filters.errors:
        found = integrations.list_(
            session, team_id=team_id, after=decode_cursor(cursor), limit=frontline.PAGE_SIZE + 1
        )
        if len(found) > frontline.PAGE_SIZE:
            found, next_cursor = (
                found[: frontline.PAGE_SIZE],
                encode_cursor(found[frontline.PAGE_SIZE - 1].id),
            )
        rows = [
            (integrations.read(session, i, settings), can_write_owned(viewer.actor, i.team_id))
            for i in found
        ]
    flash = take_flash(request, viewer) or {}
    blank = dict.fromkeys(INTEGRATION_FIELDS, "") | {
        "kind": "alertmanager",
        "owner_team": frontline.own_team(session, viewer),
    }
    context = {
        **frontline.helpers(),
        "rows": rows,
        "filters": filters,
        "form": form or FormState(blank),
        "kinds": frontline.KINDS,
        "teams": frontline.team_choices(session),
        "may_create": viewer.actor.role != "viewer",
        "secret": flash.get("secret") or {},
        **page_links(request, next_cursor, 1 if cursor else None),
    }
    code = 422 if filters.errors else status
    return render(request, "oncall/integrations.html", context, viewer=viewer, status=code)


@router.get("/alerts/integrations")
def integration_list(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    team: QueryText = "",
    cursor: QueryText = "",
) -> Response:
    """Where alerts come in: each team's integrations and their ingest URLs."""
    return _integrations_page(request, session, settings, viewer, team=team, cursor=cursor)


def _secret(settings: Settings, name: str, kind: str, key: str) -> dict[str, str]:
    """What the next page shows once: the key, and the URL to send alerts to."""
    return {"name": name, "key": key, "url": integrations.ingest_url(settings, kind, key)}


@router.post("/alerts/integrations")
def create_integration(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    name: FormField = "",
    kind: FormField = "",
    entity: FormField = "",
    owner_team: FormField = "",
    heartbeat_interval_s: FormField = "",
    mapping: FormField = "",
) -> Response:
    values = {
        "name": name,
        "kind": kind,
        "entity": entity.strip(),
        "owner_team": owner_team.strip(),
        "heartbeat_interval_s": heartbeat_interval_s.strip(),
        "mapping": mapping,
    }
    try:
        check_lengths(values, {"name": 100, "entity": 300, "owner_team": 63, "mapping": 20_000})
        data: dict[str, Any] = {
            "name": name.strip(),
            "kind": kind,
            "entity": values["entity"] or None,
            "team": None if values["entity"] else values["owner_team"] or None,
            "heartbeat_interval_s": values["heartbeat_interval_s"] or None,
        }
        if mapping.strip():
            try:
                data["mapping"] = orjson.loads(mapping)
            except orjson.JSONDecodeError as exc:
                raise ValidationFailed.one("body.mapping", f"not valid JSON: {exc}") from exc
        integration, key = integrations.create(
            session=session,
            actor=viewer.actor,
            data=frontline.validated(IntegrationIn, data, "integration"),
        )
        secret = _secret(settings, integration.name, integration.kind, key)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if isinstance(exc, NotFound) and not exc.errors:  # the entity is not in the catalog
            exc = ValidationFailed(exc.detail, errors=[FieldError("body.entity", exc.detail)])
        form = frontline.form_of(values, exc, {"team": "owner_team"})
        return _integrations_page(request, session, settings, viewer, form=form, status=exc.status)
    message = f"Created the integration {integration.name}. Copy its key now."
    return redirect_after_post(request, "/alerts/integrations", message, viewer, secret)


@router.post("/alerts/integrations/{integration_id:int}/rotate-key")
def rotate_integration_key(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    integration_id: int,
) -> Response:
    integration, key = integrations.rotate_key(
        session=session, actor=viewer.actor, integration_id=integration_id
    )
    secret = _secret(settings, integration.name, integration.kind, key)
    session.commit()
    message = f"A new key for {integration.name} is in force; the old one no longer works."
    return redirect_after_post(request, "/alerts/integrations", message, viewer, secret)


@router.get("/alerts/integrations/{integration_id:int}/delete")
def delete_integration_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    integration_id: int,
) -> Response:
    integration = integrations.get(session, integration_id)
    if not can_write_owned(viewer.actor, integration.team_id):
        raise Forbidden("only members of the owning team, SREs and admins may delete it")
    context = {"integration": integrations.read(session, integration, settings)}
    return render(request, "oncall/integrations_delete.html", context, viewer=viewer)


@router.post("/alerts/integrations/{integration_id:int}/delete")
def delete_integration(
    request: Request, session: SessionDep, viewer: WriterDep, integration_id: int
) -> Response:
    name = integrations.get(session, integration_id).name
    integrations.delete(session=session, actor=viewer.actor, integration_id=integration_id)
    session.commit()
    message = f"Deleted the integration {name}; its key no longer works."
    return redirect_after_post(request, "/alerts/integrations", message, viewer)


# -- silences and maintenance windows ---------------------------------------------------------
@dataclass(frozen=True)
class SilenceRow:
    silence: Silence
    team: Team | None
    entity: str | None
    author: User | None
    state: str
    may_expire: bool


def _state_of(silence: Silence, now: dt.datetime) -> str:
    if silence.expired_at is not None:
        return "expired"
    if silence.ends_at <= now:
        return "ended"
    return "scheduled" if silence.starts_at > now else "in force"


def _silences_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    forms: dict[str, FormState] | None = None,
    cursor: str = "",
    status: int = 200,
) -> Response:
    found = silences.list_(session, before=decode_cursor(cursor), limit=frontline.PAGE_SIZE + 1)
    next_cursor = None
    if len(found) > frontline.PAGE_SIZE:
        found, next_cursor = (
            found[: frontline.PAGE_SIZE],
            encode_cursor(found[frontline.PAGE_SIZE - 1].id),
        )
    teams = people.teams_by_id(session=session, ids=[s.team_id for s in found])
    authors = people.users_by_id(session=session, ids=[s.created_by_user_id for s in found])
    now = utcnow()
    rows = [
        SilenceRow(
            s,
            teams.get(s.team_id),
            groups.entity_ref(session, s.entity_id),
            authors.get(s.created_by_user_id or 0),
            _state_of(s, now),
            can_write_owned(viewer.actor, s.team_id),
        )
        for s in found
    ]
    blank = {
        "silence": FormState(
            {
                "team": frontline.own_team(session, viewer),
                "matchers": "",
                "ends_in": "2h",
                "reason": "",
            }
        ),
        "maintenance": FormState({"entity": "", "window_ends_in": "2h", "window_reason": ""}),
    }
    context = {
        **frontline.helpers(),
        "rows": rows,
        "forms": {**blank, **(forms or {})},
        "teams": frontline.team_choices(session),
        "may_create": viewer.actor.role != "viewer",
        **page_links(request, next_cursor, 1 if cursor else None),
    }
    return render(request, "oncall/silences.html", context, viewer=viewer, status=status)


@router.get("/alerts/silences")
def silence_list(
    request: Request, session: SessionDep, viewer: ViewerDep, cursor: QueryText = ""
) -> Response:
    """Silences and maintenance windows, the newest first, with the forms that make them."""
    return _silences_page(request, session, viewer, cursor=cursor)


@router.post("/alerts/silences")
def create_silence(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    team: FormField = "",
    matchers: FormField = "",
    ends_in: FormField = "",
    reason: FormField = "",
) -> Response:
    values = {"team": team.strip(), "matchers": matchers, "ends_in": ends_in, "reason": reason}
    try:
        silence = frontline.create_silence_from_form(
            session, viewer, team=values["team"], values=values
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = frontline.form_of(values, exc, {"ends_at": "ends_in"})
        return _silences_page(request, session, viewer, forms={"silence": form}, status=exc.status)
    until = timefmt.readable(silence.ends_at, viewer.user.time_zone)
    message = f"Silenced alerts matching {', '.join(silence.matchers)} until {until}."
    return redirect_after_post(request, "/alerts/silences", message, viewer)


@router.post("/alerts/maintenance")
def create_maintenance(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    entity: FormField = "",
    window_ends_in: FormField = "",
    window_reason: FormField = "",
) -> Response:
    values = {
        "entity": entity.strip(),
        "window_ends_in": window_ends_in,
        "window_reason": window_reason,
    }
    try:
        check_lengths(values, {"entity": 300, "window_ends_in": 20, "window_reason": 2000})
        ends_at = utcnow() + frontline.duration_of(window_ends_in, "window_ends_in")
        data = {"entity": values["entity"], "ends_at": ends_at, "reason": window_reason}
        window = silences.create_maintenance(
            session=session,
            actor=viewer.actor,
            data=frontline.validated(MaintenanceIn, data, "maintenance window"),
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if isinstance(exc, NotFound) and not exc.errors:
            exc = ValidationFailed(exc.detail, errors=[FieldError("body.entity", exc.detail)])
        aliases = {"ends_at": "window_ends_in", "reason": "window_reason"}
        form = frontline.form_of(values, exc, aliases)
        forms = {"maintenance": form}
        return _silences_page(request, session, viewer, forms=forms, status=exc.status)
    until = timefmt.readable(window.ends_at, viewer.user.time_zone)
    message = f"{values['entity']} is under maintenance until {until}: its alerts page nobody."
    return redirect_after_post(request, "/alerts/silences", message, viewer)


@router.post("/alerts/silences/{silence_id:int}/expire")
def expire_silence(
    request: Request, session: SessionDep, viewer: WriterDep, silence_id: int
) -> Response:
    silence = silences.expire(session=session, actor=viewer.actor, silence_id=silence_id)
    session.commit()
    what = "maintenance window" if silence.kind == "maintenance" else "silence"
    return redirect_after_post(request, "/alerts/silences", f"Ended the {what} now.", viewer)
