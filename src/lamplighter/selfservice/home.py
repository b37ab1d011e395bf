"""Self-service on the home page: what waits for the viewer's decision, and their own runs
that are under way or need them (failed, or waiting for someone)."""

from __future__ import annotations

import datetime as dt

import markupsafe
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core import people
from lamplighter.core.db import utcnow
from lamplighter.core.home import HomePanel
from lamplighter.core.webui import Viewer, render_panel
from lamplighter.selfservice import grants, runs
from lamplighter.selfservice.models import Run, RunStatus

SHOWN = 10
RECENT = dt.timedelta(days=14)  # a failed run older than this is history, not attention
UNDER_WAY = (
    RunStatus.QUEUED.value,
    RunStatus.RUNNING.value,
    RunStatus.AWAITING_APPROVAL.value,
    RunStatus.AWAITING_DECISION.value,
)


def approvals_panel(request: Request, session: Session, viewer: Viewer) -> HomePanel | None:
    """Runs waiting for the viewer's approval and access requests waiting for their decision."""
    if viewer.actor.role == "viewer":
        return None
    waiting_runs = runs.waiting_for(session=session, user_id=viewer.user.id, limit=SHOWN)
    waiting_grants = grants.waiting_for(session=session, user_id=viewer.user.id, limit=SHOWN)
    requesters = people.users_by_id(
        session=session,
        ids=[r.requester_user_id for r in waiting_runs]
        + [g.requested_by_user_id for g in waiting_grants],
    )
    entities = {
        e.id: e
        for e in session.scalars(
            sa.select(Entity).where(Entity.id.in_({g.entity_id for g in waiting_grants}))
        )
    }
    count = len(waiting_runs) + len(waiting_grants)
    html = (
        render_panel(
            request,
            viewer,
            "selfservice/_home_approvals.html",
            {
                "runs": waiting_runs,
                "grants": waiting_grants,
                "requesters": requesters,
                "entities": entities,
            },
        )
        if count
        else None
    )
    return HomePanel(
        title="Waiting for your approval",
        html=html or _empty(),
        count=count,
        order=10,
        empty_text="No runs or access requests wait for your decision.",
    )


def my_runs_panel(request: Request, session: Session, viewer: Viewer) -> HomePanel | None:
    """The viewer's runs under way, waiting, or failed in the last two weeks."""
    if viewer.actor.role == "viewer":
        return None
    since = utcnow() - RECENT
    mine = list(
        session.scalars(
            sa.select(Run)
            .where(
                Run.requester_user_id == viewer.user.id,
                sa.or_(
                    Run.status.in_(UNDER_WAY),
                    sa.and_(Run.status == RunStatus.FAILED.value, Run.created_at >= since),
                ),
            )
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(SHOWN)
        )
    )
    if not mine:
        return HomePanel(
            title="Your runs",
            html=_empty(),
            count=0,
            order=40,
            empty_text="None of your runs is under way or failed. Start one from Self-service.",
        )
    html = render_panel(request, viewer, "selfservice/_home_runs.html", {"runs": mine})
    failed = sum(1 for r in mine if r.status == RunStatus.FAILED.value)
    return HomePanel(
        title="Your runs in progress or failed",
        html=html,
        count=len(mine),
        order=30 if failed else 40,
        empty_text="",
    )


def _empty() -> markupsafe.Markup:  # the panel's body when there is nothing to list
    return markupsafe.Markup("")
