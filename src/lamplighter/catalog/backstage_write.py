"""The write half of an import: bulk inserts and updates of a plan, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog import service, unresolved
from lamplighter.catalog.backstage_import import (
    Existing,
    Key,
    Plan,
    Progress,
    Resolved,
    World,
    chunks,
)
from lamplighter.catalog.backstage_plan import entity_values
from lamplighter.catalog.event_types import (
    CatalogImported,
    EntityCreated,
    EntityDeleted,
    EntityUpdated,
)
from lamplighter.catalog.models import Entity, EntityTag, Provenance, Relation, SearchDocument
from lamplighter.catalog.service import OBJECT_TYPE
from lamplighter.core import audit, events, identity
from lamplighter.core.bulk import insert_rows
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.event_types import (
    TeamCreated,
    TeamMemberAdded,
    TeamUpdated,
    UserCreated,
    UserUpdated,
)
from lamplighter.core.journal import lock_journal
from lamplighter.core.models import Role, Team, TeamMember, User

WRITE_CHUNK = 1000
ANALYZE_AFTER = 5000  # entities written, on PostgreSQL
USER_AUDIT = (
    "email",
    "display_name",
    "time_zone",
    "role",
    "is_active",
    "catalog_namespace",
    "catalog_name",
)
TEAM_AUDIT = (
    "slug",
    "name",
    "description",
    "lead_user_id",
    "type",
    "namespace",
    "origin",
    "parent_ref",
)
PART_OF_NAMES = {"system": "system", "domain": "domain", "service": "subcomponent_of"}
RELATION_SNAPSHOT_NAMES = {
    "depends_on": "depends_on",
    "provides_api": "provides_apis",
    "consumes_api": "consumes_apis",
}


def _before(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Snapshots of entities about to change, relations included, for the audit log."""
    found: dict[int, dict[str, Any]] = {}
    relations: dict[int, dict[str, list[str]]] = {}
    target = sa.orm.aliased(Entity)
    for part in chunks(ids):
        for entity in session.scalars(sa.select(Entity).where(Entity.id.in_(part))):
            found[entity.id] = service.snapshot(entity)
        rows = session.execute(
            sa.select(Relation.source_id, Relation.type, target.kind, target.namespace, target.name)
            .join(target, target.id == Relation.target_id)
            .where(Relation.source_id.in_(part))
        ).all()
        for source_id, relation, kind, namespace, name in rows:
            label = RELATION_SNAPSHOT_NAMES.get(relation) or PART_OF_NAMES.get(kind, "part_of")
            relations.setdefault(source_id, {}).setdefault(label, []).append(
                f"{kind}:{namespace}/{name}"
            )
    for entity_id, data in found.items():
        data |= {k: sorted(v) for k, v in relations.get(entity_id, {}).items()}
    return found


def _allocate_ids(session: Session, model: Any, count: int) -> list[int]:
    """Ids for rows about to be inserted: taken up front, no RETURNING is needed, so psycopg
    runs one prepared statement in pipeline mode instead of parsing huge multi-VALUES texts,
    and everything (hashes included) can be computed before the first insert."""
    if count == 0:
        return []
    table = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        query = "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
        return list(session.scalars(sa.text(query), {"table": table.name, "n": count}))
    lock_journal(session)  # SQLite's write lock first, so no one else takes these ids
    start = session.scalar(sa.select(sa.func.max(table.c.id))) or 0
    return list(range(start + 1, start + 1 + count))


def _insert_with_ids(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    ids = _allocate_ids(session, model, len(rows))
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id
    _insert(session, model, rows)
    return ids


def _insert(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, model, rows)


def _delete_dependents(session: Session, ids: Iterable[int]) -> None:
    for part in chunks(sorted(ids)):
        session.execute(sa.delete(Relation).where(Relation.source_id.in_(part)))
        session.execute(sa.delete(EntityTag).where(EntityTag.entity_id.in_(part)))
        session.execute(sa.delete(SearchDocument).where(SearchDocument.entity_id.in_(part)))


def _write_users(
    session: Session,
    plan: Plan,
    user_ids: dict[str, int],
    now: Any,
    changes: list[audit.Change],
    pending: list[events.Pending],
) -> None:
    if plan.users:
        user_rows: list[dict[str, Any]] = [
            {
                "email": u.email,
                "display_name": u.draft.display_name,
                "time_zone": "UTC",
                "role": Role.MEMBER.value,
                "password_hash": None,
                "is_active": True,
                "catalog_namespace": u.draft.namespace,
                "catalog_name": u.draft.name,
                "created_at": now,
                "updated_at": now,
            }
            for u in plan.users
        ]
        ids = _insert_with_ids(session, User, user_rows)
        for row, user_id in zip(user_rows, ids, strict=True):
            user_ids[row["email"]] = user_id
            changes.append(
                audit.Change(
                    "user.create",
                    "user",
                    user_id,
                    after={k: row[k] for k in USER_AUDIT},
                )
            )
            pending.append(
                events.Pending(
                    "user.created", f"user:{user_id}", UserCreated(id=user_id, email=row["email"])
                )
            )
    for u in plan.user_updates:
        assert u.existing_id is not None
        values: dict[str, Any] = {"updated_at": now}
        if u.set_ref:
            values |= {"catalog_namespace": u.draft.namespace, "catalog_name": u.draft.name}
        if u.set_email:
            values["email"] = u.email
        session.execute(sa.update(User).where(User.id == u.existing_id).values(**values))
        user_ids[u.email] = u.existing_id
        changes.append(
            audit.Change(
                "user.update",
                "user",
                u.existing_id,
                after={k: v for k, v in values.items() if k != "updated_at"},
            )
        )
        changed = sorted(k for k in values if k != "updated_at")
        pending.append(
            events.Pending(
                "user.updated",
                f"user:{u.existing_id}",
                UserUpdated(id=u.existing_id, email=u.email, changed=changed),
            )
        )


def _write_teams(
    session: Session,
    plan: Plan,
    world: World,
    user_ids: dict[str, int],
    now: Any,
    changes: list[audit.Change],
    pending: list[events.Pending],
) -> dict[str, int]:
    team_ids = {slug: team.id for slug, team in world.teams.items()}
    updated_teams: list[str] = []
    if plan.teams:
        team_rows: list[dict[str, Any]] = [
            {
                "slug": t.slug,
                "name": t.name,
                "description": t.description,
                "lead_user_id": user_ids.get(t.lead) if t.lead else None,
                "type": t.type,
                "namespace": t.namespace,
                "parent_id": None,
                "parent_ref": t.parent_ref,
                "origin": t.origin,
                "created_at": now,
                "updated_at": now,
            }
            for t in plan.teams
        ]
        ids = _insert_with_ids(session, Team, team_rows)
        for team, row, team_id in zip(plan.teams, team_rows, ids, strict=True):
            team_ids[team.slug] = team_id
            changes.append(
                audit.Change(
                    "team.create",
                    "team",
                    team.slug,
                    after={k: row[k] for k in TEAM_AUDIT} | {"parent": team.parent},
                )
            )
            pending.append(
                events.Pending(
                    "team.created", f"team:{team.slug}", TeamCreated(slug=team.slug, lead=team.lead)
                )
            )
    parents = [
        {"id": team_ids[t.slug], "parent_id": team_ids[t.parent]}
        for t in plan.teams
        if t.parent is not None and t.parent in team_ids
    ]
    for team, team_changes in plan.team_updates:
        values: dict[str, Any] = {"updated_at": now}
        for name, value in team_changes.items():
            if name == "lead":
                values["lead_user_id"] = user_ids.get(value)
            elif name == "parent":
                values["parent_id"] = team_ids.get(value) if value else None
                if value:
                    values["parent_ref"] = None
            else:
                values[name] = value
        session.execute(sa.update(Team).where(Team.id == team_ids[team.slug]).values(**values))
        assert team.existing is not None
        changes.append(
            audit.Change(
                "team.update",
                "team",
                team.slug,
                before={k: getattr(team.existing, k, None) for k in team_changes if k != "lead"}
                | ({"lead": team.existing.lead_email} if "lead" in team_changes else {}),
                after=team_changes,
            )
        )
        updated_teams.append(team.slug)
    if parents:
        session.execute(sa.update(Team).execution_options(synchronize_session=False), parents)
    for slug in updated_teams:  # the team as it is now, as identity.update_team tells it
        team_row = session.get(Team, team_ids[slug])
        assert team_row is not None
        session.refresh(team_row)
        state = TeamUpdated.model_validate(identity.team_snapshot(team_row))
        pending.append(events.Pending("team.updated", f"team:{slug}", state))
    arrived = [t for t in plan.teams if t.draft is not None] + [
        t for t, c in plan.team_updates if c.get("origin") == "import"
    ]
    for team in arrived:  # children that named this Group before it was in the catalog
        session.execute(
            sa.update(Team)
            .where(Team.parent_ref == f"group:{team.namespace}/{team.slug.split('--')[-1]}")
            .values(parent_id=team_ids[team.slug], parent_ref=None)
        )
    if plan.memberships:
        _insert(
            session,
            TeamMember,
            [
                {"team_id": team_ids[slug], "user_id": user_ids[email], "added_at": now}
                for slug, email in plan.memberships
                if email in user_ids and slug in team_ids
            ],
        )
        for slug, email in plan.memberships:
            changes.append(audit.Change("team.add_member", "team", slug, after={"member": email}))
            pending.append(
                events.Pending("team.member_added", f"team:{slug}", TeamMemberAdded(email=email))
            )
    if plan.teams or plan.team_updates or plan.memberships:
        identity.AUTH_CACHE.clear()  # cached actors carry their team ids
    return team_ids


def write_plan(
    *,
    session: Session,
    actor: Actor,
    plan: Plan,
    world: World,
    prune: bool,
    root: str,
    files: int,
    errors: int,
    warnings: int = 0,
    progress: Progress | None,
) -> None:
    """Write a plan: users, teams, entities, relations, tags, search text, audit, one event."""
    now = utcnow()
    changes: list[audit.Change] = []
    people: list[events.Pending] = []  # user and team events, emitted with the entities'
    user_ids = dict(world.users)
    _write_users(session, plan, user_ids, now, changes, people)
    team_ids = _write_teams(session, plan, world, user_ids, now, changes, people)

    total = len(plan.creates) + len(plan.updates) + (len(plan.removed) if prune else 0)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress("write", done, total)

    key_ids: dict[Key, int] = {key: e.id for key, e in world.entities.items()}
    if prune:
        for gone in plan.removed:
            key_ids.pop(gone.key, None)
    new_ids = _allocate_ids(session, Entity, len(plan.creates))
    for resolved, entity_id in zip(plan.creates, new_ids, strict=True):
        key_ids[resolved.draft.key] = entity_id

    def values_of(resolved: Resolved) -> dict[str, Any]:
        draft = resolved.draft
        values = entity_values(
            resolved,
            team_ids.get(resolved.owner) if resolved.owner else None,
            user_ids.get(resolved.accountable) if resolved.accountable else None,
        )
        values["content_hash"] = service.entity_hash(values, resolved.relations)
        values["provenance"] = Provenance.IMPORT.value
        values["location"] = draft.file
        values["updated_at"] = now
        values["id"] = key_ids[draft.key]
        return values

    written: list[tuple[int, Resolved, dict[str, Any]]] = []
    for part in chunks(plan.creates, WRITE_CHUNK):
        rows = [values_of(r) | {"created_at": now} for r in part]
        _insert(session, Entity, rows)
        for resolved, row in zip(part, rows, strict=True):
            written.append((row["id"], resolved, row))
            changes.append(
                audit.Change(
                    "catalog.create",
                    OBJECT_TYPE,
                    resolved.draft.ref,
                    after=service.snapshot_of(row, resolved.relation_refs),
                )
            )
        advance(len(part))
    before = _before(session, [existing.id for _, existing in plan.updates])
    for part in chunks(plan.updates, WRITE_CHUNK):
        rows = [values_of(r) for r, _ in part]
        session.execute(sa.update(Entity).execution_options(synchronize_session=False), rows)
        for (resolved, existing), row in zip(part, rows, strict=True):
            written.append((existing.id, resolved, row))
            changes.append(
                audit.Change(
                    "catalog.update",
                    OBJECT_TYPE,
                    resolved.draft.ref,
                    before=before.get(existing.id),
                    after=service.snapshot_of(row, resolved.relation_refs),
                )
            )
        advance(len(part))
    if plan.relocations:
        session.execute(
            sa.update(Entity).execution_options(synchronize_session=False),
            [{"id": entity_id, "location": location} for entity_id, location in plan.relocations],
        )
    updated_ids = [existing.id for _, existing in plan.updates]
    _delete_dependents(session, updated_ids)
    unresolved.forget(session, updated_ids)
    relation_rows = []
    dangling: list[tuple[int, str, Key, str]] = []
    for entity_id, resolved, _ in written:
        names = {use.key: use.ref.name for use in resolved.draft.refs}
        for relation, key in resolved.relations:
            target_id = key_ids.get(key)
            if target_id is None:
                dangling.append((entity_id, relation, key, names.get(key, key[2])))
            else:
                relation_rows.append(
                    {"source_id": entity_id, "type": relation, "target_id": target_id}
                )
    _insert(session, Relation, relation_rows)
    unresolved.store(session, dangling)
    tag_rows = [
        {"entity_id": entity_id, "tag": tag} for entity_id, _, row in written for tag in row["tags"]
    ]
    _insert(session, EntityTag, tag_rows)
    search_rows = [
        {"entity_id": entity_id, "body": service.search_text(row)} for entity_id, _, row in written
    ]
    _insert(session, SearchDocument, search_rows)
    if prune and plan.removed:
        _prune(session, plan.removed, changes)
        advance(len(plan.removed))
    if plan.creates:  # relations kept unresolved by earlier imports, whose target came now
        unresolved.resolve_arrivals(
            session, {r.draft.key: key_ids[r.draft.key] for r in plan.creates}
        )
    counts = {
        "files": files,
        "created": len(plan.creates),
        "updated": len(plan.updates),
        "unchanged": plan.unchanged,
        "removed": len(plan.removed),
        "pruned": prune,
        "teams_created": len(plan.teams),
        "users_created": len(plan.users),
        "errors": errors,
        "warnings": warnings,
    }
    if not changes:
        return  # nothing changed: no audit entry, no event
    bulk = len(plan.creates) + len(plan.updates) + len(plan.removed)
    if bulk >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
        # Fresh statistics now, not when autovacuum next looks: the first searches and
        # lookups after a large import would otherwise be planned for the old, small tables.
        for model in (Entity, Relation, EntityTag, SearchDocument):
            session.execute(sa.text(f"ANALYZE {model.__tablename__}"))
    changes.append(audit.Change("catalog.import", "catalog_import", root[:200], after=counts))
    audit.record_many(session=session, actor=actor, changes=changes)
    # The same per-entity events the API emits, so a subscriber sees every imported entity;
    # then the import's summary.
    pending = people + [
        events.Pending(
            "catalog.entity_created",
            r.draft.ref,
            EntityCreated(ref=r.draft.ref, kind=r.draft.kind, owner=r.owner, via="import"),
        )
        for r in plan.creates
    ]
    pending += [
        events.Pending(
            "catalog.entity_updated",
            r.draft.ref,
            EntityUpdated(ref=r.draft.ref, kind=r.draft.kind, owner=r.owner, via="import"),
        )
        for r, _ in plan.updates
    ]
    if prune:
        pending += [
            events.Pending(
                "catalog.entity_deleted",
                e.ref,
                EntityDeleted(ref=e.ref, kind=e.kind, via="import"),
            )
            for e in plan.removed
        ]
    pending.append(events.Pending("catalog.imported", root[:200], CatalogImported(**counts)))
    events.emit_many(session=session, pending=pending)


def _prune(session: Session, removed: list[Existing], changes: list[audit.Change]) -> None:
    before = _before(session, [e.id for e in removed])
    unresolved.dangle_incoming(session, [e.id for e in removed])
    for part in chunks([e.id for e in removed]):
        # Search rows first and explicitly, so SQLite's FTS triggers see every delete.
        session.execute(sa.delete(SearchDocument).where(SearchDocument.entity_id.in_(part)))
        session.execute(
            sa.delete(Entity)
            .where(Entity.id.in_(part))
            .execution_options(synchronize_session=False)
        )
    for existing in removed:
        changes.append(
            audit.Change(
                "catalog.delete", OBJECT_TYPE, existing.ref, before=before.get(existing.id)
            )
        )
