"""The catalog on the home page: "Hygiene problems in what your teams own", and the first-run
checklist's "Import a catalog" step."""

from __future__ import annotations

import markupsafe
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.catalog import service
from lamplighter.catalog.models import Entity
from lamplighter.core import identity, people
from lamplighter.core.home import HomePanel, SetupStep, setup_step
from lamplighter.core.webui import Viewer, render_panel

SHOWN = 8


def your_problems(
    *, session: Session, team_ids: frozenset[int], limit: int
) -> tuple[list[tuple[Entity, str]], bool]:
    """Hygiene problems of entities owned by ``team_ids``: the first ``limit``, and whether there
    are more."""
    rows = service.hygiene(session=session, after_id=None, limit=limit + 1, owner_team_ids=team_ids)
    return rows[:limit], len(rows) > limit


def hygiene_panel(request: Request, session: Session, viewer: Viewer) -> HomePanel | None:
    """Entities the viewer's teams (and the teams within them) own that lack a valid owner,
    an accountable person, or resolved relations; None for someone in no team."""
    mine = identity.team_ids_of(session=session, user_id=viewer.user.id)
    if not mine:
        return None
    team_ids = frozenset(
        team_id for team in mine for team_id in identity.subtree_ids(session=session, team_id=team)
    )
    problems, more = your_problems(session=session, team_ids=team_ids, limit=SHOWN)
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e, _ in problems])
    rows = [(entity, why, teams.get(entity.owner_team_id or 0)) for entity, why in problems]
    html = (
        render_panel(request, viewer, "catalog/_home.html", {"rows": rows, "more": more})
        if rows
        else markupsafe.Markup("")
    )
    return HomePanel(
        title="Hygiene problems in what your teams own",
        html=html,
        count=len(rows),
        order=30,
        empty_text="Everything your teams own has a valid owner and an accountable person.",
    )


@setup_step
def import_step(session: Session) -> SetupStep:
    """Done once the catalog has any entity."""
    anything = service.list_(session=session, filters=service.ListFilters(), after_id=None, limit=1)
    return SetupStep(
        "Import a catalog",
        "/catalog/new",
        done=bool(anything),
        hint="Register your services, or import Backstage files: lamplighter catalog import PATH.",
        order=10,
    )
