"""`lamplighter template …` and `lamplighter run …` on the local database, with the job worker
running in-process while the command follows the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter import cli as root_cli
from lamplighter.app import create_app
from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from lamplighter.selfservice import cli as selfservice_cli
from lamplighter.selfservice.actions.base import registered
from lamplighter.selfservice.models import Run
from lamplighter.tickets.models import Ticket
from tests import helpers
from tests.conftest import make_team, make_token, make_user
from tests.selfservice.test_api import TEMPLATE_YAML, FailWhileBlocked, MakePassword, WriteFile


@pytest.fixture(autouse=True)
def _test_actions() -> Iterator[None]:
    """The actions TEMPLATE_YAML's templates use, for this module's tests only."""
    with registered(WriteFile, FailWhileBlocked, MakePassword):
        yield


@pytest.fixture
def cli(cli_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> helpers.Invoke:
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAMPLIGHTER_JOB_POLL_S", "0.05")
    return helpers.cli_invoker(root_cli.app)


@pytest.fixture
def templates_dir(db: Database, tmp_path: Path) -> Path:
    make_team(
        db,
        slug="payments",
        lead=make_user(db, email="lead@example.com"),
        members=[make_user(db, email="dev@example.com")],
    )
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "files.yaml").write_text(TEMPLATE_YAML.format(extra=""))
    (directory / "password.yaml").write_text(
        "name: password\ntitle: A password\nowner: payments\n"
        "steps:\n  - {id: pw, action: apitest.password, input: {}}\n"
    )
    (directory / "approved.yaml").write_text(
        TEMPLATE_YAML.format(extra="approval: team-lead").replace("name: files", "name: approved")
    )
    return directory


def count(db: Database, model: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def test_sync_list_and_show_the_templates(cli: Any, templates_dir: Path) -> None:
    synced = cli("template", "sync", str(templates_dir), "-o", "json")
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.output) == {
        "created": ["approved", "files", "password"],
        "updated": [],
        "unchanged": [],
        "errors": [],
    }
    (templates_dir / "broken.yaml").write_text("name: broken\ntitle: Broken\nowner: payments\n")
    again = cli("template", "sync", str(templates_dir), "-o", "json")
    assert again.exit_code == 1
    report = json.loads(again.output)
    assert report["unchanged"] == ["approved", "files", "password"]
    assert report["errors"][0]["field"] == "broken.yaml: steps"

    listed = cli("template", "list", "-o", "json")
    assert [t["name"] for t in json.loads(listed.output)] == ["approved", "files", "password"]
    shown = cli("template", "show", "files")
    assert shown.exit_code == 0, shown.output
    for text in ("Two files", "name", "A short name", "license", "false", "readme (apitest.file)"):
        assert text in shown.output


def test_template_run_with_set_follows_to_the_end_and_prints_the_outputs(
    cli: Any, db: Database, templates_dir: Path, tmp_path: Path
) -> None:
    cli("template", "sync", str(templates_dir))
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "template",
        "run",
        "files",
        "--set",
        "name=ledger",
        "--set",
        f"directory={out}",
        "--set",
        "license=true",
        "--user",
        "dev@example.com",
    )
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert f"Readme: https://files.example.com{out / 'ledger-README'}" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE", "ledger-README"]
    assert count(db, Ticket) == 1  # journaled as resolved by self-service

    as_json = cli(
        "template", "run", "files", "--set", "name=pay", "--set", f"directory={out}", "-o", "json"
    )
    run = json.loads(as_json.output)
    assert (run["status"], [s["status"] for s in run["steps"]]) == (
        "succeeded",
        ["succeeded", "skipped"],
    )
    shown = cli("run", "show", str(run["id"]), "-o", "json")
    assert json.loads(shown.output)["steps"][0]["output"] == {"path": str(out / "pay-README")}


def test_a_dry_run_shows_the_rendered_inputs_and_creates_nothing(
    cli: Any, db: Database, templates_dir: Path, tmp_path: Path
) -> None:
    cli("template", "sync", str(templates_dir))
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "template", "run", "files", "--set", "name=ledger", "--set", f"directory={out}", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert '"name": "ledger-README"' in result.output
    assert list(out.iterdir()) == []
    assert count(db, Ticket) == 0


def test_bad_parameters_fail_naming_them_and_start_nothing(
    cli: Any, db: Database, templates_dir: Path
) -> None:
    cli("template", "sync", str(templates_dir))
    wrong = cli("template", "run", "files", "--set", "name=NOT OK", "--set", "directory=/tmp")
    assert wrong.exit_code == 1
    assert "parameters.name" in wrong.output
    missing = cli("template", "run", "files", "--set", "name=ok")
    assert missing.exit_code == 1 and "parameters.directory" in missing.output
    shapeless = cli("template", "run", "files", "--set", "name")
    assert shapeless.exit_code == 1 and "key=value" in shapeless.output
    unknown = cli("template", "run", "nope")
    assert unknown.exit_code == 1 and "no template named 'nope'" in unknown.output
    assert count(db, Run) == 0


def test_missing_required_parameters_are_prompted_with_their_help(
    cli: Any, templates_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("template", "sync", str(templates_dir))
    monkeypatch.setattr(selfservice_cli, "interactive", lambda: True)
    out = tmp_path / "out"
    out.mkdir()
    result = cli("template", "run", "files", "--set", f"directory={out}", input="ledger\n")
    assert result.exit_code == 0, result.output
    assert "name (A short name)" in result.output
    assert (out / "ledger-README").exists()


def test_a_failed_run_exits_1_with_the_error_and_is_retried_after_the_fix(
    cli: Any, templates_dir: Path, tmp_path: Path
) -> None:
    cli("template", "sync", str(templates_dir))
    out = tmp_path / "out"
    (out / "ledger-README").parent.mkdir()
    (out / "ledger-README").write_text("someone else's")
    failed = cli("template", "run", "files", "--set", "name=ledger", "--set", f"directory={out}")
    assert failed.exit_code == 1
    assert "step readme (apitest.file) failed: a file named 'ledger-README' exists already" in (
        " ".join(failed.output.split())
    )
    (out / "ledger-README").unlink()
    run_id = json.loads(cli("run", "list", "-o", "json").output)[0]["id"]
    retried = cli("run", "retry", str(run_id))
    assert retried.exit_code == 0, retried.output
    assert "succeeded" in retried.output and (out / "ledger-README").exists()


def test_an_approval_waits_then_the_lead_approves_or_rejects(
    cli: Any, templates_dir: Path, tmp_path: Path
) -> None:
    cli("template", "sync", str(templates_dir))
    args = ("template", "run", "approved", "--set", "name=ledger", "--set", f"directory={tmp_path}")
    waiting = cli(*args, "--user", "dev@example.com", "-o", "json")
    assert waiting.exit_code == 0, waiting.output
    run = json.loads(waiting.output)
    assert (run["status"], run["awaiting"]) == ("awaiting_approval", ["lead@example.com"])

    own = cli("run", "approve", str(run["id"]), "--user", "dev@example.com")
    assert own.exit_code == 1 and "own requester" in own.output
    approved = cli("run", "approve", str(run["id"]), "--user", "lead@example.com")
    assert approved.exit_code == 0, approved.output
    assert "succeeded" in approved.output and (tmp_path / "ledger-README").exists()

    second = json.loads(cli(*args, "--user", "dev@example.com", "-o", "json").output)
    rejected = cli("run", "reject", str(second["id"]), "--reason", "use the shared one")
    assert rejected.exit_code == 0 and "rejected" in rejected.output
    assert "use the shared one" in cli("run", "show", str(second["id"])).output


def test_secrets_are_shown_once_to_the_requester(cli: Any, templates_dir: Path) -> None:
    cli("template", "sync", str(templates_dir))
    started = cli("template", "run", "password", "--user", "dev@example.com", "-o", "json")
    run = json.loads(started.output)
    assert run["secrets"] == [{"name": "db_password", "revealed": False}]
    as_system = cli("run", "secrets", str(run["id"]))
    assert as_system.exit_code == 1 and "--user" in as_system.output
    stranger = cli("run", "secrets", str(run["id"]), "--user", "lead@example.com")
    assert stranger.exit_code == 1 and "only the requester" in stranger.output
    shown = cli("run", "secrets", str(run["id"]), "--user", "dev@example.com", "-o", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["db_password"].startswith("pw-")
    again = cli("run", "secrets", str(run["id"]), "--user", "dev@example.com")
    assert again.exit_code == 1 and "shown once already" in again.output
    table = cli("template", "run", "password", "--user", "dev@example.com")
    assert "--user dev@example.com" in table.output and "lamplighter run secrets" in table.output


@pytest.fixture
def live_server(settings: Settings, db: Database) -> Iterator[str]:
    """The API with its job worker, as `lamplighter serve` runs it."""
    with helpers.serve(create_app(settings, db=db, run_worker=True)) as base_url:
        yield base_url


def test_remote_mode_goes_through_the_api(
    cli: Any, db: Database, templates_dir: Path, tmp_path: Path, live_server: str
) -> None:
    env = {"LAMPLIGHTER_TOKEN": make_token(db, make_user(db, email="sre@example.com", role="sre"))}
    dev = {"LAMPLIGHTER_TOKEN": make_token(db, make_user(db, email="dev2@example.com"))}
    remote = ("--url", live_server)
    synced = cli(*remote, "template", "sync", str(templates_dir), "-o", "json", env=env)
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.output)["created"] == ["approved", "files", "password"]
    listed = cli(*remote, "template", "list", "-o", "json", env=dev)
    assert [t["name"] for t in json.loads(listed.output)] == ["approved", "files", "password"]

    out = tmp_path / "out"
    out.mkdir()
    ran = cli(
        *remote, "template", "run", "files", "--set", "name=ledger", "--set", f"directory={out}",
        "--team", "payments", env=env,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "succeeded" in ran.output and (out / "ledger-README").exists()

    secret = cli(*remote, "template", "run", "password", "-o", "json", env=dev)
    run_id = json.loads(secret.output)["id"]
    shown = cli(*remote, "run", "secrets", str(run_id), "-o", "json", env=dev)
    assert json.loads(shown.output)["db_password"].startswith("pw-")
    again = cli(*remote, "run", "secrets", str(run_id), env=dev)
    assert again.exit_code == 1 and "HTTP 409" in again.output
    bad = cli(*remote, "template", "run", "files", "--set", "name=NOPE", env=dev)
    assert bad.exit_code == 1 and "body.parameters" in bad.output
