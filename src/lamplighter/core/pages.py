"""HTML pages of the core: sign-in, home, teams, profile and tokens, audit log, jobs, errors.

Pages are thin adapters like the API routes: parse the form, call one service, commit once,
then redirect (303) so a reload never repeats a change. Every form works without JavaScript;
HTMX, when present, swaps a fragment instead of reloading the page.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import zoneinfo
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
import markupsafe
import orjson
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from lamplighter import __version__
from lamplighter.core import audit, identity, jobs
from lamplighter.core.authz import PRIVILEGED, can_write_owned, require_role
from lamplighter.core.context import Actor, request_info
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.deps import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    PageDep,
    SessionDep,
    SettingsDep,
    resolve_actor,
)
from lamplighter.core.errors import (
    FieldError,
    Forbidden,
    LamplighterError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    problem,
)
from lamplighter.core.models import User
from lamplighter.core.pagination import page_of
from lamplighter.core.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
FLASH_COOKIE = "ll_flash"
LOGIN_CSRF_COOKIE = "ll_login_csrf"
FLASH_MAX_AGE_S = 120
# Authenticated pages are never cached (a token shown once must not come back from a cache)
# and never framed (clickjacking of one-click forms).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}


@dataclass(frozen=True)
class Domain:
    path: str
    label: str
    summary: str
    built: bool = False


# The navigation, in DESIGN.md's order. When a domain ships its own pages, set built=True so
# the placeholder route below is not registered and cannot shadow the domain's router.
DOMAINS: tuple[Domain, ...] = (
    Domain(
        "/catalog",
        "Catalog",
        "Every service, API and resource, with its owning team, accountable person and dependencies.",
    ),
    Domain(
        "/tickets",
        "Tickets",
        "The journal of requests that still need a human, and the toil worth automating next.",
    ),
    Domain(
        "/selfservice",
        "Self-service",
        "Golden-path templates: create repositories, databases, topics and access grants yourself.",
    ),
    Domain(
        "/slos",
        "SLOs",
        "Service level objectives with error budgets and burn-rate alerts that decide whether a release may go out.",
    ),
    Domain(
        "/releases",
        "Releases",
        "Release gates, scorecards, deployments, change freezes and DORA keys.",
    ),
    Domain(
        "/alerts",
        "Alerts",
        "Alert intake, deduplication, grouping, routing to escalation policies, silences and heartbeats.",
    ),
    Domain(
        "/oncall",
        "On-call",
        "Schedules, rotations, overrides and escalation tiers, so alerts reach the right person.",
    ),
    Domain(
        "/incidents",
        "Incidents",
        "Incidents run by a playbook, and blameless retrospectives whose follow-ups get done.",
    ),
    Domain(
        "/automation",
        "Automation",
        "Runbooks and event-driven automation rules with safety limits.",
    ),
    Domain(
        "/reports",
        "Reports",
        "DORA keys, MTTA/MTTR, SLO compliance, toil and adoption of practices per team.",
    ),
)

PROBLEM_HELP: dict[str, str] = {
    "bad-request": "The request is malformed in a way that is not about one field. Check the detail.",
    "unauthorized": "No valid credentials came with the request: sign in, or send 'Authorization: Bearer <token>'.",
    "forbidden": "You are signed in but not allowed to do this. Owned objects are changed by their team's members, SREs and admins; viewers never write.",
    "not-found": "Nothing exists at that address, or it was deleted.",
    "conflict": "The change clashes with existing data, such as a duplicate name or a state that changed meanwhile.",
    "payload-too-large": "The request body is larger than this route accepts.",
    "validation-failed": "One or more fields are wrong. errors[] names each field and the reason.",
    "malformed-json": "The request body is not valid JSON.",
    "method-not-allowed": "This address exists but does not accept that HTTP method.",
    "unsupported-media-type": "Send the body in a content type this route accepts, usually application/json.",
    "csrf-failed": "A form was sent without this site's anti-forgery token, or with a stale one. Reload the page and send it again.",
    "internal-error": "Something went wrong on the server. The request id in the response helps operators find the cause.",
}


class CsrfFailed(Forbidden):
    slug = "csrf-failed"
    title = "CSRF check failed"


class _SignInRequired(Exception):
    """Raised for an anonymous GET; PageRoute answers with a redirect to the sign-in page."""


# -- templates -----------------------------------------------------------------------------
def _when(value: dt.datetime | None, tz: str = "UTC", short: bool = False) -> str:
    """Format a UTC timestamp in the viewer's time zone."""
    if value is None:
        return "—"
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d" if short else f"%Y-%m-%d %H:%M {local.tzname() or ''}").strip()


def _compact(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) and value else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _changes(diff: Mapping[str, Any] | None) -> list[tuple[str, str | None, str | None]]:
    """An audit diff as (field, before, after) rows; None where a side is absent."""
    before: Mapping[str, Any] = (diff or {}).get("before") or {}
    after: Mapping[str, Any] = (diff or {}).get("after") or {}
    keys = list(dict.fromkeys([*before, *after]))
    return [
        (
            key,
            _compact(before[key]) if key in before else None,
            _compact(after[key]) if key in after else None,
        )
        for key in keys
    ]


def _initials(name: str) -> str:
    parts = [p for p in name.replace("@", " ").replace(".", " ").split() if p]
    return "".join(p[0] for p in parts[:2]).upper() or "?"


def _label_cells(cells: str, columns: Iterable[str]) -> markupsafe.Markup:
    """Give each <td> of a row its column's name, which small screens show in front of the cell."""
    labels = iter(columns)
    cells = cells if isinstance(cells, markupsafe.Markup) else markupsafe.escape(cells)
    # Safe: the cells are already-escaped markup and each inserted label is escaped.
    return markupsafe.Markup(  # noqa: S704
        re.sub(
            r"<td(?=[\s>])",
            lambda _: f'<td data-label="{markupsafe.escape(next(labels, ""))}"',
            str(cells),
        )
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, changes=_changes, initials=_initials, label_cells=_label_cells)
    return env


TEMPLATES = Jinja2Templates(env=_environment())


# -- request helpers -------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """The viewer's own details, copied from the row so they survive a rollback or a closed session."""

    id: int
    email: str
    display_name: str
    time_zone: str
    role: str
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> Person:
        return cls(
            user.id, user.email, user.display_name, user.time_zone, user.role, user.created_at
        )


@dataclass(frozen=True)
class Viewer:
    """The signed-in person behind a page request."""

    actor: Actor
    user: Person


@dataclass
class FormState:
    """What the user typed, and what is wrong with it (field name → reason, or a form-level error)."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def blank_form(*names: str) -> FormState:
    """An empty form with these fields."""
    return FormState({name: "" for name in names})


def form_failed(
    values: dict[str, str],
    exc: LamplighterError,
    *,
    conflict_field: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> FormState:
    """Put each of the error's field errors next to its input; the rest goes on top of the form."""
    errors: dict[str, str] = {}
    leftovers: list[str] = []
    for error in exc.errors:
        name = error.field.rsplit(".", 1)[-1]
        name = (aliases or {}).get(name, name)
        if name in values:
            errors[name] = error.reason
        else:
            leftovers.append(f"{error.field}: {error.reason}")
    if exc.status == 409 and conflict_field and not errors:
        errors[conflict_field] = exc.detail
    return FormState(values, errors, "; ".join(leftovers) or (None if errors else exc.detail))


def _check_lengths(values: Mapping[str, str], limits: Mapping[str, int]) -> None:
    errors = [
        FieldError(f"body.{k}", f"use at most {n} characters")
        for k, n in limits.items()
        if len(values.get(k, "")) > n
    ]
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)


def is_htmx(request: Request) -> bool:
    """True when HTMX sent the request, so a fragment is the answer."""
    return request.headers.get("hx-request") == "true"


def _relative(request: Request, **params: str | None) -> str:
    """This page's path and query with some parameters replaced (None removes one)."""
    query = {k: v for k, v in request.query_params.items() if k not in params}
    query.update({k: v for k, v in params.items() if v is not None})
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def page_links(request: Request, cursor: str | None, position: int | None) -> dict[str, str | None]:
    """The next/first page URLs for the ``pager`` macro, keeping the page's filters."""
    return {
        "next_url": _relative(request, cursor=cursor) if cursor else None,
        "first_url": _relative(request, cursor=None) if position else None,
    }


def _safe_next(target: str | None) -> str:
    """Only a local path may follow sign-in; anything else (//host, https://…) goes home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(ch) < 32 for ch in target):
        return "/"
    return target


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.box
    return box


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int, path: str = "/"
) -> None:
    secure = _settings(request).cookie_secure
    response.set_cookie(
        name, value, max_age=max_age, path=path, httponly=True, samesite="lax", secure=secure
    )


def _set_flash(
    request: Request,
    response: Response,
    message: str,
    viewer: Viewer | None,
    secret: dict[str, str] | None = None,
) -> None:
    """A message for the next page, encrypted so nobody can forge or read it (it may carry a new token)."""
    data = {"message": message, "user_id": viewer.user.id if viewer else None, "secret": secret}
    _set_cookie(
        request,
        response,
        FLASH_COOKIE,
        _box(request).encrypt(orjson.dumps(data).decode()),
        max_age=FLASH_MAX_AGE_S,
    )


def _take_flash(request: Request, viewer: Viewer | None) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = orjson.loads(_box(request).decrypt(raw))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("user_id") != (viewer.user.id if viewer else None):
        return None
    return data


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    viewer: Viewer | None = None,
    status: int = 200,
    fragment: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Render a page (or, for HTMX, a fragment) with the chrome every page needs."""
    viewer = viewer or getattr(request.state, "viewer", None)  # error pages: whoever was resolved
    actor = viewer.actor if viewer else getattr(request.state, "actor", None)
    flash = None if fragment else _take_flash(request, viewer)
    base: dict[str, Any] = {
        "signed_in": actor is not None,
        "show_sign_in": request.url.path != "/login",
        "me_name": viewer.user.display_name if viewer else (actor.label if actor else ""),
        "me_id": viewer.user.id if viewer else None,
        "me_role": actor.role if actor else "",
        "privileged": actor is not None and actor.role in PRIVILEGED,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "tz": viewer.user.time_zone if viewer else "UTC",
        "domains": DOMAINS,
        "current_path": request.url.path,
        "version": __version__,
        "flash": flash,
        "now": utcnow(),
    }
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {**base, **context},
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )
    if not fragment and FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect_after_post(
    request: Request,
    url: str,
    message: str,
    viewer: Viewer | None,
    secret: dict[str, str] | None = None,
) -> Response:
    """Redirect after a successful POST, with a message for the next page."""
    response = _see_other(url)
    _set_flash(request, response, message, viewer, secret)
    return response


# -- authentication --------------------------------------------------------------------------
def _viewer(request: Request, session: SessionDep, settings: SettingsDep) -> Viewer:
    actor = resolve_actor(request, session, settings)
    if actor is None or actor.user_id is None:
        if request.method in SAFE_METHODS:
            raise _SignInRequired
        raise Unauthorized(
            "you are not signed in, or your session has ended; sign in and try again"
        )
    viewer = Viewer(
        actor=actor, user=Person.of(identity.get_user(session=session, user_id=actor.user_id))
    )
    request.state.viewer = viewer
    return viewer


def _check_csrf(request: Request, sent: str) -> None:
    expected = getattr(request.state, "csrf_token", None) or ""
    sent = sent or request.headers.get(CSRF_HEADER, "")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed(
            "the form did not carry this session's anti-forgery token; nothing was changed"
        )


def _writer(
    request: Request,
    viewer: Annotated[Viewer, Depends(_viewer)],
    csrf_token: Annotated[str, Form()] = "",
) -> Viewer:
    """A signed-in session whose form (or HTMX header) carries the session's CSRF token."""
    _check_csrf(request, csrf_token)
    return viewer


ViewerDep = Annotated[Viewer, Depends(_viewer)]
WriterDep = Annotated[Viewer, Depends(_writer)]
FormField = Annotated[str, Form()]
QueryText = Annotated[str, Query(max_length=200)]


def _problem_of(request: Request, exc: LamplighterError) -> dict[str, Any]:
    return problem(
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        instance=request.url.path,
        request_id=request_info.get().request_id,
    )


class PageRoute(APIRoute):
    """Pages always answer in HTML: a domain error becomes an error page, an anonymous GET a redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_page(request: Request) -> Response:
            try:
                return await handle(request)
            except _SignInRequired:
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _see_other(f"/login?next={quote(here, safe='')}")
            except LamplighterError as exc:
                return render_error_page(request, _problem_of(request, exc))

        return handle_page


router = APIRouter(include_in_schema=False, route_class=PageRoute)


def render_error_page(request: Request, body: dict[str, Any]) -> Response:
    """A problem document as an HTML page, or as an alert fragment for HTMX requests."""
    status = int(body.get("status", 500))
    back = request.url.path if request.method in SAFE_METHODS else "/"
    context = {"problem": body, "sign_in_url": f"/login?next={quote(back, safe='')}"}
    if is_htmx(request):
        headers = {"HX-Retarget": "#htmx-alerts", "HX-Reswap": "innerHTML"}
        return render(
            request, "core/_problem.html", context, status=status, fragment=True, headers=headers
        )
    return render(request, "core/error.html", context, status=status)


def problem_type_page(request: Request, slug: str, title: str | None) -> Response:
    """Describe a problem type; each problem document's ``type`` links here."""
    help_text = PROBLEM_HELP.get(slug, "Lamplighter does not know this problem type.")
    context = {"slug": slug, "title": title or "Unknown problem type", "help": help_text}
    return render(request, "core/problem_type.html", context, status=200 if title else 404)


# -- sign-in and sign-out ---------------------------------------------------------------------
def _login_page(
    request: Request, settings: Settings, *, target: str, form: FormState, status: int = 200
) -> Response:
    # Login CSRF is a double-submit cookie: there is no session yet to hold a token.
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not 20 <= len(token) <= 64:
        token = secrets.token_urlsafe(24)
    context = {
        "form": form,
        "next": target,
        "login_csrf": token,
        "oidc_enabled": settings.oidc_enabled,
    }
    response = render(request, "core/login.html", context, status=status)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login")
    return response


@router.get("/login")
def login_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    next_: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> Response:
    if resolve_actor(request, session, settings) is not None:
        return _see_other(_safe_next(next_))
    return _login_page(
        request, settings, target=_safe_next(next_), form=blank_form("email", "password")
    )


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: FormField = "",
    password: FormField = "",
    csrf_token: FormField = "",
    next_: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    target = _safe_next(next_)
    form = FormState({"email": email.strip(), "password": ""})
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        form.error = "This sign-in form has expired. Please sign in again."
        return _login_page(request, settings, target=target, form=form, status=403)
    if not email.strip():
        form.errors["email"] = "Enter your email address."
    if not password:
        form.errors["password"] = "Enter your password."  # noqa: S105 - a message, not a password
    if form.errors:
        return _login_page(request, settings, target=target, form=form, status=422)
    try:
        _, raw = identity.login_password(
            session=session, email=email, password=password, session_hours=settings.session_hours
        )
    except Unauthorized:
        session.rollback()
        form.errors["password"] = "Email or password is wrong."  # noqa: S105 - a message
        return _login_page(request, settings, target=target, form=form, status=401)
    session.commit()
    response = _see_other(target)
    _set_cookie(request, response, SESSION_COOKIE, raw, max_age=settings.session_hours * 3600)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request, session: SessionDep, settings: SettingsDep, csrf_token: FormField = ""
) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw and resolve_actor(request, session, settings) is not None:
        _check_csrf(request, csrf_token)
        identity.logout(session=session, raw=raw)
        session.commit()
    response = redirect_after_post(request, "/login", "You are signed out.", None)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )
    return response


# -- home ----------------------------------------------------------------------------------
def _greeting(time_zone: str) -> str:
    hour = utcnow().astimezone(zoneinfo.ZoneInfo(time_zone)).hour
    return (
        "Good morning"
        if 5 <= hour < 12
        else "Good afternoon"
        if 12 <= hour < 18
        else "Good evening"
    )


@router.get("/")
def home(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    teams = identity.list_teams(session=session, after_id=None, limit=50, user_id=viewer.user.id)
    recent = list(audit.iter_filtered(session=session, actor_id=f"user:{viewer.user.id}", limit=5))
    context = {"teams": teams, "recent": recent, "greeting": _greeting(viewer.user.time_zone)}
    return render(request, "core/home.html", context, viewer=viewer)


# -- teams ---------------------------------------------------------------------------------
TEAM_FIELDS = ("slug", "name", "lead_email", "description")
TEAM_LIMITS = {"slug": 63, "name": 200, "lead_email": 320, "description": 2000}


@router.get("/teams")
def teams_page(request: Request, session: SessionDep, viewer: ViewerDep, page: PageDep) -> Response:
    rows = identity.list_teams(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(rows, page.limit, lambda t: t.id)
    return render(
        request,
        "core/teams.html",
        {"teams": items, **page_links(request, cursor, page.position)},
        viewer=viewer,
    )


@router.get("/teams/new")
def new_team_form(request: Request, viewer: ViewerDep) -> Response:
    require_role(viewer.actor, *PRIVILEGED, action="creating teams")
    return render(request, "core/team_new.html", {"form": blank_form(*TEAM_FIELDS)}, viewer=viewer)


@router.post("/teams")
def create_team(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    slug: FormField = "",
    name: FormField = "",
    lead_email: FormField = "",
    description: FormField = "",
) -> Response:
    values = {"slug": slug, "name": name, "lead_email": lead_email, "description": description}
    try:
        _check_lengths(values, TEAM_LIMITS)
        team = identity.create_team(
            session=session,
            actor=viewer.actor,
            slug=slug,
            name=name,
            lead_email=lead_email,
            description=description.strip(),
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_failed(values, exc, conflict_field="slug")
        return render(
            request, "core/team_new.html", {"form": form}, viewer=viewer, status=exc.status
        )
    return redirect_after_post(
        request,
        f"/teams/{team.slug}",
        f"Team {team.name} created; {lead_email.strip()} leads it.",
        viewer,
    )


def _team(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    slug: str,
    *,
    form: FormState | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    """The team page, or only its members section when HTMX asked."""
    team = identity.get_team(session=session, slug=slug)
    context = {
        "team": team,
        "members": identity.list_members(session=session, team_id=team.id),
        "can_write": can_write_owned(viewer.actor, team.id),
        "form": form or blank_form("email"),
        "notice": notice,
        "lead_row": lambda member: "is-lead" if member.user_id == team.lead_user_id else "",
    }
    fragment = is_htmx(request) and request.method == "POST"
    template = "core/_members.html" if fragment else "core/team.html"
    return render(request, template, context, viewer=viewer, status=status, fragment=fragment)


@router.get("/teams/{slug}")
def team_page(request: Request, session: SessionDep, viewer: ViewerDep, slug: str) -> Response:
    return _team(request, session, viewer, slug)


@router.post("/teams/{slug}/members")
def add_member(
    request: Request, session: SessionDep, viewer: WriterDep, slug: str, email: FormField = ""
) -> Response:
    values = {"email": email.strip()}
    try:
        if not values["email"]:
            raise ValidationFailed.one("body.email", "enter the email of the person to add")
        _check_lengths(values, {"email": 320})
        member = identity.add_member(
            session=session, actor=viewer.actor, slug=slug, email=values["email"]
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        return _team(
            request,
            session,
            viewer,
            slug,
            form=form_failed(values, exc, conflict_field="email"),
            status=exc.status,
        )
    message = f"{member.user.display_name} is now a member."
    if is_htmx(request):
        return _team(request, session, viewer, slug, notice=message)
    return redirect_after_post(request, f"/teams/{slug}", message, viewer)


@router.post("/teams/{slug}/members/{user_id}/remove")
def remove_member(
    request: Request, session: SessionDep, viewer: WriterDep, slug: str, user_id: int
) -> Response:
    try:
        name = identity.get_user(session=session, user_id=user_id).display_name
        identity.remove_member(session=session, actor=viewer.actor, slug=slug, user_id=user_id)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        return _team(
            request, session, viewer, slug, form=form_failed({"email": ""}, exc), status=exc.status
        )
    message = f"{name} was removed from the team."
    if is_htmx(request):
        return _team(request, session, viewer, slug, notice=message)
    return redirect_after_post(request, f"/teams/{slug}", message, viewer)


# -- profile and API tokens ------------------------------------------------------------------
def _profile(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    *,
    form: FormState | None = None,
    new_token: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    """The profile page, or only its tokens section when HTMX asked."""
    fragment = is_htmx(request) and request.method == "POST"
    context = {
        "user": viewer.user,
        "teams": identity.list_teams(
            session=session, after_id=None, limit=100, user_id=viewer.user.id
        ),
        "tokens": identity.list_tokens(session=session, user_id=viewer.user.id),
        "form": form or blank_form("name", "expires_on"),
        "notice": notice,
        "new_token": new_token,
        "tomorrow": (utcnow() + dt.timedelta(days=1)).date().isoformat(),
    }
    if new_token is None and not fragment:
        # Shown once: the secret rides in the encrypted flash cookie, which this response deletes.
        flash = _take_flash(request, viewer)
        context["new_token"] = flash.get("secret") if flash else None
    template = "core/_tokens.html" if fragment else "core/profile.html"
    return render(request, template, context, viewer=viewer, status=status, fragment=fragment)


def _end_of_day(value: str, time_zone: str) -> dt.datetime | None:
    if not value.strip():
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValidationFailed.one("body.expires_on", "enter a date like 2030-12-31") from exc
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=zoneinfo.ZoneInfo(time_zone))


@router.get("/profile")
def profile(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    return _profile(request, session, viewer)


@router.post("/profile/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    name: FormField = "",
    expires_on: FormField = "",
) -> Response:
    values = {"name": name, "expires_on": expires_on}
    try:
        _check_lengths(values, {"name": 100})
        expires_at = _end_of_day(expires_on, viewer.user.time_zone)
        token, plaintext = identity.create_token(
            session=session,
            actor=viewer.actor,
            user_id=viewer.user.id,
            name=name,
            expires_at=expires_at,
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_failed(values, exc, aliases={"expires_at": "expires_on"})
        return _profile(request, session, viewer, form=form, status=exc.status)
    secret = {"name": token.name, "secret": plaintext}
    if is_htmx(request):
        return _profile(request, session, viewer, new_token=secret)
    return redirect_after_post(
        request, "/profile", f"Token {token.name} created.", viewer, secret=secret
    )


@router.post("/profile/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, session: SessionDep, viewer: WriterDep, token_id: int
) -> Response:
    try:
        token = identity.revoke_token(session=session, actor=viewer.actor, token_id=token_id)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        return _profile(
            request,
            session,
            viewer,
            form=form_failed(blank_form("name", "expires_on").values, exc),
            status=exc.status,
        )
    message = f"Token {token.name} revoked; it no longer works."
    if is_htmx(request):
        return _profile(request, session, viewer, notice=message)
    return redirect_after_post(request, "/profile", message, viewer)


# -- audit log -------------------------------------------------------------------------------
@router.get("/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    page: PageDep,
    actor: QueryText = "",
    action: QueryText = "",
    object_type: QueryText = "",
    object_id: QueryText = "",
) -> Response:
    values = {
        "actor": actor.strip(),
        "action": action.strip(),
        "object_type": object_type.strip(),
        "object_id": object_id.strip(),
    }
    actor_id = values["actor"]
    if "@" in actor_id:  # people think in emails; the log stores user:ID
        user = identity.get_user_by_email(session=session, email=actor_id)
        actor_id = f"user:{user.id}" if user else actor_id
    rows = list(
        audit.iter_filtered(
            session=session,
            actor_id=actor_id or None,
            object_type=values["object_type"] or None,
            object_id=values["object_id"] or None,
            action=values["action"] or None,
            before_id=page.position,
            limit=page.limit + 1,
        )
    )
    items, cursor = page_of(rows, page.limit, lambda e: e.id)
    context = {
        "entries": items,
        "form": FormState(values),
        "filtered": any(values.values()),
        **page_links(request, cursor, page.position),
    }
    return render(request, "core/audit.html", context, viewer=viewer)


# -- jobs ------------------------------------------------------------------------------------
JOB_STATUSES = ("dead", "queued", "running", "done", "cancelled", "all")


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    page: PageDep,
    status: QueryText = "dead",
    kind: QueryText = "",
) -> Response:
    require_role(viewer.actor, *PRIVILEGED, action="reading the job queue")
    if status not in JOB_STATUSES:
        raise ValidationFailed.one("query.status", f"must be one of {', '.join(JOB_STATUSES)}")
    rows = jobs.list_jobs(
        session=session,
        status=None if status == "all" else status,
        kind=kind.strip() or None,
        before_id=page.position,
        limit=page.limit + 1,
    )
    items, cursor = page_of(rows, page.limit, lambda j: j.id)
    context = {
        "job_rows": items,
        "status": status,
        "statuses": JOB_STATUSES,
        "form": FormState({"kind": kind}),
        **page_links(request, cursor, page.position),
    }
    return render(request, "core/jobs.html", context, viewer=viewer)


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, session: SessionDep, viewer: WriterDep, job_id: int) -> Response:
    require_role(viewer.actor, *PRIVILEGED, action="retrying jobs")
    job = jobs.retry_dead(session=session, job_id=job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    audit.record(
        session=session,
        actor=viewer.actor,
        action="job.retry",
        object_type="job",
        object_id=job.id,
        after={"status": job.status},
    )
    session.commit()
    return redirect_after_post(
        request,
        "/jobs",
        f"Job #{job.id} ({job.kind}) is queued again with a fresh set of tries.",
        viewer,
    )


# -- domains not built yet --------------------------------------------------------------------
def _coming_soon(domain: Domain) -> Callable[[Request, Viewer], Response]:
    def page(request: Request, viewer: ViewerDep) -> Response:
        return render(request, "core/coming_soon.html", {"domain": domain}, viewer=viewer)

    return page


def _register_placeholders(domains: Iterable[Domain]) -> None:
    for domain in domains:
        if not domain.built:
            router.add_api_route(
                domain.path,
                _coming_soon(domain),
                methods=["GET"],
                name=f"coming_soon{domain.path.replace('/', '_')}",
            )


_register_placeholders(DOMAINS)
