"""What the pickers offer while someone types: people and teams here, catalog entities in the
catalog's pages. Each answers an HTML partial, the ``<option>`` elements of the picker's
``<datalist>`` (see ``templates/_picker.html``), for a signed-in viewer like every page.

A picker's input sends its own value under its own name (``?field=assignee&assignee=ad``),
so each endpoint reads ``q``, or else the parameter its ``field`` names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from lamplighter.core import identity
from lamplighter.core.deps import SessionDep
from lamplighter.core.webui import TEMPLATES, PageRoute, QueryText, ViewerDep

router = APIRouter(include_in_schema=False, route_class=PageRoute)

SHOWN = 10  # options offered at once: a datalist is a hint, not a list to scroll
TEAMS_SCANNED = 2_000  # identity has no team search yet; teams are few, the cost bounded
FieldName = Annotated[str, Query(max_length=63, pattern=r"^[A-Za-z0-9_.\-]*$")]
_OPTIONS = TEMPLATES.env.from_string(
    '{% import "_picker.html" as p %}{{ p.options(items) }}', globals={}
)


def typed(request: Request, q: str, field: str) -> str:
    """What was typed: ``q``, or the value of the picker's own field."""
    text = q or (request.query_params.get(field, "") if field else "")
    return text.strip()[:200]


def options_response(items: Iterable[tuple[str, str]]) -> Response:
    """``<option value="…">label</option>`` for each (value, label), as an HTMX partial."""
    html = _OPTIONS.render(items=list(items))
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})


def _rank(text: str, keys: Sequence[str]) -> int:
    """0 when a key starts with the text, 1 when a word of it does, 2 when it is inside."""
    low = text.lower()
    if any(k.lower().startswith(low) for k in keys):
        return 0
    if any(word.startswith(low) for k in keys for word in k.lower().replace("-", " ").split()):
        return 1
    return 2


@router.get("/people/suggest")
def suggest_people(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    q: QueryText = "",
    field: FieldName = "",
) -> Response:
    """Active people whose name or e-mail contains what was typed; the value is the e-mail."""
    text = typed(request, q, field)
    found = identity.list_users(session=session, after_id=None, limit=200, query=text or None)
    people = [u for u in found if u.is_active and identity.has_email(u.email)]
    people.sort(key=lambda u: (_rank(text, [u.display_name, u.email]), u.display_name.lower()))
    return options_response((u.email, f"{u.display_name} · {u.email}") for u in people[:SHOWN])


# Not /teams/suggest: core's /teams/{slug} would answer it whenever its router came first, and
# which endpoint answers must not depend on the order routers are included in
# (tests/core/test_routing.py). /people/… has no such route.
@router.get("/suggest/teams")
def suggest_teams(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    q: QueryText = "",
    field: FieldName = "",
) -> Response:
    """Teams whose name or slug contains what was typed; the value is the slug."""
    text = typed(request, q, field).lower()
    teams = identity.list_teams(session=session, after_id=None, limit=TEAMS_SCANNED)
    matching = [t for t in teams if text in t.slug.lower() or text in t.name.lower()]
    matching.sort(key=lambda t: (_rank(text, [t.name, t.slug]), t.name.lower()))
    return options_response((t.slug, f"{t.name} · {t.slug}") for t in matching[:SHOWN])
