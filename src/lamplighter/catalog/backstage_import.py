"""What an import works on: the batch of parsed files, what the database already holds for it
(read up front, keyed into dicts), and the plans the resolver and planner fill in.

An import keeps what Backstage would keep: a relation to an entity that is not in the catalog yet
is kept unresolved, an owner Group that is missing becomes a placeholder team, a User without an
e-mail is still a person. Each such oddity is a warning; an error skips its document only (and,
to a fixpoint, the documents that need it). ``strict`` brings back all-or-nothing per file.

Reading is in ``backstage_parse``, resolving in ``backstage_resolve``, deciding in
``backstage_plan``, writing in ``backstage_write`` (bulk inserts and updates).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.backstage_parse import (
    EntityDraft,
    GroupDraft,
    ParsedFile,
    Problem,
    UserDraft,
    group_slug,
    personal_slug,
)
from lamplighter.catalog.models import Entity
from lamplighter.catalog.refs import Ref
from lamplighter.core.models import Team, TeamMember, TeamOrigin, User

Key = tuple[str, str, str]  # (kind, namespace, lowercase name)
DocKey = tuple[str, int]  # (file, document index)
PersonKey = tuple[str, str]  # (namespace, lowercase name) of a Group or a User
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
class TeamRow:
    id: int
    slug: str
    name: str
    description: str
    type: str
    namespace: str
    parent_id: int | None
    parent_ref: str | None
    origin: str
    lead_email: str | None


@dataclass
class World:
    """What the database already holds, for everything the batch mentions."""

    entities: dict[Key, Existing] = field(default_factory=dict)
    candidates: dict[Key, Existing] = field(default_factory=dict)  # gone from their location
    teams: dict[str, TeamRow] = field(default_factory=dict)  # slug → team (and its ancestors)
    team_slugs: dict[int, str] = field(default_factory=dict)  # id → slug, for those teams
    members: dict[int, set[str]] = field(default_factory=dict)  # team id → member emails
    users: dict[str, int] = field(default_factory=dict)  # email → id
    people: dict[PersonKey, str] = field(default_factory=dict)  # User reference → email
    referenced: dict[str, PersonKey] = field(default_factory=dict)  # email → its User reference
    first_team: dict[str, str] = field(default_factory=dict)  # email → slug of the first team
    by_local_part: dict[str, list[str]] = field(default_factory=dict)  # user name → emails


@dataclass
class Resolved:
    draft: EntityDraft
    owner: str  # team slug
    owner_ref: str | None  # the owner as written, when it is not the owning team's Group
    accountable: str | None  # email
    relations: list[tuple[str, Key]]  # (relation type, target): resolved or not, by key
    relation_refs: dict[str, list[str]]  # snapshot name → refs


@dataclass
class UserPlan:
    draft: UserDraft
    email: str  # as it will be stored (an address of its own, or the no-email one)
    existing_id: int | None
    set_ref: bool  # an existing user learns its User reference
    set_email: bool  # an existing user without an address gets this one


@dataclass
class TeamPlan:
    slug: str
    namespace: str
    name: str
    description: str
    type: str
    origin: str
    parent: str | None  # slug
    parent_ref: str | None  # while the parent is not in the catalog
    lead: str | None  # email
    members: set[str]  # emails
    draft: GroupDraft | None  # None for a placeholder or personal team
    existing: TeamRow | None = None


@dataclass
class Plan:
    creates: list[Resolved] = field(default_factory=list)
    updates: list[tuple[Resolved, Existing]] = field(default_factory=list)
    unchanged: int = 0
    relocations: list[tuple[int, str]] = field(default_factory=list)
    removed: list[Existing] = field(default_factory=list)
    teams: list[TeamPlan] = field(default_factory=list)  # to create
    team_updates: list[tuple[TeamPlan, dict[str, Any]]] = field(default_factory=list)
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (slug, email) to add
    users: list[UserPlan] = field(default_factory=list)  # to create
    user_updates: list[UserPlan] = field(default_factory=list)
    kept: int = 0  # entities of kinds Lamplighter does not model, created or updated


class Batch:
    """The parsed files and everything learnt about them while resolving."""

    def __init__(self, files: list[ParsedFile]) -> None:
        self.files = files
        self.problems: list[Problem] = [p for f in files for p in f.problems]
        self.warnings: list[Problem] = [w for f in files for w in f.warnings]
        self.failed_files = {p.file for p in self.problems if p.document is None}
        self.failed: set[DocKey] = {
            (p.file, p.document) for p in self.problems if p.document is not None
        }
        self.entities: dict[Key, list[EntityDraft]] = defaultdict(list)
        self.groups: dict[PersonKey, list[GroupDraft]] = defaultdict(list)
        self.users: dict[PersonKey, list[UserDraft]] = defaultdict(list)
        for parsed in files:
            for draft in parsed.entities:
                self.entities[draft.key].append(draft)
            for group in parsed.groups:
                self.groups[group.key].append(group)
            for user in parsed.users:
                self.users[user.key].append(user)
        # (provider document, dependent document, field, what it needed): a flat log, indexed
        # only when something failed (most imports have nothing to propagate)
        self.use_log: list[tuple[DocKey, DocKey, str, str]] = []
        self.resolved: dict[int, Resolved] = {}  # id(draft) → resolution
        self.team_plans: dict[str, TeamPlan] = {}  # slug → plan (Groups, placeholders)
        self.user_plans: dict[PersonKey, UserPlan] = {}
        self.wanted_placeholders: dict[str, list[DocKey]] = defaultdict(list)

    def is_ok(self, doc: DocKey) -> bool:
        return doc not in self.failed and doc[0] not in self.failed_files

    def fail(self, file: str, document: int, where: str, reason: str) -> None:
        self.problems.append(Problem(file, document, where, reason))
        self.failed.add((file, document))

    def warn(self, file: str, document: int | None, where: str, reason: str) -> None:
        self.warnings.append(Problem(file, document, where, reason))

    def use(self, provider: DocKey, dependent: DocKey, where: str, what: str) -> None:
        self.use_log.append((provider, dependent, where, what))

    def dependents(self) -> dict[DocKey, list[tuple[DocKey, str, str]]]:
        """Provider document → (dependent document, field, what it needed)."""
        index: dict[DocKey, list[tuple[DocKey, str, str]]] = defaultdict(list)
        for provider, dependent, where, what in self.use_log:
            if provider != dependent:
                index[provider].append((dependent, where, what))
        return index

    def entity(self, key: Key) -> EntityDraft | None:
        drafts = self.entities.get(key)
        return drafts[0] if drafts else None

    def group(self, key: PersonKey) -> GroupDraft | None:
        groups = self.groups.get(key)
        return groups[0] if groups else None

    def user(self, key: PersonKey) -> UserDraft | None:
        users = self.users.get(key)
        return users[0] if users else None

    def check_duplicates(self) -> None:
        """The first definition wins; every later one is skipped, naming both places."""

        def flag(items: list[Any], what: str) -> None:
            first = items[0]
            for item in items[1:]:
                self.fail(
                    item.file,
                    item.index,
                    "metadata.name",
                    f"{what} is defined more than once: {first.file} document {first.index} "
                    "is kept, this one is skipped",
                )

        for drafts in self.entities.values():
            if len(drafts) > 1:
                flag(drafts, f"{drafts[0].ref} (names are unique ignoring case)")
        for groups in self.groups.values():
            if len(groups) > 1:
                flag(groups, groups[0].ref)
        for users in self.users.values():
            if len(users) > 1:
                flag(users, users[0].ref)


# -- reading what exists --------------------------------------------------------------------------
def _entity_columns() -> tuple[Any, ...]:
    return (
        Entity.id,
        Entity.kind,
        Entity.namespace,
        Entity.name,
        Entity.content_hash,
        Entity.location,
        Entity.owner_team_id,
    )


def _prefetch_entities(session: Session, batch: Batch, world: World, prefix: str | None) -> None:
    wanted: set[Key] = set(batch.entities)
    for drafts in batch.entities.values():
        for draft in drafts:
            wanted.update(use.key for use in draft.refs)
    columns = _entity_columns()
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


def _people_refs(batch: Batch) -> tuple[set[str], set[PersonKey], set[str]]:
    """Team slugs, User references and e-mails the batch mentions."""
    slugs: set[str] = set()
    users: set[PersonKey] = set(batch.users)
    emails: set[str] = set()

    def group(ref: Ref) -> None:
        slugs.add(group_slug(ref.namespace, ref.name))

    for drafts in batch.entities.values():
        for draft in drafts:
            if draft.owner is not None:
                if draft.owner.kind == "group":
                    group(draft.owner)
                else:
                    users.add((draft.owner.namespace, draft.owner.name.lower()))
                    slugs.add(personal_slug(draft.owner.namespace, draft.owner.name))
            if draft.accountable:
                emails.add(draft.accountable)
    for groups in batch.groups.values():
        for group_draft in groups:
            slugs.add(group_draft.slug)
            parent = [group_draft.parent] if group_draft.parent else []
            for _, ref in [*group_draft.children, *parent]:
                group(ref)
            users.update((ref.namespace, ref.name.lower()) for _, ref in group_draft.members)
            if group_draft.lead is not None:
                lead = group_draft.lead[1]
                if "@" in lead:
                    emails.add(lead.lower())
    for user_drafts in batch.users.values():
        for user in user_drafts:
            if user.email:
                emails.add(user.email)
            for _, ref in user.member_of:
                group(ref)
    return slugs, users, emails


def _read_teams(session: Session, world: World, slugs: Iterable[str]) -> None:
    """Teams by slug, and every ancestor of them (the accountable person may come from one)."""
    query = sa.select(
        Team.id,
        Team.slug,
        Team.name,
        Team.description,
        Team.type,
        Team.namespace,
        Team.parent_id,
        Team.parent_ref,
        Team.origin,
        User.email,
    ).outerjoin(User, User.id == Team.lead_user_id)
    pending: list[Any] = sorted(slugs)
    by_slug = True
    while pending:
        parents: set[int] = set()
        for part in chunks(pending):
            where = Team.slug.in_(part) if by_slug else Team.id.in_(part)
            for row in session.execute(query.where(where)).tuples():
                team = TeamRow(*row)
                world.teams[team.slug] = team
                world.team_slugs[team.id] = team.slug
                if team.parent_id is not None:
                    parents.add(team.parent_id)
        pending = sorted(parents - set(world.team_slugs))
        by_slug = False


def prefetch(session: Session, batch: Batch, *, prefix: str | None = None) -> World:
    """Read what the batch mentions; ``prefix``: entities from files under it that are not in
    the batch any more (the file was deleted) count as gone from their location."""
    world = World()
    _prefetch_entities(session, batch, world, prefix)
    slugs, people, emails = _people_refs(batch)
    _read_teams(session, world, slugs)
    for team in world.teams.values():
        if team.lead_email:
            emails.add(team.lead_email)
    user_columns = (User.id, User.email, User.catalog_namespace, User.catalog_name)

    def learn(rows: Iterable[Any]) -> None:
        for user_id, email, namespace, name in rows:
            world.users[email] = user_id
            if namespace is not None and name is not None:
                world.people[(namespace, name)] = email
                world.referenced[email] = (namespace, name)

    by_namespace: dict[str, list[str]] = defaultdict(list)
    for namespace, name in people:
        by_namespace[namespace].append(name)
    for namespace, names in by_namespace.items():
        for part in chunks(sorted(names)):
            learn(
                session.execute(
                    sa.select(*user_columns).where(
                        User.catalog_namespace == namespace, User.catalog_name.in_(part)
                    )
                ).tuples()
            )
    for part in chunks(sorted(emails)):
        learn(session.execute(sa.select(*user_columns).where(User.email.in_(part))).tuples())
    team_ids = [team.id for team in world.teams.values()]
    for part in chunks(team_ids):
        members = session.execute(
            sa.select(TeamMember.team_id, *user_columns)
            .join(User, User.id == TeamMember.user_id)
            .where(TeamMember.team_id.in_(part))
        ).tuples()
        for team_id, user_id, email, user_namespace, user_name in members:
            world.members.setdefault(team_id, set()).add(email)
            learn([(user_id, email, user_namespace, user_name)])
    unknown_names = {
        ref.name.lower()
        for groups in batch.groups.values()
        for group in groups
        for _, ref in group.members
        if (ref.namespace, ref.name.lower()) not in batch.users
        and (ref.namespace, ref.name.lower()) not in world.people
    }
    for drafts in batch.entities.values():  # User owners named as Lamplighter users are known
        for draft in drafts:
            owner = draft.owner
            if owner is not None and owner.kind == "user" and owner.namespace == "default":
                key = (owner.namespace, owner.name.lower())
                if key not in batch.users and key not in world.people:
                    unknown_names.add(key[1])
    for group_drafts in batch.groups.values():
        for group in group_drafts:
            if group.lead and "@" not in group.lead[1]:
                unknown_names.add(group.lead[1].lower().rsplit("/", 1)[-1].split(":")[-1])
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
    known = sorted(world.users)
    for part in chunks(known):  # the first team of each person who may own something
        rows = session.execute(
            sa.select(User.email, Team.slug)
            .join(TeamMember, TeamMember.user_id == User.id)
            .join(Team, Team.id == TeamMember.team_id)
            .where(User.email.in_(part), Team.origin != TeamOrigin.PERSONAL.value)
            .order_by(User.email, TeamMember.added_at, Team.id)
        ).tuples()
        for email, slug in rows:
            world.first_team.setdefault(email, slug)
    # A User owner's team decides who may import the entity: it must be known like any owner.
    _read_teams(session, world, set(world.first_team.values()) - set(world.teams))
    return world


def docs_of(parsed: ParsedFile) -> list[DocKey]:
    return (
        [d.doc for d in parsed.entities]
        + [d.doc for d in parsed.groups]
        + [d.doc for d in parsed.users]
    )
