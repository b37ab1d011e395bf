"""The authorization rule every domain uses.

An owned object may be changed by members of its owning team, by SREs and by admins;
everyone signed in may read; viewers never write.
"""

from __future__ import annotations

from lamplighter.core.context import Actor
from lamplighter.core.errors import Forbidden
from lamplighter.core.models import Role

PRIVILEGED = frozenset({Role.ADMIN.value, Role.SRE.value})


def can_write_owned(actor: Actor, owner_team_id: int | None) -> bool:
    if actor.role == Role.VIEWER.value:
        return False
    if actor.role in PRIVILEGED:
        return True
    return owner_team_id is not None and owner_team_id in actor.team_ids


def require_owned_write(actor: Actor, owner_team_id: int | None, what: str) -> None:
    if not can_write_owned(actor, owner_team_id):
        raise Forbidden(f"only members of the owning team, SREs and admins may change {what}")


def require_role(actor: Actor, *roles: str, action: str) -> None:
    if actor.role not in roles:
        raise Forbidden(f"{action} needs one of the roles: {', '.join(roles)}")


def require_writer(actor: Actor, action: str) -> None:
    if actor.role == Role.VIEWER.value:
        raise Forbidden(f"viewers cannot {action}")
