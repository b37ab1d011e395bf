"""The home page's slots: what needs the signed-in person's attention now, and the first-run
checklist of an empty installation.

The home page belongs to the core, which knows no domain. A domain with something that needs a
person's attention (tickets: those assigned to you; the catalog: hygiene problems in what your
teams own) names a panel function in its manifest (``home_panels``)::

    # tickets/manifest.py
    home_panels=("lamplighter.tickets.home:assigned_panel",),

    # tickets/home.py
    def assigned_panel(request, session, viewer) -> HomePanel | None:
        tickets = ...  # open tickets assigned to the viewer, most urgent first
        html = render_panel(request, viewer, "tickets/_home.html", {"tickets": tickets})
        return HomePanel(title="Tickets assigned to you", html=html, count=len(tickets),
                         order=20, empty_text="No open tickets are assigned to you.")

``lamplighter.domains`` registers each in :data:`HOME_PANELS`; the home page calls them all and
shows the panels that have items first.

A domain whose data the first-run checklist needs (the catalog: is anything in it?) registers a
:func:`setup_step` check in the module its ``home_panels`` reference names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import markupsafe
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.models import Role
from lamplighter.core.webui import Viewer


@dataclass(frozen=True)
class HomePanel:
    """One section of the home page.

    - ``title``: the card's heading, in words ("Tickets assigned to you").
    - ``html``: the card's body (render it with ``webui.render_panel``); leave it empty
      (``Markup("")``) when there is nothing to list, and ``empty_text`` is shown instead.
    - ``count``: how many items need the viewer's attention; 0 means none. Panels with a count
      come first, and the count is shown next to the title.
    - ``order``: the place among panels with (or without) items; lower comes first.
    - ``empty_text``: what the card says when ``html`` is empty ("Nothing is waiting for you.").
    """

    title: str
    html: markupsafe.Markup
    count: int = 0
    order: int = 100
    empty_text: str = "Nothing needs your attention here."


# "module:function(request, session, viewer) -> HomePanel | None" from each manifest's
# ``home_panels``; None means "nothing to say to this viewer" (the card is left out).
HomePanelFunction = Callable[[Request, Session, Viewer], "HomePanel | None"]
HOME_PANELS: list[HomePanelFunction] = []


def home_panel(func: HomePanelFunction) -> HomePanelFunction:
    """Register a home panel by hand (tests; manifests name theirs in ``home_panels``)."""
    if func not in HOME_PANELS:
        HOME_PANELS.append(func)
    return func


def panels_for(request: Request, session: Session, viewer: Viewer) -> list[HomePanel]:
    """Every registered panel for this viewer: those with items first, then by order."""
    found = [panel for func in HOME_PANELS if (panel := func(request, session, viewer))]
    return sorted(found, key=lambda p: (p.count <= 0, p.order, p.title))


# -- first run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetupStep:
    """One line of the first-run checklist: what to do, where, and whether it is done."""

    label: str
    href: str
    done: bool
    hint: str = ""
    order: int = 100


SetupCheck = Callable[[Session], SetupStep]
SETUP_CHECKS: list[SetupCheck] = []


def setup_step(func: SetupCheck) -> SetupCheck:
    """Register a first-run checklist step: ``func(session) -> SetupStep``."""
    if func not in SETUP_CHECKS:
        SETUP_CHECKS.append(func)
    return func


@setup_step
def _teams_step(session: Session) -> SetupStep:
    teams = identity.list_teams(session=session, after_id=None, limit=1)
    return SetupStep(
        "Create teams",
        "/teams/new",
        done=bool(teams),
        hint="Teams own services and tickets; their leads approve requests.",
        order=20,
    )


@setup_step
def _people_step(session: Session) -> SetupStep:
    users = identity.list_users(session=session, after_id=None, limit=2)
    return SetupStep(
        "Invite people",
        "/people/new",
        done=len(users) > 1,
        hint="Add the people who will use Lamplighter, or sign them in with SSO.",
        order=30,
    )


def first_run(session: Session, viewer: Viewer) -> list[SetupStep] | None:
    """The checklist for an admin while any step is left; None once all are done (or for
    anyone else)."""
    if viewer.actor.role != Role.ADMIN.value:
        return None
    steps = sorted((check(session) for check in SETUP_CHECKS), key=lambda s: (s.order, s.label))
    return None if all(step.done for step in steps) else steps
