"""What the SLO domain adds to other pages: the entity page's and the team page's SLOs, and the
home page's SLOs of the viewer's teams that are burning or have spent their budget.

Each renders its own template (``templates/slo/_*.html``) for the catalog's and the core's panel
slots, so that neither knows this domain.
"""

from __future__ import annotations

import markupsafe
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core.authz import can_write_owned
from lamplighter.core.home import HomePanel
from lamplighter.core.models import Role, Team
from lamplighter.core.webui import Viewer, render_panel
from lamplighter.slo import charts, service
from lamplighter.slo.models import Slo
from lamplighter.slo.pages import budget_left_text, percent_text, rate_text, window_text

KINDS = frozenset({"service", "api"})  # what the form offers SLOs on
TEAM_SHOWN = 50
HOME_SHOWN = 8
ATTENTION = ("exhausted", "burning")


def _helpers() -> dict[str, object]:
    return {
        "percent_text": percent_text,
        "budget_left_text": budget_left_text,
        "rate_text": rate_text,
        "window_text": window_text,
        "meter": charts.budget_meter,
    }


def entity_panel(
    request: Request, session: Session, entity: Entity, viewer: Viewer
) -> markupsafe.Markup | None:
    """The entity's SLOs, the least budget left first; a "Define an SLO" link for its writers.
    Nothing for a reader of an entity without SLOs."""
    slos = service.of_entity(session=session, entity_id=entity.id)
    may_define = entity.kind in KINDS and can_write_owned(viewer.actor, entity.owner_team_id)
    if not slos and not may_define:
        return None
    context = {**_helpers(), "entity": entity, "slos": _by_budget(slos), "may_define": may_define}
    return render_panel(request, viewer, "slo/_entity_panel.html", context)


def team_panel(
    request: Request, session: Session, team: Team, viewer: Viewer
) -> markupsafe.Markup | None:
    """The SLOs of what the team owns, the least budget left first."""
    rows = service.of_team(session=session, team_id=team.id)
    if not rows:
        return None
    rows = sorted(rows, key=lambda row: _budget_key(row[0]))
    context = {
        **_helpers(),
        "team": team,
        "rows": rows[:TEAM_SHOWN],
        "more": len(rows) > TEAM_SHOWN,
    }
    return render_panel(request, viewer, "slo/_team_panel.html", context)


def home_panel(request: Request, session: Session, viewer: Viewer) -> HomePanel | None:
    """The viewer's teams' SLOs that are burning fast or have spent their budget."""
    if not viewer.actor.team_ids:
        return None
    owned = [
        row
        for team_id in viewer.actor.team_ids
        for row in service.of_team(session=session, team_id=team_id)
    ]
    if not owned:
        return None  # teams without SLOs get no card saying all is well
    rows = [row for row in owned if row[0].status in ATTENTION]
    rows.sort(key=lambda row: _budget_key(row[0]))
    html = (
        render_panel(request, viewer, "slo/_home.html", {**_helpers(), "rows": rows[:HOME_SHOWN]})
        if rows
        else markupsafe.Markup("")
    )
    return HomePanel(
        title="SLOs burning their error budget",
        html=html,
        count=len(rows),
        order=30 if viewer.actor.role != Role.VIEWER.value else 60,
        empty_text="Every SLO of your teams is within its error budget.",
    )


def _budget_key(slo: Slo) -> tuple[bool, float, int]:
    """Least budget left first, those without figures last (the list's order)."""
    remaining = slo.budget_remaining
    return (remaining is None, remaining if remaining is not None else 0.0, slo.id)


def _by_budget(slos: list[Slo]) -> list[Slo]:
    return sorted(slos, key=_budget_key)
