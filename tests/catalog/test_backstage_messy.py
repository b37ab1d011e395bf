"""Catalogs as they are written in the wild: each oddity Backstage tolerates imports with one
warning; what Backstage refuses is refused for its own entity only; a later file that supplies
what was missing resolves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lamplighter.catalog import backstage, graph, service
from lamplighter.catalog.models import Entity
from lamplighter.catalog.schemas import ImportReport
from lamplighter.core import identity
from lamplighter.core.models import Team, TeamOrigin, User
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM

HEAD = "apiVersion: backstage.io/v1alpha1\n"


def run(db: Any, settings: Settings, path: Path, **options: Any) -> ImportReport:
    with db.transaction() as session:
        return backstage.import_path(
            session=session, actor=SYSTEM, path=path, settings=settings, **options
        )


def write(root: Path, name: str, *documents: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(HEAD + d for d in documents))
    return path


def where(items: list[Any]) -> list[tuple[str, int | None, str]]:
    return [(Path(i.file).name, i.document, i.field) for i in items]


ORG = (
    "kind: Group\nmetadata: {name: platform}\nspec: {type: department, children: [storage]}\n",
    "kind: Group\nmetadata: {name: storage, annotations: {lamplighter.io/lead: sam}}\n"
    "spec: {type: team, children: [], members: [sam, nobody-here]}\n",
    "kind: User\nmetadata: {name: sam}\nspec: {profile: {email: sam@example.com}, memberOf: []}\n",
    # no spec.profile.email, as 59 real files had it
    "kind: User\nmetadata: {name: kim}\nspec: {profile: {displayName: Kim}, memberOf: [storage]}\n",
)


def test_dangling_references_are_kept_and_resolve_when_the_entity_arrives(
    db: Any, settings: Settings, tmp_path: Path
) -> None:
    org = run(db, settings, write(tmp_path / "org", "org.yaml", *ORG))
    assert org.errors == []
    assert where(org.warnings) == [("org.yaml", 1, "spec.members.1")]  # a member who is no User
    assert "user:default/nobody-here is not a User in the catalog" in org.warnings[0].reason
    services = write(
        tmp_path / "svc",
        "catalog-info.yaml",
        # the owner Group is not in the catalog yet
        "kind: Component\nmetadata: {name: billing}\n"
        "spec: {type: service, owner: finance, dependsOn: ['resource:billing-db']}\n",
        "kind: Component\nmetadata: {name: blob-store}\nspec: {type: service, owner: storage}\n",
    )
    report = run(db, settings, services)
    assert report.errors == [] and len(report.created) == 2
    assert where(report.warnings) == [
        ("catalog-info.yaml", 0, "spec.dependsOn.0"),
        ("catalog-info.yaml", 0, "spec.owner"),
    ]
    assert report.teams_created == ["finance"]  # the placeholder that keeps "one owning team"
    with db.sessionmaker() as session:
        finance = identity.get_team(session=session, slug="finance")
        assert finance.origin == TeamOrigin.PLACEHOLDER.value and finance.lead is None
        problems = dict(
            (e.ref, why) for e, why in service.hygiene(session=session, after_id=None, limit=50)
        )
        assert "placeholder team" in problems["service:default/billing"]
        # blob-store: the storage lead is accountable; kim has no address and is listed
        owned = service.who_owns(session=session, ref="blob-store")
        assert owned.accountable is not None and owned.accountable.email == "sam@example.com"
        people = [u.catalog_name for u, _ in service.people_hygiene(session=session)]
        assert people == ["kim"]
    later = write(
        tmp_path / "later",
        "catalog-info.yaml",
        "kind: Group\nmetadata: {name: finance, annotations: {lamplighter.io/lead: sam@example.com}}\n"
        "spec: {type: team, children: [], members: [sam]}\n",
        "kind: Resource\nmetadata: {name: billing-db}\nspec: {type: database, owner: finance}\n",
        "kind: User\nmetadata: {name: kim}\n"
        "spec: {profile: {email: kim@example.com}, memberOf: [storage]}\n",
    )
    supplied = run(db, settings, later)
    assert supplied.errors == [] and supplied.warnings == []
    assert supplied.teams_updated == ["finance"] and supplied.created == [
        "resource:default/billing-db"
    ]
    with db.sessionmaker() as session:
        finance = identity.get_team(session=session, slug="finance")
        assert finance.origin == TeamOrigin.IMPORT.value
        assert finance.lead is not None and finance.lead.email == "sam@example.com"
        billing = service.get_by_ref(session=session, ref="billing")
        targets = service.relations_of(session=session, entity_id=billing.id)["depends_on"]
        assert [e.ref for e in targets] == ["resource:default/billing-db"]
        assert service.unresolved_of(session=session, entity_id=billing.id) == []
        kim = session.scalars(sa.select(User).where(User.catalog_name == "kim")).one()
        assert kim.email == "kim@example.com" and service.people_hygiene(session=session) == []
    again = run(db, settings, services)  # the next import of the first file: now clean
    assert (
        again.warnings == []
        and again.unchanged == 1
        and again.updated == ["service:default/billing"]
    )
    with db.sessionmaker() as session:
        owned = service.who_owns(session=session, ref="billing")
        assert owned.accountable is not None and owned.accountable.email == "sam@example.com"
        assert owned.problems == []


def test_messy_files_import_what_backstage_would_with_one_answer_per_oddity(
    db: Any, settings: Settings, tmp_path: Path
) -> None:
    run(db, settings, write(tmp_path / "org", "org.yaml", *ORG))
    root = tmp_path / "repo"
    write(
        root,
        "catalog-info.yaml",
        "kind: Location\nmetadata: {name: all}\n"
        "spec: {targets: [./a.yaml, ./gone.yaml, ./b.yaml]}\n",  # one target is missing
        "kind: Location\nmetadata: {name: no-spec}\n",  # a Location without spec
    )
    write(
        root,
        "a.yaml",
        "kind: Component\nmetadata: {name: queue}\nspec: {type: service, owner: storage}\n",
        # depends on itself
        "kind: Component\nmetadata: {name: loop}\n"
        "spec: {type: service, owner: storage, dependsOn: ['component:loop']}\n",
        # a null annotation value
        "kind: Component\nmetadata: {name: quiet, annotations: {backstage.io/techdocs-ref: null}}\n"
        "spec: {type: service, owner: storage}\n",
        # Backstage refuses these two: so does Lamplighter, for them alone
        "kind: Component\nmetadata: {name: has spaces}\nspec: {type: service, owner: storage}\n",
        "kind: Component\nmetadata: {name: ownerless}\nspec: {type: service, owner: ''}\n",
    )
    write(
        root,
        "b.yaml",
        # the same entity defined twice: the first wins
        "kind: Component\nmetadata: {name: Queue, title: Second}\n"
        "spec: {type: service, owner: storage}\n",
        "kind: Component\nmetadata: {name: notes}\nspec: {type: service, owner: storage}\n",
    )
    report = run(db, settings, root / "catalog-info.yaml")
    assert sorted(report.created) == [
        "service:default/loop",
        "service:default/notes",
        "service:default/queue",
        "service:default/quiet",
    ]
    assert where(report.errors) == [
        ("a.yaml", 3, "metadata.name"),
        ("a.yaml", 4, "spec.owner"),
        ("b.yaml", 0, "metadata.name"),
    ]
    reasons = [e.reason for e in report.errors]
    assert "'has spaces' must be 1-63 letters or digits" in reasons[0]
    assert reasons[1] == "is required"
    assert "is defined more than once" in reasons[2] and "a.yaml document 0 is kept" in reasons[2]
    assert where(report.warnings) == [
        ("a.yaml", 1, "spec.dependsOn.0"),
        ("a.yaml", 2, "metadata.annotations.backstage.io/techdocs-ref"),
        ("catalog-info.yaml", 0, "spec.targets.1"),
        ("catalog-info.yaml", 1, "spec"),
    ]
    assert "'./gone.yaml' does not exist" in report.warnings[2].reason
    with db.sessionmaker() as session:
        loop = service.get_by_ref(session=session, ref="loop")
        relations = service.relations_of(session=session, entity_id=loop.id)
        assert (
            relations["depends_on"] == []
            and service.unresolved_of(session=session, entity_id=loop.id) == []
        )
        assert service.get_by_ref(session=session, ref="quiet").annotations == {}
        assert service.get_by_ref(session=session, ref="queue").title == ""
        assert session.scalar(sa.select(sa.func.count()).select_from(Team)) == 2
    strict = run(db, settings, root / "catalog-info.yaml", strict=True)
    skipped_files = {Path(e.file).name for e in strict.errors}
    assert skipped_files == {"a.yaml", "b.yaml"}  # all-or-nothing per file, for CI
    assert strict.updated == [] and strict.removed == []


def test_a_user_owner_and_an_umbrella_group_with_no_members(
    db: Any, settings: Settings, tmp_path: Path
) -> None:
    """An umbrella Group with no members owns a Component that depends on a namespaced
    Component of another team: it imports whole, and who-owns and blast radius answer."""
    org = write(
        tmp_path / "org",
        "org.yaml",
        "kind: Group\nmetadata: {name: payments-dept}\n"
        "spec: {type: department, children: [ledger-team]}\n",
        "kind: Group\nmetadata: {name: ledger-team}\n"
        "spec: {type: team, parent: payments-dept, children: []}\n",
        "kind: Group\nmetadata: {name: umbrella}\n"
        "spec: {type: organisation-unit, parent: payments-dept, children: []}\n",
        "kind: Group\nmetadata: {name: edge, namespace: network}\n"
        "spec: {type: team, children: []}\n",
        "kind: User\nmetadata: {name: lee, annotations: {lamplighter.io/lead: 'group:payments-dept'}}\n"
        "spec: {profile: {email: lee@example.com}, memberOf: [payments-dept]}\n",
        "kind: User\nmetadata: {name: ola, namespace: network}\n"
        "spec: {profile: {email: ola@example.com}, memberOf: [edge]}\n",
        "kind: User\nmetadata: {name: pia}\nspec: {profile: {email: pia@example.com}, memberOf: []}\n",
    )
    assert run(db, settings, org).errors == []
    components = write(
        tmp_path / "svc",
        "catalog-info.yaml",
        "kind: Component\nmetadata: {name: gateway, namespace: network}\n"
        "spec: {type: service, owner: edge}\n",  # the owner takes the entity's namespace
        "kind: Component\nmetadata: {name: checkout}\n"
        "spec: {type: service, owner: umbrella, dependsOn: ['component:network/gateway']}\n",
        "kind: Component\nmetadata: {name: scratch}\nspec: {type: service, owner: 'user:pia'}\n",
    )
    report = run(db, settings, components)
    assert report.errors == [] and len(report.created) == 3
    assert where(report.warnings) == [("catalog-info.yaml", 2, "spec.owner")]  # pia: no team
    with db.sessionmaker() as session:
        umbrella = identity.get_team(session=session, slug="umbrella")
        assert umbrella.lead is None
        owned = service.who_owns(session=session, ref="checkout")
        assert owned.team is not None and owned.team.slug == "umbrella"
        # from the nearest ancestor with a lead: the department
        assert owned.accountable is not None and owned.accountable.email == "lee@example.com"
        assert owned.lead is not None and owned.lead.email == "lee@example.com"
        assert owned.problems == []
        gateway = service.who_owns(session=session, ref="service:network/gateway")
        assert gateway.team is not None and gateway.team.slug == "network--edge"
        assert gateway.accountable is None  # edge names no lead: hygiene says how to fix it
        problems = dict(
            (e.ref, why) for e, why in service.hygiene(session=session, after_id=None, limit=50)
        )
        assert problems["service:network/gateway"].startswith("no accountable person")
        assert "service:default/checkout" not in problems
        scratch = service.who_owns(session=session, ref="scratch")
        assert scratch.team is not None and scratch.team.origin == TeamOrigin.PERSONAL.value
        assert scratch.accountable is not None and scratch.accountable.email == "pia@example.com"
        assert "belongs to no team" in problems["service:default/scratch"]
        entity = session.scalars(sa.select(Entity).where(Entity.name == "scratch")).one()
        assert entity.owner_ref == "user:default/pia"
    with db.sessionmaker() as session:  # blast radius: who depends on the gateway
        gateway_id = service.get_by_ref(session=session, ref="service:network/gateway").id
        walk = graph.traverse(session=session, root_id=gateway_id, reverse=True, depth=5)
        reached = graph.entities(session, {r.entity_id for r in walk.reached})
    assert {e.ref for e in reached.values()} == {"service:default/checkout"}


def test_pages_show_unresolved_relations_kept_kinds_and_people_to_reach(
    client: Any, db: Any, settings: Settings, tmp_path: Path
) -> None:
    from tests.helpers import person, sign_in, text

    run(db, settings, write(tmp_path / "org", "org.yaml", *ORG))
    path = write(
        tmp_path / "svc",
        "catalog-info.yaml",
        "kind: Component\nmetadata: {name: billing}\n"
        "spec: {type: service, owner: storage, dependsOn: ['resource:billing-db']}\n",
        "kind: Template\nmetadata: {name: new-service, title: New service}\n"
        "spec: {owner: storage, type: service, steps: [{id: fetch, action: 'fetch:template'}]}\n",
    )
    assert run(db, settings, path).errors == []
    sign_in(client, person(db, role="sre"))
    billing = client.get("/catalog/service/default/billing")
    assert billing.status_code == 200
    assert "Not in the catalog yet" in text(billing)
    assert "resource:default/billing-db" in text(billing)
    template = client.get("/catalog/template/default/new-service")
    assert template.status_code == 200
    assert "As imported" in text(template) and "fetch:template" in text(template)
    assert "/catalog/template/default/new-service/edit" not in template.text  # changed in its file
    edit = client.get("/catalog/template/default/new-service/edit")
    assert edit.status_code == 409
    listed = client.get("/catalog", params={"kind": "template"})
    assert "new-service" in text(listed)
    hygiene = client.get("/catalog/hygiene")
    assert hygiene.status_code == 200
    assert "People who cannot sign in or be notified" in text(hygiene)
    assert "user:default/kim" in text(hygiene)
    assert "relations to entities not in the catalog yet" in text(hygiene)


def test_a_nul_character_refuses_its_document_and_names_where(
    db: Any, settings: Settings, tmp_path: Path
) -> None:
    run(db, settings, write(tmp_path / "org", "org.yaml", *ORG))
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "blob.txt").write_text("a\x00b")
    path = write(
        tmp_path / "svc",
        "catalog-info.yaml",
        'kind: Component\nmetadata: {name: nul}\nspec: {type: "a\\0b", owner: storage}\n',
        "kind: API\nmetadata: {name: blob}\n"
        "spec: {type: openapi, owner: storage, definition: {$text: ./blob.txt}}\n",
        "kind: Component\nmetadata: {name: fine}\nspec: {type: service, owner: storage}\n",
    )
    report = run(db, settings, path)
    assert where(report.errors) == [
        ("catalog-info.yaml", 0, "spec.type"),
        ("catalog-info.yaml", 1, "spec.definition.$text"),
    ]
    assert all("NUL" in e.reason for e in report.errors)
    assert report.created == ["service:default/fine"]
