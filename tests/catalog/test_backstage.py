"""Backstage import and export: kinds, references, idempotence, bad input, round trips, the API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lamplighter.catalog import backstage, search, service
from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.catalog.models import Entity
from lamplighter.catalog.schemas import ImportReport
from lamplighter.core import identity
from lamplighter.core.models import AuditEntry, Event, Team, User
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user, truncate_all

FIXTURES = Path(__file__).parent / "fixtures"
ACME_REFS = {
    "domain:default/commerce",
    "system:default/payments",
    "service:default/ledger",
    "service:default/ledger-worker",
    "resource:default/ledger-db",
    "api:default/ledger-api",
    "platform:default/container-platform",
    "service:edge/gateway",
    "resource:edge/edge-cache",
    "api:default/gateway-api",
}
PEOPLE = """\
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: payments, annotations: {lamplighter.io/lead: lead}}
spec: {type: team, children: [], members: [lead, dev]}
---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: search}
spec: {type: team, children: [], members: [outsider]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: lead}
spec: {profile: {email: lead@example.com}, memberOf: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: dev}
spec: {profile: {email: dev@example.com}, memberOf: []}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: outsider}
spec: {profile: {email: out@example.com}, memberOf: []}
"""


def component(name: str, owner: str = "payments", **spec: Any) -> str:
    document = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": spec.pop("kind", "Component"),
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"type": "service", "owner": owner, **spec},
    }
    return yaml.safe_dump(document, sort_keys=False)


def write(root: Path, name: str, text: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def run(db: Any, settings: Settings, path: Path, **options: Any) -> ImportReport:
    with db.transaction() as session:
        return backstage.import_path(
            session=session, actor=SYSTEM, path=path, settings=settings, **options
        )


def refs(db: Any) -> set[str]:
    with db.sessionmaker() as session:
        return {e.ref for e in session.scalars(sa.select(Entity))}


def count(db: Any, model: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def errors_of(report: ImportReport) -> list[tuple[str, int | None, str]]:
    return [(Path(e.file).name, e.document, e.field) for e in report.errors]


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "acme", tmp_path / "acme"))


@pytest.fixture
def people(db: Any, settings: Settings, tmp_path: Path) -> None:
    report = run(db, settings, write(tmp_path / "org", "people.yaml", PEOPLE))
    assert report.errors == [] and report.teams_created == ["payments", "search"]


def test_a_tree_with_locations_imports_every_kind(db: Any, settings: Settings, acme: Path) -> None:
    report = run(db, settings, acme)
    assert report.errors == []
    assert set(report.created) == ACME_REFS and report.unchanged == 0
    assert report.teams_created == ["payments", "platform"]
    assert report.users_created == ["user:default/ana", "user:default/ben", "user:default/cy"]
    assert report.warnings == []
    assert refs(db) == ACME_REFS  # the shared API came only through the root Location's glob
    with db.sessionmaker() as session:
        payments = identity.get_team(session=session, slug="payments")
        assert payments.lead is not None
        assert (payments.name, payments.lead.email) == ("Payments Team", "ana@acme.test")
        members = identity.list_members(session=session, team_id=payments.id)
        assert sorted(m.user.email for m in members) == ["ana@acme.test", "ben@acme.test"]
        platform = identity.get_team(session=session, slug="platform")
        assert platform.lead is None  # no lead named: none is invented (hygiene lists it)
        ana = identity.get_user_by_email(session=session, email="ana@acme.test")
        assert ana is not None
        assert (ana.display_name, ana.role, ana.password_hash) == ("Ana Lima", "member", None)
        ledger = service.get_by_ref(session=session, ref="ledger")
        assert ledger.provenance == "import"
        assert ledger.location == str(acme / "payments" / "catalog-info.yaml")
        assert (ledger.tier, ledger.cost_centre, ledger.type) == (1, "CC-100", "service")
        assert ledger.annotations == {"github.com/project-slug": "acme/ledger"}
        assert ledger.labels == {"tier-label": "gold"} and ledger.tags == ["java", "money"]
        assert [(link["type"], link["icon"]) for link in ledger.links] == [
            ("runbook", None),
            ("other", "dashboard"),  # Backstage's admin-dashboard is not one of ours
        ]
        assert ledger.spec_extra == {"slo": {"availability": 99.9}}
        owner = service.who_owns(session=session, ref="ledger")
        assert owner.team is not None and owner.team.slug == "payments"
        assert owner.accountable is not None and owner.accountable.email == "ben@acme.test"
        assert owner.problems == []
        relations = service.relations_of(session=session, entity_id=ledger.id)
        assert {e.ref for e in relations["depends_on"]} == {
            "resource:default/ledger-db",
            "service:edge/gateway",
        }
        assert [e.ref for e in relations["provides_apis"]] == ["api:default/ledger-api"]
        assert [e.ref for e in relations["consumes_apis"]] == ["api:default/gateway-api"]
        assert [e.ref for e in relations["part_of"]] == ["system:default/payments"]
        assert [e.ref for e in relations["has_part"]] == ["service:default/ledger-worker"]
        system = service.get_by_ref(session=session, ref="system:payments")
        part_of = service.relations_of(session=session, entity_id=system.id)["part_of"]
        assert [e.ref for e in part_of] == ["domain:default/commerce"]
        platform_entity = service.get_by_ref(session=session, ref="platform:container-platform")
        assert (platform_entity.version, platform_entity.lifecycle) == ("3.2", "production")
        found = search.search(session=session, text="bookkeeping", filters=service.ListFilters())
        assert [e.ref for e in found] == ["service:default/ledger"]
        history = service.history(session=session, ref="ledger")
        assert [h.action for h in history] == ["catalog.create"]
        assert history[0].diff["after"]["depends_on"] == [
            "resource:default/ledger-db",
            "service:edge/gateway",
        ]
        summary = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "catalog.import")
        ).one()
        assert summary.diff["after"]["created"] == 10
        event = session.scalars(sa.select(Event).where(Event.type == "catalog.imported")).one()
        assert event.payload["created"] == 10 and event.payload["teams_created"] == 2


def test_references_take_backstage_defaults(db: Any, settings: Settings, acme: Path) -> None:
    run(db, settings, acme)
    with db.sessionmaker() as session:
        gateway = service.get_by_ref(session=session, ref="service:edge/gateway")
        targets = service.relations_of(session=session, entity_id=gateway.id)["depends_on"]
        # 'resource:edge-cache' took the referring entity's namespace, not 'default'
        assert {e.ref for e in targets} == {
            "platform:default/container-platform",
            "resource:edge/edge-cache",
        }
    write(acme, "more/catalog-info.yaml", component("no-kind", dependsOn=["ledger-db"]))
    report = run(db, settings, acme / "more")
    assert [(e.field, e.document) for e in report.errors] == [("spec.dependsOn.0", 0)]
    assert "must name its kind" in report.errors[0].reason


def test_importing_the_same_files_again_changes_nothing(
    db: Any, settings: Settings, acme: Path
) -> None:
    run(db, settings, acme)
    audit_before, events_before = count(db, AuditEntry), count(db, Event)
    again = run(db, settings, acme)
    assert (again.created, again.updated, again.removed, again.errors) == ([], [], [], [])
    assert again.unchanged == 10 and again.teams_created == [] and again.users_created == []
    assert count(db, AuditEntry) == audit_before, "an unchanged import wrote audit entries"
    assert count(db, Event) == events_before


def test_a_changed_file_updates_its_entities(db: Any, settings: Settings, acme: Path) -> None:
    run(db, settings, acme)
    path = acme / "payments" / "catalog-info.yaml"
    text = path.read_text().replace("title: Ledger\n", "title: General ledger\n")
    path.write_text(text.replace("    - component:edge/gateway\n", ""))
    report = run(db, settings, acme)
    assert report.updated == ["service:default/ledger"] and report.unchanged == 9
    with db.sessionmaker() as session:
        ledger = service.get_by_ref(session=session, ref="ledger")
        assert ledger.title == "General ledger"
        targets = service.relations_of(session=session, entity_id=ledger.id)["depends_on"]
        assert [e.ref for e in targets] == ["resource:default/ledger-db"]
        assert [
            e.ref
            for e in search.search(
                session=session, text="general ledger", filters=service.ListFilters()
            )
        ] == ["service:default/ledger"]
        change = service.history(session=session, ref="ledger")[0]
    assert change.action == "catalog.update"
    assert change.diff["before"]["title"] == "Ledger"
    assert change.diff["after"]["depends_on"] == ["resource:default/ledger-db"]


def test_a_target_deleted_by_hand_comes_back_with_its_relations(
    db: Any, settings: Settings, acme: Path
) -> None:
    run(db, settings, acme)
    with db.transaction() as session:
        service.delete(session=session, actor=SYSTEM, ref="resource:ledger-db")
    report = run(db, settings, acme)
    assert report.created == ["resource:default/ledger-db"]
    # The edge waited, unresolved, while the target was gone: the ledger itself is unchanged.
    assert report.updated == [] and report.unchanged == 9
    with db.sessionmaker() as session:
        ledger = service.get_by_ref(session=session, ref="ledger")
        targets = service.relations_of(session=session, entity_id=ledger.id)["depends_on"]
        assert "resource:default/ledger-db" in {e.ref for e in targets}
        assert service.unresolved_of(session=session, entity_id=ledger.id) == []


def test_an_entity_gone_from_its_file_is_reported_and_pruned_only_on_request(
    db: Any, settings: Settings, acme: Path
) -> None:
    run(db, settings, acme)
    path = acme / "platform" / "catalog-info.yaml"
    documents = path.read_text().split("---\n")
    path.write_text("---\n".join(documents[:2]))  # edge-cache is gone, gateway still needs it
    kept = run(db, settings, acme)
    assert kept.removed == ["resource:edge/edge-cache"] and kept.pruned is False
    assert "resource:edge/edge-cache" in refs(db)
    pruned = run(db, settings, acme, prune=True)  # gateway still names it: kept, unresolved
    assert pruned.errors == [] and pruned.pruned is True
    assert [(w.document, w.field) for w in pruned.warnings] == [(1, "spec.dependsOn.1")]
    assert "--prune deletes it" in pruned.warnings[0].reason
    assert pruned.removed == ["resource:edge/edge-cache"]
    assert "resource:edge/edge-cache" not in refs(db)
    with db.sessionmaker() as session:
        gateway = service.get_by_ref(session=session, ref="service:edge/gateway")
        assert [u.ref for u in service.unresolved_of(session=session, entity_id=gateway.id)] == [
            "resource:edge/edge-cache"
        ]
    with db.sessionmaker() as session:
        assert (
            search.search(session=session, text="edge cache", filters=service.ListFilters()) == []
        )
        entry = session.scalars(  # the entity is gone; its deletion is in the audit log
            sa.select(AuditEntry).where(
                AuditEntry.action == "catalog.delete",
                AuditEntry.object_id == "resource:edge/edge-cache",
            )
        ).one()
        assert entry.diff["before"]["type"] == "cache"


def test_entities_of_a_deleted_file_are_reported_and_pruned_on_request(
    db: Any, settings: Settings, tmp_path: Path, people: None
) -> None:
    root = tmp_path / "repo"
    write(root, "a/catalog-info.yaml", component("going"))
    write(root, "b/catalog-info.yaml", component("staying"))
    run(db, settings, root)
    (root / "a" / "catalog-info.yaml").unlink()
    kept = run(db, settings, root)
    assert kept.removed == ["service:default/going"] and kept.unchanged == 1
    assert "service:default/going" in refs(db)
    pruned = run(db, settings, root, prune=True)
    assert pruned.removed == ["service:default/going"] and pruned.pruned is True
    assert refs(db) == {"service:default/staying"}


def test_a_reference_to_a_missing_entity_is_kept_and_resolves_when_it_arrives(
    db: Any, settings: Settings, tmp_path: Path, people: None
) -> None:
    text = component("fine") + "---\n" + component("waiting", dependsOn=["resource:ghost-db"])
    report = run(db, settings, write(tmp_path / "svc", "catalog-info.yaml", text))
    assert report.errors == [] and sorted(report.created) == [
        "service:default/fine",
        "service:default/waiting",
    ]
    assert [(w.document, w.field) for w in report.warnings] == [(1, "spec.dependsOn.0")]
    assert "resource:default/ghost-db is not in the catalog (yet)" in report.warnings[0].reason
    with db.sessionmaker() as session:
        waiting = service.get_by_ref(session=session, ref="waiting")
        assert [u.ref for u in service.unresolved_of(session=session, entity_id=waiting.id)] == [
            "resource:default/ghost-db"
        ]
        problems = dict(
            (e.ref, why) for e, why in service.hygiene(session=session, after_id=None, limit=50)
        )
        assert "not in the catalog yet" in problems["service:default/waiting"]
    later = run(
        db,
        settings,
        write(tmp_path / "db", "catalog-info.yaml", component("ghost-db", kind="Resource")),
    )
    assert later.created == ["resource:default/ghost-db"] and later.warnings == []
    with db.sessionmaker() as session:
        waiting = service.get_by_ref(session=session, ref="waiting")
        targets = service.relations_of(session=session, entity_id=waiting.id)["depends_on"]
        assert [e.ref for e in targets] == ["resource:default/ghost-db"]
        assert service.unresolved_of(session=session, entity_id=waiting.id) == []
    again = run(db, settings, tmp_path / "svc" / "catalog-info.yaml")
    assert again.unchanged == 2 and again.updated == [] and again.warnings == []


def test_documents_leaning_on_a_skipped_one_are_skipped_too_and_nothing_else(
    db: Any, settings: Settings, tmp_path: Path, people: None
) -> None:
    root = tmp_path / "repo"
    database = component(
        "orders-db", kind="Resource", type="database", metadata={"tags": ["Not A Tag"]}
    )
    write(root, "a/catalog-info.yaml", database + "---\n" + component("fine-neighbour"))
    write(root, "b/catalog-info.yaml", component("orders", dependsOn=["resource:orders-db"]))
    write(root, "c/catalog-info.yaml", component("checkout", dependsOn=["component:orders"]))
    write(root, "d/catalog-info.yaml", component("unrelated"))
    report = run(db, settings, root)
    by_file = {(Path(e.file).parent.name, e.field): e.reason for e in report.errors}
    assert set(by_file) == {
        ("a", "metadata.tags.0"),
        ("b", "spec.dependsOn.0"),
        ("c", "spec.dependsOn.0"),
    }
    assert by_file[("b", "spec.dependsOn.0")] == (
        f"resource:default/orders-db is defined in {root / 'a' / 'catalog-info.yaml'} "
        "document 0, which was not imported"
    )
    # The rest of the failing file imports: errors stay with their entity.
    assert sorted(report.created) == ["service:default/fine-neighbour", "service:default/unrelated"]
    assert refs(db) == {"service:default/fine-neighbour", "service:default/unrelated"}
    strict = run(db, settings, root, strict=True)
    assert ("a", "file") in {(Path(e.file).parent.name, e.field) for e in strict.errors}
    assert strict.removed == [] and strict.created == []


BOMB = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: lol}
spec:
  owner: payments
  a: &a [x, x, x, x, x, x, x, x, x, x]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
"""
ALIASES = (
    "apiVersion: v1\nkind: Component\nmetadata: {name: many}\n"
    "spec:\n  owner: payments\n  x: &x 1\n  list: [" + ", ".join(["*x"] * 60) + "]\n"
)
GOOD = component("good-one")
BAD_INPUTS: dict[str, tuple[str | bytes, int | None, str, str]] = {
    "yaml bomb": (BOMB, 0, "yaml", "more than 100,000 nodes"),
    "too many aliases": (ALIASES, 0, "yaml", "uses more than 50 aliases"),
    "deep nesting": (
        "x: " + "[" * 4000,
        0,
        "yaml",
        "nested more than 64 levels deep",
    ),
    "a custom tag": (GOOD + "---\nkind: !Ref x\n", 1, "yaml", "the tag '!Ref' is not supported"),
    "oversized file": (GOOD + "#" * 5000, None, "file", "the limit is 4,096"),
    "not UTF-8": (GOOD.encode() + b"# caf\xe9\n", None, "file", "not valid UTF-8"),
    "not a mapping": (GOOD + "---\n- just\n- a list\n", 1, "document", "must be a mapping"),
    "broken YAML": (GOOD + "---\nmetadata: [unclosed\n", 1, "yaml", "not valid YAML"),
    "missing kind": ("apiVersion: v1\nmetadata: {name: x}\n", 0, "kind", "is required"),
    "missing name": (
        "apiVersion: v1\nkind: Component\nspec: {owner: payments}\n",
        0,
        "metadata.name",
        "is required",
    ),
    "bad name": (component("no--double"), 0, "metadata.name", "must be 1-63 letters"),
    "bad tag": (component("tagged", metadata={"tags": ["Has Space"]}), 0, "metadata.tags.0", "tag"),
    "missing owner": (
        "apiVersion: v1\nkind: API\nmetadata: {name: x}\nspec: {type: grpc}\n",
        0,
        "spec.owner",
        "is required",
    ),
    "owner naming two kinds": (
        component("x", owner="component:ledger"),
        0,
        "spec.owner",
        "must refer to a group or user",
    ),
    "bad tier": (
        component("x", metadata={"annotations": {"lamplighter.io/tier": "9"}}),
        0,
        "metadata.annotations.lamplighter.io/tier",
        "tier must be",
    ),
    "a kind that is no kind name": (
        "apiVersion: v1\nkind: Not-A-Kind\nmetadata: {name: x}\n",
        0,
        "kind",
        "must be a letter followed by letters or digits",
    ),
    "a name breaking Backstage's rule": (
        component("has space"),
        0,
        "metadata.name",
        "must be 1-63 letters or digits",
    ),
    "location outside the root": (
        "apiVersion: v1\nkind: Location\nmetadata: {name: l}\nspec: {target: ../../etc/passwd}\n",
        0,
        "spec.target",
        "outside the imported directory",
    ),
    "user with a bad email": (
        "apiVersion: v1\nkind: User\nmetadata: {name: nomail}\nspec: {profile: {email: x}}\n",
        0,
        "spec.profile.email",
        "is not an email address",
    ),
}


def test_the_yaml_loader_is_bounded_and_matches_the_safe_loader() -> None:
    text = "base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\nwhen: 2024-01-02\nflag: yes\nq: '3'\n"
    assert load_all(text) == ([yaml.safe_load(text)], None)
    documents, refused = load_all("[" * 200_000)  # PyYAML's C composer overflows its stack here
    assert documents == [] and refused is not None and "nested more than 64" in refused.reason
    documents, refused = load_all("ok: 1\n---\na: &a [*a]\n")
    assert documents == [{"ok": 1}] and refused is not None and refused.document == 1
    assert "contains it" in refused.reason


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_file_and_field(
    case: str, db: Any, settings: Settings, tmp_path: Path, people: None
) -> None:
    content, document, field, reason = BAD_INPUTS[case]
    settings = settings.model_copy(update={"catalog_max_file_bytes": 4096})
    root = tmp_path / "repo"
    write(root, "catalog-info.yaml", content)
    write(root, "other/catalog-info.yaml", component("still-fine"))
    audit_before = count(db, AuditEntry)
    report = run(db, settings, root)
    mine = [e for e in report.errors if e.file == str(root / "catalog-info.yaml")]
    assert [(e.document, e.field) for e in mine][:1] == [(document, field)], report.errors
    assert reason in mine[0].reason
    # Nothing of the bad document; the good documents before it in its file and the rest import.
    expected = {"service:default/still-fine"}
    if document not in (None, 0) and isinstance(content, str) and content.startswith(GOOD):
        expected.add("service:default/good-one")
    assert refs(db) == expected
    assert count(db, Team) == 2 and count(db, User) == 3
    assert count(db, AuditEntry) == audit_before + len(expected) + 1  # and the summary


def test_a_duplicate_definition_names_both_places_and_the_first_wins(
    db: Any, settings: Settings, tmp_path: Path, people: None
) -> None:
    root = tmp_path / "repo"
    write(root, "a/catalog-info.yaml", component("Ledger", metadata={"title": "First"}))
    write(root, "b/catalog-info.yaml", component("ledger", metadata={"title": "Second"}))
    report = run(db, settings, root)
    assert [(Path(e.file).parent.name, e.field) for e in report.errors] == [("b", "metadata.name")]
    assert report.errors[0].reason == (
        "service:default/Ledger (names are unique ignoring case) is defined more than once: "
        f"{root / 'a' / 'catalog-info.yaml'} document 0 is kept, this one is skipped"
    )
    assert refs(db) == {"service:default/Ledger"}
    with db.sessionmaker() as session:
        assert service.get_by_ref(session=session, ref="ledger").title == "First"


def test_export_then_import_is_a_fixed_point(
    db: Any, settings: Settings, acme: Path, tmp_path: Path
) -> None:
    run(db, settings, acme)
    with db.sessionmaker() as session:
        exported = backstage.export_yaml(session=session)
    documents = list(yaml.safe_load_all(exported))
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Group") == 2 and kinds.count("User") == 3
    ledger = next(d for d in documents if d["metadata"]["name"] == "ledger")
    assert ledger["spec"]["owner"] == "group:default/payments"
    assert ledger["metadata"]["annotations"]["github.com/project-slug"] == "acme/ledger"
    assert ledger["metadata"]["annotations"]["lamplighter.io/accountable"] == "ben@acme.test"
    assert ledger["spec"]["dependsOn"] == ["resource:default/ledger-db", "component:edge/gateway"]
    assert ledger["spec"]["slo"] == {"availability": 99.9}
    platform = next(d for d in documents if d["kind"] == "Platform")
    assert platform["apiVersion"] == "lamplighter.io/v1alpha1"
    export_file = write(tmp_path / "export", "catalog-info.yaml", exported)
    same_db = run(db, settings, export_file)
    assert (same_db.created, same_db.updated, same_db.errors) == ([], [], [])
    assert same_db.unchanged == 10
    truncate_all(db)  # a fresh database
    fresh = run(db, settings, export_file)
    assert fresh.errors == [] and set(fresh.created) == ACME_REFS
    assert fresh.teams_created == ["payments", "platform"] and len(fresh.users_created) == 3
    with db.sessionmaker() as session:
        assert backstage.export_yaml(session=session) == exported
        one = backstage.export_yaml(session=session, ref="component:default/ledger")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(one)] == ["ledger"]


def test_dry_run_reports_and_writes_nothing(db: Any, settings: Settings, acme: Path) -> None:
    report = run(db, settings, acme, dry_run=True)
    assert set(report.created) == ACME_REFS and report.teams_created == ["payments", "platform"]
    assert refs(db) == set() and count(db, Team) == 0 and count(db, AuditEntry) == 0


# -- over HTTP ------------------------------------------------------------------------------------
def test_api_import_needs_write_access_for_every_owner(client: Any, db: Any) -> None:
    sre = make_user(db, role="sre")
    lead = make_user(db, email="lead@example.com")
    member = make_user(db)
    make_team(db, slug="payments", lead=lead)
    make_team(db, slug="search", lead=member)
    files = {
        "svc/catalog-info.yaml": component("ledger"),
        "svc/apis.yaml": component("pay-api", kind="API"),
    }
    body = {"files": files}
    assert client.post("/api/v1/catalog/import", json=body).status_code == 401
    refused = client.post("/api/v1/catalog/import", json=body, headers=auth(make_token(db, member)))
    assert refused.status_code == 403
    assert "team payments" in refused.json()["detail"]
    assert refs(db) == set()
    dry = client.post(
        "/api/v1/catalog/import", json=body | {"dry_run": True}, headers=auth(make_token(db, sre))
    )
    assert dry.status_code == 200 and len(dry.json()["created"]) == 2 and refs(db) == set()
    token_of_sre = make_token(db, sre)
    allowed = client.post("/api/v1/catalog/import", json=body, headers=auth(token_of_sre))
    assert allowed.status_code == 200, allowed.text
    report = allowed.json()
    assert sorted(report["created"]) == ["api:default/pay-api", "service:default/ledger"]
    assert report["errors"] == []
    with db.sessionmaker() as session:
        assert service.get_by_ref(session=session, ref="ledger").location == "svc/catalog-info.yaml"
    outsider = client.post(  # the lead of payments as owner makes it payments': refused
        "/api/v1/catalog/import",
        json={"files": {"o.yaml": component("sneaky", owner="user:lead")}},
        headers=auth(make_token(db, member)),
    )
    assert outsider.status_code == 403 and "team payments" in outsider.json()["detail"]
    assert refs(db) == {"api:default/pay-api", "service:default/ledger"}
    in_payments = make_user(db)
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug="payments", email=in_payments.email)
    mixed = client.post(  # a member's file naming a missing owner: that entity alone is refused
        "/api/v1/catalog/import",
        json={
            "files": {"m.yaml": component("mine") + "---\n" + component("theirs", owner="ghosts")}
        },
        headers=auth(make_token(db, in_payments)),
    )
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["created"] == ["service:default/mine"]
    assert [(e["document"], e["field"]) for e in mixed.json()["errors"]] == [(1, "spec.owner")]
    assert "only SREs and admins may create the team" in mixed.json()["errors"][0]["reason"]
    dangling = client.post(
        "/api/v1/catalog/import",
        json={"files": {"x.yaml": component("x", dependsOn=["resource:ghost"])}},
        headers=auth(make_token(db, sre)),
    )
    assert dangling.status_code == 200
    assert dangling.json()["errors"] == [] and dangling.json()["created"] == ["service:default/x"]
    assert dangling.json()["warnings"] == [
        {
            "file": "x.yaml",
            "document": 0,
            "field": "spec.dependsOn.0",
            "reason": "resource:default/ghost is not in the catalog (yet): kept as an "
            "unresolved relation",
        }
    ]
    read = client.get("/api/v1/catalog/entities/service/default/x", headers=auth(token_of_sre))
    assert read.json()["unresolved"] == [
        {"relation": "depends_on", "ref": "resource:default/ghost"}
    ]
    bad = client.post(
        "/api/v1/catalog/import",
        json={"files": {"y.yaml": component("bad name")}},
        headers=auth(token_of_sre),
    )
    assert bad.status_code == 200
    assert [(e["file"], e["document"], e["field"]) for e in bad.json()["errors"]] == [
        ("y.yaml", 0, "metadata.name")
    ]


def test_api_export_returns_yaml(client: Any, db: Any, settings: Settings, acme: Path) -> None:
    run(db, settings, acme)
    token = make_token(db, make_user(db, role="viewer"))
    assert client.get("/api/v1/catalog/export").status_code == 401
    whole = client.get("/api/v1/catalog/export", headers=auth(token))
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("application/yaml")
    assert len(list(yaml.safe_load_all(whole.text))) == 15  # 2 groups, 3 users, 10 entities
    one = client.get(
        "/api/v1/catalog/export", params={"ref": "api:gateway-api"}, headers=auth(token)
    )
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(one.text)] == ["gateway-api"]
    missing = client.get("/api/v1/catalog/export", params={"ref": "ghost"}, headers=auth(token))
    assert missing.status_code == 404


def test_api_import_body_may_exceed_the_default_limit(client: Any, db: Any) -> None:
    sre = make_user(db, role="sre")
    make_team(db, slug="payments", lead=make_user(db))
    padding = "# " + "x" * 1000 + "\n"
    files = {f"f{i}.yaml": component(f"svc-{i}") + padding * 20 for i in range(60)}  # ~1.2 MB
    response = client.post(
        "/api/v1/catalog/import", json={"files": files}, headers=auth(make_token(db, sre))
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["created"]) == 60
