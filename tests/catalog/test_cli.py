"""`lamplighter catalog …` locally against the database, and remotely against a live server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.catalog.test_backstage import component, write
from tests.conftest import make_team, make_token, make_user

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "acme", tmp_path / "acme"))


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_shows_progress_and_a_summary_then_is_idempotent(run_cli: Any, acme: Path) -> None:
    first = run_cli("catalog", "import", str(acme))
    assert first.exit_code == 0, first.output
    assert "files parsed" in first.output and "entities written" in first.output
    assert "created" in first.output and "10" in first.output
    again = as_json(run_cli("catalog", "import", str(acme), "--output", "json"))
    assert (again["created"], again["updated"], again["unchanged"]) == ([], [], 10)


def test_dry_run_changes_nothing(run_cli: Any, acme: Path) -> None:
    dry = as_json(run_cli("catalog", "import", str(acme), "--dry-run", "--output", "json"))
    assert len(dry["created"]) == 10
    assert as_json(run_cli("catalog", "list", "--output", "json")) == []


def test_import_errors_exit_non_zero_naming_file_and_field(
    run_cli: Any, acme: Path, tmp_path: Path
) -> None:
    run_cli("catalog", "import", str(acme))
    dangling = write(tmp_path / "ok", "catalog-info.yaml", component("x", dependsOn=["api:ghost"]))
    result = run_cli("catalog", "import", str(dangling))
    assert result.exit_code == 0, result.output  # imported: the relation waits, unresolved
    assert "warning:" in result.output and "spec.dependsOn.0" in result.output
    assert "api:default/ghost is not in the catalog (yet)" in result.output
    text = component("y") + "---\n" + component("bad name")
    bad = write(tmp_path / "bad", "catalog-info.yaml", text)
    result = run_cli("catalog", "import", str(bad))
    assert result.exit_code == 1  # something was skipped
    assert "error:" in result.output and "document 1 metadata.name" in result.output
    assert "service:default/y" in {
        e["ref"] for e in as_json(run_cli("catalog", "list", "--output", "json"))
    }
    missing = run_cli("catalog", "import", str(tmp_path / "nowhere"))
    # Rich wraps at the terminal's width, and the temporary path's length varies from run to run.
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_hygiene_lists_what_to_fix_locally_and_remotely(
    run_cli: Any, acme: Path, tmp_path: Path, db: Any, live_server: str
) -> None:
    run_cli("catalog", "import", str(acme))
    odd = write(
        tmp_path / "odd",
        "catalog-info.yaml",
        component("orphan", owner="ghost-team", dependsOn=["resource:not-yet"])
        + "---\napiVersion: backstage.io/v1alpha1\nkind: User\nmetadata: {name: no-mail}\n"
        "spec: {memberOf: [payments]}\n",
    )
    assert run_cli("catalog", "import", str(odd)).exit_code == 0
    local = as_json(run_cli("catalog", "hygiene", "--output", "json"))
    problems = {item["ref"]: item for item in local["entities"]}
    assert problems["service:default/orphan"]["owner"] == "ghost-team"
    assert "placeholder team" in problems["service:default/orphan"]["problem"]
    # platform names no lead in its Group: its entities have no accountable person yet
    assert problems["platform:default/container-platform"]["problem"].startswith(
        "no accountable person: set the lamplighter.io/accountable annotation"
    )
    assert [p["ref"] for p in local["people"]] == ["user:default/no-mail"]
    table = run_cli("catalog", "hygiene")
    assert table.exit_code == 0 and "orphan" in table.output and "no-mail" in table.output
    sre = {"LAMPLIGHTER_TOKEN": make_token(db, make_user(db, role="sre"))}
    remote = as_json(run_cli("--url", live_server, "catalog", "hygiene", "-o", "json", env=sre))
    assert remote == local


def test_questions_in_table_and_json(run_cli: Any, acme: Path) -> None:
    run_cli("catalog", "import", str(acme))
    entity = as_json(run_cli("catalog", "get", "ledger", "--output", "json"))
    assert entity["owner"]["slug"] == "payments" and entity["tier"] == 1
    assert [r["ref"] for r in entity["relations"]["provides_apis"]] == ["api:default/ledger-api"]
    table = run_cli("catalog", "get", "component:default/ledger")
    assert "Double-entry bookkeeping" in table.output and "ben@acme.test" in table.output
    services = as_json(run_cli("catalog", "list", "--kind", "service", "--output", "json"))
    assert {s["ref"] for s in services} == {
        "service:default/ledger",
        "service:default/ledger-worker",
        "service:edge/gateway",
    }
    owned = as_json(run_cli("catalog", "list", "--owner", "platform", "--output", "json"))
    assert len(owned) == 4
    assert run_cli("catalog", "list", "--owner", "ghosts").exit_code == 1
    found = as_json(run_cli("catalog", "search", "bookkeeping", "--output", "json"))
    assert [f["ref"] for f in found] == ["service:default/ledger"]
    owner = as_json(run_cli("catalog", "who-owns", "ledger", "--output", "json"))
    assert owner["accountable"]["email"] == "ben@acme.test"
    assert owner["team_lead"]["email"] == "ana@acme.test" and owner["problems"] == []
    owner_table = run_cli("catalog", "who-owns", "ledger")
    assert "payments (Payments Team)" in owner_table.output
    unknown = run_cli("catalog", "get", "ghost")
    assert unknown.exit_code == 1 and "no catalog entity 'ghost'" in unknown.output


def test_deps_reverse_with_depth_reports_cycles(run_cli: Any, tmp_path: Path, acme: Path) -> None:
    run_cli("catalog", "import", str(acme / "org" / "people.yaml"))
    loop = "---\n".join(
        [
            component("db", kind="Resource", type="database"),
            component("a", dependsOn=["resource:db", "component:c"]),
            component("b", dependsOn=["component:a"]),
            component("c", dependsOn=["component:b"]),
        ]
    )
    assert (
        run_cli(
            "catalog", "import", str(write(tmp_path / "loop", "catalog-info.yaml", loop))
        ).exit_code
        == 0
    )
    walk = as_json(
        run_cli("catalog", "deps", "resource:db", "--reverse", "--depth", "5", "--output", "json")
    )
    assert [(n["ref"], n["depth"]) for n in walk["nodes"]] == [
        ("service:default/a", 1),
        ("service:default/b", 2),
        ("service:default/c", 3),
    ]
    assert walk["cycles"] == [
        ["service:default/a", "service:default/b", "service:default/c", "service:default/a"]
    ]
    table = run_cli("catalog", "deps", "resource:db", "--reverse", "--depth", "5")
    assert "cycle:" in table.output and "service:default/a → service:default/b" in table.output
    shallow = as_json(
        run_cli("catalog", "deps", "resource:db", "--reverse", "--depth", "1", "-o", "json")
    )
    assert [n["ref"] for n in shallow["nodes"]] == ["service:default/a"]
    forward = as_json(run_cli("catalog", "deps", "c", "--output", "json"))
    assert (
        forward["direction"] == "dependencies" and forward["nodes"][0]["ref"] == "service:default/b"
    )


def test_export_to_a_file_and_to_stdout(run_cli: Any, acme: Path, tmp_path: Path) -> None:
    run_cli("catalog", "import", str(acme))
    out = tmp_path / "export.yaml"
    written = as_json(run_cli("catalog", "export", "--out", str(out), "--output", "json"))
    assert written["documents"] == 15
    assert len(list(yaml.safe_load_all(out.read_text()))) == 15
    one = run_cli("catalog", "export", "--ref", "api:ledger-api")
    documents = list(yaml.safe_load_all(one.stdout))
    assert [d["metadata"]["name"] for d in documents] == ["ledger-api"]
    assert documents[0]["spec"]["definition"].startswith("openapi: 3.0.0\n")
    as_list = as_json(run_cli("catalog", "export", "--ref", "ledger", "--output", "json"))
    assert as_list[0]["spec"]["owner"] == "group:default/payments"
    again = as_json(run_cli("catalog", "import", str(out), "--output", "json"))
    assert again["unchanged"] == 10 and again["created"] == [] and again["updated"] == []


# -- remote mode --------------------------------------------------------------------------------
def test_remote_mode_goes_through_the_api_with_the_token_rights(
    run_cli: Any, db: Any, live_server: str, acme: Path, tmp_path: Path
) -> None:
    sre = {"LAMPLIGHTER_TOKEN": make_token(db, make_user(db, role="sre"))}
    imported = as_json(
        run_cli("--url", live_server, "catalog", "import", str(acme), "-o", "json", env=sre)
    )
    assert len(imported["created"]) == 10 and imported["errors"] == []
    remote = ["--url", live_server, "catalog"]
    entity = as_json(run_cli(*remote, "get", "ledger", "-o", "json", env=sre))
    assert entity["location"] == "acme/payments/catalog-info.yaml"
    assert len(as_json(run_cli(*remote, "list", "--kind", "api", "-o", "json", env=sre))) == 2
    assert as_json(run_cli(*remote, "search", "ledger", "-o", "json", env=sre))
    owner = as_json(run_cli(*remote, "who-owns", "ledger", "-o", "json", env=sre))
    assert owner["accountable"]["email"] == "ben@acme.test"
    deps = as_json(run_cli(*remote, "deps", "ledger", "-o", "json", env=sre))
    assert {n["ref"] for n in deps["nodes"]} >= {"resource:default/ledger-db"}
    exported = run_cli(*remote, "export", "--ref", "ledger", env=sre)
    assert "name: ledger\n" in exported.stdout
    again = as_json(run_cli(*remote, "import", str(acme), "-o", "json", env=sre))
    assert again["unchanged"] == 10
    member = make_user(db)
    make_team(db, slug="outsiders", lead=member)
    refused = run_cli(
        *remote, "import", str(acme), env={"LAMPLIGHTER_TOKEN": make_token(db, member)}
    )
    assert refused.exit_code == 1 and "HTTP 403" in refused.output
    latin = write(tmp_path / "latin", "catalog-info.yaml", b"name: caf\xe9\n")
    not_utf8 = run_cli(*remote, "import", str(latin), env=sre)
    assert not_utf8.exit_code == 1 and "latin/catalog-info.yaml" in not_utf8.output
    assert "not valid UTF-8" in not_utf8.output
