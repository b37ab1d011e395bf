"""Who is who, for the other domains: users and teams looked up by id, slug, role or membership.

The read side of identity that domains need, so that none of them queries the ``users``,
``teams`` and ``team_members`` tables itself; the use cases that change people and teams stay in
``core/identity.py``. Each function takes the session and flushes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import driver_rows
from lamplighter.core.models import Role, Team, TeamMember, User
from lamplighter.core.pagination import keyset


# -- users -----------------------------------------------------------------------------------
def find_user(*, session: Session, user_id: int | None) -> User | None:
    """The user with this id, or None (also for no id)."""
    return session.get(User, user_id) if user_id is not None else None


def users_by_id(*, session: Session, ids: Iterable[int | None]) -> dict[int, User]:
    """The users among ``ids`` (Nones skipped), in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    found = session.scalars(sa.select(User).where(User.id.in_(wanted)))
    return {user.id: user for user in found}


class Named(NamedTuple):
    id: int
    display_name: str
    email: str
    is_active: bool


def names_by_id(*, session: Session, ids: Iterable[int | None]) -> dict[int, Named]:
    """What lists of people show (name, address, active), for the users among ``ids``, in one
    statement on the driver: the on-call reads ask it on every entity page."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = driver_rows(
        session,
        f"SELECT id, display_name, email, is_active FROM users WHERE id IN ({marks})",  # noqa: S608
        wanted,
    )
    return {row[0]: Named(row[0], row[1], row[2], bool(row[3])) for row in rows}


def active_users_with_role(*, session: Session, role: Role) -> list[User]:
    """Every active user holding ``role``, oldest account first."""
    return list(
        session.scalars(
            sa.select(User)
            .where(User.role == role.value, User.is_active.is_(True))
            .order_by(User.id)
        )
    )


def users_without_email(*, session: Session, after_id: int | None, limit: int) -> list[User]:
    """People known only by a placeholder address (see ``identity.no_email_address``)."""
    query = sa.select(User).where(User.email.endswith(identity.NO_EMAIL_SUFFIX, autoescape=True))
    return list(session.scalars(keyset(query, User.id, position=after_id, limit=limit)))


def actor_for_user(*, session: Session, user_id: int) -> Actor | None:
    """The user acting in person (a job acting for its requester), or None when they are gone."""
    user = find_user(session=session, user_id=user_id)
    if user is None:
        return None
    return Actor(
        kind="user",
        label=user.email,
        user_id=user.id,
        role=user.role,
        team_ids=identity.team_ids_of(session=session, user_id=user.id),
    )


# -- teams -----------------------------------------------------------------------------------
def find_team(*, session: Session, team_id: int | None) -> Team | None:
    """The team with this id, or None (also for no id)."""
    return session.get(Team, team_id) if team_id is not None else None


def find_team_by_slug(*, session: Session, slug: str) -> Team | None:
    """The team with this slug (any case, surrounding blanks ignored), or None."""
    return session.scalar(sa.select(Team).where(Team.slug == slug.strip().lower()))


def teams_by_id(*, session: Session, ids: Iterable[int | None]) -> dict[int, Team]:
    """The teams among ``ids`` (Nones skipped), in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    found = session.scalars(sa.select(Team).where(Team.id.in_(wanted)))
    return {team.id: team for team in found}


def teams_by_slug(*, session: Session, slugs: Iterable[str]) -> dict[str, Team]:
    """The teams among ``slugs`` (as stored: lower case), in one query."""
    wanted = set(slugs)
    if not wanted:
        return {}
    found = session.scalars(sa.select(Team).where(Team.slug.in_(wanted)))
    return {team.slug: team for team in found}


def all_teams(*, session: Session) -> list[Team]:
    """Every team, oldest first: for exports that must name each one."""
    return list(session.scalars(sa.select(Team).order_by(Team.id)))


def first_team_with_role(*, session: Session, role: Role) -> Team | None:
    """The oldest team that has a member holding ``role``."""
    return session.scalar(
        sa.select(Team)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .join(User, User.id == TeamMember.user_id)
        .where(User.role == role.value)
        .order_by(Team.id)
        .limit(1)
    )


# -- whole directories, for bulk imports -------------------------------------------------------
def user_ids_by_email(*, session: Session) -> dict[str, int]:
    """Every user's id by lower-case address, in one query."""
    rows = session.execute(sa.select(sa.func.lower(User.email), User.id)).tuples()
    return dict(rows.all())


def team_ids_by_slug(*, session: Session) -> dict[str, int]:
    """Every team's id by slug, in one query."""
    return dict(session.execute(sa.select(Team.slug, Team.id)).tuples().all())


# -- membership ------------------------------------------------------------------------------
def is_member(*, session: Session, user_id: int, team_ids: Iterable[int]) -> bool:
    """Whether the user belongs to any of these teams."""
    teams = set(team_ids)
    if not teams:
        return False
    found = session.scalar(
        sa.select(TeamMember.user_id)
        .where(TeamMember.team_id.in_(teams), TeamMember.user_id == user_id)
        .limit(1)
    )
    return found is not None


def member_ids_of(*, session: Session, team_ids: Iterable[int]) -> dict[int, list[int]]:
    """The ids of each team's members, by team (teams without members are left out)."""
    teams = set(team_ids)
    members: dict[int, list[int]] = {}
    if not teams:
        return members
    rows = session.execute(
        sa.select(TeamMember.team_id, TeamMember.user_id)
        .where(TeamMember.team_id.in_(teams))
        .order_by(TeamMember.team_id, TeamMember.user_id)
    )
    for team_id, user_id in rows:
        members.setdefault(team_id, []).append(user_id)
    return members
