"""Importing parsed catalog-info.yaml files: resolve every reference, fail whole files (and the
files that lean on them) to a fixpoint, then write what is left in one transaction.

All database reads happen up front, keyed into dicts; the decision for every entity (create,
update, unchanged, removed) is made in Python; the writes are bulk inserts and updates.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog import service
from lamplighter.catalog.backstage_parse import (
    EntityDraft,
    GroupDraft,
    ParsedFile,
    Problem,
    UserDraft,
)
from lamplighter.catalog.models import Entity
from lamplighter.core.authz import PRIVILEGED, can_write_owned
from lamplighter.core.context import Actor
from lamplighter.core.errors import Forbidden
from lamplighter.core.models import Team, TeamMember, User

Key = tuple[str, str, str]  # (kind, namespace, lowercase name)
Progress = Callable[[str, int, int], None]  # (phase, done, total); phases "parse" and "write"
CHUNK = 500
WHOLE_SCOPE = 2000  # wanted names of one kind and namespace above which the scope is read whole


def chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def key_text(key: Key) -> str:
    return f"{key[0]}:{key[1]}/{key[2]}"


@dataclass
class Existing:
    id: int
    kind: str
    namespace: str
    name: str
    content_hash: str
    location: str | None
    owner_team_id: int | None

    @property
    def key(self) -> Key:
        return (self.kind, self.namespace, self.name.lower())

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


@dataclass
class World:
    """What the database already holds, for everything the batch mentions."""

    entities: dict[Key, Existing] = field(default_factory=dict)
    candidates: dict[Key, Existing] = field(default_factory=dict)  # gone from their location
    teams: dict[str, tuple[int, str]] = field(default_factory=dict)  # slug → (id, lead email)
    members: dict[int, set[str]] = field(default_factory=dict)  # team id → member emails
    users: dict[str, int] = field(default_factory=dict)  # email → id
    by_local_part: dict[str, list[str]] = field(default_factory=dict)  # user name → emails


@dataclass
class Resolved:
    draft: EntityDraft
    accountable: str  # email
    relations: list[tuple[str, Key]]  # (relation type, target)
    relation_refs: dict[str, list[str]]  # snapshot name → refs


@dataclass
class TeamPlan:
    draft: GroupDraft
    lead: str
    members: set[str]


@dataclass
class Plan:
    creates: list[Resolved] = field(default_factory=list)
    updates: list[tuple[Resolved, Existing]] = field(default_factory=list)
    unchanged: int = 0
    relocations: list[tuple[int, str]] = field(default_factory=list)
    removed: list[Existing] = field(default_factory=list)
    teams: list[TeamPlan] = field(default_factory=list)
    users: list[UserDraft] = field(default_factory=list)


class Batch:
    """The parsed files and everything learnt about them while resolving."""

    def __init__(self, files: list[ParsedFile]) -> None:
        self.files = files
        self.problems: list[Problem] = [p for f in files for p in f.problems]
        self.failed = {p.file for p in self.problems}
        self.entities: dict[Key, list[EntityDraft]] = defaultdict(list)
        self.groups: dict[str, list[GroupDraft]] = defaultdict(list)
        self.users_by_name: dict[str, list[UserDraft]] = defaultdict(list)
        self.users_by_email: dict[str, list[UserDraft]] = defaultdict(list)
        for parsed in files:
            for draft in parsed.entities:
                self.entities[draft.key].append(draft)
            for group in parsed.groups:
                self.groups[group.slug].append(group)
            for user in parsed.users:
                self.users_by_name[user.name_key].append(user)
                self.users_by_email[user.email].append(user)
        # provider file → (dependent file, document, field, what it needed)
        self.uses: dict[str, list[tuple[str, int, str, str]]] = defaultdict(list)
        self.resolved: dict[int, Resolved] = {}  # id(draft) → resolution
        self.team_plans: dict[str, TeamPlan] = {}

    def fail(self, file: str, document: int | None, where: str, reason: str) -> None:
        self.problems.append(Problem(file, document, where, reason))
        self.failed.add(file)

    def use(self, provider: str, file: str, document: int, where: str, what: str) -> None:
        if provider != file:
            self.uses[provider].append((file, document, where, what))

    def check_duplicates(self) -> None:
        def flag(items: list[Any], what: str, where: str) -> None:
            for item in items:
                others = ", ".join(f"{o.file} document {o.index}" for o in items if o is not item)
                self.fail(
                    item.file, item.index, where, f"{what} is defined more than once: {others}"
                )

        for drafts in self.entities.values():
            if len(drafts) > 1:
                flag(drafts, f"{drafts[0].ref} (names are unique ignoring case)", "metadata.name")
        for slug, groups in self.groups.items():
            if len(groups) > 1:
                flag(groups, f"group {slug}", "metadata.name")
        for name, users in self.users_by_name.items():
            if len(users) > 1:
                flag(users, f"user {name}", "metadata.name")
        for email, users in self.users_by_email.items():
            if len(users) > 1:
                flag(users, f"a user with email {email}", "spec.profile.email")


# -- reading what exists --------------------------------------------------------------------------
def prefetch(session: Session, batch: Batch, *, prefix: str | None = None) -> World:
    """Read what the batch mentions; ``prefix``: entities from files under it that are not in
    the batch any more (the file was deleted) count as gone from their location."""
    world = World()
    wanted: set[Key] = set(batch.entities)
    for drafts in batch.entities.values():
        for draft in drafts:
            wanted.update(use.key for use in draft.refs)
    columns = (
        Entity.id,
        Entity.kind,
        Entity.namespace,
        Entity.name,
        Entity.content_hash,
        Entity.location,
        Entity.owner_team_id,
    )
    by_scope: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind, namespace, name_key in wanted:
        by_scope[(kind, namespace)].append(name_key)
    for (kind, namespace), names in by_scope.items():
        scope = sa.select(*columns).where(Entity.kind == kind, Entity.namespace == namespace)
        if len(names) > WHOLE_SCOPE:  # one pass over the scope beats many probes of it
            wanted_names = set(names)
            for row in session.execute(scope):
                if row.name.lower() in wanted_names:
                    found = Existing(*row)
                    world.entities[found.key] = found
            continue
        for part in chunks(sorted(names)):
            for row in session.execute(scope.where(Entity.name_key.in_(part))):
                found = Existing(*row)
                world.entities[found.key] = found
    located = [
        sa.select(*columns).where(Entity.location.in_(part))
        for part in chunks(sorted(f.name for f in batch.files))
    ]
    if prefix is not None:
        located.append(
            sa.select(*columns).where(Entity.location.startswith(prefix, autoescape=True))
        )
    for query in located:
        for row in session.execute(query):
            found = Existing(*row)
            world.entities.setdefault(found.key, found)
            if found.key not in batch.entities:
                world.candidates[found.key] = found
    slugs = set(batch.groups)
    emails = set(batch.users_by_email)
    for drafts in batch.entities.values():
        for draft in drafts:
            slugs.add(draft.owner)
            if draft.accountable:
                emails.add(draft.accountable)
    for groups in batch.groups.values():
        for group in groups:
            if group.lead and "@" in group.lead[1]:
                emails.add(group.lead[1].lower())
    for users in batch.users_by_name.values():
        slugs.update(slug for _, slug in users[0].member_of)
    for part in chunks(sorted(slugs)):
        teams = session.execute(
            sa.select(Team.id, Team.slug, User.email, User.id)
            .join(User, User.id == Team.lead_user_id)
            .where(Team.slug.in_(part))
        ).tuples()
        for team_id, slug, lead_email, lead_id in teams:
            world.teams[slug] = (team_id, lead_email)
            world.users[lead_email] = lead_id
    team_ids = [team_id for team_id, _ in world.teams.values()]
    for part in chunks(team_ids):
        members = session.execute(
            sa.select(TeamMember.team_id, User.email, User.id)
            .join(User, User.id == TeamMember.user_id)
            .where(TeamMember.team_id.in_(part))
        ).tuples()
        for team_id, email, user_id in members:
            world.members.setdefault(team_id, set()).add(email)
            world.users[email] = user_id
    for part in chunks(sorted(emails)):
        by_email = session.execute(sa.select(User.email, User.id).where(User.email.in_(part)))
        world.users.update(dict(by_email.tuples().all()))
    unknown_names = {
        name
        for groups in batch.groups.values()
        for group in groups
        for name in [n for _, n in group.members]
        + ([group.lead[1]] if group.lead and "@" not in group.lead[1] else [])
        if name not in batch.users_by_name
    }
    for name in sorted(unknown_names):
        matches = (
            session.execute(
                sa.select(User.email, User.id).where(
                    User.email.startswith(f"{name}@", autoescape=True)
                )
            )
            .tuples()
            .all()
        )
        world.by_local_part[name] = [email for email, _ in matches]
        world.users.update(dict(matches))
    return world


# -- resolving ------------------------------------------------------------------------------------
class Resolver:
    def __init__(self, batch: Batch, world: World, *, prune: bool) -> None:
        self.batch = batch
        self.world = world
        self.prune = prune

    def team(self, file: str, index: int, where: str, slug: str) -> bool:
        if slug in self.world.teams:
            return True
        if slug in self.batch.groups:
            self.batch.use(self.batch.groups[slug][0].file, file, index, where, f"group {slug}")
            return True
        self.batch.fail(
            file, index, where, f"no team {slug!r}: add a Group document or create the team first"
        )
        return False

    def user_email(self, file: str, index: int, where: str, email: str) -> bool:
        if email in self.world.users:
            return True
        if email in self.batch.users_by_email:
            provider = self.batch.users_by_email[email][0].file
            self.batch.use(provider, file, index, where, f"user {email}")
            return True
        self.batch.fail(file, index, where, f"no user with email {email}")
        return False

    def user_name(self, file: str, index: int, where: str, name: str) -> str | None:
        if name in self.batch.users_by_name:
            user = self.batch.users_by_name[name][0]
            self.batch.use(user.file, file, index, where, f"user {name}")
            return user.email
        found = self.world.by_local_part.get(name, [])
        if len(found) == 1:
            return found[0]
        reason = (
            f"user {name!r} is ambiguous: {', '.join(found)}; name the lead by email"
            if found
            else f"no user {name!r}: add a User document (or a user {name}@… must exist)"
        )
        self.batch.fail(file, index, where, reason)
        return None

    def groups(self) -> None:
        joining: dict[str, set[str]] = defaultdict(set)  # team slug → emails of Users joining
        for users in self.batch.users_by_name.values():
            for user in users:
                for where, slug in user.member_of:
                    if self.team(user.file, user.index, where, slug):
                        joining[slug].add(user.email)
        for slug, groups in self.batch.groups.items():
            group = groups[0]
            members = [self.user_name(group.file, group.index, w, n) for w, n in group.members]
            lead: str | None = None
            if group.lead is not None:
                where, value = group.lead
                if "@" not in value:
                    lead = self.user_name(group.file, group.index, where, value.lower())
                elif self.user_email(group.file, group.index, where, value.lower()):
                    lead = value.lower()
            elif members:
                lead = members[0]
            if lead is not None:
                found = {email for email in members if email} | joining[slug] | {lead}
                self.batch.team_plans[slug] = TeamPlan(group, lead, found)

    def entities(self) -> None:
        for drafts in self.batch.entities.values():
            for draft in drafts:
                self.entity(draft)

    def entity(self, draft: EntityDraft) -> None:
        file, index = draft.file, draft.index
        if not draft.owner or not self.team(file, index, "spec.owner", draft.owner):
            return
        accountable: str | None = None
        if draft.accountable:
            where = "metadata.annotations.lamplighter.io/accountable"
            if self.user_email(file, index, where, draft.accountable):
                members = self._members(draft.owner)
                if members is not None and draft.accountable not in members:
                    self.batch.fail(
                        file,
                        index,
                        where,
                        f"{draft.accountable} is not a member of the owning team {draft.owner}",
                    )
                else:
                    accountable = draft.accountable
        elif draft.owner in self.world.teams:
            accountable = self.world.teams[draft.owner][1]
        elif draft.owner in self.batch.team_plans:
            accountable = self.batch.team_plans[draft.owner].lead
        relations: set[tuple[str, Key]] = set()
        relation_refs: dict[str, list[str]] = defaultdict(list)
        ok = accountable is not None
        for use in draft.refs:
            key = use.key
            if self.prune and key in self.world.candidates:
                gone = self.world.candidates[key]
                self.batch.fail(
                    file,
                    index,
                    use.field,
                    f"{gone.ref} was removed from {gone.location} and --prune deletes it",
                )
                ok = False
                continue
            if key in self.batch.entities:
                target = self.batch.entities[key][0]
                if key not in self.world.entities:
                    self.batch.use(target.file, file, index, use.field, target.ref)
                display = target.ref
            elif key in self.world.entities:
                display = self.world.entities[key].ref
            else:
                self.batch.fail(file, index, use.field, f"no catalog entity {use.ref}")
                ok = False
                continue
            relations.add((use.relation, key))
            relation_refs[use.name].append(display)
        if ok and accountable is not None:
            self.batch.resolved[id(draft)] = Resolved(
                draft, accountable, sorted(relations), dict(relation_refs)
            )

    def _members(self, slug: str) -> set[str] | None:
        if slug in self.world.teams:
            return self.world.members.get(self.world.teams[slug][0], set())
        plan = self.batch.team_plans.get(slug)
        return plan.members if plan is not None else None

    def fail_dependents(self) -> None:
        """A file that needs something only a failed file defines fails too, to a fixpoint."""
        queue = deque(sorted(self.batch.failed))
        while queue:
            bad = queue.popleft()
            for file, index, where, what in self.batch.uses.get(bad, []):
                self.batch.problems.append(
                    Problem(
                        file, index, where, f"{what} is defined in {bad}, which was not imported"
                    )
                )
                if file not in self.batch.failed:
                    self.batch.failed.add(file)
                    queue.append(file)


# -- deciding -------------------------------------------------------------------------------------
def entity_values(
    resolved: Resolved, owner_team_id: int, accountable_user_id: int
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
        "tags": list(draft.tags),
        "labels": dict(draft.labels),
        "annotations": dict(draft.annotations),
        "links": [dict(link) for link in draft.links],
        "cost_centre": draft.cost_centre,
        "version": draft.version,
        "spec_extra": dict(draft.spec_extra),
    }


def entity_hash(values: Mapping[str, Any], relations: Iterable[tuple[str, int]]) -> str:
    """A digest of everything stored for an entity but where it came from. Relations count by
    target id, so an entity whose target was deleted and registered again is rewritten."""
    hashed = {k: v for k, v in values.items() if k not in {"kind", "namespace", "name_key"}}
    hashed["relations"] = sorted(f"{relation} {target}" for relation, target in relations)
    return service.content_hash(hashed)


def plan_changes(batch: Batch, world: World) -> Plan:
    plan = Plan()
    valid = [f for f in batch.files if f.name not in batch.failed]
    valid_names = {f.name for f in valid}
    for parsed in valid:
        for draft in parsed.entities:
            resolved = batch.resolved[id(draft)]
            existing = world.entities.get(draft.key)
            if existing is None:
                plan.creates.append(resolved)
                continue
            team = world.teams.get(draft.owner)
            person = world.users.get(resolved.accountable)
            targets = [world.entities.get(key) for _, key in resolved.relations]
            if team is None or person is None or any(t is None for t in targets):
                plan.updates.append((resolved, existing))  # it points at something new
                continue
            values = entity_values(resolved, team[0], person)
            relations = [
                (r, t.id) for (r, _), t in zip(resolved.relations, targets, strict=True) if t
            ]
            if entity_hash(values, relations) != existing.content_hash:
                plan.updates.append((resolved, existing))
                continue
            plan.unchanged += 1
            if existing.location != draft.file:
                plan.relocations.append((existing.id, draft.file))
    read = {f.name for f in batch.files}
    plan.removed = sorted(  # gone from a file imported whole, or with the file itself
        (
            c
            for c in world.candidates.values()
            if c.location in valid_names or c.location not in read
        ),
        key=lambda e: e.id,
    )
    for parsed in valid:
        plan.teams.extend(
            batch.team_plans[g.slug] for g in parsed.groups if g.slug not in world.teams
        )
        plan.users.extend(u for u in parsed.users if u.email not in world.users)
    return plan


def authorize(
    session: Session, actor: Actor, batch: Batch, world: World, plan: Plan, prune: bool
) -> None:
    """Refuse unless the actor may write for every owning team the import touches."""
    if (plan.teams or plan.users) and actor.role not in PRIVILEGED:
        names = [t.draft.slug for t in plan.teams] + [u.email for u in plan.users]
        raise Forbidden(
            f"importing new teams and users ({', '.join(names[:5])}) needs the sre or admin role"
        )
    owners = sorted(
        {d.owner for drafts in batch.entities.values() for d in drafts if d.owner in world.teams}
    )
    for slug in owners:
        if not can_write_owned(actor, world.teams[slug][0]):
            raise Forbidden(
                f"you may not import entities owned by team {slug}: only its members, SREs "
                "and admins may"
            )
    current = {existing.owner_team_id for _, existing in plan.updates}
    if prune:
        current |= {existing.owner_team_id for existing in plan.removed}
    refused = sorted(i for i in current if i is not None and not can_write_owned(actor, i))
    if refused:
        refused_slug = session.scalar(sa.select(Team.slug).where(Team.id == refused[0]))
        raise Forbidden(f"you may not change or remove entities owned by team {refused_slug}")
