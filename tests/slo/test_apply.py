"""`slo apply`: Sloth and OpenSLO files into SLOs, all or nothing per file, idempotent, with
dry runs, pruning by origin, and export back to OpenSLO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.catalog import service as catalog
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry
from lamplighter.slo import apply, openslo, rules, service
from lamplighter.slo.models import Slo
from tests.conftest import SYSTEM, make_team, make_user
from tests.slo.conftest import Org, actor_of

FIXTURES = Path(__file__).parent.parent / "fixtures"
SLOTH = FIXTURES / "sloth"
OPENSLO = FIXTURES / "openslo"
MISTAKES = FIXTURES / "slo_apply"
SERVICES = ("myservice", "myservice2", "home-wifi", "myapp", "web", "web-availability", "web-shop")


def register(db: Database, team_slug: str, *names: str) -> None:
    with db.transaction() as session:
        for name in names:
            catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(kind="service", name=name, owner=team_slug),
            )


@pytest.fixture
def owner(db: Database) -> Actor:
    """A member of the team that owns every service the vendored examples name."""
    member = make_user(db)
    team = make_team(db, lead=make_user(db), members=[member])
    register(db, team.slug, *SERVICES)
    return actor_of(db, member)


def run(
    db: Database, actor: Actor, files: list[tuple[str, str]], **options: Any
) -> apply.ApplyReport:
    with db.transaction() as session:
        return apply.apply(session=session, actor=actor, files=files, **options)


def read(path: Path) -> tuple[str, str]:
    return path.name, path.read_text(encoding="utf-8")


def stored(db: Database) -> dict[str, tuple[str | None, float]]:
    """entity ref/SLO name -> (origin, objective ratio) of every SLO."""
    with db.sessionmaker() as session:
        return {
            f"{service.entity_of(session, slo).ref}/{slo.name}": (slo.origin, slo.objective)
            for slo in session.scalars(sa.select(Slo))
        }


def audit_count(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def by_file(report: apply.ApplyReport) -> dict[str, apply.FileReport]:
    return {item.file: item for item in report.files}


def test_every_sloth_example_applies_and_applying_again_changes_nothing(
    db: Database, owner: Actor
) -> None:
    files = [read(path) for path in sorted(SLOTH.glob("*.yml"))]
    first = run(db, owner, files)
    created = {name: sorted(item.created) for name, item in by_file(first).items()}
    assert created["getting-started.yml"] == ["service:default/myservice/requests-availability"]
    assert created["home-wifi.yml"] == [
        "service:default/home-wifi/good-wifi-client-satisfaction",
        "service:default/home-wifi/risk-wifi-client-satisfaction",
    ]
    assert created["no-alerts.yml"] == ["service:default/myapp/http-availability"]
    assert created["raw-home-wifi.yml"] == ["service:default/home-wifi/wifi-client-satisfaction"]
    # multifile.yml defines myservice's requests-availability again: one SLO has one home.
    [clash] = by_file(first)["multifile.yml"].problems
    assert (clash.document, clash.field) == (1, "slos.0.name")
    assert "defined in getting-started.yml too" in clash.reason
    assert by_file(first)["multifile.yml"].created == []
    assert first.created == len(stored(db)) == 5
    slos = stored(db)
    assert slos["service:default/myservice/requests-availability"] == (
        "getting-started.yml",
        0.999,
    )
    audits = audit_count(db)

    again = run(db, owner, files)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert again.unchanged == first.created
    assert audit_count(db) == audits, "an unchanged apply wrote audit entries"


def test_the_stored_slo_keeps_what_the_sloth_spec_says(db: Database, owner: Actor) -> None:
    run(db, owner, [read(SLOTH / "getting-started.yml")])
    with db.sessionmaker() as session:
        slo = service.find(session=session, entity_ref="myservice", name="requests-availability")
        data = service.read(session=session, slo=slo)
    assert data["objective"] == 99.9 and data["window"] == "30d" and data["source"] == "prometheus"
    assert data["sli"]["kind"] == "ratio"
    assert data["sli"]["bad_query"].startswith("sum(rate(http_request_duration_seconds_count")
    assert data["labels"] == {"owner": "myteam", "repo": "myorg/myservice", "tier": "2"}
    assert data["alerting"]["labels"] == {"category": "availability"}
    # The alert's name is kept, so the exported rules page as Sloth's did.
    assert data["alerting"]["name"] == "MyServiceHighErrorRate"
    with db.sessionmaker() as session:
        assert "alert: MyServiceHighErrorRate" in rules.render(session)


def test_every_openslo_example_applies_or_names_what_is_unsupported(
    db: Database, owner: Actor
) -> None:
    files = [(str(p.relative_to(OPENSLO)), p.read_text()) for p in sorted(OPENSLO.rglob("*.yaml"))]
    report = by_file(run(db, owner, files))
    assert report["go-sdk-v1-examples/slos.yaml"].created == [
        "service:default/web/web-availability"
    ]
    low_traffic = "OpenSLO-examples/treat-low-traffic-as-equally-important/timeslices-slo.yaml"
    assert report[low_traffic].created == ["service:default/web-availability/service-availability"]
    reasons = {
        name: {(p.document, p.field, p.reason) for p in item.problems}
        for name, item in report.items()
        if item.problems
    }
    for name in ("occurences-slo.yaml", "ratio-timeslices.yaml"):
        [(document, where, reason)] = reasons[f"OpenSLO-examples/budgeting-method/{name}"]
        assert (document, where) == (1, "spec.timeWindow.0.duration")
        assert "rolling window 2w is not supported" in reason
    calendar = {
        w: r for _, w, r in reasons["OpenSLO-examples/budgeting-method/timeslices-slo.yaml"]
    }
    assert "calendar window 1m is not supported" in calendar["spec.timeWindow.0.duration"]
    slis = {d: r for d, _, r in reasons["go-sdk-v1-examples/slis.yaml"]}
    assert "AppDynamics has no query" in slis[2] and "'success' is not supported" in slis[3]
    assert set(reasons) == {
        "OpenSLO-examples/budgeting-method/occurences-slo.yaml",
        "OpenSLO-examples/budgeting-method/ratio-timeslices.yaml",
        "OpenSLO-examples/budgeting-method/timeslices-slo.yaml",
        "go-sdk-v1-examples/slis.yaml",
    }
    assert set(stored(db)) == {
        "service:default/web/web-availability",
        "service:default/web-availability/service-availability",
    }


def test_a_sloth_plugin_sli_is_refused_by_name(db: Database, owner: Actor) -> None:
    [item] = run(db, owner, [read(MISTAKES / "sloth-plugin.yml")]).files
    [problem] = item.problems
    assert (problem.document, problem.field) == (1, "slos.0.sli.plugin")
    assert "SLI plugins are not supported" in problem.reason
    assert "sloth-common/kubernetes/apiserver/availability" in problem.reason
    assert stored(db) == {}


MISTAKE_CASES = [
    ("sloth-wrong-version.yml", 1, "version", 'must be "prometheus/v1"'),
    ("openslo-wrong-version.yaml", 1, "apiVersion", 'must be "openslo/v1"'),
    ("sloth-objective-over-100.yml", 1, "slos.0.objective", "between 0 and 100"),
    ("sloth-missing-query.yml", 2, "slos.0.sli.events.total_query", "required"),
    ("openslo-unknown-sli.yaml", 3, "spec.indicatorRef", "no SLI named 'fast-requests'"),
    ("openslo-unknown-entity.yaml", 1, "spec.service", "no-such-service"),
    ("openslo-seconds-slice.yaml", 1, "spec.objectives.0.timeSliceWindow", "whole minutes"),
]


@pytest.mark.parametrize("name,document,where,reason", MISTAKE_CASES)
def test_a_file_with_a_mistake_names_document_and_field_and_writes_nothing(
    db: Database, owner: Actor, name: str, document: int, where: str, reason: str
) -> None:
    report = run(db, owner, [read(MISTAKES / name), read(SLOTH / "getting-started.yml")])
    bad, good = report.files
    assert report.refused_files == 1
    assert (bad.file, bad.created, bad.updated) == (name, [], [])
    found = {(p.document, p.field): p.reason for p in bad.problems}
    assert (document, where) in found, bad.problems
    assert reason in found[(document, where)]
    # The other file still applied; nothing of the bad one was written, not even its good part.
    assert good.created == ["service:default/myservice/requests-availability"]
    assert set(stored(db)) == {"service:default/myservice/requests-availability"}


def test_a_file_naming_an_entity_its_author_may_not_change_writes_nothing(
    db: Database, owner: Actor
) -> None:
    org = Org(db, name="payments")
    text = (SLOTH / "getting-started.yml").read_text().replace('"myservice"', '"payments"')
    report = run(db, actor_of(db, org.outsider), [("payments.yml", text)])
    [problem] = report.files[0].problems
    assert (problem.document, problem.field) == (1, "service")
    assert "only members of the owning team" in problem.reason
    assert stored(db) == {}
    assert run(db, actor_of(db, org.member), [("payments.yml", text)]).created == 1


def test_a_changed_file_updates_and_prune_deletes_only_what_the_file_no_longer_defines(
    db: Database, owner: Actor
) -> None:
    org = Org(db, name="checkout")
    org.slo(name="by-hand")  # made by hand: never pruned
    name, text = read(SLOTH / "multifile.yml")
    run(db, owner, [(name, text), read(SLOTH / "no-alerts.yml")])
    first, _, _ = text.partition("\n---\n")
    changed = first.replace("objective: 99.9", "objective: 99.5")
    assert changed != first

    kept = run(db, owner, [(name, changed)])
    assert kept.files[0].updated == ["service:default/myservice/requests-availability"]
    assert kept.deleted == 0  # without --prune, the SLO gone from the file stays
    assert "service:default/myservice2/requests-availability" in stored(db)

    pruned = run(db, owner, [(name, changed)], prune=True)
    assert pruned.files[0].deleted == ["service:default/myservice2/requests-availability"]
    assert pruned.files[0].unchanged == ["service:default/myservice/requests-availability"]
    slos = stored(db)
    assert "service:default/myservice2/requests-availability" not in slos
    assert slos["service:default/myservice/requests-availability"] == (name, 0.995)
    assert "service:default/checkout/by-hand" in slos  # hand-made
    assert "service:default/myapp/http-availability" in slos  # another file's


def test_a_dry_run_reports_the_same_and_writes_nothing(db: Database, owner: Actor) -> None:
    files = [read(SLOTH / "multifile.yml"), read(MISTAKES / "sloth-plugin.yml")]
    audits = audit_count(db)
    dry = run(db, owner, files, dry_run=True)
    assert dry.dry_run and dry.created == 2 and dry.refused_files == 1
    assert stored(db) == {} and audit_count(db) == audits
    real = run(db, owner, files)
    assert [f.created for f in real.files] == [f.created for f in dry.files]
    assert len(stored(db)) == 2


def test_an_slo_defined_in_two_files_is_kept_in_the_first(db: Database, owner: Actor) -> None:
    name, text = read(SLOTH / "getting-started.yml")
    report = run(db, owner, [(name, text), ("copy.yml", text)])
    assert report.files[0].created == ["service:default/myservice/requests-availability"]
    [problem] = report.files[1].problems
    assert problem.field == "slos.0.name" and "defined in getting-started.yml too" in problem.reason


def _definitions(path: Path) -> list[Any]:
    return sorted(openslo.parse(path.read_text(), source=path.name).definitions, key=str)


def test_export_reads_back_as_the_applied_openslo_definitions(db: Database, owner: Actor) -> None:
    paths = [
        OPENSLO / "go-sdk-v1-examples" / "slos.yaml",
        OPENSLO / "OpenSLO-examples/treat-low-traffic-as-equally-important/timeslices-slo.yaml",
    ]
    run(db, owner, [read(path) for path in paths])
    Org(db, name="checkout").slo(name="built-in")  # events: no query to export
    with db.sessionmaker() as session:
        slos = list(session.scalars(sa.select(Slo).order_by(Slo.id)))
        text = apply.export_openslo(session, slos)
    assert "# skipped: service:default/checkout/built-in: built-in events have no query" in text
    again = openslo.parse(text, source="export.yaml")
    assert again.problems == ()
    expected = [d for path in paths for d in _definitions(path)]
    assert sorted(again.definitions, key=str) == sorted(expected, key=str)
