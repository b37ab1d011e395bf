"""Backstage's own example catalog, as published, imports whole (tests/fixtures/README.md).

The expectations are read from the files with PyYAML here, independently of the importer, so the
test follows upstream if the examples are refreshed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lamplighter.catalog import backstage, service
from lamplighter.catalog.models import Entity
from lamplighter.catalog.schemas import ImportReport
from lamplighter.core import identity
from lamplighter.core.models import AuditEntry, Team, TeamMember, User
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, truncate_all

EXAMPLES = Path(__file__).parent.parent / "fixtures" / "backstage-examples"
MODELLED = {"component": "service", "api": "api", "resource": "resource", "system": "system"}
MODELLED |= {"domain": "domain"}


def run(db: Any, settings: Settings, path: Path, **options: Any) -> ImportReport:
    with db.transaction() as session:
        return backstage.import_path(
            session=session, actor=SYSTEM, path=path, settings=settings, **options
        )


def documents(*names: str) -> list[dict[str, Any]]:
    """Every document a Location tree reaches, read with PyYAML."""
    found: list[dict[str, Any]] = []
    queue = [EXAMPLES / name for name in names]
    while queue:
        path = queue.pop(0)
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] == "Location":
                queue.extend((path.parent / t).resolve() for t in document["spec"]["targets"])
            else:
                found.append(document)
    return found


def ref_of(document: dict[str, Any]) -> str:
    kind = document["kind"].lower()
    namespace = document["metadata"].get("namespace", "default")
    return f"{MODELLED.get(kind, kind)}:{namespace}/{document['metadata']['name']}"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLES, tmp_path / "examples"))


def test_the_organisation_imports_with_its_hierarchy_and_every_person(
    db: Any, settings: Settings, examples: Path
) -> None:
    org = documents("acme/org.yaml")
    groups = [d for d in org if d["kind"] == "Group"]
    users = [d for d in org if d["kind"] == "User"]
    assert len(groups) == 9 and len(users) == 17  # what upstream publishes today
    report = run(db, settings, examples / "acme" / "org.yaml")
    assert report.errors == []
    assert sorted(report.teams_created) == sorted(g["metadata"]["name"] for g in groups)
    assert sorted(report.users_created) == sorted(ref_of(u) for u in users)
    # The two guests are two people; the second shares the first one's address: a warning.
    assert [(Path(w.file).name, w.field) for w in report.warnings] == [
        ("team-a-group.yaml", "spec.profile.email")
    ]
    assert "user:development/guest is imported without an address" in report.warnings[0].reason
    with db.sessionmaker() as session:
        teams = {t.slug: t for t in session.scalars(sa.select(Team))}
        slugs = {t.id: t.slug for t in teams.values()}
        for group in groups:
            team = teams[group["metadata"]["name"]]
            assert team.type == group["spec"]["type"]
            assert team.description == group["metadata"]["description"]
            parent = group["spec"].get("parent")
            assert (slugs[team.parent_id] if team.parent_id else None) == parent
            assert team.lead_user_id is None  # no Group names a lead: none is invented
        assert teams["acme-corp"].name == "ACME Corp"  # spec.profile.displayName
        people = {
            (u.catalog_namespace, u.catalog_name): u for u in session.scalars(sa.select(User))
        }
        assert people[("default", "guest")].email == "guest@example.com"
        guest_dev = people[("development", "guest")]
        assert not identity.has_email(guest_dev.email)
        assert [u.id for u, _ in service.people_hygiene(session=session)] == [guest_dev.id]
        members = {
            (slugs[team_id], user_id)
            for team_id, user_id in session.execute(
                sa.select(TeamMember.team_id, TeamMember.user_id)
            ).tuples()
        }
        for user in users:  # membership declared on the Users (spec.memberOf)
            person = people[
                (user["metadata"].get("namespace", "default"), user["metadata"]["name"])
            ]
            for group_ref in user["spec"]["memberOf"]:
                assert (group_ref.rsplit("/", 1)[-1], person.id) in members
    again = run(db, settings, examples / "acme" / "org.yaml")
    assert (again.teams_created, again.teams_updated, again.users_created) == ([], [], [])


def test_the_example_catalog_imports_whole_and_round_trips(
    db: Any, settings: Settings, examples: Path
) -> None:
    run(db, settings, examples / "acme" / "org.yaml")
    entities = documents("all.yaml")
    audit_before = 0
    report = run(db, settings, examples / "all.yaml")
    assert report.errors == []
    assert sorted(report.created) == sorted(ref_of(d) for d in entities)
    assert {d["kind"] for d in entities} == {
        "Component",
        "API",
        "Resource",
        "System",
        "Domain",
        "AiResource",
    }
    others = [d for d in entities if d["kind"].lower() not in MODELLED]
    assert report.kept == len(others) == 2
    # Only the three API definitions behind URLs are not taken in: kept as they are, not fetched.
    assert sorted(Path(w.file).name for w in report.warnings) == [
        "spotify-api.yaml",
        "wayback-archive-api.yaml",
        "wayback-search-api.yaml",
    ]
    with db.sessionmaker() as session:
        for document in others:  # kept whole, searchable and listed, owned like the rest
            entity = service.get_by_ref(session=session, ref=ref_of(document))
            assert entity.document == document
            assert entity.owner_team_id is not None
        found = service.list_(
            session=session,
            filters=service.ListFilters(kind="airesource"),
            after_id=None,
            limit=10,
        )
        assert sorted(e.name for e in found) == sorted(d["metadata"]["name"] for d in others)
        webhook = service.get_by_ref(session=session, ref="api:petstore-webhook")
        oas = (EXAMPLES / "apis" / "petstore-webhook.oas.yaml").read_text()
        assert webhook.spec_extra["definition"] == oas  # $text with a relative file
        # A User owner: the team is the user's first memberOf, the person is accountable.
        owner_doc = next(d for d in entities if d["spec"].get("owner") == "user:guest")
        owned = service.who_owns(session=session, ref=ref_of(owner_doc))
        assert owned.team is not None and owned.team.slug == "team-a"
        assert owned.accountable is not None and owned.accountable.email == "guest@example.com"
        audit_before = int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)
    again = run(db, settings, examples / "all.yaml")
    assert (again.created, again.updated, again.errors) == ([], [], [])
    assert again.unchanged == len(entities)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == audit_before
        exported = backstage.export_yaml(session=session)
    out = [d for d in yaml.safe_load_all(exported)]
    by_ref = {ref_of(d): d for d in out}
    assert by_ref[ref_of(owner_doc)]["spec"]["owner"] == "user:default/guest"
    for document in others:  # exported unchanged
        assert by_ref[ref_of(document)] == document
    export_file = examples.parent / "export" / "catalog-info.yaml"
    export_file.parent.mkdir()
    export_file.write_text(exported)
    same = run(db, settings, export_file)
    assert (same.created, same.updated, same.errors) == ([], [], [])
    assert same.unchanged == len(entities)
    truncate_all(db)
    fresh = run(db, settings, export_file)
    assert fresh.errors == [] and sorted(fresh.created) == sorted(ref_of(d) for d in entities)
    with db.sessionmaker() as session:
        assert backstage.export_yaml(session=session) == exported


def test_the_invalid_example_is_the_one_error(db: Any, settings: Settings, examples: Path) -> None:
    run(db, settings, examples / "acme" / "org.yaml")
    run(db, settings, examples / "all.yaml")
    report = run(db, settings, examples / "components" / "invalid-component.yaml")
    assert [(Path(e.file).name, e.document, e.field) for e in report.errors] == [
        ("invalid-component.yaml", 0, "metadata.name")
    ]
    assert "'invalid component'" in report.errors[0].reason
    assert report.created == [] and report.updated == []
    with db.sessionmaker() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(Entity).where(Entity.name.contains(" "))
            )
            == 0
        )
