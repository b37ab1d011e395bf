"""The request types page: the managed list of what people ask for, each with its targets per
priority, default team, expected effort and the template that replaces it. SREs and admins
manage it; everyone may read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.authz import PRIVILEGED, require_role
from lamplighter.core.deps import SessionDep
from lamplighter.core.errors import (
    Conflict,
    FieldError,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.pagination import MAX_LIMIT
from lamplighter.core.webui import (
    FormState,
    PageRoute,
    QueryText,
    Viewer,
    ViewerDep,
    WriterDep,
    check_lengths,
    form_failed,
    redirect_after_post,
    render,
)
from lamplighter.tickets import service
from lamplighter.tickets.defaults import DEFAULT_TARGETS
from lamplighter.tickets.models import RequestType
from lamplighter.tickets.pages import PRIORITIES, format_minutes, parse_minutes, require_filled

router = APIRouter(include_in_schema=False, route_class=PageRoute)

TARGET_FIELDS = tuple(f"{p.lower()}_{k}" for p in PRIORITIES for k in ("first", "done"))
TYPE_FIELDS = (
    "slug", "name", "description", "default_team", "expected_effort", "template_name",
    "is_active", *TARGET_FIELDS,
)  # fmt: skip
TYPE_LIMITS = {"slug": 63, "name": 200, "description": 5_000, "template_name": 100}
TYPE_ALIASES = {"expected_effort_minutes": "expected_effort"}


def _types_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    editing: str | None = None,
    form: FormState | None = None,
    status: int = 200,
) -> Response:
    types = service.list_types(session=session, include_inactive=True)
    teams = identity.list_teams(session=session, after_id=None, limit=MAX_LIMIT)
    current = next((t for t in types if t.slug == editing), None)
    if editing and current is None:
        raise NotFound(f"no request type {editing!r}")
    team_slugs = {t.id: t.slug for t in teams}
    context = {
        "types": types,
        "row_class": lambda t: "" if t.is_active else "is-inactive",
        "team_slugs": team_slugs,
        "team_choices": [(t.slug, t.name) for t in teams],
        "editing": current,
        "form": form or _type_values(current, team_slugs),
        "priorities": PRIORITIES,
        "duration": format_minutes,
        "can_manage": viewer.actor.role in PRIVILEGED,
    }
    return render(request, "tickets/types.html", context, viewer=viewer, status=status)


def _type_values(request_type: RequestType | None, team_slugs: Mapping[int, str]) -> FormState:
    """The form for a type: its current values, or the shipped defaults for a new one."""
    kind = request_type or RequestType(slug="", name="", description="", is_active=True)
    targets: Mapping[str, Any] = kind.targets or DEFAULT_TARGETS
    values = {
        "slug": kind.slug,
        "name": kind.name,
        "description": kind.description,
        "default_team": team_slugs.get(kind.default_team_id or 0, ""),
        "expected_effort": format_minutes(kind.expected_effort_minutes or 30),
        "template_name": kind.template_name or "",
        "is_active": "on" if kind.is_active else "",
    }
    for priority in PRIORITIES:
        entry = targets.get(priority) or DEFAULT_TARGETS[priority]
        values[f"{priority.lower()}_first"] = format_minutes(entry["first_response_minutes"])
        values[f"{priority.lower()}_done"] = format_minutes(entry["done_minutes"])
    return FormState(values)


async def _type_form(request: Request) -> dict[str, str]:
    """The request type form's fields, as typed (the form has one pair of targets per priority)."""
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in TYPE_FIELDS}
    return {k: v if k == "description" else v.strip() for k, v in values.items()}


TypeForm = Annotated[dict[str, str], Depends(_type_form)]


def _save_type(
    request: Request, session: Session, viewer: Viewer, slug: str | None, values: dict[str, str]
) -> Response:
    """Create (slug None: it comes from the form) or change a request type from its form."""
    values = values | {"slug": (slug or values["slug"]).lower()}
    try:
        require_role(viewer.actor, *PRIVILEGED, action="managing request types")
        check_lengths(values, TYPE_LIMITS)
        if slug is None:
            require_filled(values, {"slug": "enter a slug, e.g. kafka-acl", "name": "enter a name"})
            if values["slug"] in {
                t.slug for t in service.list_types(session=session, include_inactive=True)
            }:
                raise Conflict(f"request type {values['slug']!r} exists already; edit it instead")
        errors: list[FieldError] = []
        minutes: dict[str, int] = {}
        for name in ("expected_effort", *TARGET_FIELDS):
            most = (30, "30 days") if name == "expected_effort" else (365, "a year")
            try:
                minutes[name] = parse_minutes(
                    values[name], f"body.{name}", most[0] * 24 * 60, most[1]
                )
            except ValidationFailed as exc:
                errors.extend(exc.errors)
        if errors:
            raise ValidationFailed(
                "; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors
            )
        request_type = service.save_type(
            session=session,
            actor=viewer.actor,
            slug=values["slug"],
            name=values["name"],
            description=values["description"],
            default_team=values["default_team"] or None,
            expected_effort_minutes=minutes["expected_effort"],
            targets={
                p: {
                    "first_response_minutes": minutes[f"{p.lower()}_first"],
                    "done_minutes": minutes[f"{p.lower()}_done"],
                }
                for p in PRIORITIES
            },
            template_name=values["template_name"] or None,
            is_active=values["is_active"] == "on",
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_failed(values, exc, conflict_field="slug", aliases=TYPE_ALIASES)
        return _types_page(request, session, viewer, editing=slug, form=form, status=exc.status)
    done = "saved" if slug else "created"
    return redirect_after_post(
        request, "/tickets/types", f"Request type {request_type.name} {done}.", viewer
    )


@router.get("/tickets/types")
def types_page(
    request: Request, session: SessionDep, viewer: ViewerDep, edit: QueryText = ""
) -> Response:
    if edit:
        require_role(viewer.actor, *PRIVILEGED, action="managing request types")
    return _types_page(request, session, viewer, editing=edit.strip().lower() or None)


@router.post("/tickets/types")
def create_type(
    request: Request, session: SessionDep, viewer: WriterDep, values: TypeForm
) -> Response:
    return _save_type(request, session, viewer, None, values)


@router.post("/tickets/types/{slug}")
def save_type(
    request: Request, session: SessionDep, viewer: WriterDep, slug: str, values: TypeForm
) -> Response:
    if slug not in {t.slug for t in service.list_types(session=session, include_inactive=True)}:
        raise NotFound(f"no request type {slug!r}; create it with the new type form")
    return _save_type(request, session, viewer, slug, values)
