"""HTML pages of the core: sign-in, home, teams, profile and tokens, audit log, jobs.

Pages are thin adapters like the API routes: parse the form, call one service, commit once,
then redirect (303) so a reload never repeats a change. Every form works without JavaScript;
HTMX, when present, swaps a fragment instead of reloading the page.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from lamplighter.core import audit, identity, jobs, timefmt
from lamplighter.core import home as home_slots
from lamplighter.core.authz import PRIVILEGED, can_write_owned, require_role
from lamplighter.core.db import utcnow
from lamplighter.core.deps import (
    SESSION_COOKIE,
    BigId,
    Id,
    PageDep,
    SessionDep,
    SettingsDep,
    resolve_actor,
)
from lamplighter.core.errors import (
    Forbidden,
    LamplighterError,
    Unauthorized,
    ValidationFailed,
)
from lamplighter.core.models import Role
from lamplighter.core.pagination import page_of
from lamplighter.core.settings import Settings
from lamplighter.core.webui import (
    LOGIN_CSRF_COOKIE,
    TEAM_PANELS,
    FormField,
    FormState,
    PageRoute,
    QueryText,
    Viewer,
    ViewerDep,
    WriterDep,
    blank_form,
    check_csrf,
    check_lengths,
    form_failed,
    is_htmx,
    page_links,
    redirect_after_post,
    render,
    safe_next,
    see_other,
    set_cookie,
    take_flash,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)


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
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login")
    return response


@router.get("/login")
def login_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    next_: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> Response:
    if resolve_actor(request, session, settings) is not None:
        return see_other(safe_next(next_))
    return _login_page(
        request, settings, target=safe_next(next_), form=blank_form("email", "password")
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
    target = safe_next(next_)
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
    response = see_other(target)
    set_cookie(request, response, SESSION_COOKIE, raw, max_age=settings.session_hours * 3600)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request, session: SessionDep, settings: SettingsDep, csrf_token: FormField = ""
) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw and resolve_actor(request, session, settings) is not None:
        check_csrf(request, csrf_token)
        identity.logout(session=session, raw=raw)
        session.commit()
    response = redirect_after_post(request, "/login", "You are signed out.", None)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )
    return response


# -- home ----------------------------------------------------------------------------------
def greeting(now: dt.datetime, time_zone: str) -> str:
    """Good morning (05:00-11:59), afternoon (12:00-17:59) or evening (18:00-04:59), by the
    clock of the viewer's own time zone."""
    hour = now.astimezone(timefmt.zone_of(time_zone)).hour
    if 5 <= hour < 12:
        return "Good morning"
    return "Good afternoon" if 12 <= hour < 18 else "Good evening"


@router.get("/")
def home(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """What needs the viewer's attention now: each domain's panel, those with items first."""
    teams = identity.list_teams(session=session, after_id=None, limit=50, user_id=viewer.user.id)
    context = {
        "teams": teams,
        "panels": home_slots.panels_for(request, session, viewer),
        "first_run": home_slots.first_run(session, viewer),
        "greeting": greeting(utcnow(), viewer.user.time_zone),
    }
    return render(request, "core/home.html", context, viewer=viewer)


# -- people ----------------------------------------------------------------------------------
PERSON_FIELDS = ("email", "display_name", "role", "time_zone", "password")
PERSON_LIMITS = {"email": 320, "display_name": 200, "role": 20, "time_zone": 64, "password": 200}
ROLES = tuple(role.value for role in Role)


def _person_form(request: Request, viewer: Viewer, form: FormState, status: int = 200) -> Response:
    context = {"form": form, "roles": [(role, role.capitalize()) for role in ROLES]}
    return render(request, "core/person_new.html", context, viewer=viewer, status=status)


@router.get("/people/new")
def new_person_form(request: Request, viewer: ViewerDep) -> Response:
    """Add a person who can sign in with a password (admins)."""
    if not identity.may_create_users(viewer.actor):
        raise Forbidden("only admins add people")
    form = blank_form(*PERSON_FIELDS)
    form.values.update(role=Role.MEMBER.value, time_zone=viewer.user.time_zone)
    return _person_form(request, viewer, form)


@router.post("/people")
def create_person(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    email: FormField = "",
    display_name: FormField = "",
    role: FormField = "member",
    time_zone: FormField = "UTC",
    password: FormField = "",
) -> Response:
    values = {
        "email": email.strip(),
        "display_name": display_name.strip(),
        "role": role.strip(),
        "time_zone": time_zone.strip(),
        "password": password,
    }
    try:
        check_lengths(values, PERSON_LIMITS)
        if not values["email"]:
            raise ValidationFailed.one("body.email", "enter the e-mail address of the person")
        if not password:
            raise ValidationFailed.one(
                "body.password", "set a first password; they can change it on their profile"
            )
        user = identity.create_user(
            session=session,
            actor=viewer.actor,
            email=values["email"],
            display_name=values["display_name"],
            role=values["role"],
            time_zone=values["time_zone"] or "UTC",
            password=password,
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_failed({**values, "password": ""}, exc, conflict_field="email")
        return _person_form(request, viewer, form, status=exc.status)
    message = (
        f"{user.display_name} ({user.email}) can now sign in with the password you set; "
        "add them to a team next."
    )
    return redirect_after_post(request, "/people/new", message, viewer)


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
        check_lengths(values, TEAM_LIMITS)
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
        "ancestors": identity.ancestors_of(session=session, team_id=team.id),
        "children": identity.children_of(session=session, team_id=team.id),
        # Who stands in for a missing lead (approvals go there), named so nobody has to guess.
        "fallback_lead": None
        if team.lead is not None
        else identity.nearest_lead(session=session, team_id=team.id),
        "has_email": identity.has_email,
        "members": identity.list_members(session=session, team_id=team.id),
        "can_write": can_write_owned(viewer.actor, team.id),
        "form": form or blank_form("email"),
        "notice": notice,
        "lead_row": lambda member: "is-lead" if member.user_id == team.lead_user_id else "",
        "panels": [
            html
            for panel in TEAM_PANELS
            if (html := panel(request, session, team, viewer)) is not None
        ],
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
        check_lengths(values, {"email": 320})
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


@router.post("/teams/{slug}/members/{user_id:int}/remove")
def remove_member(
    request: Request, session: SessionDep, viewer: WriterDep, slug: str, user_id: Id
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
    password_form: FormState | None = None,
    new_token: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    """The profile page, or only its tokens section when HTMX asked."""
    fragment = is_htmx(request) and request.method == "POST" and password_form is None
    context = {
        "user": viewer.user,
        "teams": identity.list_teams(
            session=session, after_id=None, limit=100, user_id=viewer.user.id
        ),
        "tokens": identity.list_tokens(session=session, user_id=viewer.user.id),
        "form": form or blank_form("name", "expires_on"),
        "password_form": password_form or blank_form("current_password", "new_password"),
        "notice": notice,
        "new_token": new_token,
        "tomorrow": (utcnow() + dt.timedelta(days=1)).date().isoformat(),
    }
    if new_token is None and not fragment:
        # Shown once: the secret rides in the encrypted flash cookie, which this response deletes.
        flash = take_flash(request, viewer)
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
        check_lengths(values, {"name": 100})
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


@router.post("/profile/password")
def change_password(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    current_password: FormField = "",
    new_password: FormField = "",
) -> Response:
    """Set a new password; every other session of yours ends, this one stays."""
    try:
        check_lengths({"new_password": new_password}, {"new_password": 200})
        identity.update_user(
            session=session,
            actor=viewer.actor,
            user_id=viewer.user.id,
            password=new_password,
            current_password=current_password,
            keep_session=request.cookies.get(SESSION_COOKIE),
        )
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form = form_failed(
            {"current_password": "", "new_password": ""}, exc, aliases={"password": "new_password"}
        )
        return _profile(request, session, viewer, password_form=form, status=exc.status)
    message = "Password changed; your other sessions have been signed out."
    return redirect_after_post(request, "/profile", message, viewer)


@router.post("/profile/tokens/{token_id:int}/revoke")
def revoke_token(
    request: Request, session: SessionDep, viewer: WriterDep, token_id: Id
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


@router.post("/jobs/{job_id:int}/retry")
def retry_job(request: Request, session: SessionDep, viewer: WriterDep, job_id: BigId) -> Response:
    job = jobs.retry_dead(session=session, actor=viewer.actor, job_id=job_id)
    session.commit()
    return redirect_after_post(
        request,
        "/jobs",
        f"Job #{job.id} ({job.kind}) is queued again with a fresh set of tries.",
        viewer,
    )
