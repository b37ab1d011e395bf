"""What on-call adds to other domains' pages and answers: "On call now" on the catalog's entity
page and on the team page, and the same as a fact of ``lamplighter catalog who-owns``.

The catalog knows none of this: it renders the panels and prints the facts the manifests
register (``entity_panels``, ``team_panels``, ``entity_facts``). The panels are markup built
here with escaping (``Markup.format``), so no template outside this domain's folder is needed.
"""

from __future__ import annotations

import markupsafe
from fastapi import Request
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.core.models import Team
from lamplighter.core.timefmt import readable
from lamplighter.core.webui import Viewer
from lamplighter.oncall import on_duty

COLUMNS = ("Person", "Schedule", "Since", "Until")


def _row(now: on_duty.OnCallNow, tz: str) -> markupsafe.Markup:
    schedule = (
        markupsafe.Markup("{}<br><span class='muted'>{}</span>").format(
            now.schedule_name, now.layer or ""
        )
        if now.schedule_name is not None
        else markupsafe.Markup("<span class='muted'>named by the escalation policy</span>")
    )
    cells = (
        markupsafe.Markup("<strong>{}</strong><br><a href='mailto:{}'>{}</a>").format(
            now.display_name, now.email, now.email
        ),
        schedule,
        readable(now.since, tz) if now.since else "—",
        readable(now.until, tz) if now.until else "—",
    )
    return markupsafe.Markup("<tr>{}</tr>").format(
        markupsafe.Markup("").join(
            markupsafe.Markup('<td data-label="{}">{}</td>').format(label, cell)
            for label, cell in zip(COLUMNS, cells, strict=True)
        )
    )


def _card(found: list[on_duty.OnCallNow], caption: str, empty: str, tz: str) -> markupsafe.Markup:
    if found:
        head = markupsafe.Markup("").join(
            markupsafe.Markup('<th scope="col">{}</th>').format(column) for column in COLUMNS
        )
        body: markupsafe.Markup = markupsafe.Markup(
            '<div class="table-wrap" role="region" aria-label="{caption}" tabindex="0">'
            '<table class="table stack"><caption class="visually-hidden">{caption}</caption>'
            "<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        ).format(
            caption=caption,
            head=head,
            rows=markupsafe.Markup("").join(_row(now, tz) for now in found),
        )
    else:
        body = markupsafe.Markup('<p class="empty">{}</p>').format(empty)
    return markupsafe.Markup(
        '<section class="card" id="on-call" aria-labelledby="on-call-title">'
        '<div class="card-head"><h2 id="on-call-title">On call now</h2></div>{}</section>'
    ).format(body)


def entity_panel(
    request: Request, session: Session, entity: Entity, viewer: Viewer
) -> markupsafe.Markup | None:
    """Who would be paged about the entity now; nothing when its team has no on-call at all."""
    if entity.owner_team_id is None:
        return None
    if not on_duty.has_on_call(session=session, team_id=entity.owner_team_id):
        return None
    found = on_duty.who_is_on_call(session, entity_id=entity.id)
    return _card(
        found,
        f"On call now for {entity.name}",
        "Nobody is on call right now.",
        viewer.user.time_zone,
    )


def team_panel(
    request: Request, session: Session, team: Team, viewer: Viewer
) -> markupsafe.Markup | None:
    """Who is on call now on each of the team's schedules."""
    if not on_duty.has_on_call(session=session, team_id=team.id):
        return None
    found = on_duty.who_is_on_call(session, team_id=team.id)
    return _card(
        found,
        f"On call now in {team.name}",
        "Nobody is on call on the team's schedules right now.",
        viewer.user.time_zone,
    )


def entity_facts(session: Session, entity: Entity) -> list[tuple[str, str]]:
    """``("on call now", "Ada <ada@…> (Primary, until …)")`` for ``catalog who-owns``."""
    if entity.owner_team_id is None:
        return []
    if not on_duty.has_on_call(session=session, team_id=entity.owner_team_id):
        return [("on call now", "nobody: the owning team has no on-call schedule")]
    found = on_duty.who_is_on_call(session, entity_id=entity.id)
    if not found:
        return [("on call now", "nobody")]
    parts = []
    for now in found:
        where = [now.schedule_name] if now.schedule_name else []
        if now.until is not None:
            where.append(f"until {readable(now.until)}")
        suffix = f" ({', '.join(where)})" if where else ""
        parts.append(f"{now.display_name} <{now.email}>{suffix}")
    return [("on call now", "; ".join(parts))]
