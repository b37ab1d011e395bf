"""The page machinery every domain's pages.py shares: templates, viewer and writer
dependencies with CSRF, flash messages, forms with field errors, HTML error pages."""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlencode

import jinja2
import markupsafe
import orjson
from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from lamplighter import __version__
from lamplighter.core import identity, timefmt
from lamplighter.core.authz import PRIVILEGED
from lamplighter.core.context import Actor, request_info
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.deps import (
    CSRF_HEADER,
    SAFE_METHODS,
    SessionDep,
    SettingsDep,
    resolve_actor,
)
from lamplighter.core.errors import (
    CsrfFailed,
    FieldError,
    LamplighterError,
    Unauthorized,
    ValidationFailed,
    problem,
)
from lamplighter.core.models import User
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
    """One entry of the navigation: a domain's pages, as its manifest names them."""

    path: str
    label: str
    summary: str


# What the navigation lists: the manifests' entries, set once the domains are known
# (lamplighter.app.include_domains). Only what exists: a domain not built yet has no entry.
NAVIGATION: list[Domain] = []


class NavLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def order(self) -> int: ...


def set_navigation(entries: Iterable[NavLike]) -> None:
    """The navigation: every manifest's entry, in their order (then by path, for ties)."""
    ordered = sorted(entries, key=lambda e: (e.order, e.path))
    NAVIGATION[:] = [Domain(e.path, e.label, e.summary) for e in ordered]


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


class _SignInRequired(Exception):
    """Raised for an anonymous GET; PageRoute answers with a redirect to the sign-in page."""


# -- templates -----------------------------------------------------------------------------
def _when(value: dt.datetime | None, tz: str = "UTC", short: bool = False) -> str:
    """A UTC timestamp in the viewer's time zone, in words: ``6 Dec 2026, 11:45 CET``."""
    return timefmt.readable(value, tz, short=short)


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


def check_lengths(values: Mapping[str, str], limits: Mapping[str, int]) -> None:
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


def safe_next(target: str | None) -> str:
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


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def set_cookie(
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
    set_cookie(
        request,
        response,
        FLASH_COOKIE,
        _box(request).encrypt(orjson.dumps(data).decode()),
        max_age=FLASH_MAX_AGE_S,
    )


def take_flash(request: Request, viewer: Viewer | None) -> dict[str, Any] | None:
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
    flash = None if fragment else take_flash(request, viewer)
    base: dict[str, Any] = {
        "signed_in": actor is not None,
        "show_sign_in": request.url.path != "/login",
        "me_name": viewer.user.display_name if viewer else (actor.label if actor else ""),
        "me_id": viewer.user.id if viewer else None,
        "me_role": actor.role if actor else "",
        "privileged": actor is not None and actor.role in PRIVILEGED,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "tz": viewer.user.time_zone if viewer else "UTC",
        "domains": NAVIGATION,
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
    response = see_other(url)
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


def check_csrf(request: Request, sent: str) -> None:
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
    check_csrf(request, csrf_token)
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
                return see_other(f"/login?next={quote(here, safe='')}")
            except LamplighterError as exc:
                return render_error_page(request, _problem_of(request, exc))

        return handle_page


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


# -- panels other domains add to core pages -----------------------------------------------------
# The team page belongs to the core, which knows no higher domain; a domain that has something to
# show there (the catalog: what the team owns) names a panel in its manifest (``team_panels``),
# which renders its own HTML; lamplighter.domains registers it here.
TeamPanel = Callable[[Request, Any, Any, Viewer], "markupsafe.Markup | None"]
TEAM_PANELS: list[TeamPanel] = []


def team_panel(func: TeamPanel) -> TeamPanel:
    """Register a section for the team page: ``func(request, session, team, viewer)``."""
    TEAM_PANELS.append(func)
    return func


# The catalog's entity page offers the same slots (``entity_panels`` in a manifest): a domain above
# the catalog (self-service: who has access) renders its part, so the catalog imports none of them.
EntityPanel = Callable[[Request, Any, Any, Viewer], "markupsafe.Markup | None"]
ENTITY_PANELS: list[EntityPanel] = []


def entity_panel(func: EntityPanel) -> EntityPanel:
    """Register a section for the entity page: ``func(request, session, entity, viewer)``."""
    ENTITY_PANELS.append(func)
    return func


def render_panel(
    request: Request, viewer: Viewer, template: str, context: Mapping[str, Any]
) -> markupsafe.Markup:
    """A panel's template rendered to markup for a team or entity page to place, with what the
    shared macros read: the viewer's time zone and the CSRF token for forms."""
    base = {"tz": viewer.user.time_zone, "csrf_token": getattr(request.state, "csrf_token", "")}
    html = TEMPLATES.env.get_template(template).render({**base, **context})
    # Safe: the templates are autoescaped, so their output is markup already.
    return markupsafe.Markup(html)  # noqa: S704
