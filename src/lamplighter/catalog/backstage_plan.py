"""Deciding an import: what to create, update, leave or remove, and whether the actor may."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from lamplighter.catalog import service
from lamplighter.catalog.backstage_import import (
    Batch,
    Plan,
    Resolved,
    TeamPlan,
    World,
)
from lamplighter.core import identity
from lamplighter.core.authz import can_write_owned
from lamplighter.core.context import Actor
from lamplighter.core.errors import Forbidden
from lamplighter.core.models import TeamOrigin
from lamplighter.core.people import find_team


def entity_values(
    resolved: Resolved, owner_team_id: int | None, accountable_user_id: int | None
) -> dict[str, Any]:
    draft = resolved.draft
    return {
        "kind": draft.kind,
        "namespace": draft.namespace,
        "name": draft.name,
        "name_key": draft.name.lower(),
        "title": draft.title,
        "description": draft.description,
        "type": draft.type,
        "owner_team_id": owner_team_id,
        "accountable_user_id": accountable_user_id,
        "lifecycle": draft.lifecycle,
        "tier": draft.tier,
        "tags": service.normal_tags(draft.tags),
        "labels": dict(draft.labels),
        "annotations": dict(draft.annotations),
        "links": service.normal_links(draft.links),
        "cost_centre": draft.cost_centre,
        "version": draft.version,
        "spec_extra": dict(draft.spec_extra),
        "owner_ref": resolved.owner_ref,
        "document": draft.document,
    }


def _team_changes(plan: TeamPlan, world: World) -> dict[str, Any]:
    row = plan.existing
    assert row is not None
    changes: dict[str, Any] = {}
    current_parent = world.team_slugs.get(row.parent_id) if row.parent_id else None
    if plan.draft is not None:
        for name in ("name", "description", "type", "namespace"):
            if getattr(plan, name) != getattr(row, name):
                changes[name] = getattr(plan, name)
        if row.origin != plan.origin:
            changes["origin"] = plan.origin
        if plan.lead is not None and plan.lead != row.lead_email:
            changes["lead"] = plan.lead
        if plan.parent is None and plan.parent_ref != row.parent_ref:  # a resolved parent
            changes["parent_ref"] = plan.parent_ref  # clears parent_ref with parent_id
    if plan.parent != current_parent and (plan.parent is not None or plan.draft is not None):
        changes["parent"] = plan.parent
    return changes


def plan_changes(batch: Batch, world: World) -> Plan:
    plan = Plan()
    ok_docs = {
        (parsed.name, draft.index)
        for parsed in batch.files
        for draft in parsed.entities
        if batch.is_ok(draft.doc) and id(draft) in batch.resolved
    }
    needed_teams: set[str] = set()
    for parsed in batch.files:
        for draft in parsed.entities:
            if draft.doc not in ok_docs:
                continue
            resolved = batch.resolved[id(draft)]
            if resolved.owner:
                needed_teams.add(resolved.owner)
            existing = world.entities.get(draft.key)
            if existing is None:
                plan.creates.append(resolved)
                continue
            team = world.teams.get(resolved.owner) if resolved.owner else None
            person = world.users.get(resolved.accountable) if resolved.accountable else None
            if (resolved.owner and team is None) or (resolved.accountable and person is None):
                plan.updates.append((resolved, existing))  # it points at something new
                continue
            values = entity_values(resolved, team.id if team else None, person)
            if service.entity_hash(values, resolved.relations) != existing.content_hash:
                plan.updates.append((resolved, existing))
                continue
            plan.unchanged += 1
            if existing.location != draft.file:
                plan.relocations.append((existing.id, draft.file))
    plan.kept = sum(
        1 for r in [*plan.creates, *(r for r, _ in plan.updates)] if r.draft.document is not None
    )
    read = {f.name for f in batch.files}
    valid_files = {f.name for f in batch.files if f.name not in batch.failed_files}
    plan.removed = sorted(  # gone from a file that was read, or with the file itself
        (
            c
            for c in world.candidates.values()
            if c.location in valid_files or c.location not in read
        ),
        key=lambda e: e.id,
    )
    for slug in batch.wanted_placeholders:
        if slug in needed_teams and slug not in world.teams and slug not in batch.team_plans:
            personal = slug.endswith("--personal")
            parts = slug.removesuffix("--personal").split("--")
            name, namespace = parts[-1], (parts[0] if len(parts) > 1 else "default")
            batch.team_plans[slug] = TeamPlan(
                slug=slug,
                namespace=namespace,
                name=name,
                description="",
                type="person" if personal else "team",
                origin=TeamOrigin.PERSONAL.value if personal else TeamOrigin.PLACEHOLDER.value,
                parent=None,
                parent_ref=None,
                lead=None,
                members=set(),
                draft=None,
            )
    for user_plan in batch.user_plans.values():
        if not batch.is_ok(user_plan.draft.doc):
            continue
        if user_plan.existing_id is None:
            plan.users.append(user_plan)
        elif user_plan.set_ref or user_plan.set_email:
            plan.user_updates.append(user_plan)
    user_ok = {p.email for p in batch.user_plans.values() if batch.is_ok(p.draft.doc)} | set(
        world.users
    )
    for slug, team_plan in batch.team_plans.items():
        if team_plan.draft is not None and not batch.is_ok(team_plan.draft.doc):
            continue
        if team_plan.existing is None:
            plan.teams.append(team_plan)
        else:
            changes = _team_changes(team_plan, world)
            if changes:
                plan.team_updates.append((team_plan, changes))
        current = world.members.get(team_plan.existing.id, set()) if team_plan.existing else set()
        plan.memberships.extend(
            (slug, email) for email in sorted(team_plan.members - current) if email in user_ok
        )
    return plan


def authorize(
    session: Session, actor: Actor, batch: Batch, world: World, plan: Plan, prune: bool
) -> None:
    """Refuse unless the actor may write for every owning team the import touches."""
    # The rules identity.create_user and create_team apply, for people from a directory.
    teams = plan.teams or plan.team_updates or plan.memberships
    users = plan.users or plan.user_updates
    if (teams and not identity.may_create_teams(actor)) or (
        users and not identity.may_create_users(actor, from_directory=True)
    ):
        names = (
            [t.slug for t in plan.teams]
            + [t.slug for t, _ in plan.team_updates]
            + [u.draft.ref for u in [*plan.users, *plan.user_updates]]
            + [f"{email} in {slug}" for slug, email in plan.memberships]
        )
        raise Forbidden(
            f"importing teams and users ({', '.join(names[:5])}) needs the sre or admin role"
        )
    owners = sorted({r.owner for r in batch.resolved.values() if r.owner in world.teams})
    for slug in owners:
        if not can_write_owned(actor, world.teams[slug].id):
            raise Forbidden(
                f"you may not import entities owned by team {slug}: only its members, SREs "
                "and admins may"
            )
    current = {existing.owner_team_id for _, existing in plan.updates}
    if prune:
        current |= {existing.owner_team_id for existing in plan.removed}
    refused = sorted(i for i in current if i is not None and not can_write_owned(actor, i))
    if refused:
        team = find_team(session=session, team_id=refused[0])
        refused_slug = team.slug if team is not None else refused[0]
        raise Forbidden(f"you may not change or remove entities owned by team {refused_slug}")
