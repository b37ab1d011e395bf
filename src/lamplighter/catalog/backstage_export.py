"""Writing the catalog back as ``catalog-info.yaml`` documents.

The whole-catalog export also carries the Groups (owning teams, with members and their lead) and
the Users they need, so a fresh database can import it; importing an export again changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session, aliased

from lamplighter.catalog.backstage_import import chunks
from lamplighter.catalog.backstage_parse import ACCOUNTABLE, COST_CENTRE, LEAD, TIER
from lamplighter.catalog.models import Entity, Lifecycle, Relation, RelationType
from lamplighter.catalog.refs import NAME_RE, parse_ref
from lamplighter.core import people
from lamplighter.core.errors import NotFound
from lamplighter.core.identity import has_email
from lamplighter.core.models import Team

_BASE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Dumper(_BASE_DUMPER):  # type: ignore[misc]
    """The C dumper, writing multi-line text (API definitions, descriptions) as literal blocks."""


def _represent_text(dumper: Any, data: str) -> Any:
    style = "|" if "\n" in data and not any(c in data for c in "\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


Dumper.add_representer(str, _represent_text)
BACKSTAGE = "backstage.io/v1alpha1"
LAMPLIGHTER = "lamplighter.io/v1alpha1"
KIND_NAMES = {
    "service": "Component",
    "api": "API",
    "resource": "Resource",
    "system": "System",
    "domain": "Domain",
    "platform": "Platform",
}
REF_KINDS = {"service": "component"}  # Backstage's spelling in references
LIFECYCLE_KINDS = frozenset({"service", "api", "platform"})  # Backstage requires it there
RELATION_FIELDS = {
    RelationType.DEPENDS_ON.value: "dependsOn",
    RelationType.PROVIDES_API.value: "providesApis",
    RelationType.CONSUMES_API.value: "consumesApis",
}
PART_OF_FIELDS = {"system": "system", "domain": "domain", "service": "subcomponentOf"}
EXPORT_CHUNK = 1000


def backstage_ref(kind: str, namespace: str, name: str) -> str:
    return f"{REF_KINDS.get(kind, kind)}:{namespace}/{name}"


def user_names(emails: dict[int, str]) -> dict[int, str]:
    """A Backstage name for every user: the email's local part, made valid and unique."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for user_id, email in sorted(emails.items()):
        local = email.split("@", 1)[0].lower()
        local = re.sub(r"[^a-z0-9._-]+", "-", local)
        local = re.sub(r"[._-]{2,}", "-", local).strip("._-")[:60].strip("._-")
        base = local if local and NAME_RE.match(local) else f"user-{user_id}"
        name, counter = base, 2
        while name in taken:
            name, counter = f"{base[:58]}-{counter}", counter + 1
        taken.add(name)
        names[user_id] = name
    return names


def entity_document(
    entity: Entity,
    team_slug: str | None,
    accountable_email: str | None,
    relations: list[tuple[str, str, str, str]],
) -> dict[str, Any]:
    """One entity as a catalog-info.yaml document; ``relations`` are (type, kind, ns, name)."""
    if entity.document is not None:  # a kind Lamplighter keeps whole: exported as it came
        return dict(entity.document)
    annotations = dict(entity.annotations)
    annotations[TIER] = str(entity.tier)
    if accountable_email:
        annotations[ACCOUNTABLE] = accountable_email
    if entity.cost_centre:
        annotations[COST_CENTRE] = entity.cost_centre
    metadata: dict[str, Any] = {"name": entity.name, "namespace": entity.namespace}
    if entity.title:
        metadata["title"] = entity.title
    if entity.description:
        metadata["description"] = entity.description
    if entity.labels:
        metadata["labels"] = dict(entity.labels)
    metadata["annotations"] = annotations
    if entity.tags:
        metadata["tags"] = list(entity.tags)
    if entity.links:
        metadata["links"] = [
            {k: v for k, v in link.items() if v not in (None, "")} for link in entity.links
        ]
    spec: dict[str, Any] = {}
    if entity.type or entity.kind == "service":
        spec["type"] = entity.type or "service"
    if entity.kind in LIFECYCLE_KINDS or entity.lifecycle != Lifecycle.PRODUCTION.value:
        spec["lifecycle"] = entity.lifecycle
    if entity.owner_ref:
        spec["owner"] = entity.owner_ref
    elif team_slug:
        spec["owner"] = team_slug
    listed: dict[str, list[str]] = {}
    for relation, kind, namespace, name in sorted(
        relations, key=lambda r: (r[0], r[1], r[2], r[3].lower())
    ):
        ref = backstage_ref(kind, namespace, name)
        if relation == RelationType.PART_OF.value:
            spec.setdefault(PART_OF_FIELDS.get(kind, "subcomponentOf"), ref)
        else:
            listed.setdefault(RELATION_FIELDS[relation], []).append(ref)
    for spec_field in ("dependsOn", "providesApis", "consumesApis"):
        if spec_field in listed:
            spec[spec_field] = listed[spec_field]
    if entity.version:
        spec["version"] = entity.version
    for key, value in entity.spec_extra.items():
        spec.setdefault(key, value)
    return {
        "apiVersion": LAMPLIGHTER if entity.kind == "platform" else BACKSTAGE,
        "kind": KIND_NAMES[entity.kind],
        "metadata": metadata,
        "spec": spec,
    }


def _relations(session: Session, ids: list[int]) -> dict[int, list[tuple[str, str, str, str]]]:
    target = aliased(Entity)
    found: dict[int, list[tuple[str, str, str, str]]] = {}
    for part in chunks(ids):
        rows = session.execute(
            sa.select(Relation.source_id, Relation.type, target.kind, target.namespace, target.name)
            .join(target, target.id == Relation.target_id)
            .where(Relation.source_id.in_(part))
        ).all()
        for source_id, relation, kind, namespace, name in rows:
            found.setdefault(source_id, []).append((relation, kind, namespace, name))
    return found


def _emails(session: Session, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for part in chunks(sorted(ids)):
        users = people.users_by_id(session=session, ids=part)
        found.update({user_id: user.email for user_id, user in users.items()})
    return found


def team_ref_name(team: Team) -> str:
    """The Group name a team goes by (its slug without the namespace prefix)."""
    prefix = f"{team.namespace}--"
    return team.slug.removeprefix(prefix) if team.namespace != "default" else team.slug


def _group_ref(team: Team) -> str:
    return f"group:{team.namespace}/{team_ref_name(team)}"


def _teams_with_ancestors(session: Session, team_ids: set[int]) -> list[Team]:
    found: dict[int, Team] = {}
    pending = sorted(team_ids)
    while pending:
        parents: set[int] = set()
        for part in chunks(pending):
            for team in people.teams_by_id(session=session, ids=part).values():
                found[team.id] = team
                if team.parent_id is not None:
                    parents.add(team.parent_id)
        pending = sorted(parents - set(found))
    return [t for t in found.values() if t.origin not in {"personal", "placeholder"}]


def _people_documents(
    session: Session, team_ids: set[int], extra_user_ids: set[int]
) -> list[dict[str, Any]]:
    teams = _teams_with_ancestors(session, team_ids)
    teams.sort(key=lambda t: t.slug)
    by_id = {team.id: team for team in teams}
    members: dict[int, list[int]] = {}
    for part in chunks(sorted(by_id)):
        members.update(people.member_ids_of(session=session, team_ids=part))
    wanted = extra_user_ids | {u for ids in members.values() for u in ids}
    wanted |= {team.lead_user_id for team in teams if team.lead_user_id is not None}
    users = {
        user.id: user
        for part in chunks(sorted(wanted))
        for user in people.users_by_id(session=session, ids=part).values()
    }
    names = user_names(
        {user_id: user.email for user_id, user in users.items() if user.catalog_name is None}
    )
    refs = {
        user_id: (user.catalog_namespace or "default", user.catalog_name or names[user_id])
        for user_id, user in users.items()
    }
    member_of: dict[int, list[str]] = {}
    documents: list[dict[str, Any]] = []
    for team in teams:
        team_members = sorted(members.get(team.id, []), key=lambda u: refs[u])
        group_ref = f"group:{team.namespace}/{team_ref_name(team)}"
        for user_id in team_members:
            member_of.setdefault(user_id, []).append(group_ref)
        metadata: dict[str, Any] = {"name": team_ref_name(team), "namespace": team.namespace}
        if team.description:
            metadata["description"] = team.description
        if team.lead_user_id is not None:
            metadata["annotations"] = {LEAD: users[team.lead_user_id].email}
        spec: dict[str, Any] = {"type": team.type, "profile": {"displayName": team.name}}
        parent = by_id.get(team.parent_id) if team.parent_id is not None else None
        if parent is not None:
            spec["parent"] = f"group:{parent.namespace}/{team_ref_name(parent)}"
        elif team.parent_ref:
            spec["parent"] = team.parent_ref
        spec["children"] = [
            f"group:{child.namespace}/{team_ref_name(child)}"
            for child in teams
            if child.parent_id == team.id
        ]
        spec["members"] = [f"user:{refs[u][0]}/{refs[u][1]}" for u in team_members]
        documents.append(
            {"apiVersion": BACKSTAGE, "kind": "Group", "metadata": metadata, "spec": spec}
        )
    for user_id, user in sorted(users.items(), key=lambda item: refs[item[0]]):
        profile: dict[str, Any] = {"displayName": user.display_name}
        if has_email(user.email):
            profile["email"] = user.email
        documents.append(
            {
                "apiVersion": BACKSTAGE,
                "kind": "User",
                "metadata": {"name": refs[user_id][1], "namespace": refs[user_id][0]},
                "spec": {"profile": profile, "memberOf": member_of.get(user_id, [])},
            }
        )
    return documents


def iter_documents(session: Session, *, ref: str | None = None) -> Iterator[dict[str, Any]]:
    """The catalog (or the one entity ``ref`` names) as catalog-info.yaml documents."""
    if ref is not None:
        parsed = parse_ref(ref, default_kind="service", default_namespace="default", field="ref")
        entity = session.scalar(
            sa.select(Entity).where(
                Entity.kind == parsed.kind,
                Entity.namespace == parsed.namespace,
                Entity.name_key == parsed.name.lower(),
            )
        )
        if entity is None:
            raise NotFound(f"no catalog entity {parsed}")
        owner_team = people.find_team(session=session, team_id=entity.owner_team_id)
        slug = _group_ref(owner_team) if owner_team is not None else None
        person = entity.accountable_user_id
        emails = _emails(session, {person} if person is not None else set())
        yield entity_document(
            entity,
            slug,
            emails.get(entity.accountable_user_id or 0),
            _relations(session, [entity.id]).get(entity.id, []),
        )
        return
    team_ids = {
        team_id
        for team_id in session.scalars(sa.select(Entity.owner_team_id).distinct())
        if team_id is not None
    }
    accountable_ids = {
        user_id
        for user_id in session.scalars(sa.select(Entity.accountable_user_id).distinct())
        if user_id is not None
    }
    yield from _people_documents(session, team_ids, accountable_ids)
    slugs = {team.id: _group_ref(team) for team in people.all_teams(session=session)}
    emails = _emails(session, accountable_ids)
    last_id = 0
    while True:
        batch = list(
            session.scalars(
                sa.select(Entity).where(Entity.id > last_id).order_by(Entity.id).limit(EXPORT_CHUNK)
            )
        )
        if not batch:
            return
        relations = _relations(session, [e.id for e in batch])
        for entity in batch:
            yield entity_document(
                entity,
                slugs.get(entity.owner_team_id or 0),
                emails.get(entity.accountable_user_id or 0),
                relations.get(entity.id, []),
            )
        last_id = batch[-1].id
        for entity in batch:
            session.expunge(entity)  # keep memory flat on large catalogs


def dump(documents: list[dict[str, Any]]) -> str:
    text: str = yaml.dump_all(
        documents,
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        explicit_start=True,
        default_flow_style=False,
        width=100,
    )
    return text


def export_yaml(*, session: Session, ref: str | None = None) -> str:
    """The catalog (or one entity) as one multi-document YAML text."""
    parts = []
    documents: list[dict[str, Any]] = []
    for document in iter_documents(session, ref=ref):
        documents.append(document)
        if len(documents) >= EXPORT_CHUNK:
            parts.append(dump(documents))
            documents = []
    if documents:
        parts.append(dump(documents))
    return "".join(parts)
