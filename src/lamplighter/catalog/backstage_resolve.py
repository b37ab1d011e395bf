"""Resolving an import: who every User is, what every Group becomes (its parent, members and
lead), and for every entity its owning team, accountable person and relations, the way Backstage
resolves references; then the documents that lean on a skipped one are skipped too.

Nothing here touches the database: it works on the ``World`` read up front.
"""

from __future__ import annotations

from collections import defaultdict, deque

from lamplighter.catalog.backstage_import import (
    Batch,
    DocKey,
    Key,
    PersonKey,
    Resolved,
    TeamPlan,
    UserPlan,
    World,
    docs_of,
)
from lamplighter.catalog.backstage_parse import EntityDraft, GroupDraft, group_slug, personal_slug
from lamplighter.catalog.refs import Ref, parse_ref
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.identity import RESERVED_SLUGS, has_email, no_email_address
from lamplighter.core.models import TeamOrigin

SLUG_MAX = 63  # teams.slug


class Resolver:
    def __init__(
        self, batch: Batch, world: World, *, prune: bool, may_create_teams: bool = True
    ) -> None:
        self.batch = batch
        self.world = world
        self.prune = prune
        # Whether the importer may create the placeholder and personal teams that stand in for
        # missing owners (sre and admin): if not, only the entities that need one are refused.
        self.may_create_teams = may_create_teams
        self.emails: dict[str, PersonKey] = {}  # address → the User of the batch holding it

    # -- people --
    def users(self) -> None:
        """Decide who every User is: a person Lamplighter knows (by reference, else by e-mail),
        or a new one. An address already held by another User is a warning, not a refusal: the
        second imports without one."""
        for key, drafts in self.batch.users.items():
            draft = drafts[0]
            if not self.batch.is_ok(draft.doc):
                continue
            existing_email = self.world.people.get(key)
            wanted = draft.email
            holder = self._holder(wanted, key) if wanted else None
            if holder is not None:
                self.batch.warn(
                    draft.file,
                    draft.index,
                    "spec.profile.email",
                    f"{wanted} is also the address of {holder}: {draft.ref} is imported without "
                    "an address (it cannot sign in or be notified until it has its own)",
                )
                wanted = None
            if existing_email is not None:
                has_none = not has_email(existing_email)
                set_email = bool(wanted and has_none and wanted not in self.world.users)
                email = wanted if set_email and wanted else existing_email
                plan = UserPlan(draft, email, self.world.users[existing_email], False, set_email)
            elif wanted and wanted in self.world.users:
                plan = UserPlan(draft, wanted, self.world.users[wanted], True, False)
            else:
                email = wanted or no_email_address(draft.namespace, draft.name)
                plan = UserPlan(draft, email, None, True, False)
            self.emails[plan.email] = key
            self.batch.user_plans[key] = plan

    def _holder(self, email: str, key: PersonKey) -> str | None:
        """Which other User holds this address already, if any."""
        if email in self.emails and self.emails[email] != key:
            other = self.emails[email]
            return f"user:{other[0]}/{other[1]}"
        held_by = self.world.referenced.get(email)
        if held_by is not None and held_by != key:
            return f"user:{held_by[0]}/{held_by[1]}"
        return None

    def person(self, ref: Ref, dependent: DocKey, where: str) -> str | None:
        """The e-mail of the User a reference names, in the batch or already known."""
        key = (ref.namespace, ref.name.lower())
        draft = self.batch.user(key)
        if draft is not None and key in self.batch.user_plans:
            self.batch.use(draft.doc, dependent, where, draft.ref)
            return self.batch.user_plans[key].email
        if key in self.world.people:
            return self.world.people[key]
        if draft is None:
            found = self.world.by_local_part.get(key[1], [])
            if len(found) == 1 and ref.namespace == "default":
                return found[0]
        return None

    def groups(self) -> None:
        joining: dict[str, list[str]] = defaultdict(list)  # slug → emails of Users joining
        leading: dict[str, list[str]] = defaultdict(list)  # slug → emails of Users marked lead
        for plan in self.batch.user_plans.values():
            user = plan.draft
            member_slugs = []
            for where, ref in user.member_of:
                slug = group_slug(ref.namespace, ref.name)
                if slug in self.world.teams or self._group_ok(ref):
                    joining[slug].append(plan.email)
                    member_slugs.append(slug)
                else:
                    self.batch.warn(
                        user.file, user.index, where, f"group {ref} is not in the catalog"
                    )
            if user.leads is True:
                for slug in member_slugs:
                    leading[slug].append(plan.email)
            elif user.leads:
                for _, ref in user.leads:
                    leading[group_slug(ref.namespace, ref.name)].append(plan.email)
        claimed_by_children: dict[str, tuple[str, GroupDraft]] = {}
        for groups in self.batch.groups.values():
            group = groups[0]
            if not self.batch.is_ok(group.doc):
                continue
            for where, ref in group.children:
                child = group_slug(ref.namespace, ref.name)
                if child not in self.world.teams and not self._group_ok(ref):
                    self.batch.warn(
                        group.file, group.index, where, f"group {ref} is not in the catalog"
                    )
                    continue
                claimed_by_children.setdefault(child, (group.slug, group))
        for groups in self.batch.groups.values():
            group = groups[0]
            if not self.batch.is_ok(group.doc):
                continue
            self.batch.team_plans[group.slug] = self._team_plan(
                group, joining[group.slug], leading[group.slug], claimed_by_children
            )
        for child, (parent, _) in claimed_by_children.items():
            if (
                child not in self.batch.team_plans and child in self.world.teams
            ):  # a team not in this batch
                row = self.world.teams[child]
                if row.parent_id is None or self.world.team_slugs.get(row.parent_id) != parent:
                    self.batch.team_plans[child] = TeamPlan(
                        slug=child,
                        namespace=row.namespace,
                        name=row.name,
                        description=row.description,
                        type=row.type,
                        origin=row.origin,
                        parent=parent,
                        parent_ref=None,
                        lead=row.lead_email,
                        members=set(),
                        draft=None,
                        existing=row,
                    )
        self._break_cycles()

    def _group_ok(self, ref: Ref) -> bool:
        draft = self.batch.group((ref.namespace, ref.name.lower()))
        return draft is not None and self.batch.is_ok(draft.doc)

    def _team_plan(
        self,
        group: GroupDraft,
        joining: list[str],
        leading: list[str],
        claimed: dict[str, tuple[str, GroupDraft]],
    ) -> TeamPlan:
        members: list[str] = []
        for where, ref in group.members:
            email = self.person(ref, group.doc, where)
            if email is None:
                self.batch.warn(
                    group.file, group.index, where, f"member {ref} is not a User in the catalog"
                )
            else:
                members.append(email)
        lead: str | None = None
        if group.lead is not None:
            where, value = group.lead
            lead = self._lead(group, where, value)
        if lead is None and leading:
            lead = leading[0]
        # Nobody else is made the lead: Backstage has no such notion, and an invented lead
        # would be an accountable person nobody chose (their entities are listed by hygiene).
        parent: str | None = None
        parent_ref: str | None = None
        if group.parent is not None:
            where, ref = group.parent
            slug = group_slug(ref.namespace, ref.name)
            if slug in self.world.teams or self._group_ok(ref):
                parent = slug
            else:
                parent_ref = str(ref)
                self.batch.warn(
                    group.file,
                    group.index,
                    where,
                    f"parent {ref} is not in the catalog yet: linked when it arrives",
                )
            claim = claimed.get(group.slug)
            if claim is not None and parent is not None and claim[0] != parent:
                self.batch.warn(
                    group.file,
                    group.index,
                    where,
                    f"{claim[1].ref} lists this group among its children; spec.parent wins",
                )
        elif group.slug in claimed:
            parent = claimed[group.slug][0]
        claimed.pop(group.slug, None)
        existing = self.world.teams.get(group.slug)
        return TeamPlan(
            slug=group.slug,
            namespace=group.namespace,
            name=group.display_name,
            description=group.description,
            type=group.type,
            origin=TeamOrigin.IMPORT.value
            if existing is None or existing.origin != TeamOrigin.MANUAL.value
            else TeamOrigin.MANUAL.value,
            parent=parent,
            parent_ref=parent_ref,
            lead=lead,
            members={*members, *joining, *([lead] if lead else [])},
            draft=group,
            existing=existing,
        )

    def _lead(self, group: GroupDraft, where: str, value: str) -> str | None:
        if "@" in value:
            email = value.lower()
            if email in self.world.users or email in self.emails:
                return email
            self.batch.warn(group.file, group.index, where, f"no user with email {email}")
            return None
        try:
            ref = parse_ref(
                value, default_kind="user", default_namespace=group.namespace, field=where
            )
        except ValidationFailed:
            self.batch.warn(group.file, group.index, where, f"{value!r} is not a user reference")
            return None
        found_email = self.person(ref, group.doc, where)
        if found_email is None:
            found = self.world.by_local_part.get(ref.name.lower(), [])
            reason = (
                f"user {value!r} is ambiguous: {', '.join(found)}; name the lead by email"
                if len(found) > 1
                else f"no user {value!r}: add a User document (or a user {value}@… must exist)"
            )
            self.batch.warn(group.file, group.index, where, reason)
        return found_email

    def parent_of(self, slug: str) -> str | None:
        plan = self.batch.team_plans.get(slug)
        if plan is not None:
            return plan.parent
        row = self.world.teams.get(slug)
        if row is None or row.parent_id is None:
            return None
        return self.world.team_slugs.get(row.parent_id)

    def _break_cycles(self) -> None:
        for slug, plan in sorted(self.batch.team_plans.items()):
            seen = {slug}
            current = plan.parent
            while current is not None:
                if current in seen:
                    where = (plan.draft.file, plan.draft.index) if plan.draft else (None, None)
                    if where[0] is not None:
                        self.batch.warn(
                            where[0],
                            where[1],
                            "spec.parent",
                            f"group:{plan.namespace}/{slug} would be its own ancestor; "
                            "imported without a parent",
                        )
                    plan.parent = None
                    break
                seen.add(current)
                current = self.parent_of(current)

    def lead_of(self, slug: str) -> str | None:
        plan = self.batch.team_plans.get(slug)
        if plan is not None and plan.draft is not None:
            return plan.lead
        row = self.world.teams.get(slug)
        if plan is not None and plan.lead is not None:
            return plan.lead
        return row.lead_email if row is not None else None

    def lineage(self, slug: str) -> list[str]:
        """The team and its ancestors, nearest first."""
        found = [slug]
        current = self.parent_of(slug)
        while current is not None and current not in found:
            found.append(current)
            current = self.parent_of(current)
        return found

    def members_of(self, slug: str) -> set[str]:
        plan = self.batch.team_plans.get(slug)
        found = set(plan.members) if plan is not None else set()
        row = self.world.teams.get(slug)
        if row is not None:
            found |= self.world.members.get(row.id, set())
        return found

    # -- entities --
    def entities(self) -> None:
        for drafts in self.batch.entities.values():
            draft = drafts[0]
            if self.batch.is_ok(draft.doc):
                self.entity(draft)

    def _owner(self, draft: EntityDraft) -> tuple[str | None, str | None, str | None] | None:
        """(team slug, owner ref to keep, accountable email from a User owner); None to skip."""
        owner = draft.owner
        if owner is None:
            return (None, None, None)
        if owner.kind == "group":
            slug = group_slug(owner.namespace, owner.name)
            group = self.batch.group((owner.namespace, owner.name.lower()))
            if group is not None:
                self.batch.use(group.doc, draft.doc, "spec.owner", group.ref)
            if slug in self.world.teams or slug in self.batch.team_plans:
                return (slug, None, None)
            if group is not None:  # defined in the batch, but not imported
                self.batch.fail(
                    draft.file, draft.index, "spec.owner", f"{group.ref} was not imported"
                )
                return None
            if not self._stand_in_ok(draft, slug):
                return None
            self.batch.wanted_placeholders[slug].append(draft.doc)
            self.batch.warn(
                draft.file,
                draft.index,
                "spec.owner",
                f"{owner} is not in the catalog: a placeholder team {slug!r} owns it until the "
                "Group is imported",
            )
            return (slug, None, None)
        owner_ref = f"user:{owner.namespace}/{owner.name.lower()}"
        email = self.person(owner, draft.doc, "spec.owner")
        key = (owner.namespace, owner.name.lower())
        user = self.batch.user(key)
        if email is None and user is not None:
            self.batch.fail(draft.file, draft.index, "spec.owner", f"{user.ref} was not imported")
            return None
        team: str | None = None
        if user is not None and key in self.batch.user_plans:
            for _, ref in user.member_of:
                slug = group_slug(ref.namespace, ref.name)
                if slug in self.world.teams or slug in self.batch.team_plans:
                    team = slug
                    break
        elif email is not None:
            team = self.world.first_team.get(email)
        if team is None:
            team = personal_slug(owner.namespace, owner.name)
            if not self._stand_in_ok(draft, team):
                return None
            self.batch.wanted_placeholders[team].append(draft.doc)
            self.batch.warn(
                draft.file,
                draft.index,
                "spec.owner",
                f"{owner} belongs to no team"
                + ("" if email else " and is not in the catalog")
                + f": a personal team {team!r} owns it",
            )
        return (team, owner_ref, email)

    def _stand_in_ok(self, draft: EntityDraft, slug: str) -> bool:
        """Whether a placeholder or personal team may take this slug; if not, say why."""
        if slug in self.world.teams or slug in self.batch.team_plans:
            return True
        reason = None
        if not self.may_create_teams:
            reason = "only SREs and admins may create the team standing in for it"
        elif len(slug) > SLUG_MAX:
            reason = f"the team standing in for it would be {slug!r}, over {SLUG_MAX} characters"
        elif slug in RESERVED_SLUGS:
            reason = f"{slug!r} is reserved and cannot name the team standing in for it"
        if reason is None:
            return True
        self.batch.fail(
            draft.file,
            draft.index,
            "spec.owner",
            f"{draft.owner} is not a team in the catalog, and {reason}: import its Group or name "
            "another owner",
        )
        return False

    def entity(self, draft: EntityDraft) -> None:
        file, index = draft.file, draft.index
        owned = self._owner(draft)
        if owned is None:
            return
        owner, owner_ref, user_owner = owned
        accountable = self._accountable(draft, owner, user_owner)
        relations: set[tuple[str, Key]] = set()
        relation_refs: dict[str, list[str]] = defaultdict(list)
        for use in draft.refs:
            key = use.key
            if key == draft.key:
                self.batch.warn(
                    file,
                    index,
                    use.field,
                    f"{draft.ref} depends on itself: the relation is dropped",
                )
                continue
            target = self.batch.entity(key)
            if target is not None:
                self.batch.use(target.doc, draft.doc, use.field, target.ref)
                display = target.ref
            elif key in self.world.entities:
                display = self.world.entities[key].ref
                if self.prune and key in self.world.candidates:
                    gone = self.world.candidates[key]
                    self.batch.warn(
                        file,
                        index,
                        use.field,
                        f"{gone.ref} was removed from {gone.location}; --prune deletes it and "
                        "the relation is kept unresolved",
                    )
            else:
                display = str(use.ref)
                self.batch.warn(
                    file,
                    index,
                    use.field,
                    f"{use.ref} is not in the catalog (yet): kept as an unresolved relation",
                )
            relations.add((use.relation, key))
            relation_refs[use.name].append(display)
        self.batch.resolved[id(draft)] = Resolved(
            draft, owner or "", owner_ref, accountable, sorted(relations), dict(relation_refs)
        )

    def _accountable(
        self, draft: EntityDraft, owner: str | None, user_owner: str | None
    ) -> str | None:
        """The annotation, a User owner, the owning team's lead, the nearest ancestor's lead."""
        if owner is None:
            return None
        if draft.accountable:
            where = "metadata.annotations.lamplighter.io/accountable"
            email = draft.accountable
            if email not in self.world.users and email not in self.emails:
                self.batch.warn(
                    draft.file,
                    draft.index,
                    where,
                    f"no user with email {email}: the accountable person falls back to the "
                    "owner or the team's lead",
                )
            elif not any(email in self.members_of(slug) for slug in self.lineage(owner)):
                self.batch.warn(
                    draft.file,
                    draft.index,
                    where,
                    f"{email} is not a member of the owning team {owner} (nor of a team above "
                    "it): the accountable person falls back to the owner or the team's lead",
                )
            else:
                return email
        if user_owner is not None:
            return user_owner
        for slug in self.lineage(owner):
            lead = self.lead_of(slug)
            if lead is not None:
                return lead
        return None

    def fail_dependents(self, *, strict: bool) -> None:
        """A document that needs one that was not imported is skipped too, to a fixpoint;
        ``strict`` skips every document of a file that has any error."""
        if strict:
            bad_files = self.batch.failed_files | {file for file, _ in self.batch.failed}
            for parsed in self.batch.files:
                if parsed.name not in bad_files:
                    continue
                for doc in docs_of(parsed):
                    if doc not in self.batch.failed:
                        self.batch.fail(
                            doc[0],
                            doc[1],
                            "file",
                            "--strict: another document of this file has an error",
                        )
        queue = deque(sorted(self.batch.failed))
        for parsed in self.batch.files:
            if parsed.name in self.batch.failed_files:
                queue.extend(docs_of(parsed))
        uses = self.batch.dependents() if queue else {}
        while queue:
            bad = queue.popleft()
            for dependent, where, what in uses.get(bad, []):
                if not self.batch.is_ok(dependent):
                    continue
                self.batch.fail(
                    dependent[0],
                    dependent[1],
                    where,
                    f"{what} is defined in {bad[0]} document {bad[1]}, which was not imported",
                )
                queue.append(dependent)
